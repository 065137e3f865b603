"""Reads a pipeline root's lineage store: `python -m pipelines.lineage --pipeline_root=DIR [list|show ID|runs]`.

  list      one line per execution: id, run, stage, status, seconds, fingerprint prefix, output dir
  show ID   everything recorded about execution ID (inputs with their producers, outputs, parameters,
            fingerprint, status, timings, error) as JSON
  runs      one line per pipeline run
"""

import json
import sys
import time

from absl import app
from absl import flags

from pipelines import lineage_lib

FLAGS = flags.FLAGS
flags.DEFINE_string("pipeline_root", None, "The pipeline root (holds lineage.sqlite).")
flags.DEFINE_string("stage", None, "list: only executions of this stage.")
flags.DEFINE_integer("run", None, "list: only executions of this run id.")

_USAGE = "usage: python -m pipelines.lineage --pipeline_root=DIR [list | show EXECUTION_ID | runs]"


def _when(t: float | None) -> str:
  return "-" if t is None else time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t))


def format_executions(executions: list[lineage_lib.Execution]) -> str:
  """A table of executions, one line each (the `list` command)."""
  lines = [f"{'id':>5} {'run':>4} {'stage':<15} {'status':<9} {'seconds':>8} {'fingerprint':<12} {'from':>5}  output_dir"]
  for e in executions:
    seconds = "-" if e.seconds is None else f"{e.seconds:.1f}"
    source = e.cached_from or e.resumed_from or ""
    lines.append(f"{e.id:>5} {e.run_id:>4} {e.stage:<15} {e.status:<9} {seconds:>8} "
                 f"{(e.fingerprint or '')[:12]:<12} {source:>5}  {e.output_dir or ''}")
  return "\n".join(lines)


def format_runs(runs: list[lineage_lib.Run]) -> str:
  """A table of runs, one line each (the `runs` command)."""
  lines = [f"{'run':>4} {'status':<9} {'started':<19} {'finished':<19}  command"]
  for r in runs:
    lines.append(f"{r.id:>4} {r.status:<9} {_when(r.started):<19} {_when(r.finished):<19}  {' '.join(r.argv)}")
  return "\n".join(lines)


def main(argv):
  """Runs the list / show / runs command on the lineage store of --pipeline_root."""
  if not FLAGS.pipeline_root:
    raise app.UsageError("--pipeline_root is required.\n" + _USAGE)
  command = argv[1:] or ["list"]
  try:
    store = lineage_lib.LineageStore(FLAGS.pipeline_root, create=False)
  except FileNotFoundError as e:
    print(f"error: {e}", file=sys.stderr)
    return 1
  with store:
    if command[0] == "list" and len(command) == 1:
      print(format_executions(store.executions(run_id=FLAGS.run, stage=FLAGS.stage)))
    elif command[0] == "runs" and len(command) == 1:
      print(format_runs(store.runs()))
    elif command[0] == "show" and len(command) == 2 and command[1].isdigit():
      try:
        execution = store.execution(int(command[1]))
      except KeyError as e:
        print(f"error: {e.args[0]}; `list` shows the ids", file=sys.stderr)
        return 1
      record = dict(vars(execution), seconds=execution.seconds,
                    started_at=_when(execution.started), finished_at=_when(execution.finished))
      print(json.dumps(record, indent=2, sort_keys=True, default=str))
    else:
      raise app.UsageError(f"unknown command {' '.join(command)!r}.\n" + _USAGE)
  return 0


if __name__ == "__main__":
  app.run(main)
