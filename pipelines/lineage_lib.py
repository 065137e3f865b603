"""The lineage store: one SQLite file per pipeline root recording every run and every stage execution.

File: `<pipeline_root>/lineage.sqlite` (stdlib sqlite3, WAL journal so a reader never blocks the runner).

Tables:
  runs(id, pipeline, started, finished, status, argv, pid, host)
  executions(id, run_id, stage, status, fingerprint, code, parameters, inputs, outputs, output_fingerprints,
             output_dir, cached_from, resumed_from, pid, host, started, finished, error)

An execution's status is one of
  RUNNING   started and not finished (a process that died keeps this status until the next run notices:
            `mark_abandoned` turns it into FAILED with the reason),
  COMPLETE  finished successfully; its outputs may be reused by a later execution with the same fingerprint,
  CACHED    skipped because a COMPLETE execution (`cached_from`) had the same fingerprint; outputs reused,
  FAILED    raised an error (`error` holds the message) or was interrupted,
  SKIPPED   not started because an upstream stage failed.
`parameters`, `inputs` (name -> {"value", "fingerprint", "producer"}), `outputs` (name -> value) and
`output_fingerprints` (name -> digest, filled the first time a downstream stage consumes the output) are JSON.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import socket
import sqlite3
import time
from typing import Any, Iterator

LINEAGE_FILENAME = "lineage.sqlite"

RUNNING = "RUNNING"
COMPLETE = "COMPLETE"
CACHED = "CACHED"
FAILED = "FAILED"
SKIPPED = "SKIPPED"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  pipeline TEXT NOT NULL,
  started REAL NOT NULL,
  finished REAL,
  status TEXT NOT NULL,
  argv TEXT,
  pid INTEGER,
  host TEXT
);
CREATE TABLE IF NOT EXISTS executions (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  run_id INTEGER NOT NULL REFERENCES runs(id),
  stage TEXT NOT NULL,
  status TEXT NOT NULL,
  fingerprint TEXT,
  code TEXT,
  parameters TEXT NOT NULL DEFAULT '{}',
  inputs TEXT NOT NULL DEFAULT '{}',
  outputs TEXT NOT NULL DEFAULT '{}',
  output_fingerprints TEXT NOT NULL DEFAULT '{}',
  output_dir TEXT,
  cached_from INTEGER,
  resumed_from INTEGER,
  pid INTEGER,
  host TEXT,
  started REAL NOT NULL,
  finished REAL,
  error TEXT
);
CREATE INDEX IF NOT EXISTS executions_by_fingerprint ON executions(stage, fingerprint, status);
"""

_JSON_FIELDS = ("parameters", "inputs", "outputs", "output_fingerprints")


@dataclasses.dataclass(frozen=True)
class Execution:
  """One row of `executions`, JSON fields decoded."""
  id: int
  run_id: int
  stage: str
  status: str
  fingerprint: str | None
  code: str | None
  parameters: dict
  inputs: dict
  outputs: dict
  output_fingerprints: dict
  output_dir: str | None
  cached_from: int | None
  resumed_from: int | None
  pid: int | None
  host: str | None
  started: float
  finished: float | None
  error: str | None

  @property
  def seconds(self) -> float | None:
    """Wall time of the execution in seconds (None while it runs)."""
    return None if self.finished is None else self.finished - self.started


@dataclasses.dataclass(frozen=True)
class Run:
  """One row of `runs`."""
  id: int
  pipeline: str
  started: float
  finished: float | None
  status: str
  argv: list
  pid: int | None
  host: str | None


def lineage_path(pipeline_root: str) -> str:
  """The SQLite file of a pipeline root."""
  return os.path.join(pipeline_root, LINEAGE_FILENAME)


def _pid_alive(pid: int) -> bool:
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  except PermissionError:
    return True
  return True


class LineageStore:
  """Reads and writes the lineage SQLite file of one pipeline root.

  Args:
    pipeline_root: the directory; `create=False` raises FileNotFoundError when it holds no lineage file.
  """

  def __init__(self, pipeline_root: str, *, create: bool = True):
    self.path = lineage_path(pipeline_root)
    if not create and not os.path.exists(self.path):
      raise FileNotFoundError(
          f"no lineage store at {self.path}: is --pipeline_root the root a pipeline ran in?")
    if create:
      os.makedirs(pipeline_root, exist_ok=True)
    self._conn = sqlite3.connect(self.path, timeout=30.0, isolation_level=None)
    self._conn.row_factory = sqlite3.Row
    if create:
      self._conn.execute("PRAGMA journal_mode=WAL")
      self._conn.executescript(_SCHEMA)

  def close(self) -> None:
    """Closes the connection."""
    self._conn.close()

  def __enter__(self) -> "LineageStore":
    return self

  def __exit__(self, *exc) -> None:
    self.close()

  @contextlib.contextmanager
  def _transaction(self) -> Iterator[sqlite3.Connection]:
    self._conn.execute("BEGIN IMMEDIATE")
    try:
      yield self._conn
    except BaseException:
      self._conn.execute("ROLLBACK")
      raise
    self._conn.execute("COMMIT")

  # Runs.
  def start_run(self, pipeline: str, argv: list[str]) -> int:
    """Records a new run as RUNNING; returns its id."""
    with self._transaction() as c:
      cur = c.execute(
          "INSERT INTO runs (pipeline, started, status, argv, pid, host) VALUES (?, ?, ?, ?, ?, ?)",
          (pipeline, time.time(), RUNNING, json.dumps(list(argv)), os.getpid(), socket.gethostname()))
      return int(cur.lastrowid)

  def finish_run(self, run_id: int, status: str) -> None:
    """Sets a run's final status (COMPLETE or FAILED)."""
    with self._transaction() as c:
      c.execute("UPDATE runs SET status = ?, finished = ? WHERE id = ?", (status, time.time(), run_id))

  def runs(self) -> list[Run]:
    """All runs, oldest first."""
    rows = self._conn.execute("SELECT * FROM runs ORDER BY id").fetchall()
    return [Run(id=r["id"], pipeline=r["pipeline"], started=r["started"], finished=r["finished"],
                status=r["status"], argv=json.loads(r["argv"] or "[]"), pid=r["pid"], host=r["host"])
            for r in rows]

  # Executions.
  def start_execution(self, run_id: int, stage: str, *, fingerprint: str, code: str,
                      parameters: dict, inputs: dict, status: str = RUNNING) -> int:
    """Records an execution that starts now; returns its id (the execution_id of its output dir)."""
    with self._transaction() as c:
      cur = c.execute(
          "INSERT INTO executions (run_id, stage, status, fingerprint, code, parameters, inputs, pid, host,"
          " started) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
          (run_id, stage, status, fingerprint, code, json.dumps(parameters, default=str),
           json.dumps(inputs, default=str), os.getpid(), socket.gethostname(), time.time()))
      return int(cur.lastrowid)

  def update_execution(self, execution_id: int, **fields: Any) -> None:
    """Sets columns of one execution; JSON fields are encoded here."""
    unknown = set(fields) - {f.name for f in dataclasses.fields(Execution)}
    if unknown:
      raise ValueError(f"unknown execution fields {sorted(unknown)}")
    values = [json.dumps(v, default=str) if k in _JSON_FIELDS else v for k, v in fields.items()]
    assignments = ", ".join(f"{k} = ?" for k in fields)
    with self._transaction() as c:
      c.execute(f"UPDATE executions SET {assignments} WHERE id = ?", (*values, execution_id))

  def finish_execution(self, execution_id: int, status: str, *, outputs: dict | None = None,
                       error: str | None = None, **fields: Any) -> None:
    """Sets an execution's final status, outputs, error and finish time."""
    self.update_execution(execution_id, status=status, outputs=outputs or {}, error=error,
                          finished=time.time(), **fields)

  def execution(self, execution_id: int) -> Execution:
    """One execution by id; KeyError when there is none."""
    row = self._conn.execute("SELECT * FROM executions WHERE id = ?", (execution_id,)).fetchone()
    if row is None:
      raise KeyError(f"no execution {execution_id} in {self.path}")
    return _to_execution(row)

  def executions(self, *, run_id: int | None = None, stage: str | None = None) -> list[Execution]:
    """Executions, oldest first, optionally of one run and/or one stage."""
    query, args = "SELECT * FROM executions WHERE 1=1", []
    if run_id is not None:
      query, args = query + " AND run_id = ?", args + [run_id]
    if stage is not None:
      query, args = query + " AND stage = ?", args + [stage]
    return [_to_execution(r) for r in self._conn.execute(query + " ORDER BY id", args).fetchall()]

  def find(self, stage: str, fingerprint: str, statuses: tuple[str, ...]) -> list[Execution]:
    """Executions of `stage` with `fingerprint` and one of `statuses`, newest first."""
    marks = ",".join("?" for _ in statuses)
    rows = self._conn.execute(
        f"SELECT * FROM executions WHERE stage = ? AND fingerprint = ? AND status IN ({marks})"
        " ORDER BY id DESC", (stage, fingerprint, *statuses)).fetchall()
    return [_to_execution(r) for r in rows]

  def mark_abandoned(self) -> list[int]:
    """Turns RUNNING executions and runs of dead processes on this host into FAILED; returns their ids.

    A process killed with SIGKILL cannot record its own end, so the next run on the same root does it.
    """
    host = socket.gethostname()
    dead = [r["id"] for r in self._conn.execute(
        "SELECT id, pid FROM executions WHERE status = ? AND host = ?", (RUNNING, host)).fetchall()
            if r["pid"] is None or not _pid_alive(r["pid"])]
    for execution_id in dead:
      self.finish_execution(execution_id, FAILED,
                            error="interrupted: the process running it ended without recording a result")
    with self._transaction() as c:
      for run in c.execute("SELECT id, pid FROM runs WHERE status = ? AND host = ?", (RUNNING, host)).fetchall():
        if run["pid"] is None or not _pid_alive(run["pid"]):
          c.execute("UPDATE runs SET status = ?, finished = ? WHERE id = ?", (FAILED, time.time(), run["id"]))
    return dead


def _to_execution(row: sqlite3.Row) -> Execution:
  values = dict(row)
  for key in _JSON_FIELDS:
    values[key] = json.loads(values[key] or "{}")
  return Execution(**values)
