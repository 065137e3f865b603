"""Ingest's report: the per-split statistics (a Beam CombineFn), stats.json assembled from them, the summary table.

stats.json: counts per domain and split, rejections by reason, duplicates, source formats/sizes, stored image
sizes (min/max height and width) and per-channel mean/std of the STORED pixels on the 0..255 scale (PIXEL_SCALE),
computed from exact integer channel sums.
"""

from __future__ import annotations

import math

import apache_beam as beam

from components import image_io
from components.ingest_shards import num_shards
from components.ingest_sources import DOMAINS, SPLITS, printable_path

PIXEL_SCALE = "0..255 (uint8 values of the stored RGB pixels)"


class SplitStatsFn(beam.CombineFn):
  """Per (domain, split): counts, stored sizes, exact integer channel sums, source formats/modes/bytes."""

  def create_accumulator(self):
    return {"count": 0, "duplicates": 0, "min_height": None, "min_width": None, "max_height": 0, "max_width": 0,
            "pixels": 0, "channel_sum": [0, 0, 0], "channel_sumsq": [0, 0, 0], "source_bytes": 0,
            "source_formats": {}, "source_modes": {}, "animated": 0, "exif_rotated": 0}

  def add_input(self, acc, stats):
    return self.merge_accumulators([acc, {
        "count": 1, "duplicates": stats["duplicates"], "min_height": stats["height"], "min_width": stats["width"],
        "max_height": stats["height"], "max_width": stats["width"], "pixels": stats["height"] * stats["width"],
        "channel_sum": stats["channel_sum"], "channel_sumsq": stats["channel_sumsq"],
        "source_bytes": stats["source_bytes"], "source_formats": {stats["source_format"]: 1},
        "source_modes": {stats["source_mode"]: 1}, "animated": int(stats["animated"]),
        "exif_rotated": int(stats["exif_rotated"])}])

  def merge_accumulators(self, accumulators):
    out = self.create_accumulator()
    for acc in accumulators:
      for key in ("count", "duplicates", "pixels", "source_bytes", "animated", "exif_rotated"):
        out[key] += acc[key]
      for key in ("min_height", "min_width"):
        if acc[key] is not None:
          out[key] = acc[key] if out[key] is None else min(out[key], acc[key])
      for key in ("max_height", "max_width"):
        out[key] = max(out[key], acc[key])
      for key in ("channel_sum", "channel_sumsq"):
        out[key] = [x + y for x, y in zip(out[key], acc[key])]
      for key in ("source_formats", "source_modes"):
        for name, n in acc[key].items():
          out[key][name] = out[key].get(name, 0) + n
    return out

  def extract_output(self, acc):
    return acc


def _split_summary(acc: dict, n_shards: int) -> dict:
  """A SplitStatsFn accumulator -> the stats.json entry of one split (mean/std per channel, 0..255)."""
  pixels = acc["pixels"]
  mean = [s / pixels for s in acc["channel_sum"]] if pixels else [0.0, 0.0, 0.0]
  std = ([math.sqrt(max(0.0, sq / pixels - m * m)) for sq, m in zip(acc["channel_sumsq"], mean)]
         if pixels else [0.0, 0.0, 0.0])
  return {"count": acc["count"], "num_shards": n_shards, "duplicates": acc["duplicates"],
          "min_height": acc["min_height"], "min_width": acc["min_width"],
          "max_height": acc["max_height"], "max_width": acc["max_width"],
          "mean_rgb": [round(v, 4) for v in mean], "std_rgb": [round(v, 4) for v in std],
          "source_bytes": acc["source_bytes"], "source_formats": dict(sorted(acc["source_formats"].items())),
          "source_modes": dict(sorted(acc["source_modes"].items())), "animated": acc["animated"],
          "exif_rotated": acc["exif_rotated"], "pixels": pixels,
          "channel_sum": acc["channel_sum"], "channel_sumsq": acc["channel_sumsq"]}


def build_stats(config, files: list, ignored: dict, roots: dict,
                 split_accs: dict, candidates: dict, rejected: list[dict]) -> dict:
  """Assembles stats.json (deterministic: no timings) from the pipeline's small outputs (`config`: the run's
  ingest_lib.IngestConfig, `files`: its ingest_sources.SourceFile list).

  `listed_files` counts the listed files plus the folders that could not be listed (each one entry, also
  counted in `rejected`), so listed_files = stored + duplicates + rejected."""
  fold = SplitStatsFn()
  domains = {}
  for d in DOMAINS:
    splits = {}
    for s in SPLITS:
      acc = split_accs.get((d, s), fold.create_accumulator())
      splits[s] = _split_summary(acc, num_shards(candidates.get((d, s), 0), config.records_per_shard))
    total = _split_summary(fold.merge_accumulators([split_accs.get((d, s), fold.create_accumulator())
                                                    for s in SPLITS]), 0)
    del total["num_shards"]
    by_reason = {}
    for row in rejected:
      if row["domain"] == d:
        by_reason[row["reason"]] = by_reason.get(row["reason"], 0) + 1
    listed = (sum(1 for f in files if f.domain == d) +
              sum(1 for r in rejected if r["domain"] == d and r["reason"] == "unlistable_folder"))
    domains[d] = {"roots": roots[d], "listed_files": listed, "ignored_junk": ignored[d],
                  "stored": total["count"], "duplicates": total["duplicates"],
                  "rejected": sum(by_reason.values()), "rejected_by_reason": dict(sorted(by_reason.items())),
                  "rejected_fraction": round(sum(by_reason.values()) / listed, 6) if listed else 0.0,
                  "total": total, "splits": splits}
  all_reasons = {}
  for row in rejected:
    all_reasons[row["reason"]] = all_reasons.get(row["reason"], 0) + 1
  return {"format_version": 1, "pixel_scale": PIXEL_SCALE,
          "config": {"load_size": config.load_size, "test_fraction": config.test_fraction,
                     "split_by": "cyclegan_layout" if config.dataset_dir else "sha256_of_source_bytes",
                     "max_pixels": config.max_pixels, "background": list(config.background),
                     "records_per_shard": config.records_per_shard,
                     "png_compress_level": config.png_compress_level, "upscale": False},
          "reason_messages": {r: image_io.REASONS[r] for r in sorted(all_reasons)},
          "rejected_by_reason": dict(sorted(all_reasons.items())),
          "domains": domains}


def format_summary(result) -> str:
  """A human-readable table of an ingest_lib.IngestResult: counts per domain and split, rejections by reason,
  time and throughput."""
  stats = result.stats
  lines = [f"{'domain':<8}{'split':<7}{'stored':>8}{'shards':>8}{'dups':>6}{'min HxW':>12}  mean RGB (0..255)"]
  for d in DOMAINS:
    for s in SPLITS:
      e = stats["domains"][d]["splits"][s]
      size = f"{e['min_height']}x{e['min_width']}" if e["count"] else "-"
      mean = " ".join(f"{v:6.1f}" for v in e["mean_rgb"])
      lines.append(f"{d:<8}{s:<7}{e['count']:>8}{e['num_shards']:>8}{e['duplicates']:>6}{size:>12}  {mean}")
  for d in DOMAINS:
    e = stats["domains"][d]
    lines.append(f"domain {d}: {e['listed_files']} files listed, {e['stored']} stored, {e['duplicates']} "
                 f"duplicates, {e['rejected']} rejected, {e['ignored_junk']} hidden/junk ignored")
  if stats["rejected_by_reason"]:
    lines.append("rejected by reason:")
    for reason, n in stats["rejected_by_reason"].items():
      lines.append(f"  {reason:<16}{n:>6}  {image_io.REASONS[reason]}")
  else:
    lines.append("rejected: none")
  lines.append(f"time {result.seconds:.1f} s, {result.images_per_second:.1f} images/s; details in "
               f"{printable_path(result.stats_path)} and {printable_path(result.rejected_path)}")
  return "\n".join(lines)
