"""One loaded model version: a SavedModel called through its signatures, with TF Serving's request checks.

Any SavedModel works: signature metadata comes from `saved_model.pb` (the SignatureDefs that GetModelMetadata
returns verbatim) and execution from `tf.saved_model.load(path).signatures[name](**inputs)`.
"""

from __future__ import annotations

import logging
import os

import grpc
import numpy as np
import tensorflow as tf
from tensorflow.core.protobuf import meta_graph_pb2, saved_model_pb2

from serving import batching, tensors, warmup
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
      raise ServingError(grpc.StatusCode.DATA_LOSS, f"Could not parse SavedModel proto at {pb_path}") from None
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

  def __init__(self, name: str, version: int, path: str, batching_config=None):
    """Loads `path` (raises ServingError on failure). With `batching_config` requests are batched on dim 0."""
    self.name = name
    self.version = int(version)
    self.path = path
    self.signature_defs = read_signature_defs(path)
    try:
      self._loaded = tf.saved_model.load(path, tags=["serve"])
    except Exception as e:  # anything the loader raises means this version cannot serve
      raise from_exception(e) from None
    self._functions = dict(self._loaded.signatures)
    self._batcher = (batching.BatchScheduler(batching_config, self._run, name=f"{name}:{version}")
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
        inputs[key] = self.parse_input(key, proto)
      for _ in range(max(1, iterations)):
        try:
          self.predict(request.model_spec.signature_name, inputs, tuple(request.output_filter))
        except ServingError as e:
          raise ServingError(e.code, f"Warmup request {index} failed: {e.message}") from None
    return len(records)

  @staticmethod
  def parse_input(alias: str, proto) -> np.ndarray:
    """TensorProto -> numpy, or INVALID_ARGUMENT "tensor parsing error: <alias>"."""
    try:
      return tensors.from_tensor_proto(proto)
    except tensors.TensorParseError:
      raise ServingError(_INVALID, f"tensor parsing error: {alias}") from None

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
    self.check_inputs(signature, inputs)
    outputs = self.check_output_filter(signature, output_filter)
    if self._batcher is not None and batching.is_batchable(inputs):
      return self._batcher.submit(name, inputs, outputs)
    return self._run(name, inputs, outputs)

  @staticmethod
  def check_inputs(signature, inputs: dict) -> None:
    """TF Serving's input checks: count/names (exact messages), then dtype and shape against the SignatureDef."""
    expected = set(signature.inputs.keys())
    sent = set(inputs.keys())
    if len(sent) != len(expected):
      raise ServingError(_INVALID, (
          f"input size does not match signature: {len(sent)}!={len(expected)} len({{{','.join(sorted(sent))}}}) "
          f"!= len({{{','.join(sorted(expected))}}}). Sent extra: {{{','.join(sorted(sent - expected))}}}. "
          f"Missing but required: {{{','.join(sorted(expected - sent))}}}."))
    for alias in sorted(sent):
      if alias not in expected:
        raise ServingError(_INVALID, f"input tensor alias not found in signature: {alias}. Inputs expected to be "
                                     f"in the set {{{','.join(sorted(expected))}}}.")
    for alias in sorted(sent):
      info = signature.inputs[alias]
      array = inputs[alias]
      got = tensors.datatype_of(array)
      if got != info.dtype:
        raise ServingError(_INVALID, f"Expected input {alias} to be {tensors.dtype_name(info.dtype)} but get "
                                     f"{tensors.dtype_name(got)}.")
      shape = _shape_of(info)
      if shape is not None and (len(shape) != array.ndim or
                                any(d not in (-1, g) for d, g in zip(shape, array.shape))):
        raise ServingError(_INVALID, f"Expected input {alias} to have shape {_format_shape(shape)} but get "
                                     f"{_format_shape(array.shape)}.")

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
