"""An official checkpoint, imported, goes through export, infra_validate and push and answers over gRPC with the
image the official test script produced (within 1/255 per pixel after uint8 rounding).

The fixtures (tests/official/<fixture>_weights.npz, <fixture>.yaml, <fixture>_io.npz) were written by
`benchmarks/official/make_fixtures.py` with the official code: the weights exactly as the official trainer saved
them after a few official iterations, `serve_input` (uint8 [1, H, W, 3]), `serve_direction`, MUNIT's `serve_style`
and `serve_output`, the official test script's translation. MUNIT's test.py saves with torchvision's
save_image(normalize=True), which stretches each image to its own min..max for display; the served image is the
translation itself, so it is compared with `serve_output_plain`, the same pixels without that stretch (the
stretch itself is checked in tests/test_official_munit.py). One server process serves every imported model.
"""

from __future__ import annotations

import os

import numpy as np
import pytest

from components import blessing, export_lib, import_official_lib, infra_validate_lib, push_lib
from serving import client as client_lib
from serving import process

FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "official")
# One fixture per family through the whole chain (the others' test-script outputs are compared in-process in
# tests/test_official_<family>.py): every served model costs an import, an export and an infra-validation server.
SERVED = ("munit", "unit", "ugatit_light")


def _served_fixtures() -> list[str]:
  """The SERVED fixtures whose _io.npz holds a serve_output."""
  names = []
  for name in SERVED:
    path = os.path.join(FIXTURES, f"{name}_io.npz")
    if os.path.exists(path):
      with np.load(path) as data:
        if "serve_output" in data.files:
          names.append(name)
  return names


def _import(name: str, model_dir: str):
  """import_tensors on the fixture's official weights (+ YAML), as the CLI does after torch.load."""
  yaml_path = os.path.join(FIXTURES, f"{name}.yaml")
  official_config = import_official_lib.read_official_config(yaml_path if os.path.exists(yaml_path) else None)
  files = import_official_lib.numpy_files(os.path.join(FIXTURES, f"{name}_weights.npz"))
  return import_official_lib.import_tensors(name.split("_")[0], files, model_dir,
                                            official_config=official_config, step=2)


@pytest.mark.slow
def test_imported_official_checkpoints_are_served_with_the_official_test_scripts_answers(tmp_path):
  names = _served_fixtures()
  assert names, f"no official serving fixtures under {FIXTURES}: run benchmarks/official/make_fixtures.py"
  serving_root = tmp_path / "serving"
  expected = {}
  for name in names:
    imported = _import(name, str(tmp_path / name / "model_dir"))
    export = export_lib.run(export_lib.ExportConfig(imported.model_dir, str(tmp_path / name / "export"),
                                                    model_name=name, verify=False))
    infra = infra_validate_lib.run(infra_validate_lib.InfraValidateConfig(export.path, str(tmp_path / name / "infra"),
                                                                          model_name=name))
    assert infra.blessed, infra.reason
    evaluation = tmp_path / name / "evaluate"
    blessing.write_blessing(str(evaluation), True, "imported official checkpoint (equivalence-tested)")
    pushed = push_lib.run(push_lib.PushConfig(export.path, str(serving_root), name, str(evaluation),
                                              str(tmp_path / name / "infra")))
    assert pushed.pushed and pushed.version == 1, pushed.reason
    with np.load(os.path.join(FIXTURES, f"{name}_io.npz")) as data:
      expected[name] = {k: data[k] for k in data.files if k.startswith("serve_")}
  config = tmp_path / "models.config"
  config.write_text("model_config_list {\n" + "".join(
      f'  config {{ name: "{n}" base_path: "{serving_root / n}" model_platform: "tensorflow" }}\n' for n in names)
      + "}\n")
  with process.ServerProcess([f"--model_config_file={config}"], process.free_port()) as server:
    for name in names:
      case = expected[name]
      with client_lib.TranslationClient(server.target, name) as client:
        client.wait_until_available(60)
        style = case.get("serve_style")
        out = client.translate(case["serve_input"], str(case["serve_direction"].reshape(-1)[0]),
                               style=None if style is None else style.astype(np.float32))
      got = out["images"].astype(np.int16)
      want = case.get("serve_output_plain", case["serve_output"]).astype(np.int16)
      assert got.shape == want.shape, name
      assert np.abs(got - want).max() <= 1, f"{name}: max |ours - official test script| = {np.abs(got - want).max()}"
