"""The MUNIT translation model: two AdaIN auto-encoders (domains a, b) and two multi-scale discriminators.

`MUNITModel.translate(images, direction, style=None)` maps `[B, H, W, 3]` in [-1, 1] (H, W multiples of 4)
to `{"images": [B, H, W, 3], "style": [B, style_dim]}`; without `style` one is drawn from the prior N(0, I).
`sample_style(seeds)` draws prior styles deterministically per int64 seed; `encode_style(images, domain)`
extracts the style of example images (example-guided translation).
"""

from __future__ import annotations

import keras
import tensorflow as tf

from models.api import DOMAINS, check_domain, check_translate_args
from models.munit.config import MUNITConfig
from models.munit.networks import AdaINGenerator, MultiScaleDiscriminator


@keras.saving.register_keras_serializable(package="i2i")
class MUNITModel(keras.Model):
  """gen_a, gen_b (`AdaINGenerator`), dis_a, dis_b (`MultiScaleDiscriminator`) and, if vgg_w > 0, a frozen VGG.

  Args:
    config: a MUNITConfig.
  """

  def __init__(self, config: MUNITConfig, **kwargs):
    super().__init__(**kwargs)
    if isinstance(config, dict):
      config = MUNITConfig.from_dict(config)
    self.config = config
    self.size_multiple = config.size_multiple
    gen_args = dict(dim=config.dim, style_dim=config.style_dim, mlp_dim=config.mlp_dim,
                    n_downsample=config.n_downsample, n_res=config.n_res)
    dis_args = dict(dim=config.dis_dim, n_layer=config.dis_n_layer, num_scales=config.dis_num_scales)
    self.gen_a = AdaINGenerator(**gen_args, name="gen_a")
    self.gen_b = AdaINGenerator(**gen_args, name="gen_b")
    self.dis_a = MultiScaleDiscriminator(**dis_args, name="dis_a")
    self.dis_b = MultiScaleDiscriminator(**dis_args, name="dis_b")
    self.vgg = None
    if config.vgg_w > 0:
      from models.perceptual import VGGPerceptual
      self.vgg = VGGPerceptual(config.vgg_weights_path, name="vgg")

  @property
  def generator_variables(self) -> list:
    """Trainable variables of gen_a and gen_b (updated by the generator optimizer)."""
    return self.gen_a.trainable_variables + self.gen_b.trainable_variables

  @property
  def discriminator_variables(self) -> list:
    """Trainable variables of dis_a and dis_b (updated by the discriminator optimizer)."""
    return self.dis_a.trainable_variables + self.dis_b.trainable_variables

  def generator(self, domain: str) -> AdaINGenerator:
    """The auto-encoder of domain "a" or "b" (its decoder outputs images of `domain`)."""
    return self.gen_a if check_domain(domain) == "a" else self.gen_b

  def discriminator(self, domain: str) -> MultiScaleDiscriminator:
    """The discriminator of domain "a" or "b"."""
    return self.dis_a if check_domain(domain) == "a" else self.dis_b

  def sample_style(self, seeds) -> tf.Tensor:
    """Prior styles N(0, I), one per int64 seed: `[N]` -> `[N, style_dim]` float32; same seed, same style."""
    seeds = tf.cast(tf.convert_to_tensor(seeds), tf.int64)
    return tf.map_fn(
        lambda s: tf.random.stateless_normal([self.config.style_dim], seed=tf.stack([s, tf.constant(0, tf.int64)])),
        seeds, fn_output_signature=tf.TensorSpec([self.config.style_dim], tf.float32))

  def encode_style(self, images, domain: str) -> tf.Tensor:
    """Style codes of example images of `domain`: `[N, H, W, 3]` -> `[N, style_dim]` float32."""
    return tf.cast(self.generator(domain).style_encoder(images, training=False), tf.float32)

  def translate(self, images, direction: str, style=None, training: bool = False) -> dict:
    """`[B, H, W, 3]` -> {"images": `[B, H, W, 3]` float32 in [-1, 1], "style": `[B, style_dim]`}.

    The content of `images` is decoded by the target domain's decoder with `style` (or a prior sample).
    """
    source, target = check_translate_args("MUNIT", images, direction, style, self.size_multiple, takes_style=True)
    content = self.generator(source).content_encoder(images, training=training)
    if style is None:
      style = tf.random.normal([tf.shape(images)[0], self.config.style_dim])
    style = tf.cast(style, tf.float32)
    return {"images": self.generator(target).decode(content, style, training=training), "style": style}

  def call(self, images, training=False):
    """a2b translation with a prior style (so that Keras can build the model by running it)."""
    return self.translate(images, "a2b", training=training)["images"]

  def build_all(self, image_size: int) -> None:
    """Creates every variable by running each network once on a `[1, image_size, image_size, 3]` input."""
    x = tf.zeros([1, image_size, image_size, 3])
    for domain in DOMAINS:
      self.generator(domain)(x)
      self.discriminator(domain)(x)
    if self.vgg is not None:
      self.vgg(x)

  def get_config(self):
    return {**super().get_config(), "config": self.config.to_dict()}


def build_model(config: MUNITConfig) -> MUNITModel:
  """Builds a MUNITModel with all variables created for `config.image_size` (under the current dtype policy)."""
  model = MUNITModel(config, name="munit")
  model.build_all(config.image_size)
  return model
