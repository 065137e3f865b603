"""The SavedModel signature contract (DESIGN.md "SavedModel signature contract"): one table, read by every side.

components.export builds its SavedModel to `signature_table(...)` and verifies it against the table;
components.infra_validate checks a served model's answers against the SignatureDefs (`signature_specs`);
components.evaluate and pipelines.demo call the signatures; `serving.client` and `serving.translate` decide what to
send from a served model's signatures with `takes_seed` / `traits_of` (a model this project did not build works
too). Pure Python over the wire protos: no TensorFlow, no models/, no components/ (a client imports it).

The table (wire images are uint8 RGB `[N, H, W, 3]`, any H and W; None = any size):
  every model:
    a2b, b2a:                 images uint8 [N, H, W, 3] -> images uint8 [N, H, W, 3]
    serving_default:          = a2b
    a2b_encoded, b2a_encoded: image_bytes string [N] (PNG or JPEG) -> image_bytes string [N] (PNG)
  multimodal (MUNIT): a2b/b2a also take `seed` int64 [N] and return `style` float32 [N, style_dim];
    a2b_style, b2a_style:         images + style float32 [N, style_dim] -> images
    a2b_reference, b2a_reference: images + reference uint8 [N, H', W', 3] -> images + style
  attention (U-GAT-IT): every output with `images` also has `attention` float32 [N, H, W] in [0, 1].
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Mapping

DIRECTIONS = ("a2b", "b2a")
SERVING_DEFAULT = "serving_default"
DEFAULT_DIRECTION = "a2b"  # what serving_default runs

# Input and output aliases.
IMAGES = "images"
SEED = "seed"
STYLE = "style"
REFERENCE = "reference"
ATTENTION = "attention"
IMAGE_BYTES = "image_bytes"

# Signature name suffixes (after the direction).
STYLE_SUFFIX = "_style"
REFERENCE_SUFFIX = "_reference"
ENCODED_SUFFIX = "_encoded"

_IMAGE_SPEC = ("uint8", [None, None, None, 3])
_BYTES_SPEC = ("string", [None])


@dataclasses.dataclass(frozen=True)
class SignatureTraits:
  """What decides the signature set: `multimodal` (seed / style / reference inputs), `attention` (a CAM heatmap
  output) and `style_dim` (multimodal only; None when a served model's signatures leave it unknown)."""

  multimodal: bool = False
  attention: bool = False
  style_dim: int | None = None


def direction_of(signature_name: str) -> str:
  """The direction ("a2b" or "b2a") a signature of the table translates in (serving_default: a2b)."""
  if signature_name == SERVING_DEFAULT:
    return DEFAULT_DIRECTION
  direction = signature_name[:3]
  if direction not in DIRECTIONS:
    raise ValueError(f"{signature_name!r} is not a signature of the translation contract")
  return direction


def signature_table(traits: SignatureTraits) -> dict:
  """The contract: name -> {"inputs": {alias: (dtype, shape)}, "outputs": {...}}, shapes with None for any size.

  Insertion order: per direction the plain signature, then (multimodal) `_style`, `_reference`, then `_encoded`;
  serving_default last.
  """
  if traits.multimodal and not (isinstance(traits.style_dim, int) and traits.style_dim > 0):
    raise ValueError(f"the signatures of a multimodal model need its style_dim (> 0), got {traits.style_dim!r}")
  outputs = {IMAGES: _IMAGE_SPEC}
  if traits.attention:
    outputs[ATTENTION] = ("float32", [None, None, None])
  style = ("float32", [None, traits.style_dim])
  table = {}
  for d in DIRECTIONS:
    if traits.multimodal:
      table[d] = {"inputs": {IMAGES: _IMAGE_SPEC, SEED: ("int64", [None])}, "outputs": {**outputs, STYLE: style}}
      table[d + STYLE_SUFFIX] = {"inputs": {IMAGES: _IMAGE_SPEC, STYLE: style}, "outputs": dict(outputs)}
      table[d + REFERENCE_SUFFIX] = {"inputs": {IMAGES: _IMAGE_SPEC, REFERENCE: _IMAGE_SPEC},
                                     "outputs": {**outputs, STYLE: style}}
    else:
      table[d] = {"inputs": {IMAGES: _IMAGE_SPEC}, "outputs": dict(outputs)}
    table[d + ENCODED_SUFFIX] = {"inputs": {IMAGE_BYTES: _BYTES_SPEC}, "outputs": {IMAGE_BYTES: _BYTES_SPEC}}
  table[SERVING_DEFAULT] = table[DEFAULT_DIRECTION]
  return table


def takes_seed(inputs: Mapping) -> bool:
  """True when a signature's inputs (alias -> anything) include `seed`: the model draws styles (multimodal)."""
  return SEED in inputs


def traits_of(signatures: Mapping[str, Mapping]) -> SignatureTraits:
  """The traits of a model from its signatures (name -> {"inputs", "outputs": alias -> spec}), as a client sees
  them: multimodal when a2b takes a seed, attention when a2b returns one; style_dim from a2b's `style` output
  when its spec has a known last dim ((dtype, shape) tuples or {"dtype", "shape"} dicts), else None."""
  if DEFAULT_DIRECTION not in signatures:
    raise ValueError(f"the model has no {DEFAULT_DIRECTION!r} signature ({sorted(signatures)}): it does not follow "
                     "the translation contract (export it with components.export)")
  plain = signatures[DEFAULT_DIRECTION]
  outputs = plain.get("outputs", {})
  multimodal = takes_seed(plain["inputs"])
  style_dim = None
  spec = outputs.get(STYLE)
  shape = spec.get("shape") if isinstance(spec, Mapping) else (spec[1] if spec else None)
  if multimodal and shape and len(shape) == 2 and shape[-1] is not None and shape[-1] > 0:
    style_dim = int(shape[-1])
  return SignatureTraits(multimodal=multimodal, attention=ATTENTION in outputs, style_dim=style_dim)


def dtype_name(dtype: int) -> str:
  """The table's dtype name ("uint8", "float32", "int64", "string", ...) of a DataType enum value."""
  from serving import tensors  # pylint: disable=import-outside-toplevel  (the wire protos; no TensorFlow)
  if tensors.is_string(dtype):
    return "string"
  try:
    return tensors.numpy_dtype(dtype).name
  except TypeError:
    return tensors.dtype_name(dtype)


def tensor_spec(info, dtype_names: Callable[[int], str] = dtype_name) -> tuple:
  """A TensorInfo proto -> (dtype name, shape list with None for unknown dims, or None for unknown rank).

  `dtype_names` names the DataType enum: the table's names by default (`dtype_name`), or e.g.
  serving.tensors.dtype_name for TensorFlow's own DataTypeString ("float" for DT_FLOAT).
  """
  shape = info.tensor_shape
  dims = None if shape.unknown_rank else [None if d.size < 0 else int(d.size) for d in shape.dim]
  return dtype_names(info.dtype), dims


def signature_specs(signature_defs: Mapping, *, internal: bool = False,
                    dtype_names: Callable[[int], str] = dtype_name) -> dict:
  """name -> SignatureDef protos -> the table's form, name -> {"inputs"|"outputs": {alias: (dtype, shape)}}: the
  one SignatureDef parser (infra_validate, the client's metadata).

  TensorFlow's internal signatures (names starting with "__", e.g. __saved_model_init_op) are left out unless
  `internal`; `dtype_names` as in tensor_spec.
  """
  return {name: {kind: {alias: tensor_spec(info, dtype_names) for alias, info in getattr(signature, kind).items()}
                 for kind in ("inputs", "outputs")}
          for name, signature in signature_defs.items() if internal or not name.startswith("__")}
