"""The trainer's pieces: strategy, distributed step, checkpoints, summaries, samples.

Nothing model-specific lives here: the per-model losses and updates are `Family.train_step` (models/), the
training loop built from these pieces is `components.trainer_loop.fit`, and the train stage's settings are
`components.train_lib`. This module (a shared one: model_dir and the import stages use it too, so it imports no
project module but the errors and the pixel convention) only knows how to
  * pick and build a `tf.distribute.Strategy` (default, Mirrored over GPUs or logical CPUs, MultiWorker);
  * wrap a one-replica step in `tf.function` + `strategy.run` and SUM-reduce its loss scalars, handing each
    replica a per-step, per-replica seed drawn from a checkpointed `tf.random.Generator`;
  * keep checkpoints with `tf.train.CheckpointManager` (non-chief workers write to a throw-away directory), and
    the best one by an evaluation metric apart from the rolling ones (`BestCheckpointKeeper`);
  * keep an exponential moving average of the generator variables (`GeneratorEMA`), updated inside the step;
  * stop cleanly on SIGTERM/SIGINT (a handler only sets a flag; the loop saves and returns);
  * write TensorBoard scalars/images and sample-grid PNGs, and print progress lines.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import signal
import sys
from typing import Callable, Mapping

import numpy as np
import tensorflow as tf

from components import image_grid, image_io
from components.errors import StageError
from models.api import to_wire_images

STRATEGIES = ("auto", "default", "mirrored", "multi_worker")


def configure_cpu_replicas(num_replicas: int) -> None:
  """Splits the first physical CPU into `num_replicas` logical devices (must run before TF uses devices).

  Raises StageError when TensorFlow already initialized its devices in this process.
  """
  if num_replicas < 1:
    raise StageError(f"--cpu_replicas must be >= 1, got {num_replicas}.")
  if num_replicas == 1:
    return
  cpu = tf.config.list_physical_devices("CPU")[0]
  config = [tf.config.LogicalDeviceConfiguration() for _ in range(num_replicas)]
  current = tf.config.get_logical_device_configuration(cpu)
  if current is not None and len(current) == num_replicas:
    return
  try:
    tf.config.set_logical_device_configuration(cpu, config)
  except RuntimeError as e:
    raise StageError(
        f"Cannot split the CPU into {num_replicas} logical devices: TensorFlow already initialized its devices "
        f"in this process ({e}). Run training in a fresh process (python -m components.train ...).") from e


# One strategy object per kind and device set for the whole process: MultiWorkerMirroredStrategy may only be
# created once, and two MirroredStrategy objects in one process reuse collective instance keys (a second run
# then fails with "Shape mismatch in the collective instance"), so later runs reuse the first object.
_STRATEGY_CACHE: dict[tuple, tf.distribute.Strategy] = {}


def create_strategy(name: str, cpu_replicas: int = 1) -> tf.distribute.Strategy:
  """Returns the distribution strategy called `name` (one of STRATEGIES), reused within a process.

  auto: MirroredStrategy over all local GPUs when there is more than one (or over the `cpu_replicas` logical
  CPUs when > 1 and there is no GPU), else the default strategy. mirrored: all local GPUs, or the logical CPUs.
  multi_worker: MultiWorkerMirroredStrategy from the TF_CONFIG environment variable.
  """
  if name not in STRATEGIES:
    raise StageError(f"Unknown --strategy={name!r}; choose one of {', '.join(STRATEGIES)}.")
  configure_cpu_replicas(cpu_replicas)
  if name == "multi_worker":
    if not os.environ.get("TF_CONFIG"):
      raise StageError("--strategy=multi_worker needs the TF_CONFIG environment variable (cluster and task); "
                       "set it on every worker, or use --strategy=mirrored on a single machine.")
    key = ("multi_worker", os.environ["TF_CONFIG"])
    if key not in _STRATEGY_CACHE:
      _STRATEGY_CACHE[key] = tf.distribute.MultiWorkerMirroredStrategy()
    return _STRATEGY_CACHE[key]
  gpus = tf.config.list_logical_devices("GPU")
  cpus = tf.config.list_logical_devices("CPU")
  if name == "auto":
    if len(gpus) > 1 or (not gpus and len(cpus) > 1):
      name = "mirrored"
    else:
      return tf.distribute.get_strategy()
  if name == "default":
    return tf.distribute.get_strategy()
  devices = tuple(d.name for d in gpus) if gpus else tuple(d.name for d in cpus)
  key = ("mirrored", devices)
  if key not in _STRATEGY_CACHE:
    _STRATEGY_CACHE[key] = tf.distribute.MirroredStrategy(devices=list(devices))
  return _STRATEGY_CACHE[key]


def is_chief(strategy: tf.distribute.Strategy) -> bool:
  """True unless this process is a non-chief worker of a multi-worker cluster."""
  resolver = getattr(strategy.extended, "_cluster_resolver", None)
  if resolver is None or not resolver.task_type:
    return True
  if resolver.task_type == "chief":
    return True
  has_chief = "chief" in resolver.cluster_spec().as_dict()
  return resolver.task_type == "worker" and resolver.task_id == 0 and not has_chief


def make_rng(strategy: tf.distribute.Strategy, seed: int) -> tf.random.Generator:
  """The run's random state: a Philox tf.random.Generator from `seed`, mirrored (created in strategy.scope()).

  Checkpoint it with the model: `make_distributed_step(..., rng=...)` advances it once per step.
  """
  with strategy.scope():
    return tf.random.Generator.from_seed(seed)


def replica_seed(step_seed: tf.Tensor) -> tf.Tensor:
  """This replica's seed `[2]` for stateless ops: `step_seed` with replica_id_in_sync_group folded in.

  The id is global over all workers (MultiWorkerMirroredStrategy), so every replica of a step draws differently.
  """
  replica_id = tf.distribute.get_replica_context().replica_id_in_sync_group
  return tf.random.experimental.stateless_fold_in(step_seed, replica_id)


def make_distributed_step(strategy: tf.distribute.Strategy, replica_step: Callable[..., Mapping[str, tf.Tensor]],
                          *, jit_compile: bool = False, rng: tf.random.Generator | None = None,
                          after_step: Callable[[], None] | None = None) -> Callable:
  """Returns a tf.function `step(iterator) -> {name: scalar}` running `replica_step(*next(iterator))` per replica.

  The replica step returns loss scalars already divided by the global batch, so they are reduced with SUM.
  With `jit_compile` the replica step is XLA-compiled (one replica), or, with several replicas, XLA
  auto-clustering is switched on for the process. With `rng` (from `make_rng`), each call first draws one
  step seed from it in cross-replica context (so it advances alike on every worker, and a restored generator
  resumes the same sequence) and calls `replica_step(*inputs, replica_seed(step_seed))`. `after_step` (e.g.
  `GeneratorEMA.update`) runs in the same tf.function, in cross-replica context, after every replica's update.
  """
  replica_fn = replica_step
  if jit_compile and strategy.num_replicas_in_sync > 1:
    # The replica step aggregates gradients across replicas (a merge_call inside optimizer.apply), which cannot
    # live in an XLA-compiled function: use XLA auto-clustering of the step's graph instead (GPU; on CPU only
    # with TF_XLA_FLAGS=--tf_xla_cpu_global_jit), which compiles everything but the cross-replica sync.
    tf.config.optimizer.set_jit("autoclustering")
  elif jit_compile:
    replica_fn = tf.function(replica_step, jit_compile=True)

  def seeded_replica_fn(*args):
    return replica_fn(*args[:-1], replica_seed(args[-1]))

  @tf.function
  def step(iterator):
    inputs = tuple(next(iterator))
    if rng is None:
      per_replica = strategy.run(replica_fn, args=inputs)
    else:
      per_replica = strategy.run(seeded_replica_fn, args=inputs + (rng.make_seeds(1)[:, 0],))
    if after_step is not None:
      after_step()
    return {name: strategy.reduce(tf.distribute.ReduceOp.SUM, value, axis=None)
            for name, value in per_replica.items()}

  return step


class CheckpointKeeper:
  """tf.train.CheckpointManager in `directory`; non-chief workers save into a temporary sibling and delete it.

  The manager writes the data files, then the index, then the `checkpoint` state file, and restores only what
  the state file names, so a save interrupted by SIGKILL is never restored (the previous one is).
  """

  def __init__(self, checkpoint: tf.train.Checkpoint, directory: str, *, max_to_keep: int, chief: bool,
               task_id: int = 0):
    self.directory = directory
    self._chief = chief
    write_dir = directory if chief else os.path.join(os.path.dirname(directory), f".worker_tmp_{task_id}")
    self._write_dir = write_dir
    self._manager = tf.train.CheckpointManager(checkpoint, write_dir, max_to_keep=max_to_keep if chief else 1)
    self._checkpoint = checkpoint

  @property
  def latest(self) -> str | None:
    """Path prefix of the newest complete checkpoint in `directory`, or None."""
    return tf.train.latest_checkpoint(self.directory)

  def restore_latest(self) -> str | None:
    """Restores the newest complete checkpoint (all saved objects must match); returns its path or None."""
    path = self.latest
    if path is not None:
      self._checkpoint.restore(path).assert_existing_objects_matched()
    return path

  def save(self, step: int) -> str:
    """Saves the checkpoint numbered `step` (every worker must call this); returns the chief's path."""
    path = self._manager.save(checkpoint_number=step)
    if not self._chief:
      shutil.rmtree(self._write_dir, ignore_errors=True)
    return os.path.join(self.directory, os.path.basename(path))


class GeneratorEMA:
  """Exponential moving average of the generator variables (the "EMA generator" of imaginaire, StyleGAN, ...).

  After every training step: ema <- decay * ema + (1 - decay) * w, for each generator variable w; the averages
  start at the initial weights. Create it (and call `update`) in the strategy's scope/step: the averages are
  then mirrored like the weights, and `update` runs in cross-replica context, where it reads the (all-reduced,
  identical) weights and writes every replica's copy. `averages` is checkpointed as `generator_ema`.
  """

  def __init__(self, variables, decay: float):
    if not 0.0 < decay < 1.0:
      raise ValueError(f"EMA decay must be in (0, 1), got {decay}.")
    self.decay = float(decay)
    self.sources = list(variables)
    self.averages = [tf.Variable(tf.convert_to_tensor(v), trainable=False, dtype=v.dtype,
                                 name="ema_" + getattr(v, "path", v.name).split(":")[0].replace("/", "_"))
                     for v in self.sources]

  def update(self) -> None:
    """ema <- decay * ema + (1 - decay) * w for every pair (inside the step's tf.function or eagerly)."""
    for average, source in zip(self.averages, self.sources):
      value = tf.cast(tf.convert_to_tensor(source), average.dtype)
      average.assign(self.decay * average + (1.0 - self.decay) * value)

  @contextlib.contextmanager
  def applied(self):
    """Within the block the generator variables hold the averages; their trained values are put back after."""
    trained = [tf.identity(tf.convert_to_tensor(v)) for v in self.sources]
    for source, average in zip(self.sources, self.averages):
      source.assign(tf.convert_to_tensor(average))
    try:
      yield
    finally:
      for source, value in zip(self.sources, trained):
        source.assign(value)


BEST_FILE = "best.json"


class BestCheckpointKeeper:
  """The best checkpoint by one evaluation metric, kept in its own `directory` (untouched by the rolling ones).

  `directory` holds one checkpoint (`ckpt-<step>`, CheckpointManager with max_to_keep=1) and `best.json`:
  {"step", "metric", "mode" ("min"/"max"), "value", "metrics" (every value of that evaluation), "checkpoint"}.
  A resumed run continues from the recorded value when the metric is the same (else the first evaluation
  becomes the best). Non-chief workers write into a temporary sibling and delete it, like CheckpointKeeper.
  """

  def __init__(self, checkpoint: tf.train.Checkpoint, directory: str, *, metric: str, mode: str, chief: bool,
               task_id: int = 0):
    if mode not in ("min", "max"):
      raise ValueError(f"mode must be 'min' or 'max', got {mode!r}.")
    self.directory, self.metric, self.mode = directory, metric, mode
    self._chief = chief
    self._write_dir = directory if chief else os.path.join(os.path.dirname(directory), f".best_tmp_{task_id}")
    self._manager = tf.train.CheckpointManager(checkpoint, self._write_dir, max_to_keep=1)
    previous = read_best(directory)
    self.record = previous if previous and previous.get("metric") == metric else None

  def improves(self, value: float) -> bool:
    """True when `value` (finite) beats the recorded best (or there is none)."""
    if value is None or not math.isfinite(value):
      return False
    if self.record is None:
      return True
    best = self.record["value"]
    return value < best if self.mode == "min" else value > best

  def save(self, step: int, metrics: Mapping[str, float]) -> str:
    """Saves the checkpoint as the best (every worker must call this); writes best.json; returns its path."""
    path = self._manager.save(checkpoint_number=step)
    self.record = {"step": int(step), "metric": self.metric, "mode": self.mode,
                   "value": float(metrics[self.metric]), "metrics": {k: float(v) for k, v in metrics.items()},
                   "checkpoint": os.path.basename(path)}
    if self._chief:
      write_json(os.path.join(self.directory, BEST_FILE), self.record)
    else:
      shutil.rmtree(self._write_dir, ignore_errors=True)
    return os.path.join(self.directory, os.path.basename(path))


def read_best(directory: str) -> dict | None:
  """The parsed `best.json` of a best-checkpoint directory, or None when there is none."""
  path = os.path.join(directory, BEST_FILE)
  if not tf.io.gfile.exists(path):
    return None
  with tf.io.gfile.GFile(path) as f:
    return json.load(f)


class StopRequest:
  """Context manager: SIGTERM/SIGINT set `.requested` (the loop then saves and exits); handlers restored after."""

  def __init__(self):
    self.requested = None
    self._previous = {}

  def _handle(self, signum, frame):  # pylint: disable=unused-argument
    self.requested = signal.Signals(signum).name

  def __enter__(self):
    for sig in (signal.SIGTERM, signal.SIGINT):
      try:
        self._previous[sig] = signal.signal(sig, self._handle)
      except ValueError:  # not the main thread: signals cannot be caught here
        pass
    return self

  def __exit__(self, *exc):
    for sig, handler in self._previous.items():
      signal.signal(sig, handler)
    return False


def read_scalars(log_dir: str) -> dict[str, dict[int, float]]:
  """TensorBoard scalars written under `log_dir` (tf.summary.scalar): tag -> {step: value}."""
  out: dict[str, dict[int, float]] = {}
  for path in sorted(tf.io.gfile.glob(os.path.join(log_dir, "events.out.tfevents.*"))):
    for event in tf.compat.v1.train.summary_iterator(path):
      for value in event.summary.value:
        if value.HasField("tensor") and not value.tensor.string_val:
          out.setdefault(value.tag, {})[event.step] = float(tf.make_ndarray(value.tensor))
  return out


def sample_grid(rows: Mapping[str, tf.Tensor | np.ndarray], pad: int = 2) -> np.ndarray:
  """Tiles sample rows into one uint8 image [R * (H + pad) + pad, B * (W + pad) + pad, 3].

  Args:
    rows: ordered row name -> [B, H, W, 3] in [-1, 1] (Family.sample_rows); all rows the same shape.
    pad: white border in pixels between tiles.
  Row r, column b of the grid is rows[r][b].
  """
  arrays = [np.asarray(v) for v in rows.values()]
  if not arrays:
    raise ValueError("sample_grid needs at least one row.")
  shape = arrays[0].shape
  for name, a in zip(rows, arrays):
    if a.ndim != 4 or a.shape != shape or a.shape[-1] != 3:
      raise ValueError(f"Sample row {name!r} has shape {a.shape}; every row must be [B, H, W, 3] like {shape}.")
  return image_grid.tile_rows([to_wire_images(a).numpy() for a in arrays], pad=pad)


def write_png(path: str, image: np.ndarray) -> None:
  """Writes uint8 [H, W, 3] to `path` (atomically: temp file then rename)."""
  tmp = path + ".tmp"
  tf.io.write_file(tmp, image_io.encode_png(np.asarray(image)))
  tf.io.gfile.rename(tmp, path, overwrite=True)


def write_json(path: str, obj) -> None:
  """Writes `obj` as indented JSON (atomically: temp file then rename)."""
  tmp = path + ".tmp"
  with tf.io.gfile.GFile(tmp, "w") as f:
    f.write(json.dumps(obj, indent=2, sort_keys=True) + "\n")
  tf.io.gfile.rename(tmp, path, overwrite=True)


def variable_stats(variables, name_suffix: str) -> dict[str, float]:
  """mean/min/max over all elements of the variables whose path ends with `name_suffix` ({} if none)."""
  values = [tf.reshape(tf.cast(v, tf.float32), [-1]) for v in variables
            if getattr(v, "path", v.name).split(":")[0].endswith(name_suffix)]
  if not values:
    return {}
  flat = tf.concat(values, axis=0)
  return {"mean": float(tf.reduce_mean(flat)), "min": float(tf.reduce_min(flat)),
          "max": float(tf.reduce_max(flat))}


def format_duration(seconds: float) -> str:
  """Seconds -> 'H:MM:SS'."""
  seconds = max(0, int(round(seconds)))
  return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


class Progress:
  """Prints 'step S/N  loss=...  X img/s  ETA H:MM:SS' lines to stderr (\\r-updated on a TTY)."""

  def __init__(self, total_steps: int, stream=None):
    self.total_steps = total_steps
    self.stream = stream or sys.stderr
    self._tty = hasattr(self.stream, "isatty") and self.stream.isatty()

  def update(self, step: int, losses: Mapping[str, float], images_per_sec: float, steps_per_sec: float) -> str:
    """Prints and returns one progress line."""
    eta = (self.total_steps - step) / steps_per_sec if steps_per_sec > 0 else float("nan")
    parts = [f"step {step}/{self.total_steps}"] + [f"{k}={v:.4g}" for k, v in losses.items()]
    parts += [f"{images_per_sec:.2f} img/s", f"ETA {format_duration(eta) if np.isfinite(eta) else '?'}"]
    line = "  ".join(parts)
    if self._tty:
      self.stream.write("\r\x1b[K" + line)
    else:
      self.stream.write(line + "\n")
    self.stream.flush()
    return line

  def note(self, message: str) -> None:
    """Prints one message line."""
    self.stream.write(message + "\n")
    self.stream.flush()

  def close(self):
    """Ends a \\r-updated line."""
    if self._tty:
      self.stream.write("\n")
      self.stream.flush()
