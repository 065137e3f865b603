"""A fourth model family, written here and registered through the public API, goes through export and serving.

The throwaway family "toy4" is multimodal AND has attention (a trait set no built-in family has), so the
signatures can only come from the traits and the one signature table (serving.signatures), never from a family
name. It is trained by nobody: a model_dir is written with the model_dir contract, exported (verified in a fresh
TensorFlow process against the Keras model), then served by the in-process model server and called over gRPC
with serving.client; every warmup request is checked as infra_validate checks it.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil

import keras
import numpy as np
import pytest
import tensorflow as tf

import models
from components import export_lib, infra_validate_lib, model_dir as model_dir_lib, translator
from components.errors import StageError
from models.api import Family, Traits
from models.configs import ConfigMixin
from serving import client as client_lib, config as config_lib, signatures as contract, warmup
from serving.server_lib import ModelServer

STYLE_DIM = 3


@dataclasses.dataclass(frozen=True)
class Toy4Config(ConfigMixin):
  """The toy family's config: image size, style size and whether it only takes image_size x image_size."""

  image_size: int = 8
  style_dim: int = STYLE_DIM
  fixed: bool = False


class Toy4Model(keras.Model):
  """x -> clip(x * scale_d + mean(style), -1, 1); attention = per-pixel channel mean mapped to [0, 1]."""

  size_multiple = 2

  def __init__(self, config: Toy4Config, **kwargs):
    super().__init__(**kwargs)
    self.config = config
    self.scale = {d: self.add_weight(name=f"scale_{d}", shape=(), initializer=keras.initializers.Constant(0.5))
                  for d in contract.DIRECTIONS}
    self.style_proj = self.add_weight(name="style_proj", shape=(3, config.style_dim),
                                      initializer=keras.initializers.Constant(0.25))

  @property
  def generator_variables(self) -> list:
    return list(self.scale.values()) + [self.style_proj]

  @property
  def discriminator_variables(self) -> list:
    return []

  def sample_style(self, seeds) -> tf.Tensor:
    """[N] int64 seeds -> [N, style_dim], the same seed giving the same style."""
    return tf.map_fn(lambda s: tf.random.stateless_normal([self.config.style_dim], tf.stack([s, s * 0 + 7])),
                     tf.cast(seeds, tf.int64), fn_output_signature=tf.float32)

  def encode_style(self, images, domain: str) -> tf.Tensor:  # pylint: disable=unused-argument
    return tf.reduce_mean(images, axis=[1, 2]) @ self.style_proj

  def translate(self, images, direction: str, style=None, training=False) -> dict:  # pylint: disable=unused-argument
    if style is None:
      style = tf.random.normal([tf.shape(images)[0], self.config.style_dim])
    shift = tf.reduce_mean(style, axis=-1)[:, None, None, None]
    out = tf.clip_by_value(images * self.scale[direction] + shift, -1.0, 1.0)
    return {"images": out, "attention": (tf.reduce_mean(images, axis=-1) + 1.0) / 2.0}


def build_toy4(config: Toy4Config) -> Toy4Model:
  return Toy4Model(config)


def _fixed_size(config: Toy4Config) -> int | None:
  return int(config.image_size) if config.fixed else None


def _unused(*args, **kwargs):
  raise AssertionError("not trained in this test")


TOY4 = Family(name="toy4", config_class=Toy4Config, presets={"paper": Toy4Config(), "tiny": Toy4Config()},
              build_model=build_toy4, train_step=_unused, sample_rows=_unused, build_optimizers=_unused,
              traits=Traits(multimodal=True, attention=True, fixed_size=_fixed_size))


@pytest.fixture(scope="module")
def toy4():
  models.register_family(TOY4)
  yield TOY4
  models.unregister_family(TOY4.name)


def write_model_dir(path: str, config: Toy4Config) -> Toy4Model:
  """A model_dir of the toy family as components.train writes one (config.json + one checkpoint)."""
  model = build_toy4(config)
  step = tf.Variable(7, dtype=tf.int64)
  manager = tf.train.CheckpointManager(model_dir_lib.model_checkpoint(model, step=step),
                                       os.path.join(path, model_dir_lib.CHECKPOINT_DIR), max_to_keep=1)
  manager.save(checkpoint_number=7)
  with open(os.path.join(path, model_dir_lib.CONFIG_FILE), "w", encoding="utf-8") as f:
    json.dump({"family": "toy4", "preset": "tiny", "model": config.to_dict(), "train": {}}, f)
  return model


def test_registration_is_checked(toy4):
  assert models.get_family("toy4") is toy4
  assert models.family_names() == ("unit", "munit", "ugatit", "toy4")
  with pytest.raises(ValueError, match=r"^Model family 'toy4' is already registered; pick another name\.$"):
    models.register_family(toy4)
  with pytest.raises(ValueError, match=r"^Model family 'munit' is already registered; pick another name\.$"):
    models.register_family(dataclasses.replace(toy4, name="munit"))
  with pytest.raises(ValueError, match=r"^Unknown model family 'toy5'; choose one of unit, munit, ugatit, toy4\.$"):
    models.get_family("toy5")


def test_builtin_traits():
  traits = {name: models.get_family(name).traits for name in models.FAMILY_NAMES}
  assert [(t.multimodal, t.attention) for t in traits.values()] == [(False, False), (True, False), (False, True)]
  ugatit = models.get_family("ugatit")
  assert ugatit.fixed_size(ugatit.presets["paper"]) == 256 and ugatit.fixed_size(ugatit.presets["paper_light"]) is None
  assert models.get_family("munit").fixed_size(models.get_family("munit").presets["paper"]) is None


def test_fourth_family_exports_and_serves_the_signature_table(toy4, tmp_path):
  model_dir, saved = str(tmp_path / "model"), str(tmp_path / "export")
  os.makedirs(model_dir)
  write_model_dir(model_dir, Toy4Config())

  result = export_lib.run(export_lib.ExportConfig(model_dir=model_dir, output_dir=saved, model_name="toy4"))
  table = contract.signature_table(contract.SignatureTraits(multimodal=True, attention=True, style_dim=STYLE_DIM))
  assert result.family == "toy4" and result.step == 7
  assert result.signatures == table
  assert sorted(table) == ["a2b", "a2b_encoded", "a2b_reference", "a2b_style", "b2a", "b2a_encoded",
                           "b2a_reference", "b2a_style", "serving_default"]
  assert table["a2b"]["inputs"] == {"images": ("uint8", [None, None, None, 3]), "seed": ("int64", [None])}
  assert table["a2b"]["outputs"] == {"images": ("uint8", [None, None, None, 3]),
                                     "attention": ("float32", [None, None, None]),
                                     "style": ("float32", [None, STYLE_DIM])}
  assert set(result.max_differences) == set(table)  # every signature verified in a fresh TensorFlow process
  assert infra_validate_lib.signature_defs(saved) == table  # what the server will read from saved_model.pb
  card = config_lib.read_model_card(saved)
  assert (card["family"], card["fixed_size"], card["size_multiple"]) == ("toy4", None, 2)

  root = tmp_path / "serving" / "toy4"
  shutil.copytree(saved, root / "1")
  server = ModelServer(config_lib.ServerConfig(models=(config_lib.ModelConfig("toy4", str(root)),), port=0,
                                               file_system_poll_wait_seconds=0)).start()
  try:
    with client_lib.TranslationClient(f"127.0.0.1:{server.port}", "toy4") as client:
      assert client.wait_until_available(30) == 1
      served = client.metadata()["signatures"]
      assert contract.traits_of(served) == contract.SignatureTraits(True, True, STYLE_DIM)
      for name, inputs in warmup.read_warmup_file(saved):  # infra_validate's check of every warmup request
        assert infra_validate_lib.check_response(table[name], inputs, client.predict(name, inputs)) == [], name
      images = np.full((2, 6, 4, 3), 191, np.uint8)  # 6 x 4: any size, padded to the multiple of 2 inside
      first = client.translate(images, "b2a", seed=11)
      again = client.translate(images, "b2a", seed=11)
      expected_style = toy4.build_model(Toy4Config()).sample_style(tf.constant([11, 12], tf.int64)).numpy()
      np.testing.assert_allclose(first["style"], expected_style, atol=1e-6)
      np.testing.assert_array_equal(first["images"], again["images"])
      # 191 -> 0.498 in [-1, 1]; * 0.5 + mean(style) -> uint8 per image, within one grey level.
      want = np.round((np.clip(0.5 * (191 / 127.5 - 1) + expected_style.mean(-1), -1, 1) + 1) * 127.5)
      assert np.abs(first["images"][:, 0, 0, 0].astype(float) - want).max() <= 1
      np.testing.assert_allclose(first["attention"], (191 / 127.5 - 1 + 1) / 2, atol=1e-6)
  finally:
    server.stop()


def test_fixed_size_trait_rejects_other_sizes(toy4):
  module = translator.TranslatorModule(build_toy4(Toy4Config(image_size=8, fixed=True)), toy4)
  assert module.traits == {"multimodal": True, "attention": True, "fixed_size": 8, "style_dim": STYLE_DIM}
  out = module.functions["a2b"](tf.zeros([1, 8, 8, 3], tf.uint8), tf.constant([1], tf.int64))
  assert out["images"].shape == (1, 8, 8, 3)
  with pytest.raises(tf.errors.InvalidArgumentError,
                     match=r"this model translates only 8x8 images .*got height x width =\] \[12\] \[8\]"):
    module.functions["a2b"](tf.zeros([1, 12, 8, 3], tf.uint8), tf.constant([1], tf.int64))


def test_unknown_family_in_model_dir_is_a_stage_error(tmp_path):
  os.makedirs(tmp_path / "m")
  (tmp_path / "m" / model_dir_lib.CONFIG_FILE).write_text('{"family": "toy9", "model": {}}')
  path = os.path.join(str(tmp_path / "m"), model_dir_lib.CONFIG_FILE)
  names = ", ".join(models.family_names())
  with pytest.raises(StageError) as error:
    model_dir_lib.load_model_dir(str(tmp_path / "m"))
  assert str(error.value) == (f"{path} names the model family 'toy9', which is not registered (Unknown model family "
                              f"'toy9'; choose one of {names}.); register it with models.register_family before "
                              "loading this model_dir.")
