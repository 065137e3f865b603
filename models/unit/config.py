"""UNIT configuration (paper version): a frozen, flat dataclass whose field names are the flag names, and presets.

`paper` is mingyuliutw/UNIT branch version_02 exps/unit/cat2tiger.yaml with COCOResGen and COCODis: ch 64,
3 front blocks (2 stride-2 convs), 3 + 1 shared encoder ResBlocks, 1 shared + 3 decoder ResBlocks,
discriminator ch 64 with 6 stride-2 convs (one scale); gan_w 10, ll_direct_link_w 100, kl_direct_link_w 0.1,
ll_cycle_link_w 100, kl_cycle_link_w 0.1; Adam lr 1e-4, betas (0.5, 0.999), weight decay 1e-4 (hard-coded in
cocogan_trainer.py), constant lr, 500k iterations, batch 1, 216x216 crops.
`dis_num_scales` > 1 selects the multi-scale discriminator (COCOMsDis: scales x, x/2, x/4 with a 3x3 Gaussian
blur before each subsampling). `tiny` keeps the architecture with few channels for tests at 32x32.
"""

from __future__ import annotations

import dataclasses

from models.configs import ConfigMixin

RESAMPLE_NORMS = ("in", "none")


@dataclasses.dataclass(frozen=True)
class UNITConfig(ConfigMixin):
  """Architecture, loss weights and optimizer of UNIT (Liu et al., NIPS 2017), paper code (version_02).

  Attributes:
    ch: channels of the first encoder conv; doubles at each stride-2 conv.
    n_enc_front_blk: front convs of each encoder (the first is 7x7 s1, the others 3x3 s2).
    n_enc_res_blk, n_enc_shared_blk, n_gen_shared_blk, n_gen_res_blk: ResBlocks per domain / shared.
    n_gen_front_blk: back-end of each generator (n_gen_front_blk - 1 stride-2 transposed convs + a 1x1).
    resample_norm: norm after the encoders' stride-2 convs and the generators' stride-2 transposed convs: "in"
      (instance norm, the paper code's COCOResGen) or "none". The ResBlocks keep their instance norms either way.
    dis_ch, dis_n_layer: discriminator width and stride-2 convs. dis_num_scales: 1 (COCODis) or more (COCOMsDis).
    gan_w, ll_direct_link_w, kl_direct_link_w, ll_cycle_link_w, kl_cycle_link_w: loss weights.
    lr, beta1, beta2, weight_decay: Adam with torch-style L2 weight decay. lr_policy: "constant" (as the paper
      code) or "step" (step_size, gamma).
    max_iter, batch_size (global), image_size (square training crop).
  """

  ch: int = 64
  n_enc_front_blk: int = 3
  n_enc_res_blk: int = 3
  n_enc_shared_blk: int = 1
  n_gen_shared_blk: int = 1
  n_gen_res_blk: int = 3
  n_gen_front_blk: int = 3
  resample_norm: str = "in"
  dis_ch: int = 64
  dis_n_layer: int = 6
  dis_num_scales: int = 1
  gan_w: float = 10.0
  ll_direct_link_w: float = 100.0
  kl_direct_link_w: float = 0.1
  ll_cycle_link_w: float = 100.0
  kl_cycle_link_w: float = 0.1
  lr: float = 1e-4
  beta1: float = 0.5
  beta2: float = 0.999
  weight_decay: float = 1e-4
  lr_policy: str = "constant"
  step_size: int = 100_000
  gamma: float = 0.5
  max_iter: int = 500_000
  batch_size: int = 1
  image_size: int = 216

  def __post_init__(self):
    for name in ("ch", "n_enc_front_blk", "n_gen_front_blk", "dis_ch", "dis_n_layer", "dis_num_scales",
                 "step_size", "max_iter", "batch_size", "image_size"):
      if getattr(self, name) < 1:
        raise ValueError(f"UNITConfig.{name} must be >= 1, got {getattr(self, name)}.")
    for name in ("n_enc_res_blk", "n_enc_shared_blk", "n_gen_shared_blk", "n_gen_res_blk"):
      if getattr(self, name) < 0:
        raise ValueError(f"UNITConfig.{name} must be >= 0, got {getattr(self, name)}.")
    if self.n_enc_front_blk != self.n_gen_front_blk:
      raise ValueError(f"UNITConfig.n_enc_front_blk ({self.n_enc_front_blk}) and n_gen_front_blk "
                       f"({self.n_gen_front_blk}) must be equal so that outputs have the input size.")
    if self.resample_norm not in RESAMPLE_NORMS:
      raise ValueError(f"UNITConfig.resample_norm must be one of {', '.join(map(repr, RESAMPLE_NORMS))}, got "
                       f"{self.resample_norm!r}.")
    if self.lr_policy not in ("constant", "step"):
      raise ValueError(f"UNITConfig.lr_policy must be 'constant' or 'step', got {self.lr_policy!r}.")
    for name in ("gan_w", "ll_direct_link_w", "kl_direct_link_w", "ll_cycle_link_w", "kl_cycle_link_w", "lr",
                 "weight_decay"):
      if getattr(self, name) < 0:
        raise ValueError(f"UNITConfig.{name} must be >= 0, got {getattr(self, name)}.")
    if self.image_size % self.size_multiple:
      raise ValueError(f"UNITConfig.image_size must be a multiple of {self.size_multiple} "
                       f"(2 ** (n_enc_front_blk - 1)), got {self.image_size}.")

  @property
  def size_multiple(self) -> int:
    """Input H and W must be multiples of this (stride-2 convs of the encoders)."""
    return 2 ** (self.n_enc_front_blk - 1)


PRESETS = {
    "paper": UNITConfig(),
    # Few channels at 32x32 for tests and smoke runs; 1000 steps at the paper's constant lr.
    "tiny": UNITConfig(ch=8, n_enc_res_blk=1, n_gen_res_blk=1, dis_ch=8, dis_n_layer=4, max_iter=1000,
                       batch_size=2, image_size=32),
    # Measured (BUILD.md, "Quality benchmark"): the paper's nets and losses, narrower and shallower, Adam lr 5e-4,
    # without the instance norms of the stride-2 convs (with them the translations collapse to one image per
    # domain in this budget while the cycles reconstruct; the ResBlocks keep theirs).
    "budget": UNITConfig(ch=16, n_enc_res_blk=1, n_gen_res_blk=1, resample_norm="none", dis_ch=16, dis_n_layer=4,
                         lr=5e-4, max_iter=1000, batch_size=8, image_size=32),
}
