"""Resident memory of a process from /proc/<pid>/status (Linux), for the benchmarks; standard library only."""

from __future__ import annotations


def status_mib(pid: int | str, field: str) -> float | None:
  """`field` ("VmRSS": resident now, "VmHWM": peak) of process `pid` ("self" for this one) in MiB, or None once the
  process is gone. VmHWM, not ru_maxrss: a child started by fork + exec keeps its parent's maxrss there."""
  try:
    with open(f"/proc/{pid}/status", encoding="ascii") as f:
      for line in f:
        if line.startswith(field + ":"):
          return int(line.split()[1]) / 1024.0
  except (FileNotFoundError, ProcessLookupError):
    return None
  return None


def peak_rss_mib(reset: bool = False) -> float:
  """This process's peak resident set so far; reset=True then starts a new peak (clear_refs 5)."""
  peak = status_mib("self", "VmHWM")
  if reset:
    with open("/proc/self/clear_refs", "w", encoding="ascii") as f:
      f.write("5")
  return peak
