"""Executes a `Pipeline` in this process, stage by stage, with lineage, caching and resume.

For each stage, in order:
  1. resolve its inputs: upstream outputs (from this run's executions) and source folders;
  2. fingerprint = hash(stage, stage module source, parameters, input fingerprints) (pipelines.fingerprint);
  3. cache: a COMPLETE execution with the same fingerprint whose output paths still exist is reused: a CACHED
     execution is recorded and the stage is not run (`enable_cache=False` skips this step);
  4. otherwise the stage runs in `<root>/<stage>/<execution_id>/`, except that a resumable stage (train)
     whose latest same-fingerprint execution was interrupted or failed continues in THAT directory, so the
     trainer picks up its checkpoint;
  5. the result's fields become the execution's outputs; an exception marks it FAILED with the message,
     the remaining stages SKIPPED and the run FAILED. A result with a truthy `stopped_by` (training that
     checkpointed and stopped on SIGTERM/SIGINT) counts as interrupted: FAILED, and resumed next time.
A run killed from outside (SIGKILL) leaves RUNNING rows; the next run marks them FAILED first
(`LineageStore.mark_abandoned`), so starting the same command again continues from the stage that broke.

Caching and push: a second run with unchanged inputs is a cache hit for every stage including push, so no
new version is pushed (TFX behaves the same); a new version appears only when something upstream changed,
`--nocache` is given, or the pushed version directory has disappeared from the serving root.
"""

from __future__ import annotations

import dataclasses
import enum
import glob
import os
import sys
import time
import traceback
from typing import Any, Callable, Mapping

from pipelines import fingerprint as fp
from pipelines import lineage_lib
from pipelines.pipeline_lib import Pipeline, Source, Stage


@dataclasses.dataclass(frozen=True)
class StageReport:
  """What happened to one stage in one run."""
  stage: str
  status: str
  execution_id: int | None
  seconds: float
  outputs: Mapping[str, Any]
  cached_from: int | None = None
  resumed_from: int | None = None
  error: str | None = None


@dataclasses.dataclass(frozen=True)
class RunResult:
  """The outcome of `run_pipeline`: run id, overall status and one report per stage, in order."""
  run_id: int
  status: str
  stages: tuple[StageReport, ...]
  error: str | None = None

  @property
  def ok(self) -> bool:
    """True when every stage completed or was a cache hit."""
    return self.status == lineage_lib.COMPLETE

  def report(self, stage: str) -> StageReport:
    """The report of one stage; KeyError when the run has none."""
    for r in self.stages:
      if r.stage == stage:
        return r
    raise KeyError(stage)


def to_jsonable(value: Any) -> Any:
  """Turns a stage result (dataclass, mapping, paths, numpy scalars, enums) into JSON-able values."""
  if dataclasses.is_dataclass(value) and not isinstance(value, type):
    return {f.name: to_jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
  if isinstance(value, Mapping):
    return {str(k): to_jsonable(v) for k, v in value.items()}
  if isinstance(value, (list, tuple)):
    return [to_jsonable(v) for v in value]
  if isinstance(value, enum.Enum):
    return to_jsonable(value.value)
  if isinstance(value, os.PathLike):
    return os.fspath(value)
  if isinstance(value, (str, int, float, bool)) or value is None:
    return value
  if hasattr(value, "item"):  # numpy scalar
    return value.item()
  return str(value)


def _outputs_exist(execution: lineage_lib.Execution) -> bool:
  """True when every top-level output that is an absolute path still exists (nested values are data).

  A path may also be a prefix of existing files, as a TensorFlow checkpoint path is (`ckpt-12` names
  `ckpt-12.index` and `ckpt-12.data-*`).
  """
  return all(os.path.exists(v) or glob.glob(glob.escape(v) + ".*")
             for v in execution.outputs.values() if isinstance(v, str) and os.path.isabs(v))


class StageInterrupted(RuntimeError):
  """A stage returned early because it was asked to stop (its result has a truthy `stopped_by`)."""


def _error_message(exc: BaseException) -> str:
  # StageError (stages), ValueError (configs, wiring) and FileNotFoundError (missing source folders) carry a
  # message written for the user; anything else is a bug and keeps the tail of its traceback.
  from components.errors import StageError  # pylint: disable=import-outside-toplevel
  if isinstance(exc, (StageError, StageInterrupted, ValueError, FileNotFoundError)):
    return str(exc)
  return f"{type(exc).__name__}: {exc}\n" + "".join(traceback.format_tb(exc.__traceback__)[-3:])


class _Runner:
  """State of one run: the store, the executions of this run by stage, the log."""

  def __init__(self, pipeline: Pipeline, store: lineage_lib.LineageStore, run_id: int, enable_cache: bool,
               log: Callable[[str], None]):
    self.pipeline, self.store, self.run_id = pipeline, store, run_id
    self.enable_cache, self.log = enable_cache, log
    self.done: dict[str, lineage_lib.Execution] = {}

  def _output_fingerprint(self, execution: lineage_lib.Execution, key: str) -> str:
    """Fingerprint of one output of an upstream execution, computed once and stored on its origin."""
    origin = self.store.execution(execution.cached_from or execution.id)
    if key in origin.output_fingerprints:
      return origin.output_fingerprints[key]
    value = execution.outputs[key]
    if isinstance(value, str) and os.path.isabs(value) and os.path.exists(value):
      digest = fp.content_fingerprint(value)
    else:
      digest = fp.execution_fingerprint("value", "", {"value": value}, {})
    self.store.update_execution(origin.id, output_fingerprints={**origin.output_fingerprints, key: digest})
    return digest

  def _resolve(self, stage: Stage) -> tuple[dict, dict, dict]:
    """Returns (config values, input fingerprints, input lineage records) for a stage's inputs."""
    values, digests, records = {}, {}, {}
    for field, ref in stage.inputs.items():
      if isinstance(ref, Source):
        path = os.path.abspath(ref.path)
        if not os.path.exists(path):
          raise FileNotFoundError(f"stage {stage.name!r}: input {field}={path} does not exist; check the "
                                  "folder flags (--domain_a/--domain_b or --dataset_dir)")
        values[field], digests[field] = path, fp.source_fingerprint(path)
        records[field] = {"value": path, "fingerprint": digests[field], "producer": None}
      else:
        upstream = self.done[ref.stage]
        if ref.key not in upstream.outputs:
          raise KeyError(f"stage {stage.name!r} wants output {ref.key!r} of {ref.stage!r}, which has only "
                         f"{sorted(upstream.outputs)}")
        values[field] = upstream.outputs[ref.key]
        digests[field] = self._output_fingerprint(upstream, ref.key)
        records[field] = {"value": values[field], "fingerprint": digests[field],
                          "producer": upstream.cached_from or upstream.id}
    for name in stage.after:
      digests[f"after:{name}"] = self.done[name].fingerprint
    return values, digests, records

  def _cached(self, stage: Stage, fingerprint: str) -> lineage_lib.Execution | None:
    if not self.enable_cache:
      return None
    for candidate in self.store.find(stage.name, fingerprint, (lineage_lib.COMPLETE,)):
      if _outputs_exist(candidate):
        return candidate
    return None

  def _resumable(self, stage: Stage, fingerprint: str) -> lineage_lib.Execution | None:
    if not (stage.resumable and self.enable_cache):
      return None
    for candidate in self.store.find(stage.name, fingerprint, (lineage_lib.FAILED,)):
      if candidate.output_dir and os.path.isdir(candidate.output_dir):
        return candidate
    return None

  def run_stage(self, index: int, stage: Stage) -> StageReport:
    """Runs (or reuses) one stage and records it; raises nothing, failures come back in the report."""
    start = time.time()
    prefix = f"[{index}/{len(self.pipeline.stages)}] {stage.name}"
    execution_id = None
    try:
      values, digests, records = self._resolve(stage)
      code = fp.code_fingerprint(stage.module)  # the module is imported only if the stage really runs
      parameters = to_jsonable(dict(stage.parameters))
      fingerprint = fp.execution_fingerprint(stage.name, code, parameters, digests)
      common = dict(fingerprint=fingerprint, code=code, parameters=parameters, inputs=records)
      hit = self._cached(stage, fingerprint)
      if hit is not None:
        execution_id = self.store.start_execution(self.run_id, stage.name, status=lineage_lib.CACHED, **common)
        self.store.finish_execution(execution_id, lineage_lib.CACHED, outputs=hit.outputs,
                                    output_dir=hit.output_dir, cached_from=hit.id)
        self.done[stage.name] = self.store.execution(execution_id)
        self.log(f"{prefix}: cache hit, reusing execution {hit.id} ({hit.output_dir})")
        return StageReport(stage.name, lineage_lib.CACHED, execution_id, time.time() - start, hit.outputs,
                           cached_from=hit.id)
      execution_id = self.store.start_execution(self.run_id, stage.name, **common)
      previous = self._resumable(stage, fingerprint)
      if previous is not None:
        output_dir = previous.output_dir
        self.log(f"{prefix}: resuming interrupted execution {previous.id} in {output_dir} "
                 f"(execution {execution_id})")
      else:
        output_dir = os.path.join(os.path.abspath(self.pipeline.root), stage.name, str(execution_id))
        self.log(f"{prefix}: running execution {execution_id} -> {output_dir}")
      os.makedirs(output_dir, exist_ok=True)
      self.store.update_execution(execution_id, output_dir=output_dir,
                                  resumed_from=previous.id if previous else None)
      config = stage.build_config(values, output_dir)
      self.store.update_execution(execution_id, parameters={**parameters, "config": to_jsonable(config)})
      result = stage.executor()(config)
      outputs = {**to_jsonable(result if result is not None else {}), "output_dir": output_dir}
      if getattr(result, "stopped_by", None):  # e.g. training saved a checkpoint and stopped on SIGTERM
        raise StageInterrupted(
            f"stopped by {result.stopped_by} before finishing (state saved in {output_dir}); run the same "
            "command again to continue from there")
      self.store.finish_execution(execution_id, lineage_lib.COMPLETE, outputs=outputs)
      self.done[stage.name] = self.store.execution(execution_id)
      seconds = time.time() - start
      self.log(f"{prefix}: done in {seconds:.1f} s")
      return StageReport(stage.name, lineage_lib.COMPLETE, execution_id, seconds, outputs,
                         resumed_from=previous.id if previous else None)
    except Exception as exc:  # pylint: disable=broad-except
      message = _error_message(exc)
      if execution_id is None:
        execution_id = self.store.start_execution(self.run_id, stage.name, fingerprint="", code="",
                                                  parameters=to_jsonable(dict(stage.parameters)), inputs={})
      self.store.finish_execution(execution_id, lineage_lib.FAILED, error=message)
      self.log(f"{prefix}: FAILED: {message}")
      return StageReport(stage.name, lineage_lib.FAILED, execution_id, time.time() - start, {}, error=message)


def run_pipeline(pipeline: Pipeline, *, enable_cache: bool = True, argv: list[str] | None = None,
                 log: Callable[[str], None] | None = None) -> RunResult:
  """Executes `pipeline`; returns its RunResult (failures are reported, not raised).

  Args:
    pipeline: from `pipeline_lib.create_pipeline`.
    enable_cache: False re-executes every stage (and does not resume an interrupted training in place).
    argv: the command line, recorded with the run.
    log: progress sink, one line per call (default: print to stdout, flushed).
  """
  log = log or (lambda line: print(line, flush=True))
  os.makedirs(pipeline.root, exist_ok=True)
  with lineage_lib.LineageStore(pipeline.root) as store:
    abandoned = store.mark_abandoned()
    if abandoned:
      log(f"pipeline: executions {abandoned} of an earlier run were interrupted; continuing from there")
    run_id = store.start_run(pipeline.name, list(argv if argv is not None else sys.argv))
    log(f"pipeline {pipeline.name!r}: run {run_id} in {os.path.abspath(pipeline.root)} "
        f"(cache {'on' if enable_cache else 'off'})")
    runner = _Runner(pipeline, store, run_id, enable_cache, log)
    reports, error = [], None
    for index, stage in enumerate(pipeline.stages, start=1):
      if error is not None:
        execution_id = store.start_execution(run_id, stage.name, status=lineage_lib.SKIPPED, fingerprint="",
                                             code="", parameters=to_jsonable(dict(stage.parameters)),
                                             inputs={})
        store.finish_execution(execution_id, lineage_lib.SKIPPED, error=f"not run: {error.split(':')[0]}")
        reports.append(StageReport(stage.name, lineage_lib.SKIPPED, execution_id, 0.0, {}))
        continue
      report = runner.run_stage(index, stage)
      reports.append(report)
      if report.status == lineage_lib.FAILED:
        error = f"stage {stage.name} failed: {report.error}"
    status = lineage_lib.FAILED if error else lineage_lib.COMPLETE
    store.finish_run(run_id, status)
  return RunResult(run_id=run_id, status=status, stages=tuple(reports), error=error)


def _short(value: Any, width: int) -> str:
  text = str(value)
  return text if len(text) <= width else "..." + text[-(width - 3):]


def summary_table(result: RunResult, served: str | None = None) -> str:
  """A plain-text table of a run: stage, status, seconds, execution id, output dir; then the served model."""
  lines = [f"{'stage':<15} {'status':<9} {'time':>8}  {'exec':>5}  outputs",
           f"{'-' * 15} {'-' * 9} {'-' * 8}  {'-' * 5}  {'-' * 40}"]
  for r in result.stages:
    note = ""
    if r.cached_from:
      note = f" (cache of {r.cached_from})"
    elif r.resumed_from:
      note = f" (resumed {r.resumed_from})"
    lines.append(f"{r.stage:<15} {r.status:<9} {r.seconds:>7.1f}s  {r.execution_id or '':>5}  "
                 f"{_short(r.outputs.get('output_dir', (r.error or '').splitlines()[0] if r.error else ''), 70)}"
                 f"{note}")
  total = sum(r.seconds for r in result.stages)
  lines.append(f"run {result.run_id}: {result.status} in {total:.1f} s")
  if served:
    lines.append(served)
  if result.error:
    lines.append(result.error)
  return "\n".join(lines)


def served_model(result: RunResult) -> str | None:
  """One line about the push stage's outcome: the served model's name, version and path, or why not."""
  try:
    push = result.report("push")
  except KeyError:
    return None
  outputs = push.outputs
  if not outputs:
    return None
  if outputs.get("pushed"):
    name = os.path.basename(os.path.dirname(outputs["path"]))
    source = f" (pushed by execution {push.cached_from}; nothing new to push)" if push.cached_from else ""
    return f"served model: {name} version {outputs['version']} at {outputs['path']}{source}"
  return f"served model: none ({outputs.get('reason', 'not pushed')})"
