"""UNIT (mingyuliutw/UNIT branch version_02) reference numbers from the official code (needs torch, opencv).

Called by make_fixtures with the official files exported to `src_dir` (trainers/, tools/, datasets/,
cocogan_translate_one_image.py, exps/unit/cat2tiger.yaml). The official code is Python 2 / torch 0.3; what this
script patches at run time (never in the official files) to run it on Python 3 / current torch:
  * `itertools.izip` -> zip; `np.int` -> int; `yaml.load_all` gets a SafeLoader; `.cuda()` of modules and
    tensors is a no-op (CPU);
  * the loss tensors are reshaped to `[1]` (torch 0.3 losses were 1-element tensors, which the trainer reads
    with `.data.cpu().numpy()[0]`); values and gradients are unchanged;
  * COCOMsDis' GaussianSmoother pad `(k - 1) / 2` becomes an int (true division gives a float in Python 3);
  * torchvision (imported by cocogan_translate_one_image.py for `utils.save_image` only) is replaced by the same
    save_image for one image when the torch environment has no torchvision;
  * in cocogan_translate_one_image.py, the two `exec("x = %s(...)")` statements that bind function locals (which
    exec cannot do in Python 3) become direct assignments (`x = eval(name)(...)`), in memory.

Fixtures per variant (`unit`: COCOResGen + COCODis, `unit_ms`: COCOResGen + COCOMsDis), small configs at 32 px:
  <fixture>.yaml          the official YAML (exps/unit/cat2tiger.yaml with small sizes; data scale 1.0 so that the
                          official test loader feeds a crop-sized image through unchanged)
  <fixture>_weights.npz   `unit_gen_00000002.pkl::<key>`, `unit_dis_00000002.pkl::<key>`: what
                          COCOGANTrainer.save wrote after 2 official iterations (dis_update, gen_update), read back
                          with torch.load
  <fixture>_io.npz        x_a, x_b `[B, H, W, 3]` (NHWC, like every image and latent below);
                          forward (gen.eval(), no noise) from the saved weights: enc_a, enc_b (encode_A/B outputs),
                          mu_a, mu_b (enc_shared: the shared code), x_aa, x_ba, x_ab, x_bb (COCOResGen.forward),
                          dis_a_<s>, dis_b_<s> (scale s of dis(x_a, x_b), flattened as the official `view(-1)`);
                          one official iteration from the saved weights with fresh optimizers (as after a resume):
                          noise/<k> the latent noise N(0, I) the generator drew (wrapping torch.randn), k in
                          dis_a, dis_b (dis_update's gen(x_a, x_b) draw split in halves), gen_a, gen_b (gen_update's
                          gen(x_a, x_b)), gen_ba (forward_a2b(x_ba)), gen_ab (forward_b2a(x_ab));
                          loss/<name> (dis_total, dis_a, dis_b, gen_total, gen_ad_a, gen_ad_b, gen_ll_a, gen_ll_b,
                          gen_ll_aba, gen_ll_bab, gen_enc (the official enc_loss: mean(z^2) over the a and b
                          batch), gen_enc_bab, gen_enc_aba);
                          grad/gen/<key>, grad/dis/<key> (each optimizer's p.grad, taken in its step before it
                          runs; torch layout), after/gen/<key>, after/dis/<key> (weights after the iteration);
                          serve_input uint8 `[1, H, W, 3]`, serve_direction ["a2b"], serve_output uint8: the
                          translated tile of what cocogan_translate_one_image.py (run as the official script,
                          --a2b=1, default composite output written by torchvision.save_image) writes for it.
With paper=True: the cat2tiger architecture (ch 64, n_layer 6) at 64 px, fixture `unit` only.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import importlib
import importlib.util
import itertools
import os
import sys
import tempfile
import types

import numpy as np
import torch
import yaml

FILE_PREFIX = "unit"
WARMUP_ITERATIONS = 2
SMALL = {"ch": 4, "n_enc_front_blk": 3, "n_enc_res_blk": 1, "n_enc_shared_blk": 1, "n_gen_shared_blk": 1,
         "n_gen_res_blk": 1, "n_gen_front_blk": 3}
VARIANTS = {  # fixture -> (gen overrides, dis section, image size, batch size)
    "unit": (SMALL, {"name": "COCODis", "ch": 4, "n_layer": 4}, 32, 2),
    # No per-domain ResBlocks here (a mapping edge case, and smaller fixtures).
    "unit_ms": ({**SMALL, "n_enc_res_blk": 0, "n_gen_res_blk": 0}, {"name": "COCOMsDis", "ch": 4, "n_layer": 3},
                32, 2),
}
PAPER = {"unit": ({}, {"name": "COCODis", "ch": 64, "n_layer": 6}, 64, 1)}


@contextlib.contextmanager
def _patched(obj, name, value):
  """Sets obj.name = value for the duration (restores the old value, or removes the attribute)."""
  missing = object()
  old = getattr(obj, name, missing)
  setattr(obj, name, value)
  try:
    yield
  finally:
    if old is missing:
      delattr(obj, name)
    else:
      setattr(obj, name, old)


def _python3_patches(stack: contextlib.ExitStack) -> None:
  """The run-time patches of the module docstring that do not touch the official source."""
  stack.enter_context(_patched(itertools, "izip", zip))
  stack.enter_context(_patched(np, "int", int))
  stack.enter_context(_patched(yaml, "load_all", functools.partial(yaml.load_all, Loader=yaml.SafeLoader)))
  stack.enter_context(_patched(torch.nn.Module, "cuda", lambda self, *a, **k: self))
  stack.enter_context(_patched(torch.Tensor, "cuda", lambda self, *a, **k: self))
  stack.enter_context(_patched(torch.nn.functional, "binary_cross_entropy",
                               _one_element(torch.nn.functional.binary_cross_entropy)))


def _one_element(fn):
  """fn's result reshaped to `[1]` (torch 0.3 losses were 1-element tensors; the trainer indexes them [0])."""
  return lambda *args, **kwargs: fn(*args, **kwargs).reshape(1)


class _OneElementLoss(torch.nn.Module):
  """A loss module whose result is reshaped to `[1]` (see _one_element; modules must stay modules)."""

  def __init__(self, loss):
    super().__init__()
    self.loss = loss

  def forward(self, *args):
    return self.loss(*args).reshape(1)


def _new_trainer(trainer_module, hyperparameters):
  """COCOGANTrainer(hyperparameters) with the Python 3 fixes (1-element losses, integer smoother pad)."""
  trainer = trainer_module.COCOGANTrainer(hyperparameters)
  trainer.cuda(0)  # sets trainer.gpu, which the updates read; moving is a no-op here
  trainer._compute_kl = _one_element(trainer._compute_kl)  # pylint: disable=protected-access
  trainer.ll_loss_criterion_a = _OneElementLoss(trainer.ll_loss_criterion_a)
  trainer.ll_loss_criterion_b = _OneElementLoss(trainer.ll_loss_criterion_b)
  if hasattr(trainer.dis, "downsampler"):
    trainer.dis.downsampler.pad = int(trainer.dis.downsampler.pad)
  return trainer


def _config(src_dir, gen, dis, size, batch):
  """The official cat2tiger YAML with the given gen/dis sections, crop size, batch size and data scale 1.0."""
  with open(os.path.join(src_dir, "exps", "unit", "cat2tiger.yaml"), encoding="utf-8") as f:
    config = yaml.safe_load(f)
  train = config["train"]
  hp = train["hyperparameters"]
  hp["gen"].update(gen)
  hp["dis"] = {**dis, "input_dim_a": 3, "input_dim_b": 3}
  hp["batch_size"] = batch
  train["snapshot_prefix"] = f"../outputs/unit/{FILE_PREFIX}"
  for domain in ("train_a", "train_b"):
    train["datasets"][domain].update(crop_image_height=size, crop_image_width=size, scale=1.0)
  return config


def _nhwc(t) -> np.ndarray:
  """torch NCHW -> numpy NHWC float32."""
  return np.ascontiguousarray(t.detach().cpu().float().numpy().transpose(0, 2, 3, 1))


def _images(rng, batch, size) -> torch.Tensor:
  """A batch of smooth-ish random images in [-1, 1], NCHW."""
  return torch.from_numpy(np.tanh(rng.normal(size=(batch, 3, size, size))).astype(np.float32))


def _state(module) -> dict:
  return {k: v.detach().cpu().numpy().copy() for k, v in module.state_dict().items()}


def _record_step(optimizer, module, out: dict) -> None:
  """Wraps optimizer.step so that it first records every parameter's .grad (by state_dict name) into out."""
  names = {id(p): n for n, p in module.named_parameters()}
  step = optimizer.step

  def recording_step(*args, **kwargs):
    for group in optimizer.param_groups:
      for p in group["params"]:
        out[names[id(p)]] = p.grad.detach().cpu().numpy().copy()
    return step(*args, **kwargs)

  optimizer.step = recording_step


def _training_iteration(trainer, x_a, x_b, hp) -> dict:
  """One official iteration (dis_update, gen_update) recording noise, loss terms, gradients, weights after."""
  record = {}
  draws, bce = [], []
  randn, binary_cross_entropy = torch.randn, torch.nn.functional.binary_cross_entropy

  def recording_randn(*args, **kwargs):
    value = randn(*args, **kwargs)
    draws.append(value.detach().clone())
    return value

  def recording_bce(*args, **kwargs):
    value = binary_cross_entropy(*args, **kwargs)
    bce.append(float(value.item()))
    return value

  grads = {"gen": {}, "dis": {}}
  _record_step(trainer.dis_opt, trainer.dis, grads["dis"])
  _record_step(trainer.gen_opt, trainer.gen, grads["gen"])
  with _patched(torch, "randn", recording_randn), \
       _patched(torch.nn.functional, "binary_cross_entropy", recording_bce):
    trainer.dis_update(x_a, x_b, hp)
    n_dis = len(bce)
    trainer.gen_update(x_a, x_b, hp)
  # dis_update per scale: BCE(true_a), BCE(true_b), BCE(fake_a), BCE(fake_b); gen_update per scale: ad_a, ad_b.
  dis_terms = np.array(bce[:n_dis]).reshape(-1, 4)
  if len(draws) != 4:
    raise RuntimeError(f"expected 4 latent noise draws in one UNIT iteration, saw {len(draws)}")
  b = x_a.shape[0]
  noise = {"dis_a": draws[0][:b], "dis_b": draws[0][b:], "gen_a": draws[1][:b], "gen_b": draws[1][b:],
           "gen_ba": draws[2], "gen_ab": draws[3]}
  record.update({f"noise/{k}": _nhwc(v) for k, v in noise.items()})
  losses = {
      "dis_total": trainer.dis_loss, "dis_a": (dis_terms[:, 0] + dis_terms[:, 2]).sum(),
      "dis_b": (dis_terms[:, 1] + dis_terms[:, 3]).sum(), "gen_total": trainer.gen_total_loss,
      "gen_ad_a": trainer.gen_ad_loss_a, "gen_ad_b": trainer.gen_ad_loss_b, "gen_ll_a": trainer.gen_ll_loss_a,
      "gen_ll_b": trainer.gen_ll_loss_b, "gen_ll_aba": trainer.gen_ll_loss_aba,
      "gen_ll_bab": trainer.gen_ll_loss_bab, "gen_enc": trainer.gen_enc_loss,
      "gen_enc_bab": trainer.gen_enc_bab_loss, "gen_enc_aba": trainer.gen_enc_aba_loss}
  record.update({f"loss/{k}": np.float32(v) for k, v in losses.items()})
  for net in ("gen", "dis"):
    record.update({f"grad/{net}/{k}": v for k, v in grads[net].items()})
    record.update({f"after/{net}/{k}": v for k, v in _state(getattr(trainer, net)).items()})
  return record


def _forward(trainer, x_a, x_b) -> dict:
  """Network outputs in eval mode (no latent noise) for fixed inputs."""
  gen, dis = trainer.gen, trainer.dis
  gen.eval()
  dis.eval()
  with torch.no_grad():
    enc_a, enc_b = gen.encode_A(x_a), gen.encode_B(x_b)
    x_aa, x_ba, x_ab, x_bb, _ = gen(x_a, x_b)
    outs_a, outs_b = dis(x_a, x_b)
    out = {"enc_a": _nhwc(enc_a), "enc_b": _nhwc(enc_b), "mu_a": _nhwc(gen.enc_shared(enc_a)),
           "mu_b": _nhwc(gen.enc_shared(enc_b)), "x_aa": _nhwc(x_aa), "x_ba": _nhwc(x_ba), "x_ab": _nhwc(x_ab),
           "x_bb": _nhwc(x_bb)}
    for s, (o_a, o_b) in enumerate(zip(outs_a, outs_b)):
      out[f"dis_a_{s}"], out[f"dis_b_{s}"] = o_a.numpy().copy(), o_b.numpy().copy()
  gen.train()
  dis.train()
  return out


def _load_translate_script(src_dir, namespace: dict):
  """cocogan_translate_one_image.py compiled with its two local-binding execs made assignments (in memory)."""
  path = os.path.join(src_dir, "cocogan_translate_one_image.py")
  with open(path, encoding="utf-8") as f:
    text = f.read()
  fixes = {'exec ("data = %s(dataset)" % dataset[\'class_name\'])': "data = eval(dataset['class_name'])(dataset)",
           "exec(\"trainer=%s(config.hyperparameters)\" % config.hyperparameters['trainer'])":
               "trainer = eval(config.hyperparameters['trainer'])(config.hyperparameters)"}
  for old, new in fixes.items():
    if old not in text:
      raise RuntimeError(f"cocogan_translate_one_image.py changed: {old!r} not found")
    text = text.replace(old, new)
  exec(compile(text, path, "exec"), namespace)  # pylint: disable=exec-used
  return namespace["main"]


def _save_image(tensor, path):
  """torchvision.utils.save_image for one image `[1, 3, H, W]` in [0, 1] (make_grid returns a single image as
  it is): x * 255 + 0.5, clamped to [0, 255], truncated to uint8, saved with PIL. Stands in for torchvision, which
  the torch environment may lack (the script imports it only for this call)."""
  from PIL import Image  # pylint: disable=import-outside-toplevel
  if tensor.dim() != 4 or tensor.size(0) != 1:
    raise ValueError(f"expected one image [1, C, H, W], got {tuple(tensor.shape)}")
  array = tensor[0].mul(255).add_(0.5).clamp_(0, 255).permute(1, 2, 0).to("cpu", torch.uint8).numpy()
  Image.fromarray(array).save(path)


def _serve(src_dir, trainer_module, config, gen_file, size, rng) -> dict:
  """Runs the official cocogan_translate_one_image.py (a2b) on a random uint8 image; returns serve_* arrays."""
  import cv2  # pylint: disable=import-outside-toplevel
  from PIL import Image  # pylint: disable=import-outside-toplevel
  from tools import net_config  # pylint: disable=import-outside-toplevel
  spec = importlib.util.spec_from_file_location("datasets.dataset_image",
                                                os.path.join(src_dir, "datasets", "dataset_image.py"))
  dataset_image = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(dataset_image)
  datasets = types.ModuleType("datasets")
  datasets.__dict__.update({k: v for k, v in vars(dataset_image).items() if not k.startswith("__")})
  image = np.clip(128 + 60 * rng.normal(size=(size, size, 3)), 0, 255).astype(np.uint8)
  saved = {name: sys.modules.get(name) for name in ("datasets", "torchvision")}
  sys.modules["datasets"] = datasets
  if importlib.util.find_spec("torchvision") is None:
    sys.modules["torchvision"] = types.SimpleNamespace(utils=types.SimpleNamespace(save_image=_save_image))
  trainer_class = trainer_module.COCOGANTrainer

  def trainer_factory(hyperparameters):  # as COCOGANTrainer, with the Python 3 fixes of _new_trainer
    return _new_trainer(types.SimpleNamespace(COCOGANTrainer=trainer_class), hyperparameters)

  try:
    with tempfile.TemporaryDirectory() as tmp:
      cv2.imwrite(os.path.join(tmp, "input.png"), image[:, :, ::-1])
      with open(os.path.join(tmp, "image_list.txt"), "w", encoding="utf-8") as f:
        f.write("input.png\n")
      run_config = copy.deepcopy(config)
      for domain in ("train_a", "train_b"):
        run_config["train"]["datasets"][domain].update(root=tmp, folder="./", list_name="image_list.txt")
      config_path = os.path.join(tmp, "config.yaml")
      with open(config_path, "w", encoding="utf-8") as f:
        yaml.safe_dump(run_config, f, sort_keys=False)
      # What `from trainers import *` and `from tools import *` give with the official package files (the export
      # writes empty ones): the names of cocogan_trainer and net_config.
      namespace = {k: v for k, v in vars(trainer_module).items() if not k.startswith("_")}
      namespace.update(__name__="cocogan_translate_one_image", NetConfig=net_config.NetConfig,
                       COCOGANTrainer=trainer_factory)
      main = _load_translate_script(src_dir, namespace)
      output = os.path.join(tmp, "out", "output.png")
      main(["cocogan_translate_one_image.py", "--a2b=1", f"--config={config_path}",
            f"--image_name={os.path.join(tmp, 'input.png')}", f"--output_image_name={output}",
            f"--weights={gen_file}"])
      composite = np.asarray(Image.open(output).convert("RGB"))
  finally:
    for name, module in saved.items():
      if module is None:
        sys.modules.pop(name, None)
      else:
        sys.modules[name] = module
  if composite.shape != (size, 2 * size, 3):
    raise RuntimeError(f"unexpected composite shape {composite.shape}")
  return {"serve_input": image[None], "serve_direction": np.array(["a2b"]),
          "serve_output": composite[None, :, size:, :].copy()}


def _make_one(src_dir, out_dir, fixture, gen, dis, size, batch, trainer_module, paper) -> dict:
  config = _config(src_dir, gen, dis, size, batch)
  save = np.savez if paper else np.savez_compressed  # the paper networks' ~70M floats hardly compress
  hp = config["train"]["hyperparameters"]
  with open(os.path.join(out_dir, f"{fixture}.yaml"), "w", encoding="utf-8") as f:
    f.write("# The official exps/unit/cat2tiger.yaml (mingyuliutw/UNIT version_02) with a small configuration;\n"
            "# written by benchmarks/official/ref_unit.py.\n")
    yaml.safe_dump(config, f, sort_keys=False)
  torch.manual_seed(0)
  rng = np.random.RandomState(0)
  trainer = _new_trainer(trainer_module, hp)
  for _ in range(WARMUP_ITERATIONS):
    x_a, x_b = _images(rng, batch, size), _images(rng, batch, size)
    trainer.dis_update(x_a, x_b, hp)
    trainer.gen_update(x_a, x_b, hp)
  io = {}
  with tempfile.TemporaryDirectory() as tmp:
    trainer.save(os.path.join(tmp, FILE_PREFIX), WARMUP_ITERATIONS - 1)
    files = sorted(os.listdir(tmp))
    weights = {}
    state = {}
    for name in files:
      state[name] = torch.load(os.path.join(tmp, name), map_location="cpu", weights_only=True)
      weights.update({f"{name}::{k}": v.numpy() for k, v in state[name].items()})
    save(os.path.join(out_dir, f"{fixture}_weights.npz"), **weights)
    # As after a resume: fresh networks and optimizers, the saved weights loaded.
    resumed = _new_trainer(trainer_module, hp)
    gen_file = next(os.path.join(tmp, n) for n in files if "_gen_" in n)
    resumed.gen.load_state_dict(state[os.path.basename(gen_file)])
    resumed.dis.load_state_dict(state[next(n for n in files if "_dis_" in n)])
    x_a, x_b = _images(rng, batch, size), _images(rng, batch, size)
    io.update(x_a=_nhwc(x_a), x_b=_nhwc(x_b))
    io.update(_forward(resumed, x_a, x_b))
    io.update(_training_iteration(resumed, x_a, x_b, hp))
    io.update(_serve(src_dir, trainer_module, config, gen_file, size, rng))
  save(os.path.join(out_dir, f"{fixture}_io.npz"), **io)
  sizes = {k: os.path.getsize(os.path.join(out_dir, f"{fixture}{k}")) for k in ("_weights.npz", "_io.npz", ".yaml")}
  return {"files": files, "bytes": sizes, "gen_parameters": int(sum(p.numel() for p in resumed.gen.parameters())),
          "dis_parameters": int(sum(p.numel() for p in resumed.dis.parameters())),
          "losses": {k[5:]: float(v) for k, v in io.items() if k.startswith("loss/")}}


def make(src_dir: str, out_dir: str, paper: bool = False) -> dict:
  """Writes the UNIT fixtures (see the module docstring) into out_dir; returns a summary."""
  summary = {}
  with contextlib.ExitStack() as stack:
    _python3_patches(stack)
    trainer_module = importlib.import_module("trainers.cocogan_trainer")
    for fixture, (gen, dis, size, batch) in (PAPER if paper else VARIANTS).items():
      summary[fixture] = _make_one(src_dir, out_dir, fixture, gen, dis, size, batch, trainer_module, paper)
  return summary
