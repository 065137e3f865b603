"""Tests of the UNIT family (paper version, mingyuliutw/UNIT branch version_02): parameter counts against the
official code, shared layers, Gaussian latent, translation API, .keras round trips, mixed precision, one step.

Official parameter counts: version_02 src/trainers/cocogan_nets.py (+ common_net.py, init.py) exported with
`git show` into /tmp and instantiated with CPU PyTorch outside this project, with the gen/dis sections of
exps/unit/cat2tiger.yaml (COCOResGen ch 64, 3/3/1/1/3/3 blocks; COCODis ch 64, n_layer 6), sum of p.numel():
  COCOResGen 18,017,286 = 2 x encode_A 3,918,976 + enc_shared 1,180,160 + dec_shared 1,180,160
                          + 2 x decode_A 3,909,507
  COCODis 50,298,114 = 2 x model_A 25,149,057
Output shapes there at 216 px: shared code [2, 256, 54, 54], x_ab [1, 3, 216, 216], model_A(x) [1, 1, 4, 4].
"""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

import models
from models.unit import FAMILY, UNITConfig, UNITModel
from models.unit.networks import Discriminator, Encoder, Generator, SharedResBlocks
from tests.call_log import record_calls

OFFICIAL = {"encoder": 3_918_976, "shared_encoder": 1_180_160, "shared_decoder": 1_180_160,
            "generator": 3_909_507, "gen_total": 18_017_286, "dis": 25_149_057}


def _count(net) -> int:
  return int(sum(np.prod(v.shape) for v in net.weights))


def _images(batch=2, size=32, seed=0):
  return tf.random.stateless_uniform([batch, size, size, 3], seed=[seed, 2], minval=-1.0, maxval=1.0)


@pytest.fixture(scope="module")
def tiny():
  """A tiny UNIT model (32x32) shared by the read-only tests."""
  keras.utils.set_random_seed(0)
  return FAMILY.build_model(FAMILY.presets["tiny"])


def test_paper_parameter_counts_equal_the_official_implementation():
  model = UNITModel(FAMILY.presets["paper"])
  model.build_all(64)  # parameter counts do not depend on the image size (216 in cat2tiger)
  assert _count(model.encoder_a) == _count(model.encoder_b) == OFFICIAL["encoder"]
  assert _count(model.shared_encoder) == OFFICIAL["shared_encoder"]
  assert _count(model.shared_decoder) == OFFICIAL["shared_decoder"]
  assert _count(model.generator_a) == _count(model.generator_b) == OFFICIAL["generator"]
  assert sum(int(np.prod(v.shape)) for v in model.generator_variables) == OFFICIAL["gen_total"]
  assert _count(model.dis_a) == _count(model.dis_b) == OFFICIAL["dis"]
  z = model.encode(tf.zeros([1, 64, 64, 3]), "a")
  assert z.shape == (1, 16, 16, 256)
  assert model.dis_a(tf.zeros([1, 64, 64, 3]))[0].shape == (1, 1, 1, 1)


def test_shared_layers_are_one_network_used_by_both_domains(tiny):
  shared = {id(v) for v in tiny.shared_encoder.weights + tiny.shared_decoder.weights}
  gen_ids = [id(v) for v in tiny.generator_variables]
  assert len(gen_ids) == len(set(gen_ids))  # no variable listed twice
  assert shared <= set(gen_ids)
  x = _images(1)
  # Both directions go through the same shared decoder: a2b == generator_b(shared_decoder(shared_encoder(E_a(x)))).
  expected = tiny.generator_b(tiny.shared_decoder(tiny.shared_encoder(tiny.encoder_a(x))))
  np.testing.assert_array_equal(tiny.translate(x, "a2b")["images"].numpy(), expected.numpy())


def test_gaussian_latent_noise_only_in_training(tiny):
  keras.utils.set_random_seed(1)
  x = _images(2)
  mu = tiny.encode(x, "a")
  np.testing.assert_array_equal(mu.numpy(), tiny.encode(x, "a").numpy())
  z = tiny.encode(x, "a", training=True)
  eps = (z - mu).numpy()
  assert abs(eps.std() - 1.0) < 0.1 and abs(eps.mean()) < 0.1  # z = mu + N(0, I)


def test_translate_api_and_sample_rows(tiny):
  x = _images(2, 44)
  assert tiny.size_multiple == 4
  out = tiny.translate(x, "b2a")
  assert set(out) == {"images"} and out["images"].shape == (2, 44, 44, 3) and out["images"].dtype == tf.float32
  with pytest.raises(ValueError, match="height to be a multiple of 4, got 30"):
    tiny.translate(tf.zeros([1, 30, 32, 3]), "a2b")
  with pytest.raises(ValueError, match="takes no style"):
    tiny.translate(x, "a2b", style=tf.zeros([2, 8]))
  rows = FAMILY.sample_rows(tiny, _images(2), _images(2, seed=1))
  assert list(rows) == ["x_a", "x_aa", "x_ab", "x_aba", "x_b", "x_bb", "x_ba", "x_bab"]
  assert all(v.shape == (2, 32, 32, 3) for v in rows.values())


def test_multi_scale_discriminator_option():
  dis = Discriminator(ch=4, n_layer=3, num_scales=3)
  outs = dis(_images(1, 64))
  assert [o.shape for o in outs] == [(1, 8, 8, 1), (1, 4, 4, 1), (1, 2, 2, 1)]
  single = Discriminator(ch=4, n_layer=3, num_scales=1)
  single(_images(1, 64))
  assert _count(dis) == 3 * _count(single)  # COCOMsDis: one COCODis-like net per scale


@pytest.mark.parametrize("resample_norm,invariant", [("in", True), ("none", False)])
def test_resample_norm_decides_whether_the_stride_2_convs_are_instance_normalised(resample_norm, invariant):
  # Instance norm subtracts each channel's spatial mean, so adding a constant to the bias of the conv before it
  # cannot change the output; without the norm the same shift must show. Checked on the encoder's stride-2 conv
  # ("down1") and the generator's stride-2 transposed conv ("up0"), the two places resample_norm governs.
  keras.utils.set_random_seed(0)
  encoder = Encoder(ch=4, n_front_blk=3, n_res_blk=1, resample_norm=resample_norm)
  generator = Generator(ch=16, n_res_blk=1, n_front_blk=3, resample_norm=resample_norm)
  for net, x, block_name in ((encoder, _images(2, 32), "down1"),
                             (generator, tf.random.stateless_normal([2, 8, 8, 16], seed=[3, 4]), "up0")):
    before = net(x).numpy()
    block = next(b for b in net.blocks if b.name == block_name)
    assert block.norm == resample_norm
    block.conv.bias.assign(block.conv.bias + 5.0)
    after = net(x).numpy()
    change = float(np.max(np.abs(before - after)))
    assert (change < 1e-3) if invariant else (change > 1e-2), (block_name, change)


def test_resample_norm_keeps_the_parameter_count_and_is_validated():
  paper = UNITModel(FAMILY.presets["paper"])
  paper.build_all(32)
  plain = UNITModel(UNITConfig(resample_norm="none"))
  plain.build_all(32)
  assert _count(plain.encoder_a) == OFFICIAL["encoder"] and _count(plain.generator_a) == OFFICIAL["generator"]
  assert FAMILY.presets["paper"].resample_norm == "in" and FAMILY.presets["budget"].resample_norm == "none"
  with pytest.raises(ValueError, match=r"UNITConfig.resample_norm must be one of 'in', 'none', got 'bn'."):
    UNITConfig(resample_norm="bn")


@pytest.mark.parametrize("net_fn,size", [
    (lambda: Encoder(ch=4, n_front_blk=3, n_res_blk=1), 32),
    (lambda: Generator(ch=16, n_res_blk=1, n_front_blk=3), 8),
    (lambda: Encoder(ch=4, n_front_blk=3, n_res_blk=1, resample_norm="none"), 32),
    (lambda: Discriminator(ch=4, n_layer=3, num_scales=2), 32),
    (lambda: SharedResBlocks(n_blk=1, noise=True), 8),
])
def test_keras_save_load_round_trip(tmp_path, net_fn, size):
  net = net_fn()
  channels = 16 if size == 8 else 3
  x = tf.random.stateless_normal([2, size, size, channels], seed=[1, 2])
  before = net(x)
  path = str(tmp_path / "net.keras")
  net.save(path)
  after = keras.saving.load_model(path)(x)
  for b, a in zip(tf.nest.flatten(before), tf.nest.flatten(after)):
    np.testing.assert_array_equal(b.numpy(), a.numpy())


def test_networks_run_under_mixed_float16():
  keras.mixed_precision.set_global_policy("mixed_float16")
  try:
    model = FAMILY.build_model(FAMILY.presets["tiny"])
    x = _images(1)
    assert model.encode(x, "a").dtype == tf.float16
    out = model.translate(x, "a2b")["images"]
    assert out.dtype == tf.float32 and np.all(np.isfinite(out.numpy()))
    assert np.all(np.isfinite(model.dis_a(x)[0].numpy().astype(np.float32)))
  finally:
    keras.mixed_precision.set_global_policy("float32")


def test_one_train_step_changes_every_variable_and_keeps_losses_finite():
  keras.utils.set_random_seed(0)
  config = FAMILY.presets["tiny"]
  model = FAMILY.build_model(config)
  gen_opt, dis_opt = FAMILY.build_optimizers(config)
  before = [v.numpy().copy() for v in model.trainable_variables]
  out = FAMILY.train_step(model, gen_opt, dis_opt, _images(2), _images(2, seed=1), 2)
  assert set(out) == {"d/total", "d/adv_a", "d/adv_b", "g/total", "g/adv_a", "g/adv_b", "g/recon_x_a", "g/recon_x_b",
                      "g/cycle_a", "g/cycle_b", "g/kl_a", "g/kl_b", "g/kl_cycle_b", "g/kl_cycle_a"}
  assert all(np.isfinite(float(v)) for v in out.values())
  weighted = (10 * (out["g/adv_a"] + out["g/adv_b"]) + 100 * (out["g/recon_x_a"] + out["g/recon_x_b"])
              + 100 * (out["g/cycle_a"] + out["g/cycle_b"]) + 0.1 * (out["g/kl_a"] + out["g/kl_b"])
              + 0.1 * (out["g/kl_cycle_b"] + out["g/kl_cycle_a"]))
  assert float(out["g/total"]) == pytest.approx(float(weighted), rel=1e-5)
  assert float(out["d/total"]) == pytest.approx(10 * float(out["d/adv_a"] + out["d/adv_b"]), rel=1e-5)
  unchanged = [v.path for v, b in zip(model.trainable_variables, before) if np.array_equal(v.numpy(), b)]
  assert not unchanged


def test_train_step_encodes_the_real_images_once_and_stacks_both_domains():
  # cocogan_trainer.py encodes x_a, x_b in dis_update and again in gen_update; the generator weights are the same
  # in both, so ours encodes them once (each update adds its own noise to the mean code). Both domains' codes run
  # the shared encoder and decoder as one batch of 2B, each generator decodes both codes at once in the G step,
  # and each discriminator scores real and fake as one batch in the D step.
  keras.utils.set_random_seed(0)
  config = FAMILY.presets["tiny"]
  model = FAMILY.build_model(config)
  gen_opt, dis_opt = FAMILY.build_optimizers(config)
  log = []
  nets = {"encoder_a": model.encoder_a, "encoder_b": model.encoder_b, "generator_a": model.generator_a,
          "generator_b": model.generator_b, "dis_a": model.dis_a, "dis_b": model.dis_b,
          "shared_encoder": model.shared_encoder.blocks[0], "shared_decoder": model.shared_decoder.blocks[0]}
  for name, net in nets.items():
    record_calls(net, log, name)
  FAMILY.train_step(model, gen_opt, dis_opt, _images(3), _images(3, seed=1), 3)
  calls = {name: [b for n, b in log if n == name] for name in nets}
  assert calls == {"encoder_a": [3, 3], "encoder_b": [3, 3],  # x (G tape), the translation (cycle)
                   "shared_encoder": [6, 6], "shared_decoder": [6, 6, 6],  # D step, G step, cycle
                   "generator_a": [3, 6, 3], "generator_b": [3, 6, 3],  # D step, reconstruction + translation, cycle
                   "dis_a": [6, 3], "dis_b": [6, 3]}  # real + fake (D step), translation (G step)


def test_config_validation_and_family_record():
  assert FAMILY.name == "unit" and models.get_family("unit") is FAMILY
  paper = FAMILY.presets["paper"]
  assert (paper.gan_w, paper.ll_direct_link_w, paper.kl_direct_link_w, paper.ll_cycle_link_w,
          paper.kl_cycle_link_w, paper.image_size, paper.lr_policy) == (10, 100, 0.1, 100, 0.1, 216, "constant")
  assert UNITConfig.from_dict(paper.to_dict()) == paper
  with pytest.raises(ValueError, match="multiple of 4"):
    UNITConfig(image_size=30)
  with pytest.raises(ValueError, match="n_gen_front_blk .2. must be equal"):
    UNITConfig(n_gen_front_blk=2)
  assert UNITConfig(image_size=32, dis_n_layer=6).dis_n_layer == 6  # zero-padded s2 convs end at 1x1


@pytest.mark.slow
def test_inspector_cli_json():
  import json
  import os
  import subprocess
  import sys
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  proc = subprocess.run([sys.executable, "-m", "models", "--model=unit", "--preset=tiny", "--image_size=16",
                         "--json"], cwd=root, capture_output=True, text=True, timeout=300,
                        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
  assert proc.returncode == 0, proc.stderr
  report = json.loads(proc.stdout)
  nets = {n["name"]: n for n in report["networks"]}
  assert set(nets) == {"encoder_a", "encoder_b", "shared_encoder", "shared_decoder", "generator_a", "generator_b",
                       "dis_a", "dis_b"}
  assert nets["generator_a"]["output_shapes"] == [1, 16, 16, 3]
  assert nets["shared_encoder"]["output_shapes"] == [1, 4, 4, 32]
  assert report["total"]["trainable_params"] == sum(n["trainable_params"] for n in nets.values())
  from models.__main__ import inspect_family
  with pytest.raises(ValueError, match="Unknown preset 'huge' for unit; choose one of budget, paper, tiny"):
    inspect_family("unit", "huge")
