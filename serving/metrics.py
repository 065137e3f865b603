"""Prometheus metrics of the model server, with TF Serving's metric names, labels, units and buckets.

tensorflow_model_server (with `--monitoring_config_file` holding `prometheus_config { enable: true }`) serves
TensorFlow's monitoring registry on its REST port; its exporter (tensorflow_serving/util/prometheus_exporter.cc)
turns a metric name such as "/tensorflow/serving/request_count" into ":tensorflow:serving:request_count" (every
character outside [a-zA-Z0-9_] becomes ':'), writes counters without a `_total` suffix and histograms as
`<name>_bucket{le=...}`, `<name>_sum`, `<name>_count`. `prometheus_name` is that rule; the series below are
named by it, so dashboards and alerts written for TF Serving work on this server unchanged.

What both servers count (the TF Serving source each comes from):
  :tensorflow:serving:request_count{model_name, status}           servables/tensorflow/util.cc; every Predict
      (gRPC) and every REST request, status = the canonical code name ("OK", "INVALID_ARGUMENT", ...).
  :tensorflow:serving:request_latency{model_name, API, entrypoint}  microseconds, successful requests only;
      API "Predict" (gRPC) or the REST method ("predict"; "" for GET status/metadata), entrypoint GRPC | REST.
  :tensorflow:serving:runtime_latency{model_name, API, runtime}    microseconds of the model call (with
      batching: queueing + the batched run, as TF Serving's Session::Run through its BatchingSession).
  :tensorflow:cc:saved_model:load_attempt_count{model_path, status}  tensorflow/cc/saved_model/loader.cc;
      status "success" | "fail".
  :tensorflow:cc:saved_model:load_latency{model_path}               microseconds (a counter, as TF's).
  :tensorflow:serving:model_warmup_latency{model_path, status}      saved_model_warmup_util.cc.
  :tensorflow:serving:batching_session:{queuing_latency{thread_pool_name}, input_batch_size, processed_batch_size,
      padding_size{execution_batch_size}, wrapped_run_count}        batching/batching_session.cc, batching_util.h.
Our own, where they say more (same naming rule, under /i2i/serving/):
  :i2i:serving:request_count{model_name, signature_name, entrypoint, status}  per signature.
  :i2i:serving:model_version_state{model_name, version, state}      1 for each version's current state
      (START, LOADING, AVAILABLE, UNLOADING, END), read from the model manager at scrape time.

Counters are exposed as `untyped`: prometheus_client's text encoder renames a counter family to `<name>_total`
(the Prometheus naming convention), which would change TF Serving's series names; Prometheus stores and queries
untyped samples exactly as counter samples (rate() works).
"""

from __future__ import annotations

import re
import threading

import prometheus_client
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

DEFAULT_PATH = "/monitoring/prometheus/metrics"  # PrometheusExporter::kPrometheusPath
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def prometheus_name(name: str) -> str:
  """TF Serving's exporter rule: every character outside [a-zA-Z0-9_] becomes ':'; a leading digit gets '_'."""
  out = re.sub(r"[^a-zA-Z0-9_]", ":", name)
  return "_" + out if out[:1].isdigit() else out


def exponential_buckets(scale: float, growth: float, count: int) -> list:
  """tensorflow::monitoring::Buckets::Exponential(scale, growth, count) limits (the last, +Inf, is implied),
  computed as TF does (bound *= growth), so the `le` values are TF Serving's to the last digit."""
  limits, bound = [], float(scale)
  for _ in range(count):
    limits.append(bound)
    bound *= growth
  return limits


_LATENCY_BUCKETS = exponential_buckets(10, 1.8, 33)  # util.cc: "Scale of 10, power of 1.8 ... (~20 minutes)"
_QUEUING_BUCKETS = exponential_buckets(100, 1.2, 52)  # batching_session.cc
_BATCH_SIZE_BUCKETS = exponential_buckets(1, 2, 14)  # batching_util.h


class _Counter(Collector):
  """A labelled counter with an exact TF Serving series name (no `_total`), exposed as untyped."""

  def __init__(self, name: str, documentation: str, labels: tuple):
    self.name = prometheus_name(name)
    self._documentation = documentation
    self._labels = labels
    self._values = {}
    self._lock = threading.Lock()

  def inc(self, *label_values, amount: float = 1) -> None:
    """Adds `amount` to the series of these label values."""
    key = tuple(str(v) for v in label_values)
    with self._lock:
      self._values[key] = self._values.get(key, 0) + amount

  def collect(self):
    """One untyped family with one sample per label combination seen."""
    metric = Metric(self.name, self._documentation, "unknown")
    with self._lock:
      for key, value in sorted(self._values.items()):
        metric.add_sample(self.name, dict(zip(self._labels, key)), value)
    yield metric


class _VersionStates(Collector):
  """:i2i:serving:model_version_state, read from `status_fn() -> {model_name: [VersionStatus]}` at scrape time."""

  def __init__(self, status_fn):
    self._status_fn = status_fn

  def collect(self):
    """A gauge per (model, version): 1 with the version's current state as label."""
    family = GaugeMetricFamily(prometheus_name("/i2i/serving/model_version_state"),
                               "1 for the current state of each model version (START, LOADING, AVAILABLE, "
                               "UNLOADING, END)", labels=["model_name", "version", "state"])
    for name, statuses in sorted(self._status_fn().items()):
      for status in statuses:
        family.add_metric([name, str(status.version), status.state], 1)
    yield family


class ServerMetrics:
  """Every metric of one server, in its own registry; `exposition()` is the page of the metrics path.

  Args:
    version_states: optional `() -> {model_name: [VersionStatus]}` (the ModelManager's view).
  """

  def __init__(self, version_states=None):
    # TF Serving has no `<name>_created` series; prometheus_client adds them unless told not to (process-wide).
    prometheus_client.disable_created_metrics()
    self.registry = prometheus_client.CollectorRegistry(auto_describe=False)
    self.request_count = self._counter("/tensorflow/serving/request_count", "The total number of requests.",
                                       ("model_name", "status"))
    self.signature_request_count = self._counter(
        "/i2i/serving/request_count", "Requests by model, signature, entry point and status.",
        ("model_name", "signature_name", "entrypoint", "status"))
    self.load_attempt_count = self._counter(
        "/tensorflow/cc/saved_model/load_attempt_count", "The number of times a SavedModel was successfully loaded.",
        ("model_path", "status"))
    self.load_latency = self._counter("/tensorflow/cc/saved_model/load_latency",
                                      "Latency in microseconds for SavedModels that were successfully loaded.",
                                      ("model_path",))
    self.wrapped_run_count = self._counter("/tensorflow/serving/batching_session/wrapped_run_count",
                                           "Total count of run calls on the wrapped session", ())
    histogram = lambda name, doc, labels, buckets: prometheus_client.Histogram(  # noqa: E731
        prometheus_name(name), doc, labels, buckets=buckets, registry=self.registry)
    self.request_latency = histogram(
        "/tensorflow/serving/request_latency",
        "Distribution of wall time (in microseconds) for Tensorflow Serving request.",
        ["model_name", "API", "entrypoint"], _LATENCY_BUCKETS)
    self.runtime_latency = histogram(
        "/tensorflow/serving/runtime_latency", "Distribution of wall time (in microseconds) for Tensorflow runtime.",
        ["model_name", "API", "runtime"], _LATENCY_BUCKETS)
    self.warmup_latency = histogram(
        "/tensorflow/serving/model_warmup_latency",
        "Distribution of wall time (in microseconds) for warming up the model.", ["model_path", "status"],
        _LATENCY_BUCKETS)
    self.queuing_latency = histogram(
        "/tensorflow/serving/batching_session/queuing_latency",
        "Distribution of wall time spent (in microseconds) in queuing", ["thread_pool_name"], _QUEUING_BUCKETS)
    self.input_batch_size = histogram("/tensorflow/serving/batching_session/input_batch_size",
                                      "Tracks the batch size distribution on the inputs.", [], _BATCH_SIZE_BUCKETS)
    self.processed_batch_size = histogram("/tensorflow/serving/batching_session/processed_batch_size",
                                          "Tracks the batch size distribution on processing.", [],
                                          _BATCH_SIZE_BUCKETS)
    self.padding_size = histogram("/tensorflow/serving/batching_session/padding_size",
                                  "Tracks the padding size distribution on batches.", ["execution_batch_size"],
                                  _BATCH_SIZE_BUCKETS)
    if version_states is not None:
      self.registry.register(_VersionStates(version_states))

  def _counter(self, name: str, documentation: str, labels: tuple) -> _Counter:
    counter = _Counter(name, documentation, labels)
    self.registry.register(counter)
    return counter

  # -- recording (called by the server, the REST handler, the model manager and the batcher) ------------------
  def record_request(self, model_name: str, api: str, entrypoint: str, signature_name: str, status: str,
                     seconds: float) -> None:
    """One finished request: counts it (by status), and its latency when it succeeded (as TF Serving)."""
    self.request_count.inc(model_name, status)
    self.signature_request_count.inc(model_name, signature_name, entrypoint, status)
    if status == "OK":
      self.request_latency.labels(model_name, api, entrypoint).observe(seconds * 1e6)

  def record_runtime(self, model_name: str, seconds: float) -> None:
    """One model call of a Predict request (runtime "TF2": a SavedModel concrete function)."""
    self.runtime_latency.labels(model_name, "Predict", "TF2").observe(seconds * 1e6)

  def record_load(self, model_path: str, ok: bool, seconds: float) -> None:
    """One SavedModel load attempt (latency added only for a successful one, as TF's loader)."""
    self.load_attempt_count.inc(model_path, "success" if ok else "fail")
    if ok:
      self.load_latency.inc(model_path, amount=int(seconds * 1e6))

  def record_warmup(self, model_path: str, status: str, seconds: float) -> None:
    """One warmup of a loaded version; `status` as TF's Status::ToString ("OK" or "<CODE>: <message>")."""
    self.warmup_latency.labels(model_path, status).observe(seconds * 1e6)

  def record_batch(self, task_sizes: list, execution_size: int, queuing_seconds: list) -> None:
    """One batch run: each task's rows and queueing delay, the padded size and the padding."""
    for size in task_sizes:
      self.input_batch_size.observe(size)
    for seconds in queuing_seconds:
      self.queuing_latency.labels("").observe(seconds * 1e6)
    padding = execution_size - sum(task_sizes)
    self.padding_size.labels(str(execution_size)).observe(padding)
    self.processed_batch_size.observe(execution_size)
    self.wrapped_run_count.inc()

  def exposition(self) -> bytes:
    """The Prometheus text exposition (format 0.0.4) of every metric."""
    return prometheus_client.generate_latest(self.registry)
