"""components.train flags: every model-config field is a flag mapped by name; --flagfile; --helpfull; CLI errors."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys

import pytest
from absl import flags

import models
from components import train
from components.errors import StageError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture
def flag_values():
  """The train stage's flags (components.train.define_flags) on a FlagValues of their own."""
  values = flags.FlagValues()
  train.define_flags(values)
  return values


def test_every_model_config_field_is_a_flag(flag_values):
  for name in models.FAMILY_NAMES:
    for field in dataclasses.fields(models.get_family(name).config_class):
      assert field.name in flag_values, f"{name}.{field.name} has no flag"
      assert flag_values[field.name].default is None or field.name in train.STAGE_FLAGS


def test_flags_build_train_config(flag_values, tmp_path):
  flagfile = tmp_path / "train.flags"
  flagfile.write_text("--model=ugatit\n--preset=tiny\n--data_dir=/d\n--cycle_weight=3\n--steps=7\n")
  flag_values(["train", f"--flagfile={flagfile}", "--model_dir=/m", "--lr=2e-4", "--beta1=0.4", "--light=false",
               "--strategy=mirrored", "--cpu_replicas=2", "--jit_compile", "--checkpoint_every_steps=5",
               "--keep_checkpoints=2", "--summary_every_steps=3", "--sample_every_steps=0", "--seed=9"])
  config = train.config_from_flags(flag_values)
  assert (config.family, config.preset, config.data_dir, config.model_dir) == ("ugatit", "tiny", "/d", "/m")
  assert config.model_overrides == {"cycle_weight": 3.0, "lr": 2e-4, "beta1": 0.4, "light": False}
  assert (config.steps, config.checkpoint_every_steps, config.keep_checkpoints, config.summary_every_steps,
          config.sample_every_steps, config.seed) == (7, 5, 2, 3, 0, 9)
  assert (config.strategy, config.cpu_replicas, config.jit_compile, config.mixed_precision) == (
      "mirrored", 2, True, False)
  from components import train_lib  # pylint: disable=import-outside-toplevel
  family = models.get_family("ugatit")
  model_config = train_lib.build_model_config(family, config.preset, config.model_overrides)
  assert model_config == models.get_config("ugatit", "tiny", cycle_weight=3.0, lr=2e-4, beta1=0.4, light=False)


def test_flag_of_another_family_is_an_error_naming_it(flag_values):
  flag_values(["train", "--model=ugatit", "--data_dir=/d", "--model_dir=/m", "--gan_w=2"])
  config = train.config_from_flags(flag_values)
  from components import train_lib  # pylint: disable=import-outside-toplevel
  with pytest.raises(StageError, match=r"--gan_w is not a setting of the ugatit model"):
    train_lib.build_model_config(models.get_family("ugatit"), config.preset, config.model_overrides)


def test_cli_helpfull_and_error_exit():
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
  helpfull = subprocess.run([sys.executable, "-m", "components.train", "--helpfull"], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=120)
  for name in ("model", "data_dir", "cpu_replicas", "strategy", "[no]jit_compile", "[no]mixed_precision",
               "cycle_weight", "gan_w", "recon_x_w", "ll_direct_link_w", "lr_policy", "weight_decay", "[no]light"):
    assert f"--{name}:" in helpfull.stdout, name
  assert "(paper: unit=10.0, munit=1.0)" in helpfull.stdout  # gan_w's help shows each family's paper value
  bad = subprocess.run([sys.executable, "-m", "components.train", "--model=unit", "--data_dir=/nonexistent",
                        "--model_dir=/tmp/unused", "--cycle_weight=1"], cwd=ROOT, env=env, capture_output=True,
                       text=True, timeout=120)
  assert bad.returncode == 1
  assert "train: error: --cycle_weight is not a setting of the unit model" in bad.stderr


def test_eval_and_ema_flags_build_train_config(flag_values):
  flag_values(["train", "--model=munit", "--data_dir=/d", "--model_dir=/m", "--eval_every_steps=250",
               "--eval_images=8", "--best_metric=cycle_psnr", "--eval_feature_extractor=auto", "--ema_decay=0.999"])
  config = train.config_from_flags(flag_values)
  assert (config.eval_every_steps, config.eval_images, config.best_metric, config.eval_feature_extractor,
          config.ema_decay) == (250, 8, "cycle_psnr", "auto", 0.999)
  flag_values.unparse_flags()
  flag_values(["train", "--model=munit", "--data_dir=/d", "--model_dir=/m"])
  config = train.config_from_flags(flag_values)
  assert (config.eval_every_steps, config.ema_decay, config.best_metric) == (0, 0.0, "kid")  # off by default
