"""Loss functions of UNIT, MUNIT and U-GAT-IT as pure functions returning per-example `[B]` float32 tensors.

Every function accepts network outputs of any rank `[B, ...]` (images, PatchGAN maps `[B, h, w, 1]`, logits
`[B, k]`) and averages over all non-batch axes, so `tf.nn.compute_average_loss(loss, global_batch_size=...)`
gives the mean the official (batch-mean) PyTorch code computes. Adversarial losses also accept a list of
outputs (multi-scale discriminators) and sum the per-scale losses, as MUNIT's `calc_dis_loss` and UNIT's
trainer do. Inputs may be float16 (mixed precision); losses are computed in float32.
"""

from __future__ import annotations

from typing import Sequence, Union

import tensorflow as tf

Outputs = Union[tf.Tensor, Sequence[tf.Tensor]]


def per_example_mean(x: tf.Tensor) -> tf.Tensor:
  """Mean over every axis but the first: `[B, ...]` -> `[B]` float32."""
  x = tf.cast(x, tf.float32)
  if x.shape.rank is not None and x.shape.rank < 1:
    raise ValueError(f"Losses need a batch axis: got a scalar of shape {x.shape}.")
  if x.shape.rank == 1:
    return x
  return tf.reduce_mean(tf.reshape(x, [tf.shape(x)[0], -1]), axis=1)


def _scales(outputs: Outputs) -> list[tf.Tensor]:
  """Returns the discriminator outputs as a non-empty list (one tensor per scale)."""
  scales = list(outputs) if isinstance(outputs, (list, tuple)) else [outputs]
  if not scales:
    raise ValueError("Adversarial losses need at least one discriminator output, got an empty list.")
  return scales


def _check_pair(a: tf.Tensor, b: tf.Tensor, what: str):
  """Raises ValueError when two tensors compared element-wise have different static shapes."""
  shape_a, shape_b = tf.TensorShape(a.shape), tf.TensorShape(b.shape)
  if shape_a.is_fully_defined() and shape_b.is_fully_defined() and shape_a != shape_b:
    raise ValueError(f"{what}: shapes differ, {shape_a} vs {shape_b}; pass tensors of the same shape.")


def lsgan_discriminator_loss(real_outputs: Outputs, fake_outputs: Outputs) -> tf.Tensor:
  """Least-squares GAN discriminator loss (Mao et al., ICCV 2017), summed over scales.

  L_D = sum_scales [ mean((D(x) - 1)^2) + mean(D(G(z))^2) ]

  Args:
    real_outputs: `[B, ...]` (or a list, one per scale) discriminator outputs on real images.
    fake_outputs: same structure on generated images.
  Returns:
    `[B]` float32.
  """
  real, fake = _scales(real_outputs), _scales(fake_outputs)
  if len(real) != len(fake):
    raise ValueError(f"lsgan_discriminator_loss: {len(real)} real outputs but {len(fake)} fake outputs.")
  return tf.add_n([per_example_mean(tf.square(tf.cast(r, tf.float32) - 1.0))
                   + per_example_mean(tf.square(tf.cast(f, tf.float32))) for r, f in zip(real, fake)])


def lsgan_generator_loss(fake_outputs: Outputs) -> tf.Tensor:
  """Least-squares GAN generator loss (Mao et al., ICCV 2017), summed over scales.

  L_G = sum_scales mean((D(G(z)) - 1)^2)

  Args:
    fake_outputs: `[B, ...]` (or a list, one per scale) discriminator outputs on generated images.
  Returns:
    `[B]` float32.
  """
  return tf.add_n([per_example_mean(tf.square(tf.cast(f, tf.float32) - 1.0)) for f in _scales(fake_outputs)])


def sigmoid_cross_entropy(logits: tf.Tensor, target: float) -> tf.Tensor:
  """Binary cross-entropy of sigmoid(logits) against a constant label (torch `BCEWithLogitsLoss`).

  BCE = mean( -t log sigmoid(l) - (1 - t) log(1 - sigmoid(l)) ), computed stably from the logits.

  Args:
    logits: `[B, ...]` logits.
    target: the label t in [0, 1] for every element.
  Returns:
    `[B]` float32.
  """
  logits = tf.cast(logits, tf.float32)
  labels = tf.fill(tf.shape(logits), tf.constant(float(target), tf.float32))
  return per_example_mean(tf.nn.sigmoid_cross_entropy_with_logits(labels=labels, logits=logits))


def bce_discriminator_loss(real_logits: Outputs, fake_logits: Outputs) -> tf.Tensor:
  """Original (sigmoid cross-entropy) GAN discriminator loss (Goodfellow et al., NIPS 2014), summed over scales.

  L_D = sum_scales [ BCE(sigmoid(D(x)), 1) + BCE(sigmoid(D(G(z))), 0) ]   (UNIT, Liu et al., NIPS 2017)

  Args:
    real_logits: `[B, ...]` (or a list per scale) discriminator logits on real images.
    fake_logits: same structure on generated images.
  Returns:
    `[B]` float32.
  """
  real, fake = _scales(real_logits), _scales(fake_logits)
  if len(real) != len(fake):
    raise ValueError(f"bce_discriminator_loss: {len(real)} real outputs but {len(fake)} fake outputs.")
  return tf.add_n([sigmoid_cross_entropy(r, 1.0) + sigmoid_cross_entropy(f, 0.0) for r, f in zip(real, fake)])


def bce_generator_loss(fake_logits: Outputs) -> tf.Tensor:
  """Non-saturating sigmoid cross-entropy GAN generator loss, summed over scales.

  L_G = sum_scales BCE(sigmoid(D(G(z))), 1)   (UNIT, Liu et al., NIPS 2017)

  Args:
    fake_logits: `[B, ...]` (or a list per scale) discriminator logits on generated images.
  Returns:
    `[B]` float32.
  """
  return tf.add_n([sigmoid_cross_entropy(f, 1.0) for f in _scales(fake_logits)])


def l1_loss(prediction: tf.Tensor, target: tf.Tensor) -> tf.Tensor:
  """Mean absolute error per example (torch `L1Loss`, the reconstruction terms of UNIT, MUNIT, U-GAT-IT).

  L1 = mean |prediction - target|

  Args:
    prediction, target: `[B, ...]` of the same shape (images, content codes `[B, h, w, C]`, styles `[B, S]`).
  Returns:
    `[B]` float32.
  """
  _check_pair(prediction, target, "l1_loss")
  return per_example_mean(tf.abs(tf.cast(prediction, tf.float32) - tf.cast(target, tf.float32)))


def mse_loss(prediction: tf.Tensor, target: tf.Tensor) -> tf.Tensor:
  """Mean squared error per example (torch `MSELoss`; MUNIT's perceptual loss on VGG features).

  MSE = mean (prediction - target)^2

  Args:
    prediction, target: `[B, ...]` of the same shape.
  Returns:
    `[B]` float32.
  """
  _check_pair(prediction, target, "mse_loss")
  return per_example_mean(tf.square(tf.cast(prediction, tf.float32) - tf.cast(target, tf.float32)))


def kl_unit_gaussian_loss(mu: tf.Tensor) -> tf.Tensor:
  """KL term of UNIT's VAE with a fixed unit-variance posterior (UNIT v02 `_compute_kl`).

  KL(N(mu, I) || N(0, I)) = 0.5 * sum mu^2 up to constants; UNIT uses mean(mu^2).

  Args:
    mu: `[B, ...]` the latent code means (shared latent z before noise).
  Returns:
    `[B]` float32.
  """
  return per_example_mean(tf.square(tf.cast(mu, tf.float32)))
