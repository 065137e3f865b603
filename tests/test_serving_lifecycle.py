"""Model server lifecycle: versions rolling in under load, broken versions, config reloads, batching, SIGTERM.

Servers run in-process (serving.server_lib.ModelServer on a loopback port) except for the SIGTERM test, which
needs a real child process.
"""

from __future__ import annotations

import concurrent.futures
import json
import os
import shutil
import threading
import time
import urllib.request

import grpc
import numpy as np
import pytest
from google.protobuf import text_format
from tensorflow_serving.apis import (model_management_pb2, model_pb2, model_service_pb2_grpc, predict_pb2,
                                     prediction_service_pb2_grpc)

from serving import batching, client as client_lib, config as config_lib, process, tensors
from serving.errors import ServingError
from serving.server_lib import ModelServer
from tests.test_serving_models import ToyTranslator, save_toy


@pytest.fixture(scope="module")
def versions(tmp_path_factory):
  """Prebuilt ToyTranslator versions 1..3 in a staging directory, copied into base paths by the tests."""
  staging = tmp_path_factory.mktemp("staging")
  return {v: save_toy(ToyTranslator(v), str(staging / str(v))) for v in (1, 2, 3)}


def _publish(src: str, base: str, version: int) -> None:
  """Copies a version next to its final place, then renames it in (the way push does: never half visible)."""
  tmp = os.path.join(base, f".tmp-{version}")
  shutil.copytree(src, tmp)
  os.rename(tmp, os.path.join(base, str(version)))


def _server(base, **overrides):
  config = config_lib.ServerConfig(models=(config_lib.ModelConfig("toy", base),), port=0,
                                   **{"file_system_poll_wait_seconds": 0.2, **overrides})
  return ModelServer(config).start()


def _predict_request(images, signature="a2b"):
  request = predict_pb2.PredictRequest(model_spec=model_pb2.ModelSpec(name="toy", signature_name=signature))
  request.inputs["images"].CopyFrom(tensors.to_tensor_proto(images))
  return request


def _wait_for(predicate, timeout=30.0):
  deadline = time.monotonic() + timeout
  while time.monotonic() < deadline:
    if predicate():
      return True
    time.sleep(0.05)
  return False


def test_new_version_rolls_in_under_load_without_a_failed_request(tmp_path, versions):
  base = str(tmp_path / "toy")
  os.makedirs(base)
  _publish(versions[1], base, 1)
  server = _server(base)
  stop = threading.Event()
  seen, errors = [], []
  def hammer(seed):
    channel = grpc.insecure_channel(f"127.0.0.1:{server.port}")
    stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    images = np.full([1, 4, 4, 3], seed, np.uint8)
    while not stop.is_set():
      try:
        response = stub.Predict(_predict_request(images), timeout=30)
        out = tensors.from_tensor_proto(response.outputs["images"])
        assert np.array_equal(out, 255 - images)
        seen.append(response.model_spec.version.value)
      except Exception as e:  # any failure at all is what this test looks for
        errors.append(e)
    channel.close()
  try:
    threads = [threading.Thread(target=hammer, args=(i,)) for i in range(8)]
    for t in threads:
      t.start()
    assert _wait_for(lambda: len(seen) > 16)
    _publish(versions[2], base, 2)
    assert _wait_for(lambda: seen[-8:] == [2] * 8), "version 2 never took over"
    stop.set()
    for t in threads:
      t.join()
  finally:
    stop.set()
    server.stop()
  assert not errors, errors[:3]
  assert seen[0] == 1 and seen[-1] == 2
  assert _wait_for(lambda: server.manager.status("toy", 1)[0].state == "END")


def test_a_corrupt_version_is_reported_and_the_loaded_one_keeps_serving(tmp_path, versions):
  base = str(tmp_path / "toy")
  os.makedirs(base)
  _publish(versions[1], base, 1)
  server = _server(base)
  try:
    client = client_lib.TranslationClient(f"127.0.0.1:{server.port}", "toy")
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "saved_model.pb").write_bytes(b"this is not a SavedModel")
    _publish(str(broken), base, 2)
    assert _wait_for(lambda: any(s["version"] == 2 and s["state"] == "END" for s in client.model_status()))
    status = {s["version"]: s for s in client.model_status()}
    pb_path = os.path.join(base, "2", "saved_model.pb")
    assert status[2] == {"version": 2, "state": "END", "error_code": grpc.StatusCode.DATA_LOSS.value[0],
                         "error_message": f"Can't parse {pb_path} as binary proto"}
    assert status[1] == {"version": 1, "state": "AVAILABLE", "error_code": 0, "error_message": ""}
    out = client.predict("a2b", {"images": np.zeros([1, 4, 4, 3], np.uint8)}, ["version"])
    assert int(out["version"][0]) == 1
    # A repaired directory is retried (its files changed) and takes over.
    shutil.rmtree(os.path.join(base, "2"))
    _publish(versions[2], base, 2)
    assert _wait_for(lambda: client.model_status()[0] == {"version": 2, "state": "AVAILABLE", "error_code": 0,
                                                          "error_message": ""})
    client.close()
  finally:
    server.stop()


def test_reload_config_request_changes_policy_and_labels(tmp_path, versions):
  base = str(tmp_path / "toy")
  os.makedirs(base)
  for v in (1, 2):
    _publish(versions[v], base, v)
  server = _server(base, file_system_poll_wait_seconds=0)
  channel = grpc.insecure_channel(f"127.0.0.1:{server.port}")
  models = model_service_pb2_grpc.ModelServiceStub(channel)
  try:
    assert server.manager.available() == {"toy": [2]}
    text = ('model_config_list { config { name: "toy" base_path: "%s" model_platform: "tensorflow" '
            'model_version_policy { all {} } version_labels { key: "stable" value: %d } } }')
    request = model_management_pb2.ReloadConfigRequest()
    text_format.Parse(text % (base, 1), request.config)
    response = models.HandleReloadConfigRequest(request, timeout=60)
    assert response.status.error_code == 0
    assert server.manager.available() == {"toy": [1, 2]}
    with client_lib.TranslationClient(f"127.0.0.1:{server.port}", "toy", version_label="stable") as client:
      assert int(client.predict("a2b", {"images": np.zeros([1, 2, 2, 3], np.uint8)})["version"][0]) == 1
    request = model_management_pb2.ReloadConfigRequest()
    text_format.Parse(text % (base, 7), request.config)
    with pytest.raises(grpc.RpcError) as info:
      models.HandleReloadConfigRequest(request, timeout=60)
    assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert info.value.details() == ("Request to assign label to version 7 of model toy, which is not currently "
                                    "available for inference")
  finally:
    channel.close()
    server.stop()


def test_model_config_file_is_polled_for_new_models(tmp_path, versions):
  base = str(tmp_path / "toy")
  os.makedirs(base)
  _publish(versions[1], base, 1)
  config_file = tmp_path / "models.config"
  entry = 'config { name: "%s" base_path: "' + base + '" model_platform: "tensorflow" }'
  config_file.write_text("model_config_list { %s }" % (entry % "toy"))
  server = ModelServer(config_lib.ServerConfig(model_config_file=str(config_file), port=0,
                                               model_config_file_poll_wait_seconds=0.2,
                                               file_system_poll_wait_seconds=0)).start()
  try:
    assert server.manager.available() == {"toy": [1]}
    config_file.write_text("model_config_list { %s %s }" % (entry % "toy", entry % "twin"))
    assert _wait_for(lambda: server.manager.available() == {"toy": [1], "twin": [1]})
    config_file.write_text("model_config_list { %s }" % (entry % "twin"))
    assert _wait_for(lambda: server.manager.available() == {"twin": [1]})
  finally:
    server.stop()


def test_batching_concatenates_concurrent_requests_into_one_call(tmp_path, versions):
  base = str(tmp_path / "toy")
  os.makedirs(base)
  _publish(versions[1], base, 1)
  server = _server(base, file_system_poll_wait_seconds=0, enable_model_warmup=False,
                   batching=config_lib.BatchingConfig(max_batch_size=8, batch_timeout_micros=500_000,
                                                      num_batch_threads=1))
  try:
    client = client_lib.TranslationClient(f"127.0.0.1:{server.port}", "toy")
    calls_before = int(client.predict("calls_made", {})["calls"])
    barrier = threading.Barrier(8)
    def one(i):
      images = np.full([1, 4, 4, 3], i, np.uint8)
      barrier.wait()
      out = client.predict("a2b", {"images": images})
      np.testing.assert_array_equal(out["images"], 255 - images)  # each caller gets its own rows back
      return int(out["batch_size"][0])
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
      batch_sizes = list(pool.map(one, range(8)))
    calls = int(client.predict("calls_made", {})["calls"]) - calls_before
    assert max(batch_sizes) > 1, batch_sizes
    # A request that rode in a batch of s rows is 1/s of one model call: the sum counts the calls.
    assert calls < 8 and calls == round(sum(1 / s for s in batch_sizes)), (calls, batch_sizes)
    with pytest.raises(client_lib.TranslationError) as info:
      client.predict("a2b", {"images": np.zeros([9, 4, 4, 3], np.uint8)})
    assert (info.value.code, str(info.value)) == (
        grpc.StatusCode.INVALID_ARGUMENT, "INVALID_ARGUMENT: Task size 9 is larger than maximum input batch size 8")
    client.close()
  finally:
    server.stop()


def test_batch_scheduler_pads_to_allowed_sizes_and_refuses_when_full():
  calls = []
  release = threading.Event()
  def run(signature, inputs, outputs):
    calls.append(inputs["x"].shape[0])
    release.wait(10)
    return {"y": inputs["x"] * 2}
  config = config_lib.BatchingConfig(max_batch_size=4, batch_timeout_micros=0, num_batch_threads=1,
                                     max_enqueued_batches=1, allowed_batch_sizes=(2, 4))
  scheduler = batching.BatchScheduler(config, run)
  try:
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
      first = pool.submit(scheduler.submit, "f", {"x": np.arange(3)}, ("y",))
      assert _wait_for(lambda: calls == [4], 10)  # 3 rows padded to the allowed size 4
      second = pool.submit(scheduler.submit, "f", {"x": np.arange(4)}, ("y",))
      assert _wait_for(lambda: scheduler._queues, 10)  # queued behind the running batch
      with pytest.raises(ServingError) as info:
        scheduler.submit("f", {"x": np.arange(4)}, ("y",))
      assert info.value.code == grpc.StatusCode.UNAVAILABLE
      assert info.value.message == "The batch scheduling queue to which this task was submitted is full"
      release.set()
      np.testing.assert_array_equal(first.result()["y"], [0, 2, 4])
      np.testing.assert_array_equal(second.result()["y"], [0, 2, 4, 6])
  finally:
    release.set()
    scheduler.close()


@pytest.mark.slow
def test_sigterm_drains_in_flight_grpc_and_rest_requests_then_exits_0(tmp_path, versions):
  base = str(tmp_path / "toy")
  os.makedirs(base)
  _publish(versions[1], base, 1)
  rest_port = process.free_port()
  proc = process.ServerProcess(["--model_name=toy", f"--model_base_path={base}", f"--rest_api_port={rest_port}"],
                               process.free_port())
  def rest_sleep():
    request = urllib.request.Request(f"http://127.0.0.1:{rest_port}/v1/models/toy:predict", method="POST",
                                     data=json.dumps({"signature_name": "sleep", "inputs": 3.0}).encode())
    with urllib.request.urlopen(request, timeout=60) as response:
      return json.loads(response.read())["outputs"]
  with proc:
    with client_lib.TranslationClient(proc.target, "toy", retries=0) as client:
      client.wait_until_available(60)
      calls = lambda: int(client.predict("calls_made", {})["calls"])
      before = calls()
      with concurrent.futures.ThreadPoolExecutor(2) as pool:
        # REST sleeps longer than gRPC: it must be drained on its own, not just outlived by the gRPC drain.
        slow_grpc = pool.submit(client.predict, "sleep", {"seconds": np.float64(1.5)})
        slow_rest = pool.submit(rest_sleep)
        assert _wait_for(lambda: calls() >= before + 2), "the slow requests never started"
        proc.terminate()
        assert float(slow_grpc.result(timeout=60)["slept"]) >= 1.5
        assert float(slow_rest.result(timeout=60)) >= 3.0
      assert proc.process.wait(60) == 0


def test_version_policies_pick_the_aspired_versions(tmp_path):
  from serving.model_manager import aspired_versions, list_versions
  for name in ("1", "2", "10", "tmp", ".tmp-11"):
    (tmp_path / name).mkdir()
  (tmp_path / "3").write_text("a file, not a version directory")
  on_disk = list_versions(str(tmp_path))
  assert sorted(on_disk) == [1, 2, 10]
  assert aspired_versions(("latest", 1), on_disk) == {10}
  assert aspired_versions(("latest", 2), on_disk) == {2, 10}
  assert aspired_versions(("all",), on_disk) == {1, 2, 10}
  assert aspired_versions(("specific", (1, 7)), on_disk) == {1}
  assert list_versions(str(tmp_path / "missing")) == {}
