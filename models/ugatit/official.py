"""Importing znxlwm/UGATIT-pytorch checkpoints: `<dataset>_params_<iter>.pt` -> our UGATIT (full or light).

`UGATIT.save()` writes one file, a dict of six state dicts: genA2B, genB2A (ResnetGenerator), disGA, disGB
(global Discriminator, n_layers 7), disLA, disLB (local, n_layers 5). Our names (models/ugatit/model.py):
gen_a2b, gen_b2a, dis_global_a, dis_global_b, dis_local_a, dis_local_b. Tensors are keyed
"<official network>/<state dict key>" (e.g. "disGA/model.1.weight_orig").

Generator keys (nn.Sequential indices of networks.py, n_downsampling 2):
  DownBlock.1/5/9.weight             7x7 conv and the two stride-2 convs (pad, conv, IN, ReLU per block)
  DownBlock.<12+i>.conv_block.1/5.weight   ResnetBlock i (IN without affine: no tensors)
  gap_fc.weight, gmp_fc.weight [1, C]; conv1x1.weight [C, 2C, 1, 1], conv1x1.bias
  FC.0.weight, FC.2.weight; gamma.weight, beta.weight
  UpBlock1_<i>.conv1/conv2.weight, UpBlock1_<i>.norm1/norm2.rho [1, C, 1, 1]
  UpBlock2.2/7.weight (3x3 convs), UpBlock2.3/8.rho/gamma/beta (ILN), UpBlock2.11.weight (7x7 -> RGB)
The full model's FC.0 takes the CAM features flattened in torch's NCHW order (c, y, x); ours flattens NHWC
(y, x, c), so its rows are permuted (`full_fc_kernel`).
Discriminator keys (torch spectral norm: `weight_orig` is the raw weight, `weight_u` [out] and `weight_v`
[in kh kw] the power-iteration buffers):
  model.<3i+1>.weight_orig/weight_u/weight_v/bias     the n_layers - 1 convs
  gap_fc.*, gmp_fc.* (weight_orig/u/v)                 spectral-normalized CAM linears
  conv1x1.weight, conv1x1.bias                         (no spectral norm)
  conv.weight_orig/weight_u/weight_v                   the last 4x4 conv -> 1 (no bias)
`weight_v` is permuted to our kernel order (models.layers.spectral_norm.torch_v_to_keras).
"""

from __future__ import annotations

import functools
import math
import re
from typing import Any, Mapping

import numpy as np

from models.layers.spectral_norm import torch_v_to_keras
from models.official import (OfficialImportError, OfficialWeights, conv_kernel, dense_kernel, prefixed,
                             vector)
from models.ugatit.config import UGATITConfig

NETWORKS = {"genA2B": "gen_a2b", "genB2A": "gen_b2a", "disGA": "dis_global_a", "disGB": "dis_global_b",
            "disLA": "dis_local_a", "disLB": "dis_local_b"}
DEFAULT_LIGHT_IMAGE_SIZE = 256  # UGATIT-pytorch main.py --img_size


def official_tensors(files: Mapping[str, Any]) -> dict[str, np.ndarray]:
  """The one `<dataset>_params_<iter>.pt` among `files` -> {"<network>/<key>": array} for the six networks.

  Raises OfficialImportError when no file, or more than one, holds the six state dicts.
  """
  params = [(name, obj) for name, obj in files.items() if isinstance(obj, Mapping) and "genA2B" in obj]
  if len(params) != 1:
    raise OfficialImportError(
        f"expected exactly one UGATIT-pytorch checkpoint (<dataset>_params_<iter>.pt holding genA2B, genB2A, "
        f"disGA, disGB, disLA, disLB) among {sorted(files)}; found {len(params)}.")
  name, obj = params[0]
  missing = sorted(set(NETWORKS) - set(obj))
  if missing:
    raise OfficialImportError(f"{name} lacks the networks {', '.join(missing)}; it holds {sorted(obj)}.")
  extra = sorted(set(obj) - set(NETWORKS))
  if extra:
    raise OfficialImportError(f"{name} holds networks this importer does not know: {', '.join(extra)}.")
  tensors = {}
  for network in NETWORKS:
    tensors.update(prefixed(network, {k: np.asarray(v) for k, v in obj[network].items()}))
  return tensors


def _shape(tensors: Mapping[str, np.ndarray], key: str) -> tuple:
  if key not in tensors:
    raise OfficialImportError(f"the checkpoint has no tensor {key!r}: not a UGATIT-pytorch checkpoint?")
  return tuple(np.shape(tensors[key]))


def _dis_layers(tensors: Mapping[str, np.ndarray], network: str) -> int:
  """n_layers of a Discriminator = its spectral-normalized convs in `model` + 1."""
  convs = [k for k in tensors if re.fullmatch(rf"{network}/model\.\d+\.weight_orig", k)]
  if not convs:
    raise OfficialImportError(f"the checkpoint has no convolutions {network}/model.<i>.weight_orig.")
  return len(convs) + 1


def config_from_official(official_config: dict | None, tensors: Mapping[str, np.ndarray],
                         image_size: int | None = None) -> UGATITConfig:
  """UGATITConfig from the checkpoint's own shapes (UGATIT-pytorch has no config file; `official_config` unused).

  ch = DownBlock.1.weight's output channels; n_res = the number of UpBlock1_<i> blocks; light when FC.0 takes
  4 ch inputs, else full with image_size = 4 sqrt(FC.0 inputs / (4 ch)); the discriminators' layer counts
  from their convolutions. `image_size`: the light model's size (default 256); for the full model it must
  agree with the checkpoint. Loss weights and the optimizer are main.py's defaults (UGATITConfig's).
  """
  del official_config
  ch = _shape(tensors, "genA2B/DownBlock.1.weight")[0]
  n_res = len([k for k in tensors if re.fullmatch(r"genA2B/UpBlock1_\d+\.conv1\.weight", k)])
  fc_in = _shape(tensors, "genA2B/FC.0.weight")[1]
  c4 = 4 * ch
  light = fc_in == c4
  if light:
    size = int(image_size or DEFAULT_LIGHT_IMAGE_SIZE)
  else:
    side = math.isqrt(fc_in // c4) if fc_in % c4 == 0 else 0
    if side * side * c4 != fc_in:
      raise OfficialImportError(f"genA2B/FC.0.weight takes {fc_in} inputs, which is neither 4 ch = {c4} (light) "
                                f"nor (img_size / 4)^2 * {c4} (full).")
    size = 4 * side
    if image_size is not None and int(image_size) != size:
      raise OfficialImportError(f"the full U-GAT-IT checkpoint was trained at {size} px (its FC.0 fixes the "
                                f"input size); image_size={image_size} cannot be used.")
  try:
    return UGATITConfig(ch=ch, n_res=n_res, light=light, image_size=size,
                        global_dis_layers=_dis_layers(tensors, "disGA"),
                        local_dis_layers=_dis_layers(tensors, "disLA"))
  except ValueError as e:
    raise OfficialImportError(f"the checkpoint's architecture does not give a valid config: {e}") from e


def full_fc_kernel(w: np.ndarray, size: int, channels: int) -> np.ndarray:
  """The full generator's FC.0 weight [out, C h w] (inputs in NCHW order) -> Dense kernel [h w C, out] (NHWC).

  h = w = size // 4. A tensor of another size is only transposed (the caller's shape check names both shapes).
  """
  side = size // 4
  if w.ndim != 2 or w.shape[1] != channels * side * side:
    return dense_kernel(w)
  out = w.shape[0]
  return np.transpose(w.reshape(out, channels, side, side), (2, 3, 1, 0)).reshape(side * side * channels, out)


def _sn_v(v: np.ndarray, kernel_shape: tuple) -> np.ndarray:
  """torch `weight_v` -> our v; a vector of the wrong size is returned as it is (for the shape error)."""
  if np.size(v) != int(np.prod(kernel_shape[:-1])):
    return np.reshape(v, [-1])
  return torch_v_to_keras(v, kernel_shape)


def _generator_pairs(gen, prefix: str) -> list:
  pairs = []
  for i, block in zip((1, 5, 9), gen.down_sampling):
    pairs.append((block.conv.kernel, f"DownBlock.{i}.weight", conv_kernel))
  for i, res in enumerate(gen.encoder_blocks):
    pairs.append((res.block1.conv.kernel, f"DownBlock.{12 + i}.conv_block.1.weight", conv_kernel))
    pairs.append((res.block2.conv.kernel, f"DownBlock.{12 + i}.conv_block.5.weight", conv_kernel))
  pairs += [(gen.cam.gap_fc.kernel, "gap_fc.weight", dense_kernel),
            (gen.cam.gmp_fc.kernel, "gmp_fc.weight", dense_kernel),
            (gen.cam.conv1x1.kernel, "conv1x1.weight", conv_kernel),
            (gen.cam.conv1x1.bias, "conv1x1.bias", vector)]
  fc0 = dense_kernel if gen.light else functools.partial(full_fc_kernel, size=gen.image_size, channels=4 * gen.ch)
  pairs += [(gen.fc[0].kernel, "FC.0.weight", fc0), (gen.fc[1].kernel, "FC.2.weight", dense_kernel),
            (gen.gamma_fc.kernel, "gamma.weight", dense_kernel), (gen.beta_fc.kernel, "beta.weight", dense_kernel)]
  for i, block in enumerate(gen.decoder_blocks):
    name = f"UpBlock1_{i + 1}"
    pairs += [(block.conv1.conv.kernel, f"{name}.conv1.weight", conv_kernel),
              (block.norm1.rho, f"{name}.norm1.rho", vector),
              (block.conv2.conv.kernel, f"{name}.conv2.weight", conv_kernel), (block.norm2.rho, f"{name}.norm2.rho", vector)]
  for i, block in enumerate(gen.up_sampling):
    iln = block.norm_layer
    pairs += [(block.conv.kernel, f"UpBlock2.{2 + 5 * i}.weight", conv_kernel),
              (iln.rho, f"UpBlock2.{3 + 5 * i}.rho", vector), (iln.gamma, f"UpBlock2.{3 + 5 * i}.gamma", vector),
              (iln.beta, f"UpBlock2.{3 + 5 * i}.beta", vector)]
  pairs.append((gen.out.conv.kernel, "UpBlock2.11.weight", conv_kernel))
  return [(var, f"{prefix}/{key}", convert) for var, key, convert in pairs]


def _spectral_norm_pairs(sn, key: str, kernel_convert) -> list:
  """(variable, key, converter) of a SpectralNorm layer: weight_orig, weight_u, weight_v (and bias)."""
  kernel_shape = tuple(sn.layer.kernel.shape)
  pairs = [(sn.layer.kernel, f"{key}.weight_orig", kernel_convert), (sn.u, f"{key}.weight_u", vector),
           (sn.v, f"{key}.weight_v", functools.partial(_sn_v, kernel_shape=kernel_shape))]
  if sn.layer.use_bias:
    pairs.append((sn.layer.bias, f"{key}.bias", vector))
  return pairs


def _discriminator_pairs(dis, prefix: str) -> list:
  pairs = []
  for i, block in enumerate(dis.blocks):
    pairs += _spectral_norm_pairs(block.conv, f"model.{3 * i + 1}", conv_kernel)
  pairs += _spectral_norm_pairs(dis.cam.gap_fc, "gap_fc", dense_kernel)
  pairs += _spectral_norm_pairs(dis.cam.gmp_fc, "gmp_fc", dense_kernel)
  pairs += [(dis.cam.conv1x1.kernel, "conv1x1.weight", conv_kernel), (dis.cam.conv1x1.bias, "conv1x1.bias", vector)]
  pairs += _spectral_norm_pairs(dis.out.conv, "conv", conv_kernel)
  return [(var, f"{prefix}/{key}", convert) for var, key, convert in pairs]


def official_variables(model) -> list:
  """[(variable, "<official network>/<key>", converter)] for every variable of a built UGATIT.

  The one map between the official names and ours: `load_official` fills the model with it; the equivalence
  tests also use it to read the official optimizer state and gradients.
  """
  pairs = []
  for network, ours in NETWORKS.items():
    net = getattr(model, ours)
    pairs += _generator_pairs(net, network) if network.startswith("gen") else _discriminator_pairs(net, network)
  return pairs


def load_official(model, tensors: Mapping[str, np.ndarray], source: str = "the official checkpoint") -> None:
  """Fills every variable of a built UGATIT from `official_tensors(...)`; every tensor is used exactly once.

  Raises OfficialImportError naming the key and both shapes on a mismatch, or the first unused tensor or
  unfilled variable.
  """
  weights = OfficialWeights(tensors, model.variables, source)
  for variable, key, convert in official_variables(model):
    weights.set(variable, key, convert)
  weights.finish()


__all__ = ["official_tensors", "config_from_official", "load_official", "official_variables", "full_fc_kernel"]
