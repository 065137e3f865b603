"""Importing checkpoints of the official UNIT code (mingyuliutw/UNIT branch version_02, COCOGANTrainer).

`COCOGANTrainer.save(prefix, it)` writes two `state_dict`s: `<prefix>_gen_<it+1>.pkl` (COCOResGen) and
`<prefix>_dis_<it+1>.pkl` (COCODis or COCOMsDis); the role comes from "gen" / "dis" in the file name. The
discriminator is optional (translation needs only the generator; without it dis_a/dis_b keep their fresh
initialization). Official names -> our networks (torch layouts converted by models.official):

  encode_A.0.model.0            encoder_a conv_in (7x7 s1, LeakyReLU)         [same for B / encoder_b]
  encode_A.<i>.model.0          encoder_a down<i>, i = 1 .. n_enc_front_blk - 1 (3x3 s2, IN, ReLU)
  encode_A.<f + j>.model.0 / 3  encoder_a res<j>: conv1 / conv2 (INSResBlock), f = n_enc_front_blk
  enc_shared.<j>.model.0 / 3    shared_encoder res<j> (then GaussianNoiseLayer: no weights)
  dec_shared.<j>.model.0 / 3    shared_decoder res<j>
  decode_A.<j>.model.0 / 3      generator_a res<j>, j < n_gen_res_blk
  decode_A.<r + i>.model.0      generator_a up<i> (3x3 s2 ConvTranspose2d, IN, ReLU), r = n_gen_res_blk
  decode_A.<r + n_gen_front_blk - 1>   generator_a conv_out (1x1 ConvTranspose2d, then Tanh)
  model_A.<i>.model.0, model_A.<n_layer>                   dis_a scale 0 (COCODis)
  model_1_A / model_2_A / model_4_A (same inner names)     dis_a scales 0, 1, 2 (COCOMsDis)

Checkpoints written by torch <= 0.3 (what version_02 ran on) also hold each InstanceNorm's `running_mean` /
`running_var` buffers, which that torch kept but never read (`use_running_stats=False`); they are accepted and
skipped. The architecture comes from the official YAML (`train.hyperparameters.gen/dis`), the loss weights, lr and
batch size from its hyperparameters, Adam's betas (0.5, 0.999) and weight decay 1e-4 from cocogan_trainer.py (hard
coded there), the image size from the data section's crop size.
"""

from __future__ import annotations

import os
import re
from typing import Any, Mapping

import numpy as np

from models.official import (OfficialImportError, OfficialWeights, conv_kernel, conv_transpose_kernel, prefixed,
                             vector)
from models.unit.config import UNITConfig

ROLES = ("gen", "dis")
DIS_SCALES = {"COCODis": 1, "COCOMsDis": 3}
MS_SCALE_NAMES = ("model_1", "model_2", "model_4")  # COCOMsDis: full, 1/2, 1/4 resolution
IN_BUFFERS = ("running_mean", "running_var", "num_batches_tracked")
# cocogan_trainer.py: torch.optim.Adam(..., betas=(0.5, 0.999), weight_decay=0.0001) for both networks.
TRAINER_ADAM = {"beta1": 0.5, "beta2": 0.999, "weight_decay": 1e-4}


def file_role(name: str) -> str:
  """"gen" or "dis" from an official file name (`cat2tiger_gen_00500000.pkl` -> "gen")."""
  base = os.path.basename(name)
  roles = [r for r in ROLES if re.search(rf"(?:^|[_.\-]){r}(?:[_.\-]|$)", base)]
  if len(roles) != 1:
    raise OfficialImportError(f"cannot tell whether {base!r} is the generator or the discriminator: UNIT's "
                              f"COCOGANTrainer.save names them <prefix>_gen_<iteration>.pkl and "
                              f"<prefix>_dis_<iteration>.pkl; keep 'gen' or 'dis' in the file names.")
  return roles[0]


def official_tensors(files: Mapping[str, Any]) -> dict[str, np.ndarray]:
  """{file name: state_dict as numpy} -> {"gen/<key>" | "dis/<key>": array}; one gen file, at most one dis file."""
  tensors: dict[str, np.ndarray] = {}
  seen: dict[str, str] = {}
  for name, state in files.items():
    role = file_role(name)
    if role in seen:
      raise OfficialImportError(f"two {role} files ({seen[role]!r}, {name!r}); pass one checkpoint of each.")
    if not isinstance(state, Mapping):
      raise OfficialImportError(f"{name!r} is not a state_dict (got {type(state).__name__}); pass the .pkl files "
                                f"COCOGANTrainer.save wrote.")
    seen[role] = name
    tensors.update(prefixed(role, {k: np.asarray(v) for k, v in state.items()}))
  if "gen" not in seen:
    raise OfficialImportError(f"no generator checkpoint among {', '.join(sorted(files)) or 'no files'}: pass "
                              f"<prefix>_gen_<iteration>.pkl (and optionally the _dis_ file).")
  return tensors


def _hyperparameters(official_config: Mapping | None) -> tuple[dict, dict]:
  """(hyperparameters, datasets) sections of an official version_02 YAML."""
  if not official_config:
    raise OfficialImportError("UNIT needs the official YAML of the run (e.g. exps/unit/cat2tiger.yaml, "
                              "--official_config): the checkpoint alone does not hold the loss weights.")
  train = official_config.get("train", official_config)
  if not isinstance(train, Mapping) or "hyperparameters" not in train:
    raise OfficialImportError("the official config has no train.hyperparameters section; pass the YAML the "
                              "official cocogan_train.py was run with.")
  return dict(train["hyperparameters"]), dict(train.get("datasets") or {})


def _require(section: Mapping, key: str, where: str):
  if key not in section:
    raise OfficialImportError(f"the official config has no {where}.{key}.")
  return section[key]


def _image_size(datasets: Mapping, image_size: int | None) -> int:
  """The square crop size of the training data (train_a), unless image_size is given."""
  if image_size:
    return int(image_size)
  spec = datasets.get("train_a") or {}
  h, w = spec.get("crop_image_height"), spec.get("crop_image_width")
  if h is None or w is None or h != w:
    raise OfficialImportError(f"the official config's datasets.train_a crop is {h} x {w}, not square; pass "
                              f"--image_size for the exported model.")
  return int(h)


def config_from_official(official_config: Mapping | None, tensors: Mapping[str, np.ndarray],
                         image_size: int | None = None) -> UNITConfig:
  """UNITConfig of an official version_02 run: COCOResGen + COCODis/COCOMsDis hyperparameters, loss weights, lr."""
  hp, datasets = _hyperparameters(official_config)
  gen, dis = dict(_require(hp, "gen", "train.hyperparameters")), dict(_require(hp, "dis", "train.hyperparameters"))
  if hp.get("trainer", "COCOGANTrainer") != "COCOGANTrainer":
    raise OfficialImportError(f"trainer {hp['trainer']!r} is not supported; only COCOGANTrainer (the image "
                              f"translation trainer) is.")
  if gen.get("name") != "COCOResGen":
    raise OfficialImportError(f"generator {gen.get('name')!r} is not supported; only COCOResGen (the paper's "
                              f"network, exps/unit/cat2tiger.yaml) is.")
  if dis.get("name") not in DIS_SCALES:
    raise OfficialImportError(f"discriminator {dis.get('name')!r} is not supported; use one of "
                              f"{', '.join(DIS_SCALES)}.")
  for section, keys in ((gen, ("input_dim_a", "input_dim_b")), (dis, ("input_dim_a", "input_dim_b"))):
    for key in keys:
      if section.get(key, 3) != 3:
        raise OfficialImportError(f"{section['name']}.{key} = {section[key]}: only RGB images (3) are supported.")
  if gen.get("res_dropout_ratio", 0):
    raise OfficialImportError(f"res_dropout_ratio = {gen['res_dropout_ratio']}: ResBlock dropout is not "
                              f"supported (the paper's COCOResGen configs use none).")
  arch = {k: int(_require(gen, k, "gen")) for k in ("ch", "n_enc_front_blk", "n_enc_res_blk", "n_enc_shared_blk",
                                                    "n_gen_shared_blk", "n_gen_res_blk", "n_gen_front_blk")}
  weights = {k: float(_require(hp, k, "train.hyperparameters")) for k in
             ("gan_w", "ll_direct_link_w", "kl_direct_link_w", "ll_cycle_link_w", "kl_cycle_link_w", "lr")}
  if not any(k.startswith("gen/") for k in tensors):
    raise OfficialImportError("no generator tensors: pass the <prefix>_gen_<iteration>.pkl file.")
  try:
    return UNITConfig(**arch, dis_ch=int(_require(dis, "ch", "dis")), dis_n_layer=int(_require(dis, "n_layer", "dis")),
                      dis_num_scales=DIS_SCALES[dis["name"]], **weights, **TRAINER_ADAM, lr_policy="constant",
                      max_iter=int(hp.get("max_iterations", UNITConfig.max_iter)),
                      batch_size=int(hp.get("batch_size", 1)), image_size=_image_size(datasets, image_size))
  except ValueError as e:
    raise OfficialImportError(f"the official configuration does not fit UNIT: {e}") from e


def _conv(pairs: list, conv, key: str, convert=conv_kernel) -> None:
  """Kernel and bias of one Keras conv from `<key>.weight` / `<key>.bias`."""
  pairs += [(conv.kernel, f"{key}.weight", convert), (conv.bias, f"{key}.bias", vector)]


def _res_block(pairs: list, norms: list, block, key: str) -> None:
  """INSResBlock `<key>.model`: [0] conv, [1] IN, [2] ReLU, [3] conv, [4] IN."""
  _conv(pairs, block.block1.conv, f"{key}.model.0")
  _conv(pairs, block.block2.conv, f"{key}.model.3")
  norms += [f"{key}.model.1", f"{key}.model.4"]


def _generator_map(pairs: list, norms: list, model) -> None:
  cfg = model.config
  for domain, encoder, generator in (("A", model.encoder_a, model.generator_a),
                                     ("B", model.encoder_b, model.generator_b)):
    enc = f"gen/encode_{domain}"
    for i, block in enumerate(encoder.blocks):
      if i == 0:  # LeakyReLUConv2d: `model` [0] conv, [1] LeakyReLU
        _conv(pairs, block.conv, f"{enc}.0.model.0")
      elif i < cfg.n_enc_front_blk:  # ReLUINSConv2d: `model` [0] conv, [1] IN, [2] ReLU
        _conv(pairs, block.conv, f"{enc}.{i}.model.0")
        norms.append(f"{enc}.{i}.model.1")
      else:
        _res_block(pairs, norms, block, f"{enc}.{i}")
    dec = f"gen/decode_{domain}"
    for i, block in enumerate(generator.blocks):
      if i < cfg.n_gen_res_blk:
        _res_block(pairs, norms, block, f"{dec}.{i}")
      elif i < len(generator.blocks) - 1:  # ReLUINSConvTranspose2d: `model` [0] conv transpose, [1] IN, [2] ReLU
        _conv(pairs, block.conv, f"{dec}.{i}.model.0", conv_transpose_kernel)
        norms.append(f"{dec}.{i}.model.1")
      else:  # the bare 1x1 nn.ConvTranspose2d before Tanh
        _conv(pairs, block.conv, f"{dec}.{i}", conv_transpose_kernel)
  for name, shared in (("enc_shared", model.shared_encoder), ("dec_shared", model.shared_decoder)):
    for j, block in enumerate(shared.blocks):
      _res_block(pairs, norms, block, f"gen/{name}.{j}")


def _discriminator_map(pairs: list, model) -> None:
  scales = model.config.dis_num_scales
  if scales not in (1, len(MS_SCALE_NAMES)):
    raise OfficialImportError(f"dis_num_scales = {scales}: the official discriminators have 1 (COCODis) or 3 "
                              f"(COCOMsDis) scales.")
  for domain, dis in (("A", model.dis_a), ("B", model.dis_b)):
    for s, layers in enumerate(dis.scales):
      net = f"dis/model_{domain}" if scales == 1 else f"dis/{MS_SCALE_NAMES[s]}_{domain}"
      for i, layer in enumerate(layers[:-1]):  # LeakyReLUConv2d: `model` [0] conv, [1] LeakyReLU
        _conv(pairs, layer.conv, f"{net}.{i}.model.0")
      _conv(pairs, layers[-1], f"{net}.{len(layers) - 1}")  # the final 1x1 nn.Conv2d -> 1


def weight_map(model, discriminator: bool = True) -> tuple[list, list]:
  """How official names fill `model` (a UNITModel).

  Returns:
    (pairs, norms): pairs = [(variable, official key, converter)] for every generator variable (and every
    discriminator variable when `discriminator`), keys prefixed "gen/" / "dis/" as official_tensors makes them;
    norms = the official names of the InstanceNorm2d modules (whose torch <= 0.3 buffers are skipped).
  """
  pairs: list = []
  norms: list = []
  _generator_map(pairs, norms, model)
  if discriminator:
    _discriminator_map(pairs, model)
  return pairs, norms


def load_official(model, tensors: Mapping[str, np.ndarray], source: str = "the official checkpoint") -> None:
  """Fills `model` (a UNITModel built from config_from_official) from official_tensors' output.

  Every official tensor is used exactly once and every generator variable (and, when the checkpoint has a
  discriminator, every discriminator variable) is filled exactly once; OfficialImportError otherwise, naming the
  key and both shapes.
  """
  has_dis = any(k.startswith("dis/") for k in tensors)
  pairs, norms = weight_map(model, discriminator=has_dis)
  variables = model.generator_variables + (model.discriminator_variables if has_dis else [])
  w = OfficialWeights(tensors, variables, source)
  for variable, key, convert in pairs:
    w.set(variable, key, convert)
  for norm in norms:  # torch <= 0.3 InstanceNorm2d buffers, never read by the official code
    for buffer in IN_BUFFERS:
      if w.has(f"{norm}.{buffer}"):
        w.skip(f"{norm}.{buffer}")
  w.finish()
