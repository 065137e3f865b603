"""Keras 3 layers shared by the networks, all registered serializable under the package name "i2i".

Blocks of every network: ConvBlock, ResBlock (models/layers/blocks.py). MUNIT/UNIT: FastConv2D, ReflectionPadding2D,
AdaIN, MUNITLayerNorm, instance_norm, ConvTransposeBlock, AdaINResBlock, AveragePooling2DExcludePad,
GaussianBlurDownsample2D, MultiScalePatchDiscriminator. U-GAT-IT: AdaLIN, ILN, RhoClipper, CAM, AdaLINResBlock,
SpectralNorm.
"""

from models.layers.adalin import ILN, AdaLIN, RhoClipper  # noqa: F401
from models.layers.blocks import (AdaINResBlock, AdaLINResBlock, ConvBlock, ConvTransposeBlock, ResBlock,  # noqa: F401
                                  build_chain, initializers, torch_bias_initializer, torch_kernel_initializer)
from models.layers.cam import CAM  # noqa: F401
from models.layers.conv import FastConv2D, conv2d_patches, conv2d_valid  # noqa: F401
from models.layers.discriminator import MultiScalePatchDiscriminator  # noqa: F401
from models.layers.normalization import AdaIN, MUNITLayerNorm, instance_norm  # noqa: F401
from models.layers.padding import ReflectionPadding2D  # noqa: F401
from models.layers.pooling import AveragePooling2DExcludePad, GaussianBlurDownsample2D  # noqa: F401
from models.layers.spectral_norm import SpectralNorm  # noqa: F401
