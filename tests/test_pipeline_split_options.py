"""pipelines.cli.split_stage_options: stage options sorted by the config's `runtime` field markers."""

from pipelines import cli


def test_runtime_marked_fields_go_to_runtime_options_the_rest_to_stage_options():
  # TrainConfig marks checkpoint_every_steps and strategy runtime, not seed; IngestConfig marks beam_args runtime;
  # EvaluateConfig marks nothing.
  stage_options, runtime_options = cli.split_stage_options({
      "train": {"seed": 3, "checkpoint_every_steps": 10, "strategy": "mirrored"},
      "ingest": {"beam_args": ("--runner=DirectRunner",)},
      "evaluate": {"num_images": 4}})
  assert stage_options == {"train": {"seed": 3}, "evaluate": {"num_images": 4}}
  assert runtime_options == {"train": {"checkpoint_every_steps": 10, "strategy": "mirrored"},
                             "ingest": {"beam_args": ("--runner=DirectRunner",)}}


def test_nothing_in_nothing_out():
  assert cli.split_stage_options({}) == ({}, {})
  assert cli.split_stage_options({"train": {}}) == ({}, {})
