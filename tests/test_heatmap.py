"""models.heatmap: the one CAM colour map (jet with dark ends), pinned at its knots and between them."""

import numpy as np
import tensorflow as tf

from models.heatmap import heatmap_to_rgb


def test_knots_and_midpoints_in_model_scale():
  rgb = heatmap_to_rgb(tf.constant([0.0, 0.2, 0.4, 0.6, 0.8, 1.0, 0.5, 0.1])).numpy()
  knots01 = [[0, 0, 0.5], [0, 0, 1], [0, 1, 1], [1, 1, 0], [1, 0, 0], [0.5, 0, 0],
             [0.5, 1, 0.5],  # halfway cyan -> yellow
             [0, 0, 0.75]]  # halfway dark blue -> blue
  np.testing.assert_allclose(rgb, np.array(knots01) * 2 - 1, atol=1e-6)


def test_out_of_range_is_clipped_and_shape_kept():
  rgb = heatmap_to_rgb(np.array([[[-3.0, 7.0]]], np.float32)).numpy()
  assert rgb.shape == (1, 1, 2, 3) and rgb.dtype == np.float32
  np.testing.assert_allclose(rgb[0, 0], [[-1, -1, 0], [0, -1, -1]], atol=1e-6)
