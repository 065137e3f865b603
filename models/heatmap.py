"""The one colour map of CAM heatmaps (U-GAT-IT's attention), shared by training samples and evaluation grids."""

from __future__ import annotations

import tensorflow as tf

# Jet: dark blue (0) -> blue -> cyan -> yellow -> red -> dark red (1), linear between these six RGB knots in [0, 1].
JET_KNOTS = ((0.0, 0.0, 0.5), (0.0, 0.0, 1.0), (0.0, 1.0, 1.0), (1.0, 1.0, 0.0), (1.0, 0.0, 0.0), (0.5, 0.0, 0.0))


def heatmap_to_rgb(heatmap) -> tf.Tensor:
  """Heatmap [...] with values in [0, 1] (clipped) -> float32 RGB [..., 3] in [-1, 1] (the model-image scale).

  Blue is low, red is high; `models.api.to_wire_images` turns the result into uint8 pixels.
  """
  knots = tf.constant(JET_KNOTS, tf.float32)
  position = tf.clip_by_value(tf.cast(heatmap, tf.float32), 0.0, 1.0) * (len(JET_KNOTS) - 1)
  low = tf.clip_by_value(tf.cast(tf.floor(position), tf.int32), 0, len(JET_KNOTS) - 2)
  frac = (position - tf.cast(low, tf.float32))[..., None]
  rgb = (1.0 - frac) * tf.gather(knots, low) + frac * tf.gather(knots, low + 1)
  return rgb * 2.0 - 1.0
