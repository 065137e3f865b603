"""`python -m components.ingest`: two image folders (or a CycleGAN dataset) -> TFRecords + stats (Apache Beam).

  python -m components.ingest --domain_a=horses/ --domain_b=zebras/ --output_dir=data/
  python -m components.ingest --dataset_dir=horse2zebra/ --output_dir=data/ --direct_num_workers=2
  python -m components.ingest --dataset_dir=horse2zebra/ --output_dir=data/ --direct_running_mode=multi_processing
      --direct_num_workers=2   (all on one line)

Without --runner, Beam's local FnApiRunner is used: in memory; with --direct_num_workers=N on N worker threads;
with --direct_running_mode=multi_processing in N worker processes.

Every flag not defined here is handed to Beam's PipelineOptions unchanged (--runner, --direct_num_workers,
--direct_running_mode, Flink/Spark/Dataflow options). See components/ingest_lib.py for what is written.
"""

from absl import app, flags

from components import ingest_lib, ingest_report, options
from components.errors import StageError

FLAGS = flags.FLAGS


def define_flags(flag_values: flags.FlagValues = FLAGS) -> dict[str, str]:
  """One flag per IngestConfig field (beam_args: every argument that is not one of them)."""
  return options.define_flags(ingest_lib.IngestConfig, flag_values)


def config_from_flags(flag_values: flags.FlagValues, beam_args: list[str]) -> ingest_lib.IngestConfig:
  """The IngestConfig the parsed flags describe; `beam_args`: the arguments that are no flag of ours.

  Raises:
    ValueError: --background names no colour (the message lists the accepted forms).
  """
  return options.config_from_flags(ingest_lib.IngestConfig, flag_values, beam_args=tuple(beam_args))


def _parse(argv: list[str]) -> list[str]:
  """Parses our flags; returns argv[0] + every unknown argument (the Beam pipeline options)."""
  return FLAGS(argv, known_only=True)


def main(argv: list[str]) -> int:
  """Builds IngestConfig from the flags, runs ingest, prints the summary table."""
  try:
    config = config_from_flags(FLAGS, argv[1:])
  except ValueError as e:  # e.g. --background that names no colour
    raise app.UsageError(str(e))
  try:
    result = ingest_lib.run(config)
  except StageError as e:
    print(f"ingest failed: {e}")
    return 1
  print(ingest_report.format_summary(result))
  return 0


if __name__ == "__main__":
  define_flags()
  flags.mark_flags_as_required(options.required_flags(ingest_lib.IngestConfig))
  app.run(main, flags_parser=_parse)
