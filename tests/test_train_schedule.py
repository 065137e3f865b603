"""Learning-rate schedules follow the run's length (components.train_lib.schedule_for_run), golden by hand.

The official trainers tie the schedule to the iteration count: U-GAT-IT decays linearly from iteration // 2 to 0
at iteration; MUNIT/UNIT halve every step_size iterations. A run of --steps != the preset's max_iter gets the
same schedule shape over its own length, and config.json says what was used and why.
"""

from __future__ import annotations

import json
import os

import pytest

import models
from components import train_lib
from models import optim
from tests.test_train_data import FAST_OVERRIDES, write_dataset


def _effective(family: str, preset: str, steps, **overrides):
  preset_config = models.get_family(family).presets[preset]
  requested = preset_config.replace(**overrides)
  return train_lib.schedule_for_run(preset_config, requested, overrides, steps)


def _lr(config, t: int) -> float:
  schedule = optim.learning_rate_schedule(config)
  return float(schedule(t)) if callable(schedule) else float(schedule)


def test_munit_paper_step_size_scales_with_steps():
  # 100k of 1M iterations -> 3000 * 100000 / 1000000 = 300 steps; lr 1e-4 * 0.5 ** floor(t / 300).
  config, record = _effective("munit", "paper", 3000)
  assert (config.max_iter, config.step_size) == (3000, 300)
  assert record["requested"] == {"max_iter": 1_000_000, "step_size": 100_000}
  assert record["effective"] == {"max_iter": 3000, "step_size": 300}
  assert record["scale"] == pytest.approx(0.003) and record["preset_max_iter"] == 1_000_000
  # Iteration t trains at lr * gamma ** floor((t + 1) / step_size): MUNIT's train.py steps StepLR before each update.
  assert _lr(config, 298) == pytest.approx(1e-4)
  assert _lr(config, 299) == pytest.approx(0.5e-4)
  assert _lr(config, 2999) == pytest.approx(1e-4 * 0.5 ** 10)


def test_munit_tiny_halves_once_at_half_of_any_run_length():
  tiny = models.get_family("munit").presets["tiny"]
  assert tiny.step_size * 2 == tiny.max_iter  # the preset's own schedule fits its own length
  config, _ = _effective("munit", "tiny", 3000)
  assert config.step_size == 1500  # 500 * 3000 / 1000
  assert _lr(config, 1498) == pytest.approx(1e-4) and _lr(config, 1499) == pytest.approx(0.5e-4)
  assert _lr(config, 2999) == pytest.approx(0.25e-4)


def test_explicit_step_size_is_kept_and_steps_default_to_max_iter():
  config, record = _effective("munit", "paper", 3000, step_size=250)
  assert config.step_size == 250 and record["explicit"] == ["step_size"]
  # --max_iter alone sets the run length: the preset's step_size follows it (2000 * 100000 / 1000000 = 200).
  config, record = _effective("munit", "paper", None, max_iter=2000)
  assert (config.max_iter, config.step_size) == (2000, 200) and record["steps"] == 2000


def test_ugatit_linear_decay_starts_at_half_the_run():
  # lr(t) = 1e-4 while t + 1 <= 1500, then 1e-4 * (1 - (t + 1 - 1500) / 1500): 0 at the last iteration.
  config, record = _effective("ugatit", "paper", 3000)
  assert config.max_iter == 3000 and record["decay_starts_at"] == 1500
  assert _lr(config, 1498) == pytest.approx(1e-4)
  assert _lr(config, 1499) == pytest.approx(1e-4)
  assert _lr(config, 2249) == pytest.approx(1e-4 * (1 - 750 / 1500))
  assert _lr(config, 2999) == pytest.approx(0.0, abs=1e-12)
  tiny, _ = _effective("ugatit", "tiny", 600)
  assert _lr(tiny, 299) == pytest.approx(1e-4) and _lr(tiny, 449) == pytest.approx(0.5e-4)


def test_unit_constant_lr_only_records_the_length():
  config, record = _effective("unit", "paper", 3000)
  assert config.max_iter == 3000 and config.step_size == models.get_family("unit").presets["paper"].step_size
  assert record["lr_policy"] == "constant" and _lr(config, 2999) == pytest.approx(1e-4)


def test_every_tiny_preset_runs_its_schedule_over_its_own_length():
  for name in models.FAMILY_NAMES:
    tiny = models.get_family(name).presets["tiny"]
    config, record = train_lib.schedule_for_run(tiny, tiny, {}, None)
    assert config == tiny, name  # no rescaling at the preset's own length
    assert record["scale"] == 1.0


def test_run_writes_effective_schedule_and_resumes_with_more_steps(tmp_path):
  data_dir = write_dataset(str(tmp_path / "data"), train=4, test=2)
  model_dir = str(tmp_path / "model")
  base = dict(family="munit", data_dir=data_dir, model_dir=model_dir, preset="tiny",
              model_overrides=FAST_OVERRIDES["munit"], checkpoint_every_steps=2, summary_every_steps=1,
              sample_every_steps=0, strategy="default")
  train_lib.run(train_lib.TrainConfig(steps=2, **base))
  saved = json.load(open(os.path.join(model_dir, "config.json")))
  assert saved["model"]["step_size"] == 1 and saved["model"]["max_iter"] == 2  # round(500 * 2 / 1000)
  assert saved["schedule"]["effective"] == {"max_iter": 2, "step_size": 1}
  assert "steps" in saved["schedule"]["rule"]
  # A longer rerun resumes (the schedule is derived from --steps, not part of the model's identity).
  result = train_lib.run(train_lib.TrainConfig(steps=4, **base))
  assert (result.start_step, result.step) == (2, 4)
  saved = json.load(open(os.path.join(model_dir, "config.json")))
  assert saved["schedule"]["effective"] == {"max_iter": 4, "step_size": 2}
