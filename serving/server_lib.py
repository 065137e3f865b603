"""The model server: TF Serving's gRPC PredictionService and ModelService over a ModelManager.

`ModelServer(config).start()` loads the configured models (the port opens only once they are loaded, as
tensorflow_model_server does), serves gRPC (and REST if asked), polls the file system and the model config
file, and `stop()` drains in-flight requests before returning.
"""

from __future__ import annotations

import concurrent.futures
import logging
import threading
import time

import grpc
from tensorflow_serving.apis import model_management_pb2, model_service_pb2_grpc, prediction_service_pb2_grpc

from serving import config as config_lib
from serving.errors import ServingError, from_exception
from serving.handlers import model_metadata, model_status, predict
from serving.metrics import ServerMetrics
from serving.model_manager import ModelManager
from serving.servable import Servable

UNLIMITED_MESSAGE_OPTIONS = [("grpc.max_receive_message_length", -1), ("grpc.max_send_message_length", -1)]
# No SO_REUSEPORT: a port already in use must fail loudly, not be shared with another server.
_SERVER_OPTIONS = UNLIMITED_MESSAGE_OPTIONS + [("grpc.so_reuseport", 0)]


def _handle(context, fn):
  """Runs fn(); a ServingError aborts the RPC with its code; anything else is INTERNAL (server stays up)."""
  try:
    return fn()
  except ServingError as e:
    context.abort(e.code, e.message)
  except Exception as e:  # never let one request take the server down
    logging.exception("request failed")
    error = from_exception(e)
    context.abort(error.code if error.code != grpc.StatusCode.UNKNOWN else grpc.StatusCode.INTERNAL,
                  error.message)


def status_name(error: Exception | None) -> str:
  """The canonical code name a finished request is counted under: "OK" or e.g. "INVALID_ARGUMENT"."""
  if error is None:
    return "OK"
  code = from_exception(error).code
  return (grpc.StatusCode.INTERNAL if code == grpc.StatusCode.UNKNOWN else code).name


class PredictionServicer(prediction_service_pb2_grpc.PredictionServiceServicer):
  """tensorflow.serving.PredictionService: Predict and GetModelMetadata; the rest is UNIMPLEMENTED."""

  def __init__(self, manager: ModelManager, metrics: ServerMetrics | None = None):
    self._manager = manager
    self._metrics = metrics

  def Predict(self, request, context):
    """Runs one request on the resolved version's signature; counted as TF Serving counts it."""
    start, error = time.monotonic(), None
    def run():
      nonlocal error
      try:
        return predict(self._manager, request)
      except Exception as e:
        error = e
        raise
      finally:
        if self._metrics is not None:
          self._metrics.record_request(request.model_spec.name, "Predict", "GRPC",
                                       request.model_spec.signature_name or "serving_default", status_name(error),
                                       time.monotonic() - start)
    return _handle(context, run)

  def GetModelMetadata(self, request, context):
    """Returns the resolved version's SignatureDefMap."""
    return _handle(context, lambda: model_metadata(self._manager, request))

  def _unimplemented(self, context, method):
    context.abort(grpc.StatusCode.UNIMPLEMENTED,
                  f"{method} is not implemented by this server: the models it serves are image translators; "
                  "use Predict")

  def Classify(self, request, context):
    """UNIMPLEMENTED."""
    self._unimplemented(context, "Classify")

  def Regress(self, request, context):
    """UNIMPLEMENTED."""
    self._unimplemented(context, "Regress")

  def MultiInference(self, request, context):
    """UNIMPLEMENTED."""
    self._unimplemented(context, "MultiInference")


class ModelServicer(model_service_pb2_grpc.ModelServiceServicer):
  """tensorflow.serving.ModelService: GetModelStatus and HandleReloadConfigRequest."""

  def __init__(self, server: "ModelServer"):
    self._server = server

  def GetModelStatus(self, request, context):
    """Returns the state of every version (or of the requested one)."""
    return _handle(context, lambda: model_status(self._server.manager, request))

  def HandleReloadConfigRequest(self, request, context):
    """Applies a new ModelServerConfig; a failure is the RPC's status (as TF Serving answers it)."""
    def reload():
      """Validates and applies the config."""
      if request.config.WhichOneof("config") != "model_config_list":
        raise ServingError(grpc.StatusCode.INVALID_ARGUMENT,
                           "ServerModelConfig type not supported by HandleReloadConfigRequest. Only "
                           "ModelConfigList is currently supported")
      try:
        configs = config_lib.model_configs_from_proto(request.config)
      except ValueError as e:
        raise ServingError(grpc.StatusCode.INVALID_ARGUMENT, str(e)) from None
      self._server.manager.set_models(configs)
      return model_management_pb2.ReloadConfigResponse()  # status OK (error_code 0)
    return _handle(context, reload)


def _set_tf_threads(intra: int, inter: int) -> None:
  """Sizes TF's thread pools (0 keeps TF's default); ValueError if TF already started in this process."""
  if not intra and not inter:
    return
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  try:
    if intra:
      tf.config.threading.set_intra_op_parallelism_threads(intra)
    if inter:
      tf.config.threading.set_inter_op_parallelism_threads(inter)
  except RuntimeError as e:
    raise ValueError(f"cannot size TensorFlow's thread pools now ({e}); set them before anything runs") from None


class ModelServer:
  """The whole server. start() -> serves; stop() -> drains and shuts down; wait() blocks until stopped.

  Attributes:
    manager: the ModelManager (loaded versions, status).
    metrics: the ServerMetrics (served on the REST port at config.prometheus_path when that is set).
    port, rest_port: the bound ports (useful when 0 was asked for).
  """

  def __init__(self, config: config_lib.ServerConfig):
    self.config = config
    batching = config.batching
    self.metrics = ServerMetrics(version_states=lambda: self.manager.statuses())
    self.manager = ModelManager(
        load_servable=lambda name, version, path: Servable(name, version, path, batching_config=batching,
                                                           max_image_pixels=config.max_image_pixels,
                                                           metrics=self.metrics),
        warmup_iterations=config.num_request_iterations_for_warmup if config.enable_model_warmup else 0,
        metrics=self.metrics)
    self.port = None
    self.rest_port = None
    self._grpc_server = None
    self._rest = None
    self._stop_event = threading.Event()
    self._stopped = threading.Event()
    self._threads = []
    self._model_config_text = None

  def _initial_models(self) -> tuple:
    if self.config.model_config_file:
      with open(self.config.model_config_file, encoding="utf-8") as f:
        self._model_config_text = f.read()
      return config_lib.parse_model_config_text(
          self._model_config_text, source=f"--model_config_file {self.config.model_config_file!r}")
    return self.config.models

  def start(self) -> "ModelServer":
    """Loads the models, then opens the gRPC (and REST) ports. Raises ValueError/ServingError on bad config."""
    _set_tf_threads(self.config.tensorflow_intra_op_parallelism, self.config.tensorflow_inter_op_parallelism)
    self.manager.set_models(self._initial_models())
    server = grpc.server(concurrent.futures.ThreadPoolExecutor(max_workers=self.config.grpc_max_threads,
                                                               thread_name_prefix="grpc"),
                         options=_SERVER_OPTIONS)
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(
        PredictionServicer(self.manager, self.metrics), server)
    model_service_pb2_grpc.add_ModelServiceServicer_to_server(ModelServicer(self), server)
    address = f"{self.config.host}:{self.config.port}"
    try:
      self.port = server.add_insecure_port(address)
    except RuntimeError as e:
      raise ValueError(f"cannot listen on {address} for gRPC: {e}; pick a free --port") from None
    if not self.port:
      raise ValueError(f"cannot listen on {address} for gRPC (in use?); pick a free --port")
    server.start()
    self._grpc_server = server
    logging.info("Running gRPC ModelServer at %s:%d ...", self.config.host, self.port)
    if self.config.rest_api_port:
      from serving import rest  # only when asked for
      self._rest = rest.RestServer(self.manager, self.config.host, self.config.rest_api_port,
                                   metrics=self.metrics, metrics_path=self.config.prometheus_path)
      self.rest_port = self._rest.port
      logging.info("Exporting HTTP/REST API at:%s:%d ...", self.config.host, self.rest_port)
    if self.config.file_system_poll_wait_seconds > 0:
      self._spawn(self._poll_loop, self.config.file_system_poll_wait_seconds, self.manager.poll, "fs-poll")
    if self.config.model_config_file and self.config.model_config_file_poll_wait_seconds > 0:
      self._spawn(self._poll_loop, self.config.model_config_file_poll_wait_seconds, self._reload_config_file,
                  "config-poll")
    return self

  def _spawn(self, target, *args):
    thread = threading.Thread(target=target, args=args, name=args[-1], daemon=True)
    thread.start()
    self._threads.append(thread)

  def _poll_loop(self, interval: float, step, name: str) -> None:
    while not self._stop_event.wait(interval):
      try:
        step()
      except Exception:  # a failing poll is logged and retried at the next tick
        logging.exception("%s failed", name)

  def _reload_config_file(self) -> None:
    with open(self.config.model_config_file, encoding="utf-8") as f:
      text = f.read()
    if text == self._model_config_text:
      return
    self._model_config_text = text
    logging.info("Model config file changed; reloading")
    self.manager.set_models(config_lib.parse_model_config_text(text, source=self.config.model_config_file))

  def stop(self, grace: float | None = None) -> None:
    """Stops accepting requests, lets in-flight ones finish (up to `grace` s), then unloads the models."""
    if self._stop_event.is_set():
      self._stopped.wait()
      return
    self._stop_event.set()
    grace = self.config.drain_timeout_seconds if grace is None else grace
    if self._rest is not None:
      self._rest.stop(grace)
    if self._grpc_server is not None:
      self._grpc_server.stop(grace).wait()
    for thread in self._threads:
      thread.join(timeout=5)
    self.manager.close()
    self._stopped.set()
    logging.info("Server stopped")

  def wait(self, timeout: float | None = None) -> bool:
    """Blocks until stop() has finished; returns whether it did within `timeout`."""
    return self._stopped.wait(timeout)
