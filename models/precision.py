"""Compute precision of a built model: float32, or bfloat16 compute with float32 variables.

`compute_policy("bfloat16")` is a context manager under which a family's `build_model` builds layers with Keras'
"mixed_bfloat16" policy: the variables stay float32 (so a float32 checkpoint restores into them unchanged) and the
convolutions and matmuls run in bfloat16 (oneDNN runs them on AVX512_BF16 / AMX-BF16 units; faster than float32
only with AMX, BUILD.md issue 17).
The networks' normalisations compute their statistics in float32 and the generators return float32 (see
models/layers/normalization.py and adalin.py); the uint8 wire conversion casts to float32 first.
Used by training (`--mixed_precision`), export (`--compute_dtype`) and the inference benchmark.
"""

from __future__ import annotations

import contextlib

import keras

COMPUTE_DTYPES = ("float32", "bfloat16")
_POLICIES = {"float32": "float32", "bfloat16": "mixed_bfloat16"}


def check_compute_dtype(compute_dtype: str) -> None:
  """ValueError unless `compute_dtype` is one of COMPUTE_DTYPES."""
  if compute_dtype not in COMPUTE_DTYPES:
    raise ValueError(f"compute dtype must be one of {', '.join(COMPUTE_DTYPES)}, got {compute_dtype!r}")


@contextlib.contextmanager
def compute_policy(compute_dtype: str):
  """Builds inside the block use `compute_dtype` compute (float32 variables); the previous policy comes back."""
  check_compute_dtype(compute_dtype)
  previous = keras.mixed_precision.global_policy()
  keras.mixed_precision.set_global_policy(_POLICIES[compute_dtype])
  try:
    yield
  finally:
    keras.mixed_precision.set_global_policy(previous)
