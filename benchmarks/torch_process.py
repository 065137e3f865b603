"""The official PyTorch code in a subprocess that answers one JSON line per request (bench_train, bench_inference).

The reference column of a side-by-side benchmark: the script is written by the caller (official networks from the
mirrored repositories, benchmarks/official/source.py), runs under --torch_python ($I2I_TORCH_PYTHON), prints one
JSON line when it is ready and one per line it reads on stdin, and waits (idle) in between, so that our side and
the reference can be timed in alternating bursts.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile


def export_official(family: str, dest: str, mirrors: str = "") -> tuple[str | None, str]:
  """(the directory holding `family`'s official files under dest, "") or (None, why not)."""
  from benchmarks.official import source  # pylint: disable=import-outside-toplevel
  if mirrors:
    os.environ[source.ENV_REPOS] = mirrors
  try:
    return source.export_reference(family, dest), ""
  except FileNotFoundError as e:
    return None, str(e)


class TorchProcess:
  """`TorchProcess(python, script_text, args, workdir)`: started, its first (ready) answer in `info`.

  `why` says why the reference is unavailable ("" when it runs); `request(line)` sends a line and returns the
  answer as a dict ({} when unavailable).
  """

  def __init__(self, python: str, script: str, args: list, workdir: str):
    self.proc, self.why, self.info = None, "", {}
    if not python or not os.path.exists(python):
      self.why = f"no torch interpreter at {python!r} (set --torch_python or $I2I_TORCH_PYTHON)"
      return
    path = os.path.join(workdir, "bench_torch.py")
    with open(path, "w", encoding="utf-8") as f:
      f.write(script)
    self.errors = tempfile.TemporaryFile(mode="w+")
    self.proc = subprocess.Popen([python, path, *args], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                 stderr=self.errors, text=True)
    self.info = self._answer()

  @classmethod
  def unavailable(cls, why: str) -> "TorchProcess":
    """A reference that does not run, saying why (e.g. a missing mirror)."""
    proc = cls("", "", [], "")
    proc.why = why
    return proc

  def _answer(self) -> dict:
    line = self.proc.stdout.readline()
    if not line:
      self.errors.seek(0)
      lines = self.errors.read().strip().splitlines() or ["(no output)"]
      self.why = "torch run failed: " + lines[-1][:200]
      self.proc.wait()
      self.proc = None
      return {}
    return json.loads(line)

  def request(self, line: str) -> dict:
    if self.proc is None:
      return {}
    self.proc.stdin.write(line.rstrip("\n") + "\n")
    self.proc.stdin.flush()
    return self._answer()

  def close(self) -> None:
    if self.proc is not None:
      self.proc.stdin.close()
      self.proc.wait()
      self.proc = None
