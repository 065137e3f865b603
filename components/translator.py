"""The signature contract on a Keras model: the object components.export saves and components.evaluate measures.

`TranslatorModule(model, family)` wraps a family's TranslationModel in the functions of the signature table
(serving.signatures): uint8 wire images <-> model images in [-1, 1], padding to the model's size multiple and
cropping back, the fixed-size check, MUNIT's seeded / style / reference variants, encoded PNG/JPEG in and PNG out.
Which signatures exist follows the family's traits (`family_traits`), never its name.
A contract module: stages import it, it imports no stage.
"""

from __future__ import annotations

import types

import tensorflow as tf

import models
from models.api import to_model_images, to_wire_images  # noqa: F401  (the pixel convention of models/api.py)
from serving import signatures as contract

def family_traits(family: "models.Family | str", model) -> dict:
  """What the signatures depend on, from the family's traits (models.api.Traits) and the built `model`:
  {"multimodal", "attention", "fixed_size" (int or None), "style_dim" (int, multimodal only, else None)}.

  `family`: a models.Family or a registered family name.
  """
  family = models.get_family(family) if isinstance(family, str) else family
  traits = family.traits
  style_dim = int(model.sample_style(tf.constant([0], tf.int64)).shape[-1]) if traits.multimodal else None
  return {"multimodal": bool(traits.multimodal), "attention": bool(traits.attention),
          "fixed_size": family.fixed_size(model.config), "style_dim": style_dim}


def signature_traits(traits: dict) -> contract.SignatureTraits:
  """`family_traits`' dict -> the signature table's SignatureTraits."""
  return contract.SignatureTraits(multimodal=traits["multimodal"], attention=traits["attention"],
                                  style_dim=traits["style_dim"])


def expected_signatures(traits: dict) -> dict:
  """The contract for `family_traits`' dict: serving.signatures.signature_table (name -> {"inputs", "outputs":
  {alias: (dtype, shape)}}, shapes with None for any size)."""
  return contract.signature_table(signature_traits(traits))


class TranslatorModule(tf.Module):
  """The exported object: uint8 <-> model conversion, padding and the signature functions around a model.

  Also used in-process by components.evaluate, so that a candidate model and a pushed baseline SavedModel are
  measured through the same code path.
  """

  def __init__(self, model, family: "models.Family | str"):
    super().__init__(name="translator")
    traits = family_traits(family, model)
    # The model sits in a non-trackable holder so that the SavedModel does not save the whole Keras object
    # (discriminators, perceptual VGG, ...); `signatures()` tracks exactly the variables the functions capture.
    self._holder = types.SimpleNamespace(model=model)
    self.traits = traits
    self.multiple = int(model.size_multiple)
    # The functions are built from the signature table: its inputs (in order) are the functions' arguments.
    table = contract.signature_table(signature_traits(traits))
    # Untracked too: only the signatures are saved (saving the tf.functions as well would trace them twice).
    self._holder.functions = {}
    for name, spec in table.items():
      if name == contract.SERVING_DEFAULT:
        continue
      direction = contract.direction_of(name)
      if name.endswith(contract.ENCODED_SUFFIX):
        fn = self._encoded(direction)
      elif name.endswith(contract.STYLE_SUFFIX):
        fn = self._styled(direction)
      elif name.endswith(contract.REFERENCE_SUFFIX):
        fn = self._referenced(direction)
      elif contract.takes_seed(spec["inputs"]):
        fn = self._seeded(direction)
      else:
        fn = self._plain(direction)
      self.functions[name] = tf.function(fn, input_signature=[
          tf.TensorSpec(shape, tf.as_dtype(dtype), name=alias) for alias, (dtype, shape) in spec["inputs"].items()])

  @property
  def functions(self) -> dict:
    """Signature name (without serving_default) -> tf.function with its input signature."""
    return self._holder.functions

  # --- the computations, shared by all signatures ---------------------------------------------------------
  def _checked_padded(self, images: tf.Tensor, what: str = "images") -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """uint8 [N, H, W, 3] -> (float [N, H', W', 3] reflect-padded to the size multiple, H, W); asserts sizes."""
    height, width = tf.shape(images)[1], tf.shape(images)[2]
    fixed = self.traits["fixed_size"]
    if fixed is not None:
      check = tf.debugging.Assert(
          tf.logical_and(tf.equal(height, fixed), tf.equal(width, fixed)),
          [f"this model translates only {fixed}x{fixed} {what} (a fixed-size model, e.g. U-GAT-IT full, whose MLP "
           "flattens the feature map); got height x width =", height, width,
           f"; resize or crop the {what} to {fixed}x{fixed}."])
    else:
      check = tf.debugging.Assert(
          tf.logical_and(height >= self.multiple, width >= self.multiple),
          [f"{what} must be at least {self.multiple}x{self.multiple} pixels; got height x width =", height, width])
    with tf.control_dependencies([check]):
      x = to_model_images(images)
    if fixed is not None:
      return tf.ensure_shape(x, [None, fixed, fixed, 3]), height, width
    pad_h, pad_w = (-height) % self.multiple, (-width) % self.multiple
    x = tf.pad(x, [[0, 0], [0, pad_h], [0, pad_w], [0, 0]], mode="REFLECT")
    return x, height, width

  def translate(self, images: tf.Tensor, direction: str, style: tf.Tensor | None = None) -> dict:
    """uint8 [N, H, W, 3] -> {"images": uint8 [N, H, W, 3], "attention"?: [N, H, W]} (padding/cropping)."""
    x, height, width = self._checked_padded(images)
    out = self._holder.model.translate(x, direction, style=style, training=False)
    result = {"images": to_wire_images(out["images"][:, :height, :width])}
    if self.traits["attention"]:
      result["attention"] = tf.clip_by_value(tf.cast(out["attention"][:, :height, :width], tf.float32), 0., 1.)
    return result

  def _batch_check(self, images: tf.Tensor, other: tf.Tensor, name: str):
    """Asserts that `other` has one row per image."""
    return tf.debugging.assert_equal(tf.shape(other)[0], tf.shape(images)[0],
                                     message=f"`{name}` needs one row per image in `images`")

  def _plain(self, direction: str):
    def fn(images):
      return self.translate(images, direction)
    return fn

  def _seeded(self, direction: str):
    def fn(images, seed):
      with tf.control_dependencies([self._batch_check(images, seed, "seed")]):
        style = tf.cast(self._holder.model.sample_style(seed), tf.float32)
      return {**self.translate(images, direction, style=style), "style": style}
    return fn

  def _styled(self, direction: str):
    def fn(images, style):
      with tf.control_dependencies([self._batch_check(images, style, "style")]):
        style = tf.identity(style)
      return self.translate(images, direction, style=style)
    return fn

  def _referenced(self, direction: str):
    target_domain = direction[-1]
    def fn(images, reference):
      with tf.control_dependencies([self._batch_check(images, reference, "reference")]):
        x_ref, _, _ = self._checked_padded(reference, "reference images")
      style = tf.cast(self._holder.model.encode_style(x_ref, target_domain), tf.float32)
      return {**self.translate(images, direction, style=style), "style": style}
    return fn

  def _encoded(self, direction: str):
    def one(data):
      image = tf.io.decode_image(data, channels=3, dtype=tf.uint8, expand_animations=False)[None]
      if self.traits["multimodal"]:
        style = tf.cast(self._holder.model.sample_style(tf.zeros([1], tf.int64)), tf.float32)
        out = self.translate(image, direction, style=style)
      else:
        out = self.translate(image, direction)
      return tf.io.encode_png(out["images"][0])

    def fn(image_bytes):
      return {"image_bytes": tf.map_fn(one, image_bytes, fn_output_signature=tf.TensorSpec([], tf.string))}
    return fn

  def signatures(self) -> dict:
    """Signature name -> concrete function, including serving_default (= a2b)."""
    concrete = {name: fn.get_concrete_function() for name, fn in self.functions.items()}
    captured = {}
    for function in concrete.values():
      for variable in function.variables:
        captured.setdefault(id(variable), variable)
    self.model_variables = list(captured.values())  # tracked: what tf.saved_model.save writes
    return {contract.SERVING_DEFAULT: concrete[contract.DEFAULT_DIRECTION], **concrete}
