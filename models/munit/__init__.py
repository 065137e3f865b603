"""MUNIT (Huang et al., ECCV 2018) as a models.api.Family: config, networks, model, train step, sample rows."""

from models.api import Family, ImageTransform, Traits
from models.munit.config import PRESETS, MUNITConfig
from models.munit.model import MUNITModel, build_model
from models.munit.train import sample_rows, train_step
from models.optim import build_optimizers

FAMILY = Family(name="munit", config_class=MUNITConfig, presets=PRESETS, build_model=build_model,
                train_step=train_step, sample_rows=sample_rows, build_optimizers=build_optimizers,
                transform=ImageTransform(resize="shorter_side", train_scale=1.0, test_scale=1.0),
                traits=Traits(multimodal=True))

__all__ = ["FAMILY", "MUNITConfig", "MUNITModel", "PRESETS", "build_model", "sample_rows", "train_step"]
