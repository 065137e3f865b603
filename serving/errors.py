"""ServingError: a failed request or load, carrying the gRPC status code TF Serving would answer with."""

from __future__ import annotations

import re

import grpc

# tensorflow::error::Code numbers (identical to gRPC's) -> grpc.StatusCode.
_CODE_BY_NUMBER = {code.value[0]: code for code in grpc.StatusCode}


class ServingError(Exception):
  """A request (or a model load) failed with `code` (grpc.StatusCode) and TF Serving's `message`."""

  def __init__(self, code: grpc.StatusCode, message: str):
    super().__init__(message)
    self.code = code
    self.message = message

  @property
  def code_number(self) -> int:
    """The numeric status code (as in StatusProto.error_code)."""
    return self.code.value[0]


def status_code_from_number(number: int) -> grpc.StatusCode:
  """Maps a tensorflow/absl/gRPC numeric status code to grpc.StatusCode (UNKNOWN if out of range)."""
  return _CODE_BY_NUMBER.get(int(number), grpc.StatusCode.UNKNOWN)


# What TF's Python eager runtime wraps around a kernel's status message (TF Serving runs the graph from C++
# and has none of it): a "Graph execution error" header with the node and its (unavailable) Python stack, and
# an "[Op:__inference_signature_wrapper_<n>]" suffix whose number changes with every tracing.
_EAGER_HEADER = re.compile(r"^Graph execution error:\n\nDetected at node \S+ defined at \(most recent call last\):\n"
                           r"<stack traces unavailable>\n")
_EAGER_SUFFIX = re.compile(r" \[Op:[^\]]*\]( name: \S*)?$")


def runtime_message(message: str) -> str:
  """A TF runtime error message without the Python eager wrapper: the kernel's message and its node, e.g.
  "Unknown image file format. ...\n\t [[{{node map/while/decode_image/DecodeImage}}]]".
  """
  return _EAGER_SUFFIX.sub("", _EAGER_HEADER.sub("", message, count=1))


def from_exception(error: BaseException) -> ServingError:
  """Converts an exception raised while loading or running a model into a ServingError.

  tf.errors.OpError keeps its own code (InvalidArgumentError -> INVALID_ARGUMENT) and message; a missing file
  is NOT_FOUND; Python argument errors (TypeError/ValueError from a concrete function) are INVALID_ARGUMENT;
  anything else is UNKNOWN.
  """
  if isinstance(error, ServingError):
    return error
  error_code = getattr(error, "error_code", None)
  message = getattr(error, "message", None) or str(error)
  if isinstance(error_code, int):
    return ServingError(status_code_from_number(error_code), runtime_message(message))
  if isinstance(error, (FileNotFoundError, NotADirectoryError)):
    return ServingError(grpc.StatusCode.NOT_FOUND, message)
  if isinstance(error, (TypeError, ValueError)):
    return ServingError(grpc.StatusCode.INVALID_ARGUMENT, message)
  return ServingError(grpc.StatusCode.UNKNOWN, f"{type(error).__name__}: {message}")
