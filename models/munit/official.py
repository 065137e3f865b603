"""NVlabs/MUNIT checkpoints -> our MUNITModel (the import stage's family module; see models/official.py).

The official trainer saves `gen_%08d.pt` = {"a": gen_a.state_dict(), "b": gen_b.state_dict()} and
`dis_%08d.pt` = {"a": dis_a..., "b": dis_b...} (trainer.py `save`); test.py needs only the generators. Official
state-dict names (networks.py, `AdaINGen` / `MsImageDis`) and our variables, for n_downsample = n, n_res = r:

  enc_style.model.{0..4}.conv.{weight,bias}        style_encoder.conv_in, down0..down3 (ConvBlock conv)
  enc_style.model.6.{weight,bias}                  style_encoder.conv_out (1x1 conv on the pooled 1x1 map: Dense)
  enc_content.model.0.conv                         content_encoder.conv_in
  enc_content.model.{1..n}.conv                    content_encoder.down{0..n-1}
  enc_content.model.{n+1}.model.{j}.model.{0,1}.conv   content_encoder.res{j}.conv1 / conv2
  dec.model.0.model.{j}.model.{0,1}.conv           decoder.adain_res{j}.conv1 / conv2
  dec.model.0.model.{j}.model.{0,1}.norm.running_{mean,var}   AdaIN's unused dummy buffers: skipped
  dec.model.{2 + 2i}.conv, .norm.{gamma,beta}      decoder.up{i} conv and MUNITLayerNorm (2i + 1: nn.Upsample)
  dec.model.{2n + 1}.conv                          decoder.conv_out
  mlp.model.{0,1,2}.fc.{weight,bias}               mlp.fc0..fc2 (Dense)
  cnns.{s}.{i}.conv.{weight,bias}, i < n_layer     dis scale{s}_conv{i}
  cnns.{s}.{n_layer}.{weight,bias}                 dis scale{s}_out (1x1 Conv2D)
Checkpoints written by PyTorch 0.3 also hold instance-norm running statistics in enc_content (test.py's
pytorch03_to_pytorch04 drops them); they are skipped too. Everything else must match exactly once.

The architecture comes from the run's YAML (`gen`, `dis`, crop size, loss weights, optimizer) and is checked
against the checkpoint's shapes; options our networks do not implement (another activation, padding, GAN loss
or discriminator norm) are refused with the option named.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping

import numpy as np

from models.munit.config import MUNITConfig
from models.official import (OfficialImportError, OfficialWeights, conv_kernel, dense_from_conv1x1, dense_kernel,
                             prefixed, vector)

GENERATORS = ("gen_a", "gen_b")
DISCRIMINATORS = ("dis_a", "dis_b")
STYLE_OUT = 6  # enc_style.model index of the final 1x1 conv: conv7, 2 + 2 downsamplings, pool, conv (AdaINGen)
NORM_BUFFERS = ("running_mean", "running_var")
# YAML options our networks implement: (section, key) -> the only supported value.
SUPPORTED = {("gen", "activ"): "relu", ("gen", "pad_type"): "reflect", ("dis", "activ"): "lrelu",
             ("dis", "norm"): "none", ("dis", "gan_type"): "lsgan", ("dis", "pad_type"): "reflect",
             (None, "input_dim_a"): 3, (None, "input_dim_b"): 3}
LOSS_WEIGHTS = ("gan_w", "recon_x_w", "recon_s_w", "recon_c_w", "recon_x_cyc_w", "vgg_w")


def official_tensors(files: Mapping[str, Any]) -> dict[str, np.ndarray]:
  """{file name: torch.load result} -> {"gen_a/<key>", "gen_b/<key>"[, "dis_a/<key>", "dis_b/<key>"]: array}.

  Each file must be a trainer.py `save` file: {"a": state_dict, "b": state_dict}; generator or discriminator
  is told by its tensors (enc_*/dec/mlp vs cnns.*). One generator file is required, one discriminator file is
  optional.
  """
  found: dict[str, str] = {}
  tensors: dict[str, np.ndarray] = {}
  for name, obj in sorted(files.items()):
    if not isinstance(obj, Mapping) or not {"a", "b"} <= set(obj):
      hint = (" (optimizer.pt holds Adam state, not weights)" if isinstance(obj, Mapping) and "gen" in obj
              else "")
      raise OfficialImportError(f"{name} is not a MUNIT gen_*.pt / dis_*.pt file ({{'a': state_dict, 'b': "
                                f"state_dict}}){hint}; pass the files trainer.py's save wrote.")
    keys = set(obj["a"]) | set(obj["b"])
    kind = ("gen" if any(k.startswith(("enc_style.", "enc_content.", "dec.", "mlp.")) for k in keys)
            else "dis" if any(k.startswith("cnns.") for k in keys) else None)
    if kind is None:
      raise OfficialImportError(f"{name} holds neither MUNIT generators (enc_style.*, enc_content.*, dec.*, "
                                f"mlp.*) nor discriminators (cnns.*); is it a MUNIT checkpoint?")
    if kind in found:
      raise OfficialImportError(f"two {kind} files given ({found[kind]} and {name}); pass one gen_*.pt and at "
                                f"most one dis_*.pt of the same iteration.")
    found[kind] = name
    for domain in ("a", "b"):
      tensors.update(prefixed(f"{kind}_{domain}", {k: np.asarray(v) for k, v in obj[domain].items()}))
  if "gen" not in found:
    raise OfficialImportError(f"no generator file among {', '.join(sorted(files)) or 'the inputs'}; pass the "
                              f"gen_*.pt that trainer.py saved (dis_*.pt is optional).")
  return tensors


def _count(tensors: Mapping[str, np.ndarray], template: str, start: int = 0) -> int:
  """How many consecutive i >= start have template.format(i) in tensors."""
  i = start
  while template.format(i) in tensors:
    i += 1
  return i - start


def _shape(tensors: Mapping[str, np.ndarray], key: str) -> tuple:
  if key not in tensors:
    raise OfficialImportError(f"the checkpoint has no tensor {key!r}; is it a MUNIT AdaINGen / MsImageDis "
                              f"checkpoint?")
  return tuple(np.shape(tensors[key]))


def architecture_from_tensors(tensors: Mapping[str, np.ndarray]) -> dict[str, int]:
  """The architecture that the checkpoint's gen_a (and dis_a, if present) shapes imply."""
  n_downsample = _count(tensors, "gen_a/enc_content.model.{}.conv.weight", 1)
  arch = {"dim": _shape(tensors, "gen_a/enc_content.model.0.conv.weight")[0],
          "style_dim": _shape(tensors, f"gen_a/enc_style.model.{STYLE_OUT}.weight")[0],
          "mlp_dim": _shape(tensors, "gen_a/mlp.model.0.fc.weight")[0],
          "n_downsample": n_downsample,
          "n_res": _count(tensors, f"gen_a/enc_content.model.{n_downsample + 1}.model.{{}}.model.0.conv.weight")}
  if "dis_a/cnns.0.0.conv.weight" in tensors:
    arch.update(dis_dim=_shape(tensors, "dis_a/cnns.0.0.conv.weight")[0],
                dis_n_layer=_count(tensors, "dis_a/cnns.0.{}.conv.weight"),
                dis_num_scales=_count(tensors, "dis_a/cnns.{}.0.conv.weight"))
  return arch


def _yaml(config: Mapping, section: str | None, key: str, default: Any = None):
  node = config.get(section, {}) if section else config
  if not isinstance(node, Mapping) or (key not in node and default is None):
    where = f"{section}.{key}" if section else key
    raise OfficialImportError(f"the official config has no {where!r}; pass the YAML the run was trained with.")
  return node.get(key, default)


def config_from_official(official_config: Mapping | None, tensors: Mapping[str, np.ndarray],
                         image_size: int | None = None) -> MUNITConfig:
  """MUNITConfig from the run's YAML (gen/dis sections, crop size, loss weights, Adam, lr policy, iterations),
  checked against the checkpoint's shapes.

  Args:
    official_config: the parsed YAML (required: the discriminator layout and loss weights are only there).
    tensors: `official_tensors(...)`.
    image_size: the square size to train/export at (default: crop_image_height = crop_image_width).
  """
  if not official_config:
    raise OfficialImportError("MUNIT needs the run's YAML config (the discriminator layout, loss weights and "
                              "optimizer are only there); pass it as the official config.")
  for (section, key), want in SUPPORTED.items():
    got = _yaml(official_config, section, key, want)
    if got != want:
      where = f"{section}.{key}" if section else key
      raise OfficialImportError(f"the official config sets {where}: {got!r}; our MUNIT implements only {want!r}.")
  if image_size is None:
    height, width = _yaml(official_config, None, "crop_image_height"), _yaml(official_config, None, "crop_image_width")
    if height != width:
      raise OfficialImportError(f"the official crop is {height}x{width}, not square; pass an image size.")
    image_size = height
  gen, dis = official_config.get("gen") or {}, official_config.get("dis") or {}
  values = {"dim": gen.get("dim"), "style_dim": gen.get("style_dim"), "mlp_dim": gen.get("mlp_dim"),
            "n_downsample": gen.get("n_downsample"), "n_res": gen.get("n_res"), "dis_dim": dis.get("dim"),
            "dis_n_layer": dis.get("n_layer"), "dis_num_scales": dis.get("num_scales")}
  for name, value in architecture_from_tensors(tensors).items():
    if values[name] is not None and int(values[name]) != int(value):
      raise OfficialImportError(f"the official config says {name}={values[name]} but the checkpoint's shapes say "
                                f"{value}: the YAML is not the one this checkpoint was trained with.")
    values[name] = value
  missing = sorted(k for k, v in values.items() if v is None)
  if missing:
    raise OfficialImportError(f"the official config lacks {', '.join(missing)} (and the checkpoint cannot tell).")
  policy = official_config.get("lr_policy") or "constant"  # utils.get_scheduler: no policy = constant
  kwargs = {k: int(v) for k, v in values.items()}
  kwargs.update({w: float(official_config.get(w, 0.0)) for w in LOSS_WEIGHTS})
  kwargs.update(lr=float(_yaml(official_config, None, "lr")), beta1=float(_yaml(official_config, None, "beta1")),
                beta2=float(_yaml(official_config, None, "beta2")),
                weight_decay=float(_yaml(official_config, None, "weight_decay")), lr_policy=str(policy),
                max_iter=int(_yaml(official_config, None, "max_iter")),
                batch_size=int(_yaml(official_config, None, "batch_size")), image_size=int(image_size))
  if policy == "step":
    kwargs.update(step_size=int(_yaml(official_config, None, "step_size")),
                  gamma=float(_yaml(official_config, None, "gamma")))
  try:
    return MUNITConfig(**kwargs)
  except ValueError as e:
    raise OfficialImportError(f"the official config does not give a valid MUNIT model here: {e}") from e


def weight_map(model, discriminators: bool = True) -> list[tuple[Any, str, Callable[[np.ndarray], np.ndarray]]]:
  """(variable, official key, torch -> Keras converter) for every variable of the generators (and
  discriminators): the one place that pairs our variables with official names (also used to compare gradients
  and optimizer states with the official trainer's)."""
  cfg = model.config
  pairs = []

  def conv(layer, key):  # FastConv2D / Conv2D with bias
    pairs.extend([(layer.kernel, f"{key}.weight", conv_kernel), (layer.bias, f"{key}.bias", vector)])

  def dense(layer, key, convert):
    pairs.extend([(layer.kernel, f"{key}.weight", convert), (layer.bias, f"{key}.bias", vector)])

  for net in GENERATORS:
    gen = getattr(model, net)
    style, content, dec = gen.style_encoder, gen.content_encoder, gen.decoder
    for i, block in enumerate(style.blocks):
      conv(block.conv, f"{net}/enc_style.model.{i}.conv")
    dense(style.out, f"{net}/enc_style.model.{STYLE_OUT}", dense_from_conv1x1)
    n = cfg.n_downsample
    for i, block in enumerate(content.blocks[:n + 1]):
      conv(block.conv, f"{net}/enc_content.model.{i}.conv")
    for j, res in enumerate(content.blocks[n + 1:]):
      conv(res.block1.conv, f"{net}/enc_content.model.{n + 1}.model.{j}.model.0.conv")
      conv(res.block2.conv, f"{net}/enc_content.model.{n + 1}.model.{j}.model.1.conv")
    for j, res in enumerate(dec.res_blocks):
      conv(res.conv1, f"{net}/dec.model.0.model.{j}.model.0.conv")
      conv(res.conv2, f"{net}/dec.model.0.model.{j}.model.1.conv")
    for i, up in enumerate(dec.up_blocks[1::2]):
      conv(up.conv, f"{net}/dec.model.{2 + 2 * i}.conv")
      pairs.extend([(up.norm_layer.gamma, f"{net}/dec.model.{2 + 2 * i}.norm.gamma", vector),
                    (up.norm_layer.beta, f"{net}/dec.model.{2 + 2 * i}.norm.beta", vector)])
    conv(dec.conv_out.conv, f"{net}/dec.model.{2 * n + 1}.conv")
    for i, layer in enumerate(gen.mlp.denses):
      dense(layer, f"{net}/mlp.model.{i}.fc", dense_kernel)
  if discriminators:
    for net in DISCRIMINATORS:
      for s, layers in enumerate(getattr(model, net).scales):
        for i, block in enumerate(layers[:-1]):
          conv(block.conv, f"{net}/cnns.{s}.{i}.conv")
        conv(layers[-1], f"{net}/cnns.{s}.{len(layers) - 1}")
  return pairs


def _norm_buffer_keys(cfg: MUNITConfig) -> list[str]:
  """Keys of norm buffers the official networks may hold and we have no use for (see the module docstring)."""
  n = cfg.n_downsample
  norms = [f"dec.model.0.model.{j}.model.{k}.norm" for j in range(cfg.n_res) for k in (0, 1)]
  norms += [f"enc_content.model.{i}.norm" for i in range(n + 1)]
  norms += [f"enc_content.model.{n + 1}.model.{j}.model.{k}.norm" for j in range(cfg.n_res) for k in (0, 1)]
  return [f"{net}/{norm}.{buffer}" for net in GENERATORS for norm in norms for buffer in NORM_BUFFERS]


def load_official(model, tensors: Mapping[str, np.ndarray], source: str = "the official checkpoint") -> None:
  """Fills model.gen_a, gen_b (and dis_a, dis_b when `tensors` has discriminators) from `official_tensors(...)`.

  Every official tensor is used exactly once (norm buffers skipped) and every generator (discriminator)
  variable filled exactly once, else OfficialImportError naming the key and both shapes. Without a
  discriminator file the discriminators keep their initialization.
  """
  with_dis = any(k.startswith(tuple(f"{d}/" for d in DISCRIMINATORS)) for k in tensors)
  variables = [v for net in GENERATORS + (DISCRIMINATORS if with_dis else ()) for v in getattr(model, net).variables]
  weights = OfficialWeights(tensors, variables, source)
  for variable, key, convert in weight_map(model, discriminators=with_dis):
    weights.set(variable, key, convert)
  for key in _norm_buffer_keys(model.config):
    if weights.has(key):
      weights.skip(key)
  weights.finish()
