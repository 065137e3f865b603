"""The deploy files parse with TF Serving's formats and agree with each other; config parsing rejects bad input;
the readiness probe passes only once a version is AVAILABLE (run against a server whose version is still loading).
"""

from __future__ import annotations

import os
import subprocess
import time
import urllib.error
import urllib.request

import numpy as np
import pytest
import yaml

from serving import config as config_lib
from serving import process
from serving.server_lib import ModelServer

DEPLOY = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "serving", "deploy")


def _read(name):
  with open(os.path.join(DEPLOY, name)) as f:
    return f.read()


def test_deploy_configs_parse_and_agree():
  models = config_lib.read_model_config_file(os.path.join(DEPLOY, "models.config"))
  assert [m.name for m in models] == ["translator"] and models[0].base_path.startswith("/models/")
  batching = config_lib.read_batching_parameters_file(os.path.join(DEPLOY, "batching_parameters.txt"))
  assert batching.max_batch_size == 8 and batching.allowed_batch_sizes[-1] == 8
  compose = yaml.safe_load(_read("docker-compose.yml"))["services"]["tf-serving"]
  deployment, service = list(yaml.safe_load_all(_read("k8s.yaml")))
  container = deployment["spec"]["template"]["spec"]["containers"][0]
  assert compose["command"] == container["args"]
  assert "--model_config_file=/config/models.config" in container["args"]
  assert {p["port"] for p in service["spec"]["ports"]} == {8500, 8501}
  assert service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]
  # Metrics: both servers read the monitoring config; Prometheus is told where the page is.
  assert "--monitoring_config_file=/config/monitoring_config.txt" in container["args"]
  metrics_path = config_lib.read_monitoring_config_file(os.path.join(DEPLOY, "monitoring_config.txt"))
  rest_port = next(p["containerPort"] for p in container["ports"] if p["name"] == "http")
  assert "--rest_api_port=%d" % rest_port in container["args"]
  expected = {"prometheus.io/scrape": "true", "prometheus.io/port": str(rest_port), "prometheus.io/path": metrics_path}
  assert deployment["spec"]["template"]["metadata"]["annotations"] == expected
  assert compose["labels"] == expected
  # One readiness check: the k8s exec probe and the compose healthcheck run the same command on the model.
  probe = container["readinessProbe"]["exec"]["command"]
  assert compose["healthcheck"]["test"][1:] == [part.replace("$", "$$") for part in probe]
  assert "${MODEL_NAME:-%s}" % models[0].name in probe[-1] and "${REST_PORT:-%d}" % rest_port in probe[-1]


def _probe_command() -> list:
  deployment = list(yaml.safe_load_all(_read("k8s.yaml")))[0]
  return deployment["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["exec"]["command"]


def _run_probe(rest_port: int, model_name: str) -> int:
  """Runs the deployment's readiness command, as the kubelet would, against a local REST port."""
  env = {**os.environ, "REST_PORT": str(rest_port), "MODEL_NAME": model_name}
  return subprocess.run(_probe_command(), env=env, capture_output=True, timeout=30, check=False).returncode


def _status(rest_port: int, model_name: str):
  """(HTTP status, body) of GET /v1/models/<name>: what an httpGet probe would look at."""
  try:
    with urllib.request.urlopen(f"http://127.0.0.1:{rest_port}/v1/models/{model_name}", timeout=10) as response:
      return response.status, response.read().decode()
  except urllib.error.HTTPError as e:
    return e.code, e.read().decode()


def test_readiness_probe_fails_while_the_version_loads_and_passes_once_available(tmp_path):
  from tests.test_serving_models import ToyTranslator, save_toy
  save_toy(ToyTranslator(1), str(tmp_path / "fast" / "1"))
  # A version whose warmup request busy-waits 4 s: it stays LOADING that long (TF Serving warms up before
  # a version becomes AVAILABLE too).
  save_toy(ToyTranslator(1), str(tmp_path / "slow" / "1"), warmup_requests=[("sleep", {"seconds": np.float64(4.0)})])
  entry = 'config { name: "%s" base_path: "%s" model_platform: "tensorflow" }'
  config_file = tmp_path / "models.config"
  config_file.write_text("model_config_list { %s }" % (entry % ("fast", tmp_path / "fast")))
  server = ModelServer(config_lib.ServerConfig(
      model_config_file=str(config_file), port=0, rest_api_port=process.free_port(),
      model_config_file_poll_wait_seconds=0.1, file_system_poll_wait_seconds=0)).start()
  port = server.rest_port
  try:
    assert _run_probe(port, "fast") == 0
    assert _status(port, "slow")[0] == 404 and _run_probe(port, "slow") != 0  # not configured yet
    config_file.write_text("model_config_list { %s %s }" % (entry % ("fast", tmp_path / "fast"),
                                                             entry % ("slow", tmp_path / "slow")))
    deadline = time.monotonic() + 30
    while "LOADING" not in _status(port, "slow")[1] and time.monotonic() < deadline:
      time.sleep(0.05)
    code, body = _status(port, "slow")
    # What TF Serving's REST status answers too: 200 with the version LOADING. An httpGet probe would pass here.
    assert code == 200 and '"state": "LOADING"' in body, body
    assert _run_probe(port, "slow") != 0
    assert "LOADING" in _status(port, "slow")[1]  # still loading after the probe ran: the probe saw LOADING
    while "AVAILABLE" not in _status(port, "slow")[1] and time.monotonic() < deadline:
      time.sleep(0.1)
    assert _run_probe(port, "slow") == 0
  finally:
    server.stop()
  assert _run_probe(port, "fast") != 0  # nothing listening


@pytest.mark.parametrize("text, message", [
    ('model_config_list { config { name: "m" } }', "base_path is empty"),
    ('model_config_list { config { name: "m" base_path: "/x" model_platform: "pytorch" } }', "not supported"),
    ('model_config_list { config { name: "m" base_path: "/x" } config { name: "m" base_path: "/y" } }',
     "appears twice"),
    ("model_config_list { }", "model config list is empty"),
    ("model_config_list { config { nme: 1 } }", "not a valid ModelServerConfig"),
])
def test_bad_model_configs_say_what_is_wrong(text, message):
  with pytest.raises(ValueError, match=message):
    config_lib.parse_model_config_text(text)


def test_model_config_policies_and_batching_defaults():
  (model,) = config_lib.parse_model_config_text(
      'model_config_list { config { name: "m" base_path: "/x" model_version_policy { all {} } '
      'version_labels { key: "stable" value: 3 } } }')
  assert model.version_policy == ("all",) and model.version_labels == (("stable", 3),)
  (model,) = config_lib.parse_model_config_text('model_config_list { config { name: "m" base_path: "/x" } }')
  assert model.version_policy == ("latest", 1)
  defaults = config_lib.parse_batching_parameters_text("")
  assert (defaults.max_batch_size, defaults.batch_timeout_micros, defaults.max_enqueued_batches) == (1000, 0, 10)
  with pytest.raises(ValueError, match="Last entry in allowed_batch_sizes must match max_batch_size"):
    config_lib.parse_batching_parameters_text("max_batch_size { value: 8 } allowed_batch_sizes: 4")
  with pytest.raises(ValueError, match="not a valid BatchingParameters"):
    config_lib.parse_batching_parameters_text("max_batch_size: 8")
