"""Command-line flags generated from the stages' frozen config dataclasses: one field is one option.

A stage's options live in one place, its `<Stage>Config` dataclass (`components/<stage>_lib.py`): the field's
name, type and default make the flag, the field's entry in the class docstring's "Attributes:" section is its
help text, and `dataclasses.field(metadata=...)` says the rest:

  "runtime": True      how to run, not what to compute (strategy, intervals, Beam options): the pipeline passes
                       it to the stage but keeps it out of the cache key (pipelines.cli).
  "choices": (...)     the accepted values (an enum flag that lists them in --help).
  "flag": "name"       the flag's name when it differs from the field's (TrainConfig.family is --model);
  "flag": None         no flag of its own (filled from elsewhere: Beam's arguments, the model-setting flags).
  "parse": callable    the flag is a string that this turns into the field's value (ingest's --background).
  "help": "..."        help text when the docstring has none for the field.

`define_flags(cls, flag_values)` defines the flags (optionally under a prefix, e.g. `evaluate.max_kid` in the
pipeline's CLI) and `config_from_flags(cls, flag_values)` builds the config from the parsed flags. The entry
points (`python -m components.<stage>`) and the pipeline's CLI (pipelines.cli) both use them, so a new field is a
new flag of both without further edits. `define_model_flags` does the same for every family's model config (the
train stage's `--lr`, `--gan_w`, ...: default None = the preset's value). This module is absl glue for entry
points; library code never imports it.
"""

from __future__ import annotations

import dataclasses
import inspect
import re
import types
import typing
from typing import Any, Callable, Iterable

from absl import flags

RUNTIME = "runtime"
CHOICES = "choices"
FLAG = "flag"
PARSE = "parse"
HELP = "help"

# The typed absl flag of each scalar field type (one table for the stage flags and the model flags).
_DEFINE_BY_TYPE = {bool: flags.DEFINE_boolean, int: flags.DEFINE_integer, float: flags.DEFINE_float,
                   str: flags.DEFINE_string}
_ATTRIBUTE = re.compile(r"^(\w+(?:\s*,\s*\w+)*)\s*:\s*(.*)$")


def field_docs(config_class: type) -> dict[str, str]:
  """Field name -> its description in the class docstring's "Attributes:" section (Google style).

  An entry may document several fields at once ("max_kid, max_fid: blessing thresholds ...") and continue on
  more deeply indented lines; the fields share the text.
  """
  doc = inspect.getdoc(config_class) or ""
  lines = doc.splitlines()
  docs: dict[str, str] = {}
  try:
    start = next(i for i, line in enumerate(lines) if line.strip() == "Attributes:")
  except StopIteration:
    return docs
  indent = None
  names: list[str] = []
  for line in lines[start + 1:]:
    if not line.strip():
      continue
    depth = len(line) - len(line.lstrip())
    if indent is None:
      indent = depth
    if depth < indent:
      break
    match = _ATTRIBUTE.match(line.strip()) if depth == indent else None
    if match:
      names = [n.strip() for n in match.group(1).split(",")]
      for name in names:
        docs[name] = match.group(2).strip()
    elif names:
      for name in names:
        docs[name] = f"{docs[name]} {line.strip()}".strip()
  return docs


def flag_name(field: dataclasses.Field, prefix: str = "") -> str | None:
  """The flag of `field` (None: it has none), under `prefix` (e.g. "evaluate.")."""
  name = field.metadata.get(FLAG, field.name)
  return None if name is None else prefix + name


def option_fields(config_class: type, exclude: Iterable[str] = ()) -> list[dataclasses.Field]:
  """The fields of `config_class` that have a flag, minus `exclude` (field names)."""
  excluded = set(exclude)
  return [f for f in dataclasses.fields(config_class) if f.name not in excluded and flag_name(f) is not None]


def runtime_fields(config_class: type) -> frozenset[str]:
  """Names of the fields marked `metadata={"runtime": True}` (not part of the pipeline's cache key)."""
  return frozenset(f.name for f in dataclasses.fields(config_class) if f.metadata.get(RUNTIME))


def _field_type(config_class: type, field: dataclasses.Field) -> Any:
  """The field's annotation with `X | None` reduced to X."""
  annotation = typing.get_type_hints(config_class)[field.name]
  if typing.get_origin(annotation) in (typing.Union, types.UnionType):
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if len(args) == 1:
      annotation = args[0]
  return annotation


def _default(field: dataclasses.Field) -> Any:
  if field.default is not dataclasses.MISSING:
    return field.default
  return None


def _is_multi(annotation: Any) -> bool:
  """tuple[str, ...] / list[str]: a repeated flag."""
  args = typing.get_args(annotation)
  return (typing.get_origin(annotation) in (tuple, list) and args[:1] == (str,)
          and args[1:] in ((), (...,)))


def define_flags(config_class: type, flag_values: flags.FlagValues = flags.FLAGS, *, prefix: str = "",
                 exclude: Iterable[str] = ()) -> dict[str, str]:
  """Defines one flag per field of `config_class` (minus `exclude` and fields with `"flag": None`).

  The flag's default is the field's (None for a required field or a default factory), its help the field's
  docstring entry (or metadata "help"); bool, int, float and str fields make typed flags, "choices" an enum,
  tuple[str, ...] a repeated flag, "parse" a string flag converted by `config_from_flags`.

  Returns:
    field name -> flag name, in field order.

  Raises:
    ValueError: a field has no documentation or a type no flag can hold (say what to add).
  """
  docs = field_docs(config_class)
  names: dict[str, str] = {}
  for field in option_fields(config_class, exclude):
    name = flag_name(field, prefix)
    help_text = field.metadata.get(HELP) or docs.get(field.name)
    if not help_text:
      raise ValueError(f"{config_class.__name__}.{field.name} has no help text: describe it in the class "
                       "docstring's Attributes section (or give metadata={'help': ...})")
    annotation = _field_type(config_class, field)
    default = _default(field)
    if PARSE in field.metadata:
      flags.DEFINE_string(name, None, f"{help_text} (default: {default!r})", flag_values=flag_values)
    elif CHOICES in field.metadata:
      flags.DEFINE_enum(name, default, [str(c) for c in field.metadata[CHOICES]], help_text,
                        flag_values=flag_values)
    elif annotation in _DEFINE_BY_TYPE:
      _DEFINE_BY_TYPE[annotation](name, default, help_text, flag_values=flag_values)
    elif _is_multi(annotation):
      flags.DEFINE_multi_string(name, list(default or ()), f"{help_text} (repeat the flag)",
                                flag_values=flag_values)
    else:
      raise ValueError(f"{config_class.__name__}.{field.name}: no flag type for {annotation!r}; give it "
                       "metadata={'parse': str_to_value} or {'flag': None}")
    names[field.name] = name
  return names


def field_value(config_class: type, field: dataclasses.Field, raw: Any) -> Any:
  """A parsed flag value as the field takes it (repeated flags as tuples, "parse" applied; None stays None).

  Raises:
    ValueError: from the field's "parse" function (its message says what is wrong).
  """
  if raw is None:
    return None
  if PARSE in field.metadata:
    return field.metadata[PARSE](raw)
  if _is_multi(_field_type(config_class, field)):
    return tuple(raw)
  return raw


def values_from_flags(config_class: type, flag_values: flags.FlagValues = flags.FLAGS, *, prefix: str = "",
                      exclude: Iterable[str] = (), given: Callable[[str], bool] | None = None,
                      value_of: Callable[[str], Any] | None = None) -> dict[str, Any]:
  """Field name -> value of the field's flag, for the fields `define_flags` made flags of.

  Args:
    flag_values: the parsed FlagValues.
    given: when set, only flags for which given(flag name) is true are read (the others keep the config's
      default); a "parse" flag left at None is always skipped (its field keeps its default).
    value_of: flag name -> value, instead of reading `flag_values` (e.g. with a caller's defaults applied).
  """
  value_of = value_of or (lambda name: flag_values[name].value)
  values = {}
  for field in option_fields(config_class, exclude):
    name = flag_name(field, prefix)
    if given is not None and not given(name):
      continue
    raw = value_of(name)
    if raw is None and PARSE in field.metadata:
      continue
    values[field.name] = field_value(config_class, field, raw)
  return values


def config_from_flags(config_class: type, flag_values: flags.FlagValues = flags.FLAGS, *, prefix: str = "",
                      **values: Any) -> Any:
  """Builds `config_class` from its parsed flags; `values` set the fields that have no flag (or override)."""
  return config_class(**{**values_from_flags(config_class, flag_values, prefix=prefix, exclude=values), **values})


def stage_flags(config_class: type) -> tuple[Callable[..., dict[str, str]], Callable[..., Any]]:
  """The flag functions of a stage entry point whose flags are `config_class`'s fields:
  `define_flags(flag_values=FLAGS) -> {field: flag}` and `config_from_flags(flag_values=FLAGS) -> config`."""
  def define(flag_values: flags.FlagValues = flags.FLAGS) -> dict[str, str]:
    return define_flags(config_class, flag_values)

  def from_flags(flag_values: flags.FlagValues = flags.FLAGS) -> Any:
    return config_from_flags(config_class, flag_values)

  define.__doc__ = f"One flag per {config_class.__name__} field."
  from_flags.__doc__ = f"The {config_class.__name__} the parsed flags describe."
  return define, from_flags


def required_flags(config_class: type, *, prefix: str = "", exclude: Iterable[str] = ()) -> list[str]:
  """Flags of the fields without a default (to `flags.mark_flags_as_required` in an entry's `__main__`).

  A repeated flag is never required by absl (its default is the empty list); the library checks its count.
  """
  return [flag_name(f, prefix) for f in option_fields(config_class, exclude)
          if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
          and not _is_multi(_field_type(config_class, f))]


def model_fields() -> dict[str, tuple[Any, dict[str, Any]]]:
  """Model-setting name -> (annotated type, {family: paper-preset value}) over every family's config class."""
  import models  # pylint: disable=import-outside-toplevel
  fields: dict[str, tuple[Any, dict]] = {}
  for name in models.FAMILY_NAMES:
    family = models.get_family(name)
    hints = typing.get_type_hints(family.config_class)
    paper = family.presets.get("paper")
    for field in dataclasses.fields(family.config_class):
      entry = fields.setdefault(field.name, (hints[field.name], {}))
      entry[1][name] = getattr(paper, field.name) if paper is not None else field.default
  return fields


def model_flag_names(*, skip: Iterable[str] = ()) -> list[str]:
  """The model-setting flags `define_model_flags` defines: every family's config fields minus `skip`, sorted."""
  skipped = set(skip)
  return [name for name in sorted(model_fields()) if name not in skipped]


def define_model_flags(flag_values: flags.FlagValues = flags.FLAGS, *, skip: Iterable[str] = ()) -> list[str]:
  """One flag (default None = the preset's value) per model-config field of any family, minus `skip`.

  Returns:
    the flag names (= model-config field names), sorted.
  """
  fields = model_fields()
  names = []
  for name in model_flag_names(skip=skip):
    annotation, paper_values = fields[name]
    owners = ", ".join(f"{family}={value!r}" for family, value in paper_values.items())
    help_text = (f"Model setting {name} ({', '.join(paper_values)} only). Default: the preset's value "
                 f"(paper: {owners}).")
    origin = typing.get_origin(annotation) or annotation
    if origin in (tuple, list):
      flags.DEFINE_list(name, None, help_text + " Comma-separated.", flag_values=flag_values)
    else:  # a scalar; any other type is given as a string
      _DEFINE_BY_TYPE.get(annotation, flags.DEFINE_string)(name, None, help_text, flag_values=flag_values)
    names.append(name)
  return names


def model_overrides_from_flags(names: Iterable[str], flag_values: flags.FlagValues = flags.FLAGS) -> dict[str, Any]:
  """Model setting -> value for the model flags `names` that are set (None keeps the preset's value)."""
  return {name: flag_values[name].value for name in names if flag_values[name].value is not None}


# The flags defined by the functions above belong to the entry point that calls them (its --help lists them).
flags.disclaim_key_flags()
