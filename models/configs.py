"""Helpers shared by the families' frozen, flat config dataclasses: dict round trips and checked overrides.

A config is a frozen dataclass whose field names are the flag names (`lr`, `gan_w`, `image_size`, ...).
`ConfigMixin` gives each of them `to_dict()` and `from_dict()`; the module functions do the same for any
dataclass, so JSON written next to a model (`config.json`) reads back to an equal config.
"""

from __future__ import annotations

import dataclasses
import typing
from typing import Any, Mapping


def to_dict(config) -> dict[str, Any]:
  """Returns the fields of a config dataclass as a JSON-friendly dict (tuples become lists)."""
  if not dataclasses.is_dataclass(config) or isinstance(config, type):
    raise TypeError(f"to_dict expects a config dataclass instance, got {type(config).__name__}.")
  out = {}
  for field in dataclasses.fields(config):
    value = getattr(config, field.name)
    out[field.name] = list(value) if isinstance(value, tuple) else value
  return out


def _coerce(value, annotation, cls_name: str, name: str):
  """Converts a JSON/flag value to the field's annotated type (int, float, bool, str, tuple) or raises."""
  origin = typing.get_origin(annotation)
  if origin is tuple or annotation is tuple:
    if not isinstance(value, (list, tuple)):
      raise ValueError(f"{cls_name}.{name} must be a list, got {value!r}.")
    args = typing.get_args(annotation)
    if args and args[-1] is not Ellipsis and len(args) == len(value):
      return tuple(_coerce(v, a, cls_name, name) for v, a in zip(value, args))
    if args:
      return tuple(_coerce(v, args[0], cls_name, name) for v in value)
    return tuple(value)
  if annotation is bool:
    if isinstance(value, bool):
      return value
    if isinstance(value, str) and value.lower() in ("true", "false", "1", "0"):
      return value.lower() in ("true", "1")
    raise ValueError(f"{cls_name}.{name} must be true or false, got {value!r}.")
  if annotation in (int, float):
    if isinstance(value, bool):
      raise ValueError(f"{cls_name}.{name} must be a number, got {value!r}.")
    try:
      converted = annotation(value)
    except (TypeError, ValueError):
      raise ValueError(f"{cls_name}.{name} must be {annotation.__name__}, got {value!r}.") from None
    if annotation is int and isinstance(value, float) and converted != value:
      raise ValueError(f"{cls_name}.{name} must be an integer, got {value!r}.")
    return converted
  if annotation is str:
    if not isinstance(value, str):
      raise ValueError(f"{cls_name}.{name} must be a string, got {value!r}.")
    return value
  return value


def from_dict(cls, values: Mapping[str, Any], *, base=None):
  """Builds `cls` from `values` (e.g. parsed config.json), converting types; unknown keys are an error.

  Args:
    cls: the config dataclass.
    values: field name -> value; fields not given keep their value in `base` (or the class default).
    base: optional instance of `cls` to start from (e.g. a preset).
  """
  hints = typing.get_type_hints(cls)
  names = [f.name for f in dataclasses.fields(cls)]
  unknown = sorted(set(values) - set(names))
  if unknown:
    raise ValueError(f"Unknown {cls.__name__} field(s) {', '.join(unknown)}; valid fields are: {', '.join(names)}.")
  kwargs = {k: _coerce(v, hints.get(k), cls.__name__, k) for k, v in values.items()}
  if base is not None:
    return dataclasses.replace(base, **kwargs)
  return cls(**kwargs)


class ConfigMixin:
  """Gives a frozen config dataclass `to_dict()`, `from_dict()` and `replace()` (checked overrides)."""

  def to_dict(self) -> dict[str, Any]:
    """Returns the fields as a JSON-friendly dict."""
    return to_dict(self)

  @classmethod
  def from_dict(cls, values: Mapping[str, Any]):
    """Builds the config from a dict written by `to_dict()`; unknown keys raise ValueError."""
    return from_dict(cls, values)

  def replace(self, **overrides):
    """Returns a copy with `overrides` applied (types converted, unknown names rejected)."""
    return from_dict(type(self), overrides, base=self)
