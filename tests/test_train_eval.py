"""In-training evaluation (--eval_every_steps) and the best checkpoint (checkpoints/best/ + best.json).

The in-training numbers are the evaluate stage's own: evaluating the best checkpoint with components.evaluate
(same images, same feature extractor) reproduces the value recorded in best.json.
"""

from __future__ import annotations

import json
import math
import os

import pytest
import tensorflow as tf

from components import evaluate_lib, train_lib, trainer
from components.errors import StageError
from components.trainer import read_scalars
from tests.test_train_data import FAST_OVERRIDES, write_dataset


def test_best_keeper_keeps_the_best_by_direction_and_survives_a_restart(tmp_path):
  value = tf.Variable(0.0)
  checkpoint = tf.train.Checkpoint(value=value)
  directory = str(tmp_path / "checkpoints" / "best")
  keeper = trainer.BestCheckpointKeeper(checkpoint, directory, metric="kid", mode="min", chief=True)
  saved = []
  for step, kid in ((2, 0.5), (4, 0.7), (6, 0.3), (8, math.nan), (10, 0.3)):
    value.assign(float(step))
    if keeper.improves(kid):
      keeper.save(step, {"kid": kid, "fid": 1.0})
      saved.append(step)
  assert saved == [2, 6]  # lower is better; NaN and a tie never replace the best
  record = trainer.read_best(directory)
  assert record == {"step": 6, "metric": "kid", "mode": "min", "value": 0.3, "metrics": {"kid": 0.3, "fid": 1.0},
                    "checkpoint": "ckpt-6"}
  assert sorted(p for p in os.listdir(directory) if p.endswith(".index")) == ["ckpt-6.index"]
  tf.train.Checkpoint(value=value).restore(tf.train.latest_checkpoint(directory))
  assert float(value.numpy()) == 6.0
  again = trainer.BestCheckpointKeeper(checkpoint, directory, metric="kid", mode="min", chief=True)
  assert not again.improves(0.31) and again.improves(0.29)  # continues from the recorded best
  psnr = trainer.BestCheckpointKeeper(checkpoint, directory, metric="cycle_psnr", mode="max", chief=True)
  assert psnr.record is None and psnr.improves(-5.0)  # another metric starts afresh
  psnr.save(12, {"cycle_psnr": 20.0})
  assert not psnr.improves(19.0) and psnr.improves(21.0)  # higher is better


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
  return write_dataset(str(tmp_path_factory.mktemp("data")), train=4, test=4)


def _config(data_dir, model_dir, **kwargs):
  base = dict(family="munit", data_dir=data_dir, model_dir=model_dir, preset="tiny",
              model_overrides=FAST_OVERRIDES["munit"], steps=4, checkpoint_every_steps=1, keep_checkpoints=1,
              summary_every_steps=2, sample_every_steps=0, strategy="default", eval_every_steps=2, eval_images=4,
              best_metric="cycle_psnr")
  base.update(kwargs)
  return train_lib.TrainConfig(**base)


def test_settings_are_checked(data_dir, tmp_path):
  with pytest.raises(StageError, match="--best_metric must be one of"):
    train_lib.run(_config(data_dir, str(tmp_path), best_metric="lpips"))
  with pytest.raises(StageError, match="MUNIT only"):
    train_lib.run(_config(data_dir, str(tmp_path), family="unit", model_overrides={}, best_metric="diversity_l1"))
  with pytest.raises(StageError, match="--eval_images must be >= 2"):
    train_lib.run(_config(data_dir, str(tmp_path), eval_images=1))


@pytest.mark.slow
def test_eval_logs_metrics_keeps_best_and_evaluate_reads_it(data_dir, tmp_path):
  model_dir = str(tmp_path / "model")
  result = train_lib.run(_config(data_dir, model_dir))
  scalars = read_scalars(os.path.join(model_dir, "logs"))
  for name in ("kid", "fid", "cycle_l1", "cycle_psnr", "kid_a2b", "cycle_psnr_b2a", "diversity_l1"):
    assert sorted(scalars[f"eval/{name}"]) == [2, 4], name
  psnr = scalars["eval/cycle_psnr"]
  best_step = max(psnr, key=lambda s: (psnr[s], -s))  # higher is better; the first of a tie is kept
  best = json.load(open(os.path.join(model_dir, "checkpoints", "best", "best.json")))
  assert result.best == best
  assert (best["step"], best["metric"], best["mode"]) == (best_step, "cycle_psnr", "max")
  assert best["value"] == pytest.approx(psnr[best_step], rel=1e-6)
  assert best["metrics"]["kid"] == pytest.approx(scalars["eval/kid"][best_step], rel=1e-5)
  # The best checkpoint survives --keep_checkpoints=1 (the rolling directory holds only the last one).
  assert os.path.isfile(os.path.join(model_dir, "checkpoints", "best", f"ckpt-{best_step}.index"))
  assert tf.train.latest_checkpoint(os.path.join(model_dir, "checkpoints")).endswith("ckpt-4")
  assert len([p for p in os.listdir(os.path.join(model_dir, "checkpoints")) if p.endswith(".index")]) == 1
  # evaluate defaults to the best checkpoint, says so, and measures what training measured.
  out = evaluate_lib.run(evaluate_lib.EvaluateConfig(model_dir, data_dir, str(tmp_path / "eval"), num_images=4,
                                                     feature_extractor="hed"))
  assert out.checkpoint["checkpoint"] == "best" and out.checkpoint["step"] == best_step
  assert out.checkpoint["weights"] == "trained" and out.checkpoint["best"] == best
  for name in ("cycle_psnr", "kid", "fid", "diversity_l1"):
    assert out.metrics[name] == pytest.approx(best["metrics"][name], rel=1e-4, abs=1e-6), name
  summary = json.load(open(tmp_path / "eval" / "metrics.json"))
  assert summary["checkpoint"]["checkpoint"] == "best" and summary["training_step"] == best_step
  latest = evaluate_lib.run(evaluate_lib.EvaluateConfig(model_dir, data_dir, str(tmp_path / "eval_latest"),
                                                        num_images=4, feature_extractor="hed", checkpoint="latest"))
  assert (latest.checkpoint["checkpoint"], latest.checkpoint["step"]) == ("latest", 4)
  assert latest.metrics["cycle_psnr"] == pytest.approx(psnr[4], rel=1e-4)
