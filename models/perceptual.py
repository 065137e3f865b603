"""MUNIT's domain-invariant perceptual loss: MSE between instance-normalized VGG16 relu5_3 features.

As NVlabs/MUNIT (`Vgg16`, `vgg_preprocess`, `compute_vgg_loss`): images in [-1, 1] RGB are turned into
caffe-style VGG input (BGR, [0, 255], ImageNet channel means subtracted), run through VGG16 up to relu5_3
WITHOUT the 4th max-pool (MUNIT's Vgg16 goes from relu4_3 straight to conv5_1, so features are at 1/8 of
the input size), instance-normalized (no affine, eps 1e-5) and compared with a mean squared error.
The ImageNet weights are Keras' `vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5` (converted from the
same caffe model), read from an explicit path or the Keras cache; nothing is ever downloaded here.
"""

from __future__ import annotations

import os

import keras
import tensorflow as tf

from models import losses
from models.layers.normalization import instance_norm

VGG16_WEIGHTS_FILE = "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5"
CAFFE_BGR_MEAN = (103.939, 116.779, 123.68)
# MUNIT's Vgg16 max-pools after blocks 1-3 only (no block4_pool before conv5_1).
POOL_AFTER = {"block1_conv2": "block1_pool", "block2_conv2": "block2_pool", "block3_conv3": "block3_pool"}


def keras_cache_path() -> str:
  """Where Keras keeps VGG16 ImageNet weights: $KERAS_HOME/models/<file> (default ~/.keras/models/<file>)."""
  home = os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
  return os.path.join(home, "models", VGG16_WEIGHTS_FILE)


def resolve_vgg16_weights(path: str = "") -> str:
  """Returns an existing VGG16 weights file (`path`, or the Keras cache when empty) or raises FileNotFoundError."""
  candidate = path or keras_cache_path()
  if not os.path.isfile(candidate):
    raise FileNotFoundError(
        f"vgg_w > 0 needs ImageNet VGG16 weights, but {candidate!r} does not exist. Either copy Keras' "
        f"{VGG16_WEIGHTS_FILE} there (on a machine with internet: python -c \"import keras; "
        f"keras.applications.VGG16(include_top=False)\" fills ~/.keras/models/), pass "
        f"vgg_weights_path=<file>, or set vgg_w=0 to train without the perceptual loss.")
  return candidate


@keras.saving.register_keras_serializable(package="i2i")
class VGGPerceptual(keras.Model):
  """Frozen VGG16 relu5_3 feature extractor with instance norm: `[B, H, W, 3]` in [-1, 1] -> `[B, H/8, W/8, 512]`.

  Args:
    weights_path: a Keras VGG16 notop weights file ("" = the Keras cache); `None` keeps the random Keras
      initialization (only for shape tests, never for training).
  """

  def __init__(self, weights_path: str | None = "", **kwargs):
    super().__init__(**kwargs)
    self.weights_path = weights_path
    weights = None if weights_path is None else resolve_vgg16_weights(weights_path)
    vgg = keras.applications.VGG16(include_top=False, weights=weights, input_shape=(None, None, 3))
    self.convs = [layer for layer in vgg.layers if isinstance(layer, keras.layers.Conv2D)]
    self.pools = {layer.name: layer for layer in vgg.layers if layer.name in POOL_AFTER.values()}
    for layer in self.convs:
      layer.trainable = False
    self.norm = instance_norm(False)
    self.trainable = False

  def call(self, images):
    rgb = (tf.cast(images, tf.float32) + 1.0) * 127.5
    x = tf.reverse(rgb, axis=[-1]) - tf.constant(CAFFE_BGR_MEAN, tf.float32)
    for conv in self.convs:
      x = conv(x)
      if conv.name in POOL_AFTER:
        x = self.pools[POOL_AFTER[conv.name]](x)
    return tf.cast(self.norm(x), tf.float32)

  def get_config(self):
    return {**super().get_config(), "weights_path": self.weights_path}


def perceptual_loss(vgg: VGGPerceptual, images: tf.Tensor, targets: tf.Tensor) -> tf.Tensor:
  """MUNIT domain-invariant perceptual loss, `[B]` float32.

  L_vgg = mean( (IN(phi(images)) - IN(phi(targets)))^2 ), phi = VGG16 relu5_3 (Huang et al., ECCV 2018, Sec. 4).

  Args:
    vgg: the feature extractor.
    images, targets: `[B, H, W, 3]` in [-1, 1] (translated image and the source image it came from).
  """
  return losses.mse_loss(vgg(images), vgg(targets))
