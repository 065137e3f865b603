"""Tiny SavedModels in the DESIGN.md signature shapes (test fixtures for the model server), and tests of the
server's per-version layer (serving.servable) on them, without any network.

The fixtures are plain tf.Module + tf.function signatures, saved with tf.saved_model.save: the server must load
ANY SavedModel, so these are real models, only small ones.
"""

from __future__ import annotations

import io
import os

import grpc
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from serving import warmup
from serving.errors import ServingError
from serving.servable import Servable

IMAGES = tf.TensorSpec([None, None, None, 3], tf.uint8, name="images")


class ToyTranslator(tf.Module):
  """a2b = 255 - images, b2a = images; each answer also says which version and what batch size produced it."""

  def __init__(self, version: int):
    super().__init__()
    self.version = tf.constant(version, tf.int64)
    self.calls = tf.Variable(0, dtype=tf.int64)

  def _meta(self, images):
    count = tf.shape(images)[0]
    self.calls.assign_add(1)
    return {"version": tf.fill([count], self.version), "batch_size": tf.fill([count], count)}

  @tf.function(input_signature=[IMAGES])
  def a2b(self, images):
    return {"images": 255 - images, **self._meta(images)}

  @tf.function(input_signature=[IMAGES])
  def b2a(self, images):
    return {"images": tf.identity(images), **self._meta(images)}

  @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="image_bytes")])
  def a2b_encoded(self, image_bytes):
    def one(data):
      image = tf.io.decode_image(data, channels=3, expand_animations=False)
      return tf.io.encode_png(255 - image)
    return {"image_bytes": tf.map_fn(one, image_bytes, fn_output_signature=tf.string)}

  @tf.function(input_signature=[IMAGES])
  def a2b_fixed(self, images):
    """Only 8x8 images: any other size is an InvalidArgumentError raised by the model at run time."""
    size = tf.shape(images)[1:3]
    tf.debugging.assert_equal(size, tf.constant([8, 8]), message="this model needs 8x8 images; got another size")
    return {"images": 255 - images}

  @tf.function(input_signature=[tf.TensorSpec([], tf.float64, name="seconds")])
  def sleep(self, seconds):
    """Counts the call, then busy-waits `seconds` (to have a request in flight)."""
    self.calls.assign_add(1)
    start = tf.timestamp()
    elapsed = tf.while_loop(lambda e: e < seconds, lambda e: tf.timestamp() - start, [tf.constant(0.0, tf.float64)])
    return {"slept": elapsed[0] if isinstance(elapsed, (list, tuple)) else elapsed}

  @tf.function(input_signature=[])
  def calls_made(self):
    return {"calls": tf.identity(self.calls)}


class ToyMunit(tf.Module):
  """MUNIT-shaped: a2b takes images + seed and returns images + style; a2b_style; a2b_reference."""

  @tf.function(input_signature=[IMAGES, tf.TensorSpec([None], tf.int64, name="seed")])
  def a2b(self, images, seed):
    style = tf.map_fn(lambda s: tf.random.stateless_normal([2], seed=tf.stack([s, 0])), seed,
                      fn_output_signature=tf.float32)
    return {"images": self._apply(images, style), "style": style}

  @tf.function(input_signature=[IMAGES, tf.TensorSpec([None, 2], tf.float32, name="style")])
  def a2b_style(self, images, style):
    return {"images": self._apply(images, style)}

  @tf.function(input_signature=[IMAGES, tf.TensorSpec([None, None, None, 3], tf.uint8, name="reference")])
  def a2b_reference(self, images, reference):
    mean = tf.reduce_mean(tf.cast(reference, tf.float32), axis=[1, 2]) / 255.0
    style = mean[:, :2]
    return {"images": self._apply(images, style), "style": style}

  @staticmethod
  def _apply(images, style):
    shift = tf.cast(tf.round(tf.abs(style[:, 0]) * 10.0), tf.int32)
    out = (tf.cast(images, tf.int32) + shift[:, None, None, None]) % 256
    return tf.cast(out, tf.uint8)


class ToyUgatit(tf.Module):
  """U-GAT-IT-shaped: a2b returns images and attention [N, H, W] in [0, 1]."""

  @tf.function(input_signature=[IMAGES])
  def a2b(self, images):
    attention = tf.reduce_mean(tf.cast(images, tf.float32), axis=-1) / 255.0
    return {"images": 255 - images, "attention": attention}


def save_toy(module: tf.Module, path: str, warmup_requests=None) -> str:
  """Saves `module` with every tf.function attribute as a signature (serving_default = a2b)."""
  signatures = {}
  for name in dir(type(module)):
    fn = getattr(module, name, None)
    if isinstance(fn, tf.types.experimental.PolymorphicFunction) or hasattr(fn, "get_concrete_function"):
      signatures[name] = fn.get_concrete_function()
  signatures["serving_default"] = signatures["a2b"]
  tf.saved_model.save(module, path, signatures=signatures)
  if warmup_requests:
    warmup.write_warmup_file(path, "toy", warmup_requests)
  return path


def build_toy_versions(base_path: str, versions=(1, 2)) -> str:
  """base_path/<v>/ = ToyTranslator(v) for each v, with one warmup request each."""
  for v in versions:
    save_toy(ToyTranslator(v), os.path.join(base_path, str(v)),
             warmup_requests=[("a2b", {"images": np.zeros([1, 4, 4, 3], np.uint8)})])
  return base_path


def png_bytes(array: np.ndarray) -> bytes:
  """uint8 [H, W, 3] -> PNG bytes."""
  buffer = io.BytesIO()
  Image.fromarray(array).save(buffer, format="PNG")
  return buffer.getvalue()


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
  base = build_toy_versions(str(tmp_path_factory.mktemp("toy")), versions=(1,))
  servable = Servable("toy", 1, os.path.join(base, "1"))
  yield servable
  servable.close()


def _images(n=2, size=4, seed=0):
  return np.random.default_rng(seed).integers(0, 256, size=[n, size, size, 3], dtype=np.uint8)


def test_every_signature_of_the_savedmodel_is_served(toy):
  images = _images()
  assert set(toy.signature_defs) >= {"a2b", "b2a", "a2b_encoded", "serving_default", "a2b_fixed", "sleep"}
  np.testing.assert_array_equal(toy.predict("a2b", {"images": images})["images"], 255 - images)
  np.testing.assert_array_equal(toy.predict("", {"images": images})["images"], 255 - images)
  np.testing.assert_array_equal(toy.predict("b2a", {"images": images})["images"], images)
  out = toy.predict("a2b_encoded", {"image_bytes": np.array([png_bytes(images[0])], dtype=object)})
  decoded = np.asarray(Image.open(io.BytesIO(out["image_bytes"][0])))
  np.testing.assert_array_equal(decoded, 255 - images[0])


# What a2b_fixed (the model's own tf.debugging.assert_equal) answers for 4x4 images: TF's message and node,
# without the Python eager wrapper (serving.errors.runtime_message).
A2B_FIXED_4X4 = ("assertion failed: [this model needs 8x8 images; got another size] [Condition x == y did not hold "
                 "element-wise:] [x (strided_slice:0) = ] [4 4] [y (Const:0) = ] [8 8]\n"
                 "\t [[{{node assert_equal_1/Assert/Assert}}]]")


def _code(fn):
  with pytest.raises(ServingError) as info:
    fn()
  return info.value.code, info.value.message


def test_request_errors_carry_tf_serving_codes_and_messages(toy):
  images = _images()
  assert _code(lambda: toy.predict("nope", {"images": images})) == (
      grpc.StatusCode.FAILED_PRECONDITION, 'Serving signature key "nope" not found.')
  assert _code(lambda: toy.predict("a2b", {})) == (
      grpc.StatusCode.INVALID_ARGUMENT, "input size does not match signature: 0!=1 len({}) != len({images}). "
      "Sent extra: {}. Missing but required: {images}.")
  assert _code(lambda: toy.predict("a2b", {"pixels": images})) == (
      grpc.StatusCode.INVALID_ARGUMENT,
      "Signature input alias: images(feed name: a2b_images:0) not found in request and no default value "
      "provided. Inputs expected to be in the request {pixels}, or default input alias set: ")
  assert _code(lambda: toy.predict("a2b", {"images": images.astype(np.float32)})) == (
      grpc.StatusCode.INVALID_ARGUMENT, "Expects arg[0] to be uint8 but float is provided")
  assert _code(lambda: toy.predict("a2b", {"images": images[..., :2]})) == (
      grpc.StatusCode.INVALID_ARGUMENT, "Expected input images to have shape [-1,-1,-1,3] but get [2,4,4,2].")
  assert _code(lambda: toy.predict("a2b", {"images": images}, ("nope",))) == (
      grpc.StatusCode.INVALID_ARGUMENT, "output tensor alias not found in signature: nope Outputs expected to be "
      "in the set {batch_size,images,version}.")
  assert _code(lambda: toy.predict("a2b_fixed", {"images": images})) == (grpc.StatusCode.INVALID_ARGUMENT, A2B_FIXED_4X4)
  # and the servable still answers afterwards
  assert toy.predict("a2b_fixed", {"images": _images(size=8)})["images"].shape == (2, 8, 8, 3)


def test_output_filter_returns_only_the_named_outputs(toy):
  out = toy.predict("a2b", {"images": _images()}, ("version",))
  assert list(out) == ["version"]
  np.testing.assert_array_equal(out["version"], [1, 1])


def test_warmup_file_round_trip_and_replay(tmp_path, toy):
  images = _images(1)
  path = warmup.write_warmup_file(str(tmp_path), "toy", [("a2b", {"images": images}),
                                                         ("b2a", {"images": images[:, :2]})])
  assert path == os.path.join(str(tmp_path), "assets.extra", "tf_serving_warmup_requests")
  records = warmup.read_warmup_file(str(tmp_path))
  assert [name for name, _ in records] == ["a2b", "b2a"]
  np.testing.assert_array_equal(records[1][1]["images"], images[:, :2])
  assert warmup.read_warmup_file(path)[0][0] == "a2b"
  before = int(toy.predict("calls_made", {})["calls"])
  assert toy.warmup(iterations=2) == 1  # the fixture's own file: one record
  assert int(toy.predict("calls_made", {})["calls"]) == before + 2


def test_a_failing_warmup_request_fails_the_load(tmp_path):
  path = save_toy(ToyTranslator(7), str(tmp_path / "7"),
                  warmup_requests=[("a2b", {"images": np.zeros([1, 4, 4, 1], np.uint8)})])
  servable = Servable("toy", 7, path)
  assert _code(lambda: servable.warmup()) == (
      grpc.StatusCode.INVALID_ARGUMENT,
      "Warmup request 0 failed: Expected input images to have shape [-1,-1,-1,3] but get [1,4,4,1].")


def test_tensor_protos_round_trip_and_malformed_ones_are_parse_errors():
  from tensorflow.core.framework import tensor_pb2, tensor_shape_pb2, types_pb2
  from serving import tensors
  for value in (np.arange(6, dtype=np.uint8).reshape(2, 3), np.float32([[1.5, -2]]), np.int64([7, -8]),
                np.array([b"a", b"\x00b"], dtype=object), np.float16([0.5]), np.bool_([True, False])):
    back = tensors.from_tensor_proto(tensors.to_tensor_proto(value))
    assert back.dtype == value.dtype and back.shape == value.shape and back.tolist() == value.tolist()
  shape = tensor_shape_pb2.TensorShapeProto(dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=3)])
  filled = tensor_pb2.TensorProto(dtype=types_pb2.DT_INT32, tensor_shape=shape, int_val=[5])
  assert tensors.from_tensor_proto(filled).tolist() == [5, 5, 5]  # one value fills the shape, as in TF
  typed = tensor_pb2.TensorProto(dtype=types_pb2.DT_FLOAT, tensor_shape=shape, float_val=[1, 2, 3])
  assert tensors.from_tensor_proto(typed).tolist() == [1.0, 2.0, 3.0]
  huge = tensor_shape_pb2.TensorShapeProto(dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=1 << 40)])
  for bad in (tensor_pb2.TensorProto(dtype=types_pb2.DT_INT32, tensor_shape=shape, int_val=[1, 2]),
              tensor_pb2.TensorProto(dtype=types_pb2.DT_UINT8, tensor_shape=shape, tensor_content=b"ab"),
              tensor_pb2.TensorProto(dtype=types_pb2.DT_FLOAT, tensor_shape=huge),
              tensor_pb2.TensorProto(dtype=types_pb2.DT_RESOURCE, tensor_shape=shape)):
    with pytest.raises(tensors.TensorParseError):
      tensors.from_tensor_proto(bad)
