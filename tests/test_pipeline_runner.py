"""Tests of pipelines.runner / lineage_lib / fingerprint on a three-stage pipeline of small Python stages.

The stages below are real library stages in the project's shape (frozen config, `run(config) -> result`)
that count numbers in files, so the runner's caching, lineage, failure and resume rules are checked in
milliseconds; tests/test_pipeline_e2e.py runs the same runner over the real seven stages.
"""

import dataclasses
import os
import subprocess
import sys

import pytest

from components.errors import StageError
from pipelines import fingerprint as fp
from pipelines import lineage_lib
from pipelines import runner
from pipelines.pipeline_lib import Output, Pipeline, Source, Stage

MODULE = __name__
CALLS = []  # (stage name, config) of every execution that really ran


@dataclasses.dataclass(frozen=True)
class SumConfig:
  """Sums the integers in `source` (one per line) times `factor` into output_dir/sum.txt."""
  source: str
  output_dir: str
  factor: int = 1


@dataclasses.dataclass(frozen=True)
class SumResult:
  total_path: str
  total: int


def run_sum(config: SumConfig) -> SumResult:
  CALLS.append(("sum", config))
  with open(config.source) as f:
    total = config.factor * sum(int(line) for line in f if line.strip())
  path = os.path.join(config.output_dir, "sum.txt")
  with open(path, "w") as f:
    f.write(str(total))
  return SumResult(path, total)


@dataclasses.dataclass(frozen=True)
class CountConfig:
  """Counts from the last step in model_dir/step.txt up to `steps`; `fail_at` (runtime) raises there."""
  total_path: str
  model_dir: str
  steps: int = 5
  fail_at: int | None = None
  stop_at: int | None = None


@dataclasses.dataclass(frozen=True)
class CountResult:
  model_dir: str
  start_step: int
  step: int
  checkpoint: str
  stopped_by: str | None = None


def run_count(config: CountConfig) -> CountResult:
  CALLS.append(("count", config))
  state = os.path.join(config.model_dir, "step.txt")
  start = int(open(state).read()) if os.path.exists(state) else 0
  for step in range(start + 1, config.steps + 1):
    with open(state, "w") as f:
      f.write(str(step))
    if step == config.fail_at:
      raise StageError(f"planted failure at step {step}: rerun without it to resume")
    if step == config.stop_at:  # as components.train does on SIGTERM: state saved, result says why it stopped
      return CountResult(config.model_dir, start, step, os.path.join(config.model_dir, "none"), "SIGTERM")
  checkpoint = os.path.join(config.model_dir, f"ckpt-{config.steps}")  # a prefix, like a TF checkpoint's
  with open(checkpoint + ".index", "w") as f:
    f.write("")
  return CountResult(config.model_dir, start, config.steps, checkpoint)


@dataclasses.dataclass(frozen=True)
class ReportConfig:
  model_dir: str
  total_path: str
  output_dir: str


@dataclasses.dataclass(frozen=True)
class ReportResult:
  report_path: str


def run_report(config: ReportConfig) -> ReportResult:
  CALLS.append(("report", config))
  path = os.path.join(config.output_dir, "report.txt")
  with open(path, "w") as f:
    f.write(open(os.path.join(config.model_dir, "step.txt")).read() + " " + open(config.total_path).read())
  return ReportResult(path)


def run(config):
  """The executor looked up by Stage.executor(): dispatches on the config type."""
  return {SumConfig: run_sum, CountConfig: run_count, ReportConfig: run_report}[type(config)](config)


def make_pipeline(root, source, *, factor=1, steps=5, fail_at=None, stop_at=None):
  """sum(source) -> count (resumable) -> report(count, sum)."""
  return Pipeline("toy", str(root), (
      Stage("sum", MODULE, "SumConfig", {"source": Source(str(source))}, "output_dir", {"factor": factor}),
      Stage("count", MODULE, "CountConfig", {"total_path": Output("sum", "total_path")}, "model_dir",
            {"steps": steps}, runtime={"fail_at": fail_at, "stop_at": stop_at}, resumable=True),
      Stage("report", MODULE, "ReportConfig", {"model_dir": Output("count", "model_dir"),
                                               "total_path": Output("sum", "total_path")}, "output_dir"),
  ))


@pytest.fixture(name="source")
def _source(tmp_path):
  path = tmp_path / "numbers.txt"
  path.write_text("1\n2\n3\n")
  CALLS.clear()
  return path


def _quiet(_):
  pass


def _statuses(result):
  return [r.status for r in result.stages]


def test_first_run_executes_everything_and_records_lineage(tmp_path, source):
  root = tmp_path / "root"
  result = runner.run_pipeline(make_pipeline(root, source, factor=2), log=_quiet, argv=["toy"])
  assert result.ok and _statuses(result) == ["COMPLETE"] * 3
  assert [c[0] for c in CALLS] == ["sum", "count", "report"]
  report = result.report("report")
  assert open(report.outputs["report_path"]).read() == "5 12"
  # Outputs live under <root>/<stage>/<execution_id>/.
  for r in result.stages:
    assert r.outputs["output_dir"] == os.path.join(str(root), r.stage, str(r.execution_id))
  with lineage_lib.LineageStore(str(root), create=False) as store:
    executions = store.executions(run_id=result.run_id)
    assert [e.stage for e in executions] == ["sum", "count", "report"]
    count = executions[1]
    assert count.inputs["total_path"]["producer"] == executions[0].id
    assert count.inputs["total_path"]["fingerprint"] == fp.content_fingerprint(
        executions[0].outputs["total_path"])
    assert count.parameters["steps"] == 5 and count.parameters["config"]["fail_at"] is None
    assert count.outputs == {"model_dir": count.output_dir, "start_step": 0, "step": 5,
                             "checkpoint": os.path.join(count.output_dir, "ckpt-5"), "stopped_by": None,
                             "output_dir": count.output_dir}
    assert all(e.finished >= e.started and e.error is None and e.pid == os.getpid() for e in executions)
    assert store.runs()[-1].status == "COMPLETE" and store.runs()[-1].argv == ["toy"]


def test_second_run_is_all_cache_hits(tmp_path, source):
  root = tmp_path / "root"
  first = runner.run_pipeline(make_pipeline(root, source), log=_quiet)
  CALLS.clear()
  lines = []
  second = runner.run_pipeline(make_pipeline(root, source), log=lines.append)
  assert _statuses(second) == ["CACHED"] * 3 and CALLS == []
  assert [r.cached_from for r in second.stages] == [r.execution_id for r in first.stages]
  assert [r.outputs for r in second.stages] == [r.outputs for r in first.stages]
  assert sum("cache hit" in line for line in lines) == 3
  # A cache hit of a cache hit still points at the execution that produced the outputs.
  third = runner.run_pipeline(make_pipeline(root, source), log=_quiet)
  assert [r.cached_from for r in third.stages] == [r.execution_id for r in first.stages]


def test_changes_invalidate_exactly_the_affected_stages(tmp_path, source):
  root = tmp_path / "root"
  runner.run_pipeline(make_pipeline(root, source), log=_quiet)
  # A runtime option is not part of the key: still all cached.
  CALLS.clear()
  assert _statuses(runner.run_pipeline(make_pipeline(root, source, fail_at=99), log=_quiet)) == ["CACHED"] * 3
  # A parameter of the middle stage: upstream cached, it and downstream rerun.
  changed = runner.run_pipeline(make_pipeline(root, source, steps=6), log=_quiet)
  assert _statuses(changed) == ["CACHED", "COMPLETE", "COMPLETE"]
  # The source folder's file changes (new mtime and size): everything reruns.
  source.write_text("1\n2\n3\n4\n")
  assert _statuses(runner.run_pipeline(make_pipeline(root, source), log=_quiet)) == ["COMPLETE"] * 3
  # A produced output disappears: that stage cannot be a cache hit any more.
  last = runner.run_pipeline(make_pipeline(root, source), log=_quiet)
  os.remove(last.report("report").outputs["report_path"])
  again = runner.run_pipeline(make_pipeline(root, source), log=_quiet)
  assert _statuses(again) == ["CACHED", "CACHED", "COMPLETE"]


def test_nocache_reruns_everything_in_new_directories(tmp_path, source):
  root = tmp_path / "root"
  first = runner.run_pipeline(make_pipeline(root, source), log=_quiet)
  CALLS.clear()
  forced = runner.run_pipeline(make_pipeline(root, source), enable_cache=False, log=_quiet)
  assert _statuses(forced) == ["COMPLETE"] * 3 and len(CALLS) == 3
  assert {r.outputs["output_dir"] for r in forced.stages}.isdisjoint(r.outputs["output_dir"] for r in first.stages)
  assert forced.report("count").outputs["start_step"] == 0


def test_failure_stops_the_run_and_the_next_run_resumes_in_place(tmp_path, source):
  root = tmp_path / "root"
  failed = runner.run_pipeline(make_pipeline(root, source, fail_at=3), log=_quiet)
  assert not failed.ok and _statuses(failed) == ["COMPLETE", "FAILED", "SKIPPED"]
  assert "planted failure at step 3" in failed.report("count").error
  assert "stage count failed" in failed.error
  failed_dir = os.path.join(str(root), "count", str(failed.report("count").execution_id))
  CALLS.clear()
  resumed = runner.run_pipeline(make_pipeline(root, source), log=_quiet)
  assert _statuses(resumed) == ["CACHED", "COMPLETE", "COMPLETE"]
  count = resumed.report("count")
  assert count.resumed_from == failed.report("count").execution_id
  assert count.outputs["model_dir"] == failed_dir and count.outputs["start_step"] == 3
  with lineage_lib.LineageStore(str(root), create=False) as store:
    assert [r.status for r in store.runs()] == ["FAILED", "COMPLETE"]
    failed_row = store.execution(failed.report("count").execution_id)
    assert failed_row.status == "FAILED" and "planted failure" in failed_row.error


def test_stage_stopped_by_a_signal_counts_as_interrupted(tmp_path, source):
  root = tmp_path / "root"
  stopped = runner.run_pipeline(make_pipeline(root, source, stop_at=4), log=_quiet)
  assert _statuses(stopped) == ["COMPLETE", "FAILED", "SKIPPED"]
  assert "stopped by SIGTERM" in stopped.report("count").error
  resumed = runner.run_pipeline(make_pipeline(root, source), log=_quiet)
  assert _statuses(resumed) == ["CACHED", "COMPLETE", "COMPLETE"]
  assert resumed.report("count").outputs["start_step"] == 4


def test_killed_execution_is_marked_failed_and_resumed(tmp_path, source):
  root = tmp_path / "root"
  runner.run_pipeline(make_pipeline(root, source, fail_at=2), log=_quiet)
  # Make the failed execution look like one whose process was SIGKILLed mid-run.
  dead = subprocess.Popen([sys.executable, "-c", "pass"])
  dead.wait()
  with lineage_lib.LineageStore(str(root)) as store:
    count = store.executions(stage="count")[-1]
    store.update_execution(count.id, status="RUNNING", error=None, finished=None, pid=dead.pid)
    assert store.mark_abandoned() == [count.id]
    assert store.execution(count.id).status == "FAILED"
    assert "interrupted" in store.execution(count.id).error
  resumed = runner.run_pipeline(make_pipeline(root, source), log=_quiet)
  assert resumed.report("count").resumed_from == count.id and resumed.report("count").outputs["start_step"] == 2


def test_miswired_option_fails_with_the_field_names(tmp_path, source):
  pipeline = make_pipeline(tmp_path / "root", source)
  bad = dataclasses.replace(pipeline.stages[0], parameters={"factr": 2})
  result = runner.run_pipeline(dataclasses.replace(pipeline, stages=(bad,) + pipeline.stages[1:]), log=_quiet)
  assert _statuses(result) == ["FAILED", "SKIPPED", "SKIPPED"]
  assert "no field(s) ['factr']" in result.report("sum").error and "factor" in result.report("sum").error


def test_missing_source_folder_is_a_clear_failure(tmp_path):
  result = runner.run_pipeline(make_pipeline(tmp_path / "root", tmp_path / "nowhere.txt"), log=_quiet)
  assert _statuses(result) == ["FAILED", "SKIPPED", "SKIPPED"]
  assert result.report("sum").error.startswith("stage 'sum': input source=")
  assert "does not exist; check the folder flags" in result.report("sum").error


def test_pipeline_rejects_bad_order():
  stages = make_pipeline("/nonexistent", "/nonexistent").stages
  with pytest.raises(ValueError, match="needs \\['sum'\\]"):
    Pipeline("toy", "/nonexistent", (stages[1], stages[0]))


def test_summary_table_and_lineage_cli(tmp_path, source):
  root = tmp_path / "root"
  runner.run_pipeline(make_pipeline(root, source), log=_quiet)
  result = runner.run_pipeline(make_pipeline(root, source), log=_quiet)
  table = runner.summary_table(result, served="served: toy version 1")
  assert "count" in table and "CACHED" in table and "(cache of 2)" in table and "served: toy version 1" in table
  cli = [sys.executable, "-m", "pipelines.lineage", f"--pipeline_root={root}"]
  env = dict(os.environ, PYTHONPATH=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
  listing = subprocess.run(cli + ["list"], capture_output=True, text=True, env=env, check=True).stdout
  assert len(listing.strip().splitlines()) == 7 and listing.count("CACHED") == 3
  shown = subprocess.run(cli + ["show", "2"], capture_output=True, text=True, env=env, check=True).stdout
  assert '"stage": "count"' in shown and '"status": "COMPLETE"' in shown and '"total_path"' in shown
  missing = subprocess.run(cli + ["show", "99"], capture_output=True, text=True, env=env)
  assert missing.returncode == 1 and "no execution 99" in missing.stderr
  nowhere = subprocess.run([sys.executable, "-m", "pipelines.lineage", f"--pipeline_root={tmp_path}/none"],
                           capture_output=True, text=True, env=env)
  assert nowhere.returncode == 1 and "no lineage store" in nowhere.stderr


def test_fingerprints(tmp_path):
  folder = tmp_path / "f"
  (folder / "sub").mkdir(parents=True)
  (folder / "sub" / "x.png").write_bytes(b"abc")
  source, content = fp.source_fingerprint(str(folder)), fp.content_fingerprint(str(folder))
  os.utime(folder / "sub" / "x.png", ns=(5, 5))
  assert fp.source_fingerprint(str(folder)) != source  # mtime is part of a source fingerprint
  assert fp.content_fingerprint(str(folder)) == content  # but not of a content fingerprint
  (folder / "sub" / "x.png").write_bytes(b"abd")
  assert fp.content_fingerprint(str(folder)) != content
  assert fp.execution_fingerprint("s", "c", {"a": 1, "b": 2}, {}) == fp.execution_fingerprint(
      "s", "c", {"b": 2, "a": 1}, {})
  with pytest.raises(FileNotFoundError, match="does not exist"):
    fp.source_fingerprint(str(tmp_path / "missing"))
