"""U-GAT-IT configuration: one frozen, flat dataclass whose field names are the flag names, and its presets.

Defaults follow znxlwm/UGATIT-pytorch `main.py` (the reference this package matches): ch 64, n_res 4,
img_size 256, adv/cycle/identity/cam weights 1/10/10/1000, Adam lr 1e-4 betas (0.5, 0.999), torch-style L2
weight decay 1e-4, 1M iterations, batch 1, decay_flag True (= lr_policy "linear": constant to 500k, then
linearly to 0). The global and local discriminators have 7 and 5 layers (`Discriminator(n_layers=7 / 5)`).
"""

from __future__ import annotations

import dataclasses

from models.configs import ConfigMixin

LR_POLICIES = ("linear", "constant")


@dataclasses.dataclass(frozen=True)
class UGATITConfig(ConfigMixin):
  """Architecture, loss weights and optimizer of U-GAT-IT (full or light).

  Attributes:
    ch: base channel count of generators and discriminators (`--ch`).
    n_res: residual blocks in the encoder and AdaLIN residual blocks in the decoder (`--n_res`).
    light: True = U-GAT-IT light (gamma/beta MLP on GAP of the CAM features, fully convolutional);
      False = full (MLP on the flattened features: input fixed to image_size x image_size).
    image_size: training crop size; the only size the full generator accepts.
    global_dis_layers: `n_layers` of the global discriminators (7 in the reference; needs image_size >= 128).
    local_dis_layers: `n_layers` of the local discriminators (5 in the reference).
    adv_weight, cycle_weight, identity_weight, cam_weight: loss weights (UGATIT.py).
    lr, beta1, beta2: Adam. weight_decay: torch-style L2 (added to the gradient) for G and D.
    lr_policy: "linear" (decay_flag True: constant to max_iter // 2, then linear to 0) or "constant".
    max_iter: training iterations (`--iteration`).
    batch_size: global batch size.
  """

  ch: int = 64
  n_res: int = 4
  light: bool = False
  image_size: int = 256
  global_dis_layers: int = 7
  local_dis_layers: int = 5
  adv_weight: float = 1.0
  cycle_weight: float = 10.0
  identity_weight: float = 10.0
  cam_weight: float = 1000.0
  lr: float = 1e-4
  beta1: float = 0.5
  beta2: float = 0.999
  weight_decay: float = 1e-4
  lr_policy: str = "linear"
  max_iter: int = 1_000_000
  batch_size: int = 1

  def __post_init__(self):
    for name in ("ch", "image_size", "max_iter", "batch_size"):
      if getattr(self, name) < 1:
        raise ValueError(f"UGATITConfig.{name} must be >= 1, got {getattr(self, name)}.")
    if self.n_res < 0:
      raise ValueError(f"UGATITConfig.n_res must be >= 0, got {self.n_res}.")
    if self.lr_policy not in LR_POLICIES:
      raise ValueError(f"UGATITConfig.lr_policy must be one of {', '.join(LR_POLICIES)}, got {self.lr_policy!r}.")
    if self.image_size % 4:
      raise ValueError(f"UGATITConfig.image_size must be a multiple of 4 (two stride-2 downsamplings), "
                       f"got {self.image_size}.")
    for name in ("global_dis_layers", "local_dis_layers"):
      layers = getattr(self, name)
      if layers < 3:
        raise ValueError(f"UGATITConfig.{name} must be >= 3, got {layers}.")
      needed = min_discriminator_size(layers)
      if self.image_size < needed:
        raise ValueError(f"UGATITConfig.{name}={layers} needs image_size >= {needed}, got "
                         f"image_size={self.image_size}; lower {name} or raise image_size.")


def discriminator_output_size(size: int, n_layers: int) -> int:
  """Spatial size of a `n_layers` discriminator's output for a `size` input (0 if the input is too small).

  n_layers - 2 stride-2 4x4 convs, then two stride-1 4x4 convs, each after reflect padding 1 (which needs
  the padded input to be at least 2 pixels).
  """
  for _ in range(n_layers - 2):
    if size < 2:
      return 0
    size = (size + 2 - 4) // 2 + 1
  for _ in range(2):
    if size < 2:
      return 0
    size = size + 2 - 4 + 1
  return max(size, 0)


def min_discriminator_size(n_layers: int) -> int:
  """Smallest multiple-of-4 image size for which a `n_layers` discriminator gives an output >= 1x1."""
  size = 4
  while discriminator_output_size(size, n_layers) < 1:
    size += 4
  return size


PRESETS = {
    "paper": UGATITConfig(),
    "paper_light": UGATITConfig(light=True),
    # A few channels at 32x32 for tests and smoke runs (one train step well under a second on a CPU); 1000 steps,
    # lr constant to 500, then linearly to 0 (components.train scales it with --steps).
    "tiny": UGATITConfig(ch=8, n_res=2, light=True, image_size=32, global_dis_layers=5, local_dis_layers=4,
                         max_iter=1000),
    # Measured (BUILD.md, "Quality benchmark"): ~5 min on 2 CPU cores at 32 px, content kept >= 0.85 both ways
    # with the generator EMA (--ema_decay=0.995): U-GAT-IT light, narrower and shallower (ch 16; ch 8 kept only
    # ~0.7 of the digits in 1200 steps); the paper's linear decay over the second half of the run.
    "budget": UGATITConfig(ch=16, n_res=2, light=True, image_size=32, global_dis_layers=5, local_dis_layers=4,
                           lr=2e-4, max_iter=800, batch_size=8),
}
