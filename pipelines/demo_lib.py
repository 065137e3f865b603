"""The demo's library: run the pipeline, serve what it pushed, and translate test images over gRPC.

`run(DemoConfig) -> DemoResult`:
  1. runs the pipeline (`pipelines.runner.run_pipeline(create_pipeline(config.pipeline))`);
  2. starts the model server (`serving.process.ServerProcess`, `python -m serving.server`) on the serving
     root the push stage wrote, waits for the pushed version;
  3. sends `num_requests` test images of each domain (ingest's test split, else its train split, centre-cropped
     to the model's image size) through `serving.client.TranslationClient`, a2b and b2a (MUNIT: with a seed
     per image, so the styles are reproducible);
  4. writes each input and output as PNGs plus one overview grid per direction (`a2b.png`, `b2a.png`: labelled
     rows of inputs, translations and U-GAT-IT attention, upscaled nearest-neighbour so 32 px digits are
     visible) into `<output_dir>/translations/`;
  5. stops the server (also on error) and writes `<output_dir>/report.html`: the training curves (TensorBoard
     scalars: loss terms, in-training metrics), the evaluation's trained vs untrained metrics side by side, a
     plain verdict and the translation grids.
Before the pipeline, `untrained_baseline` exports the model the train stage starts from (same family, preset,
overrides, image size and seed; step 0) and the evaluate stage gets it as `baseline_model_dir`, so the model is
blessed (and pushed) only when it beats the untrained one on the baseline metric (KID by default).
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import html
import json
import os

import numpy as np

from components import image_io
from pipelines import pipeline_lib
from pipelines import runner


@dataclasses.dataclass(frozen=True)
class DemoConfig:
  """What the demo does.

  Attributes:
    pipeline: the pipeline to run (data folders, model, preset, roots).
    output_dir: receives translations/ (and, from the caller, usually the pipeline and serving roots too).
    enable_cache: reuse earlier executions with unchanged inputs (False: --nocache).
    num_requests: test images translated per direction.
    server_timeout: seconds to wait for the server to load the pushed version.
    compare_with_untrained: give evaluate the untrained model as its baseline (unless the pipeline already
      names a baseline_model_dir), so only a model that beats it is blessed and pushed.
    grid_scale: nearest-neighbour upscale factor of the translation grids.
  """
  pipeline: pipeline_lib.PipelineConfig
  output_dir: str
  enable_cache: bool = True
  num_requests: int = 4
  server_timeout: float = 120.0
  compare_with_untrained: bool = True
  grid_scale: int = 4


@dataclasses.dataclass(frozen=True)
class DemoResult:
  """Where everything is after the demo.

  Attributes:
    run: the pipeline run.
    model_name, version: the served model (None when nothing was pushed).
    translations_dir: the translated PNGs and the two overview grids (None when nothing was served).
    translated: paths of the written PNGs.
    report_path: the evaluation report (HTML), when evaluate wrote one.
    demo_report_path: the demo's report (training curves, trained vs untrained, verdict, translations).
  """
  run: runner.RunResult
  model_name: str | None
  version: int | None
  translations_dir: str | None
  translated: tuple[str, ...]
  report_path: str | None
  demo_report_path: str | None = None


def center_crop(image: np.ndarray, size: int) -> np.ndarray:
  """[H, W, 3] -> [min(H, size), min(W, size), 3], the centre window."""
  top, left = max(0, (image.shape[0] - size) // 2), max(0, (image.shape[1] - size) // 2)
  return image[top:top + size, left:left + size]


def held_out_images(data_dir: str, domain: str, count: int, size: int) -> np.ndarray:
  """The first `count` images of ingest's test split of `domain` ("a" or "b"; train split when there is no
  test split), centre-cropped to `size`, as uint8 [N, size, size, 3] (images smaller than size are skipped)."""
  from components import data as data_lib  # pylint: disable=import-outside-toplevel
  for split in ("test", "train"):
    try:
      records = data_lib.read_examples(data_dir, domain, split)
      images = []
      for record in records:
        image = center_crop(image_io.decode_image(record["image/encoded"]), size)
        if image.shape[:2] == (size, size):
          images.append(image)
        if len(images) == count:
          break
    except (ValueError, FileNotFoundError):
      continue
    if images:
      return np.stack(images)
  raise ValueError(f"no images of at least {size}x{size} in domain {domain!r} of {data_dir}")


DIRECTION_NAMES = {"a2b": ("domain A input", "A -> B translation"), "b2a": ("domain B input", "B -> A translation")}


def translation_grid(direction: str, rows: list[np.ndarray], scale: int = 4) -> np.ndarray:
  """uint8 picture of one direction: labelled rows (input, translation[, attention]) upscaled `scale` x."""
  from components import image_grid  # pylint: disable=import-outside-toplevel
  labels = list(DIRECTION_NAMES[direction]) + ["attention (CAM)"] * (len(rows) - 2)
  return image_grid.labeled_grid(rows, labels, scale=scale, label_width=110)


def translate_over_grpc(target: str, model_name: str, version: int, images: dict[str, np.ndarray],
                        output_dir: str, scale: int = 4) -> list[str]:
  """Sends `images` ({"a2b": uint8 [N, H, W, 3] of domain A, "b2a": ... of B}) to the server at `target`
  (model `model_name`, pinned `version`) and writes inputs, outputs and one grid per direction; returns paths."""
  from serving import signatures as contract  # pylint: disable=import-outside-toplevel
  from serving.client import TranslationClient  # pylint: disable=import-outside-toplevel
  from models import heatmap  # pylint: disable=import-outside-toplevel
  from models.api import to_wire_images  # pylint: disable=import-outside-toplevel
  os.makedirs(output_dir, exist_ok=True)
  written = []
  with TranslationClient(target, model_name, version=version) as client:
    signatures = client.metadata()["signatures"]
    for direction, inputs in images.items():
      seed = np.arange(len(inputs), dtype=np.int64) if contract.takes_seed(signatures[direction]["inputs"]) else None
      outputs = client.translate(inputs, direction, seed=seed)
      rows = [inputs, outputs["images"]]
      if contract.ATTENTION in outputs:
        rows.append(to_wire_images(heatmap.heatmap_to_rgb(outputs[contract.ATTENTION])).numpy())  # CAM colours
      for i in range(len(inputs)):
        base = os.path.join(output_dir, f"{direction}_{i:02d}")
        written.append(image_io.write_png(f"{base}_input.png", inputs[i]))
        written.append(image_io.write_png(f"{base}_output.png", outputs["images"][i]))
      grid = translation_grid(direction, rows, scale)
      written.append(image_io.write_png(os.path.join(output_dir, f"{direction}.png"), grid))
  return written


def run(config: DemoConfig, log=None) -> DemoResult:
  """Runs the pipeline, serves the pushed model, translates test images; see the module docstring."""
  from serving.process import ServerProcess, free_port  # pylint: disable=import-outside-toplevel
  log = log or (lambda line: print(line, flush=True))
  pipeline = config.pipeline
  if config.compare_with_untrained and not pipeline.model_dir and \
      "baseline_model_dir" not in pipeline.stage_options.get("evaluate", {}):
    baseline = untrained_baseline(pipeline, os.path.join(config.output_dir, "untrained"), log)
    options = {k: dict(v) for k, v in pipeline.stage_options.items()}
    options.setdefault("evaluate", {})["baseline_model_dir"] = baseline
    pipeline = dataclasses.replace(pipeline, stage_options=options)
  result = runner.run_pipeline(pipeline_lib.create_pipeline(pipeline), enable_cache=config.enable_cache,
                               log=log)
  report_path = report_file(result)
  push = result.report("push").outputs if result.ok else {}
  if not push.get("pushed"):
    demo_report = write_demo_report(config.output_dir, result, {}) if result.ok else None
    return DemoResult(result, None, None, None, (), report_path, demo_report)
  model_name, version = os.path.basename(os.path.dirname(push["path"])), int(push["version"])
  data_dir = result.report("ingest").outputs["output_dir"]
  size = _image_size(result)
  images = {"a2b": held_out_images(data_dir, "a", config.num_requests, size),
            "b2a": held_out_images(data_dir, "b", config.num_requests, size)}
  translations_dir = os.path.join(config.output_dir, "translations")
  port = free_port()
  log(f"demo: starting the model server on port {port} for {os.path.dirname(push['path'])}")
  with ServerProcess([f"--model_name={model_name}", f"--model_base_path={os.path.dirname(push['path'])}"],
                     port, startup_timeout=config.server_timeout) as server:
    from serving.client import TranslationClient  # pylint: disable=import-outside-toplevel
    with TranslationClient(server.target, model_name) as client:
      client.wait_until_available(config.server_timeout)
    log(f"demo: translating {config.num_requests} test images each way over gRPC ({server.target})")
    translated = translate_over_grpc(server.target, model_name, version, images, translations_dir,
                                     config.grid_scale)
  grids = {d: os.path.join(translations_dir, f"{d}.png") for d in images}
  demo_report = write_demo_report(config.output_dir, result, grids)
  return DemoResult(result, model_name, version, translations_dir, tuple(translated), report_path, demo_report)


def _image_size(result: runner.RunResult) -> int:
  """The trained model's image size, from the model card the export stage wrote."""
  from serving import config as serving_config  # pylint: disable=import-outside-toplevel
  return int(serving_config.read_model_card(result.report("export").outputs["path"])["image_size"])


def report_file(result: runner.RunResult) -> str | None:
  """The evaluation report path of a run, when the evaluate stage produced one."""
  try:
    outputs = result.report("evaluate").outputs
  except KeyError:
    return None
  for key in ("report_path", "html_path", "report"):
    if isinstance(outputs.get(key), str):
      return outputs[key]
  return None


def untrained_model_overrides(pipeline: pipeline_lib.PipelineConfig) -> dict:
  """The model overrides the train stage will use (the pipeline's, its image size, train stage options')."""
  overrides = dict(pipeline.model_overrides)
  if pipeline.image_size is not None:
    overrides.setdefault("image_size", pipeline.image_size)
  overrides.update(pipeline.stage_options.get("train", {}).get("model_overrides", {}) or {})
  return overrides


def untrained_baseline(pipeline: pipeline_lib.PipelineConfig, output_root: str, log=print) -> str:
  """Exports the model the train stage starts from (step 0) and returns its SavedModel directory.

  Same family, preset, model overrides and seed as the train stage, so it is exactly the untrained network of
  the run: a model_dir with config.json and a step-0 checkpoint under `output_root/<hash>/model`, exported by
  components.export_lib.run to `output_root/<hash>/saved_model`. Reused when it already exists (the hash
  covers every setting that shapes the model).
  """
  import keras  # pylint: disable=import-outside-toplevel
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  import models  # pylint: disable=import-outside-toplevel
  from components import export_lib, train_lib, trainer  # pylint: disable=import-outside-toplevel
  from components import model_dir as model_dir_lib  # pylint: disable=import-outside-toplevel
  family = models.get_family(pipeline.family)
  overrides = untrained_model_overrides(pipeline)
  seed = int(pipeline.stage_options.get("train", {}).get("seed", 0) or 0)
  model_config = train_lib.build_model_config(family, pipeline.preset, overrides)
  key = json.dumps({"family": family.name, "preset": pipeline.preset, "model": model_config.to_dict(), "seed": seed},
                   sort_keys=True, default=str)
  root = os.path.join(output_root, hashlib.sha256(key.encode()).hexdigest()[:16])
  saved_model = os.path.join(root, "saved_model")
  if os.path.exists(os.path.join(saved_model, "saved_model.pb")):
    return saved_model
  log(f"demo: exporting the untrained {family.name}/{pipeline.preset} model (step 0, seed {seed}) as the "
      f"evaluation baseline: {saved_model}")
  model_dir = os.path.join(root, "model")
  keras.utils.set_random_seed(seed)
  model = family.build_model(model_config)
  step = tf.Variable(0, dtype=tf.int64, trainable=False, name="step")
  manager = tf.train.CheckpointManager(model_dir_lib.model_checkpoint(model, step=step),
                                       os.path.join(model_dir, model_dir_lib.CHECKPOINT_DIR), max_to_keep=1)
  manager.save(checkpoint_number=0)
  train = train_lib.TrainConfig(family=family.name, data_dir="", model_dir=model_dir, preset=pipeline.preset,
                                model_overrides=overrides, steps=0, seed=seed)
  trainer.write_json(os.path.join(model_dir, model_dir_lib.CONFIG_FILE),
                     {"family": family.name, "preset": pipeline.preset, "model": model_config.to_dict(),
                      "train": train.to_dict(), "untrained": True})
  export_lib.run(export_lib.ExportConfig(model_dir=model_dir, output_dir=saved_model, model_name="untrained",
                                         verify=False, checkpoint="latest"))
  return saved_model


def read_scalars(log_dir: str) -> dict[str, list[tuple[int, float]]]:
  """TensorBoard scalars of a train stage's `logs/` folder: tag -> [(step, value)] sorted by step."""
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  series: dict[str, dict[int, float]] = {}
  for path in sorted(tf.io.gfile.glob(os.path.join(log_dir, "events.out.tfevents.*"))):
    for record in tf.data.TFRecordDataset(path):
      event = tf.compat.v1.Event.FromString(record.numpy())
      for value in event.summary.value:
        if value.HasField("simple_value"):
          number = float(value.simple_value)
        elif value.HasField("tensor") and not value.tensor.tensor_shape.dim:
          number = float(tf.make_ndarray(value.tensor))
        else:
          continue
        series.setdefault(value.tag, {})[int(event.step)] = number
  return {tag: sorted(points.items()) for tag, points in series.items()}


PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf")


def svg_plot(series: dict[str, list[tuple[int, float]]], title: str, width: int = 420, height: int = 220) -> str:
  """A small SVG line chart of several (step, value) series with a legend; values are min-max scaled together."""
  points = [p for values in series.values() for p in values]
  if not points:
    return ""
  x0, x1 = min(p[0] for p in points), max(p[0] for p in points)
  y0, y1 = min(p[1] for p in points), max(p[1] for p in points)
  x1, y1 = (x1 if x1 > x0 else x0 + 1), (y1 if y1 > y0 else y0 + 1e-9)
  left, right, top, bottom = 50, 10, 20, 30
  def sx(x):
    return left + (x - x0) / (x1 - x0) * (width - left - right)
  def sy(y):
    return top + (1 - (y - y0) / (y1 - y0)) * (height - top - bottom)
  parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height + 14 * len(series)}" '
           f'style="font: 11px sans-serif; background: #fff">',
           f'<text x="{left}" y="13">{html.escape(title)}</text>',
           f'<rect x="{left}" y="{top}" width="{width - left - right}" height="{height - top - bottom}" '
           'fill="none" stroke="#999"/>',
           f'<text x="2" y="{top + 8}">{y1:.4g}</text><text x="2" y="{height - bottom}">{y0:.4g}</text>',
           f'<text x="{left}" y="{height - bottom + 14}">step {x0}</text>',
           f'<text x="{width - right - 70}" y="{height - bottom + 14}">step {x1}</text>']
  for i, (name, values) in enumerate(series.items()):
    colour = PALETTE[i % len(PALETTE)]
    path = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in values)
    parts.append(f'<polyline fill="none" stroke="{colour}" stroke-width="1.5" points="{path}"/>')
    if len(values) == 1:
      parts.append(f'<circle cx="{sx(values[0][0]):.1f}" cy="{sy(values[0][1]):.1f}" r="3" fill="{colour}"/>')
    parts.append(f'<text x="{left}" y="{height + 14 * i + 4}" fill="{colour}">{html.escape(name)} '
                 f'(last {values[-1][1]:.4g})</text>')
  parts.append("</svg>")
  return "".join(parts)


def curve_groups(scalars: dict[str, list[tuple[int, float]]]) -> list[tuple[str, dict]]:
  """Plots to draw: discriminator losses, generator losses (the total apart: its scale dwarfs the terms), the
  in-training metrics one per plot, the learning rates."""
  losses = {k[len("loss/"):]: v for k, v in scalars.items() if k.startswith("loss/")}
  # models.api's loss-key scheme: d/<term>, g/<term>, d/total and g/total the optimised sums (U-GAT-IT's
  # per-domain g/total_a, g/total_b are in neither plot).
  dis = {k: v for k, v in losses.items() if k.startswith("d/")}
  totals = {k: v for k, v in losses.items() if k == "g/total"}
  gen = {k: v for k, v in losses.items() if k.startswith("g/") and not k.startswith("g/total")}
  groups = [("discriminator loss terms", dis), ("generator loss terms", gen), ("generator total loss", totals)]
  groups += [(f"in-training {k[len('eval/'):]}", {k[len("eval/"):]: v}) for k, v in sorted(scalars.items())
             if k.startswith("eval/")]
  groups.append(("learning rate", {k: v for k, v in scalars.items() if k.startswith("lr/")}))
  return [(title, series) for title, series in groups if series]


def verdict(metrics: dict) -> str:
  """One plain sentence from evaluate's metrics.json: did the trained model beat the untrained one?"""
  if not metrics:
    return "The pipeline did not produce an evaluation."
  baseline = metrics.get("baseline", {}) or {}
  name = (metrics.get("thresholds") or {}).get("baseline_metric", "kid")
  trained, untrained = metrics.get("metrics", {}).get(name), (baseline.get("metrics") or {}).get(name)
  blessed = metrics.get("blessed")
  if untrained is None or trained is None:
    return (f"{'Blessed' if blessed else 'Not blessed'} ({metrics.get('reason', '')}); no untrained baseline was "
            "measured.")
  lower = name != "cycle_psnr"
  better = trained < untrained if lower else trained > untrained
  return (f"The trained model is {'BETTER' if better else 'NOT better'} than the untrained one on {name} "
          f"({trained:.4g} vs {untrained:.4g}, {'lower' if lower else 'higher'} is better), so it was "
          f"{'blessed and pushed' if blessed else 'NOT blessed and not pushed'}.")


def _img(path: str) -> str:
  with open(path, "rb") as f:
    data = base64.b64encode(f.read()).decode()
  return f'<img src="data:image/png;base64,{data}" style="image-rendering: pixelated">'


def write_demo_report(output_dir: str, result: runner.RunResult, grids: dict[str, str]) -> str:
  """Writes <output_dir>/report.html (curves, trained vs untrained metrics, verdict, translations); returns it."""
  metrics: dict = {}
  try:
    metrics_path = result.report("evaluate").outputs.get("metrics_path")
    if metrics_path and os.path.exists(metrics_path):
      with open(metrics_path, encoding="utf-8") as f:
        metrics = json.load(f)
  except KeyError:
    pass
  scalars = {}
  try:
    model_dir = result.report("train").outputs.get("model_dir")
    if model_dir:
      scalars = read_scalars(os.path.join(model_dir, "logs"))
  except KeyError:
    pass
  body = [f"<h1>Demo: {html.escape(str(metrics.get('family', 'model')))}, training step "
          f"{metrics.get('training_step', '?')}</h1>", f"<p><b>{html.escape(verdict(metrics))}</b></p>"]
  values, base = metrics.get("metrics", {}), ((metrics.get("baseline") or {}).get("metrics") or {})
  if values:
    body.append("<h2>Trained vs untrained (evaluate stage, test images)</h2><table border=1 cellpadding=4>"
                "<tr><th>metric</th><th>untrained (step 0)</th><th>trained</th></tr>")
    for name, value in values.items():
      if isinstance(value, (int, float)):
        other = base.get(name)
        body.append(f"<tr><td>{html.escape(name)}</td><td>{'' if other is None else f'{other:.4g}'}</td>"
                    f"<td>{value:.4g}</td></tr>")
    body.append("</table><p>" + " ".join(html.escape(n) for n in metrics.get("notes", [])) + "</p>")
  if grids:
    body.append("<h2>Translations (served over gRPC, upscaled nearest-neighbour)</h2>")
    body += [f"<h3>{d}</h3>{_img(p)}" for d, p in grids.items() if os.path.exists(p)]
  groups = curve_groups(scalars)
  if groups:
    body.append("<h2>Training curves (TensorBoard scalars of the train stage)</h2>")
    body += [svg_plot(series, title) for title, series in groups]
  page = ("<!doctype html><html><head><meta charset='utf-8'><title>Demo report</title></head>"
          "<body style='font-family: sans-serif'>" + "\n".join(body) + "</body></html>")
  path = os.path.join(output_dir, "report.html")
  os.makedirs(output_dir, exist_ok=True)
  with open(path, "w", encoding="utf-8") as f:
    f.write(page)
  return path
