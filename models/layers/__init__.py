"""Keras 3 layers shared by the networks, all registered serializable under the package name "i2i"."""

from models.layers.blocks import AdaINResBlock, ConvBlock, ConvTransposeBlock, ResBlock, initializers  # noqa: F401
from models.layers.normalization import AdaIN, MUNITLayerNorm, instance_norm  # noqa: F401
from models.layers.padding import ReflectionPadding2D  # noqa: F401
from models.layers.pooling import AveragePooling2DExcludePad, GaussianBlurDownsample2D  # noqa: F401
