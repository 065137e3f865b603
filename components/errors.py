"""Errors a stage raises when the user has something to fix, and how an entry point reports them."""

from __future__ import annotations

import sys
from typing import Callable, TypeVar

R = TypeVar("R")


class StageError(RuntimeError):
  """A stage cannot go on; the message says what is wrong and what to do about it."""


def run_or_exit(stage: str, run: Callable[[], R]) -> R:
  """Returns `run()`; a StageError prints `<stage>: error: <message>` to stderr and exits 1 (absl mains only)."""
  try:
    return run()
  except StageError as e:
    print(f"{stage}: error: {e}", file=sys.stderr)
    sys.exit(1)
