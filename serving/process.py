"""Run a model server as a child process: `ServerProcess` (a context manager) and `free_port()`.

Used by infra_validate, the pipelines, the tests and the benchmark. It starts `python -m serving.server` (or a
real `tensorflow_model_server` binary), waits until the gRPC port accepts connections (the server opens it
only after the initial models are loaded), and always stops the child on exit: SIGTERM (drain), then SIGKILL.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time


def free_port(host: str = "127.0.0.1") -> int:
  """A TCP port that is free on `host` right now (the OS picks it)."""
  with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
    s.bind((host, 0))
    return s.getsockname()[1]


def _port_open(host: str, port: int) -> bool:
  try:
    with socket.create_connection((host, port), timeout=0.5):
      return True
  except OSError:
    return False


class ServerProcess:
  """`with ServerProcess(["--model_name=m", "--model_base_path=/p"], port) as server: ...`

  Args:
    args: server flags, without --port (added from `port`).
    port: the gRPC port to serve on and wait for (e.g. free_port()).
    binary: None for `python -m serving.server` with this interpreter; else the path of a server executable
      such as `tensorflow_model_server` (then --host is not passed: TF Serving has no such flag).
    startup_timeout: seconds to wait for the port.
    env: extra environment variables for the child.
  Attributes:
    target: "127.0.0.1:<port>" for gRPC clients; process: the Popen; log_path: the child's stdout+stderr.
  """

  def __init__(self, args: list, port: int, *, binary: str | None = None, startup_timeout: float = 120.0,
               env: dict | None = None):
    self.args = list(args)
    self.port = int(port)
    self.binary = binary
    self.startup_timeout = startup_timeout
    self.env = env
    self.target = f"127.0.0.1:{self.port}"
    self.process = None
    self.log_path = None
    self._log = None

  def command(self) -> list:
    """The full command line of the child."""
    if self.binary is None:
      return [sys.executable, "-m", "serving.server", f"--port={self.port}", *self.args]
    return [self.binary, f"--port={self.port}", *self.args]

  def start(self) -> "ServerProcess":
    """Starts the child and waits for its port; raises RuntimeError with the log tail if it dies or times out."""
    fd, self.log_path = tempfile.mkstemp(prefix="model_server_", suffix=".log")
    self._log = os.fdopen(fd, "wb")
    env = dict(os.environ)
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if self.binary is None:
      root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
      env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH", "")) if p)
    env.update(self.env or {})
    self.process = subprocess.Popen(self.command(), stdout=self._log, stderr=subprocess.STDOUT, env=env,
                                    stdin=subprocess.DEVNULL)
    deadline = time.monotonic() + self.startup_timeout
    while time.monotonic() < deadline:
      if self.process.poll() is not None:
        raise RuntimeError(f"model server exited with code {self.process.returncode} before serving on port "
                           f"{self.port}:\n{self.log_tail()}")
      if _port_open("127.0.0.1", self.port):
        return self
      time.sleep(0.1)
    self.stop()
    raise RuntimeError(f"model server did not open port {self.port} within {self.startup_timeout:.0f} s:\n"
                       f"{self.log_tail()}")

  def log_tail(self, lines: int = 30) -> str:
    """The last `lines` lines the child printed."""
    if not self.log_path or not os.path.exists(self.log_path):
      return ""
    with open(self.log_path, "rb") as f:
      return b"\n".join(f.read().splitlines()[-lines:]).decode("utf-8", "replace")

  def terminate(self) -> None:
    """Sends SIGTERM (the server drains in-flight requests, then exits 0)."""
    if self.process is not None and self.process.poll() is None:
      self.process.send_signal(signal.SIGTERM)

  def stop(self, timeout: float = 30.0) -> int | None:
    """SIGTERM, wait up to `timeout`, then SIGKILL; returns the exit code. Safe to call twice."""
    if self.process is None:
      return None
    if self.process.poll() is None:
      self.terminate()
      try:
        self.process.wait(timeout)
      except subprocess.TimeoutExpired:
        self.process.kill()
        self.process.wait()
    if self._log is not None:
      self._log.close()
      self._log = None
    return self.process.returncode

  def __enter__(self) -> "ServerProcess":
    return self.start()

  def __exit__(self, *exc) -> None:
    self.stop()
    if self.log_path and os.path.exists(self.log_path) and exc[0] is None:
      os.remove(self.log_path)
