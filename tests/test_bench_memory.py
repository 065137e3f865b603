"""benchmarks.bench_memory: the flat-peak verdict and the RSS reader (the long runs themselves are in BUILD.md)."""

import os
import subprocess
import sys

import pytest

from benchmarks import bench_memory


def _curve(values):
  return [(float(i), v) for i, v in enumerate(values)]


def test_a_flat_run_after_start_up_is_flat_and_a_growing_one_is_not():
  start_up = [100.0, 400.0]  # imports and tracing: the first quarter is not judged
  flat = bench_memory.summarize(_curve(start_up + [1000.0, 1010.0, 1000.0, 1020.0, 1015.0, 1030.0]), 0.05)
  assert flat["early_peak_mib"] == 1010.0 and flat["late_peak_mib"] == 1030.0 and flat["flat"]
  assert flat["growth_fraction"] == pytest.approx(1030 / 1010 - 1)
  leak = bench_memory.summarize(_curve(start_up + [1000.0, 1010.0, 1040.0, 1070.0, 1100.0, 1130.0]), 0.05)
  assert leak["late_peak_mib"] == 1130.0 and not leak["flat"]  # 1130 > 1010 * 1.05


def test_too_few_samples_are_refused_saying_what_to_do():
  with pytest.raises(ValueError) as e:
    bench_memory.summarize(_curve([1.0] * 7), 0.05)
  assert str(e.value) == "only 7 RSS samples: the phase was too short to judge (lower --sample_seconds)"


def test_rss_of_a_live_process_and_none_once_it_is_gone():
  child = subprocess.Popen([sys.executable, "-c", "import time; x = bytes(range(256)) * (1 << 18); time.sleep(30)"])
  try:
    import time  # pylint: disable=import-outside-toplevel
    deadline = time.monotonic() + 10
    while (bench_memory.rss_mib(child.pid) or 0) < 64 and time.monotonic() < deadline:
      time.sleep(0.05)
    assert bench_memory.rss_mib(child.pid) >= 64  # the 64 MiB it holds are resident
  finally:
    child.kill()
    child.wait()
  assert bench_memory.rss_mib(child.pid) is None
  assert bench_memory.rss_mib(os.getpid()) > 0
