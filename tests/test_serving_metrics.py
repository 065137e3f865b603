"""Prometheus metrics (--monitoring_config_file): TF Serving's series names and labels, counts that match the
requests sent (each status separately), batching metrics, and the config file's errors.

The counting test runs a real `python -m serving.server` with the deploy directory's monitoring config and
fetches the metrics path over HTTP, as `curl` would; the page is read with prometheus_client's own parser.
"""

from __future__ import annotations

import concurrent.futures
import json
import os
import threading
import urllib.error
import urllib.request

import grpc
import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from serving import client as client_lib, config as config_lib, metrics as metrics_lib, process
from serving.server_lib import ModelServer
from tests.test_serving_models import ToyTranslator, save_toy

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEPLOY_MONITORING = os.path.join(ROOT, "serving", "deploy", "monitoring_config.txt")


def _samples(page: str) -> dict:
  """{(sample name, frozenset of (label, value))}: value, from the exposition text."""
  out = {}
  for family in text_string_to_metric_families(page):
    for sample in family.samples:
      out[(sample.name, frozenset(sample.labels.items()))] = sample.value
  return out


def _get(url: str):
  try:
    with urllib.request.urlopen(url, timeout=30) as response:
      return response.status, response.headers.get("Content-Type"), response.read().decode()
  except urllib.error.HTTPError as e:
    return e.code, e.headers.get("Content-Type"), e.read().decode()


def _rest_predict(port: int, path: str, body: dict | bytes) -> int:
  data = body if isinstance(body, bytes) else json.dumps(body).encode()
  request = urllib.request.Request(f"http://127.0.0.1:{port}/v1/models/{path}", data=data, method="POST")
  try:
    with urllib.request.urlopen(request, timeout=30) as response:
      return response.status
  except urllib.error.HTTPError as e:
    return e.code


def test_prometheus_name_is_tf_servings_exporter_rule():
  assert metrics_lib.prometheus_name("/tensorflow/serving/request_count") == ":tensorflow:serving:request_count"
  assert (metrics_lib.prometheus_name("/tensorflow/serving/batching_session/queuing_latency")
          == ":tensorflow:serving:batching_session:queuing_latency")
  assert metrics_lib.prometheus_name("9lives-x") == "_9lives:x"
  # tensorflow::monitoring::Buckets::Exponential(10, 1.8, 33): 10 * 1.8^i.
  buckets = metrics_lib.exponential_buckets(10, 1.8, 33)
  assert len(buckets) == 33 and buckets[:3] == [10, 18, 10 * 1.8 * 1.8]


def test_running_server_counts_each_request_by_model_and_status(tmp_path):
  base = tmp_path / "toy"
  save_toy(ToyTranslator(1), str(base / "1"))
  rest_port = process.free_port()
  args = ["--model_name=toy", f"--model_base_path={base}", f"--rest_api_port={rest_port}",
          f"--monitoring_config_file={DEPLOY_MONITORING}", "--file_system_poll_wait_seconds=0"]
  images = np.zeros([1, 4, 4, 3], np.uint8)
  with process.ServerProcess(args, process.free_port()) as server:
    with client_lib.TranslationClient(server.target, "toy", retries=0) as toy, \
         client_lib.TranslationClient(server.target, "nope", retries=0) as nope:
      for _ in range(3):
        toy.predict("a2b", {"images": images})
      failures = [(toy, "a2b", {"images": images.astype(np.float32)}),  # wrong dtype: INVALID_ARGUMENT
                  (toy, "a2b", {"images": images.astype(np.int32)}),  # INVALID_ARGUMENT
                  (toy, "no_such_signature", {"images": images}),  # FAILED_PRECONDITION
                  (nope, "a2b", {"images": images})]  # unknown model: NOT_FOUND
      codes = []
      for client, signature, inputs in failures:
        with pytest.raises(client_lib.TranslationError) as info:
          client.predict(signature, inputs)
        codes.append(info.value.code)
      assert codes == [grpc.StatusCode.INVALID_ARGUMENT] * 2 + [grpc.StatusCode.FAILED_PRECONDITION,
                                                                grpc.StatusCode.NOT_FOUND]
      toy.metadata()  # GetModelMetadata and GetModelStatus are not counted (as TF Serving's gRPC service)
      toy.model_status()
    rest = {"signature_name": "a2b", "instances": images.tolist()}
    statuses = [_rest_predict(rest_port, "toy:predict", rest), _rest_predict(rest_port, "toy:predict", rest),
                _rest_predict(rest_port, "toy:predict", b"{not json"),  # INVALID_ARGUMENT
                _rest_predict(rest_port, "toy/versions/9:predict", rest),  # NOT_FOUND
                _get(f"http://127.0.0.1:{rest_port}/v1/models/toy")[0]]  # GET status: OK
    assert statuses == [200, 200, 400, 404, 200]
    status, content_type, page = _get(f"http://127.0.0.1:{rest_port}/monitoring/prometheus/metrics")
    assert status == 200 and content_type.startswith("text/plain")
    assert _get(f"http://127.0.0.1:{rest_port}/monitoring/prometheus/other")[0] == 400
  samples = _samples(page)
  count = lambda **labels: samples.get((":tensorflow:serving:request_count", frozenset(labels.items())))
  # gRPC 3 + REST 2 predictions + 1 REST status read succeeded; each failure code counted on its own.
  assert count(model_name="toy", status="OK") == 6
  assert count(model_name="toy", status="INVALID_ARGUMENT") == 3
  assert count(model_name="toy", status="FAILED_PRECONDITION") == 1
  assert count(model_name="toy", status="NOT_FOUND") == 1
  assert count(model_name="nope", status="NOT_FOUND") == 1
  assert sum(v for (name, _), v in samples.items() if name == ":tensorflow:serving:request_count") == 12
  ours = lambda **labels: samples.get((":i2i:serving:request_count", frozenset(labels.items())))
  assert ours(model_name="toy", signature_name="a2b", entrypoint="GRPC", status="OK") == 3
  assert ours(model_name="toy", signature_name="a2b", entrypoint="GRPC", status="INVALID_ARGUMENT") == 2
  assert ours(model_name="toy", signature_name="no_such_signature", entrypoint="GRPC",
              status="FAILED_PRECONDITION") == 1
  assert ours(model_name="toy", signature_name="a2b", entrypoint="REST", status="OK") == 2
  assert ours(model_name="toy", signature_name="a2b", entrypoint="REST", status="NOT_FOUND") == 1
  latency = lambda api, entry: samples.get((":tensorflow:serving:request_latency_count",
                                            frozenset({"model_name": "toy", "API": api, "entrypoint": entry}.items())))
  assert (latency("Predict", "GRPC"), latency("predict", "REST"), latency("", "REST")) == (3, 2, 1)
  # The model ran for the 5 successful predictions and once more for the warmup-free load (none here).
  assert samples[(":tensorflow:serving:runtime_latency_count",
                  frozenset({"model_name": "toy", "API": "Predict", "runtime": "TF2"}.items()))] == 5
  path = str(base / "1")
  assert samples[(":tensorflow:cc:saved_model:load_attempt_count",
                  frozenset({"model_path": path, "status": "success"}.items()))] == 1
  assert samples[(":tensorflow:cc:saved_model:load_latency", frozenset({"model_path": path}.items()))] > 0
  assert samples[(":i2i:serving:model_version_state",
                  frozenset({"model_name": "toy", "version": "1", "state": "AVAILABLE"}.items()))] == 1
  assert ":tensorflow:serving:request_count{model_name=\"toy\",status=\"OK\"} 6.0" in page.splitlines()


def test_batching_records_batch_sizes_queueing_and_failed_loads(tmp_path):
  base = tmp_path / "toy"
  save_toy(ToyTranslator(1), str(base / "1"))
  (base / "2").mkdir()
  (base / "2" / "saved_model.pb").write_bytes(b"not a SavedModel")
  server = ModelServer(config_lib.ServerConfig(
      models=(config_lib.ModelConfig("toy", str(base), version_policy=("all",)),), port=0,
      file_system_poll_wait_seconds=0, enable_model_warmup=False, rest_api_port=process.free_port(),
      prometheus_path="/metrics", batching=config_lib.BatchingConfig(
          max_batch_size=4, batch_timeout_micros=1_000_000, num_batch_threads=1))).start()
  try:
    barrier = threading.Barrier(3)
    def one(i):
      with client_lib.TranslationClient(f"127.0.0.1:{server.port}", "toy", version=1) as client:
        barrier.wait()
        return int(client.predict("a2b", {"images": np.full([1, 2, 2, 3], i, np.uint8)})["batch_size"][0])
    with concurrent.futures.ThreadPoolExecutor(3) as pool:
      batch_sizes = list(pool.map(one, range(3)))
    page = _get(f"http://127.0.0.1:{server.rest_port}/metrics")[2]
  finally:
    server.stop()
  samples = _samples(page)
  assert max(batch_sizes) > 1, batch_sizes
  runs = round(sum(1 / s for s in batch_sizes))  # a request in a batch of s rows is 1/s of a model call
  total = lambda name: samples[(f":tensorflow:serving:batching_session:{name}", frozenset())]
  assert (total("input_batch_size_count"), total("input_batch_size_sum")) == (3, 3)  # 3 requests of 1 row
  assert total("wrapped_run_count") == runs and total("processed_batch_size_count") == runs
  assert total("processed_batch_size_sum") == 3  # no allowed_batch_sizes: no padding
  assert samples[(":tensorflow:serving:batching_session:queuing_latency_count",
                  frozenset({"thread_pool_name": ""}.items()))] == 3
  broken = str(base / "2")
  assert samples[(":tensorflow:cc:saved_model:load_attempt_count",
                  frozenset({"model_path": broken, "status": "fail"}.items()))] == 1
  assert samples[(":i2i:serving:model_version_state",
                  frozenset({"model_name": "toy", "version": "2", "state": "END"}.items()))] == 1


def test_padding_to_an_allowed_batch_size_is_recorded():
  from serving import batching
  metrics = metrics_lib.ServerMetrics()
  scheduler = batching.BatchScheduler(
      config_lib.BatchingConfig(max_batch_size=4, num_batch_threads=1, allowed_batch_sizes=(2, 4)),
      lambda signature, inputs, outputs: {"y": inputs["x"] * 2}, on_batch=metrics.record_batch)
  try:
    np.testing.assert_array_equal(scheduler.submit("f", {"x": np.arange(3)}, ("y",))["y"], [0, 2, 4])
  finally:
    scheduler.close()
  samples = _samples(metrics.exposition().decode())
  key = lambda name, **labels: (f":tensorflow:serving:batching_session:{name}", frozenset(labels.items()))
  assert samples[key("padding_size_sum", execution_batch_size="4")] == 1  # 3 rows padded to 4
  assert samples[key("processed_batch_size_sum")] == 4 and samples[key("input_batch_size_sum")] == 3


@pytest.mark.parametrize("text, message", [
    ("prometheus_config { enable: true path: \"metrics\" }", "must start with '/'"),
    ("prometheus_config { enable: true path: \"/v1/metrics\" }", "not be under /v1/"),
    ("prometheus_config { enabled: true }", "not a valid MonitoringConfig"),
])
def test_bad_monitoring_configs_say_what_is_wrong(text, message):
  with pytest.raises(ValueError, match=message):
    config_lib.parse_monitoring_config_text(text)


def test_monitoring_config_defaults_and_needs_a_rest_port(tmp_path):
  assert config_lib.parse_monitoring_config_text("") == ""
  assert config_lib.parse_monitoring_config_text("prometheus_config { enable: false path: \"/m\" }") == ""
  assert config_lib.parse_monitoring_config_text("prometheus_config { enable: true }") == \
      "/monitoring/prometheus/metrics"
  with pytest.raises(ValueError, match="served on the REST port: set --rest_api_port too"):
    config_lib.ServerConfig(models=(config_lib.ModelConfig("m", str(tmp_path)),), prometheus_path="/m")
