"""MUNIT training step and sample rows (NVlabs/MUNIT trainer.py `dis_update`, `gen_update`, `sample`).

Per-replica view, to run inside `strategy.run`; every loss is a per-example `[B]` tensor reduced with
`tf.nn.compute_average_loss` over the global batch, so replica sums equal the official batch means.
"""

from __future__ import annotations

from typing import NamedTuple

import tensorflow as tf

from models import losses
from models.api import call_stacked, split_seed
from models.optim import minimize


class PriorStyles(NamedTuple):
  """The prior style codes s ~ N(0, I) of one MUNIT iteration, each `[B, style_dim]`.

  trainer.py's dis_update and gen_update each draw their own s_a, s_b (torch.randn, in this order).
  """

  dis_s_a: tf.Tensor
  dis_s_b: tf.Tensor
  gen_s_a: tf.Tensor
  gen_s_b: tf.Tensor


def draw_prior_styles(model, batch, seed=None) -> PriorStyles:
  """The four prior style batches `[batch, style_dim]` of one iteration: stateless draws from `seed` `[2]`
  (models.api.split_seed; None: a seed from TensorFlow's global RNG)."""
  seeds = split_seed(seed, 4)
  return PriorStyles(*(tf.random.stateless_normal([batch, model.config.style_dim], seed=seeds[i])
                       for i in range(4)))


def _lsgan_discriminator_loss(dis, real, fake):
  """LSGAN D loss `[B]` of one multi-scale discriminator, real and fake scored in one call on their
  concatenation (MUNIT's discriminator has no normalization: every sample is scored on its own)."""
  real_out, fake_out = call_stacked(lambda x: dis(x, training=True), (real,), (fake,))
  return losses.lsgan_discriminator_loss(real_out, fake_out)


def train_step(model, gen_optimizer, dis_optimizer, x_a, x_b, global_batch_size, seed=None) -> dict:
  """One MUNIT iteration (`train_step_with_styles`) with its prior styles drawn from `seed` (`draw_prior_styles`)."""
  styles = draw_prior_styles(model, tf.shape(x_a)[0], seed)
  return train_step_with_styles(model, gen_optimizer, dis_optimizer, x_a, x_b, global_batch_size, styles)


def train_step_with_styles(model, gen_optimizer, dis_optimizer, x_a, x_b, global_batch_size,
                           styles: PriorStyles) -> dict:
  """One MUNIT iteration on x_a, x_b `[B, H, W, 3]` in [-1, 1]: discriminator update, then generator update.

  Plan (trainer.py):
    1. D: x_ba = G_a.dec(c_b, s_a), x_ab = G_b.dec(c_a, s_b) with prior styles, detached;
       L_D = gan_w * (LSGAN_D(D_a(x_a), D_a(x_ba)) + LSGAN_D(D_b(x_b), D_b(x_ab))).
    2. G: encode (c_a, s_a'), (c_b, s_b'); within-domain x_a_recon = dec_a(c_a, s_a'); cross-domain x_ba, x_ab
       with new prior styles; re-encode (c_b_recon, s_a_recon) = enc_a(x_ba), (c_a_recon, s_b_recon) = enc_b(x_ab);
       optional cycle x_aba = dec_a(c_a_recon, s_a') (recon_x_cyc_w > 0); optional VGG loss (vgg_w > 0);
       L_G = gan_w (adv_a + adv_b) + recon_x_w (|x_a_recon - x_a| + ...) + recon_s_w (|s_a_recon - s_a| + ...)
             + recon_c_w (|c_a_recon - c_a| + ...) + recon_x_cyc_w (|x_aba - x_a| + ...) + vgg_w (vgg_a + vgg_b).
  `styles` are the prior styles of both updates (given, so that an iteration can be replayed with the official
  trainer's own draws: tests/test_official_munit.py).
  Returns:
    dict of per-replica loss scalars named by `models.api` LOSS_KEYS: d/total, d/adv_a, d/adv_b, g/total,
    g/adv_a|b, g/recon_x_a|b, g/recon_s_a|b, g/recon_c_a|b and, when weighted in, g/cycle_a|b, g/vgg_a|b.
  """
  cfg = model.config
  gen_a, gen_b, dis_a, dis_b = model.gen_a, model.gen_b, model.dis_a, model.dis_b

  def mean(per_example):
    return tf.nn.compute_average_loss(per_example, global_batch_size=global_batch_size)

  # The real images' codes. The discriminator update changes no generator weight and the encoders are
  # deterministic, so dis_update's c_a, c_b are gen_update's: encoded once, inside the generator's tape.
  with tf.GradientTape() as tape:
    c_a, s_a_prime = gen_a.encode(x_a, training=True)
    c_b, s_b_prime = gen_b.encode(x_b, training=True)

  # 1. Discriminator update (the generator's tape is closed: generator outputs are constants here).
  x_ba = tf.stop_gradient(gen_a.decode(c_b, styles.dis_s_a, training=True))
  x_ab = tf.stop_gradient(gen_b.decode(c_a, styles.dis_s_b, training=True))
  with tf.GradientTape() as dis_tape:
    dis_loss_a = mean(_lsgan_discriminator_loss(dis_a, x_a, x_ba))
    dis_loss_b = mean(_lsgan_discriminator_loss(dis_b, x_b, x_ab))
    dis_total = cfg.gan_w * dis_loss_a + cfg.gan_w * dis_loss_b
    scaled = dis_optimizer.scale_loss(dis_total)
  minimize(dis_tape, scaled, dis_optimizer, model.discriminator_variables)

  # 2. Generator update, on the tape that holds the codes. Each generator decodes its within-domain
  # reconstruction and its cross-domain translation in one call on the two batches stacked (every layer is per
  # sample: the same values; at batch 1 the convolutions run at twice the rows, where oneDNN is faster).
  s_a, s_b = styles.gen_s_a, styles.gen_s_b
  with tape:
    decode_a = lambda c, s: gen_a.decode(c, s, training=True)  # noqa: E731
    decode_b = lambda c, s: gen_b.decode(c, s, training=True)  # noqa: E731
    x_a_recon, x_ba = call_stacked(decode_a, (c_a, s_a_prime), (c_b, s_a))
    x_b_recon, x_ab = call_stacked(decode_b, (c_b, s_b_prime), (c_a, s_b))
    c_b_recon, s_a_recon = gen_a.encode(x_ba, training=True)
    c_a_recon, s_b_recon = gen_b.encode(x_ab, training=True)
    terms = {
        "g/adv_a": mean(losses.lsgan_generator_loss(dis_a(x_ba, training=True))),
        "g/adv_b": mean(losses.lsgan_generator_loss(dis_b(x_ab, training=True))),
        "g/recon_x_a": mean(losses.l1_loss(x_a_recon, x_a)),
        "g/recon_x_b": mean(losses.l1_loss(x_b_recon, x_b)),
        "g/recon_s_a": mean(losses.l1_loss(s_a_recon, s_a)),
        "g/recon_s_b": mean(losses.l1_loss(s_b_recon, s_b)),
        "g/recon_c_a": mean(losses.l1_loss(c_a_recon, c_a)),
        "g/recon_c_b": mean(losses.l1_loss(c_b_recon, c_b)),
    }
    gen_total = (cfg.gan_w * (terms["g/adv_a"] + terms["g/adv_b"])
                 + cfg.recon_x_w * (terms["g/recon_x_a"] + terms["g/recon_x_b"])
                 + cfg.recon_s_w * (terms["g/recon_s_a"] + terms["g/recon_s_b"])
                 + cfg.recon_c_w * (terms["g/recon_c_a"] + terms["g/recon_c_b"]))
    if cfg.recon_x_cyc_w > 0:
      x_aba = gen_a.decode(c_a_recon, s_a_prime, training=True)
      x_bab = gen_b.decode(c_b_recon, s_b_prime, training=True)
      terms["g/cycle_a"] = mean(losses.l1_loss(x_aba, x_a))
      terms["g/cycle_b"] = mean(losses.l1_loss(x_bab, x_b))
      gen_total += cfg.recon_x_cyc_w * (terms["g/cycle_a"] + terms["g/cycle_b"])
    if cfg.vgg_w > 0:
      from models.perceptual import perceptual_loss
      terms["g/vgg_a"] = mean(perceptual_loss(model.vgg, x_ba, x_b))
      terms["g/vgg_b"] = mean(perceptual_loss(model.vgg, x_ab, x_a))
      gen_total += cfg.vgg_w * (terms["g/vgg_a"] + terms["g/vgg_b"])
    scaled = gen_optimizer.scale_loss(gen_total)
  minimize(tape, scaled, gen_optimizer, model.generator_variables)
  return {"d/total": dis_total, "d/adv_a": dis_loss_a, "d/adv_b": dis_loss_b, "g/total": gen_total, **terms}


def sample_rows(model, x_a, x_b) -> dict:
  """Rows of MUNIT's sample grid (trainer.py `sample`), each `[B, H, W, 3]` in [-1, 1].

  x_a, x_a_recon, x_ab with a fixed style (seed i for image i, the same at every step), x_ab with a random
  style, then the same four rows for domain b.
  """
  batch = tf.shape(x_a)[0]
  fixed = model.sample_style(tf.range(batch, dtype=tf.int64))
  rows = {}
  for src, x, direction in (("a", x_a, "a2b"), ("b", x_b, "b2a")):
    tgt = "b" if src == "a" else "a"
    rows[f"x_{src}"] = tf.cast(x, tf.float32)
    rows[f"x_{src}_recon"] = model.generator(src)(x, training=False)
    rows[f"x_{src}{tgt}_fixed_style"] = model.translate(x, direction, style=fixed)["images"]
    rows[f"x_{src}{tgt}_random_style"] = model.translate(x, direction)["images"]
  return rows
