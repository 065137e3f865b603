"""The import stage's own behaviour, without torch (the core install has none): what it says when torch is
missing, file-name iteration parsing, an existing model_dir, and models.official's exactly-once contract.

The per-family mappings are checked against the official code's numbers in tests/test_official_<family>.py.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from components import import_official_lib
from components.errors import StageError
from models import official

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


TORCH_INSTALLED = importlib.util.find_spec("torch") is not None


@pytest.mark.skipif(TORCH_INSTALLED, reason="torch is installed here: the missing-torch message cannot be observed")
def test_cli_without_torch_says_what_to_install(tmp_path):
  ckpt = tmp_path / "gen_00001000.pt"
  ckpt.write_bytes(b"not read")
  proc = subprocess.run([sys.executable, "-m", "components.import_official", "--model=munit",
                         f"--checkpoint={ckpt}", f"--model_dir={tmp_path / 'm'}"],
                        cwd=ROOT, capture_output=True, text=True, timeout=120)
  assert proc.returncode == 1
  assert proc.stderr.strip().splitlines()[-1] == f"import_official: error: {import_official_lib.TORCH_MISSING}"
  assert not (tmp_path / "m").exists()


def test_official_step_reads_the_iteration_from_official_file_names():
  assert import_official_lib.official_step(["out/gen_00100000.pt", "out/dis_00100000.pt"]) == 100000
  assert import_official_lib.official_step(["snap/cat2tiger_gen_00500000.pkl"]) == 500000
  assert import_official_lib.official_step(["selfie2anime_params_0100000.pt"]) == 100000
  assert import_official_lib.official_step(["weights.pt"]) == 0


def test_import_refuses_a_model_dir_that_holds_a_model(tmp_path):
  (tmp_path / "config.json").write_text("{}")
  with pytest.raises(StageError, match=r"already holds a model \(config.json\); import into a new --model_dir"):
    import_official_lib.import_tensors("munit", {}, str(tmp_path))


def test_unknown_family_names_the_choices(tmp_path):
  with pytest.raises(StageError, match=r"^Unknown --model='cyclegan'; choose one of unit, munit, ugatit\.$"):
    import_official_lib.import_tensors("cyclegan", {}, str(tmp_path / "m"))


def test_numpy_files_rebuilds_the_nested_checkpoint_structure(tmp_path):
  path = tmp_path / "w.npz"
  np.savez(path, **{"gen_1.pt::a::x.weight": np.ones([2]), "gen_1.pt::b::x.weight": np.zeros([2]),
                    "u_gen_1.pkl::y.bias": np.full([1], 3.0)})
  files = import_official_lib.numpy_files(str(path))
  assert sorted(files) == ["gen_1.pt", "u_gen_1.pkl"]
  np.testing.assert_array_equal(files["gen_1.pt"]["a"]["x.weight"], [1, 1])
  np.testing.assert_array_equal(files["u_gen_1.pkl"]["y.bias"], [3.0])


def test_layout_converters_move_torch_axes_to_keras_axes():
  w = np.arange(2 * 3 * 4 * 5).reshape(2, 3, 4, 5)  # torch conv [out=2, in=3, kh=4, kw=5]
  k = official.conv_kernel(w)
  assert k.shape == (4, 5, 3, 2) and k[1, 2, 0, 1] == w[1, 0, 1, 2]
  t = official.conv_transpose_kernel(w)  # torch transposed conv [in=2, out=3, kh, kw] -> [kh, kw, out, in]
  assert t.shape == (4, 5, 3, 2) and t[3, 4, 2, 0] == w[0, 2, 3, 4]
  d = official.dense_kernel(np.arange(6).reshape(2, 3))  # torch linear [out=2, in=3]
  assert d.shape == (3, 2) and d[2, 0] == 2
  assert official.dense_from_conv1x1(np.arange(6).reshape(2, 3, 1, 1))[2, 1] == 5
  with pytest.raises(official.OfficialImportError, match=r"expected a 1x1 conv weight \[out, in, 1, 1\], got "
                                                         r"shape \(2, 3, 3, 3\)"):
    official.dense_from_conv1x1(np.zeros([2, 3, 3, 3]))


def _two_variables():
  return tf.Variable(np.zeros([3, 2], np.float32), name="kernel"), tf.Variable(np.zeros([2], np.float32), name="bias")


def test_official_weights_fill_every_variable_from_every_tensor_once():
  kernel, bias = _two_variables()
  weights = official.OfficialWeights({"fc.weight": np.arange(6, dtype=np.float32).reshape(2, 3),
                                      "fc.bias": np.array([7.0, 8.0], np.float32)}, [kernel, bias], "ckpt.pt")
  weights.set(kernel, "fc.weight", official.dense_kernel)
  weights.set(bias, "fc.bias")
  weights.finish()
  np.testing.assert_array_equal(kernel.numpy(), [[0, 3], [1, 4], [2, 5]])
  np.testing.assert_array_equal(bias.numpy(), [7, 8])


def test_official_weights_name_the_first_mismatch():
  kernel, bias = _two_variables()
  tensors = {"fc.weight": np.zeros([2, 4], np.float32), "fc.bias": np.zeros([2], np.float32),
             "extra.weight": np.zeros([5], np.float32)}
  weights = official.OfficialWeights(tensors, [kernel, bias], "ckpt.pt")
  with pytest.raises(official.OfficialImportError,
                     match=r"^official tensor 'fc.weight' of shape \(2, 4\) \(converted \(4, 2\)\) does not fit "
                           r"variable kernel:0 of shape \(3, 2\)"):
    weights.set(kernel, "fc.weight", official.dense_kernel)
  weights = official.OfficialWeights(tensors, [kernel, bias], "ckpt.pt")
  weights.set(bias, "fc.bias")
  with pytest.raises(official.OfficialImportError, match=r"^variable bias:0 is filled twice"):
    weights.set(bias, "extra.weight")
  weights = official.OfficialWeights(tensors, [kernel, bias], "ckpt.pt")
  weights.set(bias, "fc.bias")
  with pytest.raises(official.OfficialImportError, match=r"^official tensor 'fc.bias' of ckpt.pt is used twice"):
    weights.take("fc.bias")
  with pytest.raises(official.OfficialImportError,
                     match=r"^official tensor 'extra.weight' of shape \(5,\) in ckpt.pt was not used \(2 unused in "
                           r"all\)"):
    weights.finish()
  weights = official.OfficialWeights({"fc.bias": np.zeros([2], np.float32)}, [kernel, bias], "ckpt.pt")
  weights.set(bias, "fc.bias")
  with pytest.raises(official.OfficialImportError, match=r"^variable kernel:0 of shape \(3, 2\) was not filled "
                                                         r"from ckpt.pt \(1 unfilled in all\)"):
    weights.finish()
  with pytest.raises(official.OfficialImportError, match=r"^ckpt.pt has no tensor 'missing.weight'"):
    weights.peek("missing.weight")


def test_import_model_node_hands_on_a_complete_model_dir_and_rejects_others(tmp_path):
  from components import import_model_lib  # pylint: disable=import-outside-toplevel
  from tests.stage_models import make_model_dir  # pylint: disable=import-outside-toplevel
  model_dir = make_model_dir(str(tmp_path / "m"), "munit", step=7)
  result = import_model_lib.run(import_model_lib.ImportModelConfig(model_dir, str(tmp_path / "exec")))
  assert (result.family, result.step, result.model_dir) == ("munit", 7, os.path.abspath(model_dir))
  assert (tmp_path / "exec" / import_model_lib.RECORD_FILE).exists()
  with pytest.raises(StageError, match=r"config.json not found: .* is not a trained model directory"):
    import_model_lib.run(import_model_lib.ImportModelConfig(str(tmp_path / "nothing"), str(tmp_path / "e2")))
