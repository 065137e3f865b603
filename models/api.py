"""The contract between models/ and everything that trains, evaluates or exports a model.

Every model family (UNIT, MUNIT, U-GAT-IT) provides one `Family` record. The trainer, evaluator and exporter
only ever use what is declared here (what a family's translation offers is its `Traits`, never its name), so a
family is added by writing its package and one line in `models/__init__.py` (or, at run time,
`models.register_family`).

Conventions (all families):
  * images inside the models are float32 NHWC `[B, H, W, 3]` scaled to [-1, 1];
  * a "direction" is the string "a2b" or "b2a";
  * losses returned by a train step are per-replica scalars already reduced with
    `tf.nn.compute_average_loss(per_example, global_batch_size=...)`, so summing them over replicas
    (`strategy.reduce(SUM, ...)`) gives the global-batch mean whatever the number of replicas;
  * every random draw of a train step is a stateless op seeded from the step's `seed` (`split_seed`), so the
    trainer alone owns the random state (checkpointed) and decides what each replica and step draws;
  * the loss keys of a train step follow one scheme (LOSS_KEY_PATTERN), which the trainer writes to TensorBoard
    as `loss/<key>` (the slash groups the plots):
      `d/<term>` a discriminator loss, `g/<term>` a generator loss; `<term>` is lower_snake_case and ends in
      `_a` / `_b` for the domain whose images the term judges or rebuilds (`g/adv_a`: the generator against
      domain a's discriminator, on x_ba; `g/cycle_a`: |x_aba - x_a|; `g/cam_a`: the CAM term of the generator
      that outputs domain a). `d/total` and `g/total` (always present) are the weighted sums the optimizers
      minimize, `*/total_a|b` a domain's share of them; every other key is an unweighted term. Terms used:
      adv (adversarial), recon_x (within-domain image reconstruction), recon_s, recon_c (MUNIT style and
      content reconstruction), cycle (image cycle a->b->a), kl, kl_cycle (UNIT latent KL, direct and in the
      cycle), identity, cam (U-GAT-IT), vgg (MUNIT perceptual).
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any, Callable, Mapping, Protocol

import tensorflow as tf

DOMAINS = ("a", "b")  # the two image domains (dataset folders trainA/trainB: the upper-case letter)
DIRECTIONS = ("a2b", "b2a")  # f"{source}2{target}" over DOMAINS
LOSS_KEY_PATTERN = re.compile(r"[dg]/[a-z][a-z0-9_]*")
REQUIRED_LOSS_KEYS = ("d/total", "g/total")


def loss_key_problems(keys) -> list[str]:
  """What keeps `keys` (a train step's loss dict keys) from the scheme above; [] when they follow it."""
  problems = [f"{k!r} is not d/<term> or g/<term> (lower_snake_case)" for k in keys
              if not isinstance(k, str) or not LOSS_KEY_PATTERN.fullmatch(k)]
  return problems + [f"{k!r} is missing" for k in REQUIRED_LOSS_KEYS if k not in keys]


class TranslationModel(Protocol):
  """What every family's top-level `keras.Model` offers (all sub-networks are tracked attributes).

  Attributes:
    config: the family's frozen config dataclass.
    size_multiple: H and W of `translate`'s images must be multiples of it.
    generator_variables: list of trainable variables updated by the generator optimizer.
    discriminator_variables: list of trainable variables updated by the discriminator optimizer.
  """

  config: Any
  size_multiple: int

  def build_all(self, image_size: int) -> None:
    """Creates every variable for `[N, image_size, image_size, 3]` inputs (`Family.build_model` calls it)."""
    ...

  def generator(self, domain: str) -> Any:
    """The generator network whose outputs are images of `domain` ("a" or "b"; `check_domain`)."""
    ...

  @property
  def generator_variables(self) -> list: ...

  @property
  def discriminator_variables(self) -> list: ...

  def translate(self, images: tf.Tensor, direction: str, style: tf.Tensor | None = None,
                training: bool = False) -> dict[str, tf.Tensor]:
    """Translates `images` [B, H, W, 3] in [-1, 1].

    Returns {"images": [B, H, W, 3] in [-1, 1]} plus, for MUNIT, "style" [B, style_dim] (the style used;
    when `style` is None a style is drawn from N(0, I)) and, for U-GAT-IT, "attention" [B, H, W] in [0, 1]
    (the CAM heatmap, min-max normalized per image and resized to the image size).
    H and W must be multiples of `model.size_multiple` (the exporter pads to that); U-GAT-IT full additionally
    requires H == W == config.image_size.
    """
    ...


def check_domain(domain: str) -> str:
  """`domain` if it is "a" or "b", else ValueError."""
  if domain not in DOMAINS:
    raise ValueError(f"Unknown domain {domain!r}; use 'a' or 'b'.")
  return domain


def direction_domains(direction: str) -> tuple[str, str]:
  """(source, target) domain of "a2b" or "b2a", else ValueError."""
  if direction not in DIRECTIONS:
    raise ValueError(f"Unknown direction {direction!r}; use one of {', '.join(DIRECTIONS)}.")
  return direction[0], direction[-1]


def check_translate_args(model_name: str, images, direction: str, style, size_multiple: int,
                         takes_style: bool = False) -> tuple[str, str]:
  """The argument checks of every family's `translate`; returns `direction_domains(direction)`.

  ValueError for an unknown direction, a static image height or width that is not a multiple of
  `size_multiple`, or a `style` given to a model that takes none (`takes_style` False: a unimodal family).
  """
  domains = direction_domains(direction)
  for axis, size in (("height", images.shape[1]), ("width", images.shape[2])):
    if size is not None and size % size_multiple:
      raise ValueError(f"{model_name} needs image {axis} to be a multiple of {size_multiple}, got {size}; "
                       f"pad or resize the images.")
  if style is not None and not takes_style:
    raise ValueError(f"{model_name} is unimodal: translate() takes no style; pass style=None.")
  return domains


def to_model_images(images: tf.Tensor) -> tf.Tensor:
  """uint8 [N, H, W, 3] wire images -> float32 [N, H, W, 3] in [-1, 1]."""
  return tf.cast(images, tf.float32) / 127.5 - 1.0


def to_wire_images(images: tf.Tensor) -> tf.Tensor:
  """float [N, H, W, 3] in [-1, 1] -> uint8 [N, H, W, 3]: round((x + 1) * 127.5), clipped to [0, 255]."""
  return tf.cast(tf.round(tf.clip_by_value((tf.cast(images, tf.float32) + 1.0) * 127.5, 0.0, 255.0)), tf.uint8)


RESIZE_MODES = ("shorter_side", "square")


@dataclasses.dataclass(frozen=True)
class ImageTransform:
  """How a family's official data loader turns a stored image into a training or a test input of side S.

  Training: resize to T = round(S * train_scale) (`resize` "shorter_side": the shorter side to T, aspect kept;
  "square": both sides to T), then a random S x S crop and, with `flip`, a random horizontal flip.
  Test: resize to round(S * test_scale) the same way, then the center S x S crop (none when the resize already
  gives S x S). Official loaders (REFERENCE.md "Transforms"):
    * MUNIT: shorter side to new_size (= the crop size in its configs), random crop, flip; test: resize.
    * UNIT v02: scale to 1.2 x the crop size, random crop, flip; test: the same scale, center crop.
    * UGATIT-pytorch: flip, resize to (img_size + 30) square, random crop img_size; test: resize to img_size
      square. Expressed as train_scale = 286 / 256, which is exactly +30 at the paper's 256 px and keeps the
      same crop jitter (~11%) at other sizes (+30 on a 32 px image would crop away half the picture).
  """

  resize: str = "shorter_side"
  train_scale: float = 1.0
  test_scale: float = 1.0
  flip: bool = True

  def __post_init__(self):
    if self.resize not in RESIZE_MODES:
      raise ValueError(f"ImageTransform.resize must be one of {RESIZE_MODES}, got {self.resize!r}.")
    if self.train_scale < 1.0 or self.test_scale < 1.0:
      raise ValueError(f"ImageTransform scales must be >= 1 (the crop must fit), got train_scale="
                       f"{self.train_scale}, test_scale={self.test_scale}.")

  def resized_size(self, image_size: int, training: bool) -> int:
    """T: the side (shorter side, or both sides for "square") an image is resized to before the S crop."""
    return max(int(image_size), int(round(image_size * (self.train_scale if training else self.test_scale))))


def any_size(config) -> None:  # pylint: disable=unused-argument
  """`Traits.fixed_size` of a fully convolutional family: any H, W (multiples of `size_multiple` after padding)."""
  return None


@dataclasses.dataclass(frozen=True)
class Traits:
  """What a family's translation offers beyond images -> images; the signatures, evaluation and clients follow it.

  Attributes:
    multimodal: the model draws styles (MUNIT): `translate(style=...)` takes a style `[B, style_dim]`, and the
      model has `sample_style(seeds int64 [N]) -> [N, style_dim]` and `encode_style(images, domain)`; the export
      adds a `seed` input and the `_style` / `_reference` signatures.
    attention: `translate` also returns "attention" `[B, H, W]` in [0, 1] (U-GAT-IT's CAM heatmap).
    fixed_size: config -> the only side H == W the model translates (U-GAT-IT full: config.image_size, its MLP
      flattens the feature map), or None when any size is taken (`any_size`).
  """

  multimodal: bool = False
  attention: bool = False
  fixed_size: Callable[[Any], int | None] = any_size


@dataclasses.dataclass(frozen=True)
class Family:
  """One model family, as the rest of the project sees it.

  Attributes:
    name: "unit", "munit" or "ugatit".
    config_class: the frozen dataclass of the family's config (architecture, loss weights, optimizer).
    presets: preset name -> config instance; at least "paper" (the official defaults) and "tiny".
    build_model: config -> built TranslationModel (variables created for config.image_size).
    train_step: (model, gen_optimizer, dis_optimizer, x_a, x_b, global_batch_size, seed=None) -> dict of loss
      scalars. Runs inside `strategy.run` (one replica's view): discriminator update with its own tape, then the
      generator update with its own tape, exactly the paper's/official code's losses. `seed` (integer `[2]`,
      different per replica and step) seeds every random draw of the step (MUNIT prior styles, UNIT latent
      noise) through `split_seed`; None (a direct call) draws one from TensorFlow's global RNG.
    sample_rows: (model, x_a, x_b) -> ordered dict row_name -> [B, H, W, 3] in [-1, 1], the rows of the
      sample grid (inputs, reconstructions, translations, cycles; MUNIT several styles and a fixed style;
      U-GAT-IT CAM heatmaps rendered as RGB).
    build_optimizers: config -> (gen_optimizer, dis_optimizer) with the paper's lr policy.
    transform: the official data loader's resize/crop/flip rule (`ImageTransform`), applied by the reader.
    traits: what the translation offers (`Traits`: multimodal, attention, fixed_size); callers outside models/
      read these instead of comparing family names.
  """

  name: str
  config_class: type
  presets: Mapping[str, Any]
  build_model: Callable[[Any], Any]
  train_step: Callable[..., dict]
  sample_rows: Callable[..., dict]
  build_optimizers: Callable[[Any], tuple]
  transform: ImageTransform = ImageTransform()
  traits: Traits = Traits()

  def fixed_size(self, config) -> int | None:
    """The only image side `config`'s model takes (H == W), or None when any size is taken."""
    size = self.traits.fixed_size(config)
    return None if size is None else int(size)


def split_seed(seed: tf.Tensor | None, num: int) -> tf.Tensor:
  """`num` independent seeds `[num, 2]` for tf.random.stateless_* ops, derived from a train step's `seed` `[2]`.

  `seed` None (a train step called outside the trainer, e.g. a benchmark or a unit test): one seed is drawn from
  TensorFlow's global stateful RNG (reproducible under tf.random.set_seed / keras.utils.set_random_seed).
  """
  if seed is None:
    seed = tf.random.uniform([2], maxval=tf.int64.max, dtype=tf.int64)
  return tf.random.experimental.stateless_split(seed, num)


def call_stacked(fn: Callable, first: tuple, second: tuple) -> tuple:
  """fn on two equal-sized batches in one call on their concatenation along the batch axis.

  For networks that treat every sample on its own (no batch statistics): the same values as two calls, in one
  larger call. `first`, `second`: fn's positional tensor inputs for each batch; second's are cast to first's
  dtypes (under mixed precision a step may stack compute-dtype codes with float32 draws, which fn casts to the
  compute dtype anyway). Returns (fn's outputs for first, fn's outputs for second), each with fn's structure.
  """
  outputs = fn(*(tf.concat([a, tf.cast(b, a.dtype)], axis=0) for a, b in zip(first, second)))
  halves = [tf.split(t, 2, axis=0) for t in tf.nest.flatten(outputs)]
  return tuple(tf.nest.pack_sequence_as(outputs, [h[i] for h in halves]) for i in range(2))
