"""The demo's library: run the pipeline, serve what it pushed, and translate test images over gRPC.

`run(DemoConfig) -> DemoResult`:
  1. runs the pipeline (`pipelines.runner.run_pipeline(create_pipeline(config.pipeline))`);
  2. starts the model server (`serving.process.ServerProcess`, `python -m serving.server`) on the serving
     root the push stage wrote, waits for the pushed version;
  3. sends `num_requests` test images of each domain (ingest's test split, else its train split, centre-cropped
     to the model's image size) through `serving.client.TranslationClient`, a2b and b2a (MUNIT: with a seed
     per image, so the styles are reproducible);
  4. writes each input and output as PNGs plus one overview grid per direction (`a2b.png`, `b2a.png`: row 1
     inputs, row 2 translations, row 3 U-GAT-IT attention when present) into `<output_dir>/translations/`;
  5. stops the server (also on error) and returns where everything is.
"""

from __future__ import annotations

import dataclasses
import io
import os

import numpy as np
from PIL import Image

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
  """
  pipeline: pipeline_lib.PipelineConfig
  output_dir: str
  enable_cache: bool = True
  num_requests: int = 4
  server_timeout: float = 120.0


@dataclasses.dataclass(frozen=True)
class DemoResult:
  """Where everything is after the demo.

  Attributes:
    run: the pipeline run.
    model_name, version: the served model (None when nothing was pushed).
    translations_dir: the translated PNGs and the two overview grids (None when nothing was served).
    translated: paths of the written PNGs.
    report_path: the evaluation report (HTML), when evaluate wrote one.
  """
  run: runner.RunResult
  model_name: str | None
  version: int | None
  translations_dir: str | None
  translated: tuple[str, ...]
  report_path: str | None


def _decode(png: bytes) -> np.ndarray:
  with Image.open(io.BytesIO(png)) as image:
    return np.asarray(image.convert("RGB"), dtype=np.uint8)


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
        image = center_crop(_decode(record["image/encoded"]), size)
        if image.shape[:2] == (size, size):
          images.append(image)
        if len(images) == count:
          break
    except (ValueError, FileNotFoundError):
      continue
    if images:
      return np.stack(images)
  raise ValueError(f"no images of at least {size}x{size} in domain {domain!r} of {data_dir}")


def _grid(rows: list[np.ndarray], pad: int = 2) -> np.ndarray:
  """rows of uint8 [N, H, W, 3] -> one uint8 image with the rows stacked and the N images side by side."""
  n, h, w, _ = rows[0].shape
  grid = np.full((len(rows) * (h + pad) + pad, n * (w + pad) + pad, 3), 255, np.uint8)
  for r, row in enumerate(rows):
    for i in range(n):
      y, x = pad + r * (h + pad), pad + i * (w + pad)
      grid[y:y + h, x:x + w] = row[i]
  return grid


def _save(path: str, image: np.ndarray) -> str:
  Image.fromarray(image).save(path, format="PNG")
  return path


def translate_over_grpc(target: str, model_name: str, version: int, images: dict[str, np.ndarray],
                        output_dir: str) -> list[str]:
  """Sends `images` ({"a2b": uint8 [N, H, W, 3] of domain A, "b2a": ... of B}) to the server at `target`
  (model `model_name`, pinned `version`) and writes inputs, outputs and one grid per direction; returns paths."""
  from serving.client import TranslationClient  # pylint: disable=import-outside-toplevel
  os.makedirs(output_dir, exist_ok=True)
  written = []
  with TranslationClient(target, model_name, version=version) as client:
    signatures = client.metadata()["signatures"]
    for direction, inputs in images.items():
      seed = np.arange(len(inputs), dtype=np.int64) if "seed" in signatures[direction]["inputs"] else None
      outputs = client.translate(inputs, direction, seed=seed)
      rows = [inputs, outputs["images"]]
      if "attention" in outputs:
        heat = np.clip(np.asarray(outputs["attention"]) * 255.0 + 0.5, 0, 255).astype(np.uint8)
        rows.append(np.repeat(heat[..., None], 3, axis=-1))
      for i in range(len(inputs)):
        written.append(_save(os.path.join(output_dir, f"{direction}_{i:02d}_input.png"), inputs[i]))
        written.append(_save(os.path.join(output_dir, f"{direction}_{i:02d}_output.png"), outputs["images"][i]))
      written.append(_save(os.path.join(output_dir, f"{direction}.png"), _grid(rows)))
  return written


def run(config: DemoConfig, log=None) -> DemoResult:
  """Runs the pipeline, serves the pushed model, translates test images; see the module docstring."""
  from serving.process import ServerProcess, free_port  # pylint: disable=import-outside-toplevel
  log = log or (lambda line: print(line, flush=True))
  result = runner.run_pipeline(pipeline_lib.create_pipeline(config.pipeline), enable_cache=config.enable_cache,
                               log=log)
  report_path = report_file(result)
  push = result.report("push").outputs if result.ok else {}
  if not push.get("pushed"):
    return DemoResult(result, None, None, None, (), report_path)
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
    translated = translate_over_grpc(server.target, model_name, version, images, translations_dir)
  return DemoResult(result, model_name, version, translations_dir, tuple(translated), report_path)


def _image_size(result: runner.RunResult) -> int:
  """The trained model's image size, from the model card the export stage wrote."""
  import json  # pylint: disable=import-outside-toplevel
  card = os.path.join(result.report("export").outputs["path"], "assets.extra", "model_card.json")
  with open(card) as f:
    return int(json.load(f)["image_size"])


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
