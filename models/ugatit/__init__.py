"""U-GAT-IT (Kim et al., ICLR 2020), matching znxlwm/UGATIT-pytorch: full and light models.

`FAMILY` is what `models.get_family("ugatit")` returns (see models/api.py).
"""

from models.api import Family, ImageTransform, Traits
from models.optim import build_optimizers
from models.ugatit.config import PRESETS, UGATITConfig
from models.ugatit.model import UGATIT, build_model
from models.ugatit.train import sample_rows, train_step


def fixed_size(config: UGATITConfig) -> int | None:
  """U-GAT-IT full flattens the feature map into its MLP: it translates only image_size x image_size."""
  return None if config.light else int(config.image_size)


FAMILY = Family(
    name="ugatit",
    config_class=UGATITConfig,
    presets=PRESETS,
    build_model=build_model,
    train_step=train_step,
    sample_rows=sample_rows,
    build_optimizers=build_optimizers,
    transform=ImageTransform(resize="square", train_scale=286 / 256, test_scale=1.0),
    traits=Traits(attention=True, fixed_size=fixed_size),
)

__all__ = ["FAMILY", "UGATIT", "UGATITConfig", "PRESETS", "build_model", "train_step", "sample_rows"]
