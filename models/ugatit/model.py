"""The U-GAT-IT translation model: two generators and four discriminators, as in UGATIT-pytorch `UGATIT.py`.

`genA2B, genB2A` are `gen_a2b, gen_b2a`; `disGA, disGB` (global, 7 layers) are `dis_global_a, dis_global_b`;
`disLA, disLB` (local, 5 layers) are `dis_local_a, dis_local_b`. `dis_*_a` judge domain A images.
`translate(images, direction)` returns the translation and the CAM attention map the exporter serves.
"""

from __future__ import annotations

from typing import Any, Mapping

import keras
import tensorflow as tf

from models.api import check_domain, check_translate_args
from models.ugatit.config import UGATITConfig
from models.ugatit.networks import Discriminator, Generator


def normalize_heatmap(heatmap: tf.Tensor, size) -> tf.Tensor:
  """CAM heatmap -> attention map in [0, 1] at image size (UGATIT-pytorch `utils.cam`: x - min, / max, resize).

  Args:
    heatmap: [B, h, w, 1] (any float dtype).
    size: (H, W) of the output, ints or scalar tensors.
  Returns:
    [B, H, W] float32, min-max normalized per image (an all-constant map gives zeros), bilinear resize.
  """
  heatmap = tf.cast(heatmap, tf.float32)
  low = tf.reduce_min(heatmap, axis=[1, 2, 3], keepdims=True)
  high = tf.reduce_max(heatmap, axis=[1, 2, 3], keepdims=True)
  scaled = tf.math.divide_no_nan(heatmap - low, high - low)
  resized = tf.image.resize(scaled, size, method="bilinear")
  return tf.clip_by_value(resized[..., 0], 0.0, 1.0)


@keras.saving.register_keras_serializable(package="i2i")
class UGATIT(keras.Model):
  """U-GAT-IT (Kim et al., ICLR 2020), full or light per `config.light`.

  Attributes:
    config: UGATITConfig.
    size_multiple: 4 (two stride-2 downsamplings); the full model also needs H == W == config.image_size.
  """

  size_multiple = 4

  def __init__(self, config: UGATITConfig | Mapping[str, Any], **kwargs):
    super().__init__(**kwargs)
    if not isinstance(config, UGATITConfig):
      config = UGATITConfig.from_dict(config)
    self.config = config
    dt = self.dtype_policy
    gen = dict(ch=config.ch, n_res=config.n_res, image_size=config.image_size, light=config.light, dtype=dt)
    self.gen_a2b = Generator(name="gen_a2b", **gen)
    self.gen_b2a = Generator(name="gen_b2a", **gen)
    self.dis_global_a = Discriminator(config.ch, config.global_dis_layers, name="dis_global_a", dtype=dt)
    self.dis_global_b = Discriminator(config.ch, config.global_dis_layers, name="dis_global_b", dtype=dt)
    self.dis_local_a = Discriminator(config.ch, config.local_dis_layers, name="dis_local_a", dtype=dt)
    self.dis_local_b = Discriminator(config.ch, config.local_dis_layers, name="dis_local_b", dtype=dt)

  @property
  def generators(self) -> list:
    return [self.gen_a2b, self.gen_b2a]

  @property
  def discriminators(self) -> list:
    return [self.dis_global_a, self.dis_global_b, self.dis_local_a, self.dis_local_b]

  @property
  def generator_variables(self) -> list:
    """Trainable variables of both generators (updated by the generator optimizer)."""
    return [v for net in self.generators for v in net.trainable_variables]

  @property
  def discriminator_variables(self) -> list:
    """Trainable variables of the four discriminators (spectral-norm u, v are not trainable)."""
    return [v for net in self.discriminators for v in net.trainable_variables]

  def build_all(self, image_size: int) -> None:
    """Creates every variable (the family API's build, as MUNIT's and UNIT's; Keras' `build` does it).

    The full model's MLP flattens the feature map: it only takes `image_size == config.image_size`.
    """
    if not self.config.light and int(image_size) != self.config.image_size:
      raise ValueError(f"U-GAT-IT full takes only {self.config.image_size} px images (config.image_size), got "
                       f"{image_size}; build it with that size or use the light model (light=True).")
    self.build()

  def build(self, input_shape=None):
    """Keras' build (Keras calls it before the first call): all variables, under this model's name scope;
    generators for [None, S, S, 3] (full) or [None, None, None, 3] (light). `input_shape` is not needed."""
    size = self.config.image_size
    gen_shape = (None, None, None, 3) if self.config.light else (None, size, size, 3)
    for net in self.generators:
      net.build(gen_shape)
    for net in self.discriminators:
      net.build((None, None, None, 3))

  def generator(self, domain: str) -> Generator:
    """The generator whose outputs are images of `domain`: "a" -> gen_b2a, "b" -> gen_a2b."""
    return self.gen_b2a if check_domain(domain) == "a" else self.gen_a2b

  def translate(self, images: tf.Tensor, direction: str, style=None, training: bool = False) -> dict:
    """Translates `images` [B, H, W, 3] in [-1, 1] (H, W multiples of 4; full: H == W == image_size).

    Returns {"images": [B, H, W, 3] float32 in [-1, 1], "attention": [B, H, W] float32 in [0, 1]}.
    `style` must be None (U-GAT-IT is unimodal).
    """
    images = tf.convert_to_tensor(images)
    _, target = check_translate_args("U-GAT-IT", images, direction, style, self.size_multiple)
    translated, _, heatmap = self.generator(target)(images, training=training)
    return {"images": translated, "attention": normalize_heatmap(heatmap, tf.shape(images)[1:3])}

  def call(self, images, training=None):
    """a2b translation of `images` [B, H, W, 3] -> [B, H, W, 3] (Keras' default forward)."""
    return self.gen_a2b(images, training=training)[0]

  def get_config(self):
    return {**super().get_config(), "config": self.config.to_dict()}


def build_model(config: UGATITConfig) -> UGATIT:
  """Returns a built UGATIT for `config` (all variables created)."""
  model = UGATIT(config)
  model.build_all(config.image_size)
  return model
