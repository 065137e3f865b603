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

from components import image_io, ingest_lib
from components.errors import StageError

flags.DEFINE_string("domain_a", None, "Folder of domain A images (searched recursively).")
flags.DEFINE_string("domain_b", None, "Folder of domain B images (searched recursively).")
flags.DEFINE_string("dataset_dir", None, "CycleGAN-layout folder (trainA/ trainB/ [testA/ testB/]); "
                    "replaces --domain_a/--domain_b and keeps the given split.")
flags.DEFINE_string("output_dir", None, "Where domain_a/, domain_b/, stats.json, rejected.jsonl are written.")
flags.DEFINE_integer("load_size", 286, "Shorter side of the stored images (larger ones are downscaled with "
                     "antialiasing, smaller ones are kept as they are).")
flags.DEFINE_float("test_fraction", 0.1, "Share of each domain in the test split (folder mode; by sha256).")
flags.DEFINE_integer("max_pixels", image_io.DEFAULT_MAX_PIXELS, "Reject images whose header declares more "
                     "pixels than this (decompression-bomb guard).")
flags.DEFINE_string("background", "white", "Colour transparent pixels are composited on: white, black, gray, "
                    "#rrggbb or r,g,b.")
flags.DEFINE_integer("records_per_shard", 500, "Target records per output shard.")
flags.DEFINE_integer("png_compress_level", image_io.PNG_COMPRESS_LEVEL, "zlib level of the stored PNGs (0..9).")
flags.mark_flag_as_required("output_dir")

FLAGS = flags.FLAGS


def _parse(argv: list[str]) -> list[str]:
  """Parses our flags; returns argv[0] + every unknown argument (the Beam pipeline options)."""
  return FLAGS(argv, known_only=True)


def main(argv: list[str]) -> int:
  """Builds IngestConfig from the flags, runs ingest, prints the summary table."""
  try:
    background = image_io.parse_background(FLAGS.background)
  except ValueError as e:
    raise app.UsageError(str(e))
  config = ingest_lib.IngestConfig(
      output_dir=FLAGS.output_dir, domain_a=FLAGS.domain_a, domain_b=FLAGS.domain_b,
      dataset_dir=FLAGS.dataset_dir, load_size=FLAGS.load_size, test_fraction=FLAGS.test_fraction,
      max_pixels=FLAGS.max_pixels, background=background, records_per_shard=FLAGS.records_per_shard,
      png_compress_level=FLAGS.png_compress_level, beam_args=tuple(argv[1:]))
  try:
    result = ingest_lib.run(config)
  except StageError as e:
    print(f"ingest failed: {e}")
    return 1
  print(ingest_lib.format_summary(result))
  return 0


if __name__ == "__main__":
  app.run(main, flags_parser=_parse)
