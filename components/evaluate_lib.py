"""Evaluate: translate the test split both ways, measure, render, and bless (or not) like TFX's Evaluator.

Measured per direction d in {a2b, b2a} (source domain s, target domain t), on the test split (center crops of
config.image_size, at most `num_images` per domain):
  * kid_d (+ kid_std_d), fid_d: translations s->t against the real test images of t, on deep features
    (components.metrics: InceptionV3 pool3 when its weights are on disk, else the offline HED VGG16 features,
    whose numbers are NOT comparable with published ones; metrics.json says which);
  * cycle_l1_d (model units, [-1, 1] scale) and cycle_psnr_d (dB) between the inputs and their round trip
    s->t->s; for MUNIT the way back uses the input's own style (the `*_reference` signature with the input as
    reference: x_aba = G_a(c(x_ab), s(x_a)), the paper's cycle), for UNIT/U-GAT-IT the plain reverse direction;
  * MUNIT only: diversity_l1_d (mean pairwise L1 in model units) and diversity_lpips_d (uncalibrated LPIPS on the
    HED VGG16 features, see components.metrics) over `num_styles` outputs per input for random styles.
Averages over both directions: kid, fid, cycle_l1, cycle_psnr (and diversity_* for MUNIT).

Everything goes through the serving path (components.measurement): the candidate is wrapped in
components.translator.TranslatorModule (the object export saves) and a baseline SavedModel is called through its
a2b/b2a signatures, so candidate and baseline are measured by the same code on the same uint8 test images. MUNIT
styles come from fixed seeds.

Blessing (BLESSED / NOT_BLESSED with the reason, read by components.push): every given threshold holds
(max_kid, max_fid, max_cycle_l1, min_psnr, applied to the two-direction averages) and, when a baseline is
given, the candidate is not worse than the baseline on `baseline_metric` by more than `baseline_margin`
(absolute, in the metric's unit). `baseline_model_dir` is a SavedModel directory or a model root of integer
versions (TF Serving layout: the highest version is used); a model root that does not exist yet or holds no
version means "no baseline yet" (the first push), which is written into the reason.
Outputs: metrics.json, report.html, grid_<d>.png (rows stacked) and rows/<d>_<row>.png (one per labelled row).
"""

from __future__ import annotations

import dataclasses
import json
import os

import numpy as np
from PIL import Image

from components import image_grid, metrics, report
from components import model_dir as model_dir_lib
from components.blessing import write_blessing
from components.errors import StageError
# What is measured and how lives in components.measurement (shared with in-training evaluation).
from components.measurement import Signatures, compute_metrics, load_test_images, translate_both_ways
from models import heatmap as cam_colours
from models.api import DOMAINS, to_wire_images

LOWER_IS_BETTER = ("kid", "fid", "cycle_l1")
HIGHER_IS_BETTER = ("cycle_psnr",)


@dataclasses.dataclass(frozen=True)
class EvaluateConfig:
  """Parameters of the evaluation stage.

  Attributes:
    model_dir: components.train's model_dir.
    data_dir: components.ingest's output_dir (its test split is used).
    output_dir: where metrics.json, report.html, the grids and BLESSED / NOT_BLESSED go.
    num_images: at most this many test images per domain (None: all).
    batch_size: images per forward pass.
    feature_extractor: "auto" (InceptionV3 if its weights file exists, else HED), "inception" or "hed".
    inception_weights: InceptionV3 no-top .h5 path (default ~/.keras/models/<keras' file name>).
    kid_subsets, kid_subset_size: KID subsets (Binkowski et al.: 100 of 1000; capped at the set size).
    num_styles: MUNIT styles per input for the diversity metrics and the style rows (>= 2).
    grid_images: columns of the sample grids.
    max_kid, max_fid, max_cycle_l1, min_psnr: blessing thresholds on the two-direction averages (None: unused).
    baseline_model_dir: SavedModel or TF Serving model root to compare with (None: no comparison).
    baseline_metric: one of kid, fid, cycle_l1, cycle_psnr.
    baseline_margin: how much worse than the baseline the candidate may be (absolute, metric units).
    seed: KID subset seed and MUNIT style seed offset.
    checkpoint: which checkpoint of model_dir: "best" (kept by in-training evaluation), "latest", or "auto"
      (best when present, else latest); recorded in metrics.json and the result (the lineage).
  """

  model_dir: str
  data_dir: str
  output_dir: str
  num_images: int | None = None
  batch_size: int = 8
  feature_extractor: str = dataclasses.field(default="auto", metadata={"choices": metrics.FEATURE_EXTRACTORS})
  inception_weights: str | None = None
  kid_subsets: int = 100
  kid_subset_size: int = 1000
  num_styles: int = 4
  grid_images: int = 4
  max_kid: float | None = None
  max_fid: float | None = None
  max_cycle_l1: float | None = None
  min_psnr: float | None = None
  baseline_model_dir: str | None = None
  baseline_metric: str = dataclasses.field(default="kid", metadata={"choices": LOWER_IS_BETTER + HIGHER_IS_BETTER})
  baseline_margin: float = 0.0
  seed: int = 0
  checkpoint: str = "auto"

  def __post_init__(self):
    model_dir_lib.check_checkpoint_choice(self.checkpoint)
    if self.feature_extractor not in metrics.FEATURE_EXTRACTORS:
      raise StageError(f"--feature_extractor must be one of {metrics.FEATURE_EXTRACTORS}, got "
                       f"{self.feature_extractor!r}")
    if self.baseline_metric not in LOWER_IS_BETTER + HIGHER_IS_BETTER:
      raise StageError(f"--baseline_metric must be one of {LOWER_IS_BETTER + HIGHER_IS_BETTER}, got "
                       f"{self.baseline_metric!r}")
    if self.num_styles < 2:
      raise StageError(f"--num_styles must be >= 2 (diversity compares outputs pairwise), got {self.num_styles}")
    if self.num_images is not None and self.num_images < 2:
      raise StageError(f"--num_images must be >= 2 (KID/FID need two images per set), got {self.num_images}")
    if self.batch_size < 1 or self.grid_images < 1 or self.kid_subsets < 1 or self.kid_subset_size < 2:
      raise StageError("--batch_size, --grid_images, --kid_subsets must be >= 1 and --kid_subset_size >= 2")


@dataclasses.dataclass(frozen=True)
class EvaluateResult:
  """`metrics` (name -> number), the verdict (`blessed`, `reason`), the written files and `checkpoint`: which
  checkpoint was measured (model_dir.TrainedModel.describe(): checkpoint best/latest, path, step, weights)."""

  output_dir: str
  metrics: dict
  blessed: bool
  reason: str
  metrics_path: str
  report_path: str
  baseline_metrics: dict | None = None
  checkpoint: dict | None = None


def resolve_baseline(path: str | None) -> tuple[str | None, str]:
  """(SavedModel dir or None, explanation) for `baseline_model_dir` (a SavedModel or a versioned model root)."""
  if not path:
    return None, "no baseline given"
  if os.path.isfile(os.path.join(path, "saved_model.pb")):
    return path, f"baseline {path}"
  versions = sorted(int(n) for n in os.listdir(path) if n.isdigit()) if os.path.isdir(path) else []
  versions = [v for v in versions if os.path.isfile(os.path.join(path, str(v), "saved_model.pb"))]
  if not versions:
    return None, f"no baseline yet: {path} holds no pushed version (first push)"
  latest = os.path.join(path, str(versions[-1]))
  return latest, f"baseline {latest} (latest of {len(versions)} version(s))"


def bless(values: dict, config: EvaluateConfig, baseline_values: dict | None, baseline_note: str) -> tuple:
  """(blessed, reason): thresholds on the averages, every metric finite, then no-worse-than-baseline on
  `baseline_metric`."""
  failures, passed = [], []
  for name, limit, worse in (("kid", config.max_kid, np.greater), ("fid", config.max_fid, np.greater),
                             ("cycle_l1", config.max_cycle_l1, np.greater),
                             ("cycle_psnr", config.min_psnr, np.less)):
    if limit is None:
      continue
    bound = "max" if worse is np.greater else "min"
    text = f"{name} {values[name]:.6g} vs {bound} {limit:.6g}"
    (failures if worse(values[name], limit) or not np.isfinite(values[name]) else passed).append(text)
  # A metric that is NaN or infinite says the model (or its measurement) is broken: never bless it, whatever
  # the thresholds and the baseline say (NaN compares False with everything, so it would pass them).
  not_finite = sorted(name for name, value in values.items() if not np.isfinite(value))
  if not_finite:
    failures.append("not finite: " + ", ".join(f"{name} {values[name]}" for name in not_finite))
  if baseline_values is not None:
    name, margin = config.baseline_metric, config.baseline_margin
    candidate, base = values[name], baseline_values[name]
    worse = candidate > base + margin if name in LOWER_IS_BETTER else candidate < base - margin
    text = (f"{name} {candidate:.6g} vs {baseline_note}: {base:.6g} "
            f"({'lower' if name in LOWER_IS_BETTER else 'higher'} is better, margin {margin:.6g})")
    (failures if worse else passed).append(text)
  else:
    passed.append(baseline_note)
  if failures:
    return False, "; ".join(failures)
  return True, "; ".join(passed) if passed else "no thresholds or baseline given"


def heatmap_to_rgb(heatmap: np.ndarray) -> np.ndarray:
  """[N, H, W] in [0, 1] -> uint8 [N, H, W, 3] in the CAM colour map (models.heatmap: blue = 0, red = 1)."""
  return to_wire_images(cam_colours.heatmap_to_rgb(heatmap)).numpy()


def _rows(out: dict, columns: int) -> list:
  """Labelled uint8 [columns, H, W, 3] rows of one direction's sample grid."""
  rows = [("input", out["source"]), ("translation", out["translated"]), ("cycle reconstruction", out["cycled"])]
  if "attention" in out:
    rows.append(("attention (CAM heatmap)", heatmap_to_rgb(out["attention"])))
  for k, styled in enumerate(out.get("styles", [])[1:], start=2):
    rows.append((f"random style {k}", styled))
  return [(label, images[:columns]) for label, images in rows]


def write_grids(outputs: dict, output_dir: str, columns: int) -> list:
  """Writes grid_<d>.png and rows/<d>_<i>.png; returns report sections [(heading, [(label, relative path)])]."""
  sections = []
  os.makedirs(os.path.join(output_dir, "rows"), exist_ok=True)
  for direction, out in outputs.items():
    rows = _rows(out, columns)
    strips = [image_grid.tile_rows([images], pad=0) for _, images in rows]
    Image.fromarray(image_grid.tile_rows([images for _, images in rows], pad=0)).save(
        os.path.join(output_dir, f"grid_{direction}.png"))
    entries = []
    for i, ((label, _), strip) in enumerate(zip(rows, strips)):
      relative = os.path.join("rows", f"{direction}_{i:02d}.png")
      Image.fromarray(strip).save(os.path.join(output_dir, relative))
      entries.append((label, relative))
    sections.append((f"{direction} ({direction[0]} -> {direction[-1]})", entries))
  return sections


def run(config: EvaluateConfig) -> EvaluateResult:
  """Evaluates `config.model_dir` on the test split; writes metrics, grids, report and the blessing."""
  loaded = model_dir_lib.load_model_dir(config.model_dir, config.checkpoint)
  family, model_config, model, step = loaded.family, loaded.config, loaded.model, loaded.step
  size = int(model_config.image_size)
  images = {d: load_test_images(config.data_dir, d, size, config.num_images, family.transform) for d in DOMAINS}
  extractor = metrics.build_feature_extractor(config.feature_extractor, config.inception_weights)
  candidate = Signatures.of_model(model, family)
  lpips_net = None
  if candidate.multimodal:
    lpips_net = extractor if isinstance(extractor, metrics.HedVgg16Features) else metrics.HedVgg16Features()
  outputs = translate_both_ways(candidate, images, config, config.num_styles if candidate.multimodal else 1)
  values = compute_metrics(outputs, images, extractor, config, lpips_net)

  baseline_path, baseline_note = resolve_baseline(config.baseline_model_dir)
  baseline_values = None
  if baseline_path:
    baseline_values = compute_metrics(translate_both_ways(Signatures.of_saved_model(baseline_path), images, config),
                                      images, extractor, config)
  blessed, reason = bless(values, config, baseline_values, baseline_note)

  os.makedirs(config.output_dir, exist_ok=True)
  notes = [f"{family.name} ({model_config.__class__.__name__}), training step {step} ({loaded.checkpoint} "
           f"checkpoint, {'generator EMA' if loaded.weights == 'ema' else 'trained'} weights), {len(images['a'])} + "
           f"{len(images['b'])} test images of {size}x{size}.",
           f"KID/FID features: {extractor.name}; "
           + ("comparable with published numbers (InceptionV3)." if extractor.comparable_with_papers else
              "NOT comparable with published numbers (offline HED VGG16 features, no InceptionV3 weights)."),
           "cycle_l1 in model units ([-1, 1] images); cycle_psnr in dB on uint8 images."]
  if candidate.multimodal:
    notes.append(f"MUNIT diversity over {config.num_styles} random styles per input: mean pairwise L1 (model "
                 "units) and uncalibrated LPIPS on HED VGG16 features (not comparable with the paper's LPIPS).")
  summary = {
      "family": family.name, "training_step": step, "model_dir": os.path.abspath(config.model_dir),
      "checkpoint": loaded.describe(),
      "num_images": {d: int(len(v)) for d, v in images.items()}, "image_size": size,
      "feature_extractor": extractor.name, "comparable_with_papers": extractor.comparable_with_papers,
      "metrics": values, "baseline": {"path": baseline_path, "note": baseline_note, "metrics": baseline_values},
      "thresholds": {"max_kid": config.max_kid, "max_fid": config.max_fid, "max_cycle_l1": config.max_cycle_l1,
                     "min_psnr": config.min_psnr, "baseline_metric": config.baseline_metric,
                     "baseline_margin": config.baseline_margin},
      "blessed": blessed, "reason": reason, "notes": notes,
  }
  metrics_path = os.path.join(config.output_dir, "metrics.json")
  with open(metrics_path, "w", encoding="utf-8") as f:
    json.dump(summary, f, indent=2)
  sections = write_grids(outputs, config.output_dir, config.grid_images)
  report_path = report.write_report(
      os.path.join(config.output_dir, "report.html"), title=f"Evaluation of {family.name} step {step}",
      blessed=blessed, reason=reason, metrics=values, baseline=baseline_values, notes=notes, sections=sections)
  write_blessing(config.output_dir, blessed, reason)
  return EvaluateResult(output_dir=config.output_dir, metrics=values, blessed=blessed, reason=reason,
                        metrics_path=metrics_path, report_path=report_path, baseline_metrics=baseline_values,
                        checkpoint=loaded.describe())
