"""One loaded model version: a SavedModel called through its signatures, with TF Serving's request checks.

Any SavedModel works: signature metadata comes from `saved_model.pb` (the SignatureDefs that GetModelMetadata
returns verbatim) and execution from `tf.saved_model.load(path).signatures[name](**inputs)`.
"""

from __future__ import annotations

import logging
import os
import time

import grpc
import numpy as np
import tensorflow as tf
from tensorflow.core.protobuf import meta_graph_pb2, saved_model_pb2

from serving import batching, image_size, tensors, warmup
from serving.errors import ServingError, from_exception

DEFAULT_SIGNATURE = "serving_default"
_INVALID = grpc.StatusCode.INVALID_ARGUMENT


def read_signature_defs(path: str) -> dict:
  """The SignatureDefs (name -> meta_graph_pb2.SignatureDef) of the "serve" MetaGraph in `path/saved_model.pb`."""
  pb_path = os.path.join(path, "saved_model.pb")
  if not os.path.exists(pb_path):
    raise ServingError(grpc.StatusCode.NOT_FOUND,
                       f"Could not find SavedModel .pb or .pbtxt at supplied export directory path: {path}")
  saved_model = saved_model_pb2.SavedModel()
  with open(pb_path, "rb") as f:
    try:
      saved_model.ParseFromString(f.read())
    except Exception:  # protobuf raises DecodeError (a plain Exception subclass)
      raise ServingError(grpc.StatusCode.DATA_LOSS, f"Can't parse {pb_path} as binary proto") from None
  for meta_graph in saved_model.meta_graphs:
    if "serve" in meta_graph.meta_info_def.tags:
      return dict(meta_graph.signature_def)
  raise ServingError(grpc.StatusCode.NOT_FOUND,
                     f"Could not find meta graph def matching supplied tags: {{ serve }} in {path}")


def _shape_of(info: meta_graph_pb2.TensorInfo):
  """TensorInfo -> tuple of dims (-1 unknown) or None for unknown rank."""
  if info.tensor_shape.unknown_rank:
    return None
  return tuple(int(d.size) for d in info.tensor_shape.dim)


def _format_shape(shape) -> str:
  return "<unknown>" if shape is None else "[" + ",".join(str(d) for d in shape) + "]"


class Servable:
  """A loaded SavedModel version: `predict(signature, inputs, output_filter)` -> outputs (numpy).

  Attributes:
    name, version, path: what was loaded from where.
    signature_defs: name -> SignatureDef (for GetModelMetadata).
  """

  def __init__(self, name: str, version: int, path: str, batching_config=None, max_image_pixels: int = 0,
               metrics=None):
    """Loads `path` (raises ServingError on failure). With `batching_config` requests are batched on dim 0.

    `max_image_pixels` > 0 caps the pixels of any one input (see check_pixels); it also bounds how far a few
    values may be expanded to fill a declared shape (12 bytes a pixel: float32 RGB). 0 = no cap.
    `metrics` (serving.metrics.ServerMetrics or None) records runtime latency and batch sizes.
    """
    self._metrics = metrics
    self.name = name
    self.version = int(version)
    self.path = path
    self.max_image_pixels = int(max_image_pixels)
    self.max_fill_bytes = 12 * self.max_image_pixels if self.max_image_pixels > 0 else tensors.MAX_FILL_BYTES
    self.signature_defs = read_signature_defs(path)
    try:
      self._loaded = tf.saved_model.load(path, tags=["serve"])
    except Exception as e:  # anything the loader raises means this version cannot serve
      raise from_exception(e) from None
    self._functions = dict(self._loaded.signatures)
    self._batcher = (batching.BatchScheduler(batching_config, self._run, name=f"{name}:{version}",
                                             on_batch=metrics.record_batch if metrics is not None else None)
                     if batching_config is not None else None)

  def close(self) -> None:
    """Stops the batching threads (after queued batches ran); in-flight direct calls finish on their own."""
    if self._batcher is not None:
      self._batcher.close()

  def warmup(self, iterations: int = 1) -> int:
    """Replays assets.extra/tf_serving_warmup_requests `iterations` times; returns the number of requests run.

    A failing warmup request fails the load (ServingError naming the record).
    """
    records = warmup.read_warmup_records(self.path)
    for index, log in enumerate(records):
      if log.WhichOneof("log_type") != "predict_log":
        raise ServingError(_INVALID, f"Unsupported log_type for warmup: {log.WhichOneof('log_type')}; only "
                                     "predict_log records are supported")
      request = log.predict_log.request
      inputs = {}
      for key, proto in request.inputs.items():
        inputs[key] = self.parse_input(key, proto, self.max_fill_bytes)
      for _ in range(max(1, iterations)):
        try:
          self.predict(request.model_spec.signature_name, inputs, tuple(request.output_filter))
        except ServingError as e:
          raise ServingError(e.code, f"Warmup request {index} failed: {e.message}") from None
    return len(records)

  @staticmethod
  def parse_input(alias: str, proto, max_fill_bytes: int = tensors.MAX_FILL_BYTES) -> np.ndarray:
    """TensorProto -> numpy, or INVALID_ARGUMENT "tensor parsing error: <alias>"."""
    try:
      return tensors.from_tensor_proto(proto, max_fill_bytes)
    except tensors.TensorParseError:
      raise ServingError(_INVALID, f"tensor parsing error: {alias}") from None

  def check_pixels(self, alias: str, shape) -> None:
    """The image size cap on a shape (declared or parsed): a rank-4 input [N, H, W, C] may hold at most
    `max_image_pixels` pixels (N * H * W), else INVALID_ARGUMENT naming the cap. Checked on the declared
    shape before a request's tensors are parsed, so an oversized request never allocates its pixels.
    """
    if self.max_image_pixels <= 0 or len(shape) != 4:
      return
    count, height, width = (int(d) for d in shape[:3])
    pixels = count * height * width
    if pixels > self.max_image_pixels:
      raise ServingError(_INVALID, f"Input {alias} has {pixels} pixels ({count} images of {height}x{width}); "
                                   f"this server accepts at most {self.max_image_pixels} pixels per input "
                                   "(--max_image_pixels)")

  def check_encoded_pixels(self, alias: str, array: np.ndarray) -> None:
    """The cap on a string input of encoded images: the pixels their headers declare (image_size), summed.

    Bytes whose header is unreadable are left to the model (it answers INVALID_ARGUMENT, as TF Serving).
    """
    if self.max_image_pixels <= 0:
      return
    pixels, largest = 0, None
    for data in array.reshape(-1):
      size = image_size.declared_size(bytes(data)) if isinstance(data, (bytes, bytearray)) else None
      if size is None:
        continue
      pixels += size[0] * size[1]
      if largest is None or size[0] * size[1] > largest[0] * largest[1]:
        largest = size
    if pixels > self.max_image_pixels:
      raise ServingError(_INVALID, f"Input {alias} decodes to {pixels} pixels (largest image {largest[0]}x"
                                   f"{largest[1]}); this server accepts at most {self.max_image_pixels} pixels "
                                   "per input (--max_image_pixels)")

  def signature(self, signature_name: str):
    """(resolved name, SignatureDef) or FAILED_PRECONDITION with TF Serving's message."""
    name = signature_name or DEFAULT_SIGNATURE
    signature = self.signature_defs.get(name)
    if signature is None or name not in self._functions:
      raise ServingError(grpc.StatusCode.FAILED_PRECONDITION, f"Serving signature key \"{name}\" not found.")
    return name, signature

  def predict(self, signature_name: str, inputs: dict, output_filter=()) -> dict:
    """Runs one request.

    Args:
      signature_name: "" means serving_default.
      inputs: alias -> numpy array (already parsed from the wire).
      output_filter: aliases to return (all outputs when empty).
    Returns:
      alias -> numpy array.
    Raises:
      ServingError with TF Serving's code and message for every bad request and model error.
    """
    name, signature = self.signature(signature_name)
    self.check_input_names(signature, inputs)
    outputs = self.check_output_filter(signature, output_filter)
    self.check_input_values(signature, inputs)
    for alias in sorted(inputs):
      if tensors.is_string(signature.inputs[alias].dtype):
        self.check_encoded_pixels(alias, inputs[alias])
      else:
        self.check_pixels(alias, inputs[alias].shape)
    start = time.monotonic()
    if self._batcher is not None and batching.is_batchable(inputs):
      result = self._batcher.submit(name, inputs, outputs,
                                    tensor_names={k: v.name for k, v in signature.inputs.items()})
    else:
      result = self._run(name, inputs, outputs)
    if self._metrics is not None:  # TF Serving times Session::Run (its batching session included), on success
      self._metrics.record_runtime(self.name, time.monotonic() - start)
    return result

  @staticmethod
  def check_input_names(signature, aliases) -> None:
    """TF Serving's checks of the input names, with its exact messages: the count (predict_util.cc
    VerifyRequestInputsSize), then each signature input must be sent (saved_model/util.cc GetInputValues).
    """
    expected = set(signature.inputs.keys())
    sent = set(aliases)
    if len(sent) != len(expected):
      raise ServingError(_INVALID, (
          f"input size does not match signature: {len(sent)}!={len(expected)} len({{{','.join(sorted(sent))}}}) "
          f"!= len({{{','.join(sorted(expected))}}}). Sent extra: {{{','.join(sorted(sent - expected))}}}. "
          f"Missing but required: {{{','.join(sorted(expected - sent))}}}."))
    for alias in sorted(expected):
      if alias not in sent:
        raise ServingError(_INVALID, (
            f"Signature input alias: {alias}(feed name: {signature.inputs[alias].name}) not found in request and "
            f"no default value provided. Inputs expected to be in the request {{{','.join(sorted(sent))}}}, or "
            "default input alias set: "))

  @staticmethod
  def check_input_values(signature, inputs: dict) -> None:
    """Each input's dtype (TF's FunctionCallFrame message, as TF Serving's Session::Run answers) and shape.

    The argument index is the input's position among the signature's aliases in sorted order. The shape
    check is this server's own (a SavedModel's concrete function refuses other shapes; TF Serving feeds the
    graph and lets its ops fail): "Expected input <alias> to have shape [..] but get [..].".
    """
    for index, alias in enumerate(sorted(signature.inputs.keys())):
      info = signature.inputs[alias]
      array = inputs[alias]
      got = tensors.datatype_of(array)
      if got != info.dtype:
        raise ServingError(_INVALID, f"Expects arg[{index}] to be {tensors.dtype_name(info.dtype)} but "
                                     f"{tensors.dtype_name(got)} is provided")
      shape = _shape_of(info)
      if shape is not None and (len(shape) != array.ndim or
                                any(d not in (-1, g) for d, g in zip(shape, array.shape))):
        raise ServingError(_INVALID, f"Expected input {alias} to have shape {_format_shape(shape)} but get "
                                     f"{_format_shape(array.shape)}.")

  @classmethod
  def check_inputs(cls, signature, inputs: dict) -> None:
    """check_input_names then check_input_values."""
    cls.check_input_names(signature, inputs)
    cls.check_input_values(signature, inputs)

  @staticmethod
  def check_output_filter(signature, output_filter) -> tuple:
    """The output aliases to compute, or INVALID_ARGUMENT with TF Serving's message."""
    seen = []
    for alias in output_filter:
      if alias not in signature.outputs:
        raise ServingError(_INVALID, f"output tensor alias not found in signature: {alias} Outputs expected to "
                                     f"be in the set {{{','.join(sorted(signature.outputs.keys()))}}}.")
      if alias in seen:
        raise ServingError(_INVALID, f"duplicate output tensor alias: {alias}")
      seen.append(alias)
    return tuple(seen) if seen else tuple(sorted(signature.outputs.keys()))

  def _run(self, signature_name: str, inputs: dict, outputs: tuple) -> dict:
    """Calls the signature function on `inputs` and returns the `outputs` as numpy arrays."""
    function = self._functions[signature_name]
    try:
      result = function(**{k: tf.constant(v) for k, v in inputs.items()})
      return {alias: result[alias].numpy() for alias in outputs}
    except Exception as e:  # a model error must become a status, never take the server down
      error = from_exception(e)
      if error.code == grpc.StatusCode.UNKNOWN:
        logging.exception("model %s:%d signature %s failed", self.name, self.version, signature_name)
      raise error from None
