"""UNIT (Liu et al., NIPS 2017), paper version with shared layers, as a models.api.Family."""

from models.api import Family, ImageTransform
from models.optim import build_optimizers
from models.unit.config import PRESETS, UNITConfig
from models.unit.model import UNITModel, build_model
from models.unit.train import sample_rows, train_step

FAMILY = Family(name="unit", config_class=UNITConfig, presets=PRESETS, build_model=build_model,
                train_step=train_step, sample_rows=sample_rows, build_optimizers=build_optimizers,
                transform=ImageTransform(resize="shorter_side", train_scale=1.2, test_scale=1.2))

__all__ = ["FAMILY", "PRESETS", "UNITConfig", "UNITModel", "build_model", "sample_rows", "train_step"]
