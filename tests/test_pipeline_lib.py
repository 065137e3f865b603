"""Tests of pipelines.pipeline_lib: create_pipeline is pure wiring and matches the stages' real configs."""

import dataclasses
import os
import subprocess
import sys

import pytest

from pipelines import pipeline_lib
from pipelines.pipeline_lib import Output, PipelineConfig, Source

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _config(tmp_path, **kwargs):
  values = dict(pipeline_root=str(tmp_path / "root"), serving_root=str(tmp_path / "serving"),
                dataset_dir=str(tmp_path / "data"), family="ugatit", preset="tiny")
  values.update(kwargs)
  return PipelineConfig(**values)


def test_create_pipeline_is_pure():
  # In a fresh interpreter: no stage module, no TensorFlow imported, nothing written, same value twice.
  code = (
      "import os, sys, tempfile\n"
      "from pipelines import pipeline_lib\n"
      "root = os.path.join(tempfile.mkdtemp(), 'never')\n"
      "c = pipeline_lib.PipelineConfig(pipeline_root=root, serving_root=root + '/s', domain_a='/a', domain_b='/b')\n"
      "p = pipeline_lib.create_pipeline(c)\n"
      "assert p == pipeline_lib.create_pipeline(c)\n"
      "assert not os.path.exists(root), 'create_pipeline wrote files'\n"
      "loaded = sorted(m for m in sys.modules if m.split('.')[0] in ('components', 'tensorflow', 'models',"
      " 'apache_beam', 'serving'))\n"
      "assert not loaded, loaded\n"
      "print(' '.join(s.name for s in p.stages))\n")
  out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                       env=dict(os.environ, PYTHONPATH=ROOT), timeout=60)
  assert out.returncode == 0, out.stderr
  assert out.stdout.split() == list(pipeline_lib.STAGE_NAMES)


def test_wiring(tmp_path):
  config = _config(tmp_path, image_size=32, steps=7, model_overrides={"lr": 0.5}, model_name="digits",
                   stage_options={"evaluate": {"num_images": 3}},
                   runtime_options={"ingest": {"beam_args": ("--direct_num_workers=2",)},
                                    "train": {"strategy": "mirrored"}})
  pipeline = pipeline_lib.create_pipeline(config)
  assert [s.name for s in pipeline.stages] == list(pipeline_lib.STAGE_NAMES)
  ingest, validate, train, evaluate, export, infra, push = pipeline.stages
  assert ingest.inputs == {"dataset_dir": Source(str(tmp_path / "data"))}
  assert ingest.parameters == {"load_size": 36}  # ceil(32 * 286 / 256)
  assert ingest.runtime == {"beam_args": ("--direct_num_workers=2",)}  # runner options: not in the cache key
  assert validate.parameters == {"image_size": 32}
  assert train.parameters == {"family": "ugatit", "preset": "tiny", "steps": 7,
                              "model_overrides": {"lr": 0.5, "image_size": 32}}
  assert train.runtime == {"strategy": "mirrored"} and train.resumable and train.upstream == ("ingest", "validate")
  assert evaluate.parameters == {"num_images": 3}
  assert evaluate.inputs["model_dir"] == Output("train", "model_dir")
  assert infra.upstream == ("export",)
  assert push.output_field is None and push.parameters["model_name"] == "digits"
  assert push.parameters["serving_root"] == str(tmp_path / "serving")
  assert set(push.upstream) == {"export", "evaluate", "infra_validate"}
  # Explicit stage options win over the values derived from image_size.
  derived = pipeline_lib.create_pipeline(_config(tmp_path, image_size=32, stage_options={"ingest": {"load_size": 40}}))
  assert derived.stage("ingest").parameters == {"load_size": 40}
  folders = pipeline_lib.create_pipeline(_config(tmp_path, dataset_dir=None, domain_a="/x", domain_b="/y"))
  assert folders.stage("ingest").inputs == {"domain_a": Source("/x"), "domain_b": Source("/y")}
  assert folders.stage("push").parameters["model_name"] == "ugatit"


@pytest.mark.parametrize("kwargs, message", [
    ({"dataset_dir": None}, "no data"),
    ({"domain_a": "/x"}, "not both"),
    ({"stage_options": {"trian": {}}}, "unknown stage"),
    ({"image_size": 0}, "image_size"),
])
def test_config_errors(tmp_path, kwargs, message):
  with pytest.raises(ValueError, match=message):
    _config(tmp_path, **kwargs)


@pytest.mark.parametrize("stage_name", pipeline_lib.STAGE_NAMES)
def test_wiring_matches_the_stage_configs(tmp_path, stage_name):
  stage = pipeline_lib.create_pipeline(_config(tmp_path, image_size=32, steps=3)).stage(stage_name)
  inputs = {field: f"/in/{field}" for field in stage.inputs}
  config = stage.build_config(inputs, "/out/dir")
  values = dataclasses.asdict(config)
  for field in stage.inputs:
    assert values[field] == f"/in/{field}"
  if stage.output_field:
    assert values[stage.output_field] == "/out/dir"
  for field, value in {**stage.parameters, **stage.runtime}.items():
    assert values[field] == value


def test_consumed_outputs_exist_on_the_stage_results(tmp_path):
  # Every Output(stage, key) names a field of that stage's result dataclass (as returned by its run()).
  import importlib
  import typing
  pipeline = pipeline_lib.create_pipeline(_config(tmp_path, image_size=32))
  for stage in pipeline.stages:
    for ref in stage.inputs.values():
      if isinstance(ref, Output) and ref.key != "output_dir":
        producer = pipeline.stage(ref.stage)
        result_class = typing.get_type_hints(importlib.import_module(producer.module).run)["return"]
        assert ref.key in {f.name for f in dataclasses.fields(result_class)}, (stage.name, ref)


def test_a_given_model_dir_replaces_training_with_the_import_model_node(tmp_path):
  pipeline = pipeline_lib.create_pipeline(_config(tmp_path, model_dir=str(tmp_path / "official")))
  names = [s.name for s in pipeline.stages]
  assert names == ["ingest", "validate", "import_model", "evaluate", "export", "infra_validate", "push"]
  node = pipeline.stage("import_model")
  assert node.module == "components.import_model_lib" and node.inputs == {"model_dir": Source(str(tmp_path / "official"))}
  assert pipeline.stage("evaluate").inputs["model_dir"] == Output("import_model", "model_dir")
  assert pipeline.stage("export").inputs["model_dir"] == Output("import_model", "model_dir")
