"""Picture grids people can look at: rows of small images, upscaled nearest-neighbour, with a label per row.

Pillow + numpy only (no TensorFlow). Used by the demo's translations and evaluation report and by the quality
benchmark (benchmarks/quality.py).

`labeled_grid(rows, labels, scale=4)`: every row is uint8 `[N, H, W, 3]` (rows may hold different N, same H, W);
each image is upscaled `scale` times by pixel repetition (no smoothing: a 32 px digit stays crisp at 128 px),
the label is drawn in a left margin, images are separated by `pad` white pixels.
`tile_rows(rows, scale, pad)`: the same tiling without text (the one tiling of every grid).
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw, ImageFont

LABEL_HEIGHT = 11  # pixels per text line of Pillow's built-in bitmap font


def upscale_nearest(images: np.ndarray, scale: int) -> np.ndarray:
  """uint8 `[..., H, W, C]` -> `[..., H * scale, W * scale, C]`, every pixel repeated scale x scale times."""
  if scale < 1:
    raise ValueError(f"scale must be >= 1, got {scale}")
  images = np.asarray(images)
  return np.repeat(np.repeat(images, scale, axis=-3), scale, axis=-2)


def _wrap(text: str, width_chars: int) -> list[str]:
  words, lines, line = text.split(), [], ""
  for word in words:
    if line and len(line) + 1 + len(word) > width_chars:
      lines.append(line)
      line = word
    else:
      line = f"{line} {word}".strip()
  return lines + ([line] if line else [])


def tile_rows(rows: list[np.ndarray], *, scale: int = 1, pad: int = 2, left: int = 0, top: int = 0) -> np.ndarray:
  """Tiles `rows` (each uint8 `[N, H, W, 3]`, same H and W) on a white canvas: the grid's one tiling.

  Image i of row r (upscaled `scale` x) is at y = top + pad + r * (H * scale + pad),
  x = left + pad + i * (W * scale + pad); the canvas is
  `[top + pad + R * (H * scale + pad), left + pad + max N * (W * scale + pad), 3]` (pad = 0: rows just stacked).
  """
  if not rows:
    raise ValueError("tile_rows needs at least one row")
  h, w = rows[0].shape[1:3]
  for row in rows:
    if row.ndim != 4 or row.shape[1:3] != (h, w) or row.shape[-1] != 3:
      raise ValueError(f"every row must be uint8 [N, {h}, {w}, 3], got {row.shape}")
  cell_h, cell_w = h * scale, w * scale
  columns = max(len(row) for row in rows)
  height = top + pad + len(rows) * (cell_h + pad)
  width = left + pad + columns * (cell_w + pad)
  canvas = np.full((height, width, 3), 255, np.uint8)
  for r, row in enumerate(rows):
    y = top + pad + r * (cell_h + pad)
    for i, image in enumerate(upscale_nearest(np.asarray(row, np.uint8), scale)):
      x = left + pad + i * (cell_w + pad)
      canvas[y:y + cell_h, x:x + cell_w] = image
  return canvas


def labeled_grid(rows: list[np.ndarray], labels: list[str], *, scale: int = 4, pad: int = 2,
                 label_width: int = 120, title: str | None = None) -> np.ndarray:
  """Stacks `rows` (each uint8 `[N, H, W, 3]`) into one uint8 picture with `labels[r]` left of row r.

  Args:
    rows: image rows; every image has the same H and W (rows may be of different lengths).
    labels: one text per row (wrapped to fit `label_width` pixels).
    scale: nearest-neighbour upscale factor of every image.
    pad: white pixels between images and rows.
    label_width: width of the label margin (0: no labels).
    title: optional text line above the grid.
  Returns:
    uint8 `[height, width, 3]`.
  """
  if len(rows) != len(labels):
    raise ValueError(f"labeled_grid needs one label per row, got {len(rows)} rows and {len(labels)} labels")
  if not rows:
    raise ValueError("labeled_grid needs at least one row")
  top = LABEL_HEIGHT + pad if title else 0
  canvas = tile_rows(rows, scale=scale, pad=pad, left=label_width, top=top)
  cell_h = rows[0].shape[1] * scale
  picture = Image.fromarray(canvas)
  draw = ImageDraw.Draw(picture)
  font = ImageFont.load_default()
  if title:
    draw.text((pad, 1), title, fill=(0, 0, 0), font=font)
  if label_width:
    chars = max(4, (label_width - pad) // 6)
    for r, label in enumerate(labels):
      y = top + pad + r * (cell_h + pad)
      for k, line in enumerate(_wrap(label, chars)[:max(1, cell_h // LABEL_HEIGHT)]):
        draw.text((pad, y + k * LABEL_HEIGHT), line, fill=(0, 0, 0), font=font)
  return np.asarray(picture, np.uint8)
