"""UNIT training step and sample rows (mingyuliutw/UNIT version_02 cocogan_trainer.py `dis_update`, `gen_update`).

Per-replica view, to run inside `strategy.run`; every loss is a per-example `[B]` tensor reduced with
`tf.nn.compute_average_loss` over the global batch. As in the paper code, the KL terms are taken on the shared
code as the generator sees it during training (z = mu + eps, the output of COCOResGen's enc_shared), and
`kl_direct_link_w * (enc_loss + enc_loss)` over the concatenated a+b batch equals kl(z_a) + kl(z_b) per example.
"""

from __future__ import annotations

import tensorflow as tf

from models import losses
from models.api import call_stacked, split_seed
from models.optim import minimize


NOISE_KEYS = ("dis_a", "dis_b", "gen_a", "gen_b", "gen_ba", "gen_ab")


def latent_noise(model, x_a, x_b, seed=None) -> dict:
  """The six latent noise draws eps ~ N(0, I) of one iteration, float32, keyed by NOISE_KEYS.

  dis_a, dis_b: the D step's codes of x_a, x_b; gen_a, gen_b: the G step's codes of x_a, x_b; gen_ba, gen_ab: the
  codes of the translations x_ba (shaped like x_b's code) and x_ab (like x_a's). Stateless draws from
  `models.api.split_seed(seed, 6)` (None: a random seed).
  """
  seeds = split_seed(seed, len(NOISE_KEYS))
  shape_a, shape_b = model.latent_shape(x_a), model.latent_shape(x_b)
  shapes = {"dis_a": shape_a, "dis_b": shape_b, "gen_a": shape_a, "gen_b": shape_b, "gen_ba": shape_b,
            "gen_ab": shape_a}
  return {k: tf.random.stateless_normal(shapes[k], seed=seeds[i]) for i, k in enumerate(NOISE_KEYS)}


def train_step(model, gen_optimizer, dis_optimizer, x_a, x_b, global_batch_size, seed=None) -> dict:
  """One UNIT iteration on x_a, x_b `[B, H, W, 3]` in [-1, 1] with latent noise drawn from `seed`.

  The six latent noise draws (one per encode, `latent_noise`) are stateless draws from `seed`
  (models.api.split_seed; None: a random seed); see `train_step_with_noise` for the iteration itself.
  """
  return train_step_with_noise(model, gen_optimizer, dis_optimizer, x_a, x_b, global_batch_size,
                               latent_noise(model, x_a, x_b, seed))


def train_step_with_noise(model, gen_optimizer, dis_optimizer, x_a, x_b, global_batch_size, noise) -> dict:
  """One UNIT iteration with given latent noise: discriminator update, then generator update.

  Plan:
    1. D: z_a, z_b = shared codes (+ noise dis_a, dis_b); x_ba = G_a(z_b), x_ab = G_b(z_a) as constants;
       L_D = gan_w * (BCE_D(D_a(x_a), D_a(x_ba)) + BCE_D(D_b(x_b), D_b(x_ab))), summed over scales.
    2. G: z_a, z_b (+ noise gen_a, gen_b); x_aa = G_a(z_a), x_ba = G_a(z_b), x_ab = G_b(z_a), x_bb = G_b(z_b);
       cycles z_ba = E_a(x_ba) (+ gen_ba), x_bab = G_b(z_ba); z_ab = E_b(x_ab) (+ gen_ab), x_aba = G_a(z_ab);
       L_G = gan_w (BCE_G(D_a(x_ba)) + BCE_G(D_b(x_ab))) + ll_direct_link_w (|x_aa - x_a| + |x_bb - x_b|)
             + ll_cycle_link_w (|x_aba - x_a| + |x_bab - x_b|) + kl_direct_link_w (KL(z_a) + KL(z_b))
             + kl_cycle_link_w (KL(z_ba) + KL(z_ab)),  KL(z) = mean(z^2).
  The mean codes of x_a, x_b (before noise) are computed once, on the generator's tape, and serve both updates
  (the official dis_update computes them again with the same weights); each update adds its own noise draw.
  Args:
    noise: dict NOISE_KEYS -> eps `[B, h, w, C]` (`latent_noise`; the official trainer's draws in the equivalence
      tests).
  Returns:
    dict of per-replica loss scalars named by `models.api` LOSS_KEYS: d/total, d/adv_a, d/adv_b, g/total,
    g/adv_a|b, g/recon_x_a|b, g/cycle_a|b (x_aba, x_bab), g/kl_a|b (z_a, z_b), g/kl_cycle_a|b (z_ab, z_ba).
  """
  cfg = model.config
  missing = [k for k in NOISE_KEYS if k not in noise]
  if missing:
    raise ValueError(f"train_step_with_noise needs noise for {', '.join(NOISE_KEYS)}; missing {', '.join(missing)}.")

  def mean(per_example):
    return tf.nn.compute_average_loss(per_example, global_batch_size=global_batch_size)

  shared_encoder, shared_decoder = model.shared_encoder, model.shared_decoder
  gen_a, gen_b = model.generator_a, model.generator_b

  def stacked(net, first, second):
    """net (a network or its `mean`) in training mode on the two batches as one call (every UNIT layer is per
    sample)."""
    return call_stacked(lambda x: net(x, training=True), (first,), (second,))

  def sample(mu, key):
    return shared_encoder.add_noise(mu, training=True, noise=noise[key])

  # The real images' mean codes mu_a, mu_b. The discriminator update changes no generator weight and the
  # encoders are deterministic, so dis_update's mu are gen_update's: encoded once, inside the generator's tape;
  # each update adds its own noise draw. The shared encoder and decoder run both domains as one batch.
  with tf.GradientTape() as tape:
    mu_a, mu_b = stacked(shared_encoder.mean, model.encoder_a(x_a, training=True),
                         model.encoder_b(x_b, training=True))

  # 1. Discriminator update (the generator's tape is closed: generator outputs are constants here).
  h_a, h_b = stacked(shared_decoder, sample(tf.stop_gradient(mu_a), "dis_a"), sample(tf.stop_gradient(mu_b), "dis_b"))
  x_ba, x_ab = tf.stop_gradient(gen_a(h_b, training=True)), tf.stop_gradient(gen_b(h_a, training=True))
  with tf.GradientTape() as dis_tape:
    dis_loss_a = mean(losses.bce_discriminator_loss(*stacked(model.dis_a, x_a, x_ba)))
    dis_loss_b = mean(losses.bce_discriminator_loss(*stacked(model.dis_b, x_b, x_ab)))
    dis_total = cfg.gan_w * (dis_loss_a + dis_loss_b)
    scaled = dis_optimizer.scale_loss(dis_total)
  minimize(dis_tape, scaled, dis_optimizer, model.discriminator_variables)

  # 2. Generator update, on the tape that holds mu_a, mu_b. Each generator decodes both shared codes in one call:
  # its within-domain reconstruction and its cross-domain translation.
  with tape:
    z_a, z_b = sample(mu_a, "gen_a"), sample(mu_b, "gen_b")
    h_a, h_b = stacked(shared_decoder, z_a, z_b)
    x_aa, x_ba = stacked(gen_a, h_a, h_b)
    x_ab, x_bb = stacked(gen_b, h_a, h_b)
    mu_ba, mu_ab = stacked(shared_encoder.mean, model.encoder_a(x_ba, training=True),
                           model.encoder_b(x_ab, training=True))
    z_ba, z_ab = sample(mu_ba, "gen_ba"), sample(mu_ab, "gen_ab")
    h_ba, h_ab = stacked(shared_decoder, z_ba, z_ab)
    x_bab, x_aba = gen_b(h_ba, training=True), gen_a(h_ab, training=True)
    terms = {
        "g/adv_a": mean(losses.bce_generator_loss(model.dis_a(x_ba, training=True))),
        "g/adv_b": mean(losses.bce_generator_loss(model.dis_b(x_ab, training=True))),
        "g/recon_x_a": mean(losses.l1_loss(x_aa, x_a)),
        "g/recon_x_b": mean(losses.l1_loss(x_bb, x_b)),
        "g/cycle_a": mean(losses.l1_loss(x_aba, x_a)),
        "g/cycle_b": mean(losses.l1_loss(x_bab, x_b)),
        "g/kl_a": mean(losses.kl_unit_gaussian_loss(z_a)),
        "g/kl_b": mean(losses.kl_unit_gaussian_loss(z_b)),
        "g/kl_cycle_b": mean(losses.kl_unit_gaussian_loss(z_ba)),
        "g/kl_cycle_a": mean(losses.kl_unit_gaussian_loss(z_ab)),
    }
    gen_total = (cfg.gan_w * (terms["g/adv_a"] + terms["g/adv_b"])
                 + cfg.ll_direct_link_w * (terms["g/recon_x_a"] + terms["g/recon_x_b"])
                 + cfg.ll_cycle_link_w * (terms["g/cycle_a"] + terms["g/cycle_b"])
                 + cfg.kl_direct_link_w * (terms["g/kl_a"] + terms["g/kl_b"])
                 + cfg.kl_cycle_link_w * (terms["g/kl_cycle_b"] + terms["g/kl_cycle_a"]))
    scaled = gen_optimizer.scale_loss(gen_total)
  minimize(tape, scaled, gen_optimizer, model.generator_variables)
  return {"d/total": dis_total, "d/adv_a": dis_loss_a, "d/adv_b": dis_loss_b, "g/total": gen_total, **terms}


def sample_rows(model, x_a, x_b) -> dict:
  """Rows of UNIT's sample grid (`assemble_outputs`), each `[B, H, W, 3]` in [-1, 1], without latent noise.

  x_a, x_aa (reconstruction), x_ab (translation), x_aba (cycle), then x_b, x_bb, x_ba, x_bab.
  """
  rows = {}
  for src, tgt, x in (("a", "b", x_a), ("b", "a", x_b)):
    z = model.encode(x, src)
    x_translated = model.decode(z, tgt)
    rows[f"x_{src}"] = tf.cast(x, tf.float32)
    rows[f"x_{src}{src}"] = model.decode(z, src)
    rows[f"x_{src}{tgt}"] = x_translated
    rows[f"x_{src}{tgt}{src}"] = model.decode(model.encode(x_translated, tgt), src)
  return rows
