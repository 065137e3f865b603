"""Infra validation: does the exported SavedModel load and answer in a real model server?

Like TFX's InfraValidator: the SavedModel is copied in serving layout into a temporary model root
(`<tmp>/<model_name>/1/`), a model server is started on a free loopback port over it (our
`python -m serving.server`, or the real `tensorflow_model_server` when `serving_binary` is given: same flags),
the stage waits until version 1 is AVAILABLE (ModelService.GetModelStatus), replays the SavedModel's warmup
requests (`assets.extra/tf_serving_warmup_requests`, one per signature, written by components.export) over
gRPC Predict and checks every answer against the SavedModel's own signature defs:
  * the call succeeds (gRPC OK);
  * the output keys are exactly the signature's outputs, with the declared dtypes and ranks/known dims;
  * one row per input row; `images` has the input's height and width; `attention` is [N, H, W] in [0, 1];
    `image_bytes` are PNGs of the input images' sizes; every float is finite.
The server is always stopped (serving.process.ServerProcess), also when a check or the start fails.
Writes `INFRA_BLESSED` or `INFRA_NOT_BLESSED` (with the reason) and `infra_validation.json` (per request).
"""

from __future__ import annotations

import dataclasses
import io
import json
import os
import shutil
import tempfile
import time

import numpy as np
from PIL import Image

from components.blessing import write_blessing
from components.errors import StageError
from serving import config as config_lib
from serving import signatures as contract
from serving import warmup
from serving.client import TranslationClient, TranslationError
from serving.errors import ServingError
from serving.process import ServerProcess, free_port
from serving.servable import read_signature_defs

REPORT_FILE = "infra_validation.json"


@dataclasses.dataclass(frozen=True)
class InfraValidateConfig:
  """Parameters of the infra-validation stage.

  Attributes:
    model_dir: the exported SavedModel directory (components.export --output_dir).
    output_dir: where INFRA_BLESSED / INFRA_NOT_BLESSED and infra_validation.json are written.
    model_name: the name the model is served under during the check.
    serving_binary: path of a `tensorflow_model_server` executable; None = `python -m serving.server`.
    startup_timeout: seconds for the server to open its port.
    available_timeout: seconds for version 1 to become AVAILABLE.
    request_timeout: deadline of each Predict call, seconds.
  """

  model_dir: str
  output_dir: str
  model_name: str = "model"
  serving_binary: str | None = None
  startup_timeout: float = 120.0
  available_timeout: float = 120.0
  request_timeout: float = 60.0


@dataclasses.dataclass(frozen=True)
class InfraValidateResult:
  """`blessed`, the `reason` (also written into the blessing file) and per-request `checks` (dicts)."""

  blessed: bool
  reason: str
  checks: tuple = ()


def signature_defs(saved_model_dir: str) -> dict:
  """name -> {"inputs"|"outputs": {key: (dtype name, shape list with None)}} read from saved_model.pb (the
  server's own reader, serving.servable.read_signature_defs, in the form of serving.signatures)."""
  path = os.path.join(saved_model_dir, "saved_model.pb")
  if not os.path.isfile(path):
    raise StageError(f"{path} does not exist: --model_dir must be an exported SavedModel (components.export "
                     "--output_dir)")
  try:
    return contract.signature_specs(read_signature_defs(saved_model_dir))
  except ServingError as e:
    raise StageError(f"{path} is not a readable SavedModel: {e.message}") from None


def _image_sizes(inputs: dict) -> tuple[int, list]:
  """(batch N, [(H, W)] per row) of a request's images (uint8 `images` or encoded `image_bytes`)."""
  if "images" in inputs:
    images = inputs["images"]
    return images.shape[0], [images.shape[1:3]] * images.shape[0]
  sizes = [Image.open(io.BytesIO(b)).size[::-1] for b in inputs["image_bytes"]]
  return len(sizes), sizes


def check_response(signature: dict, inputs: dict, outputs: dict) -> list[str]:
  """Problems (empty if none) of one Predict answer against its signature def and the request."""
  problems = []
  expected = signature["outputs"]
  if set(outputs) != set(expected):
    return [f"output keys {sorted(outputs)} != signature outputs {sorted(expected)}"]
  batch, sizes = _image_sizes(inputs)
  for key, value in outputs.items():
    dtype, shape = expected[key]
    got_dtype = "string" if value.dtype == object or value.dtype.kind == "S" else value.dtype.name
    if got_dtype != dtype:
      problems.append(f"{key}: dtype {got_dtype} != {dtype}")
      continue
    if shape is not None and (value.ndim != len(shape) or
                              any(s is not None and s != v for s, v in zip(shape, value.shape))):
      problems.append(f"{key}: shape {list(value.shape)} does not fit the signature's {shape}")
      continue
    if value.shape[0] != batch:
      problems.append(f"{key}: {value.shape[0]} rows for {batch} inputs")
      continue
    if key in ("images", "attention") and value.shape[1:3] != tuple(sizes[0]):
      problems.append(f"{key}: size {value.shape[1:3]} != input size {tuple(sizes[0])}")
    if value.dtype.kind == "f" and not np.all(np.isfinite(value)):
      problems.append(f"{key}: non-finite values")
    if key == "attention" and value.size and (value.min() < 0.0 or value.max() > 1.0):
      problems.append(f"{key}: values outside [0, 1] ({value.min()}, {value.max()})")
    if key == "image_bytes":
      for i, data in enumerate(value):
        try:
          image = Image.open(io.BytesIO(data))
          if image.format != "PNG" or image.size[::-1] != tuple(sizes[i]):
            problems.append(f"image_bytes[{i}]: {image.format} {image.size[::-1]}, want PNG {tuple(sizes[i])}")
        except Exception as e:  # pylint: disable=broad-except
          problems.append(f"image_bytes[{i}]: not a decodable image ({e})")
  return problems


def _write_outcome(output_dir: str, blessed: bool, reason: str, checks: list) -> InfraValidateResult:
  """Writes the blessing file (removing a stale opposite one) and the JSON report."""
  write_blessing(output_dir, blessed, reason, infra=True)
  with open(os.path.join(output_dir, REPORT_FILE), "w", encoding="utf-8") as f:
    json.dump({"blessed": blessed, "reason": reason, "checks": checks}, f, indent=2)
  return InfraValidateResult(blessed=blessed, reason=reason, checks=tuple(checks))


def _wait_until_available(client: TranslationClient, timeout: float) -> None:
  """Polls GetModelStatus until a version is AVAILABLE; TranslationError at once when loading failed (state END
  with an error, e.g. a warmup request the model rejects) or after `timeout` seconds."""
  deadline = time.monotonic() + timeout
  while True:
    try:
      status = client.model_status()
    except TranslationError as e:
      if e.code is not None and e.code.name != "NOT_FOUND" and e.code.name != "UNAVAILABLE":
        raise
      status = []
    if any(s["state"] == "AVAILABLE" for s in status):
      return
    failed = [s for s in status if s["state"] == "END" and s["error_code"]]
    if failed:
      raise TranslationError(f"version {failed[0]['version']} failed to load: {failed[0]['error_message']}")
    if time.monotonic() >= deadline:
      raise TranslationError(f"no version became AVAILABLE within {timeout:.0f} s (status: {status})")
    time.sleep(0.2)


def _replay(config: InfraValidateConfig, target: str, signatures: dict, requests: list) -> list:
  """Waits for AVAILABLE, sends every warmup request; returns per-request check dicts."""
  checks = []
  with TranslationClient(target, config.model_name, timeout=config.request_timeout) as client:
    _wait_until_available(client, config.available_timeout)
    for name, inputs in requests:
      if name not in signatures:
        checks.append({"signature": name, "problems": [f"warmup request for unknown signature {name!r}"]})
        continue
      try:
        outputs = client.predict(name, inputs)
      except TranslationError as e:
        checks.append({"signature": name, "problems": [f"Predict failed: {e}"]})
        continue
      checks.append({"signature": name, "problems": check_response(signatures[name], inputs, outputs),
                     "outputs": {k: [str(v.dtype), list(v.shape)] for k, v in outputs.items()}})
    fixed = _fixed_size(config.model_dir)
    if fixed and "a2b" in signatures and set(signatures["a2b"]["inputs"]) == {contract.IMAGES}:
      checks.append(_check_rejects_other_sizes(client, fixed))
  return checks


def _fixed_size(saved_model_dir: str) -> int | None:
  """The only image size the model takes (model card `fixed_size`, e.g. U-GAT-IT full), None if any size."""
  return config_lib.read_model_card(saved_model_dir).get("fixed_size")


def _check_rejects_other_sizes(client: TranslationClient, fixed: int) -> dict:
  """A fixed-size model must answer a mis-sized image with INVALID_ARGUMENT naming the size (DESIGN.md)."""
  wrong = fixed + 4
  check = {"signature": "a2b", "request": f"1x{wrong}x{wrong}x3 images (model takes {fixed}x{fixed})"}
  try:
    client.predict("a2b", {"images": np.zeros((1, wrong, wrong, 3), np.uint8)})
    check["problems"] = [f"a {wrong}x{wrong} image was accepted by a model that only takes {fixed}x{fixed}"]
  except TranslationError as e:
    ok = e.code is not None and e.code.name == "INVALID_ARGUMENT" and str(wrong) in str(e) and str(fixed) in str(e)
    check["problems"] = [] if ok else [f"a {wrong}x{wrong} image gave {e} instead of INVALID_ARGUMENT naming "
                                       f"{wrong} and {fixed}"]
  return check


def run(config: InfraValidateConfig) -> InfraValidateResult:
  """Serves `config.model_dir` in a model server, replays its warmup requests, writes the blessing."""
  signatures = signature_defs(config.model_dir)
  requests = warmup.read_warmup_file(config.model_dir)
  if not requests:
    return _write_outcome(config.output_dir, False, f"no warmup requests in {config.model_dir}: export it with "
                          "components.export (which writes assets.extra/tf_serving_warmup_requests)", [])
  root = tempfile.mkdtemp(prefix="infra_validate_")
  try:
    shutil.copytree(config.model_dir, os.path.join(root, config.model_name, "1"))
    args = [f"--model_name={config.model_name}", f"--model_base_path={os.path.join(root, config.model_name)}"]
    server = ServerProcess(args, free_port(), binary=config.serving_binary, startup_timeout=config.startup_timeout)
    try:
      with server:
        checks = _replay(config, server.target, signatures, requests)
    except (RuntimeError, TranslationError) as e:  # the server did not start, or the model never became AVAILABLE
      log = server.log_tail()
      return _write_outcome(config.output_dir, False, f"the model server could not serve the model: {e}"
                            + (f"\nserver log:\n{log}" if log and log not in str(e) else ""), [])
  finally:
    shutil.rmtree(root, ignore_errors=True)
  failed = [c for c in checks if c["problems"]]
  if failed:
    reason = "; ".join(f"{c['signature']}: {', '.join(c['problems'])}" for c in failed)
    return _write_outcome(config.output_dir, False, f"{len(failed)} of {len(checks)} requests failed: {reason}",
                          checks)
  return _write_outcome(config.output_dir, True, f"served and answered all {len(checks)} warmup requests "
                        f"({', '.join(sorted({c['signature'] for c in checks}))})", checks)
