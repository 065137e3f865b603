"""Keras 3 networks, layers, losses and per-model train steps for UNIT, MUNIT and U-GAT-IT.

`get_family(name)` is the only entry point the rest of the project needs; see `models/api.py`.
This package imports only TensorFlow/Keras: it knows no pipeline stage, flag or server.

The family registry: FAMILY_NAMES are the built-in families (each package `models/<name>/` exposes `FAMILY`, loaded
on first use); adding a family is its package plus its name here. `register_family(family)` adds one at run time
(a plugin, or a throwaway family in a test).
"""

from __future__ import annotations

import importlib

from models.api import DIRECTIONS, Family, Traits, TranslationModel  # noqa: F401

FAMILY_NAMES = ("unit", "munit", "ugatit")
_REGISTERED: dict[str, Family] = {}


def register_family(family: Family, *, replace: bool = False) -> Family:
  """Makes `family` available to `get_family(family.name)` (and so to train, evaluate, export ...); returns it.

  ValueError when the name is already taken (a built-in family, or a registered one unless `replace`).
  """
  if not isinstance(family, Family):
    raise ValueError(f"register_family needs a models.api.Family, got {type(family).__name__}")
  if family.name in FAMILY_NAMES or (family.name in _REGISTERED and not replace):
    raise ValueError(f"Model family {family.name!r} is already registered; pick another name.")
  _REGISTERED[family.name] = family
  return family


def unregister_family(name: str) -> None:
  """Removes a family added by `register_family` (built-in families cannot be removed)."""
  _REGISTERED.pop(name, None)


def family_names() -> tuple[str, ...]:
  """Every family `get_family` knows: the built-in ones, then the registered ones."""
  return FAMILY_NAMES + tuple(_REGISTERED)


def get_family(name: str) -> Family:
  """Returns the `Family` record of "unit", "munit", "ugatit" (each package exposes `FAMILY`) or a registered one."""
  if name in _REGISTERED:
    return _REGISTERED[name]
  if name not in FAMILY_NAMES:
    raise ValueError(f"Unknown model family {name!r}; choose one of {', '.join(family_names())}.")
  return importlib.import_module(f"models.{name}").FAMILY


def get_config(name: str, preset: str = "paper", **overrides):
  """Returns the named preset of a family's config with `overrides` applied (dataclasses.replace)."""
  import dataclasses
  family = get_family(name)
  if preset not in family.presets:
    raise ValueError(f"Unknown preset {preset!r} for {name}; choose one of {', '.join(sorted(family.presets))}.")
  return dataclasses.replace(family.presets[preset], **overrides)
