"""The deploy files parse with TF Serving's formats and agree with each other; config parsing rejects bad input."""

from __future__ import annotations

import os

import pytest
import yaml

from serving import config as config_lib

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
  assert container["readinessProbe"]["httpGet"]["path"] == f"/v1/models/{models[0].name}"
  assert {p["port"] for p in service["spec"]["ports"]} == {8500, 8501}
  assert service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]


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
