"""`python -m serving.server`: a TF-Serving-compatible model server (gRPC, optional REST).

Flags are tensorflow_model_server's (same names, defaults and meaning), plus `--host` (TF Serving always binds
0.0.0.0; this server binds loopback unless told otherwise). Examples:
  python -m serving.server --port=8500 --model_name=horse2zebra --model_base_path=/srv/models/horse2zebra
  python -m serving.server --model_config_file=serving/deploy/models.config --rest_api_port=8501 \
      --enable_batching --batching_parameters_file=serving/deploy/batching_parameters.txt \
      --monitoring_config_file=serving/deploy/monitoring_config.txt   # metrics on :8501/monitoring/prometheus/metrics
SIGTERM (or Ctrl-C) stops accepting requests, lets in-flight ones finish, and exits 0.
"""

from __future__ import annotations

import os
import signal
import sys
import threading

from absl import app, flags, logging

FLAGS = flags.FLAGS
flags.DEFINE_integer("port", 8500, "TCP port for the gRPC API.")
flags.DEFINE_string("host", "127.0.0.1", "Address the gRPC and REST ports bind to (0.0.0.0 = all interfaces).")
flags.DEFINE_integer("rest_api_port", 0, "Port for the HTTP/REST API; 0 = no REST API. Must differ from --port.")
flags.DEFINE_string("model_name", "default", "Name of the model (ignored if --model_config_file is set).")
flags.DEFINE_string("model_base_path", "", "Directory of integer version subdirectories (ignored if "
                    "--model_config_file is set, required otherwise).")
flags.DEFINE_string("model_config_file", "", "ModelServerConfig text proto: several models, version policies, "
                    "version labels.")
flags.DEFINE_float("model_config_file_poll_wait_seconds", 0, "Seconds between re-reads of --model_config_file; "
                   "0 = read once.")
flags.DEFINE_float("file_system_poll_wait_seconds", 1, "Seconds between scans for new model versions; 0 = once.")
flags.DEFINE_bool("enable_batching", False, "Batch concurrent requests on dim 0.")
flags.DEFINE_string("batching_parameters_file", "", "BatchingParameters text proto (used with --enable_batching).")
flags.DEFINE_string("monitoring_config_file", "", "MonitoringConfig text proto; `prometheus_config { enable: true "
                    "path: \"/monitoring/prometheus/metrics\" }` serves Prometheus metrics on the REST port.")
flags.DEFINE_bool("enable_model_warmup", True, "Replay assets.extra/tf_serving_warmup_requests at load.")
flags.DEFINE_integer("num_request_iterations_for_warmup", 1, "Times each warmup request is replayed.")
flags.DEFINE_integer("grpc_max_threads", 64, "Max gRPC server threads.")
flags.DEFINE_integer("tensorflow_intra_op_parallelism", 0, "Threads for one op (0 = auto).")
flags.DEFINE_integer("tensorflow_inter_op_parallelism", 0, "Ops run concurrently (0 = auto).")
flags.DEFINE_integer("max_image_pixels", 4096 * 4096, "Most pixels one input of a request may hold (N * H * W "
                     "of [N, H, W, C], or what encoded images' headers declare); more is INVALID_ARGUMENT. 0 = no "
                     "cap. Not a tensorflow_model_server flag.")
flags.DEFINE_float("drain_timeout_seconds", 30, "On SIGTERM, how long in-flight requests may take to finish.")


def main(argv):
  """Builds the ServerConfig from flags, starts the server, waits for SIGTERM/SIGINT, exits 0 after draining."""
  del argv
  from serving import config as config_lib  # after flag parsing: keeps --help fast
  from serving import server_lib
  try:
    models = ()
    if not FLAGS.model_config_file:
      if not FLAGS.model_base_path:
        raise ValueError("nothing to serve: pass --model_base_path (and --model_name), or --model_config_file")
      models = (config_lib.ModelConfig(name=FLAGS.model_name, base_path=os.path.abspath(FLAGS.model_base_path)),)
    batching = None
    if FLAGS.enable_batching:
      batching = (config_lib.read_batching_parameters_file(FLAGS.batching_parameters_file)
                  if FLAGS.batching_parameters_file else config_lib.BatchingConfig())
    elif FLAGS.batching_parameters_file:
      logging.warning("--batching_parameters_file is ignored without --enable_batching")
    config = config_lib.ServerConfig(
        models=models, model_config_file=FLAGS.model_config_file, port=FLAGS.port, host=FLAGS.host,
        rest_api_port=FLAGS.rest_api_port,
        model_config_file_poll_wait_seconds=FLAGS.model_config_file_poll_wait_seconds,
        file_system_poll_wait_seconds=FLAGS.file_system_poll_wait_seconds, batching=batching,
        enable_model_warmup=FLAGS.enable_model_warmup,
        num_request_iterations_for_warmup=FLAGS.num_request_iterations_for_warmup,
        grpc_max_threads=FLAGS.grpc_max_threads, drain_timeout_seconds=FLAGS.drain_timeout_seconds,
        tensorflow_intra_op_parallelism=FLAGS.tensorflow_intra_op_parallelism,
        tensorflow_inter_op_parallelism=FLAGS.tensorflow_inter_op_parallelism,
        max_image_pixels=FLAGS.max_image_pixels,
        prometheus_path=(config_lib.read_monitoring_config_file(FLAGS.monitoring_config_file)
                         if FLAGS.monitoring_config_file else ""))
    server = server_lib.ModelServer(config).start()
  except (ValueError, OSError) as e:
    print(f"serving.server: {e}", file=sys.stderr)
    sys.exit(1)
  except server_lib.ServingError as e:
    print(f"serving.server: {e.code.name}: {e.message}", file=sys.stderr)
    sys.exit(1)

  def shutdown(signum, frame):
    """Signal handler: drain and stop in a thread (a handler must not block)."""
    del frame
    logging.info("Received signal %d: draining in-flight requests", signum)
    threading.Thread(target=server.stop, name="shutdown", daemon=True).start()

  signal.signal(signal.SIGTERM, shutdown)
  signal.signal(signal.SIGINT, shutdown)
  while not server.wait(0.5):
    pass
  sys.exit(0)


if __name__ == "__main__":
  app.run(main)
