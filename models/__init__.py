"""Keras 3 networks, layers, losses and per-model train steps for UNIT, MUNIT and U-GAT-IT.

`get_family(name)` is the only entry point the rest of the project needs; see `models/api.py`.
This package imports only TensorFlow/Keras: it knows no pipeline stage, flag or server.
"""

from __future__ import annotations

import importlib

from models.api import DIRECTIONS, Family, TranslationModel  # noqa: F401

FAMILY_NAMES = ("unit", "munit", "ugatit")


def get_family(name: str) -> Family:
  """Returns the `Family` record of "unit", "munit" or "ugatit" (each package exposes `FAMILY`)."""
  if name not in FAMILY_NAMES:
    raise ValueError(f"Unknown model family {name!r}; choose one of {', '.join(FAMILY_NAMES)}.")
  return importlib.import_module(f"models.{name}").FAMILY


def get_config(name: str, preset: str = "paper", **overrides):
  """Returns the named preset of a family's config with `overrides` applied (dataclasses.replace)."""
  import dataclasses
  family = get_family(name)
  if preset not in family.presets:
    raise ValueError(f"Unknown preset {preset!r} for {name}; choose one of {', '.join(sorted(family.presets))}.")
  return dataclasses.replace(family.presets[preset], **overrides)
