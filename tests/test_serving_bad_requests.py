"""Every bad request a client can send gets TF Serving's status code and exact message, and the server keeps
serving: each bad request below is followed by a valid one that must succeed.

The server runs in-process (serving.server_lib.ModelServer on a loopback port) on the toy SavedModels of
tests/test_serving_models.py, with a small image cap (--max_image_pixels) so that "huge" stays cheap; the
request-storm test runs it as a child process to measure its own memory in /proc.
"""

from __future__ import annotations

import concurrent.futures
import io
import os
import shutil
import struct
import time
import zlib

import grpc
import numpy as np
import pytest
from PIL import Image
from tensorflow.core.framework import tensor_pb2, tensor_shape_pb2, types_pb2
from tensorflow_serving.apis import (get_model_status_pb2, model_pb2, model_service_pb2_grpc, predict_pb2,
                                     prediction_service_pb2_grpc)

from serving import config as config_lib
from serving import process, tensors
from serving.server_lib import ModelServer
from tests.test_serving_models import A2B_FIXED_4X4, ToyTranslator, build_toy_versions, png_bytes, save_toy
from tests.test_serving_lifecycle import _wait_for

CAP = 4096  # pixels per input: 64x64 passes, 65x64 does not
INVALID = grpc.StatusCode.INVALID_ARGUMENT
DECODE_NODE = "\n\t [[{{node map/while/decode_image/DecodeImage}}]]"  # where the toy's a2b_encoded decodes


@pytest.fixture(scope="module")
def server(tmp_path_factory):
  base = build_toy_versions(str(tmp_path_factory.mktemp("bad") / "toy"), versions=(1, 2))
  config = config_lib.ServerConfig(
      models=(config_lib.ModelConfig("toy", base, version_labels=(("stable", 1),),
                                     version_policy=("all",)),),
      port=0, file_system_poll_wait_seconds=0, max_image_pixels=CAP)
  server = ModelServer(config).start()
  channel = grpc.insecure_channel(f"127.0.0.1:{server.port}")
  server.stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
  yield server
  channel.close()
  server.stop()


def _images(n=1, height=4, width=4, seed=0):
  return np.random.default_rng(seed).integers(0, 256, size=[n, height, width, 3], dtype=np.uint8)


def _request(signature="a2b", inputs=None, name="toy", version=None, label=None):
  request = predict_pb2.PredictRequest(model_spec=model_pb2.ModelSpec(name=name, signature_name=signature))
  if version is not None:
    request.model_spec.version.value = version
  if label is not None:
    request.model_spec.version_label = label
  for key, value in (inputs if inputs is not None else {"images": _images()}).items():
    request.inputs[key].CopyFrom(value if isinstance(value, tensor_pb2.TensorProto) else tensors.to_tensor_proto(value))
  return request


def _declared(shape, dtype=types_pb2.DT_UINT8):
  """A TensorProto that declares `shape` and sends no values (TF fills it with zeros): a few bytes on the wire."""
  return tensor_pb2.TensorProto(dtype=dtype, tensor_shape=tensor_shape_pb2.TensorShapeProto(
      dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=d) for d in shape]))


def _png_header(height, width):
  """The first chunk of a PNG that declares height x width (no pixel data): a decompression bomb's header."""
  ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
  return (b"\x89PNG\r\n\x1a\n" + struct.pack(">I", len(ihdr)) + b"IHDR" + ihdr +
          struct.pack(">I", zlib.crc32(b"IHDR" + ihdr)))


def _error(server, request):
  with pytest.raises(grpc.RpcError) as info:
    server.stub.Predict(request, timeout=60)
  return info.value.code(), info.value.details()


def _assert_still_serving(server):
  """A valid request right after a bad one: the answer is right."""
  images = _images(2, seed=7)
  response = server.stub.Predict(_request(inputs={"images": images}), timeout=60)
  np.testing.assert_array_equal(tensors.from_tensor_proto(response.outputs["images"]), 255 - images)


def _outputs(response):
  return {k: tensors.from_tensor_proto(v) for k, v in response.outputs.items()}


def _jpeg(array):
  buffer = io.BytesIO()
  Image.fromarray(array).save(buffer, format="JPEG")
  return buffer.getvalue()


BAD_REQUESTS = {
    # name: (request builder, expected code, expected message)
    "wrong_dtype": (lambda: _request(inputs={"images": _images().astype(np.float32)}),
                    INVALID, "Expects arg[0] to be uint8 but float is provided"),
    "wrong_dtype_int64": (lambda: _request(inputs={"images": _images().astype(np.int64)}),
                          INVALID, "Expects arg[0] to be uint8 but int64 is provided"),
    "string_for_images": (lambda: _request(inputs={"images": np.array([b"x"], dtype=object)}),
                          INVALID, "Expects arg[0] to be uint8 but string is provided"),
    "pixels_for_bytes": (lambda: _request("a2b_encoded", {"image_bytes": _images()}),
                         INVALID, "Expects arg[0] to be string but uint8 is provided"),
    "rank_3": (lambda: _request(inputs={"images": _images()[0]}),
               INVALID, "Expected input images to have shape [-1,-1,-1,3] but get [4,4,3]."),
    "rank_5": (lambda: _request(inputs={"images": _images()[None]}),
               INVALID, "Expected input images to have shape [-1,-1,-1,3] but get [1,1,4,4,3]."),
    "scalar": (lambda: _request(inputs={"images": np.uint8(3)}),
               INVALID, "Expected input images to have shape [-1,-1,-1,3] but get []."),
    "one_channel": (lambda: _request(inputs={"images": _images()[..., :1]}),
                    INVALID, "Expected input images to have shape [-1,-1,-1,3] but get [1,4,4,1]."),
    "rgba": (lambda: _request(inputs={"images": np.zeros([1, 4, 4, 4], np.uint8)}),
             INVALID, "Expected input images to have shape [-1,-1,-1,3] but get [1,4,4,4]."),
    "bytes_rank_2": (lambda: _request("a2b_encoded", {"image_bytes": np.array([[png_bytes(_images()[0])]], object)}),
                     INVALID, "Expected input image_bytes to have shape [-1] but get [1,1]."),
    "zero_size_on_a_fixed_size_model": (
        lambda: _request("a2b_fixed", {"images": np.zeros([1, 0, 0, 3], np.uint8)}),
        INVALID, A2B_FIXED_4X4.replace("[4 4]", "[0 0]")),
    "one_pixel_on_a_fixed_size_model": (
        lambda: _request("a2b_fixed", {"images": np.zeros([1, 1, 1, 3], np.uint8)}),
        INVALID, A2B_FIXED_4X4.replace("[4 4]", "[1 1]")),
    "huge_image": (lambda: _request(inputs={"images": np.zeros([1, 65, 64, 3], np.uint8)}),
                   INVALID, "Input images has 4160 pixels (1 images of 65x64); this server accepts at most 4096 "
                            "pixels per input (--max_image_pixels)"),
    "huge_batch": (lambda: _request(inputs={"images": np.zeros([2, 64, 64, 3], np.uint8)}),
                   INVALID, "Input images has 8192 pixels (2 images of 64x64); this server accepts at most 4096 "
                            "pixels per input (--max_image_pixels)"),
    "huge_declared_shape_few_bytes": (  # 30 GB if it were filled in: refused before any allocation
        lambda: _request(inputs={"images": _declared([1, 100_000, 100_000, 3])}),
        INVALID, "Input images has 10000000000 pixels (1 images of 100000x100000); this server accepts at most "
                 "4096 pixels per input (--max_image_pixels)"),
    "huge_encoded_image": (  # a 33-byte PNG header that declares 100000 x 100000 pixels
        lambda: _request("a2b_encoded", {"image_bytes": np.array([_png_header(100_000, 100_000)], object)}),
        INVALID, "Input image_bytes decodes to 10000000000 pixels (largest image 100000x100000); this server "
                 "accepts at most 4096 pixels per input (--max_image_pixels)"),
    "huge_encoded_batch": (
        lambda: _request("a2b_encoded", {"image_bytes": np.array([png_bytes(_images(1, 64, 40)[0]),
                                                                   _jpeg(_images(1, 40, 64)[0])], object)}),
        INVALID, "Input image_bytes decodes to 5120 pixels (largest image 64x40); this server accepts at most 4096 "
                 "pixels per input (--max_image_pixels)"),
    "garbage_bytes": (lambda: _request("a2b_encoded", {"image_bytes": np.array([b"<html>not an image"], object)}),
                      INVALID, "Unknown image file format. One of JPEG, JPEG XL, PNG, GIF, BMP, WebP required."
                      + DECODE_NODE),
    "empty_bytes": (lambda: _request("a2b_encoded", {"image_bytes": np.array([b""], object)}),
                    INVALID, "Input is empty." + DECODE_NODE),
    "truncated_png_header": (
        lambda: _request("a2b_encoded", {"image_bytes": np.array([png_bytes(_images(1, 32, 32)[0])[:20]], object)}),
        INVALID, "Invalid PNG. Failed to initialize decoder." + DECODE_NODE),
    "truncated_png_data": (
        lambda: _request("a2b_encoded", {"image_bytes": np.array([png_bytes(_images(1, 32, 32)[0])[:1000]], object)}),
        INVALID, "Invalid PNG data, size 1000" + DECODE_NODE),
    "truncated_jpeg": (
        lambda: _request("a2b_encoded", {"image_bytes": np.array([_jpeg(_images(1, 32, 32)[0])[:400]], object)}),
        INVALID, "jpeg::Uncompress failed. Invalid JPEG data or crop window." + DECODE_NODE),
    "one_good_one_garbage": (
        lambda: _request("a2b_encoded", {"image_bytes": np.array([png_bytes(_images()[0]), b"\x89PNG\r\n\x1a\n"], object)}),
        INVALID, "Invalid PNG. Failed to initialize decoder." + DECODE_NODE),
    "missing_input": (lambda: _request(inputs={}),
                      INVALID, "input size does not match signature: 0!=1 len({}) != len({images}). Sent extra: {}. "
                               "Missing but required: {images}."),
    "extra_input": (lambda: _request(inputs={"images": _images(), "seed": np.int64([1])}),
                    INVALID, "input size does not match signature: 2!=1 len({images,seed}) != len({images}). Sent "
                             "extra: {seed}. Missing but required: {}."),
    "misnamed_input": (lambda: _request(inputs={"pixels": _images()}),
                       INVALID, "Signature input alias: images(feed name: a2b_images:0) not found in request and no "
                                "default value provided. Inputs expected to be in the request {pixels}, or default "
                                "input alias set: "),
    "truncated_tensor_content": (
        lambda: _request(inputs={"images": tensor_pb2.TensorProto(
            dtype=types_pb2.DT_UINT8, tensor_shape=tensors.to_tensor_proto(_images()).tensor_shape,
            tensor_content=_images().tobytes()[:-1])}),
        INVALID, "tensor parsing error: images"),
    "too_many_values": (
        lambda: _request(inputs={"images": tensor_pb2.TensorProto(
            dtype=types_pb2.DT_UINT8, tensor_shape=tensors.to_tensor_proto(_images(1, 1, 1)).tensor_shape,
            int_val=[1, 2, 3, 4])}),
        INVALID, "tensor parsing error: images"),
    "unsupported_dtype": (lambda: _request(inputs={"images": _declared([1, 4, 4, 3], types_pb2.DT_RESOURCE)}),
                          INVALID, "tensor parsing error: images"),
    "unknown_signature": (lambda: _request("c2d"),
                          grpc.StatusCode.FAILED_PRECONDITION, 'Serving signature key "c2d" not found.'),
    "unknown_model": (lambda: _request(name="zebra"),
                      grpc.StatusCode.NOT_FOUND, "Servable not found for request: Latest(zebra)"),
    "unknown_version": (lambda: _request(version=7),
                        grpc.StatusCode.NOT_FOUND, "Servable not found for request: Specific(toy, 7)"),
    "unknown_label": (lambda: _request(label="canary"),
                      INVALID, "Unrecognized servable version label: canary"),
    "unknown_output": (lambda: predict_pb2.PredictRequest(model_spec=_request().model_spec,
                                                          inputs=_request().inputs, output_filter=["style"]),
                       INVALID, "output tensor alias not found in signature: style Outputs expected to be in the "
                                "set {batch_size,images,version}."),
    "duplicate_output": (lambda: predict_pb2.PredictRequest(model_spec=_request().model_spec, inputs=_request().inputs,
                                                            output_filter=["images", "images"]),
                         INVALID, "duplicate output tensor alias: images"),
}


@pytest.mark.parametrize("name", sorted(BAD_REQUESTS))
def test_bad_request_gets_tf_serving_code_and_message_then_a_valid_one_succeeds(server, name):
  build, code, message = BAD_REQUESTS[name]
  assert _error(server, build()) == (code, message)
  _assert_still_serving(server)


def test_edge_sizes_the_model_accepts_are_answered_as_the_model_answers(server):
  """Zero-size and 1-pixel images and empty batches are not the server's to refuse: the toy model answers."""
  for shape in ([1, 0, 0, 3], [0, 4, 4, 3], [1, 1, 1, 3], [1, 64, 64, 3], [3, 1, 1000, 3]):
    images = np.random.default_rng(1).integers(0, 256, size=shape, dtype=np.uint8)
    out = _outputs(server.stub.Predict(_request(inputs={"images": images}), timeout=60))
    np.testing.assert_array_equal(out["images"], 255 - images)
    assert out["images"].shape == tuple(shape) and out["version"].shape == (shape[0],)
  out = _outputs(server.stub.Predict(_request("a2b_encoded", {"image_bytes": np.array([], object)}), timeout=60))
  assert out["image_bytes"].shape == (0,)
  one = _images(1, 1, 1)
  out = _outputs(server.stub.Predict(_request("a2b_encoded", {"image_bytes": np.array([png_bytes(one[0])], object)}),
                                     timeout=60))
  np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(out["image_bytes"][0]))), 255 - one[0])
  at_cap = _images(1, 64, 64)
  out = _outputs(server.stub.Predict(_request("a2b_encoded", {"image_bytes": np.array([png_bytes(at_cap[0])],
                                                                                       object)}), timeout=60))
  np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(out["image_bytes"][0]))), 255 - at_cap[0])
  _assert_still_serving(server)


def test_version_and_label_requests_still_pick_the_right_version_after_bad_ones(server):
  for spec, version in (({}, 2), ({"version": 1}, 1), ({"label": "stable"}, 1)):
    assert _error(server, _request(inputs={"images": np.zeros([1, 65, 64, 3], np.uint8)}, **spec))[0] == INVALID
    response = server.stub.Predict(_request(**spec), timeout=60)
    assert response.model_spec.version.value == version == int(_outputs(response)["version"][0])


def test_image_size_reads_the_header_of_every_format_decode_image_takes():
  from serving.image_size import declared_size
  array = _images(1, 5, 7)[0]
  for fmt in ("PNG", "JPEG", "GIF", "BMP", "WEBP"):
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format=fmt, **({"lossless": True} if fmt == "WEBP" else {}))
    assert declared_size(buffer.getvalue()) == (5, 7), fmt
  buffer = io.BytesIO()
  Image.fromarray(array).save(buffer, format="WEBP", quality=50)  # lossy: the VP8 chunk
  assert declared_size(buffer.getvalue()) == (5, 7)
  assert declared_size(_png_header(100_000, 3)) == (100_000, 3)
  for data in (b"", b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff\xe0\x00", b"GIF89a", b"BM", b"RIFF....WEBPVP8 ", b"<html>"):
    assert declared_size(data) is None, data


def _status(server):
  channel = grpc.insecure_channel(f"127.0.0.1:{server.port}")
  try:
    response = model_service_pb2_grpc.ModelServiceStub(channel).GetModelStatus(
        get_model_status_pb2.GetModelStatusRequest(model_spec=model_pb2.ModelSpec(name="toy")), timeout=30)
    return {s.version: get_model_status_pb2.ModelVersionStatus.State.Name(s.state)
            for s in response.model_version_status}
  finally:
    channel.close()


def test_a_model_folder_that_disappears_while_serving(tmp_path):
  """Base path gone: the loaded version keeps serving (TF Serving's poll fails, nothing changes). Version
  folder gone: the next one down takes over. Base path back but empty: versions unloaded, NOT_FOUND (TF
  Serving's default). A version published again: served again."""
  staging = tmp_path / "staging"
  versions = {v: save_toy(ToyTranslator(v), str(staging / str(v))) for v in (1, 2)}
  base = tmp_path / "toy"
  base.mkdir()
  for v in (1, 2):
    shutil.copytree(versions[v], base / str(v))
  server = ModelServer(config_lib.ServerConfig(models=(config_lib.ModelConfig("toy", str(base)),), port=0,
                                               file_system_poll_wait_seconds=0.1, max_image_pixels=CAP)).start()
  channel = grpc.insecure_channel(f"127.0.0.1:{server.port}")
  server.stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
  version_of = lambda: int(_outputs(server.stub.Predict(_request(), timeout=60))["version"][0])
  try:
    assert version_of() == 2
    shutil.rmtree(base / "2")  # the served version's folder disappears: version 1 is loaded, then 2 unloaded
    assert _wait_for(lambda: _status(server) == {1: "AVAILABLE", 2: "END"})
    assert version_of() == 1
    shutil.rmtree(base)  # the whole model folder disappears: keep serving from memory
    time.sleep(0.5)  # several polls
    assert _status(server) == {1: "AVAILABLE", 2: "END"}
    assert version_of() == 1
    _assert_still_serving(server)
    base.mkdir()  # back, but holding no version: unloaded
    assert _wait_for(lambda: _status(server) == {1: "END", 2: "END"})
    assert _error(server, _request()) == (grpc.StatusCode.NOT_FOUND, "Servable not found for request: Latest(toy)")
    shutil.copytree(versions[2], base / ".tmp-3")
    os.rename(base / ".tmp-3", base / "3")
    assert _wait_for(lambda: _status(server).get(3) == "AVAILABLE")
    assert version_of() == 2  # ToyTranslator(2) published as version 3 answers "2"
    _assert_still_serving(server)
  finally:
    channel.close()
    server.stop()


def _rss_kib(pid, field):
  with open(f"/proc/{pid}/status", encoding="ascii") as f:
    for line in f:
      if line.startswith(field + ":"):
        return int(line.split()[1])
  raise AssertionError(f"no {field} in /proc/{pid}/status")


@pytest.mark.slow
def test_memory_stays_bounded_under_a_storm_of_huge_requests(tmp_path):
  """32 concurrent requests, 4 at a time per kind: at the cap (valid), just over it, tiny messages declaring
  30 GB images, and PNG headers declaring 10^10 pixels. The server's peak RSS (VmHWM) grows by less than what
  the valid ones need, and it answers a valid request afterwards."""
  base = build_toy_versions(str(tmp_path / "toy"), versions=(1,))
  cap = 1024 * 1024
  with process.ServerProcess(["--model_name=toy", f"--model_base_path={base}", f"--max_image_pixels={cap}",
                              "--file_system_poll_wait_seconds=0"], process.free_port()) as proc:
    channel = grpc.insecure_channel(proc.target, options=[("grpc.max_send_message_length", -1),
                                                          ("grpc.max_receive_message_length", -1)])
    stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    at_cap = np.full([1, 1024, 1024, 3], 9, np.uint8)
    stub.Predict(_request(inputs={"images": at_cap}), timeout=120)  # warm: first call's allocations
    before = _rss_kib(proc.process.pid, "VmHWM")
    over = _request(inputs={"images": np.zeros([1, 1025, 1024, 3], np.uint8)})
    bomb = _request(inputs={"images": _declared([1, 100_000, 100_000, 3])})
    png_bomb = _request("a2b_encoded", {"image_bytes": np.array([_png_header(100_000, 100_000)] * 4, object)})
    valid = _request(inputs={"images": at_cap})
    requests = [valid, over, bomb, png_bomb] * 8
    def send(request):
      try:
        return stub.Predict(request, timeout=120).model_spec.version.value
      except grpc.RpcError as e:
        return e.code()
    with concurrent.futures.ThreadPoolExecutor(16) as pool:
      results = list(pool.map(send, requests))
    assert results == [1, INVALID, INVALID, INVALID] * 8
    grown_mib = (_rss_kib(proc.process.pid, "VmHWM") - before) / 1024
    # 8 valid requests of 3 MiB each hold a handful of copies (wire, tensor, output, response) at a time.
    assert grown_mib < 400, f"peak RSS grew by {grown_mib:.0f} MiB"
    response = stub.Predict(_request(inputs={"images": _images(2)}), timeout=60)
    np.testing.assert_array_equal(tensors.from_tensor_proto(response.outputs["images"]), 255 - _images(2))
    channel.close()
