"""Errors a stage raises when the user has something to fix."""


class StageError(RuntimeError):
  """A stage cannot go on; the message says what is wrong and what to do about it."""
