"""Test helper: records which networks a training step calls, and on how many samples."""

from __future__ import annotations


def record_calls(layer, log: list, name: str) -> None:
  """Wraps layer.call (the instance attribute Keras' __call__ reaches) to log (name, batch size) per call."""
  original = layer.call

  def call(inputs, *args, **kwargs):
    first = inputs[0] if isinstance(inputs, (list, tuple)) else inputs
    log.append((name, int(first.shape[0])))
    return original(inputs, *args, **kwargs)

  layer.call = call
