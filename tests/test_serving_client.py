"""The translation CLI and its library function: files in any Pillow format in, PNGs out, one-line errors."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from serving import client as client_lib
from serving import config as config_lib
from serving import process
from serving.server_lib import ModelServer
from tests.test_serving_models import ToyMunit, ToyTranslator, ToyUgatit, save_toy

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def server(tmp_path_factory):
  root = tmp_path_factory.mktemp("root")
  models = []
  for name, module in (("toy", ToyTranslator(1)), ("munit", ToyMunit()), ("ugatit", ToyUgatit())):
    save_toy(module, str(root / name / "1"))
    models.append(config_lib.ModelConfig(name, str(root / name)))
  server = ModelServer(config_lib.ServerConfig(models=tuple(models), port=0,
                                               file_system_poll_wait_seconds=0)).start()
  server.target = f"127.0.0.1:{server.port}"
  yield server
  server.stop()


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
  """A JPEG whose EXIF says "rotate 90" (stored 6 wide x 4 high, shown 4 wide x 6 high) and an RGBA PNG."""
  folder = tmp_path_factory.mktemp("photos")
  rng = np.random.default_rng(0)
  jpeg = Image.fromarray(rng.integers(0, 256, [4, 6, 3], dtype=np.uint8))
  exif = jpeg.getexif()
  exif[0x0112] = 6
  jpeg.save(folder / "rotated.jpg", exif=exif.tobytes())
  Image.fromarray(rng.integers(0, 256, [5, 5, 4], dtype=np.uint8), mode="RGBA").save(folder / "alpha.png")
  (folder / "broken.png").write_bytes(b"not an image")
  return folder


def test_read_image_applies_exif_and_converts_to_rgb(photos):
  rotated = client_lib.read_image(str(photos / "rotated.jpg"))
  assert rotated.shape == (6, 4, 3) and rotated.dtype == np.uint8
  assert client_lib.read_image(str(photos / "alpha.png")).shape == (5, 5, 3)
  with pytest.raises(ValueError, match="broken.png: not an image"):
    client_lib.read_image(str(photos / "broken.png"))
  with pytest.raises(ValueError, match="no such file"):
    client_lib.read_image(str(photos / "missing.png"))


def test_translate_files_writes_one_png_per_input_style_and_attention(server, photos, tmp_path):
  with client_lib.TranslationClient(server.target, "toy") as toy:
    written = client_lib.translate_files(toy, [str(photos / "alpha.png")], str(tmp_path / "toy"))
  assert [os.path.basename(p) for p in written] == ["alpha_a2b.png"]
  expected = 255 - client_lib.read_image(str(photos / "alpha.png"))
  np.testing.assert_array_equal(np.asarray(Image.open(written[0])), expected)
  with client_lib.TranslationClient(server.target, "munit") as munit:
    written = client_lib.translate_files(munit, [str(photos / "alpha.png")], str(tmp_path / "munit"), num_styles=3)
    assert [os.path.basename(p) for p in written] == [f"alpha_a2b_style{k}.png" for k in range(3)]
    single = client_lib.translate_files(munit, [str(photos / "alpha.png")], str(tmp_path / "one"), seed=3)
    again = client_lib.translate_files(munit, [str(photos / "alpha.png")], str(tmp_path / "two"), seed=3)
    assert [os.path.basename(p) for p in single] == ["alpha_a2b.png"]
    np.testing.assert_array_equal(np.asarray(Image.open(single[0])), np.asarray(Image.open(again[0])))
    referenced = client_lib.translate_files(munit, [str(photos / "alpha.png")], str(tmp_path / "ref"),
                                            style_image=str(photos / "rotated.jpg"))
    assert [os.path.basename(p) for p in referenced] == ["alpha_a2b.png"]
  with client_lib.TranslationClient(server.target, "ugatit") as ugatit:
    written = client_lib.translate_files(ugatit, [str(photos / "rotated.jpg")], str(tmp_path / "ugatit"))
  assert [os.path.basename(p) for p in written] == ["rotated_a2b.png", "rotated_a2b_attention.png"]
  attention = np.asarray(Image.open(written[1]))
  assert attention.shape == (6, 4) and attention.dtype == np.uint8


def _cli(*args):
  env = {**os.environ, "PYTHONPATH": ROOT, "TF_CPP_MIN_LOG_LEVEL": "3"}
  return subprocess.Popen([sys.executable, "-m", "serving.client", *args], stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT)


def test_cli_errors_name_the_problem(server, photos, tmp_path):
  with pytest.raises(client_lib.TranslationError, match="model 'nope' is not served by"):
    client_lib.run_cli(server.target, "nope", [str(photos / "alpha.png")], str(tmp_path))
  with pytest.raises(ValueError, match="broken.png: not an image"):
    client_lib.run_cli(server.target, "toy", [str(photos / "broken.png")], str(tmp_path))
  with pytest.raises(client_lib.TranslationError, match="not multimodal"):
    client_lib.run_cli(server.target, "toy", [str(photos / "alpha.png")], str(tmp_path), num_styles=2)
  with pytest.raises(ValueError, match="at least one IMAGE"):
    client_lib.run_cli(server.target, "toy", [], str(tmp_path))
  assert not os.listdir(tmp_path)


@pytest.mark.slow
def test_cli_writes_pngs_and_exits_1_with_one_line_for_an_unreachable_server(server, photos, tmp_path):
  dead = f"127.0.0.1:{process.free_port()}"
  runs = {  # started together: each pays the interpreter and TF import once, in parallel
      "ok": _cli(f"--server={server.target}", "--model_name=munit", "--num_styles=2",
                 f"--output_dir={tmp_path / 'out'}", str(photos / "rotated.jpg"), str(photos / "alpha.png")),
      "unreachable": _cli(f"--server={dead}", "--model_name=toy", "--retries=1", f"--output_dir={tmp_path}",
                          str(photos / "alpha.png")),
  }
  results = {name: (p.wait(180), *p.communicate()) for name, p in runs.items()}
  code, out, err = results["ok"]
  assert code == 0, err
  assert sorted(os.listdir(tmp_path / "out")) == ["alpha_a2b_style0.png", "alpha_a2b_style1.png",
                                                  "rotated_a2b_style0.png", "rotated_a2b_style1.png"]
  assert len(out.splitlines()) == 4
  code, _, err = results["unreachable"]
  lines = [line for line in err.splitlines() if line.startswith("serving.client: error:")]
  assert code == 1 and len(lines) == 1 and "cannot reach the model server at " + dead in lines[0], err


@pytest.mark.slow  # the subprocess imports TensorFlow once, after the check
def test_client_library_builds_requests_without_importing_tensorflow():
  """The client needs TF Serving's protos only: importing it and building a request must not import TensorFlow
  (seconds and ~0.8 GB); a later `import tensorflow` in the same process reuses the same message classes."""
  script = (
      "import sys\n"
      "import numpy as np\n"
      "from serving import client, tensors\n"
      "request = client.predict_pb2.PredictRequest()\n"
      "request.model_spec.name = 'm'\n"
      "request.inputs['images'].CopyFrom(tensors.to_tensor_proto(np.zeros([1, 2, 2, 3], np.uint8)))\n"
      "c = client.TranslationClient('127.0.0.1:1', 'm')\n"
      "c.close()\n"
      "print('tensorflow' in sys.modules, len(request.SerializeToString()))\n"
      "import tensorflow as tf\n"
      "proto = tf.make_tensor_proto(np.arange(3, dtype=np.int64))\n"
      "request.inputs['seed'].CopyFrom(proto)\n"
      "print(type(proto) is type(request.inputs['seed']), tf.make_ndarray(request.inputs['images']).shape)\n")
  env = {**os.environ, "PYTHONPATH": ROOT, "TF_CPP_MIN_LOG_LEVEL": "3"}
  proc = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True,
                        timeout=300, check=False)
  assert proc.returncode == 0, proc.stderr[-2000:]
  first, second = proc.stdout.splitlines()[-2:]
  assert first.split()[0] == "False"  # TensorFlow was not imported by the client
  assert second == "True (1, 2, 2, 3)"  # TF imported afterwards shares the client's TensorProto class


def test_metadata_uses_tensorflow_dtype_names_and_minus_one_for_unknown_dims(server):
  """The client's metadata is TF Serving's view (serving.signatures.signature_specs, renamed in the client):
  DataTypeString names ("float", not the table's "float32"), -1 for unknown dims, internal signatures kept."""
  with client_lib.TranslationClient(server.target, "ugatit") as client:
    metadata = client.metadata()
  a2b = metadata["signatures"]["a2b"]
  assert metadata["version"] == 1
  assert a2b == {"inputs": {"images": {"dtype": "uint8", "shape": [-1, -1, -1, 3]}},
                 "outputs": {"images": {"dtype": "uint8", "shape": [-1, -1, -1, 3]},
                             "attention": {"dtype": "float", "shape": [-1, -1, -1]}}}
  assert "__saved_model_init_op" in metadata["signatures"]
