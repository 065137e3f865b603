"""TF Serving's wire protos (PredictRequest, TensorProto, ModelSpec, ... and the gRPC stubs) without TensorFlow.

tensorflow-serving-api's generated modules import TensorFlow's own generated protos (`tensorflow.core.framework.
tensor_pb2`, ...). Those are plain protobuf modules, but importing anything under `tensorflow.` first runs
`tensorflow/__init__.py`, i.e. all of TensorFlow (seconds and half a gigabyte) for a client that only needs
messages. So when TensorFlow is not loaded yet, the `tensorflow` package is stood in for, during these imports
only, by an empty package module with the real package's path: the submodules (pure protobuf) load from the
installed TensorFlow, its `__init__` does not run, and the stand-in is removed again. The loaded modules stay in
sys.modules under their real names, so a later `import tensorflow` reuses them: one TensorProto class for both
(`tf.make_tensor_proto` returns the same class the client builds), one descriptor pool entry per file.
When TensorFlow is already imported (the server) this is a plain import.

Import these modules from here (`from serving.wire import predict_pb2`), not from tensorflow_serving.apis, in
code a client loads; it must run before any other import of them in the process (a module-level import does).
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import types

_MODULES = {
    "tensor_pb2": "tensorflow.core.framework.tensor_pb2",
    "tensor_shape_pb2": "tensorflow.core.framework.tensor_shape_pb2",
    "types_pb2": "tensorflow.core.framework.types_pb2",
    "get_model_metadata_pb2": "tensorflow_serving.apis.get_model_metadata_pb2",
    "get_model_status_pb2": "tensorflow_serving.apis.get_model_status_pb2",
    "model_pb2": "tensorflow_serving.apis.model_pb2",
    "model_service_pb2_grpc": "tensorflow_serving.apis.model_service_pb2_grpc",
    "predict_pb2": "tensorflow_serving.apis.predict_pb2",
    "prediction_service_pb2_grpc": "tensorflow_serving.apis.prediction_service_pb2_grpc",
}


def _import_all() -> dict:
  return {alias: importlib.import_module(name) for alias, name in _MODULES.items()}


def _import_without_tensorflow_init() -> dict:
  """Imports _MODULES; TensorFlow's package __init__ is not run unless TensorFlow was already imported."""
  if "tensorflow" in sys.modules:
    return _import_all()
  spec = importlib.util.find_spec("tensorflow")
  if spec is None or not spec.submodule_search_locations:
    raise ImportError("the tensorflow package (its generated protos) is needed by tensorflow-serving-api; install "
                      "the project's dependencies (pip install -e .)")
  stand_in = types.ModuleType("tensorflow", "stand-in while serving.wire imports TensorFlow's generated protos")
  stand_in.__path__ = list(spec.submodule_search_locations)
  stand_in.__spec__ = spec
  sys.modules["tensorflow"] = stand_in
  try:
    return _import_all()
  finally:
    if sys.modules.get("tensorflow") is stand_in:
      del sys.modules["tensorflow"]


_LOADED = _import_without_tensorflow_init()
tensor_pb2 = _LOADED["tensor_pb2"]
tensor_shape_pb2 = _LOADED["tensor_shape_pb2"]
types_pb2 = _LOADED["types_pb2"]
get_model_metadata_pb2 = _LOADED["get_model_metadata_pb2"]
get_model_status_pb2 = _LOADED["get_model_status_pb2"]
model_pb2 = _LOADED["model_pb2"]
model_service_pb2_grpc = _LOADED["model_service_pb2_grpc"]
predict_pb2 = _LOADED["predict_pb2"]
prediction_service_pb2_grpc = _LOADED["prediction_service_pb2_grpc"]
