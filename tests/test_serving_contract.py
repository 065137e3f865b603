"""Contract tests of the model server over the wire, with TF Serving's official gRPC stubs and REST routes.

The same suite runs against `python -m serving.server` and, when `tensorflow_model_server` is on PATH, against
the real TF Serving on the same serving root (skipped with the reason otherwise): a client must not be able to
tell the two apart. Checks exact status codes and TF Serving's messages.
"""

from __future__ import annotations

import base64
import io
import json
import os
import shutil
import urllib.error
import urllib.request

import grpc
import numpy as np
import pytest
from PIL import Image
from tensorflow_serving.apis import (classification_pb2, get_model_metadata_pb2, get_model_status_pb2,
                                     model_pb2, model_service_pb2_grpc, predict_pb2,
                                     prediction_service_pb2_grpc)

from serving import client as client_lib
from serving import process, tensors
from tests import test_serving_batching
from tests.test_serving_models import A2B_FIXED_4X4, ToyMunit, ToyUgatit, build_toy_versions, png_bytes, save_toy

MODELS_CONFIG = """
model_config_list {
  config {
    name: "toy" base_path: "%(root)s/toy" model_platform: "tensorflow"
    model_version_policy { specific { versions: 1 versions: 2 } }
    version_labels { key: "stable" value: 1 }
    version_labels { key: "canary" value: 2 }
  }
  config { name: "munit" base_path: "%(root)s/munit" model_platform: "tensorflow" }
  config { name: "ugatit" base_path: "%(root)s/ugatit" model_platform: "tensorflow" }
}
"""
SERVERS = ["serving.server", "tensorflow_model_server"]


@pytest.fixture(scope="module")
def serving_root(tmp_path_factory):
  root = str(tmp_path_factory.mktemp("serving_root"))
  build_toy_versions(os.path.join(root, "toy"), versions=(1, 2))
  save_toy(ToyMunit(), os.path.join(root, "munit", "1"))
  save_toy(ToyUgatit(), os.path.join(root, "ugatit", "1"))
  with open(os.path.join(root, "models.config"), "w") as f:
    f.write(MODELS_CONFIG % {"root": root})
  return root


@pytest.fixture(scope="module", params=SERVERS)
def server(request, serving_root):
  binary = None
  if request.param == "tensorflow_model_server":
    binary = shutil.which("tensorflow_model_server")
    if binary is None:
      pytest.skip("tensorflow_model_server is not on PATH: the contract suite ran against serving.server only")
  rest_port = process.free_port()
  args = [f"--model_config_file={os.path.join(serving_root, 'models.config')}", f"--rest_api_port={rest_port}",
          "--file_system_poll_wait_seconds=0"]
  with process.ServerProcess(args, process.free_port(), binary=binary) as proc:
    proc.rest_url = f"http://127.0.0.1:{rest_port}"
    proc.kind = request.param
    client_lib.TranslationClient(proc.target, "toy").wait_until_available(60)
    yield proc


@pytest.fixture(scope="module")
def stubs(server):
  channel = grpc.insecure_channel(server.target)
  yield (prediction_service_pb2_grpc.PredictionServiceStub(channel),
         model_service_pb2_grpc.ModelServiceStub(channel))
  channel.close()


def _images(n=2, size=4, seed=0):
  return np.random.default_rng(seed).integers(0, 256, size=[n, size, size, 3], dtype=np.uint8)


def _request(name="toy", signature="a2b", inputs=None, version=None, label=None, output_filter=()):
  request = predict_pb2.PredictRequest(model_spec=model_pb2.ModelSpec(name=name, signature_name=signature),
                                       output_filter=list(output_filter))
  if version is not None:
    request.model_spec.version.value = version
  if label is not None:
    request.model_spec.version_label = label
  for key, value in (inputs if inputs is not None else {"images": _images()}).items():
    request.inputs[key].CopyFrom(tensors.to_tensor_proto(value))
  return request


def _outputs(response):
  return {k: tensors.from_tensor_proto(v) for k, v in response.outputs.items()}


def _error(call, request):
  with pytest.raises(grpc.RpcError) as info:
    call(request, timeout=30)
  return info.value.code(), info.value.details()


def test_model_status_lists_versions_and_errors(stubs):
  _, models = stubs
  response = models.GetModelStatus(get_model_status_pb2.GetModelStatusRequest(
      model_spec=model_pb2.ModelSpec(name="toy")), timeout=30)
  states = {s.version: (s.state, s.status.error_code) for s in response.model_version_status}
  assert states == {1: (get_model_status_pb2.ModelVersionStatus.AVAILABLE, 0),
                    2: (get_model_status_pb2.ModelVersionStatus.AVAILABLE, 0)}
  one = get_model_status_pb2.GetModelStatusRequest(model_spec=model_pb2.ModelSpec(name="toy"))
  one.model_spec.version.value = 1
  assert [s.version for s in models.GetModelStatus(one, timeout=30).model_version_status] == [1]
  one.model_spec.version.value = 9
  assert _error(models.GetModelStatus, one) == (grpc.StatusCode.NOT_FOUND, "Could not find version 9 of model toy")
  assert _error(models.GetModelStatus, get_model_status_pb2.GetModelStatusRequest(
      model_spec=model_pb2.ModelSpec(name="nope"))) == (
          grpc.StatusCode.NOT_FOUND, "Could not find any versions of model nope")


def test_metadata_returns_every_signature_def(stubs):
  prediction, _ = stubs
  request = get_model_metadata_pb2.GetModelMetadataRequest(model_spec=model_pb2.ModelSpec(name="toy"),
                                                           metadata_field=["signature_def"])
  response = prediction.GetModelMetadata(request, timeout=30)
  assert (response.model_spec.name, response.model_spec.version.value) == ("toy", 2)
  signature_map = get_model_metadata_pb2.SignatureDefMap()
  response.metadata["signature_def"].Unpack(signature_map)
  signatures = signature_map.signature_def
  assert {"a2b", "b2a", "a2b_encoded", "serving_default"} <= set(signatures)
  assert tensors.dtype_name(signatures["a2b"].inputs["images"].dtype) == "uint8"
  assert [d.size for d in signatures["a2b"].inputs["images"].tensor_shape.dim] == [-1, -1, -1, 3]
  assert tensors.dtype_name(signatures["a2b_encoded"].outputs["image_bytes"].dtype) == "string"
  request.metadata_field[:] = ["nope"]
  assert _error(prediction.GetModelMetadata, request) == (grpc.StatusCode.INVALID_ARGUMENT,
                                                          "Metadata field nope is not supported")


def test_predict_every_signature_and_response_model_spec(stubs):
  prediction, _ = stubs
  images = _images()
  response = prediction.Predict(_request(signature="a2b", inputs={"images": images}), timeout=30)
  assert (response.model_spec.name, response.model_spec.version.value, response.model_spec.signature_name) == (
      "toy", 2, "a2b")
  np.testing.assert_array_equal(_outputs(response)["images"], 255 - images)
  response = prediction.Predict(_request(signature="", inputs={"images": images}), timeout=30)
  assert response.model_spec.signature_name == "serving_default"
  np.testing.assert_array_equal(_outputs(response)["images"], 255 - images)
  response = prediction.Predict(_request(signature="b2a", inputs={"images": images}), timeout=30)
  np.testing.assert_array_equal(_outputs(response)["images"], images)
  encoded = np.array([png_bytes(images[0]), png_bytes(images[1])], dtype=object)
  out = _outputs(prediction.Predict(_request(signature="a2b_encoded", inputs={"image_bytes": encoded}),
                                    timeout=30))["image_bytes"]
  for i in range(2):
    np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(out[i]))), 255 - images[i])


def test_output_filter(stubs):
  prediction, _ = stubs
  out = _outputs(prediction.Predict(_request(output_filter=["version"]), timeout=30))
  assert list(out) == ["version"]
  assert _error(prediction.Predict, _request(output_filter=["nope"])) == (
      grpc.StatusCode.INVALID_ARGUMENT, "output tensor alias not found in signature: nope Outputs expected to be "
      "in the set {batch_size,images,version}.")


def test_version_pinning_and_labels(stubs):
  prediction, _ = stubs
  def version_of(**spec):
    response = prediction.Predict(_request(**spec), timeout=30)
    assert response.model_spec.version.value == int(_outputs(response)["version"][0])
    return response.model_spec.version.value
  assert version_of() == 2
  assert version_of(version=1) == 1
  assert version_of(version=2) == 2
  assert version_of(label="stable") == 1
  assert version_of(label="canary") == 2


def test_lookup_errors(stubs):
  prediction, _ = stubs
  assert _error(prediction.Predict, _request(name="nope")) == (
      grpc.StatusCode.NOT_FOUND, "Servable not found for request: Latest(nope)")
  assert _error(prediction.Predict, _request(version=9)) == (
      grpc.StatusCode.NOT_FOUND, "Servable not found for request: Specific(toy, 9)")
  assert _error(prediction.Predict, _request(label="nope")) == (
      grpc.StatusCode.INVALID_ARGUMENT, "Unrecognized servable version label: nope")
  assert _error(prediction.Predict, _request(signature="nope")) == (
      grpc.StatusCode.FAILED_PRECONDITION, 'Serving signature key "nope" not found.')


def test_input_errors(stubs, server):
  prediction, _ = stubs
  images = _images()
  assert _error(prediction.Predict, _request(inputs={})) == (
      grpc.StatusCode.INVALID_ARGUMENT, "input size does not match signature: 0!=1 len({}) != len({images}). "
      "Sent extra: {}. Missing but required: {images}.")
  assert _error(prediction.Predict, _request(inputs={"images": images, "extra": images})) == (
      grpc.StatusCode.INVALID_ARGUMENT, "input size does not match signature: 2!=1 len({extra,images}) != "
      "len({images}). Sent extra: {extra}. Missing but required: {}.")
  assert _error(prediction.Predict, _request(inputs={"images": images.astype(np.float32)})) == (
      grpc.StatusCode.INVALID_ARGUMENT, "Expects arg[0] to be uint8 but float is provided")
  if server.kind == "serving.server":  # TF Serving feeds any shape to the graph (the toy then answers OK)
    assert _error(prediction.Predict, _request(inputs={"images": images[..., :1]})) == (
        grpc.StatusCode.INVALID_ARGUMENT, "Expected input images to have shape [-1,-1,-1,3] but get [2,4,4,1].")
  broken = _request()
  broken.inputs["images"].tensor_content = b"\x00" * 7
  assert _error(prediction.Predict, broken) == (grpc.StatusCode.INVALID_ARGUMENT, "tensor parsing error: images")


def test_model_runtime_error_is_invalid_argument_and_server_survives(stubs, server):
  prediction, _ = stubs
  code, message = _error(prediction.Predict, _request(signature="a2b_fixed"))
  assert code == grpc.StatusCode.INVALID_ARGUMENT
  if server.kind == "serving.server":  # TF Serving's C++ runtime prefixes the function names it went through
    assert message == A2B_FIXED_4X4
  else:
    assert message.endswith(A2B_FIXED_4X4.split("\n")[0] + "\n\t [[{{node assert_equal_1/Assert/Assert}}]]"), message
  out = _outputs(prediction.Predict(_request(signature="a2b_fixed", inputs={"images": _images(size=8)}),
                                    timeout=30))
  assert out["images"].shape == (2, 8, 8, 3)


def test_classify_is_unimplemented(stubs, server):
  if server.kind != "serving.server":
    pytest.skip("only this server answers UNIMPLEMENTED; TF Serving tries a classification signature")
  prediction, _ = stubs
  request = classification_pb2.ClassificationRequest(model_spec=model_pb2.ModelSpec(name="toy"))
  assert _error(prediction.Classify, request) == (
      grpc.StatusCode.UNIMPLEMENTED, "Classify is not implemented by this server: the models it serves are image "
      "translators; use Predict")


def test_translation_client_munit_and_ugatit(server):
  images = _images(2, 8)
  with client_lib.TranslationClient(server.target, "munit") as munit:
    first = munit.translate(images, "a2b", seed=[3, 4])
    again = munit.translate(images, "a2b", seed=[3, 4])
    other = munit.translate(images, "a2b", seed=[5, 6])
    np.testing.assert_array_equal(first["images"], again["images"])
    assert first["style"].shape == (2, 2) and not np.array_equal(first["style"], other["style"])
    styled = munit.translate(images, "a2b", style=first["style"])
    np.testing.assert_array_equal(styled["images"], first["images"])
    drawn = munit.translate(images, "a2b")  # the signature needs a seed: the client draws one
    assert drawn["style"].shape == (2, 2)
    referenced = munit.translate(images, "a2b", reference=_images(1, 6, seed=1)[0])
    assert referenced["images"].shape == images.shape and referenced["style"].shape == (2, 2)
  with client_lib.TranslationClient(server.target, "ugatit") as ugatit:
    out = ugatit.translate(images[0], "a2b")
    assert out["images"].shape == (1, 8, 8, 3) and out["attention"].shape == (1, 8, 8)
    with pytest.raises(client_lib.TranslationError, match="not multimodal"):
      ugatit.translate(images, "a2b", seed=1)
  with client_lib.TranslationClient(server.target, "toy", version_label="stable") as toy:
    assert int(toy.predict("a2b", {"images": images}, ["version"])["version"][0]) == 1
    assert toy.metadata()["signatures"]["a2b"]["inputs"]["images"] == {"dtype": "uint8", "shape": [-1, -1, -1, 3]}
    assert [s["version"] for s in toy.model_status()] == [2, 1]


def _http(url, body=None):
  data = body if isinstance(body, bytes) or body is None else json.dumps(body).encode()
  request = urllib.request.Request(url, data=data, method="GET" if body is None else "POST")
  try:
    with urllib.request.urlopen(request, timeout=30) as response:
      return response.status, json.loads(response.read())
  except urllib.error.HTTPError as e:
    return e.code, json.loads(e.read())


def test_rest_status_and_metadata_routes(server):
  base = server.rest_url + "/v1/models/toy"
  status, doc = _http(base)
  assert status == 200
  assert sorted(int(v["version"]) for v in doc["model_version_status"]) == [1, 2]
  assert all(v["state"] == "AVAILABLE" and v["status"]["error_code"] == "OK" for v in doc["model_version_status"])
  status, doc = _http(base + "/versions/1")
  assert status == 200 and [v["version"] for v in doc["model_version_status"]] == ["1"]
  status, doc = _http(base + "/labels/stable/metadata")
  assert status == 200 and doc["model_spec"]["version"] == "1"
  assert "a2b" in doc["metadata"]["signature_def"]["signature_def"]
  status, doc = _http(server.rest_url + "/v1/models/nope")
  assert status == 404 and doc["error"] == "Could not find any versions of model nope"


def test_rest_predict_row_and_columnar_formats(server):
  base = server.rest_url + "/v1/models/toy"
  images = _images(2)
  status, doc = _http(base + ":predict", {"signature_name": "a2b", "instances": images.tolist()})
  assert status == 200
  rows = doc["predictions"]
  assert len(rows) == 2 and rows[0]["version"] == 2
  np.testing.assert_array_equal(np.array([r["images"] for r in rows]), 255 - images)
  status, doc = _http(base + "/versions/1:predict", {"signature_name": "b2a", "inputs": {"images": images.tolist()}})
  assert status == 200 and doc["outputs"]["version"] == [1, 1]
  np.testing.assert_array_equal(np.array(doc["outputs"]["images"]), images)
  encoded = {"b64": base64.b64encode(png_bytes(images[0])).decode()}
  status, doc = _http(base + ":predict", {"signature_name": "a2b_encoded", "instances": [encoded]})
  assert status == 200
  decoded = np.asarray(Image.open(io.BytesIO(base64.b64decode(doc["predictions"][0]["b64"]))))
  np.testing.assert_array_equal(decoded, 255 - images[0])
  rows = [{"images": images[i].tolist(), "seed": 3 + i} for i in range(2)]
  status, doc = _http(server.rest_url + "/v1/models/munit:predict", {"signature_name": "a2b", "instances": rows})
  assert status == 200 and len(doc["predictions"]) == 2
  row_styles = [p["style"] for p in doc["predictions"]]
  status, doc = _http(server.rest_url + "/v1/models/munit:predict",
                      {"signature_name": "a2b", "inputs": {"images": images.tolist(), "seed": [3, 4]}})
  assert status == 200 and doc["outputs"]["style"] == row_styles and len(row_styles[0]) == 2
  status, doc = _http(base + ":predict", {"signature_name": "nope", "instances": images.tolist()})
  assert status == 400 and doc["error"] == 'Serving signature name: "nope" not found in signature def'
  status, doc = _http(base + "/versions/9:predict", {"instances": images.tolist()})
  assert status == 404 and doc["error"] == "Servable not found for request: Specific(toy, 9)"


def test_rest_malformed_requests_are_400_with_an_error(server):
  base = server.rest_url + "/v1/models/toy"
  for body, message in (
      (b"{not json", "JSON Parse error: Expecting property name enclosed in double quotes: line 1 column 2 (char 1)"),
      ({"signature_name": "a2b"}, "Missing 'inputs' or 'instances' key"),
      ({"instances": [[1, 2]], "inputs": [[1, 2]]},
       "Not formatted correctly expecting only one of 'inputs' or 'instances' keys exists"),
      ({"signature_name": "a2b", "instances": "abc"}, "Expecting 'instances' to be a non-empty JSON list")):
    status, doc = _http(base + ":predict", body)
    if server.kind == "serving.server":  # TF Serving's JSON parser words its errors its own way
      assert (status, doc) == (400, {"error": message}), body
    else:
      assert status == 400 and doc["error"], body
  status, doc = _http(base + "/versions/x")
  if server.kind == "serving.server":
    assert (status, doc) == (400, {"error": "Malformed request: GET /v1/models/toy/versions/x"})
  else:
    assert status in (400, 404) and doc["error"]


@pytest.mark.slow
@pytest.mark.parametrize("kind", SERVERS)
def test_batching_mixed_sizes_and_metrics_page(kind, serving_root, tmp_path):
  """With --enable_batching, two raw requests of different sizes that meet in a batch fail together with TF
  Serving's FAILED_PRECONDITION while encoded images of different sizes batch; the Prometheus page counts them."""
  from prometheus_client.parser import text_string_to_metric_families
  binary = None
  if kind == "tensorflow_model_server":
    binary = shutil.which("tensorflow_model_server")
    if binary is None:
      pytest.skip("tensorflow_model_server is not on PATH: the contract suite ran against serving.server only")
  (tmp_path / "batching.txt").write_text("max_batch_size { value: 8 } batch_timeout_micros { value: 2000000 } "
                                         "num_batch_threads { value: 1 }")
  (tmp_path / "monitoring.txt").write_text('prometheus_config { enable: true path: "/metrics" }')
  rest_port = process.free_port()
  args = [f"--model_config_file={os.path.join(serving_root, 'models.config')}", f"--rest_api_port={rest_port}",
          "--file_system_poll_wait_seconds=0", "--enable_batching=true",
          f"--batching_parameters_file={tmp_path / 'batching.txt'}",
          f"--monitoring_config_file={tmp_path / 'monitoring.txt'}"]
  with process.ServerProcess(args, process.free_port(), binary=binary) as proc:
    client_lib.TranslationClient(proc.target, "toy").wait_until_available(60)

    def together(calls):
      return test_serving_batching.together(proc.target, calls, version=1)

    raw = together([lambda c: c.predict("a2b", {"images": _images(1, 4)}),
                    lambda c: c.predict("a2b", {"images": _images(1, 6)})])
    encoded = together([lambda c, s=s: c.predict("a2b_encoded", {"image_bytes": np.array(
        [png_bytes(_images(1, s)[0])], dtype=object)}) for s in (4, 6)])
    with urllib.request.urlopen(f"http://127.0.0.1:{rest_port}/metrics", timeout=30) as response:
      page = response.read().decode()
  message = ("FAILED_PRECONDITION: Tensors with name 'a2b_images:0' from different tasks have different shapes and "
             "padding is turned off. Set pad_variable_length_inputs to true, or ensure that all tensors with the same "
             "name have equal dimensions starting with the first dim.")
  assert [(r.code, str(r)) for r in raw] == [(grpc.StatusCode.FAILED_PRECONDITION, message)] * 2
  assert not [r for r in encoded if isinstance(r, Exception)], encoded
  counts = {s.labels["status"]: s.value for f in text_string_to_metric_families(page) for s in f.samples
            if s.name == ":tensorflow:serving:request_count" and s.labels.get("model_name") == "toy"}
  assert counts == {"FAILED_PRECONDITION": 2, "OK": 2}
