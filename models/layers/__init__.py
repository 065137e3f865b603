"""Keras 3 layers shared by the networks, all registered serializable under the package name "i2i"."""

from models.layers.padding import ReflectionPadding2D  # noqa: F401
