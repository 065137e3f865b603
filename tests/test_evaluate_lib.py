"""Tests of components.evaluate_lib: end-to-end evaluation with blessing, baseline comparison and the report."""

import json
import os
import re

import numpy as np
import pytest

import models
from components import evaluate_lib, measurement
from components.errors import StageError
from tests.stage_models import exported
from tests.test_train_data import write_dataset


def _family_or_skip(name):
  try:
    models.get_family(name)
  except (ImportError, AttributeError) as e:
    pytest.skip(f"models/{name} has not landed yet: {e}")


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
  return write_dataset(str(tmp_path_factory.mktemp("data")), size=32, train=1, test=6)


def _report_images(output_dir):
  with open(os.path.join(output_dir, "report.html")) as f:
    page = f.read()
  return page, re.findall(r"<img src='([^']+)'", page)


@pytest.mark.slow
def test_munit_evaluation_against_its_own_export_as_baseline(data_dir, tmp_path):
  _family_or_skip("munit")
  model_dir, export = exported("munit")
  serving_root = tmp_path / "serving" / "munit"
  os.makedirs(serving_root)
  os.symlink(export.path, serving_root / "3")  # a pushed version; the highest is the baseline
  result = evaluate_lib.run(evaluate_lib.EvaluateConfig(
      model_dir, data_dir, str(tmp_path / "eval"), num_styles=3, kid_subsets=10, max_kid=100.0,
      baseline_model_dir=str(serving_root), baseline_metric="kid", baseline_margin=1e-6))
  assert result.blessed, result.reason
  assert (tmp_path / "eval" / "BLESSED").read_text().strip() == result.reason
  assert "kid" in result.reason and str(serving_root / "3") in result.reason
  for name in ("kid", "fid", "cycle_l1", "cycle_psnr", "diversity_l1", "diversity_lpips", "kid_a2b", "fid_b2a"):
    assert np.isfinite(result.metrics[name]), name
  assert result.metrics["diversity_l1"] > 0 and result.metrics["diversity_lpips"] > 0
  # Same weights through the same serving code path: the baseline measures the same.
  for name in ("kid", "fid", "cycle_l1", "cycle_psnr"):
    assert result.baseline_metrics[name] == pytest.approx(result.metrics[name], rel=1e-4, abs=1e-6)
  summary = json.loads((tmp_path / "eval" / "metrics.json").read_text())
  assert summary["num_images"] == {"a": 6, "b": 6} and summary["feature_extractor"] == "hed_vgg16_conv5"
  assert summary["comparable_with_papers"] is False
  page, images = _report_images(str(tmp_path / "eval"))
  assert "random style 3" in page and "NOT comparable" in page
  assert all((tmp_path / "eval" / src).is_file() for src in images) and len(images) == 2 * 5
  assert (tmp_path / "eval" / "grid_a2b.png").is_file()


@pytest.mark.slow
def test_ugatit_evaluation_renders_attention_and_fails_thresholds_with_reasons(data_dir, tmp_path):
  _family_or_skip("ugatit")
  model_dir, _ = exported("ugatit")
  result = evaluate_lib.run(evaluate_lib.EvaluateConfig(
      model_dir, data_dir, str(tmp_path), num_images=4, kid_subsets=5, max_cycle_l1=0.0, min_psnr=99.0,
      max_kid=1e9, baseline_model_dir=str(tmp_path / "no_such_root")))
  assert not result.blessed
  text = (tmp_path / "NOT_BLESSED").read_text()
  assert "cycle_l1" in text and "max 0" in text and "cycle_psnr" in text and "min 99" in text
  assert "kid" not in text.split(";")[0] or "max 1e+09" not in text  # the met threshold is not a reason
  page, images = _report_images(str(tmp_path))
  assert "attention (CAM heatmap)" in page and "diversity" not in json.dumps(result.metrics)
  assert len(images) == 2 * 4
  summary = json.loads((tmp_path / "metrics.json").read_text())
  assert summary["baseline"]["note"].startswith("no baseline yet")


def test_resolve_baseline_picks_the_highest_complete_version(tmp_path):
  for version in ("2", "10", "11"):
    os.makedirs(tmp_path / version)
  for version in ("2", "10"):
    (tmp_path / version / "saved_model.pb").write_bytes(b"")
  os.makedirs(tmp_path / ".push-12-1")
  path, note = evaluate_lib.resolve_baseline(str(tmp_path))
  assert path == str(tmp_path / "10") and "latest of 2" in note
  assert evaluate_lib.resolve_baseline(None) == (None, "no baseline given")
  assert evaluate_lib.resolve_baseline(str(tmp_path / "absent"))[0] is None


def test_bless_golden_cases():
  config = evaluate_lib.EvaluateConfig("m", "d", "o", max_kid=0.1, baseline_metric="fid", baseline_margin=2.0)
  values = {"kid": 0.05, "fid": 11.0, "cycle_l1": 0.2, "cycle_psnr": 20.0}
  assert evaluate_lib.bless(values, config, {"fid": 10.0}, "baseline B")[0]
  blessed, reason = evaluate_lib.bless(values, config, {"fid": 8.0}, "baseline B")
  assert not blessed and reason == "fid 11 vs baseline B: 8 (lower is better, margin 2)"
  blessed, reason = evaluate_lib.bless({**values, "kid": 0.2}, config, None, "no baseline given")
  assert not blessed and reason == "kid 0.2 vs max 0.1"


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
def test_bless_never_blesses_a_metric_that_is_not_finite(bad):
  values = {"kid": 0.05, "kid_a2b": 0.05, "fid": 11.0, "cycle_l1": 0.2, "cycle_psnr": 20.0}
  no_rules = evaluate_lib.EvaluateConfig("m", "d", "o")
  assert evaluate_lib.bless(values, no_rules, None, "no baseline given") == (True, "no baseline given")
  # NaN passes every comparison (NaN > x is False): a threshold, a baseline and no rule at all must all refuse.
  for config, baseline in ((no_rules, None), (evaluate_lib.EvaluateConfig("m", "d", "o", max_fid=50.0), None),
                           (evaluate_lib.EvaluateConfig("m", "d", "o", baseline_metric="kid"), {"kid": 0.5})):
    for name in ("kid", "kid_a2b", "cycle_psnr"):
      blessed, reason = evaluate_lib.bless({**values, name: bad}, config, baseline, "baseline B")
      assert not blessed and f"not finite: {name} {bad}" in reason.split("; "), (name, reason)
  blessed, reason = evaluate_lib.bless({**values, "kid": bad, "fid": bad}, no_rules, None, "no baseline given")
  assert (blessed, reason) == (False, f"not finite: fid {bad}, kid {bad}")


def test_heatmap_colormap_golden():
  rgb = evaluate_lib.heatmap_to_rgb(np.array([[[0.0, 1.0, 0.6]]]))
  np.testing.assert_array_equal(rgb[0, 0], [[0, 0, 128], [128, 0, 0], [255, 255, 0]])


def test_config_rejects_bad_values_with_what_to_do():
  with pytest.raises(StageError, match="num_styles must be >= 2"):
    evaluate_lib.EvaluateConfig("m", "d", "o", num_styles=1)
  with pytest.raises(StageError, match="baseline_metric must be one of"):
    evaluate_lib.EvaluateConfig("m", "d", "o", baseline_metric="lpips")


def test_missing_test_split_is_a_stage_error(tmp_path):
  with pytest.raises(StageError, match="cannot read the test split of domain a"):
    measurement.load_test_images(str(tmp_path), "a", 32, None)
