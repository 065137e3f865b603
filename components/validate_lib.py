"""Validate: checks ingest's stats.json against what training needs; writes anomalies.json either way.

`run(ValidateConfig) -> ValidateResult`. Checks, per domain (a and b):
  empty_domain         (error)   no image was stored;
  too_few_images       (error)   fewer than `min_images` images in the train split;
  images_too_small     (error)   a stored image (any split) has height or width < `image_size`, the training crop
                                 (ingest never upscales, so small sources stay small);
  too_many_rejected    (error)   rejected / listed files > `max_reject_fraction`;
  empty_test_split     (warning) no test images (evaluation will have nothing to translate).
When any error is found, anomalies.json is written first and then StageError is raised with every error and
what to do about it.

anomalies.json: {"ok": bool, "stats_path": str, "thresholds": {...},
                 "anomalies": [{"domain", "check", "severity", "message", "value", "threshold"}, ...]}
"""

from __future__ import annotations

import dataclasses
import json
import os

from components.errors import StageError

# models.api.DOMAINS, repeated so that this TensorFlow-free stage need not import models/ (which imports
# TensorFlow); tests/test_architecture.py checks that the copies agree.
DOMAINS = ("a", "b")


@dataclasses.dataclass(frozen=True)
class ValidateConfig:
  """Parameters of one validation.

  Attributes:
    data_dir: ingest's output_dir (holds stats.json).
    output_dir: where anomalies.json is written (None -> data_dir).
    image_size: the training crop size; every stored image must be at least this tall and wide.
    min_images: fewest train images accepted per domain.
    max_reject_fraction: largest accepted share of rejected input files per domain, in [0, 1].
  """
  data_dir: str
  output_dir: str | None = None
  image_size: int = 256
  min_images: int = 1
  max_reject_fraction: float = 0.1


@dataclasses.dataclass(frozen=True)
class ValidateResult:
  """Outcome: ok (no error), the anomalies found (errors and warnings) and where they were written."""
  ok: bool
  anomalies: tuple[dict, ...]
  anomalies_path: str


def _anomaly(domain: str, check: str, severity: str, message: str, value, threshold) -> dict:
  return {"domain": domain, "check": check, "severity": severity, "message": message, "value": value,
          "threshold": threshold}


def check_stats(stats: dict, config: ValidateConfig) -> list[dict]:
  """Returns the anomalies of an ingest stats.json dict (see the module docstring); pure, no I/O."""
  anomalies = []
  load_size = stats.get("config", {}).get("load_size")
  for d in DOMAINS:
    entry = stats["domains"][d]
    roots = ", ".join(entry.get("roots", [])) or "?"
    train = entry["splits"]["train"]["count"]
    if entry["stored"] == 0:
      anomalies.append(_anomaly(
          d, "empty_domain", "error",
          f"domain {d} has no usable image: {entry['listed_files']} files found under {roots}, "
          f"{entry['rejected']} rejected (see rejected.jsonl). Put images (PNG/JPEG/...) in that folder and "
          f"re-run ingest.", entry["stored"], 1))
      continue
    if train < config.min_images:
      anomalies.append(_anomaly(
          d, "too_few_images", "error",
          f"domain {d} has {train} train images, fewer than --min_images={config.min_images}. Add images to "
          f"{roots} (or lower --min_images, or --test_fraction at ingest) and re-run ingest.",
          train, config.min_images))
    sizes = [(entry["splits"][s]["min_height"], entry["splits"][s]["min_width"])
             for s in entry["splits"] if entry["splits"][s]["count"]]
    min_h, min_w = min(h for h, _ in sizes), min(w for _, w in sizes)
    if min(min_h, min_w) < config.image_size:
      if load_size is not None and load_size < config.image_size:
        fix = (f"ingest stored them at --load_size={load_size}: re-run ingest with --load_size >= "
               f"{config.image_size}, or train with --image_size <= {load_size}")
      else:
        fix = (f"ingest never upscales: remove source images whose shorter side is below {config.image_size} "
               f"from {roots}, or train with a smaller --image_size")
      anomalies.append(_anomaly(
          d, "images_too_small", "error",
          f"domain {d} has stored images as small as {min_h} high / {min_w} wide, below the training crop "
          f"--image_size={config.image_size}; {fix}.",
          [min_h, min_w], config.image_size))
    fraction = entry["rejected"] / entry["listed_files"] if entry["listed_files"] else 0.0
    if fraction > config.max_reject_fraction:
      reasons = ", ".join(f"{n} {r}" for r, n in entry["rejected_by_reason"].items())
      anomalies.append(_anomaly(
          d, "too_many_rejected", "error",
          f"domain {d}: {entry['rejected']} of {entry['listed_files']} files ({fraction:.1%}) were rejected "
          f"({reasons}), more than --max_reject_fraction={config.max_reject_fraction}. Fix or remove them "
          f"(each is listed with its reason in rejected.jsonl), or raise --max_reject_fraction.",
          round(fraction, 6), config.max_reject_fraction))
    if entry["splits"]["test"]["count"] == 0:
      anomalies.append(_anomaly(
          d, "empty_test_split", "warning",
          f"domain {d} has no test images: evaluation will have nothing to translate. Raise --test_fraction "
          f"at ingest or add a test{d.upper()}/ folder.", 0, 1))
  return anomalies


def run(config: ValidateConfig) -> ValidateResult:
  """Validates `<data_dir>/stats.json`, writes anomalies.json, raises StageError if any check failed."""
  if config.image_size < 1 or config.min_images < 0 or not 0.0 <= config.max_reject_fraction <= 1.0:
    raise StageError(f"bad thresholds: need --image_size >= 1 (got {config.image_size}), --min_images >= 0 "
                     f"(got {config.min_images}), --max_reject_fraction in [0, 1] "
                     f"(got {config.max_reject_fraction})")
  stats_path = os.path.join(config.data_dir, "stats.json")
  try:
    with open(stats_path, encoding="utf-8") as f:
      stats = json.load(f)
    anomalies = check_stats(stats, config)
  except FileNotFoundError:
    raise StageError(f"{stats_path} does not exist: run `python -m components.ingest "
                     f"--output_dir={config.data_dir} ...` first, or point --data_dir at its output") from None
  except (json.JSONDecodeError, KeyError, TypeError, ValueError) as e:
    raise StageError(f"{stats_path} is not an ingest stats file ({type(e).__name__}: {e}); re-run "
                     f"components.ingest into {config.data_dir}") from None
  errors = [a for a in anomalies if a["severity"] == "error"]
  output_dir = config.output_dir or config.data_dir
  os.makedirs(output_dir, exist_ok=True)
  anomalies_path = os.path.join(output_dir, "anomalies.json")
  report = {"ok": not errors, "stats_path": stats_path,
            "thresholds": {"image_size": config.image_size, "min_images": config.min_images,
                           "max_reject_fraction": config.max_reject_fraction},
            "anomalies": anomalies}
  with open(anomalies_path, "w", encoding="utf-8") as f:
    json.dump(report, f, indent=2, sort_keys=True)
    f.write("\n")
  if errors:
    raise StageError("data validation failed:\n" + "\n".join(f"  - {a['message']}" for a in errors)
                     + f"\n(details in {anomalies_path})")
  return ValidateResult(ok=True, anomalies=tuple(anomalies), anomalies_path=anomalies_path)
