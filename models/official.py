"""Reading weights written by the official PyTorch code into our Keras networks, every tensor exactly once.

The official trainers save `state_dict`s: flat maps from dotted names (`enc_style.model.0.conv.weight`) to
tensors in torch layouts. The importers (`models/<family>/official.py`) receive them as numpy arrays (reading
the `.pt` file, which needs torch, is the import stage's job: components/import_official_lib.py) and fill a
built model through `OfficialWeights`, which enforces the contract of the import:

  * every official tensor is used exactly once (a key used twice, or left over at `finish()`, is an error);
  * every variable of our model is filled exactly once (a variable filled twice, or left empty, is an error);
  * shapes must match after the layout conversion; the error names the key, the variable and both shapes.

Layout conversions (torch -> Keras, NCHW -> NHWC):
  conv weight        [out, in, kh, kw]  -> Conv2D kernel [kh, kw, in, out]          (`conv_kernel`)
  conv-transpose     [in, out, kh, kw]  -> Conv2DTranspose kernel [kh, kw, out, in] (`conv_transpose_kernel`)
  linear weight      [out, in]          -> Dense kernel [in, out]                   (`dense_kernel`)
  1x1 conv as dense  [out, in, 1, 1]    -> Dense kernel [in, out]                   (`dense_from_conv1x1`)
  vectors (bias, norm gamma/beta, rho)  -> unchanged, flattened                     (`vector`)
"""

from __future__ import annotations

from typing import Callable, Mapping

import numpy as np


class OfficialImportError(ValueError):
  """An official checkpoint does not fit the model: names the first key or variable and the two shapes."""


def conv_kernel(w: np.ndarray) -> np.ndarray:
  """torch Conv2d weight `[out, in, kh, kw]` -> Keras Conv2D kernel `[kh, kw, in, out]`."""
  return np.transpose(w, (2, 3, 1, 0))


def conv_transpose_kernel(w: np.ndarray) -> np.ndarray:
  """torch ConvTranspose2d weight `[in, out, kh, kw]` -> Keras Conv2DTranspose kernel `[kh, kw, out, in]`.

  Both are the adjoint of the same forward convolution, so no spatial flip is needed.
  """
  return np.transpose(w, (2, 3, 1, 0))


def dense_kernel(w: np.ndarray) -> np.ndarray:
  """torch Linear weight `[out, in]` -> Keras Dense kernel `[in, out]`."""
  return np.transpose(w, (1, 0))


def dense_from_conv1x1(w: np.ndarray) -> np.ndarray:
  """torch 1x1 Conv2d weight `[out, in, 1, 1]` (applied to a 1x1 map) -> Keras Dense kernel `[in, out]`."""
  if w.ndim != 4 or w.shape[2:] != (1, 1):
    raise OfficialImportError(f"expected a 1x1 conv weight [out, in, 1, 1], got shape {tuple(w.shape)}")
  return np.transpose(w[:, :, 0, 0], (1, 0))


def vector(w: np.ndarray) -> np.ndarray:
  """A per-channel vector (bias, norm gamma/beta, rho `[1, C, 1, 1]`) -> `[C]`."""
  return np.reshape(w, [-1])


def identity(w: np.ndarray) -> np.ndarray:
  """No layout change."""
  return w


def _path(variable) -> str:
  """A Keras variable's path (or a tf.Variable's name)."""
  return getattr(variable, "path", None) or variable.name


class OfficialWeights:
  """Fills a model's variables from an official state dict, checking the exactly-once contract.

  Args:
    tensors: official name -> numpy array (all networks of the checkpoint, names prefixed as the caller
      likes, e.g. "gen_a/enc_content.model.0.conv.weight").
    variables: every variable of our model that must be filled (usually `model.variables`).
    source: what the tensors came from, for error messages (a file name).

  Usage: `w.set(variable, key, conv_kernel)` for each pair, then `w.finish()`.
  """

  def __init__(self, tensors: Mapping[str, np.ndarray], variables, source: str = "the official checkpoint"):
    self._tensors = {k: np.asarray(v) for k, v in tensors.items()}
    self._variables = list(variables)
    self._used: set[str] = set()
    self._filled: dict[int, str] = {}
    self._ids = {id(v) for v in self._variables}
    self.source = source

  def has(self, key: str) -> bool:
    """True when the checkpoint holds `key` (whether or not it was used yet)."""
    return key in self._tensors

  def shape(self, key: str) -> tuple:
    """The shape of the official tensor `key` (KeyError-free: OfficialImportError when missing)."""
    return tuple(self.peek(key).shape)

  def peek(self, key: str) -> np.ndarray:
    """The official tensor `key` without marking it used (to read architecture from shapes)."""
    if key not in self._tensors:
      raise OfficialImportError(f"{self.source} has no tensor {key!r}; it has {len(self._tensors)} tensors "
                                f"(first: {', '.join(sorted(self._tensors)[:5])}). Is it a checkpoint of this "
                                f"model family and configuration?")
    return self._tensors[key]

  def take(self, key: str) -> np.ndarray:
    """Returns the official tensor `key` and marks it used (a second take is an error)."""
    value = self.peek(key)
    if key in self._used:
      raise OfficialImportError(f"official tensor {key!r} of {self.source} is used twice.")
    self._used.add(key)
    return value

  def set(self, variable, key: str, convert: Callable[[np.ndarray], np.ndarray] = identity) -> None:
    """Assigns `convert(tensor[key])` to `variable`; shapes must match exactly."""
    if id(variable) not in self._ids:
      raise OfficialImportError(f"variable {_path(variable)} is not one of the model's variables.")
    if id(variable) in self._filled:
      raise OfficialImportError(f"variable {_path(variable)} is filled twice (from {self._filled[id(variable)]!r} "
                                f"and {key!r}).")
    raw = self.take(key)
    value = convert(raw)
    want = tuple(variable.shape)
    if tuple(value.shape) != want:
      raise OfficialImportError(
          f"official tensor {key!r} of shape {tuple(raw.shape)} (converted {tuple(value.shape)}) does not fit "
          f"variable {_path(variable)} of shape {want}: the checkpoint was written for another configuration.")
    variable.assign(value.astype(np.dtype(variable.dtype.name if hasattr(variable.dtype, "name")
                                          else str(variable.dtype))))
    self._filled[id(variable)] = key

  def skip(self, key: str) -> None:
    """Marks an official tensor as deliberately not needed (e.g. torch's `num_batches_tracked`)."""
    self.take(key)

  def finish(self) -> None:
    """Raises OfficialImportError naming the first official tensor left unused or model variable left unfilled."""
    unused = sorted(set(self._tensors) - self._used)
    if unused:
      raise OfficialImportError(f"official tensor {unused[0]!r} of shape {tuple(self._tensors[unused[0]].shape)} "
                                f"in {self.source} was not used ({len(unused)} unused in all): the checkpoint "
                                f"has parts this model does not.")
    empty = [v for v in self._variables if id(v) not in self._filled]
    if empty:
      raise OfficialImportError(f"variable {_path(empty[0])} of shape {tuple(empty[0].shape)} was not filled from "
                                f"{self.source} ({len(empty)} unfilled in all): the checkpoint lacks parts of "
                                f"this model.")


def prefixed(prefix: str, state: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
  """`{prefix/key: value}` for every key of a state dict (to merge several networks into one map)."""
  return {f"{prefix}/{k}": v for k, v in state.items()}
