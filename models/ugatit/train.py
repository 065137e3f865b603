"""U-GAT-IT training step and sample-grid rows, the losses of UGATIT-pytorch `UGATIT.train` term by term.

Notation as the reference: real_A = x_a, fake_A2B = G_a2b(x_a), fake_A2B2A = G_b2a(fake_A2B),
fake_A2A = G_b2a(x_a) (identity), D_GA / D_LA = global / local discriminator of domain A.

  D_loss_A = adv_weight * sum_{D in GA, LA} [LSGAN_D(D(real_A), D(fake_B2A)) + LSGAN_D on the CAM logits]
  G_loss_A = adv_weight * sum_{D in GA, LA} [LSGAN_G(D(fake_B2A)) + LSGAN_G on the CAM logits]
           + cycle_weight * L1(fake_A2B2A, real_A) + identity_weight * L1(fake_A2A, real_A)
           + cam_weight * [BCE(cam_logit of G_b2a(real_B), 1) + BCE(cam_logit of G_b2a(real_A), 0)]
and the same with A and B swapped. Every term is a per-example loss reduced with
`tf.nn.compute_average_loss` over the global batch, so the sum over replicas is the batch mean that the
reference's `nn.MSELoss` / `nn.L1Loss` / `nn.BCEWithLogitsLoss` compute.
"""

from __future__ import annotations

import collections

import tensorflow as tf

from models import losses
from models.api import call_stacked
from models.heatmap import heatmap_to_rgb
from models.optim import minimize
from models.ugatit.model import UGATIT, normalize_heatmap


def _average(per_example: tf.Tensor, global_batch_size: int) -> tf.Tensor:
  """[B] -> scalar, the replica's share of the global-batch mean."""
  return tf.nn.compute_average_loss(per_example, global_batch_size=global_batch_size)


def _discriminator_loss(dis_global, dis_local, real: tf.Tensor, fake: tf.Tensor) -> tf.Tensor:
  """LSGAN D loss of one domain, logits and CAM logits, global and local: [B] float32."""
  total = []
  for dis in (dis_global, dis_local):
    real_logit, real_cam_logit, _ = dis(real, training=True)
    fake_logit, fake_cam_logit, _ = dis(fake, training=True)
    total.append(losses.lsgan_discriminator_loss(real_logit, fake_logit))
    total.append(losses.lsgan_discriminator_loss(real_cam_logit, fake_cam_logit))
  return tf.add_n(total)


def _generator_adversarial_loss(dis_global, dis_local, fake: tf.Tensor) -> tf.Tensor:
  """LSGAN G loss against one domain's discriminators, logits and CAM logits (4 terms): [B] float32."""
  total = []
  for dis in (dis_global, dis_local):
    fake_logit, fake_cam_logit, _ = dis(fake, training=True)
    total.append(losses.lsgan_generator_loss(fake_logit))
    total.append(losses.lsgan_generator_loss(fake_cam_logit))
  return tf.add_n(total)


def train_step(model: UGATIT, gen_optimizer, dis_optimizer, x_a: tf.Tensor, x_b: tf.Tensor,
               global_batch_size: int, seed=None) -> dict:  # pylint: disable=unused-argument
  """One U-GAT-IT iteration on one replica: D update, then G update (UGATIT-pytorch `UGATIT.train`).

  Plan:
    1. fake_A2B, fake_B2A and the identities fake_A2A, fake_B2B with their CAM logits, on the G step's tape
       (the D step sees the translations as constants; it changes no generator weight, so they are the ones
       the reference's D step computes).
    2. D step (own tape): LSGAN on logits and CAM logits of the global and local discriminators, both domains.
    3. G step (the tape of 1): cycles; adversarial (4 LSGAN terms per direction), cycle L1, identity L1 and CAM
       BCE terms.
    4. rho of every AdaLIN/ILN is clipped to [0, 1] by its RhoClipper constraint, which the generator
       optimizer applies right after its update.

  Args:
    model: a built UGATIT.
    gen_optimizer, dis_optimizer: Keras optimizers (a LossScaleOptimizer works: losses go through scale_loss).
    x_a, x_b: [B, S, S, 3] float32 in [-1, 1], this replica's batch of each domain.
    global_batch_size: the batch size summed over replicas.
    seed: the step's random seed (models.api.Family.train_step); unused, U-GAT-IT's step draws nothing.
  Returns:
    dict of scalar float32 losses (already divided by the global batch) named by `models.api` LOSS_KEYS:
    d/total_a, d/total_b (D_loss_A, D_loss_B, adv_weight included), d/total, g/adv_a|b (the 4 LSGAN terms
    against domain a's | b's discriminators), g/cycle_a|b, g/identity_a|b, g/cam_a|b (generator b2a's | a2b's
    CAM terms), g/total_a|b (G_loss_A, G_loss_B), g/total.
  """
  cfg = model.config
  avg = lambda per_example: _average(per_example, global_batch_size)  # noqa: E731

  # 1. Translations and identities, on the generator's tape. The discriminator step changes no generator
  # weight and the generators are deterministic, so the D step's fake_A2B, fake_B2A are the G step's: computed
  # once. Each generator runs its translation and its identity mapping in one call on the two batches stacked
  # (every layer, CAM and AdaLIN statistics included, is per sample: the same values).
  with tf.GradientTape() as tape:
    a2b, b2b = call_stacked(lambda x: model.gen_a2b(x, training=True), (x_a,), (x_b,))
    b2a, a2a = call_stacked(lambda x: model.gen_b2a(x, training=True), (x_b,), (x_a,))
    (fake_a2b, fake_a2b_cam_logit, _), (fake_b2b, fake_b2b_cam_logit, _) = a2b, b2b
    (fake_b2a, fake_b2a_cam_logit, _), (fake_a2a, fake_a2a_cam_logit, _) = b2a, a2a

  # 2. Discriminator step (the generator's tape is closed: the translations are constants here).
  with tf.GradientTape() as dis_tape:
    d_loss_a = avg(cfg.adv_weight * _discriminator_loss(model.dis_global_a, model.dis_local_a, x_a,
                                                        tf.stop_gradient(fake_b2a)))
    d_loss_b = avg(cfg.adv_weight * _discriminator_loss(model.dis_global_b, model.dis_local_b, x_b,
                                                        tf.stop_gradient(fake_a2b)))
    d_loss = d_loss_a + d_loss_b
    scaled_d_loss = dis_optimizer.scale_loss(d_loss)
  minimize(dis_tape, scaled_d_loss, dis_optimizer, model.discriminator_variables)

  # 3. Generator step, on the tape that holds the translations.
  with tape:
    fake_a2b2a, _, _ = model.gen_b2a(fake_a2b, training=True)
    fake_b2a2b, _, _ = model.gen_a2b(fake_b2a, training=True)

    g_adv_a = avg(_generator_adversarial_loss(model.dis_global_a, model.dis_local_a, fake_b2a))
    g_adv_b = avg(_generator_adversarial_loss(model.dis_global_b, model.dis_local_b, fake_a2b))
    g_cycle_a = avg(losses.l1_loss(fake_a2b2a, x_a))
    g_cycle_b = avg(losses.l1_loss(fake_b2a2b, x_b))
    g_identity_a = avg(losses.l1_loss(fake_a2a, x_a))
    g_identity_b = avg(losses.l1_loss(fake_b2b, x_b))
    g_cam_a = avg(losses.sigmoid_cross_entropy(fake_b2a_cam_logit, 1.0)
                  + losses.sigmoid_cross_entropy(fake_a2a_cam_logit, 0.0))
    g_cam_b = avg(losses.sigmoid_cross_entropy(fake_a2b_cam_logit, 1.0)
                  + losses.sigmoid_cross_entropy(fake_b2b_cam_logit, 0.0))
    g_loss_a = (cfg.adv_weight * g_adv_a + cfg.cycle_weight * g_cycle_a + cfg.identity_weight * g_identity_a
                + cfg.cam_weight * g_cam_a)
    g_loss_b = (cfg.adv_weight * g_adv_b + cfg.cycle_weight * g_cycle_b + cfg.identity_weight * g_identity_b
                + cfg.cam_weight * g_cam_b)
    g_loss = g_loss_a + g_loss_b
    scaled_g_loss = gen_optimizer.scale_loss(g_loss)
  # 4. The update applies the RhoClipper constraints (rho in [0, 1]) right after the Adam step.
  minimize(tape, scaled_g_loss, gen_optimizer, model.generator_variables)

  return {"d/total_a": d_loss_a, "d/total_b": d_loss_b, "d/total": d_loss,
          "g/adv_a": g_adv_a, "g/adv_b": g_adv_b, "g/cycle_a": g_cycle_a, "g/cycle_b": g_cycle_b,
          "g/identity_a": g_identity_a, "g/identity_b": g_identity_b, "g/cam_a": g_cam_a, "g/cam_b": g_cam_b,
          "g/total_a": g_loss_a, "g/total_b": g_loss_b, "g/total": g_loss}


def sample_rows(model: UGATIT, x_a: tf.Tensor, x_b: tf.Tensor) -> dict:
  """The reference's sample grid (UGATIT.py): per domain real, identity, translation, cycle, with CAM maps.

  Args:
    model: a built UGATIT.
    x_a, x_b: [B, S, S, 3] float32 in [-1, 1].
  Returns:
    ordered dict row_name -> [B, S, S, 3] in [-1, 1]: real_a, a2a_cam, a2a, a2b_cam, a2b, a2b2a_cam, a2b2a,
    then the same for b (b2b, b2a, b2a2b). `*_cam` rows are the generator's CAM heatmap in jet colors.
  """
  rows = collections.OrderedDict()
  for src, x, forward, backward in (("a", x_a, "a2b", "b2a"), ("b", x_b, "b2a", "a2b")):
    identity = model.translate(x, backward)
    translated = model.translate(x, forward)
    cycled = model.translate(translated["images"], backward)
    rows[f"real_{src}"] = tf.convert_to_tensor(x, tf.float32)
    for name, out in ((f"{src}2{src}", identity), (forward, translated), (f"{forward}2{src}", cycled)):
      rows[f"{name}_cam"] = heatmap_to_rgb(out["attention"])
      rows[name] = out["images"]
  return rows


__all__ = ["train_step", "sample_rows", "heatmap_to_rgb", "normalize_heatmap"]
