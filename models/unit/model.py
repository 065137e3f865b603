"""The UNIT translation model (paper version): per-domain encoders/generators around shared layers, and two
discriminators. a2b = generator_b(shared_decoder(shared_encoder(encoder_a(x)))); no noise at inference.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from models.api import DOMAINS, check_domain, check_translate_args
from models.unit.config import UNITConfig
from models.unit.networks import Discriminator, Encoder, Generator, SharedResBlocks


@keras.saving.register_keras_serializable(package="i2i")
class UNITModel(keras.Model):
  """encoder_a/b, shared_encoder (with the Gaussian latent), shared_decoder, generator_a/b, dis_a/b.

  Args:
    config: a UNITConfig.
  """

  def __init__(self, config: UNITConfig, **kwargs):
    super().__init__(**kwargs)
    if isinstance(config, dict):
      config = UNITConfig.from_dict(config)
    self.config = config
    self.size_multiple = config.size_multiple
    enc_args = dict(ch=config.ch, n_front_blk=config.n_enc_front_blk, n_res_blk=config.n_enc_res_blk,
                    resample_norm=config.resample_norm)
    self.encoder_a = Encoder(**enc_args, name="encoder_a")
    self.encoder_b = Encoder(**enc_args, name="encoder_b")
    self.shared_encoder = SharedResBlocks(config.n_enc_shared_blk, noise=True, name="shared_encoder")
    self.shared_decoder = SharedResBlocks(config.n_gen_shared_blk, noise=False, name="shared_decoder")
    latent = self.encoder_a.output_dim
    gen_args = dict(ch=latent, n_res_blk=config.n_gen_res_blk, n_front_blk=config.n_gen_front_blk,
                    resample_norm=config.resample_norm)
    self.generator_a = Generator(**gen_args, name="generator_a")
    self.generator_b = Generator(**gen_args, name="generator_b")
    dis_args = dict(ch=config.dis_ch, n_layer=config.dis_n_layer, num_scales=config.dis_num_scales)
    self.dis_a = Discriminator(**dis_args, name="dis_a")
    self.dis_b = Discriminator(**dis_args, name="dis_b")

  @property
  def generator_variables(self) -> list:
    """Trainable variables of the encoders, shared layers and generators (COCOResGen)."""
    nets = (self.encoder_a, self.encoder_b, self.shared_encoder, self.shared_decoder, self.generator_a,
            self.generator_b)
    return [v for net in nets for v in net.trainable_variables]

  @property
  def discriminator_variables(self) -> list:
    """Trainable variables of dis_a and dis_b."""
    return self.dis_a.trainable_variables + self.dis_b.trainable_variables

  def _pick(self, domain: str, a, b):
    """Returns a for domain "a", b for "b"."""
    return a if check_domain(domain) == "a" else b

  def generator(self, domain: str) -> Generator:
    """The domain-specific image decoder of "a" or "b" (after the shared decoder; it outputs images of `domain`)."""
    return self._pick(domain, self.generator_a, self.generator_b)

  def discriminator(self, domain: str) -> Discriminator:
    """The discriminator of domain "a" or "b"."""
    return self._pick(domain, self.dis_a, self.dis_b)

  def encode(self, images, domain: str, training: bool = False, seed=None, noise=None):
    """Shared latent code of `images` of `domain`: `[B, H, W, 3]` -> z `[B, H/4, W/4, 4ch]` (mu + eps in training).

    In training eps ~ N(0, I) is `noise` (`[B, H/4, W/4, 4ch]`, see `latent_shape`) when given, else a stateless
    draw from `seed` (`[2]`; None: the shared encoder's own seed state).
    """
    encoder = self._pick(domain, self.encoder_a, self.encoder_b)
    return self.shared_encoder(encoder(images, training=training), training=training, seed=seed, noise=noise)

  def latent_shape(self, images) -> tf.Tensor:
    """Shape `[4]` (int32) of the shared code of `images` `[B, H, W, 3]`: `[B, ceil(H / m), ceil(W / m), 4ch]`,
    m = size_multiple (each stride-2 conv of the encoder, 3x3 with padding 1, maps n to ceil(n / 2))."""
    shape = tf.shape(images)
    m = self.size_multiple
    return tf.stack([shape[0], (shape[1] + m - 1) // m, (shape[2] + m - 1) // m,
                     tf.constant(self.encoder_a.output_dim)])

  def decode(self, z, domain: str, training: bool = False):
    """Image of `domain` from a shared code: `[B, h, w, C]` -> `[B, 4h, 4w, 3]` float32 in [-1, 1]."""
    return self.generator(domain)(self.shared_decoder(z, training=training), training=training)

  def translate(self, images, direction: str, style=None, training: bool = False) -> dict:
    """`[B, H, W, 3]` -> {"images": `[B, H, W, 3]` float32 in [-1, 1]}; UNIT has no style input."""
    source, target = check_translate_args("UNIT", images, direction, style, self.size_multiple)
    return {"images": self.decode(self.encode(images, source, training), target, training)}

  def call(self, images, training=False):
    """a2b translation (so that Keras can build the model by running it)."""
    return self.translate(images, "a2b", training=training)["images"]

  def build_all(self, image_size: int) -> None:
    """Creates every variable by running each network once on a `[1, image_size, image_size, 3]` input."""
    x = tf.zeros([1, image_size, image_size, 3])
    for domain in DOMAINS:
      self.decode(self.encode(x, domain), domain)
      self.discriminator(domain)(x)

  def get_config(self):
    return {**super().get_config(), "config": self.config.to_dict()}


def build_model(config: UNITConfig) -> UNITModel:
  """Builds a UNITModel with all variables created for `config.image_size` (under the current dtype policy)."""
  model = UNITModel(config, name="unit")
  model.build_all(config.image_size)
  return model
