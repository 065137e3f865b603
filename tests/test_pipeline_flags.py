"""The pipeline's CLI (pipelines.cli) forwards the training loop's evaluation/EMA flags and --checkpoint to the
stages' configs."""

from __future__ import annotations

import pytest
from absl import flags

from pipelines import cli, pipeline_lib


@pytest.fixture
def flag_values():
  values = flags.FlagValues()
  cli.define_flags(values)
  return values


def test_eval_ema_and_checkpoint_flags_reach_the_stage_configs(flag_values, tmp_path):
  flag_values.unparse_flags()
  flag_values(["local", "--model=munit", "--preset=tiny", f"--domain_a={tmp_path}", f"--domain_b={tmp_path}",
               "--eval_every_steps=100", "--eval_images=8", "--best_metric=cycle_psnr", "--ema_decay=0.99",
               "--checkpoint=latest"], known_only=True)
  pipeline = pipeline_lib.create_pipeline(cli.pipeline_config_from_flags(flag_values, []))
  train = pipeline.stage("train").parameters  # parameters: part of the cache key (they change the best model)
  assert (train["eval_every_steps"], train["eval_images"], train["best_metric"], train["ema_decay"]) == (
      100, 8, "cycle_psnr", 0.99)
  assert pipeline.stage("evaluate").parameters["checkpoint"] == "latest"
  assert pipeline.stage("evaluate").parameters["num_images"] == 8  # a given --eval_images sizes evaluate too
  assert pipeline.stage("export").parameters["checkpoint"] == "latest"
  config = pipeline.stage("train").build_config({"data_dir": "/d"}, "/m")
  assert (config.eval_every_steps, config.ema_decay) == (100, 0.99)
  assert pipeline.stage("export").build_config({"model_dir": "/m", "stats_path": None, "metrics_path": None},
                                               "/o").checkpoint == "latest"
  flag_values.unparse_flags()
  flag_values(["local", "--model=munit", f"--domain_a={tmp_path}", f"--domain_b={tmp_path}"], known_only=True)
  pipeline = pipeline_lib.create_pipeline(cli.pipeline_config_from_flags(flag_values, []))
  assert "checkpoint" not in pipeline.stage("evaluate").parameters  # the stage default: auto (best if kept)
  assert "num_images" not in pipeline.stage("evaluate").parameters  # evaluate: every test image
  assert pipeline.stage("train").parameters["eval_every_steps"] == 0
