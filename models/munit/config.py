"""MUNIT configuration: a frozen, flat dataclass whose field names are the flag names, and its presets.

`paper` is NVlabs/MUNIT configs/edges2shoes_folder.yaml (the official defaults): gen dim 64, style_dim 8,
mlp_dim 256, n_downsample 2, n_res 4, reflect padding; dis dim 64, n_layer 4, 3 scales, LSGAN; Adam lr 1e-4,
betas (0.5, 0.999), weight decay 1e-4, lr halved every 100k iterations, 1M iterations, batch 1, crop 256;
gan_w 1, recon_x_w 10, recon_s_w 1, recon_c_w 1, recon_x_cyc_w 0, vgg_w 0.
`tiny` keeps the architecture with few channels for tests and demos at 32x32.
"""

from __future__ import annotations

import dataclasses

from models.configs import ConfigMixin

LR_POLICIES = ("constant", "step")


def discriminator_fits(image_size: int, n_layer: int, num_scales: int) -> bool:
  """True when every 4x4 s2 reflect-pad-1 conv of every scale sees an input of at least 2 pixels."""
  size = image_size
  for _ in range(num_scales):
    s = size
    for _ in range(n_layer):
      if s < 2:
        return False
      s //= 2
    size = (size - 1) // 2 + 1  # 3x3 s2 pad 1 average pooling
  return True


@dataclasses.dataclass(frozen=True)
class MUNITConfig(ConfigMixin):
  """Architecture, loss weights and optimizer of MUNIT (Huang et al., ECCV 2018).

  Attributes:
    dim: channels of the first generator conv (`gen.dim`); doubles at each downsampling.
    style_dim: length of the style code (`gen.style_dim`).
    mlp_dim: width of the MLP that maps a style code to AdaIN parameters (`gen.mlp_dim`).
    n_downsample: stride-2 convs in the content encoder (and upsamplings in the decoder).
    n_res: residual blocks in the content encoder and AdaIN residual blocks in the decoder.
    dis_dim, dis_n_layer, dis_num_scales: the multi-scale LSGAN discriminator (`dis.*`).
    gan_w, recon_x_w, recon_s_w, recon_c_w, recon_x_cyc_w, vgg_w: loss weights (trainer.py).
    vgg_weights_path: Keras VGG16 ImageNet "notop" .h5 for vgg_w > 0 ("" = the Keras cache file).
    lr, beta1, beta2, weight_decay: Adam with torch-style L2 weight decay, for G and D.
    lr_policy, step_size, gamma: "step" multiplies lr by gamma every step_size iterations; or "constant".
    max_iter: training iterations. batch_size: global batch. image_size: training crop (square).
  """

  dim: int = 64
  style_dim: int = 8
  mlp_dim: int = 256
  n_downsample: int = 2
  n_res: int = 4
  dis_dim: int = 64
  dis_n_layer: int = 4
  dis_num_scales: int = 3
  gan_w: float = 1.0
  recon_x_w: float = 10.0
  recon_s_w: float = 1.0
  recon_c_w: float = 1.0
  recon_x_cyc_w: float = 0.0
  vgg_w: float = 0.0
  vgg_weights_path: str = ""
  lr: float = 1e-4
  beta1: float = 0.5
  beta2: float = 0.999
  weight_decay: float = 1e-4
  lr_policy: str = "step"
  step_size: int = 100_000
  gamma: float = 0.5
  max_iter: int = 1_000_000
  batch_size: int = 1
  image_size: int = 256

  def __post_init__(self):
    for name in ("dim", "style_dim", "mlp_dim", "dis_dim", "dis_n_layer", "dis_num_scales", "step_size",
                 "max_iter", "batch_size", "image_size"):
      if getattr(self, name) < 1:
        raise ValueError(f"MUNITConfig.{name} must be >= 1, got {getattr(self, name)}.")
    if self.n_downsample < 0 or self.n_res < 0:
      raise ValueError(f"MUNITConfig.n_downsample and n_res must be >= 0, got {self.n_downsample}, {self.n_res}.")
    if self.lr_policy not in LR_POLICIES:
      raise ValueError(f"MUNITConfig.lr_policy must be one of {', '.join(LR_POLICIES)}, got {self.lr_policy!r}.")
    for name in ("gan_w", "recon_x_w", "recon_s_w", "recon_c_w", "recon_x_cyc_w", "vgg_w", "lr", "weight_decay"):
      if getattr(self, name) < 0:
        raise ValueError(f"MUNITConfig.{name} must be >= 0, got {getattr(self, name)}.")
    multiple = 2 ** self.n_downsample
    if self.image_size % multiple:
      raise ValueError(f"MUNITConfig.image_size must be a multiple of {multiple} (2 ** n_downsample), "
                       f"got {self.image_size}.")
    if self.image_size < 16:
      raise ValueError(f"MUNITConfig.image_size must be >= 16 (the style encoder downsamples 4 times), "
                       f"got {self.image_size}.")
    if not discriminator_fits(self.image_size, self.dis_n_layer, self.dis_num_scales):
      raise ValueError(f"MUNITConfig: a discriminator with dis_n_layer={self.dis_n_layer} and "
                       f"dis_num_scales={self.dis_num_scales} does not fit image_size={self.image_size}; "
                       f"lower dis_n_layer or dis_num_scales, or raise image_size.")

  @property
  def size_multiple(self) -> int:
    """Input H and W must be multiples of this (the content code is H / 2**n_downsample)."""
    return 2 ** self.n_downsample


PRESETS = {
    "paper": MUNITConfig(),
    # Few channels at 32x32 for tests and smoke runs. Schedule: 1000 steps, lr halved once at half the run
    # (components.train scales step_size with --steps: a 3000-step run halves at step 1500).
    "tiny": MUNITConfig(dim=8, style_dim=8, mlp_dim=16, n_res=1, dis_dim=8, dis_n_layer=3, dis_num_scales=2,
                        step_size=500, max_iter=1000, batch_size=2, image_size=32),
    # Measured (BUILD.md, "Quality benchmark"): the paper's nets and losses, narrower and shallower, with the
    # explicit cycle loss on (recon_x_cyc_w 10, as the official summer2winter and synthia2cityscape configs; without
    # it one seed kept 0.80 of the digit A->B in 1800 steps, with it 0.99); lr halved once at the middle of the run
    # (step_size = max_iter / 2).
    "budget": MUNITConfig(dim=16, style_dim=8, mlp_dim=64, n_res=2, dis_dim=16, dis_n_layer=3, dis_num_scales=2,
                          recon_x_cyc_w=10.0, lr=2e-4, step_size=600, max_iter=1200, batch_size=8, image_size=32),
}
