"""Ingest: two folders of unpaired images -> sharded, deduplicated, validated-ready TFRecords (Apache Beam).

`run(IngestConfig) -> IngestResult`. Inputs are either two domain folders (searched recursively; train/test split
by a hash of each file's bytes against `test_fraction`) or a CycleGAN dataset folder (trainA, trainB, testA,
testB: the given split is kept). Outputs under `output_dir` (DESIGN.md, stage 1):
  domain_a/{train,test}-SSSSS-of-NNNNN.tfrecord.gz, domain_b/...   GZIP TFRecords of tf.train.Example
  stats.json      counts per domain and split, rejections by reason, duplicates, source formats/sizes,
                  stored image sizes (min/max height and width) and per-channel mean/std of the STORED pixels on
                  the 0..255 scale
  rejected.jsonl  one {"path", "domain", "reason", "message", "detail", "source_id"} per input that was not stored,
                  and one per folder that could not be listed (reason "unlistable_folder": its files are missing)

Listing and naming the inputs (any file name; a folder that cannot be listed is reported, not fatal) is
components.ingest_sources, writing the TFRecord shards components.ingest_shards, and stats.json with its summary
table components.ingest_report; this module is the config, the Beam graph and `run`.

The Beam graph uses only portable transforms (Create, Reshuffle, ParDo, CombinePerKey, GroupByKey, Flatten,
side inputs), so any runner works (`--runner`, DirectRunner `--direct_running_mode=multi_processing
--direct_num_workers=N`, Flink, Spark, Dataflow options are passed through untouched):

  Create(file list) -> Reshuffle -> ParDo(stream sha256; split)                 --rejected (unreadable)--+
    -> CombinePerKey((domain, sha256) -> the identical copies, kept one first)  [small: paths only]      |
    -> ParDo(decode, convert, resize, PNG, tf.train.Example of the kept copy)   --rejected (bad image)---+
         shard = sha256 % ceil(candidates / records_per_shard)   [candidates per split: side input]      |
    -> GroupByKey(shard) -> ParDo(sort by filename, write one GZIP TFRecord shard)                       |
  stats items -> CombinePerKey(stats per domain/split) ---------+--> Flatten -> GroupByKey(file) -> ParDo(write
  candidates per split ----------------------------------------+      sorted JSON lines) <-------------------+
After the pipeline the library merges those small files into stats.json / rejected.jsonl and writes empty shards
for shard indices (or splits) that received no record, so readers always find every file.

Deduplicating on the hash before decoding means identical files are decoded once, and the encoded images cross
a process boundary only once (into the shard writer). When the kept copy is not a usable image, every identical
copy is rejected with the same reason (none is hidden as a "duplicate").

Determinism: the split, shard assignment, order inside a shard (filename), PNG and gzip encoding (mtime 0) and
Example serialisation (sorted map keys) depend only on the inputs and the config, so two runs give byte-identical
shards whatever the runner or the number of workers. Memory: a worker holds one image at a time (files are
hashed and decoded as streams), the dedup combiner only paths, the shard writer one shard (<= about
records_per_shard PNGs); the launcher holds only the file list.
Input folders must be readable by the workers (local disk or a shared mount).
"""

from __future__ import annotations

import dataclasses
import errno
import hashlib
import json
import os
import shutil
import stat
import time

import apache_beam as beam
import numpy as np
from apache_beam.options.pipeline_options import DirectOptions, PipelineOptions

from components import image_io
from components.errors import StageError
from components.ingest_report import SplitStatsFn, build_stats
from components.ingest_shards import num_shards, shard_path, write_tfrecord_shard
from components.ingest_sources import DOMAINS, SPLITS, SourceFile, list_inputs, os_error, printable_path

_LEVELS = np.arange(256, dtype=np.int64)
_LEVELS_SQUARED = _LEVELS * _LEVELS


@dataclasses.dataclass(frozen=True)
class IngestConfig:
  """Parameters of one ingest run.

  Attributes:
    output_dir: where domain_a/, domain_b/, stats.json and rejected.jsonl go (earlier ingest outputs in it
      are replaced).
    domain_a, domain_b: the two image folders (recursive); or leave both None and set dataset_dir.
    dataset_dir: a CycleGAN-layout folder with trainA/, trainB/ and optionally testA/, testB/.
    load_size: shorter side of the stored images (larger images are downscaled, smaller ones kept).
    test_fraction: share of each domain put in the test split (folder mode only), decided by sha256 of the bytes.
    max_pixels: largest width*height accepted (decompression-bomb guard, checked from the header).
    background: RGB colour transparent pixels are composited on (flag: white, black, gray, #rrggbb or r,g,b).
    records_per_shard: target records per output shard (bounds the shard writer's memory).
    png_compress_level: zlib level of the stored PNGs (0..9).
    beam_args: Beam pipeline options, e.g. ("--runner=DirectRunner", "--direct_num_workers=2"); every command-line
      argument that is not a flag of ours (how to run: not part of the pipeline's cache key).
  """
  output_dir: str
  domain_a: str | None = None
  domain_b: str | None = None
  dataset_dir: str | None = None
  load_size: int = 286
  test_fraction: float = 0.1
  max_pixels: int = image_io.DEFAULT_MAX_PIXELS
  background: tuple[int, int, int] = dataclasses.field(default=(255, 255, 255),
                                                      metadata={"parse": image_io.parse_background})
  records_per_shard: int = 500
  png_compress_level: int = image_io.PNG_COMPRESS_LEVEL
  beam_args: tuple[str, ...] = dataclasses.field(default=(), metadata={"runtime": True, "flag": None})

  def validate(self) -> None:
    """Raises StageError naming the bad parameter and the fix."""
    folders = self.domain_a is not None or self.domain_b is not None
    if folders == (self.dataset_dir is not None) or (folders and not (self.domain_a and self.domain_b)):
      raise StageError("give either both --domain_a and --domain_b, or --dataset_dir (CycleGAN layout with "
                       "trainA/ trainB/ [testA/ testB/]), not both and not neither")
    if self.load_size < 1:
      raise StageError(f"--load_size must be >= 1, got {self.load_size}")
    if not 0.0 <= self.test_fraction < 1.0:
      raise StageError(f"--test_fraction must be in [0, 1), got {self.test_fraction}")
    if self.max_pixels < 1:
      raise StageError(f"--max_pixels must be >= 1, got {self.max_pixels}")
    if self.records_per_shard < 1:
      raise StageError(f"--records_per_shard must be >= 1, got {self.records_per_shard}")
    if not 0 <= self.png_compress_level <= 9:
      raise StageError(f"--png_compress_level must be in 0..9, got {self.png_compress_level}")
    if len(self.background) != 3 or not all(0 <= v <= 255 for v in self.background):
      raise StageError(f"background must be three values in 0..255, got {self.background}")


@dataclasses.dataclass(frozen=True)
class IngestResult:
  """What an ingest run produced.

  Attributes:
    output_dir: the data_dir for components.data / validate / train.
    stats_path, rejected_path: the two report files.
    stats: the content of stats.json.
    seconds: wall time of the whole run.
    images_per_second: listed files / seconds.
  """
  output_dir: str
  stats_path: str
  rejected_path: str
  stats: dict
  seconds: float
  images_per_second: float


def hash_fraction(sha256_hex: str) -> float:
  """Maps a sha256 hex digest to [0, 1) (its first 64 bits), the split decision in folder mode."""
  return int(sha256_hex[:16], 16) / 2.0**64


def _rejection(copy: dict, reason: str, detail: str = "") -> beam.pvalue.TaggedOutput:
  """A rejected.jsonl row for one listed file (`copy`: a HashFileFn output value), tagged "rejected".

  Every value is a printable path or plain text: `detail` (library messages) is made UTF-8-safe too."""
  return beam.pvalue.TaggedOutput("rejected", {
      "path": copy["path"], "domain": copy["domain"], "source_id": copy["source_id"], "reason": reason,
      "message": image_io.REASONS[reason], "detail": detail.encode("utf-8", "backslashreplace").decode("utf-8")})


def _dangling_link_detail(path: bytes) -> str:
  """Where a symbolic link that does not resolve points (printable), and whether it is a loop of links."""
  target = f"points to {printable_path(os.readlink(path))}"
  try:
    os.stat(path)
  except OSError as e:
    if e.errno == errno.ELOOP:
      return f"{target}: a loop of links ({os_error(e)})"
  return target


class HashFileFn(beam.DoFn):
  """SourceFile -> ((domain, sha256 of the bytes), copy dict), or a rejection when the file cannot be read.

  The hash is streamed (memory does not grow with the file size) and decides the split in folder mode.
  The copy dict: "path" (printable), "raw_path" (bytes, what is opened), "domain", "filename" (printable,
  relative to the domain root), "source_id", "source_bytes", "split".
  """

  def __init__(self, test_fraction: float):
    self._test_fraction = test_fraction

  def process(self, source: SourceFile):
    path = source.path
    copy = {"path": printable_path(path), "raw_path": path, "domain": source.domain, "filename": source.filename,
            "source_id": source.source_id}
    try:
      if os.path.islink(path) and not os.path.exists(path):
        yield _rejection(copy, "broken_symlink", _dangling_link_detail(path))
        return
      if not stat.S_ISREG(os.stat(path).st_mode):  # a FIFO would block, a device never end
        yield _rejection(copy, "unreadable", "not a regular file (FIFO, socket or device)")
        return
      with open(path, "rb") as f:
        sha = hashlib.file_digest(f, "sha256").hexdigest()
        copy["source_bytes"] = f.tell()
    except OSError as e:
      yield _rejection(copy, "unreadable", os_error(e))
      return
    copy["split"] = source.split or ("test" if hash_fraction(sha) < self._test_fraction else "train")
    yield (source.domain, sha), copy


def _keep_preference(copy: dict) -> tuple:
  """Which of identical files is kept: a test-split copy first (no train/test leak), then by source_id."""
  return (copy["split"] != "test", copy["source_id"])


class CollectCopiesFn(beam.CombineFn):
  """Identical files of one domain -> their copy dicts (small: paths and names), the kept one first."""

  def create_accumulator(self):
    return []

  def add_input(self, accumulator, copy):
    accumulator.append(copy)
    return accumulator

  def merge_accumulators(self, accumulators):
    return [copy for accumulator in accumulators for copy in accumulator]

  def extract_output(self, accumulator):
    return sorted(accumulator, key=_keep_preference)


class DecodeFn(beam.DoFn):
  """((domain, sha), copies) -> the kept copy decoded, resized, PNG-encoded and serialized as a tf.train.Example.

  Outputs: main ((domain, split, shard, n_shards), (filename, sha256, example bytes)) with
  shard = sha256 % n_shards, n_shards from the per-split candidate counts (side input); "stats"
  ((domain, split), SplitStatsFn input); "rejected" rows, one per copy when the content is not a usable image.
  """

  def __init__(self, config: IngestConfig):
    self._config = config

  def process(self, element, candidates: dict):
    (domain, sha), copies = element
    kept = copies[0]
    try:
      with open(kept["raw_path"], "rb") as f:
        image = image_io.prepare_image(f, load_size=self._config.load_size, max_pixels=self._config.max_pixels,
                                       background=self._config.background)
    except (image_io.ImageRejected, OSError) as e:
      reason, detail = ((e.reason, e.detail) if isinstance(e, image_io.ImageRejected)
                        else ("unreadable", os_error(e)))
      for copy in copies:
        yield _rejection(copy, reason, detail if copy is kept else
                         f"{detail}; same content as {kept['path']}".lstrip("; "))
      return
    pixels = image.pixels
    height, width = int(pixels.shape[0]), int(pixels.shape[1])
    example = image_io.encode_example({
        "image/encoded": image_io.encode_png(pixels, self._config.png_compress_level), "image/format": b"png",
        "image/height": height, "image/width": width, "image/channels": 3,
        "image/filename": kept["filename"].encode("utf-8"), "image/source_id": kept["source_id"].encode("utf-8"),
        "image/key/sha256": sha.encode("ascii"), "image/domain": domain.encode("ascii")})
    split = kept["split"]
    n = num_shards(candidates[(domain, split)], self._config.records_per_shard)
    yield (domain, split, int(sha[:15], 16) % n, n), (kept["filename"], sha, example)
    histogram = [np.bincount(pixels[..., c].ravel(), minlength=256) for c in range(3)]  # exact, 2 ms
    yield beam.pvalue.TaggedOutput("stats", ((domain, split), {
        "duplicates": len(copies) - 1, "height": height, "width": width, "source_bytes": kept["source_bytes"],
        "source_format": image.source_format, "source_mode": image.source_mode, "animated": image.animated,
        "exif_rotated": image.exif_rotated, "channel_sum": [int(h @ _LEVELS) for h in histogram],
        "channel_sumsq": [int(h @ _LEVELS_SQUARED) for h in histogram]}))


class WriteShardFn(beam.DoFn):
  """((domain, split, shard, n), records) -> writes the shard sorted by (filename, sha256); yields its path
  (printable)."""

  def __init__(self, output_dir: str):
    self._output_dir = output_dir

  def process(self, element):
    (domain, split, shard, n), records = element
    ordered = sorted(records, key=lambda r: (r[0], r[1]))
    path = shard_path(self._output_dir, domain, split, shard, n)
    write_tfrecord_shard(path, (r[2] for r in ordered))
    yield printable_path(path)  # the output_dir may have any bytes in its name too


def _stats_line(element) -> tuple[str, str]:
  """((domain, split), SplitStatsFn accumulator) -> ("stats", JSON line)."""
  (domain, split), acc = element
  return "stats", json.dumps({"domain": domain, "split": split, "stats": acc}, sort_keys=True)


def _candidates_line(element) -> tuple[str, str]:
  """((domain, split), distinct files) -> ("candidates", JSON line): fixes that split's shard count."""
  (domain, split), count = element
  return "candidates", json.dumps({"domain": domain, "split": split, "count": count}, sort_keys=True)


def _rejected_line(row: dict) -> tuple[str, str]:
  """A rejected row -> ("rejected_<domain>", JSON line)."""
  return f"rejected_{row['domain']}", json.dumps(row, sort_keys=True)


class WriteLinesFn(beam.DoFn):
  """(name, lines) -> `<directory>/<name>.jsonl` with the lines sorted (a light, deterministic text sink for the
  small side outputs; WriteToText's sink machinery costs about a second of pipeline start-up)."""

  def __init__(self, directory: str):
    self._directory = directory

  def process(self, element):
    name, lines = element
    path = os.path.join(self._directory, f"{name}.jsonl")
    tmp = f"{path}.tmp-{os.getpid()}-{time.monotonic_ns()}"
    with open(tmp, "w", encoding="utf-8") as f:
      for line in sorted(lines):
        f.write(line + "\n")
    os.replace(tmp, path)
    yield printable_path(path)


def build_pipeline(pipeline: beam.Pipeline, files: list[SourceFile], config: IngestConfig, tmp_dir: str) -> None:
  """Adds the ingest graph to `pipeline` (see the module docstring); small side files go to `tmp_dir`."""
  hashed = (pipeline
            | "ListedFiles" >> beam.Create(files, reshuffle=False)
            | "Spread" >> beam.Reshuffle()
            | "Hash" >> beam.ParDo(HashFileFn(config.test_fraction)).with_outputs("rejected", main="copies"))
  distinct = hashed.copies | "GroupIdentical" >> beam.CombinePerKey(CollectCopiesFn())
  candidates = (distinct
                | "SplitOfKept" >> beam.Map(lambda kv: ((kv[0][0], kv[1][0]["split"]), 1))
                | "CountPerSplit" >> beam.CombinePerKey(sum))
  decoded = distinct | "Decode" >> beam.ParDo(
      DecodeFn(config), candidates=beam.pvalue.AsDict(candidates)).with_outputs("stats", "rejected", main="records")
  _ = (decoded.records
       | "GroupShard" >> beam.GroupByKey()
       | "WriteShard" >> beam.ParDo(WriteShardFn(config.output_dir)))
  stats = (decoded.stats
           | "SplitStats" >> beam.CombinePerKey(SplitStatsFn())
           | "StatsJson" >> beam.Map(_stats_line))
  rejected = ((hashed.rejected, decoded.rejected)
              | "AllRejected" >> beam.Flatten()
              | "RejectedJson" >> beam.Map(_rejected_line))
  _ = ((stats, rejected, candidates | "CandidatesJson" >> beam.Map(_candidates_line))
       | "SmallOutputs" >> beam.Flatten()
       | "GroupByFile" >> beam.GroupByKey()
       | "WriteLines" >> beam.ParDo(WriteLinesFn(tmp_dir)))


def _read_lines(tmp_dir: str, prefix: str) -> list[str]:
  """All lines of WriteLinesFn's `<tmp_dir>/<prefix>*.jsonl` files."""
  lines = []
  for name in sorted(os.listdir(tmp_dir)):
    if name.startswith(prefix) and name.endswith(".jsonl"):
      with open(os.path.join(tmp_dir, name), encoding="utf-8") as f:
        lines.extend(line for line in f.read().splitlines() if line)
  return lines


def _clear_previous_outputs(output_dir: str) -> None:
  """Removes an earlier ingest's shards and reports from output_dir (so stale shards never mix in)."""
  for d in DOMAINS:
    folder = os.path.join(output_dir, f"domain_{d}")
    if os.path.isdir(folder):
      for name in os.listdir(folder):
        if name.endswith(".tfrecord.gz") or ".tfrecord.gz.tmp-" in name:
          os.remove(os.path.join(folder, name))
  for name in ("stats.json", "rejected.jsonl"):
    if os.path.exists(os.path.join(output_dir, name)):
      os.remove(os.path.join(output_dir, name))


def pipeline_options(beam_args: tuple[str, ...]) -> PipelineOptions:
  """Beam options from `beam_args`, with `--runner=FnApiRunner` when no runner is given.

  FnApiRunner is the local portable runner DirectRunner itself falls back to; choosing it explicitly skips
  DirectRunner's attempt to download the Prism binary (offline machines) and honours --direct_running_mode /
  --direct_num_workers. `--runner=DirectRunner` (or any other runner) is used as given.

  `--direct_num_workers=N` (N != 1) without `--direct_running_mode` means `multi_threading` here (Beam's own
  default, in_memory, would ignore N and run one thread): Pillow releases the GIL while it decodes, resizes and
  encodes, so N threads use N cores without N worker processes each importing Beam (about 1 s of CPU each).
  `--direct_running_mode=multi_processing` is honoured as given.

  Raises:
    StageError: an argument is no Beam option (Beam would only log and drop it, e.g. a misspelt ingest flag).
  """
  args = list(beam_args)
  if not any(a == "--runner" or a.startswith("--runner=") for a in args):
    args.insert(0, "--runner=FnApiRunner")
  options = PipelineOptions(args)
  direct = options.view_as(DirectOptions)
  if (direct.direct_num_workers != 1 and
      not any(a == "--direct_running_mode" or a.startswith("--direct_running_mode=") for a in args)):
    direct.direct_running_mode = "multi_threading"
  unknown = sorted(set(options.get_all_options(retain_unknown_options=True)) - set(options.get_all_options()))
  if unknown:
    raise StageError(f"unknown option(s) {', '.join('--' + u for u in unknown)}: neither an ingest flag nor a "
                     f"Beam pipeline option; check the spelling (python -m components.ingest --helpfull)")
  return options


def run(config: IngestConfig) -> IngestResult:
  """Runs the ingest pipeline (see module docstring) and writes stats.json / rejected.jsonl.

  Raises:
    StageError: bad parameters or missing input folders (bad images never raise: they are rejected).
  """
  start = time.monotonic()
  config.validate()
  options = pipeline_options(config.beam_args)
  files, ignored, roots, unlistable = list_inputs(config)
  os.makedirs(config.output_dir, exist_ok=True)
  _clear_previous_outputs(config.output_dir)
  tmp_dir = os.path.join(config.output_dir, ".ingest_tmp")
  shutil.rmtree(tmp_dir, ignore_errors=True)
  os.makedirs(tmp_dir)
  with beam.Pipeline(options=options) as pipeline:
    build_pipeline(pipeline, files, config, tmp_dir)
  split_accs, candidates = {}, {}
  for line in _read_lines(tmp_dir, "stats"):
    row = json.loads(line)
    split_accs[(row["domain"], row["split"])] = row["stats"]
  for line in _read_lines(tmp_dir, "candidates"):
    row = json.loads(line)
    candidates[(row["domain"], row["split"])] = row["count"]
  rejected = sorted([json.loads(line) for line in _read_lines(tmp_dir, "rejected_")] + unlistable,
                    key=lambda r: (r["domain"], r["path"], r["reason"]))
  shutil.rmtree(tmp_dir, ignore_errors=True)
  stats = build_stats(config, files, ignored, roots, split_accs, candidates, rejected)
  for d in DOMAINS:  # shards that received no record (empty splits, hash gaps, rejects) are written empty
    for s in SPLITS:
      n = stats["domains"][d]["splits"][s]["num_shards"]
      for i in range(n):
        path = shard_path(config.output_dir, d, s, i, n)
        if not os.path.exists(path):
          write_tfrecord_shard(path, [])
  stats_path = os.path.join(config.output_dir, "stats.json")
  with open(stats_path, "w", encoding="utf-8") as f:
    json.dump(stats, f, indent=2, sort_keys=True)
    f.write("\n")
  rejected_path = os.path.join(config.output_dir, "rejected.jsonl")
  with open(rejected_path, "w", encoding="utf-8") as f:
    for row in rejected:
      f.write(json.dumps(row, sort_keys=True) + "\n")
  seconds = time.monotonic() - start
  return IngestResult(output_dir=config.output_dir, stats_path=stats_path, rejected_path=rejected_path,
                      stats=stats, seconds=seconds, images_per_second=len(files) / seconds if seconds else 0.0)
