"""Warmup requests: `assets.extra/tf_serving_warmup_requests` inside a SavedModel.

TF Serving's format: a TFRecord file (uncompressed) of PredictionLog protos whose `predict_log.request` is a
PredictRequest; the server replays them when a version loads, before it serves traffic, so that the first
real request does not pay for tracing and memory allocation. At most 1000 records are read.
"""

from __future__ import annotations

import os

import numpy as np
import tensorflow as tf
from tensorflow_serving.apis import model_pb2, predict_pb2, prediction_log_pb2

from serving import tensors
from serving.config import WARMUP_RELATIVE_PATH

MAX_WARMUP_RECORDS = 1000
WARMUP_FILE_NAME = os.path.basename(WARMUP_RELATIVE_PATH)


def warmup_file_path(path: str) -> str:
  """The warmup file for `path`: `path` itself if it is named tf_serving_warmup_requests, else the file inside
  the SavedModel directory `path` (`<path>/assets.extra/tf_serving_warmup_requests`)."""
  if os.path.basename(os.path.normpath(path)) == WARMUP_FILE_NAME:
    return path
  return os.path.join(path, WARMUP_RELATIVE_PATH)


def make_predict_request(model_name: str, signature_name: str, inputs: dict) -> predict_pb2.PredictRequest:
  """A PredictRequest for `signature_name` with numpy `inputs` (name -> array, e.g. uint8 [N, H, W, 3])."""
  request = predict_pb2.PredictRequest(
      model_spec=model_pb2.ModelSpec(name=model_name, signature_name=signature_name))
  for name, value in inputs.items():
    request.inputs[name].CopyFrom(tensors.to_tensor_proto(value))
  return request


def write_warmup_file(path: str, model_name: str, requests: list) -> str:
  """Writes warmup requests for a SavedModel.

  Args:
    path: the SavedModel directory (the file goes to `<path>/assets.extra/tf_serving_warmup_requests`), or
      that file's own path.
    model_name: the name put in each request's model_spec (the server ignores it during warmup).
    requests: list of (signature_name, {input_name: np.ndarray}), e.g.
      [("a2b", {"images": uint8 [1, 64, 64, 3]}), ("a2b_encoded", {"image_bytes": object [1] of PNG bytes})].
  Returns:
    The path of the written file.
  """
  if not requests:
    raise ValueError("write_warmup_file: no requests given; pass at least one (signature_name, inputs) pair")
  if len(requests) > MAX_WARMUP_RECORDS:
    raise ValueError(f"write_warmup_file: {len(requests)} requests, but TF Serving reads at most "
                     f"{MAX_WARMUP_RECORDS}")
  file_path = warmup_file_path(path)
  os.makedirs(os.path.dirname(file_path) or ".", exist_ok=True)
  with tf.io.TFRecordWriter(file_path) as writer:
    for signature_name, inputs in requests:
      if not isinstance(inputs, dict) or not inputs:
        raise ValueError(f"warmup request for {signature_name!r}: inputs must be a non-empty dict name -> array")
      log = prediction_log_pb2.PredictionLog(
          predict_log=prediction_log_pb2.PredictLog(
              request=make_predict_request(model_name, signature_name, inputs)))
      writer.write(log.SerializeToString())
  return file_path


def read_warmup_records(path: str) -> list:
  """The PredictionLog protos of a warmup file (SavedModel dir or file path); [] if there is none."""
  file_path = warmup_file_path(path)
  if not tf.io.gfile.exists(file_path):
    return []
  logs = []
  for record in tf.data.TFRecordDataset(file_path).take(MAX_WARMUP_RECORDS + 1).as_numpy_iterator():
    if len(logs) == MAX_WARMUP_RECORDS:
      raise ValueError(f"{file_path}: more than {MAX_WARMUP_RECORDS} warmup records; TF Serving rejects that")
    log = prediction_log_pb2.PredictionLog()
    log.ParseFromString(record)
    logs.append(log)
  return logs


def read_warmup_file(path: str) -> list:
  """Reads warmup requests back as written: list of (signature_name, {input_name: np.ndarray}).

  Only predict logs are returned (the only kind this project writes); an empty list if there is no file.
  """
  out = []
  for log in read_warmup_records(path):
    if log.WhichOneof("log_type") != "predict_log":
      continue
    request = log.predict_log.request
    signature = request.model_spec.signature_name or "serving_default"
    out.append((signature, {k: tensors.from_tensor_proto(v) for k, v in request.inputs.items()}))
  return out
