"""TF Serving's REST API (a stdlib HTTP server in a thread) over the same ModelManager as gRPC.

Routes (TF Serving's):
  GET  /v1/models/NAME[/versions/N | /labels/L]            -> GetModelStatus as JSON
  GET  /v1/models/NAME[/versions/N | /labels/L]/metadata   -> GetModelMetadata as JSON
  POST /v1/models/NAME[/versions/N | /labels/L]:predict    -> Predict
Predict bodies: {"signature_name": S, "instances": [...]} (row format: one entry per example, a dict of input
name -> value when the signature has several inputs) or {"inputs": ...} (columnar: name -> batched value);
bytes travel as {"b64": "<base64>"}. Answers: {"predictions": ...} for rows, {"outputs": ...} for columns;
string outputs whose alias ends in "_bytes" are sent as {"b64": ...}. Errors: {"error": "<message>"} with
TF Serving's HTTP status for the code (INVALID_ARGUMENT/FAILED_PRECONDITION 400, NOT_FOUND 404, ...).
"""

from __future__ import annotations

import base64
import http.server
import json
import logging
import re
import threading
import time

import grpc
import numpy as np
from google.protobuf import json_format
from tensorflow_serving.apis import get_model_metadata_pb2, get_model_status_pb2, model_pb2, predict_pb2

from serving import handlers, tensors
from serving.errors import ServingError, from_exception

_ROUTE = re.compile(r"^/v1/models/(?P<name>[^/:]+)(?:/versions/(?P<version>\d+)|/labels/(?P<label>[^/:]+))?"
                    r"(?:/(?P<resource>metadata)|:(?P<method>predict|classify|regress))?$")
_HTTP_STATUS = {
    grpc.StatusCode.OK: 200, grpc.StatusCode.CANCELLED: 499, grpc.StatusCode.UNKNOWN: 500,
    grpc.StatusCode.INVALID_ARGUMENT: 400, grpc.StatusCode.DEADLINE_EXCEEDED: 504, grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.ALREADY_EXISTS: 409, grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429, grpc.StatusCode.FAILED_PRECONDITION: 400,
    grpc.StatusCode.ABORTED: 409, grpc.StatusCode.OUT_OF_RANGE: 400, grpc.StatusCode.UNIMPLEMENTED: 501,
    grpc.StatusCode.INTERNAL: 500, grpc.StatusCode.UNAVAILABLE: 503, grpc.StatusCode.DATA_LOSS: 500,
    grpc.StatusCode.UNAUTHENTICATED: 401,
}
_INVALID = grpc.StatusCode.INVALID_ARGUMENT


def _model_spec(match) -> model_pb2.ModelSpec:
  spec = model_pb2.ModelSpec(name=match["name"])
  if match["version"] is not None:
    spec.version.value = int(match["version"])
  elif match["label"] is not None:
    spec.version_label = match["label"]
  return spec


def _decode_value(value, is_string: bool):
  """JSON value -> nested python lists with {"b64": ...} turned into bytes (strings UTF-8 encoded)."""
  if isinstance(value, dict):
    if set(value) == {"b64"}:
      try:
        return base64.b64decode(value["b64"], validate=True)
      except (ValueError, TypeError):
        raise ServingError(_INVALID, "JSON Value: {\"b64\": ...} does not hold valid base64") from None
    raise ServingError(_INVALID, f"JSON object {json.dumps(value)[:80]} is not a tensor value; only "
                                 "{\"b64\": ...} objects may appear inside a value")
  if isinstance(value, list):
    return [_decode_value(v, is_string) for v in value]
  if is_string and isinstance(value, str):
    return value.encode("utf-8")
  return value


def _to_array(alias: str, value, info) -> np.ndarray:
  """JSON value for input `alias` -> numpy array of the signature's dtype."""
  is_string = tensors.is_string(info.dtype)
  decoded = _decode_value(value, is_string)
  try:
    if is_string:
      array = np.array(decoded, dtype=object)
      if any(not isinstance(v, bytes) for v in array.reshape(-1)):
        raise ValueError("non-string values")
      return array
    return np.array(decoded, dtype=tensors.numpy_dtype(info.dtype))
  except (ValueError, TypeError) as e:
    raise ServingError(_INVALID, f"Failed to process element: {alias} of 'instances'/'inputs' list: the value "
                                 f"is not a (rectangular) {tensors.dtype_name(info.dtype)} tensor ({e})") from None


def _parse_predict_body(body: bytes, signature) -> tuple:
  """(inputs dict, row_format) from a predict JSON body and the SignatureDef."""
  try:
    doc = json.loads(body or b"{}")
  except json.JSONDecodeError as e:
    raise ServingError(_INVALID, f"JSON Parse error: {e}") from None
  if not isinstance(doc, dict):
    raise ServingError(_INVALID, "JSON Value: the request body must be a JSON object")
  has_rows, has_cols = "instances" in doc, "inputs" in doc
  if has_rows == has_cols:
    raise ServingError(_INVALID, "Missing 'inputs' or 'instances' key" if not has_rows else
                       "Not formatted correctly expecting only one of 'inputs' or 'instances' keys exists")
  names = sorted(signature.inputs.keys())
  if has_rows:
    rows = doc["instances"]
    if not isinstance(rows, list) or not rows:
      raise ServingError(_INVALID, "Expecting 'instances' to be a non-empty JSON list")
    named = all(isinstance(r, dict) and set(r) != {"b64"} for r in rows)
    if not named and len(names) != 1:
      raise ServingError(_INVALID, f"The signature has inputs {names}: each instance must be a JSON object "
                                   "with one entry per input")
    columns = {}
    for row in rows:
      entries = row if named else {names[0]: row}
      if set(entries) != set(rows[0] if named else entries):
        raise ServingError(_INVALID, "Failed to process element: every instance must name the same inputs")
      for key, value in entries.items():
        columns.setdefault(key, []).append(value)
  else:
    value = doc["inputs"]
    columns = value if isinstance(value, dict) and set(value) != {"b64"} else (
        {names[0]: value} if len(names) == 1 else None)
    if columns is None:
      raise ServingError(_INVALID, f"The signature has inputs {names}: 'inputs' must be a JSON object with one "
                                   "entry per input")
  inputs = {}
  for key, value in columns.items():
    info = signature.inputs.get(key)
    inputs[key] = _to_array(key, value, info) if info is not None else np.asarray(0)
  return inputs, has_rows


def _encode_output(alias: str, array: np.ndarray):
  if array.dtype == object:
    if alias.endswith("_bytes"):
      return np.vectorize(lambda b: {"b64": base64.b64encode(b).decode("ascii")}, otypes=[object])(array).tolist()
    return np.vectorize(lambda b: b.decode("utf-8", "replace"), otypes=[object])(array).tolist()
  return array.tolist()


def predict_json(manager, match, body: bytes, info: dict | None = None) -> dict:
  """Handles :predict; returns the JSON document (dict) of the answer. `info["signature_name"]` is set to the
  signature the request names (for the metrics) as soon as the body is parsed."""
  spec = _model_spec(match)
  try:
    doc = json.loads(body or b"{}")
  except json.JSONDecodeError as e:
    raise ServingError(_INVALID, f"JSON Parse error: {e}") from None
  signature_name = doc.get("signature_name", "") if isinstance(doc, dict) else ""
  name = signature_name if isinstance(signature_name, str) and signature_name else "serving_default"
  if info is not None:
    info["signature_name"] = name
  servable = manager.resolve(spec)
  signature = servable.signature_defs.get(name)
  if signature is None:
    raise ServingError(_INVALID, f"Serving signature name: \"{name}\" not found in signature def")
  inputs, rows = _parse_predict_body(body, signature)
  request = predict_pb2.PredictRequest(model_spec=spec)
  request.model_spec.signature_name = name
  for key, value in inputs.items():
    request.inputs[key].CopyFrom(tensors.to_tensor_proto(value))
  response = handlers.predict(manager, request)
  outputs = {alias: tensors.from_tensor_proto(proto) for alias, proto in response.outputs.items()}
  if not rows:
    if len(outputs) == 1:
      return {"outputs": _encode_output(*next(iter(outputs.items())))}
    return {"outputs": {alias: _encode_output(alias, v) for alias, v in outputs.items()}}
  if len(outputs) == 1:
    return {"predictions": _encode_output(*next(iter(outputs.items())))}
  encoded = {alias: _encode_output(alias, v) for alias, v in outputs.items()}
  count = len(next(iter(encoded.values())))
  if any(not isinstance(v, list) or len(v) != count for v in encoded.values()):
    raise ServingError(_INVALID, "Tensor name: outputs have different batch sizes; use the columnar "
                                 "'inputs' format for this signature")
  return {"predictions": [{alias: v[i] for alias, v in encoded.items()} for i in range(count)]}


def _proto_json(message) -> dict:
  return json_format.MessageToDict(message, preserving_proto_field_name=True,
                                   always_print_fields_with_no_presence=True)


def get_json(manager, match) -> dict:
  """Handles the GET routes (status, metadata)."""
  spec = _model_spec(match)
  if match["resource"] == "metadata":
    request = get_model_metadata_pb2.GetModelMetadataRequest(model_spec=spec,
                                                             metadata_field=[handlers.SIGNATURE_DEF_FIELD])
    response = handlers.model_metadata(manager, request)
    signature_map = get_model_metadata_pb2.SignatureDefMap()
    response.metadata[handlers.SIGNATURE_DEF_FIELD].Unpack(signature_map)
    return {"model_spec": _proto_json(response.model_spec),
            "metadata": {handlers.SIGNATURE_DEF_FIELD: _proto_json(signature_map)}}
  request = get_model_status_pb2.GetModelStatusRequest(model_spec=spec)
  return _proto_json(handlers.model_status(manager, request))


class RestServer:
  """ThreadingHTTPServer on (host, port) in a daemon thread; `port` is the bound port; stop() shuts it down."""

  def __init__(self, manager, host: str, port: int, metrics=None, metrics_path: str = ""):
    """metrics: a serving.metrics.ServerMetrics that counts the requests (or None); metrics_path: where its
    Prometheus page is served ("" = nowhere)."""
    self._in_flight = 0
    self._idle = threading.Condition()
    handler = _make_handler(manager, self._track, metrics, metrics_path)
    try:
      self._httpd = http.server.ThreadingHTTPServer((host, port), handler)
    except OSError as e:
      raise ValueError(f"cannot listen on {host}:{port} for REST: {e.strerror}; pick a free --rest_api_port") \
          from None
    self._httpd.daemon_threads = True
    self.port = self._httpd.server_address[1]
    self._thread = threading.Thread(target=self._httpd.serve_forever, name="rest", daemon=True)
    self._thread.start()

  def _track(self, delta: int) -> None:
    with self._idle:
      self._in_flight += delta
      self._idle.notify_all()

  def stop(self, grace: float = 30.0) -> None:
    """Stops accepting connections, waits up to `grace` s for requests being answered, closes the socket."""
    self._httpd.shutdown()
    with self._idle:
      self._idle.wait_for(lambda: self._in_flight == 0, timeout=grace)
    self._httpd.server_close()


def _make_handler(manager, track, metrics=None, metrics_path=""):
  class Handler(http.server.BaseHTTPRequestHandler):
    """Dispatches TF Serving's REST routes; every failure is a JSON {"error": ...} with the mapped status."""

    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
      """Access log lines go to logging (debug), not stderr."""
      logging.debug("REST %s", fmt % args)

    def _reply(self, status: int, doc: dict | bytes, content_type: str = "application/json") -> None:
      body = doc if isinstance(doc, bytes) else json.dumps(doc).encode("utf-8")
      self.send_response(status)
      self.send_header("Content-Type", content_type)
      self.send_header("Content-Length", str(len(body)))
      self.end_headers()
      self.wfile.write(body)

    def _dispatch(self, method: str) -> None:
      track(+1)
      try:
        self._answer(method)
      finally:
        track(-1)

    def _answer(self, method: str) -> None:
      path = self.path.split("?", 1)[0]
      if metrics_path and path == metrics_path and method == "GET":  # TF Serving's PrometheusExporter route
        self._reply(200, metrics.exposition(), "text/plain; version=0.0.4; charset=utf-8")
        return
      start, error, info = time.monotonic(), None, {}
      try:
        status, doc = 200, self._route(method, path, info)
      except Exception as e:  # every error becomes a JSON answer
        error = from_exception(e)
        if error.code == grpc.StatusCode.UNKNOWN:
          logging.exception("REST request failed")
        status, doc = _HTTP_STATUS.get(error.code, 500), {"error": error.message}
      if metrics is not None:  # as TF Serving's http_server.cc: every REST request, by model and status
        match = info.get("match")
        metrics.record_request(match["name"] if match else "", (match and match["method"]) or "", "REST",
                               info.get("signature_name", ""), "OK" if error is None else error.code.name,
                               time.monotonic() - start)
      # Counted before the answer is written, so a scrape the client sends after this answer sees this request.
      self._reply(status, doc)

    def _route(self, method: str, path: str, info: dict) -> dict:
      """Reads the body, matches a route and returns the answer's JSON document (raises for every failure)."""
      length = int(self.headers.get("Content-Length") or 0)
      if length < 0:
        raise ServingError(_INVALID, f"Malformed request: Content-Length {length}")
      body = self.rfile.read(length) if length else b""
      match = _ROUTE.match(path)
      info["match"] = match
      if match is None or (method == "GET") != (match["method"] is None):
        raise ServingError(_INVALID, f"Malformed request: {method} {self.path}")
      if method == "GET":
        return get_json(manager, match)
      if match["method"] == "predict":
        return predict_json(manager, match, body, info)
      raise ServingError(grpc.StatusCode.UNIMPLEMENTED, f"{match['method']} is not implemented by this server")

    def do_GET(self):
      """GET: model status or metadata."""
      self._dispatch("GET")

    def do_POST(self):
      """POST: :predict (classify/regress answer 501)."""
      self._dispatch("POST")

  return Handler
