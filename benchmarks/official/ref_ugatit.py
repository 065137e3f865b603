"""U-GAT-IT fixtures from znxlwm/UGATIT-pytorch itself (its UGATIT class drives the training; needs torch).

`make(src_dir, out_dir, paper)` is called by benchmarks/official/make_fixtures.py with the official files
(UGATIT.py, networks.py, utils.py, dataset.py) exported to `src_dir` and on sys.path. Per variant (light, full):

 1. `UGATIT(args)` with a small args namespace (as main.py builds it) and `build_model()` in a temp working
    directory holding dataset/<name>/{trainA,trainB,testA,testB} (one PNG each; testA is the serving input).
    UGATIT.py hard-codes the discriminators' n_layers (7 global, 5 local), too deep for small images: its
    `Discriminator` name is rebound to the official class with n_layers 7 -> `global_layers`, 5 ->
    `local_layers` (our tiny preset's 5 and 4 at 32 px). The data loaders are replaced by fixed batches
    (the data transforms are not what this checks); the official `train()` loop runs unchanged.
 2. `train()` runs 3 iterations with iteration=4, decay_flag on: iterations 1 and 2 at lr, iteration 3 at
    lr / 2 (the linear decay after iteration // 2), RhoClipper after each generator step. At iteration 2 its
    `save()` writes `<name>_params_0000002.pt` (save_freq 2): that file, loaded back with torch.load, is the
    weights fixture. Right after the save, copies of the six networks give the forward outputs for fixed
    inputs: image, cam_logit, heatmap of both generators; logit, cam_logit, heatmap of the four
    discriminators in eval mode and in train mode (one power iteration; u, v after it are recorded too).
 3. Iteration 3 is the compared training step: `register_step_pre_hook` on D_optim and G_optim records, before
    each step runs, the loss terms (the train() frame's locals), every parameter's gradient, the Adam state
    (exp_avg, exp_avg_sq; step 2) and the lr; after the loop, every network's state dict (weights after the
    step, rho clipped, the spectral norms' u, v after the iteration's forwards). The loader then runs dry,
    which ends train().
 4. `test()` (the official inference, A2B) on the testA image with the saved checkpoint; the fake_A2B tile
    (the 5th of the 7 stacked tiles of test/A2B_1.png) is `serve_output`.

Fixtures: <fixture>_weights.npz (`<file>::<network>::<tensor>`) and <fixture>_io.npz (images NHWC; see
`_record_forward` and `_hooks` for the keys). Small: ch 4, n_res 2, 32 px, D layers 5/4, batch 2 (ch 4 keeps
both fixtures' weights, Adam state, gradients and updated weights near 4 MB in all). --paper: ch 64, n_res 4,
64 px, global D 6 layers (7 needs 128 px, as benchmarks/bench_train.py shortens it), local 5, batch 1.
"""

from __future__ import annotations

import argparse
import inspect
import os
import sys
import tempfile
import types

import numpy as np
import torch

SMALL = {"ch": 4, "n_res": 2, "img_size": 32, "global_layers": 5, "local_layers": 4, "batch_size": 2}
PAPER = {"ch": 64, "n_res": 4, "img_size": 64, "global_layers": 6, "local_layers": 5, "batch_size": 1}
DATASET = "fixture"
ITERATION = 4        # args.iteration: linear decay after iteration 2
SAVE_STEP = 2        # the weights fixture: the checkpoint save() writes after iteration 2
COMPARED_STEP = 3    # the recorded iteration (lr halved by the decay)
NETS = ("genA2B", "genB2A", "disGA", "disGB", "disLA", "disLB")


class _Exhausted(Exception):
  """The fixed batches are used up: ends the official train() loop."""


class _Loader:
  """Stands in for a DataLoader: UGATIT.train() calls iter(loader).next() (the old DataLoader iterator API)."""

  def __init__(self, batches):
    self.batches = list(batches)

  def __iter__(self):
    loader = self

    class _Iter:
      def next(self):  # noqa: A003  (the official loop's spelling)
        if not loader.batches:
          raise _Exhausted()
        return loader.batches.pop(0), torch.zeros(1)

      __next__ = next

    return _Iter()


def _torchvision_transforms() -> types.ModuleType:
  """torchvision.transforms' six classes UGATIT.py builds, for a torch without a working torchvision.

  Only the test transform runs (the training loaders are replaced): Resize((S, S)) (PIL bilinear; PIL returns
  the image unchanged at its own size, as the serving input has), ToTensor (HWC uint8 -> CHW / 255),
  Normalize((x - mean) / std). The random training transforms are never called.
  """
  from PIL import Image  # pylint: disable=import-outside-toplevel

  class Compose:
    def __init__(self, transforms):
      self.transforms = transforms

    def __call__(self, x):
      for t in self.transforms:
        x = t(x)
      return x

  class Resize:
    def __init__(self, size):
      self.size = size

    def __call__(self, img):
      return img.resize((self.size[1], self.size[0]), Image.BILINEAR)

  class ToTensor:
    def __call__(self, img):
      return torch.from_numpy(np.asarray(img, np.float32).transpose(2, 0, 1) / 255.0)

  class Normalize:
    def __init__(self, mean, std):
      self.mean, self.std = torch.tensor(mean)[:, None, None], torch.tensor(std)[:, None, None]

    def __call__(self, x):
      return (x - self.mean) / self.std

  class _Unused:
    def __init__(self, *args, **kwargs):
      del args, kwargs

    def __call__(self, x):
      raise NotImplementedError("training transforms are not used: the loaders are replaced")

  module = types.ModuleType("torchvision.transforms")
  module.Compose, module.Resize, module.ToTensor, module.Normalize = Compose, Resize, ToTensor, Normalize
  module.RandomHorizontalFlip = module.RandomCrop = _Unused
  return module


def _import_official(src_dir: str, global_layers: int, local_layers: int):
  """Imports UGATIT.py. Stand-ins when missing: scipy.misc (used only by unused helpers of utils.py) and
  torchvision.transforms (`_torchvision_transforms`)."""
  try:
    import scipy.misc  # noqa: F401  pylint: disable=import-outside-toplevel,unused-import
  except ImportError:
    scipy = types.ModuleType("scipy")
    scipy.misc = types.ModuleType("scipy.misc")
    sys.modules.setdefault("scipy", scipy)
    sys.modules.setdefault("scipy.misc", scipy.misc)
  try:
    from torchvision import transforms  # noqa: F401  pylint: disable=import-outside-toplevel,unused-import
  except Exception:  # pylint: disable=broad-except  (absent, or built for another torch)
    vision = types.ModuleType("torchvision")
    vision.transforms = _torchvision_transforms()
    sys.modules["torchvision"], sys.modules["torchvision.transforms"] = vision, vision.transforms
  if src_dir not in sys.path:
    sys.path.insert(0, src_dir)
  import networks  # pylint: disable=import-outside-toplevel
  import UGATIT as official  # pylint: disable=import-outside-toplevel
  layers = {7: global_layers, 5: local_layers}
  official.Discriminator = lambda input_nc, ndf=64, n_layers=5: networks.Discriminator(input_nc, ndf, layers[n_layers])
  return official


def _args(light: bool, cfg: dict) -> argparse.Namespace:
  """main.py's arguments (its defaults) with the small sizes; result_dir and dataset relative to the cwd."""
  return argparse.Namespace(
      phase="train", light=light, dataset=DATASET, iteration=ITERATION, batch_size=cfg["batch_size"],
      print_freq=1000, save_freq=SAVE_STEP, decay_flag=True, lr=0.0001, weight_decay=0.0001, adv_weight=1,
      cycle_weight=10, identity_weight=10, cam_weight=1000, ch=cfg["ch"], n_res=cfg["n_res"], n_dis=6,
      img_size=cfg["img_size"], img_ch=3, result_dir="results", device="cpu", benchmark_flag=False, resume=False)


def _nhwc(t: torch.Tensor) -> np.ndarray:
  return t.detach().cpu().numpy().transpose(0, 2, 3, 1).copy()


def _numpy_state(state) -> dict:
  return {k: v.detach().cpu().numpy().copy() for k, v in state.items()}


def _record_forward(gan, x_a: torch.Tensor, x_b: torch.Tensor, io: dict) -> None:
  """fwd/<net>/<mode>/{image|logit, cam_logit, heatmap}; the state (u, v) is restored after the train-mode calls.

  (Spectral-normalized modules cannot be deep-copied after a training forward, so the networks themselves run.)
  """
  inputs = {"genA2B": x_a, "genB2A": x_b, "disGA": x_a, "disLA": x_a, "disGB": x_b, "disLB": x_b}
  for name in NETS:
    for mode in ("eval", "train"):
      if name.startswith("gen") and mode == "train":
        continue  # no train/eval difference in the generators (IN without running stats)
      net = getattr(gan, name)
      saved = {k: v.clone() for k, v in net.state_dict().items()}
      net.train(mode == "train")
      with torch.no_grad():
        first, cam_logit, heatmap = net(inputs[name])
      net.train(True)
      io[f"fwd/{name}/{mode}/{'image' if name.startswith('gen') else 'logit'}"] = _nhwc(first)
      io[f"fwd/{name}/{mode}/cam_logit"] = cam_logit.numpy().copy()
      io[f"fwd/{name}/{mode}/heatmap"] = _nhwc(heatmap)
      if mode == "train":
        for key, value in _numpy_state(net.state_dict()).items():
          if key.endswith(("weight_u", "weight_v")):
            io[f"fwd/{name}/train/state/{key}"] = value
      net.load_state_dict(saved)


def _train_frame():
  """The official train() frame (its locals hold the loss terms and the step)."""
  frame = inspect.currentframe()
  while frame is not None and not (frame.f_code.co_name == "train" and "step" in frame.f_locals):
    frame = frame.f_back
  if frame is None:
    raise RuntimeError("the optimizer step was not called from UGATIT.train()")
  return frame


def _hooks(gan, io: dict) -> None:
  """Pre-step hooks recording, at COMPARED_STEP: loss/<term>, grad/<net>/<key>, adam_m|adam_v/<net>/<key>, lr/..."""
  names = {id(p): f"{net}/{key}" for net in NETS for key, p in getattr(gan, net).named_parameters()}

  def make(kind: str, terms: tuple):
    def hook(optimizer, args, kwargs):
      del args, kwargs
      frame = _train_frame()
      if frame.f_locals["step"] != COMPARED_STEP:
        return
      local = frame.f_locals
      for term in terms:
        io[f"loss/{term}"] = np.float32(local[term].item())
      if kind == "dis":
        io["train/x_a"], io["train/x_b"] = _nhwc(local["real_A"]), _nhwc(local["real_B"])
      io[f"lr/{kind}"] = np.float64(optimizer.param_groups[0]["lr"])
      for p in optimizer.param_groups[0]["params"]:
        io[f"grad/{names[id(p)]}"] = p.grad.detach().numpy().copy()
        state = optimizer.state[p]
        io[f"adam_m/{names[id(p)]}"] = state["exp_avg"].numpy().copy()
        io[f"adam_v/{names[id(p)]}"] = state["exp_avg_sq"].numpy().copy()
        io[f"adam_step/{kind}"] = np.int64(float(state["step"]))
    return hook

  sides = ("GA", "LA", "GB", "LB")
  d_terms = tuple(f"D_ad_{kind}loss_{s}" for s in sides for kind in ("", "cam_")) + (
      "D_loss_A", "D_loss_B", "Discriminator_loss")
  g_terms = tuple(f"G_ad_{kind}loss_{s}" for s in sides for kind in ("", "cam_")) + tuple(
      f"G_{t}_loss_{d}" for t in ("recon", "identity", "cam") for d in "AB") + ("G_loss_A", "G_loss_B",
                                                                                "Generator_loss")
  gan.D_optim.register_step_pre_hook(make("dis", d_terms))
  gan.G_optim.register_step_pre_hook(make("gen", g_terms))


def _write_png(path: str, image: np.ndarray) -> None:
  from PIL import Image  # pylint: disable=import-outside-toplevel  (torchvision's dependency)
  os.makedirs(os.path.dirname(path), exist_ok=True)
  Image.fromarray(image).save(path)


def _serve_image(rng: np.random.Generator, size: int) -> np.ndarray:
  """A smooth colour image with some texture, uint8 [size, size, 3]."""
  yy, xx = np.mgrid[0:size, 0:size] / size
  base = np.stack([np.sin(6 * xx + 1), np.cos(5 * yy), np.sin(4 * (xx + yy))], -1) * 0.4 + 0.5
  return np.clip((base + rng.normal(0, 0.08, base.shape)) * 255, 0, 255).round().astype(np.uint8)


def _variant(src_dir: str, out_dir: str, fixture: str, light: bool, cfg: dict, seed: int) -> dict:
  import cv2  # pylint: disable=import-outside-toplevel  (utils.py needs it: opencv-python-headless)
  official = _import_official(src_dir, cfg["global_layers"], cfg["local_layers"])
  rng = np.random.default_rng(seed)
  size, batch = cfg["img_size"], cfg["batch_size"]
  serve_input = _serve_image(rng, size)
  cwd = os.getcwd()
  with tempfile.TemporaryDirectory() as work:
    os.chdir(work)
    try:
      for split in ("trainA", "trainB", "testB"):
        _write_png(os.path.join("dataset", DATASET, split, "0.png"), _serve_image(rng, size))
      _write_png(os.path.join("dataset", DATASET, "testA", "0.png"), serve_input)
      for sub in ("model", "img", "test"):
        os.makedirs(os.path.join("results", DATASET, sub))
      torch.manual_seed(seed)
      gan = official.UGATIT(_args(light, cfg))
      gan.build_model()
      shape = (batch, 3, size, size)
      batches = [[torch.from_numpy(rng.uniform(-1, 1, shape).astype(np.float32)) for _ in range(2)]
                 for _ in range(COMPARED_STEP)]
      gan.trainA_loader = _Loader([b[0] for b in batches])
      gan.trainB_loader = _Loader([b[1] for b in batches])
      io: dict = {}
      fwd_a = torch.from_numpy(rng.uniform(-1, 1, (2, 3, size, size)).astype(np.float32))
      fwd_b = torch.from_numpy(rng.uniform(-1, 1, (2, 3, size, size)).astype(np.float32))
      io["fwd/x_a"], io["fwd/x_b"] = _nhwc(fwd_a), _nhwc(fwd_b)
      save = gan.save

      def save_and_record(directory, step):
        save(directory, step)
        _record_forward(gan, fwd_a, fwd_b, io)

      gan.save = save_and_record
      _hooks(gan, io)
      try:
        gan.train()
      except _Exhausted:
        pass
      for name in NETS:
        for key, value in _numpy_state(getattr(gan, name).state_dict()).items():
          io[f"after/{name}/{key}"] = value
      io["iteration"], io["step"] = np.int64(ITERATION), np.int64(COMPARED_STEP)
      file = f"{DATASET}_params_{SAVE_STEP:07d}.pt"
      saved = torch.load(os.path.join("results", DATASET, "model", file), map_location="cpu", weights_only=True)
      weights = {f"{file}::{net}::{key}": value.numpy() for net, state in saved.items()
                 for key, value in state.items()}
      gan.test()  # loads that checkpoint, writes results/<dataset>/test/A2B_1.png (7 tiles stacked, BGR)
      composite = cv2.imread(os.path.join("results", DATASET, "test", "A2B_1.png"))[..., ::-1]
      io["serve_input"] = serve_input[None]
      io["serve_direction"] = np.array(["a2b"])
      io["serve_output"] = np.ascontiguousarray(composite[4 * size:5 * size])[None].astype(np.uint8)
    finally:
      os.chdir(cwd)
  np.savez_compressed(os.path.join(out_dir, f"{fixture}_weights.npz"), **weights)
  np.savez_compressed(os.path.join(out_dir, f"{fixture}_io.npz"), **io)
  return {"light": light, **cfg, "losses": {k[5:]: float(v) for k, v in io.items() if k.startswith("loss/")},
          "lr": {"gen": float(io["lr/gen"]), "dis": float(io["lr/dis"])},
          "bytes": sum(os.path.getsize(os.path.join(out_dir, f"{fixture}_{s}.npz")) for s in ("weights", "io"))}


def make(src_dir: str, out_dir: str, paper: bool = False) -> dict:
  """Writes ugatit_light and ugatit_full (or ugatit_paper_light, ugatit_paper_full) fixtures; returns a summary."""
  cfg, prefix = (PAPER, "ugatit_paper") if paper else (SMALL, "ugatit")
  torch.set_num_threads(2)
  return {f"{prefix}_{kind}": _variant(src_dir, out_dir, f"{prefix}_{kind}", kind == "light", cfg, seed)
          for seed, kind in ((0, "light"), (1, "full"))}
