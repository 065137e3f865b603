"""Configs of the model server: what to serve (ModelServerConfig) and how (ports, polling, batching).

The text formats are TF Serving's own, so one file works for both servers:
  * `--model_config_file`: a ModelServerConfig in protobuf text format
    (tensorflow_serving.config.model_server_config_pb2), e.g.
      model_config_list { config { name: "horse2zebra" base_path: "/models/horse2zebra"
        model_platform: "tensorflow" model_version_policy { latest { num_versions: 2 } }
        version_labels { key: "stable" value: 1 } } }
  * `--batching_parameters_file`: a BatchingParameters in protobuf text format
    (session_bundle_config.proto), e.g. `max_batch_size { value: 8 } batch_timeout_micros { value: 2000 }`.
    The pip package tensorflow-serving-api does not ship that message, so it is declared here with the same
    package, name, field names and numbers.
  * `--monitoring_config_file`: a MonitoringConfig in protobuf text format (monitoring_config.proto, also not
    in the pip package, declared here the same way), e.g.
      prometheus_config { enable: true, path: "/monitoring/prometheus/metrics" }
"""

from __future__ import annotations

import dataclasses
import os

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory, text_format, wrappers_pb2
from tensorflow_serving.config import model_server_config_pb2

DEFAULT_GRPC_PORT = 8500
# One 4096x4096 image, or 256 images of 256x256, per input of a request (serving.servable.Servable.check_pixels).
DEFAULT_MAX_IMAGE_PIXELS = 4096 * 4096
WARMUP_RELATIVE_PATH = os.path.join("assets.extra", "tf_serving_warmup_requests")
# What components.export writes beside the warmup requests: family, sizes (size_multiple, fixed_size, image_size),
# checkpoint and lineage of the exported model.
MODEL_CARD_RELATIVE_PATH = os.path.join("assets.extra", "model_card.json")


def read_model_card(saved_model_dir: str) -> dict:
  """The model card of an exported SavedModel as a dict; {} when the SavedModel has none."""
  import json  # pylint: disable=import-outside-toplevel
  path = os.path.join(saved_model_dir, MODEL_CARD_RELATIVE_PATH)
  if not os.path.isfile(path):
    return {}
  with open(path, encoding="utf-8") as f:
    return json.load(f)


@dataclasses.dataclass(frozen=True)
class ModelConfig:
  """One served model: versions live in `<base_path>/<integer version>/` (each a SavedModel).

  version_policy: ("latest", n) serves the n highest versions; ("all",) every version; ("specific", (v, ...))
    exactly those versions.
  version_labels: (label, version) pairs; a label may only name a version that is available.
  """

  name: str
  base_path: str
  version_policy: tuple = ("latest", 1)
  version_labels: tuple = ()

  def __post_init__(self):
    if not self.name:
      raise ValueError("a model config needs a non-empty name")
    if not self.base_path:
      raise ValueError(f"model {self.name!r}: base_path is empty; set it to the directory that holds the "
                       "integer version subdirectories")
    kind = self.version_policy[0] if self.version_policy else None
    if kind not in ("latest", "all", "specific"):
      raise ValueError(f"model {self.name!r}: unknown version policy {self.version_policy!r}; use "
                       "('latest', n), ('all',) or ('specific', (v, ...))")
    if kind == "latest" and int(self.version_policy[1]) < 1:
      raise ValueError(f"model {self.name!r}: latest {{ num_versions }} must be >= 1")
    if kind == "specific" and not self.version_policy[1]:
      raise ValueError(f"model {self.name!r}: specific {{ versions }} lists no version")


@dataclasses.dataclass(frozen=True)
class BatchingConfig:
  """Server-side batching (TF Serving's BatchingParameters and their defaults).

  Requests to the same signature that arrive within `batch_timeout_micros` of each other are concatenated on
  dim 0 (up to `max_batch_size` rows), run once and split again. `allowed_batch_sizes` (ascending, last ==
  max_batch_size) pads a batch up to the next size. As in TF Serving's BatchingSession, requests whose inputs
  differ in other dimensions (images of different sizes) can land in one batch: without
  `pad_variable_length_inputs` every request of that batch fails (FAILED_PRECONDITION); with it each input is
  padded at the end of every dimension to the batch's largest, with its own first value (so are the outputs).
  """

  max_batch_size: int = 1000
  batch_timeout_micros: int = 0
  max_enqueued_batches: int = 10
  num_batch_threads: int = dataclasses.field(default_factory=lambda: os.cpu_count() or 1)
  allowed_batch_sizes: tuple = ()
  pad_variable_length_inputs: bool = False

  def __post_init__(self):
    if self.max_batch_size < 1 or self.num_batch_threads < 1 or self.max_enqueued_batches < 1:
      raise ValueError("batching parameters: max_batch_size, num_batch_threads and max_enqueued_batches must "
                       f"all be >= 1, got {self}")
    if self.batch_timeout_micros < 0:
      raise ValueError(f"batching parameters: batch_timeout_micros must be >= 0, got {self.batch_timeout_micros}")
    sizes = list(self.allowed_batch_sizes)
    if sizes:
      if sizes != sorted(set(sizes)) or sizes[0] < 1:
        raise ValueError(f"allowed_batch_sizes must be strictly increasing positive sizes, got {sizes}")
      if sizes[-1] != self.max_batch_size:
        raise ValueError("Last entry in allowed_batch_sizes must match max_batch_size; last entry was "
                         f"{sizes[-1]}; expected {self.max_batch_size}")


@dataclasses.dataclass(frozen=True)
class ServerConfig:
  """Everything `serving.server_lib.ModelServer` needs (built from flags by serving/server.py).

  models: the models served at start (ignored when model_config_file is set).
  model_config_file: a ModelServerConfig text file; re-read every model_config_file_poll_wait_seconds (> 0).
  host: the address both ports bind to (127.0.0.1 = loopback only; 0.0.0.0 = every interface, as TF Serving).
  rest_api_port: 0 turns the REST API off.
  file_system_poll_wait_seconds: how often base paths are scanned for new versions (0 = once at start).
  batching: a BatchingConfig, or None for no batching.
  enable_model_warmup: replay assets.extra/tf_serving_warmup_requests before a version becomes available.
  tensorflow_intra_op_parallelism / tensorflow_inter_op_parallelism: TF thread pools (0 = TF's choice); they
    can only be set before TensorFlow has run anything in the process.
  max_image_pixels: the most pixels one input of a request may hold (N * H * W of an [N, H, W, C] input, or
    what the headers of encoded images declare); more is INVALID_ARGUMENT naming the cap. 0 = no cap.
  prometheus_path: the REST path serving Prometheus metrics ("" = none; from --monitoring_config_file).
  """

  models: tuple = ()
  model_config_file: str = ""
  port: int = DEFAULT_GRPC_PORT
  host: str = "127.0.0.1"
  rest_api_port: int = 0
  model_config_file_poll_wait_seconds: float = 0
  file_system_poll_wait_seconds: float = 1
  batching: BatchingConfig | None = None
  enable_model_warmup: bool = True
  num_request_iterations_for_warmup: int = 1
  grpc_max_threads: int = 64
  drain_timeout_seconds: float = 30.0
  tensorflow_intra_op_parallelism: int = 0
  tensorflow_inter_op_parallelism: int = 0
  max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS
  prometheus_path: str = ""

  def __post_init__(self):
    if not self.models and not self.model_config_file:
      raise ValueError("nothing to serve: pass --model_name and --model_base_path, or --model_config_file")
    if self.rest_api_port and self.rest_api_port == self.port:
      raise ValueError(f"--rest_api_port ({self.rest_api_port}) must differ from --port ({self.port})")
    if self.max_image_pixels < 0:
      raise ValueError(f"--max_image_pixels must be >= 0 (0 = no cap), got {self.max_image_pixels}")
    if self.prometheus_path and not self.rest_api_port:
      raise ValueError("--monitoring_config_file enables Prometheus metrics, which are served on the REST port: "
                       "set --rest_api_port too")


def model_configs_from_proto(proto: model_server_config_pb2.ModelServerConfig) -> tuple:
  """ModelServerConfig proto -> tuple of ModelConfig (raises ValueError naming what is wrong)."""
  which = proto.WhichOneof("config")
  if which != "model_config_list":
    raise ValueError("the ModelServerConfig must contain a model_config_list (custom_model_config is not "
                     "supported)")
  configs, names = [], set()
  for entry in proto.model_config_list.config:
    if entry.model_platform not in ("", "tensorflow"):
      raise ValueError(f"model {entry.name!r}: model_platform {entry.model_platform!r} is not supported; "
                       "use \"tensorflow\"")
    if entry.name in names:
      raise ValueError(f"model name {entry.name!r} appears twice in the model config list")
    names.add(entry.name)
    policy_kind = entry.model_version_policy.WhichOneof("policy_choice")
    if policy_kind == "all":
      policy = ("all",)
    elif policy_kind == "specific":
      policy = ("specific", tuple(sorted(int(v) for v in entry.model_version_policy.specific.versions)))
    elif policy_kind == "latest":
      policy = ("latest", int(entry.model_version_policy.latest.num_versions or 1))
    else:
      policy = ("latest", 1)
    labels = tuple(sorted((k, int(v)) for k, v in entry.version_labels.items()))
    configs.append(ModelConfig(name=entry.name, base_path=entry.base_path, version_policy=policy,
                               version_labels=labels))
  if not configs:
    raise ValueError("the model config list is empty; add at least one `config { name: ... base_path: ... }`")
  return tuple(configs)


def parse_model_config_text(text: str, source: str = "model config") -> tuple:
  """Parses ModelServerConfig text format into a tuple of ModelConfig."""
  proto = model_server_config_pb2.ModelServerConfig()
  try:
    text_format.Parse(text, proto)
  except text_format.ParseError as e:
    raise ValueError(f"{source} is not a valid ModelServerConfig text proto: {e}") from None
  try:
    return model_configs_from_proto(proto)
  except ValueError as e:
    raise ValueError(f"{source}: {e}") from None


def _read_flag_file(flag: str, path: str) -> str:
  """Returns the text of the file a flag names; an unreadable file is a ValueError naming the flag and path."""
  try:
    with open(path, encoding="utf-8") as f:
      return f.read()
  except OSError as e:
    raise ValueError(f"cannot read --{flag} {path!r}: {e.strerror}") from None


def read_model_config_file(path: str) -> tuple:
  """Reads a `--model_config_file` (ModelServerConfig text format) into a tuple of ModelConfig."""
  text = _read_flag_file("model_config_file", path)
  return parse_model_config_text(text, source=f"--model_config_file {path!r}")


def _batching_parameters_class():
  """Declares tensorflow.serving.BatchingParameters (session_bundle_config.proto numbering) in a private pool."""
  pool = descriptor_pool.DescriptorPool()
  wrappers = descriptor_pb2.FileDescriptorProto()
  wrappers_pb2.DESCRIPTOR.CopyToProto(wrappers)
  pool.Add(wrappers)
  file_proto = descriptor_pb2.FileDescriptorProto(
      name="tensorflow_serving/servables/tensorflow/batching_parameters.proto", package="tensorflow.serving",
      dependency=["google/protobuf/wrappers.proto"], syntax="proto3")
  message = file_proto.message_type.add(name="BatchingParameters")
  field = descriptor_pb2.FieldDescriptorProto
  for name, number, type_name in (("max_batch_size", 1, "Int64Value"), ("batch_timeout_micros", 2, "Int64Value"),
                                  ("max_enqueued_batches", 3, "Int64Value"), ("num_batch_threads", 4, "Int64Value"),
                                  ("thread_pool_name", 5, "StringValue"),
                                  ("enable_large_batch_splitting", 8, "BoolValue"),
                                  ("max_execution_batch_size", 9, "Int64Value")):
    message.field.add(name=name, number=number, label=field.LABEL_OPTIONAL, type=field.TYPE_MESSAGE,
                      type_name=f".google.protobuf.{type_name}")
  message.field.add(name="allowed_batch_sizes", number=6, label=field.LABEL_REPEATED, type=field.TYPE_INT64)
  message.field.add(name="pad_variable_length_inputs", number=7, label=field.LABEL_OPTIONAL, type=field.TYPE_BOOL)
  pool.Add(file_proto)
  return message_factory.GetMessageClass(pool.FindMessageTypeByName("tensorflow.serving.BatchingParameters"))


BatchingParameters = _batching_parameters_class()


def parse_batching_parameters_text(text: str, source: str = "batching parameters") -> BatchingConfig:
  """Parses BatchingParameters text format into a BatchingConfig (unset fields keep TF Serving's defaults)."""
  proto = BatchingParameters()
  try:
    text_format.Parse(text, proto)
  except text_format.ParseError as e:
    raise ValueError(f"{source} is not a valid BatchingParameters text proto: {e}") from None
  overrides = {}
  for name in ("max_batch_size", "batch_timeout_micros", "max_enqueued_batches", "num_batch_threads"):
    if proto.HasField(name):
      overrides[name] = int(getattr(proto, name).value)
  if proto.allowed_batch_sizes:
    overrides["allowed_batch_sizes"] = tuple(int(s) for s in proto.allowed_batch_sizes)
  if proto.pad_variable_length_inputs:
    overrides["pad_variable_length_inputs"] = True
  try:
    return BatchingConfig(**overrides)
  except ValueError as e:
    raise ValueError(f"{source}: {e}") from None


def read_batching_parameters_file(path: str) -> BatchingConfig:
  """Reads a `--batching_parameters_file` into a BatchingConfig."""
  text = _read_flag_file("batching_parameters_file", path)
  return parse_batching_parameters_text(text, source=f"--batching_parameters_file {path!r}")


def _monitoring_config_class():
  """Declares tensorflow.serving.MonitoringConfig / PrometheusConfig (monitoring_config.proto) in a private pool."""
  pool = descriptor_pool.DescriptorPool()
  file_proto = descriptor_pb2.FileDescriptorProto(
      name="tensorflow_serving/config/monitoring_config.proto", package="tensorflow.serving", syntax="proto3")
  field = descriptor_pb2.FieldDescriptorProto
  prometheus = file_proto.message_type.add(name="PrometheusConfig")
  prometheus.field.add(name="enable", number=1, label=field.LABEL_OPTIONAL, type=field.TYPE_BOOL)
  prometheus.field.add(name="path", number=2, label=field.LABEL_OPTIONAL, type=field.TYPE_STRING)
  monitoring = file_proto.message_type.add(name="MonitoringConfig")
  monitoring.field.add(name="prometheus_config", number=1, label=field.LABEL_OPTIONAL, type=field.TYPE_MESSAGE,
                       type_name=".tensorflow.serving.PrometheusConfig")
  pool.Add(file_proto)
  return message_factory.GetMessageClass(pool.FindMessageTypeByName("tensorflow.serving.MonitoringConfig"))


MonitoringConfig = _monitoring_config_class()
DEFAULT_PROMETHEUS_PATH = "/monitoring/prometheus/metrics"  # TF Serving's PrometheusExporter::kPrometheusPath


def parse_monitoring_config_text(text: str, source: str = "monitoring config") -> str:
  """MonitoringConfig text format -> the Prometheus metrics path ("" when prometheus_config is not enabled).

  An enabled config without a path gets TF Serving's default path; a path must start with "/".
  """
  proto = MonitoringConfig()
  try:
    text_format.Parse(text, proto)
  except text_format.ParseError as e:
    raise ValueError(f"{source} is not a valid MonitoringConfig text proto: {e}") from None
  if not proto.prometheus_config.enable:
    return ""
  path = proto.prometheus_config.path or DEFAULT_PROMETHEUS_PATH
  if not path.startswith("/") or path.startswith("/v1/"):
    raise ValueError(f"{source}: prometheus_config path {path!r} must start with '/' and not be under /v1/ (the "
                     f"model API); e.g. {DEFAULT_PROMETHEUS_PATH!r}")
  return path


def read_monitoring_config_file(path: str) -> str:
  """Reads a `--monitoring_config_file`; returns the Prometheus metrics path ("" = metrics off)."""
  text = _read_flag_file("monitoring_config_file", path)
  return parse_monitoring_config_text(text, source=f"--monitoring_config_file {path!r}")
