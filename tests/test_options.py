"""One home for stage options: every field of every stage config is a flag of the stage's CLI and of the pipeline's.

The fields are iterated from the config dataclasses themselves (a new field is covered without editing this
file); each gets a non-default value on the command line, which must arrive in the config the stage's entry point
or the pipeline builds.
"""

from __future__ import annotations

import dataclasses
import typing

import pytest
from absl import app, flags

from components import (evaluate, export, import_official, infra_validate, ingest, options, push, train,
                        validate)
from pipelines import cli, pipeline_lib

# Entry module -> (its config class, how the test builds the config from its parsed flags).
ENTRIES = {
    "ingest": (ingest, lambda fv: ingest.config_from_flags(fv, ["--direct_num_workers=3"])),
    "validate": (validate, validate.config_from_flags),
    "train": (train, train.config_from_flags),
    "evaluate": (evaluate, evaluate.config_from_flags),
    "export": (export, export.config_from_flags),
    "infra_validate": (infra_validate, infra_validate.config_from_flags),
    "push": (push, push.config_from_flags),
    "import_official": (import_official, import_official.config_from_flags),
}
CONFIG_CLASSES = {
    "ingest": "components.ingest_lib.IngestConfig", "validate": "components.validate_lib.ValidateConfig",
    "train": "components.train_lib.TrainConfig", "evaluate": "components.evaluate_lib.EvaluateConfig",
    "export": "components.export_lib.ExportConfig",
    "infra_validate": "components.infra_validate_lib.InfraValidateConfig",
    "push": "components.push_lib.PushConfig", "import_official": "components.import_official_lib.ImportConfig",
}
# Strings that the libraries check (no "choices" metadata): a valid non-default spelling.
VALID_STRINGS = {"checkpoint": "latest", "preset": "tiny", "model_name": "given_name"}
# Fields whose flag is parsed by the field's "parse" function: (command-line text, expected value).
PARSED = {"background": ("#102030", (16, 32, 48))}


def _config_class(path: str) -> type:
  module, name = path.rsplit(".", 1)
  return getattr(__import__(module, fromlist=[name]), name)


def _bare(annotation):
  if typing.get_origin(annotation) in (typing.Union, __import__("types").UnionType):
    annotation = next(a for a in typing.get_args(annotation) if a is not type(None))
  return annotation


def _non_default(config_class, field) -> tuple[str, object]:
  """(command-line text, expected config value) different from the field's default."""
  default = field.default if field.default is not dataclasses.MISSING else None
  if field.name in PARSED:
    return PARSED[field.name]
  if "choices" in field.metadata:
    choice = next(c for c in field.metadata["choices"] if c != default)
    return str(choice), choice
  annotation = _bare(typing.get_type_hints(config_class)[field.name])
  if annotation is bool:
    return str(not default).lower(), not default
  if annotation is int:
    value = 7 if default is None else default + 3
    return str(value), value
  if annotation is float:
    value = 0.5 if default is None else default + 0.25
    return str(value), value
  if annotation is str:
    value = VALID_STRINGS.get(field.name, f"/given/{field.name}")
    return value, value
  if typing.get_origin(annotation) is tuple:
    return "/given/one", ("/given/one",)
  raise AssertionError(f"{config_class.__name__}.{field.name}: the test has no value for {annotation!r}")


def _flag_fields(config_class):
  return [f for f in dataclasses.fields(config_class) if f.metadata.get("flag", f.name) is not None]


@pytest.mark.parametrize("entry_name", sorted(ENTRIES))
def test_every_config_field_is_a_flag_of_the_stage_cli(entry_name):
  module, build = ENTRIES[entry_name]
  config_class = _config_class(CONFIG_CLASSES[entry_name])
  fields = _flag_fields(config_class)
  argv, expected = ["prog"], {}
  for field in fields:
    text, value = _non_default(config_class, field)
    assert value != field.default, field.name
    argv.append(f"--{field.metadata.get('flag', field.name)}={text}")
    expected[field.name] = value
  flag_values = flags.FlagValues()
  module.define_flags(flag_values)
  flag_values(argv)
  config = build(flag_values)
  assert isinstance(config, config_class)
  assert {f.name: getattr(config, f.name) for f in fields} == expected
  # The fields without a flag of their own are filled from elsewhere, as the entry point says.
  if entry_name == "ingest":
    assert config.beam_args == ("--direct_num_workers=3",)
  if entry_name == "train":
    flag_values(["prog", "--lr=0.125"])
    assert train.config_from_flags(flag_values).model_overrides == {"lr": 0.125}


def test_only_the_fields_filled_from_elsewhere_have_no_flag():
  # Ingest's Beam options are the arguments that are no flag; train's model settings are flags of their own.
  no_flag = {f"{entry}.{f.name}" for entry in ENTRIES for f in dataclasses.fields(_config_class(CONFIG_CLASSES[entry]))
             if f.metadata.get("flag", f.name) is None}
  assert no_flag == {"ingest.beam_args", "train.model_overrides"}


def _pipeline_flag(stage: str, field) -> str:
  name = field.metadata.get("flag", field.name)
  return name if stage == "train" else f"{stage}.{name}"


def _option_fields(stage: str):
  config_class = cli.stage_config_class(stage)
  return config_class, [f for f in _flag_fields(config_class) if f.name not in pipeline_lib.WIRED_FIELDS[stage]]


@pytest.mark.parametrize("spelling", ["flag", "set"])
@pytest.mark.parametrize("stage_name", pipeline_lib.STAGE_NAMES)
def test_every_stage_option_is_reachable_from_the_pipeline_cli(stage_name, spelling, tmp_path):
  config_class, fields = _option_fields(stage_name)
  argv, expected = ["pipeline", f"--domain_a={tmp_path}", f"--domain_b={tmp_path}"], {}
  if stage_name != "train":
    argv.append("--model=munit")
  for field in fields:
    text, value = _non_default(config_class, field)
    if spelling == "flag":
      argv.append(f"--{_pipeline_flag(stage_name, field)}={text}")
    else:
      argv.append(f"--set={stage_name}.{field.name}={text}")
    expected[field.name] = value
  flag_values = flags.FlagValues()
  cli.define_flags(flag_values)
  beam_args = flag_values(argv + ["--direct_num_workers=3"], known_only=True)[1:]
  pipeline = pipeline_lib.create_pipeline(cli.pipeline_config_from_flags(flag_values, beam_args))
  stage = pipeline.stage(stage_name)
  config = stage.build_config({name: f"/in/{name}" for name in stage.inputs}, "/out")
  assert {f.name: getattr(config, f.name) for f in fields} == expected
  runtime = options.runtime_fields(config_class)
  for field in fields:  # runtime fields are passed outside the cache key, every other one inside it
    assert field.name in (stage.runtime if field.name in runtime else stage.parameters), field.name
  if stage_name == "ingest":
    assert config.beam_args == ("--direct_num_workers=3",) and "beam_args" in stage.runtime


def test_the_model_settings_reach_the_train_stage_through_the_pipeline(tmp_path):
  flag_values = flags.FlagValues()
  cli.define_flags(flag_values)
  flag_values(["pipeline", "--model=munit", f"--dataset_dir={tmp_path}", "--lr=0.125", "--set=train.gan_w=3",
               "--image_size=64"])
  train_stage = pipeline_lib.create_pipeline(cli.pipeline_config_from_flags(flag_values, [])).stage("train")
  assert train_stage.build_config({"data_dir": "/d"}, "/m").model_overrides == {
      "lr": 0.125, "gan_w": 3.0, "image_size": 64}


@pytest.mark.parametrize("kwargs", [dict(dataset_dir="/data"), dict(domain_a="/a", domain_b="/b"),
                                    dict(dataset_dir="/data", model_dir="/official")])
def test_wired_fields_are_exactly_what_create_pipeline_wires(kwargs):
  pipeline = pipeline_lib.create_pipeline(pipeline_lib.PipelineConfig(pipeline_root="/r", serving_root="/s",
                                                                      **kwargs))
  for stage in pipeline.stages:
    wired = set(stage.inputs) | ({stage.output_field} if stage.output_field else set())
    assert wired <= set(pipeline_lib.WIRED_FIELDS[stage.name]), stage.name
    unused = set(pipeline_lib.WIRED_FIELDS[stage.name]) - wired
    assert unused <= {"domain_a", "domain_b", "dataset_dir"}, (stage.name, unused)  # ingest: one source form


@pytest.mark.parametrize("assignment, message", [
    ("evaluate.num_images", "--set 'evaluate.num_images': write STAGE.FIELD=VALUE, e.g. --set evaluate.num_images=64"),
    ("trian.seed=1", "--set 'trian.seed=1': unknown stage 'trian'; stages: ingest, validate, train, evaluate, export, "
                     "infra_validate, push, import_model"),
    ("evaluate.data_dir=/x", "--set 'evaluate.data_dir=/x': evaluate.data_dir is wired by the pipeline (an input or "
                             "output of the stage), not an option"),
    ("validate.max_kid=1", "--set 'validate.max_kid=1': 'max_kid' is not an option of the validate stage; its "
                           "options: image_size, min_images, max_reject_fraction"),
    ("evaluate.num_images=many", "--set 'evaluate.num_images=many': 'many' is not a value of --evaluate.num_images "
                                 "(int): "),
    ("train.best_metric=mse", "--set 'train.best_metric=mse': 'mse' is not a value of --best_metric (string enum): "
                              "value should be one of <kid|fid|cycle_l1|cycle_psnr|diversity_l1|diversity_lpips>"),
])
def test_set_errors_say_what_to_write(assignment, message, tmp_path):
  flag_values = flags.FlagValues()
  cli.define_flags(flag_values)
  flag_values(["pipeline", "--model=munit", f"--dataset_dir={tmp_path}", f"--set={assignment}"])
  with pytest.raises(app.UsageError) as error:
    cli.pipeline_config_from_flags(flag_values, [])
  assert str(error.value).startswith(message), str(error.value)


def test_defaults_apply_below_the_command_line(tmp_path):
  # The demo's settings: a default, not a write into FLAGS; what the command line gives wins.
  flag_values = flags.FlagValues()
  cli.define_flags(flag_values)
  flag_values(["pipeline", f"--dataset_dir={tmp_path}", "--steps=9"])
  defaults = {"model": "unit", "preset": "tiny", "steps": 500, "eval_images": 4, "image_size": 32}
  config = cli.pipeline_config_from_flags(flag_values, [], defaults=defaults)
  assert (config.family, config.preset, config.steps, config.image_size) == ("unit", "tiny", 9, 32)
  assert config.stage_options["train"]["eval_images"] == 4
  assert "evaluate" not in config.stage_options  # a default --eval_images does not size evaluate
  assert flag_values["steps"].value == 9 and flag_values["model"].value is None  # FLAGS untouched
  with pytest.raises(app.UsageError, match=r"defaults for unknown flags \['stepz'\]"):
    cli.pipeline_config_from_flags(flag_values, [], defaults={"stepz": 1})
  with pytest.raises(app.UsageError, match="--model is required: one of unit, munit, ugatit"):
    cli.pipeline_config_from_flags(flag_values, [])


@dataclasses.dataclass(frozen=True)
class _Documented:
  """Example.

  Attributes:
    first, second: two sizes
      that share a sentence.
    third: the third one.
  """
  first: int = 1
  second: int = 2
  third: str = "x"
  fourth: float = dataclasses.field(default=0.5, metadata={"help": "from metadata", "runtime": True})


def test_help_text_comes_from_the_docstring_or_metadata():
  assert options.field_docs(_Documented) == {"first": "two sizes that share a sentence.",
                                             "second": "two sizes that share a sentence.",
                                             "third": "the third one."}
  flag_values = flags.FlagValues()
  assert options.define_flags(_Documented, flag_values, prefix="d.") == {
      "first": "d.first", "second": "d.second", "third": "d.third", "fourth": "d.fourth"}
  assert flag_values["d.second"].help == "two sizes that share a sentence."
  assert flag_values["d.fourth"].help == "from metadata"
  assert options.runtime_fields(_Documented) == {"fourth"}

  @dataclasses.dataclass(frozen=True)
  class Undocumented:
    """No attributes section."""
    size: int = 1

  with pytest.raises(ValueError, match="Undocumented.size has no help text: describe it in the class docstring"):
    options.define_flags(Undocumented, flags.FlagValues())


ENTRY_MODULES = ("components/ingest.py", "components/validate.py", "components/train.py", "components/evaluate.py",
                 "components/export.py", "components/infra_validate.py", "components/push.py",
                 "components/import_official.py", "pipelines/local.py", "pipelines/demo.py")


@pytest.mark.parametrize("path", ENTRY_MODULES)
def test_entry_points_define_flags_only_when_run_and_import_no_other_entry_point(path):
  # Flags defined at import made one entry import another for its flags (demo -> local -> train) and made two
  # entries unable to live in one process (both define --model_dir).
  import ast  # pylint: disable=import-outside-toplevel
  import os  # pylint: disable=import-outside-toplevel
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  with open(os.path.join(root, path), encoding="utf-8") as f:
    tree = ast.parse(f.read())
  entries = {p[:-3].replace("/", ".") for p in ENTRY_MODULES}
  imported = set()
  for node in ast.walk(tree):
    if isinstance(node, ast.ImportFrom) and node.module:
      imported |= {node.module} | {f"{node.module}.{alias.name}" for alias in node.names}
    elif isinstance(node, ast.Import):
      imported |= {alias.name for alias in node.names}
  assert not imported & (entries - {path[:-3].replace("/", ".")}), path
  for node in tree.body:  # module level, outside `if __name__ == "__main__":`
    if isinstance(node, ast.If):
      continue
    for call in ast.walk(node):
      if isinstance(call, ast.Call) and isinstance(call.func, ast.Attribute) and call.func.attr.startswith("DEFINE"):
        assert isinstance(node, ast.FunctionDef), f"{path}:{call.lineno} defines a flag at import"
