"""The family-wide model contract of models/api.py: one loss-key scheme, one model API, one set of argument checks."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

import models
from components.trainer import read_scalars
from models import api
from tests.test_train_data import FAST_OVERRIDES

# The smallest configs a train step runs with (16 px; U-GAT-IT's discriminators need 32 px); MUNIT with its
# explicit cycle loss on, so that every family reports g/cycle_a|b.
TINY = {
    "munit": dict(FAST_OVERRIDES["munit"], image_size=16, dis_n_layer=2, recon_x_cyc_w=10.0),
    "unit": dict(FAST_OVERRIDES["unit"], image_size=16, dis_n_layer=2),
    "ugatit": dict(FAST_OVERRIDES["ugatit"], image_size=32, light=True),
}


def _images(size, seed):
  return tf.random.stateless_uniform([1, size, size, 3], seed=[seed, 0], minval=-1.0, maxval=1.0)


@pytest.fixture(scope="module")
def built():
  """family name -> (family, tiny config, model built by `family.build_model`)."""
  out = {}
  for name in models.FAMILY_NAMES:
    keras.utils.set_random_seed(0)
    family = models.get_family(name)
    config = models.get_config(name, "tiny", **TINY[name])
    out[name] = family, config, family.build_model(config)
  return out


@pytest.fixture(scope="module")
def step_losses(built):
  """family name -> the loss dict of one train step of its tiny model (batch 1)."""
  out = {}
  for name, (family, config, model) in built.items():
    gen_opt, dis_opt = family.build_optimizers(config)
    size = config.image_size
    out[name] = family.train_step(model, gen_opt, dis_opt, _images(size, 1), _images(size, 2), 1,
                                  tf.constant([3, 4], tf.int64))
  return out


def test_loss_key_problems_names_each_offending_key():
  assert api.loss_key_problems(["d/total", "g/total", "g/recon_x_a"]) == []
  assert api.loss_key_problems(["gen_total", "d/total", "g/Adv", "g/", "loss/g/x"]) == [
      "'gen_total' is not d/<term> or g/<term> (lower_snake_case)",
      "'g/Adv' is not d/<term> or g/<term> (lower_snake_case)",
      "'g/' is not d/<term> or g/<term> (lower_snake_case)",
      "'loss/g/x' is not d/<term> or g/<term> (lower_snake_case)",
      "'g/total' is missing",
  ]


def test_every_family_train_step_returns_only_scheme_keys(step_losses):
  assert set(step_losses) == set(models.FAMILY_NAMES)
  for name, losses in step_losses.items():
    assert api.loss_key_problems(list(losses)) == [], name
    assert {k.split("/")[0] for k in losses} == {"d", "g"}, name
  # The terms that read the same in every family (adversarial and cycle terms, both domains).
  shared = set.intersection(*(set(losses) for losses in step_losses.values()))
  assert shared == {"d/total", "g/total", "g/adv_a", "g/adv_b", "g/cycle_a", "g/cycle_b"}


def test_loss_keys_are_tensorboard_tags_as_written(step_losses, tmp_path):
  """The trainer writes loss/<key>; TensorBoard keeps every key's tag as written (no renaming of bad names)."""
  writer = tf.summary.create_file_writer(str(tmp_path))
  expected = set()
  with writer.as_default():
    for losses in step_losses.values():
      for key, value in losses.items():
        tf.summary.scalar(f"loss/{key}", value, step=1)
        expected.add(f"loss/{key}")
  writer.close()
  assert set(read_scalars(str(tmp_path))) == expected


# ------------------------------------------------------------------------------------ one model API

def test_generator_takes_the_domain_of_its_outputs_in_every_family(built):
  nets = {"munit": ("gen_a", "gen_b"), "unit": ("generator_a", "generator_b"), "ugatit": ("gen_b2a", "gen_a2b")}
  for name, (_, _, model) in built.items():
    assert [model.generator(d) for d in api.DOMAINS] == [getattr(model, n) for n in nets[name]], name
    with pytest.raises(ValueError) as error:
      model.generator("a2b")
    assert str(error.value) == "Unknown domain 'a2b'; use 'a' or 'b'.", name
  _, config, ugatit = built["ugatit"]
  x = _images(config.image_size, 5)
  np.testing.assert_array_equal(ugatit.translate(x, "b2a")["images"].numpy(), ugatit.generator("a")(x)[0].numpy())


def test_build_all_creates_every_variable_in_every_family(built):
  for name, (family, config, model) in built.items():
    fresh = family.config_class.from_dict(config.to_dict())
    keras.utils.set_random_seed(0)
    empty = type(model)(fresh, name=model.name)
    assert not empty.trainable_variables, name
    empty.build_all(config.image_size)
    assert [v.path for v in empty.variables] == [v.path for v in model.variables], name


def test_ugatit_full_builds_only_at_its_image_size():
  from models.ugatit.model import UGATIT  # pylint: disable=import-outside-toplevel
  model = UGATIT(models.get_config("ugatit", "tiny", **dict(TINY["ugatit"], light=False)))
  with pytest.raises(ValueError) as error:
    model.build_all(64)
  assert str(error.value) == ("U-GAT-IT full takes only 32 px images (config.image_size), got 64; build it with "
                              "that size or use the light model (light=True).")


def test_translate_checks_are_one_helper_with_one_message_each(built):
  x = tf.zeros([1, 32, 30, 3])
  assert api.check_translate_args("M", tf.zeros([1, 8, 8, 3]), "b2a", None, 4) == ("b", "a")
  for name, label in (("munit", "MUNIT"), ("unit", "UNIT"), ("ugatit", "U-GAT-IT")):
    model = built[name][2]
    cases = [("a2a", None, "Unknown direction 'a2a'; use one of a2b, b2a."),
             ("a2b", None, f"{label} needs image width to be a multiple of 4, got 30; pad or resize the images.")]
    if not models.get_family(name).traits.multimodal:
      cases.append(("a2b", tf.zeros([1, 8]),
                    f"{label} is unimodal: translate() takes no style; pass style=None."))
    for direction, style, message in cases:
      images = x if "multiple" in message else tf.zeros([1, 32, 32, 3])
      with pytest.raises(ValueError) as error:
        model.translate(images, direction, style=style)
      assert str(error.value) == message, name
