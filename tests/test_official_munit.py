"""Our MUNIT equals the official NVlabs/MUNIT code: checkpoint import, forward pass, one training iteration,
the learning-rate schedule and test.py's output.

Expected values come only from the fixtures that benchmarks/official/ref_munit.py writes by running the official
code (tests/official/munit.yaml, munit_weights.npz, munit_io.npz; see that script for what is recorded): the
official trainer's checkpoint after 2 iterations, its network outputs on fixed inputs, one more full iteration
(dis_update then gen_update, with its own random style draws, losses, gradients read before each optimizer
step, Adam state and the weights after the step) and test.py's translation. No torch needed.

Tolerances (issue #12): every network output max abs <= 1e-5 (and <= 1e-4 of the output's own scale, since
the small discriminator's maps are ~1e-3); losses relative 1e-4; gradients relative L2 1e-3 per variable;
weights after the step abs 1e-6.

Biases of convolutions followed by an instance norm (content encoder) or AdaIN (decoder residual blocks) have a
gradient of exactly zero in exact arithmetic (the norm subtracts the per-channel mean); both implementations
compute float noise there (~1e-7 against weight gradients ~1), which Adam's normalization turns into steps of up
to ~lr. For those variables the tests check that both gradients are zero up to noise and that the weights after
the step differ by less than 2 lr; `test_optimizer_step_equals_official_with_official_gradients` then checks our
optimizer on every variable, those included, from the official gradients.

Set I2I_PAPER_FIXTURES to a directory written by `make_fixtures --families=munit --paper` to run the
same forward and training checks at the paper architecture (64 px); the training one is an expected failure for
now (see its reason).
"""

from __future__ import annotations

import os
import re

import numpy as np
import pytest
import tensorflow as tf
import yaml

import models
from components import import_official_lib
from components import model_dir as model_dir_lib
from models import optim
from models.munit import official
from models.munit.train import PriorStyles, train_step_with_styles
from models.official import OfficialImportError

FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "official")
PAPER_ENV = "I2I_PAPER_FIXTURES"
FORWARD_ATOL, FORWARD_RTOL = 1e-5, 1e-4
# Paper size: the 256-channel residual and upsampling-phase 3x3 convolutions run as Winograd F(4x4, 3x3)
# (models/layers/conv.py), whose transforms round about 5x more than the direct convolution: measured 1.6e-5 on
# the images, 1.1e-4 on a content code of magnitude ~10.
PAPER_FORWARD_ATOL = 3e-5
LOSS_RTOL, GRAD_RTOL, WEIGHT_ATOL = 1e-4, 1e-3, 1e-6
# The small fixture's gradients agree to ~1e-5; it is held to 1e-4 because its young discriminator's fake-image
# term is only ~1e-3 of the D gradient (D(fake) ~ 1e-3), so a D update fed the wrong styles shows at ~1e-3.
SMALL_GRAD_RTOL = 1e-4
ZERO_GRADIENT_NOISE = 1e-5  # of the optimizer's global gradient norm
DRAWS = ("dis_s_a", "dis_s_b", "gen_s_a", "gen_s_b")


class Fixture:
  """One fixture set: the official YAML, the checkpoint files (as numpy) and the recorded io arrays."""

  def __init__(self, directory: str, name: str):
    with open(os.path.join(directory, f"{name}.yaml"), encoding="utf-8") as f:
      self.yaml = yaml.safe_load(f)
    self.files = import_official_lib.numpy_files(os.path.join(directory, f"{name}_weights.npz"))
    with np.load(os.path.join(directory, f"{name}_io.npz")) as data:
      self.io = {k: data[k] for k in data.files}

  def tensors(self):
    return official.official_tensors(self.files)

  def model(self):
    """A MUNITModel built from the YAML and filled from the official checkpoint."""
    tensors = self.tensors()
    config = official.config_from_official(self.yaml, tensors)
    model = models.get_family("munit").build_model(config)
    official.load_official(model, tensors, source="fixture")
    return model


@pytest.fixture(scope="module")
def small():
  return Fixture(FIXTURES, "munit")


@pytest.fixture(scope="module")
def paper():
  directory = os.environ.get(PAPER_ENV)
  if not directory:
    pytest.skip(f"{PAPER_ENV} is not set (a directory written by make_fixtures --families=munit --paper)")
  return Fixture(directory, "munit_paper")


def _max_abs(ours, ref) -> float:
  ours, ref = np.asarray(ours, np.float64), np.asarray(ref, np.float64)
  assert ours.shape == ref.shape, f"shape {ours.shape} != official {ref.shape}"
  return float(np.max(np.abs(ours - ref)))


# Forward ----------------------------------------------------------------------------------------------------------

def forward_differences(model, io) -> dict[str, float]:
  """Max abs difference of every recorded official network output (fwd/...) from ours on the same inputs."""
  outputs = {}
  codes = {d: model.generator(d).encode(io[f"x_{d}"]) for d in ("a", "b")}
  for d, other in (("a", "b"), ("b", "a")):
    gen, dis = model.generator(d), model.discriminator(d)
    content, style = codes[d]
    translated = gen.decode(codes[other][0], io["style_prior"])
    outputs.update({f"fwd/{d}/content": content, f"fwd/{d}/style": style, f"fwd/{d}/adain_params": gen.mlp(style),
                    f"fwd/{d}/adain_params_prior": gen.mlp(io["style_prior"]),
                    f"fwd/{d}/recon": gen.decode(content, style), f"fwd/{d}/translated": translated})
    for kind, image in (("real", io[f"x_{d}"]), ("fake", translated)):
      for s, scale in enumerate(dis(image)):
        outputs[f"fwd/dis_{d}/{kind}/scale{s}"] = scale
  recorded = sorted(k for k in io if k.startswith("fwd/"))
  assert sorted(outputs) == recorded
  return {k: _max_abs(outputs[k], io[k]) for k in recorded}


def assert_forward_equal(model, io, scale_aware: bool = False, atol: float = FORWARD_ATOL):
  """Every output within `atol` (x its magnitude when > 1 and `scale_aware`) and FORWARD_RTOL x magnitude.

  `scale_aware` is for the paper size: its content codes reach ~10 after 4 residual blocks, where float32
  itself is that coarse (torch's own float32 content code is 1.0e-5 from its float64 one there).
  """
  diffs = forward_differences(model, io)
  scales = {k: float(np.max(np.abs(io[k]))) for k in diffs}
  bad = {k: d for k, d in diffs.items()
         if d > atol * (max(1.0, scales[k]) if scale_aware else 1.0) or d > FORWARD_RTOL * scales[k]}
  assert not bad, f"outputs differing from the official ones (max abs): {bad}"
  return diffs


def test_forward_equals_official(small):
  diffs = assert_forward_equal(small.model(), small.io)
  assert len(diffs) == 2 * 6 + 2 * 2 * small.yaml["dis"]["num_scales"]


def test_translation_equals_official_test_script(small):
  # test.py: content of gen_a, the style it drew (serve_style), gen_b's decoder; it saves (x + 1) / 2 with
  # save_image(normalize=True), which stretches the image to its own min..max before the uint8 conversion.
  io = small.io
  model = small.model()
  assert str(io["serve_direction"][0]) == "a2b"
  images = io["serve_input"].astype(np.float32) / 127.5 - 1.0
  out = model.translate(images, "a2b", style=io["serve_style"])
  np.testing.assert_array_equal(out["style"].numpy(), io["serve_style"])
  ours = out["images"].numpy()
  assert _max_abs(ours, io["serve_output_float"]) <= FORWARD_ATOL
  unit = (ours + 1.0) / 2.0
  low, high = unit.min(), unit.max()
  stretched = np.clip(np.floor((unit - low) / max(high - low, 1e-5) * 255.0 + 0.5), 0, 255)
  assert _max_abs(stretched, io["serve_output"]) <= 1.0
  plain = np.clip(np.round((ours + 1.0) * 127.5), 0, 255)  # export_lib's conversion
  assert _max_abs(plain, io["serve_output_plain"]) <= 1.0


# Import -----------------------------------------------------------------------------------------------------------

def test_config_comes_from_the_official_yaml_and_shapes(small):
  config = official.config_from_official(small.yaml, small.tensors())
  gen, dis = small.yaml["gen"], small.yaml["dis"]
  assert (config.dim, config.style_dim, config.mlp_dim, config.n_downsample, config.n_res) == (
      gen["dim"], gen["style_dim"], gen["mlp_dim"], gen["n_downsample"], gen["n_res"])
  assert (config.dis_dim, config.dis_n_layer, config.dis_num_scales) == (dis["dim"], dis["n_layer"],
                                                                         dis["num_scales"])
  for name in ("gan_w", "recon_x_w", "recon_s_w", "recon_c_w", "recon_x_cyc_w", "vgg_w", "lr", "beta1", "beta2",
               "weight_decay", "lr_policy", "step_size", "gamma", "max_iter", "batch_size"):
    assert getattr(config, name) == small.yaml[name], name
  assert config.image_size == small.yaml["crop_image_height"]
  assert official.config_from_official(small.yaml, small.tensors(), image_size=64).image_size == 64


def test_every_official_tensor_lands_in_its_variable(small):
  model = small.model()
  tensors = small.tensors()
  pairs = official.weight_map(model)
  assert len(pairs) == len(model.variables)
  for variable, key, convert in pairs:
    np.testing.assert_array_equal(variable.numpy(), convert(tensors[key]), err_msg=key)
  # e.g. a torch conv weight [out, in, kh, kw] is our kernel [kh, kw, in, out]
  kernel = model.gen_a.content_encoder.blocks[0].conv.kernel.numpy()
  np.testing.assert_array_equal(kernel[1, 2, 0, 3], tensors["gen_a/enc_content.model.0.conv.weight"][3, 0, 1, 2])


def test_import_stage_writes_a_model_dir_that_load_trained_model_accepts(small, tmp_path):
  model_dir = str(tmp_path / "model")
  result = import_official_lib.import_tensors("munit", small.files, model_dir, official_config=small.yaml, step=2)
  family, config, model, step = model_dir_lib.load_trained_model(model_dir)
  assert family.name == "munit" and step == 2 and config == result.model_config
  codes = model.gen_b.encode(small.io["x_b"])
  assert _max_abs(codes[0], small.io["fwd/b/content"]) <= FORWARD_ATOL
  assert _max_abs(codes[1], small.io["fwd/b/style"]) <= FORWARD_ATOL
  outs = model.dis_a(small.io["x_a"])
  assert _max_abs(outs[1], small.io["fwd/dis_a/real/scale1"]) <= 1e-4 * np.abs(small.io["fwd/dis_a/real/scale1"]).max()


def test_generators_alone_import_and_discriminators_keep_their_init(small):
  tensors = {k: v for k, v in small.tensors().items() if k.startswith("gen_")}
  config = official.config_from_official(small.yaml, tensors)
  model = models.get_family("munit").build_model(config)
  before = [v.numpy() for v in model.discriminator_variables]
  official.load_official(model, tensors, source="gen only")
  for v, b in zip(model.discriminator_variables, before):
    np.testing.assert_array_equal(v.numpy(), b)
  assert _max_abs(model.gen_a.encode(small.io["x_a"])[1], small.io["fwd/a/style"]) <= FORWARD_ATOL


def _load_error(small, tensors) -> str:
  config = official.config_from_official(small.yaml, small.tensors())
  model = models.get_family("munit").build_model(config)
  with pytest.raises(OfficialImportError) as error:
    official.load_official(model, tensors, source="gen_00000002.pt")
  return str(error.value)


def test_import_errors_name_the_key_and_the_shapes(small):
  key = "gen_b/dec.model.2.conv.weight"
  tensors = small.tensors()
  wrong = dict(tensors, **{key: np.zeros((8, 16, 3, 3), np.float32)})  # a 3x3 conv where the official has 5x5
  message = _load_error(small, wrong)
  assert key in message and "(8, 16, 3, 3)" in message and "(5, 5, 16, 8)" in message
  assert "(3, 3, 16, 8)" in message  # the converted shape

  extra = dict(tensors, **{"gen_a/dec.model.9.conv.weight": np.zeros((3, 4, 7, 7), np.float32)})
  message = _load_error(small, extra)
  assert "'gen_a/dec.model.9.conv.weight'" in message and "not used" in message and "(3, 4, 7, 7)" in message

  missing = {k: v for k, v in tensors.items() if k != "dis_b/cnns.1.2.conv.bias"}
  message = _load_error(small, missing)
  assert "'dis_b/cnns.1.2.conv.bias'" in message and "has no tensor" in message


def test_import_refuses_other_files_and_configs(small):
  with pytest.raises(OfficialImportError, match="optimizer.pt holds Adam state"):
    official.official_tensors({"optimizer.pt": {"gen": {}, "dis": {}}})
  with pytest.raises(OfficialImportError, match="no generator file"):
    official.official_tensors({n: f for n, f in small.files.items() if n.startswith("dis")})
  tensors = small.tensors()
  with pytest.raises(OfficialImportError, match="says dim=8 but the checkpoint's shapes say 4"):
    official.config_from_official(dict(small.yaml, gen=dict(small.yaml["gen"], dim=8)), tensors)
  with pytest.raises(OfficialImportError, match="dis.gan_type: 'nsgan'"):
    official.config_from_official(dict(small.yaml, dis=dict(small.yaml["dis"], gan_type="nsgan")), tensors)
  with pytest.raises(OfficialImportError, match="needs the run's YAML"):
    official.config_from_official(None, tensors)


# Learning-rate schedule -------------------------------------------------------------------------------------------

def official_step_lr(lr: float, step_size: int, gamma: float, t: int) -> float:
  """NVlabs/MUNIT train.py: trainer.update_learning_rate() (StepLR.step(), StepLR created at epoch 0) runs at
  the start of iteration t (0-based), before its update, so the update uses StepLR epoch t + 1."""
  return lr * gamma ** ((t + 1) // step_size)


def test_step_schedule_is_official(small):
  config = official.config_from_official(small.yaml, small.tensors())
  schedule = optim.learning_rate_schedule(config)
  recorded = small.io["lr/gen"]  # the lr of each official iteration 0, 1, 2 (also lr/dis)
  np.testing.assert_array_equal(small.io["lr/dis"], recorded)
  np.testing.assert_allclose([float(schedule(t)) for t in range(len(recorded))], recorded, rtol=1e-6)
  np.testing.assert_allclose([float(schedule(t)) for t in range(12)],
                             [official_step_lr(config.lr, config.step_size, config.gamma, t) for t in range(12)],
                             rtol=1e-6)
  paper = optim.learning_rate_schedule(models.get_config("munit", "paper"))
  for t in (0, 99_998, 99_999, 199_998, 199_999, 999_999):  # the first halved update is t = 99_999
    assert float(paper(t)) == pytest.approx(official_step_lr(1e-4, 100_000, 0.5, t), rel=1e-6), t


# Training ---------------------------------------------------------------------------------------------------------

def zero_gradient_bias(key: str) -> bool:
  """Conv biases followed by instance norm (content encoder) or AdaIN (decoder residual blocks): d loss / d b = 0."""
  return key.endswith("conv.bias") and bool(re.search(r"/(enc_content\.|dec\.model\.0\.)", key))


def _optimizers_with_official_state(model, io):
  """(gen, dis) AdamL2 of the config, with the official Adam moments and step count before the iteration."""
  gen_opt, dis_opt = models.get_family("munit").build_optimizers(model.config)
  key_of = {id(v): (k, convert) for v, k, convert in official.weight_map(model)}
  for opt, variables, kind in ((gen_opt, model.generator_variables, "gen"),
                               (dis_opt, model.discriminator_variables, "dis")):
    opt.build(variables)
    for v in variables:
      key, convert = key_of[id(v)]
      index = opt._get_variable_index(v)  # pylint: disable=protected-access
      opt._momentums[index].assign(convert(io[f"exp_avg/{key}"]))  # pylint: disable=protected-access
      opt._velocities[index].assign(convert(io[f"exp_avg_sq/{key}"]))  # pylint: disable=protected-access
    opt.iterations.assign(int(io[f"adam_step/{kind}"]))
  return gen_opt, dis_opt


def _capture_gradients(optimizer, store: dict):
  """Wraps optimizer.apply to keep each variable's gradient (by id) before the update."""
  original = optimizer.apply

  def apply(grads, variables):
    store.update({id(v): np.asarray(g) for g, v in zip(grads, variables)})
    return original(grads, variables)

  optimizer.apply = apply


# Our loss keys (models.api scheme) -> the official trainer's loss_* attributes (the fixture's loss/<name>).
OFFICIAL_LOSS_NAMES = {
    "d/total": "dis_total", "d/adv_a": "dis_a", "d/adv_b": "dis_b", "g/total": "gen_total",
    **{f"g/{ours}_{d}": f"gen_{theirs}_{d}" for d in ("a", "b") for ours, theirs in (
        ("adv", "adv"), ("recon_x", "recon_x"), ("recon_s", "recon_s"), ("recon_c", "recon_c"),
        ("cycle", "cycrecon_x"), ("vgg", "vgg"))},
}


def training_differences(fixture: Fixture) -> dict:
  """Runs our iteration from the official state on the official batch and draws; returns every difference."""
  io = fixture.io
  model = fixture.model()
  gen_opt, dis_opt = _optimizers_with_official_state(model, io)
  grads: dict = {}
  _capture_gradients(gen_opt, grads)
  _capture_gradients(dis_opt, grads)
  t = int(io["adam_step/gen"])
  lr = {"gen": float(io["lr/gen"][t]), "dis": float(io["lr/dis"][t])}
  styles = PriorStyles(*(tf.constant(io[f"draw/{name}"]) for name in DRAWS))
  losses = train_step_with_styles(model, gen_opt, dis_opt, tf.constant(io["train_x_a"]),
                                  tf.constant(io["train_x_b"]), int(io["train_x_a"].shape[0]), styles)
  official_losses = {k[len("loss/"):]: float(v) for k, v in io.items() if k.startswith("loss/")}
  out = {"loss": {}, "grad": {}, "weight": {}, "zero_grad": {}, "zero_weight": {}, "lr": lr}
  for name, value in losses.items():
    theirs = official_losses[OFFICIAL_LOSS_NAMES[name]]
    out["loss"][name] = abs(float(value) - theirs) / abs(theirs)
  ours = {OFFICIAL_LOSS_NAMES[name] for name in losses}
  unmatched = {k for k, v in official_losses.items() if k not in ours and v != 0.0}
  assert not unmatched, f"official loss terms we do not compute: {unmatched}"
  pairs = official.weight_map(model)
  norms = {kind: np.sqrt(sum(float(np.sum(np.square(io[f"grad/{k}"]))) for _, k, _ in pairs
                             if k.startswith(kind))) for kind in ("gen", "dis")}
  for variable, key, convert in pairs:
    ref_grad, ref_after = convert(io[f"grad/{key}"]), convert(io[f"after/{key}"])
    ours_grad = grads[id(variable)]
    weight_diff = _max_abs(variable.numpy(), ref_after)
    kind = key[:3]
    if zero_gradient_bias(key):
      out["zero_grad"][key] = max(np.linalg.norm(ours_grad), np.linalg.norm(ref_grad)) / norms[kind]
      out["zero_weight"][key] = weight_diff / lr[kind]
    else:
      out["grad"][key] = float(np.linalg.norm(ours_grad - ref_grad) / np.linalg.norm(ref_grad))
      out["weight"][key] = weight_diff
  return out


def assert_training_equal(fixture: Fixture, grad_rtol: float = GRAD_RTOL) -> dict:
  diffs = training_differences(fixture)

  def bad(kind, limit):
    return {k: v for k, v in diffs[kind].items() if not v <= limit}

  assert not bad("loss", LOSS_RTOL), f"loss terms (relative difference): {bad('loss', LOSS_RTOL)}"
  assert not bad("grad", grad_rtol), f"gradients (relative L2): {bad('grad', grad_rtol)}"
  assert not bad("weight", WEIGHT_ATOL), f"weights after the step (max abs): {bad('weight', WEIGHT_ATOL)}"
  assert not bad("zero_grad", ZERO_GRADIENT_NOISE), f"zero-gradient biases: {bad('zero_grad', ZERO_GRADIENT_NOISE)}"
  assert not bad("zero_weight", 2.0), f"zero-gradient biases moved > 2 lr: {bad('zero_weight', 2.0)}"
  return diffs


def test_training_iteration_equals_official(small):
  diffs = assert_training_equal(small, grad_rtol=SMALL_GRAD_RTOL)
  assert len(diffs["loss"]) == 14  # d/adv_a|b, d/total, 2 x g/(adv, recon_x, recon_s, recon_c, cycle), g/total
  assert len(diffs["zero_grad"]) == 2 * (3 + 2 + 2)  # per generator: conv_in, 2 downs, 1 res block, 1 AdaIN block


def test_optimizer_step_equals_official_with_official_gradients(small):
  # Our AdamL2 (torch L2 weight decay, eps after the bias correction, the step lr schedule) from the official
  # Adam state and the official gradients gives the official weights, on every variable.
  io = small.io
  model = small.model()
  gen_opt, dis_opt = _optimizers_with_official_state(model, io)
  pairs = official.weight_map(model)
  for opt, variables in ((dis_opt, model.discriminator_variables), (gen_opt, model.generator_variables)):
    key_of = {id(v): (k, convert) for v, k, convert in pairs}
    grads = [tf.constant(key_of[id(v)][1](io[f"grad/{key_of[id(v)][0]}"])) for v in variables]
    opt.apply(grads, variables)
  diffs = {key: _max_abs(v.numpy(), convert(io[f"after/{key}"])) for v, key, convert in pairs}
  assert max(diffs.values()) <= WEIGHT_ATOL, {k: d for k, d in diffs.items() if d > WEIGHT_ATOL}


# Paper size (opt-in) ----------------------------------------------------------------------------------------------

@pytest.mark.slow
def test_paper_size_forward_equals_official(paper):
  forward = assert_forward_equal(paper.model(), paper.io, scale_aware=True, atol=PAPER_FORWARD_ATOL)
  print(f"\npaper-size MUNIT forward vs official: max abs {max(forward.values()):.3g} "
        f"({max(forward, key=forward.get)})")


@pytest.mark.slow
@pytest.mark.xfail(reason="open: at paper size (64 px) the generator gradients differ by 0.5-1% (relative L2) and the "
                          "generator weights after the step by up to ~lr, while losses and discriminator gradients "
                          "agree to ~1e-6; part of it is TensorFlow's oneDNN strided-conv backward (gone for the "
                          "recon_x term with TF_ENABLE_ONEDNN_OPTS=0), the rest is not yet explained", strict=False)
def test_paper_size_training_equals_official(paper):
  training = assert_training_equal(paper)
  print(f"\npaper-size MUNIT training vs official: loss max rel {max(training['loss'].values()):.3g}; grad max rel "
        f"L2 {max(training['grad'].values()):.3g}; weights after max abs {max(training['weight'].values()):.3g}")
