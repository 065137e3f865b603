"""TF Serving's request handlers, one per call, shared by both front ends: gRPC (serving.server_lib) and REST
(serving.rest) turn their wire format into these protos and call them; errors are ServingErrors with TF Serving's
codes and messages.
"""

from __future__ import annotations

import grpc
from tensorflow_serving.apis import get_model_metadata_pb2, get_model_status_pb2, predict_pb2, status_pb2

from serving import tensors
from serving.errors import ServingError
from serving.model_manager import ModelManager
from serving.servable import Servable

SIGNATURE_DEF_FIELD = "signature_def"  # the only GetModelMetadata field TF Serving supports

_STATE_ENUM = get_model_status_pb2.ModelVersionStatus.State


def predict(manager: ModelManager, request: predict_pb2.PredictRequest) -> predict_pb2.PredictResponse:
  """One Predict call: resolve the version, check and run the signature, fill the response as TF Serving."""
  servable = manager.resolve(request.model_spec)
  signature_name, signature = servable.signature(request.model_spec.signature_name)
  # TF Serving's order: input names, then each input parsed; the pixel cap runs on the declared shape first,
  # so an oversized (or few-values-fill-a-huge-shape) request is refused before anything is allocated.
  Servable.check_input_names(signature, request.inputs.keys())
  inputs = {}
  for alias in sorted(signature.inputs.keys()):
    proto = request.inputs[alias]
    if not proto.tensor_shape.unknown_rank:
      servable.check_pixels(alias, [d.size for d in proto.tensor_shape.dim])
    inputs[alias] = Servable.parse_input(alias, proto, servable.max_fill_bytes)
  outputs = servable.predict(signature_name, inputs, tuple(request.output_filter))
  response = predict_pb2.PredictResponse()
  response.model_spec.name = request.model_spec.name
  response.model_spec.version.value = servable.version
  response.model_spec.signature_name = signature_name
  for alias, value in outputs.items():
    response.outputs[alias].CopyFrom(tensors.to_tensor_proto(value))
  return response


def model_metadata(manager: ModelManager, request) -> get_model_metadata_pb2.GetModelMetadataResponse:
  """GetModelMetadata: the SignatureDefMap of the resolved version (only "signature_def" is supported)."""
  if not request.HasField("model_spec"):
    raise ServingError(grpc.StatusCode.INVALID_ARGUMENT, "Missing ModelSpec")
  if not request.metadata_field:
    raise ServingError(grpc.StatusCode.INVALID_ARGUMENT,
                       "GetModelMetadataRequest must specify at least one metadata_field")
  for field in request.metadata_field:
    if field != SIGNATURE_DEF_FIELD:
      raise ServingError(grpc.StatusCode.INVALID_ARGUMENT, f"Metadata field {field} is not supported")
  servable = manager.resolve(request.model_spec)
  response = get_model_metadata_pb2.GetModelMetadataResponse()
  response.model_spec.name = servable.name
  response.model_spec.version.value = servable.version
  signature_map = get_model_metadata_pb2.SignatureDefMap()
  for name, signature in servable.signature_defs.items():
    signature_map.signature_def[name].CopyFrom(signature)
  response.metadata[SIGNATURE_DEF_FIELD].Pack(signature_map)
  return response


def model_status(manager: ModelManager, request) -> get_model_status_pb2.GetModelStatusResponse:
  """GetModelStatus: every version's state (or the requested one's), highest first."""
  if not request.HasField("model_spec"):
    raise ServingError(grpc.StatusCode.INVALID_ARGUMENT, "Missing ModelSpec")
  spec = request.model_spec
  version = spec.version.value if spec.HasField("version") else None
  response = get_model_status_pb2.GetModelStatusResponse()
  for status in manager.status(spec.name, version):
    response.model_version_status.add(
        version=status.version, state=_STATE_ENUM.Value(status.state),
        status=status_pb2.StatusProto(error_code=status.error_code, error_message=status.error_message))
  return response
