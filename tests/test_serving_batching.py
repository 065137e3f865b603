"""Batching like TF Serving's BatchingSession: requests of different image sizes share a batch and fail together
(or are padded with pad_variable_length_inputs), encoded images batch in any mix, and the deploy configuration
never fails a valid request of any size from many concurrent clients.
"""

from __future__ import annotations

import concurrent.futures
import io
import os
import threading

import grpc
import numpy as np
import pytest
import yaml
from PIL import Image

from serving import client as client_lib, config as config_lib
from serving.server_lib import ModelServer
from serving.wire import model_pb2
from tests.test_serving_models import ToyTranslator, save_toy

DEPLOY = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "serving", "deploy")


@pytest.fixture(scope="module")
def base(tmp_path_factory):
  root = tmp_path_factory.mktemp("toy")
  save_toy(ToyTranslator(1), str(root / "1"))
  return str(root)


def _server(base, batching):
  return ModelServer(config_lib.ServerConfig(models=(config_lib.ModelConfig("toy", base),), port=0,
                                             file_system_poll_wait_seconds=0, enable_model_warmup=False,
                                             batching=batching)).start()


def _png(image):
  out = io.BytesIO()
  Image.fromarray(image).save(out, format="PNG")
  return out.getvalue()


def together(target: str, calls, **client_args):
  """Runs the calls (client -> result) at the same moment, one thread and one TranslationClient of model "toy"
  at `target` each (`client_args` go to the client); returns their results or TranslationErrors in order."""
  barrier = threading.Barrier(len(calls))
  def one(call):
    with client_lib.TranslationClient(target, "toy", retries=0, **client_args) as client:
      barrier.wait()
      try:
        return call(client)
      except client_lib.TranslationError as e:
        return e
  with concurrent.futures.ThreadPoolExecutor(len(calls)) as pool:
    return list(pool.map(one, calls))


def _together(server, calls):
  return together(f"127.0.0.1:{server.port}", calls)


def _deploy_batching():
  """The batching the deploy files turn on (None: they do not pass --enable_batching=true)."""
  args = yaml.safe_load(open(os.path.join(DEPLOY, "docker-compose.yml")))["services"]["tf-serving"]["command"]
  if "--enable_batching=true" not in args:
    return None
  path = next(a.split("=", 1)[1] for a in args if a.startswith("--batching_parameters_file="))
  return config_lib.read_batching_parameters_file(os.path.join(DEPLOY, os.path.basename(path)))


def test_deploy_configuration_never_fails_a_mix_of_sizes_from_many_clients(base):
  server = _server(base, _deploy_batching())
  rng = np.random.default_rng(0)
  sizes = [(4, 4), (6, 8), (8, 6), (5, 7)]
  images = [rng.integers(0, 256, [1 + i % 2, *sizes[i % 4], 3], dtype=np.uint8) for i in range(32)]
  def call(i):
    def run(client):
      if i % 3 == 2:  # encoded signature: one PNG per row
        out = client.predict("a2b_encoded", {"image_bytes": np.array([_png(x) for x in images[i]], dtype=object)})
        return np.stack([np.asarray(Image.open(io.BytesIO(b))) for b in out["image_bytes"]])
      return client.predict("a2b", {"images": images[i]})["images"]
    return run
  try:
    results = []
    for start in (0, 16):  # 16 clients at once, twice
      results += _together(server, [call(i) for i in range(start, start + 16)])
  finally:
    server.stop()
  failures = [r for r in results if isinstance(r, Exception)]
  assert not failures, failures[:3]
  for image, result in zip(images, results):
    np.testing.assert_array_equal(result, 255 - image)


def test_different_sizes_in_one_batch_fail_together_as_tf_serving(base):
  server = _server(base, config_lib.BatchingConfig(max_batch_size=8, batch_timeout_micros=1_000_000,
                                                   num_batch_threads=1))
  try:
    name = server.manager.resolve(model_pb2.ModelSpec(name="toy")).signature_defs["a2b"].inputs["images"].name
    raw = _together(server, [lambda c: c.predict("a2b", {"images": np.zeros([1, 4, 4, 3], np.uint8)}),
                             lambda c: c.predict("a2b", {"images": np.zeros([1, 6, 6, 3], np.uint8)})])
    # Encoded images of different sizes are one string tensor [N] per request: they batch.
    encoded = _together(server, [
        lambda c: c.predict("a2b_encoded", {"image_bytes": np.array([_png(np.zeros([4, 4, 3], np.uint8))], object)}),
        lambda c: c.predict("a2b_encoded", {"image_bytes": np.array([_png(np.zeros([6, 6, 3], np.uint8))], object)})])
    same = _together(server, [lambda c: c.predict("a2b", {"images": np.zeros([1, 4, 4, 3], np.uint8)})] * 2)
  finally:
    server.stop()
  message = (f"FAILED_PRECONDITION: Tensors with name '{name}' from different tasks have different shapes and "
             "padding is turned off. Set pad_variable_length_inputs to true, or ensure that all tensors with the same "
             "name have equal dimensions starting with the first dim.")
  assert [(r.code, str(r)) for r in raw] == [(grpc.StatusCode.FAILED_PRECONDITION, message)] * 2
  assert not [r for r in encoded if isinstance(r, Exception)], encoded
  assert [int(r["batch_size"][0]) for r in same] == [2, 2]  # same sizes still share one batch


def test_pad_variable_length_inputs_pads_with_each_inputs_first_value(base):
  config = config_lib.parse_batching_parameters_text(
      "max_batch_size { value: 4 } batch_timeout_micros { value: 1000000 } num_batch_threads { value: 1 } "
      "pad_variable_length_inputs: true")
  assert config.pad_variable_length_inputs
  small = np.arange(1 * 2 * 2 * 3, dtype=np.uint8).reshape([1, 2, 2, 3]) + 10
  large = np.full([1, 3, 3, 3], 200, np.uint8)
  server = _server(base, config)
  try:
    out = _together(server, [lambda c: c.predict("a2b", {"images": small}),
                             lambda c: c.predict("a2b", {"images": large})])
  finally:
    server.stop()
  # TF Serving's AddPadding: pad after the existing values of every dimension but the batch one, with the
  # tensor's first value (here 10); the answer keeps the padded size (outputs are split on dim 0 only).
  padded = np.full([1, 3, 3, 3], 10, np.uint8)
  padded[:, :2, :2, :] = small
  np.testing.assert_array_equal(out[0]["images"], 255 - padded)
  np.testing.assert_array_equal(out[1]["images"], 255 - large)
  assert [int(r["batch_size"][0]) for r in out] == [2, 2]
