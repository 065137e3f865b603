"""gRPC client of the translation models: `TranslationClient` (library) and `python -m serving.client` (CLI).

Speaks only TF Serving's wire protocol (PredictionService / ModelService stubs), so it works against this
project's server and the real tensorflow_model_server alike. Signatures: the table of serving.signatures
(DESIGN.md); what a model offers is read from its own signatures (`serving.signatures.takes_seed`: a2b takes a
`seed`, so the model draws styles and `translate` may send one, or random ones when none is given).

CLI:
  python -m serving.client --server=localhost:8500 --model_name=NAME --direction=a2b \
      [--num_styles=K] [--style_image=REF] --output_dir=OUT IMAGE...
writes OUT/<stem>_<direction>.png per image (K styles: <stem>_<direction>_style<k>.png; U-GAT-IT also
<stem>_<direction>_attention.png) and exits 1 with a one-line error when something is wrong.
"""

from __future__ import annotations

import os
import sys
import time

import grpc
import numpy as np

from serving import signatures as contract
from serving import tensors
# TF Serving's protos and stubs without importing TensorFlow (serving/wire.py): the client starts in a fraction
# of the time and memory.
from serving.wire import (get_model_metadata_pb2, get_model_status_pb2, model_pb2, model_service_pb2_grpc,
                          predict_pb2, prediction_service_pb2_grpc)

DIRECTIONS = contract.DIRECTIONS
_CHANNEL_OPTIONS = [("grpc.max_receive_message_length", -1), ("grpc.max_send_message_length", -1)]
_STATE_NAMES = get_model_status_pb2.ModelVersionStatus.State


class TranslationError(RuntimeError):
  """A call failed; `code` is the grpc.StatusCode (None for local errors), the message says what to do."""

  def __init__(self, message: str, code: grpc.StatusCode | None = None):
    super().__init__(message)
    self.code = code


class TranslationClient:
  """Client of one served model.

  Args:
    target: "host:port" of the model server.
    model_name: the served model's name.
    version / version_label: pin a version (default: the latest available).
    timeout: deadline in seconds of each call.
    retries: how many times a call that failed with UNAVAILABLE is retried (exponential backoff from 0.1 s).
  """

  def __init__(self, target: str, model_name: str, *, version: int | None = None,
               version_label: str | None = None, timeout: float = 30.0, retries: int = 3):
    if version is not None and version_label is not None:
      raise ValueError("pass either version or version_label, not both")
    self.target = target
    self.model_name = model_name
    self.version = version
    self.version_label = version_label
    self.timeout = timeout
    self.retries = retries
    self._channel = grpc.insecure_channel(target, options=_CHANNEL_OPTIONS)
    self._prediction = prediction_service_pb2_grpc.PredictionServiceStub(self._channel)
    self._models = model_service_pb2_grpc.ModelServiceStub(self._channel)
    self._signatures = None

  def close(self) -> None:
    """Closes the channel."""
    self._channel.close()

  def __enter__(self) -> "TranslationClient":
    return self

  def __exit__(self, *exc) -> None:
    self.close()

  def _model_spec(self, signature_name: str = "") -> model_pb2.ModelSpec:
    spec = model_pb2.ModelSpec(name=self.model_name, signature_name=signature_name)
    if self.version is not None:
      spec.version.value = int(self.version)
    elif self.version_label is not None:
      spec.version_label = self.version_label
    return spec

  def _call(self, method, request):
    """Calls with the deadline; retries UNAVAILABLE with backoff; raises TranslationError."""
    delay = 0.1
    for attempt in range(self.retries + 1):
      try:
        return method(request, timeout=self.timeout)
      except grpc.RpcError as e:
        code = e.code()
        if code == grpc.StatusCode.UNAVAILABLE and attempt < self.retries:
          time.sleep(delay)
          delay = min(delay * 2, 5.0)
          continue
        detail = e.details() or ""
        if code == grpc.StatusCode.UNAVAILABLE:
          message = f"cannot reach the model server at {self.target}: {detail}"
        elif code == grpc.StatusCode.DEADLINE_EXCEEDED:
          message = f"the model server at {self.target} did not answer within {self.timeout} s"
        else:
          message = f"{code.name}: {detail}"
        raise TranslationError(message, code) from None

  # -- raw calls ------------------------------------------------------------------------------------------------
  def predict(self, signature_name: str, inputs: dict, output_filter=()) -> dict:
    """Predict on `signature_name` with numpy `inputs` (name -> array); returns name -> numpy array."""
    request = predict_pb2.PredictRequest(model_spec=self._model_spec(signature_name),
                                         output_filter=list(output_filter))
    for name, value in inputs.items():
      request.inputs[name].CopyFrom(tensors.to_tensor_proto(value))
    response = self._call(self._prediction.Predict, request)
    return {name: tensors.from_tensor_proto(proto) for name, proto in response.outputs.items()}

  def model_status(self) -> list:
    """[{"version", "state" ("AVAILABLE", "END", ...), "error_code", "error_message"}], highest version first."""
    request = get_model_status_pb2.GetModelStatusRequest(model_spec=model_pb2.ModelSpec(name=self.model_name))
    if self.version is not None:
      request.model_spec.version.value = int(self.version)
    response = self._call(self._models.GetModelStatus, request)
    return [{"version": int(s.version), "state": _STATE_NAMES.Name(s.state), "error_code": int(s.status.error_code),
             "error_message": s.status.error_message} for s in response.model_version_status]

  def metadata(self) -> dict:
    """{"version": int, "signatures": {name: {"inputs"|"outputs": {alias: {"dtype": "uint8", "shape": [..]}}}}}.

    Shapes use -1 for unknown dims (None for unknown rank).
    """
    request = get_model_metadata_pb2.GetModelMetadataRequest(model_spec=self._model_spec(),
                                                             metadata_field=["signature_def"])
    response = self._call(self._prediction.GetModelMetadata, request)
    signature_map = get_model_metadata_pb2.SignatureDefMap()
    response.metadata["signature_def"].Unpack(signature_map)
    # TF Serving's names: TensorFlow's DataTypeString ("float", not the table's "float32"), -1 for unknown dims.
    specs = contract.signature_specs(signature_map.signature_def, internal=True, dtype_names=tensors.dtype_name)
    signatures = {name: {kind: {alias: {"dtype": dtype, "shape": None if shape is None else
                                        [-1 if d is None else d for d in shape]}
                                for alias, (dtype, shape) in spec[kind].items()}
                         for kind in ("inputs", "outputs")}
                  for name, spec in specs.items()}
    return {"version": int(response.model_spec.version.value), "signatures": signatures}

  def wait_until_available(self, timeout: float = 60.0) -> int:
    """Waits until a version is AVAILABLE; returns the highest one. TranslationError if none within `timeout`
    (immediately for an unknown model once the server answers)."""
    deadline = time.monotonic() + timeout
    last_error = None
    while True:
      try:
        available = [s["version"] for s in self.model_status() if s["state"] == "AVAILABLE"]
        if available:
          return max(available)
        last_error = TranslationError(f"model {self.model_name!r} has no available version yet",
                                      grpc.StatusCode.UNAVAILABLE)
      except TranslationError as e:
        if e.code == grpc.StatusCode.NOT_FOUND:
          raise TranslationError(f"model {self.model_name!r} is not served by {self.target} ({e})",
                                 e.code) from None
        last_error = e
      if time.monotonic() >= deadline:
        raise last_error
      time.sleep(0.2)

  # -- translation ---------------------------------------------------------------------------------------------
  def signature_inputs(self, signature_name: str) -> dict:
    """The inputs ({alias: {"dtype", "shape"}}) of one signature (metadata fetched once and cached)."""
    if self._signatures is None:
      self._signatures = self.metadata()["signatures"]
    if signature_name not in self._signatures:
      raise TranslationError(f"model {self.model_name!r} has no signature {signature_name!r} (it has "
                             f"{sorted(self._signatures)}); this option needs a model that exports it")
    return self._signatures[signature_name]["inputs"]

  def translate(self, images_uint8, direction: str = "a2b", *, seed=None, style=None, reference=None) -> dict:
    """Translates images to the other domain.

    Args:
      images_uint8: uint8 RGB [N, H, W, 3] (or one image [H, W, 3], sent as N = 1).
      direction: "a2b" or "b2a".
      seed: MUNIT: an int (image i gets seed + i) or int64 [N]; the same seed gives the same style. When
        omitted for a signature that takes a seed, random seeds are drawn. Not allowed for a model whose
        signature has no `seed` input.
      style: MUNIT: float32 [N, style_dim] (or [style_dim] for every image): uses `<direction>_style`.
      reference: MUNIT: uint8 [N, H', W', 3] (or [H', W', 3]) images of the target domain whose style to use:
        uses `<direction>_reference`.
    Returns:
      name -> numpy array: "images" uint8 [N, H, W, 3], plus "style" [N, style_dim] (MUNIT) or "attention"
      float32 [N, H, W] (U-GAT-IT).
    """
    if direction not in DIRECTIONS:
      raise ValueError(f"direction must be one of {DIRECTIONS}, got {direction!r}")
    images = _as_images(images_uint8, "images")
    count = images.shape[0]
    if style is not None and reference is not None:
      raise ValueError("pass either style or reference, not both")
    if style is not None:
      style = np.asarray(style, dtype=np.float32)
      if style.ndim == 1:
        style = np.repeat(style[None], count, axis=0)
      if style.ndim != 2 or style.shape[0] != count:
        raise ValueError(f"style must be [N, style_dim] with N = {count} images, got shape {list(style.shape)}")
      signature, inputs = direction + contract.STYLE_SUFFIX, {contract.IMAGES: images, contract.STYLE: style}
    elif reference is not None:
      reference = _as_images(reference, "reference")
      if reference.shape[0] == 1 and count > 1:
        reference = np.repeat(reference, count, axis=0)
      if reference.shape[0] != count:
        raise ValueError(f"reference must hold 1 or {count} images, got {reference.shape[0]}")
      signature = direction + contract.REFERENCE_SUFFIX
      inputs = {contract.IMAGES: images, contract.REFERENCE: reference}
    else:
      signature, inputs = direction, {contract.IMAGES: images}
      multimodal = contract.takes_seed(self.signature_inputs(direction))
      if seed is None and multimodal:
        seed = np.random.default_rng().integers(0, 2**31, size=count, dtype=np.int64)
      if seed is not None:
        if not multimodal:
          raise TranslationError(f"model {self.model_name!r} signature {direction!r} takes no seed: it is not "
                                 "multimodal (only MUNIT draws styles); drop the seed/--num_styles option")
        seed = np.asarray(seed, dtype=np.int64).reshape(-1)
        if seed.size == 1 and count > 1:
          seed = seed + np.arange(count, dtype=np.int64)
        if seed.size != count:
          raise ValueError(f"seed must be an int or {count} ints, got {seed.size}")
        inputs[contract.SEED] = seed
    if signature != direction:
      self.signature_inputs(signature)  # a clear error if the model does not export it
    return self.predict(signature, inputs)


def _as_images(value, name: str) -> np.ndarray:
  array = np.asarray(value)
  if array.ndim == 3:
    array = array[None]
  if array.ndim != 4 or array.shape[-1] != 3:
    raise ValueError(f"{name} must be RGB [N, H, W, 3] (or [H, W, 3]), got shape {list(array.shape)}")
  if array.dtype != np.uint8:
    raise ValueError(f"{name} must be uint8 (0..255), got {array.dtype}; convert with "
                     "np.clip(x, 0, 255).astype(np.uint8)")
  return array


def read_image(path: str) -> np.ndarray:
  """Any Pillow-readable image file -> uint8 RGB [H, W, 3] (EXIF orientation applied). ValueError if unreadable."""
  from PIL import Image, ImageOps, UnidentifiedImageError
  try:
    with Image.open(path) as image:
      image = ImageOps.exif_transpose(image)
      return np.asarray(image.convert("RGB"), dtype=np.uint8)
  except FileNotFoundError:
    raise ValueError(f"cannot read {path}: no such file") from None
  except (UnidentifiedImageError, OSError) as e:
    raise ValueError(f"cannot read {path}: not an image Pillow can decode ({e})") from None


def write_png(path: str, array: np.ndarray) -> None:
  """Writes uint8 [H, W, 3] RGB, or a float [H, W] map in [0, 1] as grayscale, to a PNG file."""
  from PIL import Image
  if array.ndim == 2:
    array = np.clip(np.asarray(array, dtype=np.float32) * 255.0 + 0.5, 0, 255).astype(np.uint8)
  Image.fromarray(array).save(path, format="PNG")


def translate_files(client: TranslationClient, image_paths: list, output_dir: str, *, direction: str = "a2b",
                    num_styles: int = 1, style_image: str | None = None, seed: int = 0) -> list:
  """The CLI's work: translates each file and writes PNGs; returns the written paths.

  A model whose signature takes a seed (MUNIT) gets seeds `seed + k`, k < num_styles (one file per style when
  num_styles > 1); num_styles > 1 on any other model is an error. style_image (MUNIT) takes the style from
  that image. U-GAT-IT's attention is written as <stem>_<direction>_attention.png.
  """
  if num_styles < 1:
    raise ValueError(f"--num_styles must be >= 1, got {num_styles}")
  if style_image is not None and num_styles > 1:
    raise ValueError("--style_image and --num_styles > 1 exclude each other: a reference image gives one style")
  images = [(p, read_image(p)) for p in image_paths]  # fail on an unreadable file before any work
  reference = read_image(style_image) if style_image is not None else None
  os.makedirs(output_dir, exist_ok=True)
  written = []
  for path, image in images:
    stem = os.path.splitext(os.path.basename(path))[0]
    if reference is not None:
      runs = [("", client.translate(image, direction, reference=reference))]
    elif num_styles > 1:
      runs = [(f"_style{k}", client.translate(image, direction, seed=seed + k)) for k in range(num_styles)]
    elif contract.takes_seed(client.signature_inputs(direction)):
      runs = [("", client.translate(image, direction, seed=seed))]
    else:
      runs = [("", client.translate(image, direction))]
    for suffix, result in runs:
      out = os.path.join(output_dir, f"{stem}_{direction}{suffix}.png")
      write_png(out, result[contract.IMAGES][0])
      written.append(out)
      if contract.ATTENTION in result:
        out = os.path.join(output_dir, f"{stem}_{direction}{suffix}_attention.png")
        write_png(out, result[contract.ATTENTION][0])
        written.append(out)
  return written


def run_cli(server: str, model_name: str, image_paths: list, output_dir: str, *, direction: str = "a2b",
            num_styles: int = 1, style_image: str | None = None, seed: int = 0, version: int | None = None,
            version_label: str | None = None, timeout: float = 30.0, retries: int = 3) -> list:
  """What `python -m serving.client` does; returns the written paths.

  Raises ValueError (bad arguments, unreadable files: checked before any network call) or TranslationError
  (unreachable server, unknown model, no available version, failed call) with a one-line message.
  """
  if not image_paths:
    raise ValueError("give at least one IMAGE path after the flags")
  for path in image_paths:
    read_image(path)
  with TranslationClient(server, model_name, version=version, version_label=version_label, timeout=timeout,
                         retries=retries) as client:
    try:
      statuses = client.model_status()
    except TranslationError as e:
      if e.code == grpc.StatusCode.NOT_FOUND:
        raise TranslationError(f"model {model_name!r} is not served by {server} ({e})", e.code) from None
      raise
    if not any(s["state"] == "AVAILABLE" for s in statuses):
      raise TranslationError(f"model {model_name!r} has no available version on {server}: {statuses}")
    return translate_files(client, image_paths, output_dir, direction=direction, num_styles=num_styles,
                           style_image=style_image, seed=seed)


def main(argv):
  """The CLI entry point (flags are defined and read only here)."""
  from absl import flags
  f = flags.FLAGS
  try:
    written = run_cli(f.server, f.model_name, argv[1:], f.output_dir, direction=f.direction,
                      num_styles=f.num_styles, style_image=f.style_image, seed=f.seed, version=f.version,
                      version_label=f.version_label, timeout=f.timeout, retries=f.retries)
  except (TranslationError, ValueError) as e:
    print(f"serving.client: error: {e}", file=sys.stderr)
    sys.exit(1)
  for path in written:
    print(path)


def _define_flags():
  from absl import flags
  flags.DEFINE_string("server", "localhost:8500", "host:port of the model server (gRPC).")
  flags.DEFINE_string("model_name", None, "Name of the served model.")
  flags.DEFINE_enum("direction", "a2b", list(DIRECTIONS), "Translation direction.")
  flags.DEFINE_integer("num_styles", 1, "MUNIT: number of random styles per image (one PNG each).")
  flags.DEFINE_string("style_image", None, "MUNIT: take the style from this image of the target domain.")
  flags.DEFINE_integer("seed", 0, "MUNIT: seed of the first style (style k uses seed + k).")
  flags.DEFINE_string("output_dir", None, "Where to write the PNGs.")
  flags.DEFINE_integer("version", None, "Pin a model version (default: latest).")
  flags.DEFINE_string("version_label", None, "Pin a version by label (e.g. stable).")
  flags.DEFINE_float("timeout", 30.0, "Per-call deadline in seconds.")
  flags.DEFINE_integer("retries", 3, "Retries of a call that failed with UNAVAILABLE.")
  flags.mark_flags_as_required(["model_name", "output_dir"])


if __name__ == "__main__":
  from absl import app
  _define_flags()
  app.run(main)
