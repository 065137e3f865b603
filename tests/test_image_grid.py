"""components.image_grid.tile_rows: the one tiling of every grid (positions and canvas size by hand)."""

import numpy as np
import pytest

from components import image_grid


def test_tile_rows_places_images_by_the_formula():
  a = np.stack([np.full((2, 3, 3), 10 + i, np.uint8) for i in range(3)])  # row 0: 3 images of 2x3
  b = np.full((1, 2, 3, 3), 99, np.uint8)  # row 1: one image
  grid = image_grid.tile_rows([a, b], scale=2, pad=1, left=5, top=4)
  # height 4 + 1 + 2 * (4 + 1) = 15; width 5 + 1 + 3 * (6 + 1) = 27
  assert grid.shape == (15, 27, 3) and grid.dtype == np.uint8
  for i in range(3):
    x = 5 + 1 + i * 7
    assert (grid[5:9, x:x + 6] == 10 + i).all()
  assert (grid[10:14, 6:12] == 99).all()
  painted = np.zeros(grid.shape[:2], bool)
  for i in range(3):
    painted[5:9, 6 + i * 7:12 + i * 7] = True
  painted[10:14, 6:12] = True
  assert (grid[~painted] == 255).all()  # everything else is the white canvas


def test_tile_rows_without_pad_is_plain_stacking():
  rows = [np.random.RandomState(r).randint(0, 256, (2, 4, 5, 3)).astype(np.uint8) for r in range(3)]
  expected = np.concatenate([np.concatenate(list(row), axis=1) for row in rows], axis=0)
  np.testing.assert_array_equal(image_grid.tile_rows(rows, pad=0), expected)


def test_tile_rows_rejects_mismatched_rows():
  with pytest.raises(ValueError, match=r"every row must be uint8 \[N, 2, 2, 3\], got \(1, 3, 2, 3\)"):
    image_grid.tile_rows([np.zeros((1, 2, 2, 3), np.uint8), np.zeros((1, 3, 2, 3), np.uint8)])
  with pytest.raises(ValueError, match="tile_rows needs at least one row"):
    image_grid.tile_rows([])


def test_training_sample_grid_puts_row_r_image_b_at_its_padded_cell_on_white():
  from components import trainer  # pylint: disable=import-outside-toplevel
  rng = np.random.default_rng(0)
  rows = {"x_a": rng.uniform(-1, 1, (3, 5, 4, 3)).astype(np.float32),
          "x_ab": rng.uniform(-1, 1, (3, 5, 4, 3)).astype(np.float32)}
  grid = trainer.sample_grid(rows, pad=2)
  want = np.full((2 * (5 + 2) + 2, 3 * (4 + 2) + 2, 3), 255, np.uint8)  # R (H + pad) + pad, B (W + pad) + pad
  for r, images in enumerate(rows.values()):
    tiles = np.clip(np.round((images + 1) * 127.5), 0, 255).astype(np.uint8)
    for b in range(3):
      want[2 + r * 7:2 + r * 7 + 5, 2 + b * 6:2 + b * 6 + 4] = tiles[b]
  np.testing.assert_array_equal(grid, want)
