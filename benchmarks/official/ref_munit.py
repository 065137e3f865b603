"""MUNIT numbers from the official NVlabs/MUNIT code, for tests/test_official_munit.py (needs torch).

Called by benchmarks/official/make_fixtures.py with the official files (networks.py, trainer.py, utils.py, data.py,
test.py, configs/edges2shoes_folder.yaml) exported to `src_dir`, which is on sys.path. Everything is computed by
the official code itself; this script only drives it, records what it does and writes the numbers out:

  1. The official config: configs/edges2shoes_folder.yaml with the small architecture of `SMALL` (or, with
     --paper, the paper architecture at 64 px: `PAPER`), written next to the fixtures as `<fixture>.yaml`.
  2. `MUNIT_Trainer(config)` after `torch.manual_seed(0)`; WARMUP_ITERATIONS iterations exactly as train.py runs
     them (`update_learning_rate()`, `dis_update`, `gen_update`) on fixed batches; then `trainer.save`, whose
     gen_%08d.pt / dis_%08d.pt are read back with torch.load and stored as `<fixture>_weights.npz`
     (keys `<file>::<a|b>::<state_dict key>`), and whose optimizer.pt gives the Adam moments.
  3. Forward outputs of both generators (content, style, MLP AdaIN parameters, decoded images) and of every
     discriminator scale for fixed inputs.
  4. One more full official iteration on a new batch with its random draws recorded (dis_update and gen_update
     each call torch.randn for their prior styles s_a, s_b), the losses (the trainer's loss_* attributes), the
     gradients (read in each optimizer's `step` before it runs), the learning rate each step used and the
     weights after the step.
  5. The official test.py (a2b, one random style, --seed 10, --output_only) run as a script on an input image
     with that checkpoint: the style it drew and the image it saves.

Layouts in `<fixture>_io.npz`: images NHWC float32 in [-1, 1], styles `[B, style_dim]`, AdaIN parameters
`[B, n]`, discriminator maps NHWC; per-parameter tensors (gradients, Adam moments, weights after the step) keep
torch's layout under `<grad|after|exp_avg|exp_avg_sq>/<gen_a|gen_b|dis_a|dis_b>/<state_dict key>`.

Shims (the official code was written for PyTorch 0.4 with torchvision and a CUDA GPU):
  * `.cuda()` of tensors and modules returns them unchanged (CPU);
  * `torch.utils.serialization.load_lua` (removed from torch; only for the VGG loss, off here) is a stub;
  * utils.get_config calls `yaml.load(stream)` without a Loader (an error in PyYAML >= 6): replaced by safe_load;
  * torchvision (test.py, utils.py imports; not installable next to the CPU torch here) is a stand-in module
    with what test.py calls, following torchvision's definitions: transforms.Resize (the input is made at the
    config's new_size, so it must be a no-op and is checked to be), ToTensor (HWC uint8 -> CHW / 255),
    Normalize ((x - mean) / std), Compose, and utils.save_image, which records the pixels torchvision would
    write: for `normalize=True` (as test.py calls it), x <- (x - min) / max(max - min, 1e-5) over the whole
    tensor (make_grid), then uint8 = clamp(x * 255 + 0.5, 0, 255) truncated; test.py writes them as a JPEG,
    recorded here before the lossy encoding (`serve_output`; `serve_output_plain` without the min-max stretch,
    `serve_output_float` the decoder's output).
"""

from __future__ import annotations

import contextlib
import os
import runpy
import sys
import tempfile
import types

import numpy as np
import yaml

FIXTURE = "munit"
PAPER_FIXTURE = "munit_paper"
WARMUP_ITERATIONS = 2
BATCH = 2
SERVE_SEED = 10
TORCHVISION_NOTE = "torchvision stand-in of benchmarks/official/ref_munit.py"

# The small test architecture (overrides of configs/edges2shoes_folder.yaml). step_size 3 makes the recorded
# iteration (t = 2, 0-based) the first with a halved lr under the official schedule (StepLR stepped before each
# update), so an off-by-one schedule is caught; recon_x_cyc_w > 0 exercises the cycle term; the larger lr and
# weight decay make the optimizer's terms visible in the weights after one step.
SMALL = {
    "gen": {"dim": 4, "mlp_dim": 8, "style_dim": 8, "n_downsample": 2, "n_res": 1},
    "dis": {"dim": 4, "n_layer": 3, "num_scales": 2},
    "crop_image_height": 32, "crop_image_width": 32, "new_size": 32, "batch_size": BATCH, "display_size": 2,
    "lr": 0.0005, "weight_decay": 0.001, "step_size": 3, "gamma": 0.5, "max_iter": 3, "recon_x_cyc_w": 10,
}
# Paper architecture (edges2shoes: dim 64, mlp 256, 4 res blocks, D 64 x 4 layers x 3 scales) at 64 px, the
# cycle term on (as configs/summer2winter_yosemite256_folder.yaml), batch 1 as in the paper.
PAPER = {"crop_image_height": 64, "crop_image_width": 64, "new_size": 64, "display_size": 1, "recon_x_cyc_w": 10,
         "batch_size": 1}


def _merge(base: dict, overrides: dict) -> dict:
  out = dict(base)
  for key, value in overrides.items():
    out[key] = _merge(base.get(key, {}), value) if isinstance(value, dict) else value
  return out


@contextlib.contextmanager
def _shims(torch, captured: dict):
  """The CPU / torchvision / load_lua stand-ins of the module docstring, removed on exit."""
  saved_modules = {n: sys.modules.get(n) for n in ("torchvision", "torchvision.transforms", "torchvision.utils")}
  saved_cuda = torch.Tensor.cuda, torch.nn.Module.cuda
  torch.Tensor.cuda = lambda self, *args, **kwargs: self
  torch.nn.Module.cuda = lambda self, *args, **kwargs: self

  import torch.utils.serialization as serialization  # pylint: disable=import-outside-toplevel

  def load_lua(*_args, **_kwargs):
    raise RuntimeError("load_lua (the VGG loss) is not available; the fixtures use vgg_w = 0.")

  had_load_lua = hasattr(serialization, "load_lua")
  if not had_load_lua:
    serialization.load_lua = load_lua

  transforms = types.ModuleType("torchvision.transforms")

  class Compose:
    def __init__(self, fns):
      self.fns = list(fns)

    def __call__(self, x):
      for fn in self.fns:
        x = fn(x)
      return x

  class Resize:
    def __init__(self, size):
      self.size = size

    def __call__(self, image):
      if min(image.size) != self.size:
        raise ValueError(f"{TORCHVISION_NOTE}: Resize({self.size}) of a {image.size} image is not a no-op; make "
                         f"the input with its shorter side = new_size.")
      return image

  class ToTensor:
    def __call__(self, image):
      return torch.from_numpy(np.asarray(image, np.uint8).copy()).permute(2, 0, 1).float().div(255)

  class Normalize:
    def __init__(self, mean, std):
      self.mean, self.std = torch.tensor(mean)[:, None, None], torch.tensor(std)[:, None, None]

    def __call__(self, x):
      return (x - self.mean) / self.std

  transforms.Compose, transforms.Resize, transforms.ToTensor, transforms.Normalize = (
      Compose, Resize, ToTensor, Normalize)

  vutils = types.ModuleType("torchvision.utils")

  def save_image(tensor, fp, padding=0, normalize=False, **kwargs):
    if kwargs or padding != 0 or tensor.dim() != 4 or tensor.size(0) != 1:
      raise ValueError(f"{TORCHVISION_NOTE}: only save_image of one image with padding=0 is supported.")
    grid = tensor.detach().clone()[0]
    if normalize:  # make_grid's norm_range(t, None) over the whole tensor
      low, high = float(grid.min()), float(grid.max())
      grid = grid.clamp(min=low, max=high).sub(low).div(max(high - low, 1e-5))
    to_uint8 = lambda t: t.mul(255).add_(0.5).clamp_(0, 255).permute(1, 2, 0).to("cpu", torch.uint8).numpy()
    captured.setdefault("saved", []).append({"path": str(fp), "tensor": tensor.detach().clone(),
                                             "pixels": to_uint8(grid),
                                             "pixels_plain": to_uint8(tensor.detach().clone()[0])})

  vutils.save_image = save_image
  torchvision = types.ModuleType("torchvision")
  torchvision.transforms, torchvision.utils = transforms, vutils
  torchvision.__doc__ = TORCHVISION_NOTE
  sys.modules.update({"torchvision": torchvision, "torchvision.transforms": transforms, "torchvision.utils": vutils})
  try:
    yield
  finally:
    torch.Tensor.cuda, torch.nn.Module.cuda = saved_cuda
    if not had_load_lua:
      del serialization.load_lua
    for name, module in saved_modules.items():
      if module is None:
        sys.modules.pop(name, None)
      else:
        sys.modules[name] = module


@contextlib.contextmanager
def _recording_randn(torch, draws: list):
  """torch.randn that appends a copy of every draw to `draws` (the official code calls torch.randn)."""
  original = torch.randn

  def randn(*args, **kwargs):
    out = original(*args, **kwargs)
    draws.append(out.detach().clone())
    return out

  torch.randn = randn
  try:
    yield
  finally:
    torch.randn = original


def _numpy(obj):
  """torch.load result -> the same nested dicts of numpy arrays."""
  if hasattr(obj, "detach"):
    return obj.detach().cpu().numpy()
  if isinstance(obj, dict):
    return {str(k): _numpy(v) for k, v in obj.items()}
  return obj


def _nhwc(t) -> np.ndarray:
  """torch NCHW images / maps (or [B, n]) -> NHWC (or [B, n]) float32 numpy."""
  a = t.detach().cpu().float().numpy()
  return np.transpose(a, (0, 2, 3, 1)) if a.ndim == 4 else a


def _code(t) -> np.ndarray:
  """A style code [B, C, 1, 1] (or [B, C]) -> [B, C] float32 numpy."""
  a = t.detach().cpu().float().numpy()
  return a.reshape(a.shape[0], -1)


def _images(rng, batch: int, size: int) -> np.ndarray:
  """Smooth random images `[B, 3, size, size]` in [-1, 1] (blocky colour fields plus a little noise)."""
  coarse = rng.uniform(-1, 1, (batch, 3, size // 4, size // 4))
  fine = np.repeat(np.repeat(coarse, 4, axis=2), 4, axis=3)
  return np.clip(0.8 * fine + 0.2 * rng.uniform(-1, 1, fine.shape), -1, 1).astype(np.float32)


def _parameter_names(trainer):
  """id(parameter) -> "<gen_a|gen_b|dis_a|dis_b>/<state_dict key>"."""
  names = {}
  for net in ("gen_a", "gen_b", "dis_a", "dis_b"):
    for key, p in getattr(trainer, net).named_parameters():
      names[id(p)] = f"{net}/{key}"
  return names


def _optimizer_params(opt):
  return [p for group in opt.param_groups for p in group["params"]]


def _adam_state(opt, names) -> dict:
  """exp_avg / exp_avg_sq per parameter name and the step count from the optimizer's state dict."""
  state = opt.state_dict()["state"]
  out, steps = {}, set()
  for index, p in enumerate(_optimizer_params(opt)):
    s = state[index]
    out[f"exp_avg/{names[id(p)]}"] = s["exp_avg"].numpy().copy()
    out[f"exp_avg_sq/{names[id(p)]}"] = s["exp_avg_sq"].numpy().copy()
    steps.add(int(s["step"]))
  if len(steps) != 1:
    raise RuntimeError(f"parameters of one optimizer have different Adam steps: {sorted(steps)}")
  return out, steps.pop()


def _capture_steps(opt, names, record: dict, kind: str):
  """Wraps opt.step: records every parameter's .grad (the last step's stay) and appends the lr (`lr/<kind>`, one
  per iteration, 0-based) before the official step runs."""
  original = opt.step

  def step(*args, **kwargs):
    for p in _optimizer_params(opt):
      record[f"grad/{names[id(p)]}"] = p.grad.detach().numpy().copy()
    record.setdefault(f"lr/{kind}", []).append(opt.param_groups[0]["lr"])
    return original(*args, **kwargs)

  opt.step = step


def _forward(torch, trainer, x_a, x_b, style_prior) -> dict:
  """Every network output for fixed inputs (eval mode, as test.py; MUNIT's networks behave the same in both)."""
  out = {}
  trainer.eval()
  with torch.no_grad():
    codes = {d: getattr(trainer, f"gen_{d}").encode(x) for d, x in (("a", x_a), ("b", x_b))}
    for d, x, other in (("a", x_a, "b"), ("b", x_b, "a")):
      gen, dis = getattr(trainer, f"gen_{d}"), getattr(trainer, f"dis_{d}")
      content, style = codes[d]
      translated = gen.decode(codes[other][0], style_prior)  # x_ba for d = a, x_ab for d = b
      out.update({f"fwd/{d}/content": _nhwc(content), f"fwd/{d}/style": _code(style),
                  f"fwd/{d}/adain_params": _nhwc(gen.mlp(style)),
                  f"fwd/{d}/adain_params_prior": _nhwc(gen.mlp(style_prior)),
                  f"fwd/{d}/recon": _nhwc(gen.decode(content, style)), f"fwd/{d}/translated": _nhwc(translated)})
      for kind, image in (("real", x), ("fake", translated)):
        for s, scale in enumerate(dis(image)):
          out[f"fwd/dis_{d}/{kind}/scale{s}"] = _nhwc(scale)
  trainer.train()
  return out


def _run_test_script(torch, src_dir, config_path, checkpoint, image_uint8, work, captured) -> dict:
  """Runs the official test.py (a2b, one random style, --seed SERVE_SEED) on one image; returns the serve_* arrays."""
  from PIL import Image  # pylint: disable=import-outside-toplevel
  import utils  # the official utils (on sys.path)  pylint: disable=import-outside-toplevel
  input_path, out_dir = os.path.join(work, "input.png"), os.path.join(work, "test_out")
  Image.fromarray(image_uint8).save(input_path)
  draws, captured["saved"] = [], []
  original_get_config, original_argv = utils.get_config, sys.argv
  utils.get_config = lambda path: yaml.safe_load(open(path, encoding="utf-8"))
  sys.argv = ["test.py", "--config", config_path, "--input", input_path, "--output_folder", out_dir,
              "--checkpoint", checkpoint, "--a2b", "1", "--seed", str(SERVE_SEED), "--num_style", "1",
              "--output_only"]
  try:
    with _recording_randn(torch, draws):
      runpy.run_path(os.path.join(src_dir, "test.py"), run_name="__main__")
  finally:
    utils.get_config, sys.argv = original_get_config, original_argv
  (saved,) = captured["saved"]
  if not saved["path"].endswith("output000.jpg"):
    raise RuntimeError(f"test.py saved {saved['path']}, expected output000.jpg")
  style = draws[-1]  # test.py: style_rand = torch.randn(num_style, style_dim, 1, 1), drawn last
  return {"serve_input": image_uint8[None], "serve_direction": np.array(["a2b"]),
          "serve_style": _code(style), "serve_seed": np.array(SERVE_SEED),
          # test.py's save_image(normalize=True) stretches each output to the full [0, 255] range (min-max)
          "serve_output": saved["pixels"][None],
          # the same image without that stretch (save_image(normalize=False)): clamp((x + 1) / 2 * 255 + 0.5)
          "serve_output_plain": saved["pixels_plain"][None],
          # what test.py decoded, before save_image: decode(content, style) in [-1, 1] (it saves (x + 1) / 2)
          "serve_output_float": (_nhwc(saved["tensor"]) * 2.0 - 1.0).astype(np.float32)}


def make(src_dir: str, out_dir: str, paper: bool = False) -> dict:
  """Writes `<fixture>.yaml`, `<fixture>_weights.npz` and `<fixture>_io.npz` into out_dir; returns a summary."""
  import torch  # pylint: disable=import-outside-toplevel
  torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
  fixture = PAPER_FIXTURE if paper else FIXTURE
  with open(os.path.join(src_dir, "configs", "edges2shoes_folder.yaml"), encoding="utf-8") as f:
    config = _merge(yaml.safe_load(f), PAPER if paper else SMALL)
  config["vgg_model_path"] = "."  # train.py / test.py set it; unused with vgg_w = 0
  size, batch, style_dim = config["crop_image_height"], config["batch_size"], config["gen"]["style_dim"]
  config_path = os.path.join(out_dir, f"{fixture}.yaml")
  with open(config_path, "w", encoding="utf-8") as f:
    f.write(f"# {'Paper' if paper else 'Small'} MUNIT config for the equivalence fixtures, written by "
            f"benchmarks/official/ref_munit.py\n# (configs/edges2shoes_folder.yaml of NVlabs/MUNIT with "
            f"{sorted(PAPER if paper else SMALL)} changed).\n")
    yaml.safe_dump({k: v for k, v in config.items() if k != "vgg_model_path"}, f, sort_keys=False)

  captured: dict = {}
  rng = np.random.default_rng(0)
  with _shims(torch, captured), tempfile.TemporaryDirectory() as work:
    from trainer import MUNIT_Trainer  # the official trainer (on sys.path)  pylint: disable=import-outside-toplevel
    torch.manual_seed(0)
    trainer = MUNIT_Trainer(config)
    names = _parameter_names(trainer)
    record: dict = {}
    _capture_steps(trainer.dis_opt, names, record, "dis")
    _capture_steps(trainer.gen_opt, names, record, "gen")

    # 2. Warm-up iterations as train.py runs them, then the official save.
    for _ in range(WARMUP_ITERATIONS):
      x_a, x_b = (torch.from_numpy(_images(rng, batch, size)) for _ in range(2))
      trainer.update_learning_rate()
      trainer.dis_update(x_a, x_b, config)
      trainer.gen_update(x_a, x_b, config)
    trainer.save(work, WARMUP_ITERATIONS - 1)
    files = {name: _numpy(torch.load(os.path.join(work, name), map_location="cpu", weights_only=True))
             for name in (f"gen_{WARMUP_ITERATIONS:08d}.pt", f"dis_{WARMUP_ITERATIONS:08d}.pt")}
    weights = {f"{name}::{net}::{key}": value for name, nets in files.items() for net, state in nets.items()
               for key, value in state.items()}
    optimizer_file = torch.load(os.path.join(work, "optimizer.pt"), map_location="cpu", weights_only=True)
    trainer.gen_opt.load_state_dict(optimizer_file["gen"])  # a no-op round trip: what resume would load
    trainer.dis_opt.load_state_dict(optimizer_file["dis"])
    io = {}
    for kind, opt in (("gen", trainer.gen_opt), ("dis", trainer.dis_opt)):
      state, step = _adam_state(opt, names)
      io.update(state)
      io[f"adam_step/{kind}"] = np.array(step)

    # 3. Forward outputs for fixed inputs.
    x_a, x_b = (torch.from_numpy(_images(rng, batch, size)) for _ in range(2))
    style_prior = torch.from_numpy(rng.standard_normal((batch, style_dim, 1, 1)).astype(np.float32))
    io.update({"x_a": _nhwc(x_a), "x_b": _nhwc(x_b), "style_prior": _code(style_prior)})
    io.update(_forward(torch, trainer, x_a, x_b, style_prior))

    # 4. One more full official iteration, random draws recorded.
    x_a, x_b = (torch.from_numpy(_images(rng, batch, size)) for _ in range(2))
    draws: list = []
    trainer.update_learning_rate()
    with _recording_randn(torch, draws):
      trainer.dis_update(x_a, x_b, config)
      trainer.gen_update(x_a, x_b, config)
    if len(draws) != 4 or any(tuple(d.shape) != (batch, style_dim, 1, 1) for d in draws):
      raise RuntimeError(f"expected 4 prior style draws of [{batch}, {style_dim}, 1, 1], got "
                         f"{[tuple(d.shape) for d in draws]}")
    io.update({"train_x_a": _nhwc(x_a), "train_x_b": _nhwc(x_b)})
    io.update({f"draw/{name}": _code(d) for name, d in zip(("dis_s_a", "dis_s_b", "gen_s_a", "gen_s_b"), draws)})
    losses = [a for a in dir(trainer) if a.startswith("loss_")]
    io.update({f"loss/{a[len('loss_'):]}": np.array(float(getattr(trainer, a)), np.float64) for a in losses})
    io.update({k: np.asarray(v) for k, v in record.items()})
    for net in ("gen_a", "gen_b", "dis_a", "dis_b"):
      for key, p in getattr(trainer, net).named_parameters():
        io[f"after/{net}/{key}"] = p.detach().numpy().copy()

    # 5. The official test.py on one image with the saved generators.
    serve_image = np.clip(np.round((np.transpose(_images(rng, 1, size)[0], (1, 2, 0)) + 1) * 127.5), 0,
                          255).astype(np.uint8)
    io.update(_run_test_script(torch, src_dir, config_path, os.path.join(work, f"gen_{WARMUP_ITERATIONS:08d}.pt"),
                               serve_image, work, captured))

  weights_path, io_path = (os.path.join(out_dir, f"{fixture}_{part}.npz") for part in ("weights", "io"))
  save = np.savez if paper else np.savez_compressed
  save(weights_path, **weights)
  save(io_path, **io)
  return {"fixture": fixture, "config": os.path.basename(config_path), "weights_tensors": len(weights),
          "io_arrays": len(io), "bytes": os.path.getsize(weights_path) + os.path.getsize(io_path),
          "losses": {k[len("loss/"):]: float(v) for k, v in io.items() if k.startswith("loss/")},
          "lr": {k: [float(x) for x in np.atleast_1d(io[k])] for k in ("lr/gen", "lr/dis")},
          "parameters": int(sum(v.size for k, v in io.items() if k.startswith("after/")))}
