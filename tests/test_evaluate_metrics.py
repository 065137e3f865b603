"""Golden-value tests of components.metrics (KID, FID, PSNR, L1s, LPIPS-like) and the offline HED features."""

import itertools

import numpy as np
import pytest

from components import metrics


def test_mmd2_unbiased_matches_the_formula_written_out():
  rng = np.random.default_rng(0)
  x, y = rng.normal(size=(4, 3)), rng.normal(size=(5, 3)) + 0.5
  k = lambda a, b: (np.dot(a, b) / 3 + 1) ** 3
  xx = sum(k(x[i], x[j]) for i, j in itertools.permutations(range(4), 2)) / (4 * 3)
  yy = sum(k(y[i], y[j]) for i, j in itertools.permutations(range(5), 2)) / (5 * 4)
  xy = sum(k(a, b) for a in x for b in y) / (4 * 5)
  assert metrics.mmd2_unbiased(x, y) == pytest.approx(xx + yy - 2 * xy, rel=1e-12)


def test_kid_with_one_full_subset_is_the_mmd_and_is_reproducible():
  rng = np.random.default_rng(1)
  x, y = rng.normal(size=(6, 4)), rng.normal(size=(6, 4))
  mean, std = metrics.kid(x, y, num_subsets=3, subset_size=100)
  assert mean == pytest.approx(metrics.mmd2_unbiased(x, y)) and std == pytest.approx(0.0, abs=1e-12)
  assert metrics.kid(x, y, num_subsets=5, subset_size=4, seed=3) == metrics.kid(x, y, num_subsets=5, subset_size=4,
                                                                                  seed=3)


def test_kid_of_a_set_against_itself_is_about_zero_and_grows_with_noise():
  rng = np.random.default_rng(2)
  x = rng.uniform(size=(200, 32))  # non-negative, O(1) like Inception pool3 features
  values = [metrics.kid(x, np.clip(x + rng.normal(scale=s, size=x.shape), 0, None), num_subsets=20,
                        subset_size=100)[0] for s in (0.0, 0.5, 1.0, 2.0)]
  assert abs(values[0]) < 0.01 < values[1] < values[2] < values[3]


def test_fid_golden_for_diagonal_gaussians_and_zero_for_identical_sets():
  mu_x, mu_y = np.array([0.0, 1.0]), np.array([1.0, 3.0])
  var_x, var_y = np.array([1.0, 4.0]), np.array([9.0, 1.0])
  expected = 1 + 4 + (1 + 9 - 2 * 3) + (4 + 1 - 2 * 2)
  assert metrics.frechet_distance(mu_x, np.diag(var_x), mu_y, np.diag(var_y)) == pytest.approx(expected)
  x = np.random.default_rng(3).normal(size=(50, 5))
  assert metrics.fid(x, x) == pytest.approx(0.0, abs=1e-6)
  # 1-d: (m1 - m2)^2 + (s1 - s2)^2 with unbiased standard deviations.
  a, b = np.array([[0.0], [2.0]]), np.array([[1.0], [5.0]])
  assert metrics.fid(a, b) == pytest.approx((1 - 3) ** 2 + (np.sqrt(2) - np.sqrt(8)) ** 2)


def test_fid_few_images_shortcut_equals_the_covariance_formula():
  rng = np.random.default_rng(5)
  x, y = rng.normal(size=(6, 10)), rng.normal(size=(9, 10)) * 2 + 1  # fewer images than dimensions
  full = metrics.frechet_distance(x.mean(0), np.cov(x, rowvar=False), y.mean(0), np.cov(y, rowvar=False))
  assert metrics.fid(x, y) == pytest.approx(full, rel=1e-6)
  assert metrics.fid(x, x) == pytest.approx(0.0, abs=1e-9)


def test_fid_rejects_mismatched_features_with_the_shapes():
  with pytest.raises(ValueError, match=r"\(3, 2\) vs \(3, 4\)"):
    metrics.fid(np.zeros((3, 2)), np.zeros((3, 4)))


def test_psnr_golden_and_cap_for_identical_images():
  x = np.zeros((2, 2, 2, 3), np.uint8)
  y = x.copy()
  y[0, 0, 0, 0] = 255  # mse = 255^2 / 12 -> psnr = 10 log10(12)
  assert metrics.psnr(x, y) == pytest.approx((10 * np.log10(12) + metrics.PSNR_CAP_DB) / 2)
  assert metrics.psnr(x, x) == metrics.PSNR_CAP_DB


def test_cycle_l1_and_pairwise_l1_in_model_units():
  x = np.zeros((1, 2, 2, 3), np.uint8)
  assert metrics.cycle_l1(x, x + 255) == pytest.approx(2.0)
  samples = np.stack([x, x + 51, x + 102])  # pairwise distances 0.4, 0.8, 0.4 in [-1, 1] units
  assert metrics.mean_pairwise_l1(samples) == pytest.approx(1.6 / 3)
  with pytest.raises(ValueError, match="K >= 2"):
    metrics.mean_pairwise_l1(samples[:1])


def test_lpips_like_distance_golden():
  fx = [np.array([[[[3.0, 4.0]]]])]  # one position, unit vector (0.6, 0.8)
  fy = [np.array([[[[1.0, 0.0]]]])]
  assert metrics.lpips_like_distance(fx, fy) == pytest.approx([(0.6 - 1) ** 2 + 0.8 ** 2])
  assert metrics.lpips_like_distance(fx, fx) == pytest.approx([0.0])


def test_build_feature_extractor_rejects_unknown_names_and_missing_inception_weights(tmp_path):
  with pytest.raises(ValueError, match="must be one of"):
    metrics.build_feature_extractor("alexnet")
  with pytest.raises(ValueError, match="does not exist"):
    metrics.build_feature_extractor("inception", str(tmp_path / "missing.h5"))


def test_hed_features_kid_of_images_against_themselves_is_about_zero_and_grows_with_noise():
  extractor = metrics.build_feature_extractor("auto", inception_weights="/nonexistent.h5")
  assert isinstance(extractor, metrics.HedVgg16Features) and not extractor.comparable_with_papers
  rng = np.random.default_rng(4)
  # Smooth random images (upsampled 4x4 colour fields) so that the noise is what changes the statistics.
  base = np.kron(rng.uniform(0, 255, size=(48, 4, 4, 3)), np.ones((1, 8, 8, 1))).astype(np.uint8)
  clean = extractor.pooled(base)
  assert clean.shape == (48, 512) and np.all(np.isfinite(clean))
  np.testing.assert_allclose(extractor.pooled(base[:3]), clean[:3], rtol=1e-4, atol=1e-4)
  values = []
  for sigma in (0, 80, 160):
    noisy = np.clip(base + rng.normal(scale=sigma, size=base.shape), 0, 255).astype(np.uint8)
    values.append(metrics.kid(clean, extractor.pooled(noisy), num_subsets=20, subset_size=16)[0])
  assert abs(values[0]) < 0.15 * values[1]
  assert values[1] < values[2]
  maps = extractor.feature_maps(base[:2])
  assert [m.shape[1] for m in maps] == [32, 16, 8, 4, 2]
