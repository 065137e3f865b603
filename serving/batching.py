"""Server-side request batching, as TF Serving's BatchingSession does it (tensorflow_serving/batching/
batching_session.cc).

Requests for the same signature (same input aliases and outputs: TF Serving's TensorSignature) join the open
batch of their queue; a batch runs when it reaches `max_batch_size` rows or when its first request has waited
`batch_timeout_micros`. The batch's inputs are concatenated on dim 0 (padded up to the next
`allowed_batch_sizes` entry by repeating the last request's first row), the signature runs once, and every
output is split back on dim 0. Requests whose inputs differ beyond dim 0 (images of different sizes) may share a
batch, as in TF Serving: without `pad_variable_length_inputs` the whole batch fails with its FAILED_PRECONDITION
(tensorflow/serving#1934); with it every input is padded at the end of each dimension to the batch's largest,
with the input's first value (MergeInputTensors / AddPadding), and outputs come back at the padded size. A
request larger than max_batch_size, or one that would need more than `max_enqueued_batches` open batches in its
queue, is refused the way TF Serving refuses it.
"""

from __future__ import annotations

import collections
import concurrent.futures
import threading
import time

import grpc
import numpy as np

from serving.errors import ServingError


def is_batchable(inputs: dict) -> bool:
  """True if every input has a dim 0 and all dims 0 agree (scalars and ragged requests run unbatched)."""
  sizes = {v.shape[0] if np.ndim(v) else None for v in inputs.values()}
  return len(sizes) == 1 and None not in sizes and next(iter(sizes)) > 0


def _pad_to(array: np.ndarray, sizes: list) -> np.ndarray:
  """Pads `array` at the end of every dimension but the first up to `sizes`, with its first value (AddPadding)."""
  widths = [(0, 0)] + [(0, sizes[d] - array.shape[d]) for d in range(1, array.ndim)]
  if all(w == (0, 0) for w in widths):
    return array
  if array.size == 0:
    raise ServingError(grpc.StatusCode.INVALID_ARGUMENT, "Got empty tensor in batch of non-empty tensors.")
  return np.pad(array, widths, mode="constant", constant_values=array.reshape(-1)[0])


class _Batch:
  """An open or closed batch: its tasks (inputs, size, future) and when its first task arrived."""

  def __init__(self, signature_name: str, outputs: tuple):
    self.signature_name = signature_name
    self.outputs = outputs
    self.tasks = []
    self.size = 0
    self.created = time.monotonic()
    self.closed = False
    self.tensor_names = {}


class BatchScheduler:
  """Batches calls to `run_fn(signature_name, inputs, outputs) -> {alias: array}` over worker threads.

  `submit` blocks the calling (RPC) thread until its slice of the batched result is ready.
  """

  def __init__(self, config, run_fn, name: str = "", on_batch=None):
    """config: serving.config.BatchingConfig; run_fn: the unbatched call that receives the concatenated batch;
    on_batch(task_sizes, execution_size, queuing_seconds): called once per batch run (metrics), or None."""
    self._config = config
    self._run_fn = run_fn
    self._on_batch = on_batch
    self._timeout = config.batch_timeout_micros / 1e6
    self._queues = collections.OrderedDict()  # key -> deque of _Batch (last one open)
    self._cond = threading.Condition()
    self._stopping = False
    self._threads = [threading.Thread(target=self._worker, name=f"batch-{name}-{i}", daemon=True)
                     for i in range(config.num_batch_threads)]
    for thread in self._threads:
      thread.start()

  def submit(self, signature_name: str, inputs: dict, outputs: tuple, tensor_names: dict | None = None) -> dict:
    """Enqueues one request ([n, ...] inputs) and waits for its [n, ...] outputs.

    tensor_names: alias -> the graph tensor name TF Serving's errors name (e.g. "a2b_images:0"); default alias.
    """
    size = int(next(iter(inputs.values())).shape[0])
    if size > self._config.max_batch_size:
      raise ServingError(grpc.StatusCode.INVALID_ARGUMENT,
                         f"Task size {size} is larger than maximum input batch size {self._config.max_batch_size}")
    key = (signature_name, outputs, tuple(sorted(inputs)))
    future = concurrent.futures.Future()
    with self._cond:
      if self._stopping:
        raise ServingError(grpc.StatusCode.UNAVAILABLE, "Batch scheduler is shutting down")
      queue = self._queues.setdefault(key, collections.deque())
      if not queue or queue[-1].closed or queue[-1].size + size > self._config.max_batch_size:
        if queue and not queue[-1].closed:
          queue[-1].closed = True
        if len(queue) >= self._config.max_enqueued_batches:
          raise ServingError(grpc.StatusCode.UNAVAILABLE,
                             "The batch scheduling queue to which this task was submitted is full")
        queue.append(_Batch(signature_name, outputs))
        queue[-1].tensor_names = dict(tensor_names or {})
      batch = queue[-1]
      batch.tasks.append((inputs, size, future, time.monotonic()))
      batch.size += size
      if batch.size >= self._config.max_batch_size:
        batch.closed = True
      self._cond.notify()
    return future.result()

  def close(self) -> None:
    """Runs what is queued, then stops the worker threads."""
    with self._cond:
      self._stopping = True
      self._cond.notify_all()
    for thread in self._threads:
      thread.join(timeout=60)

  def _next_batch(self):
    """Waits for a runnable batch (full, timed out, or any while stopping); None when stopped and empty."""
    with self._cond:
      while True:
        now = time.monotonic()
        wait = None
        for key, queue in self._queues.items():
          if not queue:
            continue
          head = queue[0]
          due = head.created + self._timeout
          if head.closed or due <= now or self._stopping:
            queue.popleft()
            if not queue:
              del self._queues[key]
            return head
          wait = due - now if wait is None else min(wait, due - now)
        if self._stopping:
          return None
        self._cond.wait(timeout=wait)

  def _worker(self) -> None:
    while True:
      batch = self._next_batch()
      if batch is None:
        return
      self._run_batch(batch)

  def _merge(self, batch: _Batch) -> dict:
    """The batch's inputs concatenated on dim 0 (MergeInputTensors), or FAILED_PRECONDITION for mixed shapes."""
    task_inputs = [t[0] for t in batch.tasks]
    if self._config.pad_variable_length_inputs:
      task_inputs = [{k: _pad_to(v, [max(t[k].shape[d] for t in task_inputs) for d in range(v.ndim)])
                      for k, v in inputs.items()} for inputs in task_inputs]
    else:
      for inputs in task_inputs[1:]:
        for alias in sorted(inputs):
          if inputs[alias].shape[1:] != task_inputs[0][alias].shape[1:]:
            raise ServingError(grpc.StatusCode.FAILED_PRECONDITION, (
                f"Tensors with name '{batch.tensor_names.get(alias, alias)}' from different tasks have different "
                "shapes and padding is turned off. Set pad_variable_length_inputs to true, or ensure that all "
                "tensors with the same name have equal dimensions starting with the first dim."))
    target = next((s for s in self._config.allowed_batch_sizes if s >= batch.size), batch.size)
    merged = {}
    for alias in task_inputs[0]:
      parts = [inputs[alias] for inputs in task_inputs]
      if target > batch.size:  # TF Serving pads with the first row of the last task's tensor
        parts.append(np.repeat(parts[-1][:1], target - batch.size, axis=0))
      merged[alias] = parts[0] if len(parts) == 1 else np.concatenate(parts, axis=0)
    return merged

  def _run_batch(self, batch: _Batch) -> None:
    """Concatenates, pads, runs once, splits; every task gets its rows or the batch's error."""
    tasks = batch.tasks
    dequeued = time.monotonic()
    try:
      merged = self._merge(batch)
      padded = next(iter(merged.values())).shape[0]
      if self._on_batch is not None:
        self._on_batch([t[1] for t in tasks], padded, [dequeued - t[3] for t in tasks])
      result = self._run_fn(batch.signature_name, merged, batch.outputs)
      for alias, value in result.items():
        if np.ndim(value) == 0 or value.shape[0] != padded:
          raise ServingError(grpc.StatusCode.FAILED_PRECONDITION,
                             f"Batched output tensor {alias} has {0 if np.ndim(value) == 0 else value.shape[0]} "
                             f"rows; expected {padded} (one per input row): this signature cannot be batched")
      start = 0
      for _, size, future, _ in tasks:
        future.set_result({k: v[start:start + size] for k, v in result.items()})
        start += size
    except Exception as e:  # the error goes to every waiting request
      for _, _, future, _ in tasks:
        if not future.done():
          future.set_exception(e if isinstance(e, ServingError)
                               else ServingError(grpc.StatusCode.INTERNAL, f"batched call failed: {e}"))

