"""Tests of the MUNIT family: parameter counts against the official code, shapes, translation API, .keras round
trips, mixed precision, the perceptual loss and one training step.

Official parameter counts: NVlabs/MUNIT networks.py at HEAD, instantiated with CPU PyTorch outside this project
(`git show HEAD:networks.py` into /tmp, then AdaINGen(3, gen) and MsImageDis(3, dis) with the gen/dis sections of
configs/edges2shoes_folder.yaml), sum of p.numel() over parameters():
  AdaINGen 15,026,187 = enc_content 5,385,856 + enc_style 2,764,936 + dec 5,754,627 + mlp 1,120,768
  MsImageDis 8,271,171
"""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

import models
from models.munit import FAMILY, MUNITConfig, MUNITModel
from models.munit.networks import AdaINGenerator, MultiScaleDiscriminator
from models.optim import AdamL2
from tests.call_log import record_calls

OFFICIAL = {"gen": 15_026_187, "content_encoder": 5_385_856, "style_encoder": 2_764_936, "decoder": 5_754_627,
            "mlp": 1_120_768, "dis": 8_271_171}


def _count(net) -> int:
  return int(sum(np.prod(v.shape) for v in net.weights))


@pytest.fixture(scope="module")
def tiny():
  """A tiny MUNIT model (32x32) shared by the read-only tests."""
  keras.utils.set_random_seed(0)
  return FAMILY.build_model(FAMILY.presets["tiny"])


def _images(batch=2, size=32, seed=0):
  return tf.random.stateless_uniform([batch, size, size, 3], seed=[seed, 1], minval=-1.0, maxval=1.0)


def test_paper_parameter_counts_equal_the_official_implementation():
  model = MUNITModel(FAMILY.presets["paper"])
  # Parameter counts do not depend on the image size: build on the smallest inputs the networks accept.
  content, style = model.gen_a.encode(tf.zeros([1, 16, 16, 3]))
  model.gen_a.decode(content, style)
  dis_out = model.dis_a(tf.zeros([1, 64, 64, 3]))
  gen = model.gen_a
  assert _count(gen) == OFFICIAL["gen"]
  for name in ("content_encoder", "style_encoder", "decoder", "mlp"):
    assert _count(getattr(gen, name)) == OFFICIAL[name], name
  assert _count(model.dis_a) == OFFICIAL["dis"]
  # Shapes (official at 256: content [1, 256, 64, 64], style [1, 8, 1, 1], dis 16/8/4 = input / 16 / 2^s).
  assert content.shape == (1, 4, 4, 256) and style.shape == (1, 8)
  assert [o.shape[1] for o in dis_out] == [4, 2, 1]


def test_translate_api(tiny):
  x = _images(2, 36)  # any multiple of size_multiple = 4, not only the training size
  assert tiny.size_multiple == 4
  out = tiny.translate(x, "a2b")
  assert out["images"].shape == (2, 36, 36, 3) and out["style"].shape == (2, 8)
  assert out["images"].dtype == tf.float32 and np.all(np.abs(out["images"].numpy()) <= 1.0)
  style = tiny.sample_style(tf.constant([7, 8], tf.int64))
  np.testing.assert_array_equal(style.numpy(), tiny.sample_style(tf.constant([7, 8], tf.int64)).numpy())
  assert not np.allclose(style[0], style[1])
  np.testing.assert_array_equal(tiny.translate(x, "b2a", style=style)["images"].numpy(),
                                tiny.translate(x, "b2a", style=style)["images"].numpy())
  assert not np.allclose(tiny.translate(x, "b2a", style=style)["images"].numpy(),
                         tiny.translate(x, "b2a", style=style[::-1])["images"].numpy())
  assert tiny.encode_style(_images(3, 40), "b").shape == (3, 8)
  with pytest.raises(ValueError, match="Unknown direction"):
    tiny.translate(x, "a2c")
  with pytest.raises(ValueError, match="width to be a multiple of 4, got 34"):
    tiny.translate(tf.zeros([1, 32, 34, 3]), "a2b")
  with pytest.raises(ValueError, match="Unknown domain"):
    tiny.encode_style(x, "c")


def test_sample_rows(tiny):
  rows = FAMILY.sample_rows(tiny, _images(2), _images(2, seed=1))
  assert list(rows) == ["x_a", "x_a_recon", "x_ab_fixed_style", "x_ab_random_style",
                        "x_b", "x_b_recon", "x_ba_fixed_style", "x_ba_random_style"]
  assert all(v.shape == (2, 32, 32, 3) for v in rows.values())
  again = FAMILY.sample_rows(tiny, _images(2), _images(2, seed=1))
  np.testing.assert_array_equal(rows["x_ab_fixed_style"].numpy(), again["x_ab_fixed_style"].numpy())


@pytest.mark.parametrize("net_fn", [
    lambda: AdaINGenerator(dim=8, style_dim=4, mlp_dim=16, n_downsample=2, n_res=1),
    lambda: MultiScaleDiscriminator(dim=8, n_layer=3, num_scales=2),
])
def test_keras_save_load_round_trip(tmp_path, net_fn):
  net = net_fn()
  x = _images(2, 32)
  before = net(x)
  path = str(tmp_path / "net.keras")
  net.save(path)
  loaded = keras.saving.load_model(path)
  after = loaded(x)
  for b, a in zip(tf.nest.flatten(before), tf.nest.flatten(after)):
    np.testing.assert_array_equal(b.numpy(), a.numpy())


def test_networks_run_under_mixed_float16():
  keras.mixed_precision.set_global_policy("mixed_float16")
  try:
    model = FAMILY.build_model(FAMILY.presets["tiny"])
    x = _images(1)
    content, style = model.gen_a.encode(x)
    assert content.dtype == tf.float16 and style.dtype == tf.float16
    out = model.translate(x, "a2b")["images"]
    assert out.dtype == tf.float32 and np.all(np.isfinite(out.numpy()))
    assert all(np.all(np.isfinite(o.numpy().astype(np.float32))) for o in model.dis_b(x))
    assert model.gen_a.content_encoder.weights[0].dtype == "float32"  # variables stay float32
  finally:
    keras.mixed_precision.set_global_policy("float32")


def test_one_train_step_changes_every_variable_and_keeps_losses_finite():
  keras.utils.set_random_seed(0)
  config = models.get_config("munit", "tiny", recon_x_cyc_w=10.0)
  model = FAMILY.build_model(config)
  gen_opt, dis_opt = FAMILY.build_optimizers(config)
  assert isinstance(gen_opt, AdamL2) and gen_opt.l2_weight_decay == config.weight_decay
  before = [v.numpy().copy() for v in model.trainable_variables]
  out = FAMILY.train_step(model, gen_opt, dis_opt, _images(2), _images(2, seed=1), 2)
  expected = {"d/total", "d/adv_a", "d/adv_b", "g/total", "g/adv_a", "g/adv_b", "g/recon_x_a",
              "g/recon_x_b", "g/recon_s_a", "g/recon_s_b", "g/recon_c_a", "g/recon_c_b",
              "g/cycle_a", "g/cycle_b"}
  assert set(out) == expected
  assert all(np.isfinite(float(v)) for v in out.values())
  weighted = (out["g/adv_a"] + out["g/adv_b"] + 10 * (out["g/recon_x_a"] + out["g/recon_x_b"])
              + out["g/recon_s_a"] + out["g/recon_s_b"] + out["g/recon_c_a"] + out["g/recon_c_b"]
              + 10 * (out["g/cycle_a"] + out["g/cycle_b"]))
  assert float(out["g/total"]) == pytest.approx(float(weighted), rel=1e-5)
  unchanged = [v.path for v, b in zip(model.trainable_variables, before) if np.array_equal(v.numpy(), b)]
  assert not unchanged
  assert int(gen_opt.iterations) == 1 and int(dis_opt.iterations) == 1


def test_perceptual_loss_needs_weights_and_says_how_to_get_them(tmp_path, monkeypatch):
  monkeypatch.setenv("KERAS_HOME", str(tmp_path))
  with pytest.raises(FileNotFoundError, match="vgg_w > 0 needs ImageNet VGG16 weights.*vgg_w=0"):
    FAMILY.build_model(models.get_config("munit", "tiny", vgg_w=1.0))
  with pytest.raises(FileNotFoundError, match="missing.h5"):
    FAMILY.build_model(models.get_config("munit", "tiny", vgg_w=1.0, vgg_weights_path=str(tmp_path / "missing.h5")))


def test_perceptual_features_from_a_local_weights_file(tmp_path):
  from models.perceptual import VGGPerceptual, perceptual_loss
  path = str(tmp_path / "vgg16_notop.weights.h5")
  keras.applications.VGG16(include_top=False, weights=None, input_shape=(None, None, 3)).save_weights(path)
  vgg = VGGPerceptual(path)
  assert not vgg.trainable_weights
  x, y = _images(2, 32), _images(2, 32, seed=3)
  features = vgg(x)
  assert features.shape == (2, 4, 4, 512)  # relu5_3 at 1/8: MUNIT's Vgg16 has no 4th max-pool
  # Instance-normalized: per-channel mean ~0 wherever the channel is not constant.
  assert np.abs(features.numpy().mean(axis=(1, 2))).max() < 1e-3
  np.testing.assert_allclose(perceptual_loss(vgg, x, x).numpy(), 0.0, atol=1e-6)
  assert np.all(perceptual_loss(vgg, x, y).numpy() > 0)


def test_config_validation_and_family_record():
  assert FAMILY.name == "munit" and models.get_family("munit") is FAMILY
  assert set(FAMILY.presets) >= {"paper", "tiny"}
  paper = FAMILY.presets["paper"]
  assert (paper.lr, paper.beta1, paper.beta2, paper.weight_decay, paper.step_size, paper.gamma) == (
      1e-4, 0.5, 0.999, 1e-4, 100_000, 0.5)
  assert MUNITConfig.from_dict(paper.to_dict()) == paper
  with pytest.raises(ValueError, match="multiple of 4"):
    MUNITConfig(image_size=30)
  with pytest.raises(ValueError, match="does not fit image_size=32"):
    MUNITConfig(image_size=32, dis_n_layer=4, dis_num_scales=3)


def test_inspector_reports_every_network():
  from models.__main__ import format_table, inspect_family
  report = inspect_family("munit", "tiny", image_size=16)
  nets = {n["name"]: n for n in report["networks"]}
  assert set(nets) == {"gen_a", "gen_b", "dis_a", "dis_b"}
  children = {c["name"]: c for c in nets["gen_a"]["children"]}
  assert set(children) == {"content_encoder", "style_encoder", "mlp", "decoder"}
  assert sum(c["trainable_params"] for c in children.values()) == nets["gen_a"]["trainable_params"]
  assert children["content_encoder"]["output_shapes"] == [1, 4, 4, 32]
  assert children["mlp"]["output_shapes"] == [1, 128]  # 1 AdaIN block x 2 layers x (beta, gamma) x 32
  assert nets["dis_a"]["output_shapes"] == [[1, 2, 2, 1], [1, 1, 1, 1]]
  assert "content_encoder" in format_table(report)


def test_train_step_under_mixed_float16_with_loss_scaling():
  keras.mixed_precision.set_global_policy("mixed_float16")
  try:
    keras.utils.set_random_seed(0)
    config = models.get_config("munit", "tiny", image_size=16, dis_n_layer=2)
    model = FAMILY.build_model(config)
    # A moderate initial scale: the default 2^15 overflows float16 gradients and skips the first steps.
    gen_opt, dis_opt = (keras.optimizers.LossScaleOptimizer(opt, initial_scale=128.0)
                        for opt in FAMILY.build_optimizers(config))
    before = [v.numpy().copy() for v in model.trainable_variables]
    out = FAMILY.train_step(model, gen_opt, dis_opt, _images(2, 16), _images(2, 16, seed=1), 2)
    assert all(np.isfinite(float(v)) for v in out.values())
    assert all(v.dtype == tf.float32 for v in model.trainable_variables)
    assert not [v.path for v, b in zip(model.trainable_variables, before) if np.array_equal(v.numpy(), b)]
  finally:
    keras.mixed_precision.set_global_policy("float32")


def test_train_step_encodes_the_real_images_once_and_decodes_pairs_in_one_call():
  # trainer.py encodes x_a, x_b in dis_update and again in gen_update; the generator weights are the same in
  # both, so ours encodes them once, and each decoder runs its reconstruction and its translation as one
  # batch of 2B. Per generator and iteration: content encoder on x (B) and on the translation (B); decoder
  # on the D step's translation (B), then on the stacked pair (2B); style encoder on x and the translation.
  keras.utils.set_random_seed(0)
  config = models.get_config("munit", "tiny")
  model = FAMILY.build_model(config)
  gen_opt, dis_opt = FAMILY.build_optimizers(config)
  log = []
  for gen, d in ((model.gen_a, "a"), (model.gen_b, "b")):
    for part in ("content_encoder", "style_encoder", "decoder"):
      record_calls(getattr(gen, part), log, f"{part}_{d}")
  FAMILY.train_step(model, gen_opt, dis_opt, _images(3), _images(3, seed=1), 3)
  for d in ("a", "b"):
    assert [b for n, b in log if n == f"content_encoder_{d}"] == [3, 3]
    assert [b for n, b in log if n == f"style_encoder_{d}"] == [3, 3]
    assert [b for n, b in log if n == f"decoder_{d}"] == [3, 6]
