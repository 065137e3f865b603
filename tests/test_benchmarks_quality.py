"""Quality benchmark metrics (benchmarks/quality_lib.py), the labelled picture grid and the budget presets.

Golden values are computed by hand from the definitions in the docstrings; no TensorFlow model is trained.
"""

import numpy as np
import pytest

import models
from benchmarks import quality_lib as q
from components import image_grid
from components import train_lib

RED, GREEN, BLUE, GREY = (255, 0, 0), (0, 255, 0), (0, 0, 255), (100, 100, 100)


def test_content_kept_is_a_share_of_real_accuracy():
  assert q.content_kept(0.46, 0.92) == pytest.approx(0.5)
  with pytest.raises(ValueError):
    q.content_kept(0.5, 0.0)


def test_region_colours_means_inside_stroke_and_background_masks():
  image = np.array([[[[200, 100, 0], [10, 20, 30]],
                     [[90, 90, 90], [30, 40, 50]]]], np.uint8)  # [1, 2, 2, 3]
  alpha = np.array([[[1.0, 0.0], [0.5, 0.02]]])  # stroke: (0,0); background: (0,1) and (1,1); (1,0) neither
  stroke, background = q.region_colours(image, alpha)
  np.testing.assert_allclose(stroke, [[200, 100, 0]])
  np.testing.assert_allclose(background, [[20, 30, 40]])


def test_region_colours_without_pixels_is_nan():
  stroke, _ = q.region_colours(np.zeros((1, 2, 2, 3), np.uint8), np.zeros((1, 2, 2)))
  assert np.isnan(stroke).all()


def test_colour_histogram_bins_of_64_levels():
  hist = q.colour_histogram(np.array([[0, 0, 0], [255, 255, 255], [255, 0, 0], [10, 10, 10], [np.nan, 0, 0]]))
  expected = np.zeros(64)
  expected[0], expected[48], expected[63] = 0.5, 0.25, 0.25  # (0,0,0); (3,0,0) -> 3*16; (3,3,3) -> 63
  np.testing.assert_allclose(hist, expected)


def test_total_variation():
  assert q.total_variation([0.5, 0.5, 0.0], [0.0, 0.5, 0.5]) == pytest.approx(0.5)
  assert q.total_variation([1.0, 0.0], [0.0, 1.0]) == pytest.approx(1.0)
  assert q.total_variation([0.3, 0.7], [0.3, 0.7]) == 0.0


def test_colour_distance_identical_sets_is_zero_and_wrong_stroke_colour_is_half():
  alpha = np.zeros((2, 4, 4))
  alpha[:, 1:3, 1:3] = 1.0
  real = np.zeros((2, 4, 4, 3), np.uint8)
  real[:, 1:3, 1:3] = RED
  assert q.colour_distance(real, alpha, real, alpha)["mean"] == 0.0
  white = real.copy()
  white[:, 1:3, 1:3] = 255
  d = q.colour_distance(white, alpha, real, alpha)
  assert (d["stroke"], d["background"], d["mean"]) == (1.0, 0.0, 0.5)


def test_appearance_hue_bins_and_grey():
  # hue of (255, 128, 0) = (128 / 255) / 6 = 0.0837 -> 12 * 0.0837 = 1.004 -> bin 1
  np.testing.assert_array_equal(q.appearance(np.array([RED, GREEN, BLUE, GREY, (255, 128, 0)])),
                                [0, 4, 8, 12, 1])


def test_distinct_appearances_counts_per_input_then_averages():
  colours = np.array([[RED, RED], [RED, GREEN], [GREEN, BLUE]], np.float64)  # [K=3, N=2, 3]
  assert q.distinct_appearances(colours) == pytest.approx((2 + 3) / 2)


def test_reference_follow_rate_nearest_reference():
  refs = np.array([RED, BLUE], np.float64)
  outputs = np.array([[[250, 0, 0], [0, 0, 250]],    # reference 0: nearest 0 (right), 1 (wrong)
                      [[0, 10, 240], [0, 0, 255]]],  # reference 1: nearest 1, 1 (both right)
                     np.float64)
  assert q.reference_follow_rate(outputs, refs) == pytest.approx(3 / 4)


def test_distinct_hue_indices_skips_repeats_and_grey():
  colours = np.array([RED, RED, GREY, GREEN, BLUE], np.float64)
  assert q.distinct_hue_indices(colours, 3) == [0, 3, 4]


def test_colourize_stroke_saturated_background_dark():
  digits = np.zeros((3, 28, 28), np.uint8)
  digits[:, 10:18, 10:18] = 255
  images = q.colourize(digits, np.random.default_rng(0))
  assert images.shape == (3, 32, 32, 3)
  alpha = q.digit_alpha(digits)
  stroke, background = q.region_colours(images, alpha)
  assert (background <= 60).all()
  assert (stroke.max(axis=1) == 255).all() and (stroke.min(axis=1) == 55).all()


def test_parse_overrides_and_summarize():
  assert q.parse_overrides(["lr=0.0002", "light=True", "lr_policy=constant", "ch=16"]) == {
      "lr": 0.0002, "light": True, "lr_policy": "constant", "ch": 16}
  with pytest.raises(ValueError):
    q.parse_overrides(["lr"])
  runs = [{"family": "unit", "preset": "budget", "tag": "", "seed": s, "train_seconds": t, "steps": 10,
           "untrained": {"content_kept_a2b": 0.1}, "trained": {"content_kept_a2b": c},
           "targets_met": {"content_a2b": c >= 0.85}} for s, t, c in ((0, 100.0, 0.9), (1, 120.0, 0.8))]
  summary = q.summarize(runs)["unit/budget"]
  assert summary["trained"]["content_kept_a2b"] == pytest.approx(0.85)
  assert summary["max_train_seconds"] == 120.0 and summary["seeds"] == [0, 1]
  assert summary["all_targets_met"] is False


def test_upscale_nearest_repeats_pixels():
  image = np.arange(4, dtype=np.uint8).reshape(1, 2, 2, 1)
  out = image_grid.upscale_nearest(image, 2)
  np.testing.assert_array_equal(out[0, :, :, 0], [[0, 0, 1, 1], [0, 0, 1, 1], [2, 2, 3, 3], [2, 2, 3, 3]])


def test_labeled_grid_layout():
  a = np.full((1, 2, 2, 3), 10, np.uint8)
  b = np.full((2, 2, 2, 3), 200, np.uint8)
  grid = image_grid.labeled_grid([a, b], ["x", "y"], scale=3, pad=1, label_width=0)
  # height 1 + 2 * (6 + 1), width 0 + 1 + 2 * (6 + 1)
  assert grid.shape == (15, 15, 3)
  assert (grid[1:7, 1:7] == 10).all() and (grid[1:7, 8:14] == 255).all()
  assert (grid[8:14, 1:7] == 200).all() and (grid[8:14, 8:14] == 200).all()
  labelled = image_grid.labeled_grid([a, b], ["first row", "second"], scale=3, title="t")
  assert labelled.shape[1] == 120 + 2 + 2 * (6 + 2) and (labelled[:, :120] < 255).any()  # text drawn
  with pytest.raises(ValueError):
    image_grid.labeled_grid([a], ["x", "y"])


@pytest.mark.parametrize("name", models.FAMILY_NAMES)
def test_budget_preset_is_the_paper_method_small(name):
  family = models.get_family(name)
  budget, paper = family.presets["budget"], family.presets["paper"]
  assert budget.image_size == 32 and budget.batch_size >= 4
  # same method: the loss weights and the optimizer's betas are the paper's
  for field in ("gan_w", "recon_x_w", "recon_s_w", "recon_c_w", "ll_direct_link_w", "kl_direct_link_w",
                "adv_weight", "cycle_weight", "identity_weight", "cam_weight", "beta1", "beta2", "lr_policy"):
    if hasattr(paper, field):
      assert getattr(budget, field) == getattr(paper, field), field
  # the schedule follows the run: at the preset's own length nothing changes; at twice the length it stretches
  same, _ = train_lib.schedule_for_run(budget, budget, {}, budget.max_iter)
  assert same == budget
  longer, _ = train_lib.schedule_for_run(budget, budget, {}, 2 * budget.max_iter)
  assert longer.max_iter == 2 * budget.max_iter
  if budget.lr_policy == "step":
    assert budget.step_size == budget.max_iter // 2 and longer.step_size == budget.max_iter
