"""`python -m serving.translate` / serving.translate_lib: a SavedModel in-process over a folder or a video.

Models: the tiny MUNIT and U-GAT-IT light of tests/stage_models.py exported by components.export (verification
off: it is test_export_lib's job and would double this file's time), and the pointwise ToyTranslator of
tests/test_serving_models.py (a2b = 255 - x, b2a = x), for which tiling must be exact. Photos: real photos of
different sizes from tests/fixtures/photos (scikit-image's samples, see the README there).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from serving import client as client_lib
from serving import config as config_lib
from serving import translate_lib as tl
from serving.server_lib import ModelServer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PHOTOS = os.path.join(ROOT, "tests", "fixtures", "photos")
SIZES = {"astronaut": (96, 96), "coffee": (80, 120), "chelsea": (67, 101), "camera": (64, 64), "rocket": (171, 256)}
TILE = 128  # rocket (171 x 256) is over it, every other photo is under it


@pytest.fixture(scope="module")
def models(tmp_path_factory):
  """name -> model base path with version 1 (a server reads it; translate resolves it to the version)."""
  from components import export_lib  # pylint: disable=import-outside-toplevel
  from tests.stage_models import make_model_dir  # pylint: disable=import-outside-toplevel
  from tests.test_serving_models import ToyTranslator, save_toy  # pylint: disable=import-outside-toplevel
  root = tmp_path_factory.mktemp("models")
  paths = {}
  for family in ("munit", "ugatit"):
    model_dir = make_model_dir(str(root / family / "model_dir"), family)
    export_lib.run(export_lib.ExportConfig(model_dir, str(root / family / "base" / "1"), verify=False))
    paths[family] = str(root / family / "base")
  save_toy(ToyTranslator(1), str(root / "toy" / "base" / "1"))
  paths["toy"] = str(root / "toy" / "base")
  return paths


@pytest.fixture(scope="module")
def loaded(models):
  """name -> SignatureModel, loaded once (run() takes a loaded model; loading costs seconds each time)."""
  return {name: tl.SignatureModel(base) for name, base in models.items()}


@pytest.fixture(scope="module")
def server(models):
  """Our own model server, in-process on a free loopback port, serving the same SavedModels."""
  served = tuple(config_lib.ModelConfig(name, base) for name, base in models.items() if name != "toy")
  model_server = ModelServer(config_lib.ServerConfig(models=served, port=0, file_system_poll_wait_seconds=0,
                                                     enable_model_warmup=False)).start()
  yield f"127.0.0.1:{model_server.port}"
  model_server.stop()


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
  """The fixture photos plus their README and a broken file: two inputs that are not images."""
  folder = tmp_path_factory.mktemp("photos")
  for name in os.listdir(PHOTOS):
    shutil.copy(os.path.join(PHOTOS, name), folder / name)
  (folder / "broken.png").write_bytes(b"not an image")
  return folder


def _png(path) -> np.ndarray:
  return np.asarray(Image.open(path))


def _run(model: tl.SignatureModel, input_path, output_dir, **kwargs):
  return tl.run(tl.TranslateConfig(model.path, str(input_path), str(output_dir), progress=False, **kwargs), model)


def test_fixture_photos_are_real_photos_of_different_sizes_one_over_the_tile_cap():
  for name, size in SIZES.items():
    assert client_lib.read_image(os.path.join(PHOTOS, f"{name}.jpg")).shape[:2] == size
  assert sum(os.path.getsize(os.path.join(PHOTOS, n)) for n in os.listdir(PHOTOS)) < 600_000
  assert [n for n, (h, w) in SIZES.items() if max(h, w) > TILE] == ["rocket"]


def test_folder_of_real_photos_equals_the_servers_answers_and_reports_unreadable_files(loaded, server, photos,
                                                                                        tmp_path):
  result = _run(loaded["munit"], photos, tmp_path / "out", tile_size=TILE, batch_size=1)
  names = sorted(os.path.basename(p) for p in result.written)
  assert names == sorted(f"{n}_a2b.png" for n in SIZES)
  assert (result.translated, result.tiled) == (5, 1)
  # Nothing lost: both non-images are skipped, named with the reason, and listed in skipped.jsonl.
  reasons = {
      str(photos / "README.md"): f"cannot read {photos / 'README.md'}: not an image Pillow can decode (cannot "
                                 f"identify image file '{photos / 'README.md'}')",
      str(photos / "broken.png"): f"cannot read {photos / 'broken.png'}: not an image Pillow can decode (cannot "
                                  f"identify image file '{photos / 'broken.png'}')",
  }
  assert dict(result.skipped) == reasons
  with open(result.skipped_path) as f:
    assert {row["path"]: row["reason"] for row in map(json.loads, f)} == reasons
  with client_lib.TranslationClient(server, "munit") as client:
    for name, (height, width) in SIZES.items():
      out = _png(tmp_path / "out" / f"{name}_a2b.png")
      assert out.shape == (height, width, 3) and out.dtype == np.uint8
      if name == "rocket":
        continue  # tiled: not what one whole-image request answers (see the tiling tests)
      served = client.translate(client_lib.read_image(str(photos / f"{name}.jpg")), "a2b", seed=0)["images"][0]
      np.testing.assert_array_equal(out, served, err_msg=name)
  # Batched (3 same-size calls share nothing across sizes): the same pixels; the batch sizes are what ran.
  same = tmp_path / "same"
  same.mkdir()
  for k in range(3):
    shutil.copy(photos / "astronaut.jpg", same / f"copy{k}.jpg")
  batched = _run(loaded["munit"], same, tmp_path / "batched", batch_size=3)
  assert batched.batch_sizes == (3,)
  for k in range(3):
    np.testing.assert_array_equal(_png(tmp_path / "batched" / f"copy{k}_a2b.png"),
                                  _png(tmp_path / "out" / "astronaut_a2b.png"))


def test_munit_k_styles_give_k_outputs_and_a_reference_image_gives_the_servers_reference_answer(loaded, server,
                                                                                                photos, tmp_path):
  one = tmp_path / "one"
  one.mkdir()
  shutil.copy(photos / "chelsea.jpg", one / "chelsea.jpg")
  result = _run(loaded["munit"], one, tmp_path / "styles", num_styles=3, seed=5)
  assert sorted(os.path.basename(p) for p in result.written) == [f"chelsea_a2b_style{k}.png" for k in range(3)]
  outs = [_png(tmp_path / "styles" / f"chelsea_a2b_style{k}.png") for k in range(3)]
  image = client_lib.read_image(str(photos / "chelsea.jpg"))
  reference = client_lib.read_image(str(photos / "astronaut.jpg"))
  with client_lib.TranslationClient(server, "munit") as client:
    for k in range(3):  # style k is seed + k
      np.testing.assert_array_equal(outs[k], client.translate(image, "a2b", seed=5 + k)["images"][0])
    served_ref = client.translate(image, "a2b", reference=reference)["images"][0]
  assert not np.array_equal(outs[0], outs[1])
  _run(loaded["munit"], one, tmp_path / "ref", style_image=str(photos / "astronaut.jpg"))
  np.testing.assert_array_equal(_png(tmp_path / "ref" / "chelsea_a2b.png"), served_ref)


def test_ugatit_writes_attention_maps_beside_equal_to_the_servers(loaded, server, photos, tmp_path):
  result = _run(loaded["ugatit"], photos, tmp_path / "out", tile_size=TILE, direction="b2a")
  names = sorted(os.path.basename(p) for p in result.written)
  assert names == sorted([f"{n}_b2a.png" for n in SIZES] + [f"{n}_b2a_attention.png" for n in SIZES])
  with client_lib.TranslationClient(server, "ugatit") as client:
    served = client.translate(client_lib.read_image(str(photos / "coffee.jpg")), "b2a")
  np.testing.assert_array_equal(_png(tmp_path / "out" / "coffee_b2a.png"), served["images"][0])
  attention = _png(tmp_path / "out" / "coffee_b2a_attention.png")
  expected = np.clip(served["attention"][0] * 255.0 + 0.5, 0, 255).astype(np.uint8)  # write_png's quantization
  np.testing.assert_array_equal(attention, expected)
  assert _png(tmp_path / "out" / "rocket_b2a_attention.png").shape == SIZES["rocket"]  # tiled attention too


def test_tile_starts_and_windows_by_hand():
  assert tl.tile_starts(100, 128, 32) == [0]
  assert tl.tile_starts(300, 128, 32) == [0, 86, 172]  # ceil((300 - 32) / 96) = 3 tiles, (300 - 128) / 2 apart
  assert tl.tile_starts(256, 128, 0) == [0, 128]
  w0, w1, w2 = tl.axis_windows([0, 86, 172], 128)
  shared = 128 - 86  # 42 pixels shared by neighbours
  np.testing.assert_array_equal(w0[:128 - shared], 1.0)
  np.testing.assert_allclose(w0[-shared:], np.cos((np.arange(shared) + 0.5) / shared * np.pi / 2) ** 2)
  np.testing.assert_allclose(w1[:shared], np.sin((np.arange(shared) + 0.5) / shared * np.pi / 2) ** 2)
  np.testing.assert_allclose(w0[-shared:] + w1[:shared], 1.0)  # a partition of unity across each seam
  np.testing.assert_array_equal(w2[shared:], 1.0)
  for height, width, tile, overlap in [(300, 200, 128, 32), (129, 129, 64, 8), (40, 1000, 16, 8)]:
    total = np.zeros([height, width])
    for y, x, h, w, weights in tl.tile_windows(height, width, tile, overlap):
      assert weights.shape == (h, w) == (min(tile, height), min(tile, width)) and weights.min() > 0
      total[y:y + h, x:x + w] += weights
    assert total.min() > 0  # every pixel is covered


@pytest.mark.parametrize("overlap", [0, 4, 8])
def test_tiling_a_pointwise_model_is_exact_for_any_size_and_tiles_are_batched(loaded, tmp_path, overlap):
  rng = np.random.default_rng(overlap)
  folder = tmp_path / "in"
  folder.mkdir()
  images = {"wide": rng.integers(0, 256, [17, 53, 3], np.uint8), "square": rng.integers(0, 256, [40, 40, 3], np.uint8),
            "line": rng.integers(0, 256, [1, 70, 3], np.uint8), "small": rng.integers(0, 256, [9, 5, 3], np.uint8)}
  for name, image in images.items():
    Image.fromarray(image).save(folder / f"{name}.png")
  result = _run(loaded["toy"], folder, tmp_path / "out", tile_size=16, tile_overlap=overlap, batch_size=4)
  assert (result.translated, result.tiled, result.skipped) == (4, 3, ())
  for name, image in images.items():  # the weights are normalised, so tiles of 255 - x blend to 255 - x
    np.testing.assert_array_equal(_png(tmp_path / "out" / f"{name}_a2b.png"), 255 - image, err_msg=name)
  assert max(result.batch_sizes) == 4 and sum(result.batch_sizes) == (
      sum(len(tl.tile_windows(*im.shape[:2], 16, overlap)) for im in images.values()))


def test_tiled_real_photo_keeps_its_size_and_blended_seams_do_not_jump(loaded, photos, tmp_path):
  """U-GAT-IT light, random weights, rocket (171 x 256): whole vs tiles of 128 (overlap 32) vs hard tiles.

  Instance normalisation sees each tile's own statistics, so a tile's colours differ from the whole image's
  (untrained weights exaggerate it: measured mean |difference| 17.9 grey levels); the blend must hide where
  tiles meet: no column-to-column step larger than the whole image's own largest step (+25%), while hard
  tiles (overlap 0) do jump there.
  """
  one = tmp_path / "one"
  one.mkdir()
  shutil.copy(photos / "rocket.jpg", one / "rocket.jpg")
  outs = {}
  for name, tile, overlap in [("whole", 512, 64), ("blended", 128, 32), ("hard", 128, 0)]:
    result = _run(loaded["ugatit"], one, tmp_path / name, tile_size=tile, tile_overlap=overlap)
    assert result.tiled == (name != "whole")
    outs[name] = _png(tmp_path / name / "rocket_a2b.png").astype(np.float64)
    assert outs[name].shape == SIZES["rocket"] + (3,)

  def steps(image):  # mean |difference| between adjacent columns, per column boundary
    return np.abs(np.diff(image, axis=1)).mean(axis=(0, 2))

  seam = tl.tile_starts(256, 128, 0)[1] - 1  # the boundary between the hard tiles (127 | 128)
  assert steps(outs["hard"])[seam] > 1.25 * steps(outs["whole"]).max()
  assert steps(outs["blended"]).max() <= 1.25 * steps(outs["whole"]).max()
  assert np.abs(outs["blended"] - outs["whole"]).mean() < 25.0


def test_bad_flags_and_inputs_have_exact_messages(models, loaded, photos, tmp_path):
  cases = [
      (dict(direction="x2y"), "--direction must be one of a2b, b2a, got 'x2y'"),
      (dict(num_styles=0), "--num_styles must be >= 1, got 0"),
      (dict(num_styles=2, style_image="r.png"),
       "--style_image and --num_styles > 1 exclude each other: a reference image gives one style"),
      (dict(batch_size=0), "--batch_size must be >= 1, got 0"),
      (dict(tile_size=8), "--tile_size must be >= 16 pixels, got 8"),
      (dict(tile_size=64, tile_overlap=33), "--tile_overlap must be between 0 and --tile_size / 2 = 32, got 33"),
      (dict(video_output="gif"), "--video_output must be one of video, frames, got 'gif'"),
  ]
  for kwargs, message in cases:
    with pytest.raises(tl.TranslateError) as error:
      tl.TranslateConfig("m", "in", "out", **kwargs)
    assert str(error.value) == message
  ugatit = models["ugatit"]
  failures = [
      (dict(saved_model=ugatit, num_styles=2),
       "--num_styles=2 needs a multimodal model (MUNIT, whose a2b signature takes a seed); this model's takes only "
       "images"),
      (dict(saved_model=ugatit, style_image=str(photos / "astronaut.jpg")),
       f"--style_image needs a model with the 'a2b_reference' signature; {ugatit}/1 has a2b, a2b_encoded, b2a, "
       "b2a_encoded, serving_default"),
      (dict(saved_model=ugatit, style_image=str(photos / "broken.png")),
       f"--style_image: cannot read {photos / 'broken.png'}: not an image Pillow can decode (cannot identify "
       f"image file '{photos / 'broken.png'}')"),
      (dict(saved_model=str(tmp_path / "nope")),
       f"--saved_model {tmp_path / 'nope'} does not exist; pass an exported SavedModel directory"),
      (dict(saved_model=str(photos)),
       f"--saved_model {photos} holds no saved_model.pb and no integer version folder with one; pass an exported "
       "SavedModel directory (components.export's output) or a model base path"),
      (dict(saved_model=ugatit, input_path=str(tmp_path / "missing")),
       f"--input {tmp_path / 'missing'} does not exist; pass a folder of images, an image or a video file"),
      (dict(saved_model=ugatit, output_dir=str(photos / "out")),
       f"--output_dir {photos / 'out'} is inside --input {photos}; choose a folder outside it (its outputs would "
       "be read as inputs by the next run)"),
  ]
  for kwargs, message in failures:
    config = dict(saved_model=ugatit, input_path=str(photos), output_dir=str(tmp_path / "out"), progress=False)
    config.update(kwargs)
    with pytest.raises(tl.TranslateError) as error:
      tl.run(tl.TranslateConfig(**config), loaded["ugatit"] if config["saved_model"] == ugatit else None)
    assert str(error.value) == message
  assert not os.path.exists(tmp_path / "out")


def test_cli_prints_a_summary_and_exits_2_when_files_were_skipped_1_on_a_bad_flag(models, photos, tmp_path):
  env = {**os.environ, "PYTHONPATH": ROOT, "TF_CPP_MIN_LOG_LEVEL": "3"}
  def cli(*args):
    return subprocess.run([sys.executable, "-m", "serving.translate", *args], capture_output=True, text=True,
                          env=env, cwd=ROOT, timeout=180, check=False)
  bad = cli(f"--saved_model={models['toy']}", f"--input={photos}", f"--output_dir={tmp_path}", "--batch_size=0")
  assert (bad.returncode, bad.stderr.strip()) == (1, "serving.translate: error: --batch_size must be >= 1, got 0")
  ok = cli(f"--saved_model={models['toy']}", f"--input={photos}", f"--output_dir={tmp_path / 'out'}",
           "--direction=b2a", "--tile_size=64")
  assert ok.returncode == 2, ok.stderr
  assert ok.stdout.startswith("translated 5 inputs (4 in tiles) in ")
  assert ok.stdout.rstrip().endswith(f"wrote 5 files to {tmp_path / 'out'}; skipped 2 (see "
                                     f"{tmp_path / 'out' / 'skipped.jsonl'})")
  assert f"serving.translate: skipped: cannot read {photos / 'broken.png'}: not an image" in ok.stderr
  assert "img/s]" in ok.stderr  # tqdm's bar (rate and ETA) on stderr
  for name in SIZES:  # b2a of the toy is the identity
    np.testing.assert_array_equal(_png(tmp_path / "out" / f"{name}_b2a.png"),
                                  client_lib.read_image(str(photos / f"{name}.jpg")))


def test_a_video_without_the_video_extra_says_what_to_install(loaded, tmp_path, monkeypatch):
  video = tmp_path / "clip.mp4"
  video.write_bytes(b"")
  monkeypatch.setitem(sys.modules, "imageio_ffmpeg", None)  # as if not installed: import raises ImportError
  with pytest.raises(tl.TranslateError) as error:
    _run(loaded["toy"], video, tmp_path / "out")
  assert str(error.value) == ("reading and writing video needs the optional extra `video` (imageio-ffmpeg, which "
                              "ships an ffmpeg binary): pip install 'i2i-translate[video]' (or: pip install "
                              "imageio-ffmpeg)")


def test_video_frames_are_translated_into_a_video_and_into_frames(loaded, tmp_path):
  ffmpeg = pytest.importorskip("imageio_ffmpeg", reason="the optional extra `video` (imageio-ffmpeg) is not "
                               "installed")
  video = str(tmp_path / "clip.mp4")
  yy, xx = np.mgrid[0:64, 0:64]
  writer = ffmpeg.write_frames(video, (64, 64), fps=10, codec="libx264", macro_block_size=1,
                               ffmpeg_log_level="error")
  writer.send(None)
  for t in range(5):  # a moving gradient
    writer.send(np.stack([(xx * 4 + 20 * t) % 256, yy * 4, np.full_like(xx, 128)], -1).astype(np.uint8).tobytes())
  writer.close()
  result = _run(loaded["ugatit"], video, tmp_path / "video", batch_size=2)
  assert sorted(os.path.basename(p) for p in result.written) == ["clip_a2b.mp4", "clip_a2b_attention.mp4"]
  assert (result.translated, result.batch_sizes) == (5, (2, 2, 1))
  for path in result.written:
    reader = ffmpeg.read_frames(path)
    meta = next(reader)
    assert meta["size"] == (64, 64) and abs(meta["fps"] - 10) < 1e-6
    assert len(list(reader)) == 5
  # An odd size is kept (yuv444p; yuv420p would need even sides).
  odd = str(tmp_path / "odd.mp4")
  writer = ffmpeg.write_frames(odd, (33, 31), fps=5, codec="libx264", pix_fmt_out="yuv444p", macro_block_size=1,
                               ffmpeg_log_level="error")
  writer.send(None)
  for t in range(3):
    writer.send(np.full([31, 33, 3], 60 * t, np.uint8).tobytes())
  writer.close()
  odd_result = _run(loaded["toy"], odd, tmp_path / "odd")
  reader = ffmpeg.read_frames(odd_result.written[0])
  assert next(reader)["size"] == (33, 31) and len(list(reader)) == 3
  # Frames mode: each PNG frame equals the translation of that decoded input frame as an image.
  frames = _run(loaded["ugatit"], video, tmp_path / "frames", video_output="frames")
  assert len(frames.written) == 10
  reader = ffmpeg.read_frames(video)
  next(reader)
  decoded = tmp_path / "decoded"
  decoded.mkdir()
  for index, data in enumerate(reader):
    Image.fromarray(np.frombuffer(data, np.uint8).reshape(64, 64, 3)).save(decoded / f"frame{index:06d}.png")
  _run(loaded["ugatit"], decoded, tmp_path / "as_images")
  for index in range(5):
    for kind in ("", "_attention"):
      np.testing.assert_array_equal(_png(tmp_path / "frames" / "clip_frames" / f"frame{index:06d}_a2b{kind}.png"),
                                    _png(tmp_path / "as_images" / f"frame{index:06d}_a2b{kind}.png"))


def test_a_fixed_size_model_gets_images_resized_to_its_size_and_back(tmp_path):
  """The model card says fixed_size 16 (as U-GAT-IT full's says its image_size): a 16 x 16 image goes in as it is,
  others are resized to 16 x 16 and the answer back to their size; on a smooth image that round trip is close."""
  from tests.test_serving_models import ToyTranslator, save_toy  # pylint: disable=import-outside-toplevel
  path = save_toy(ToyTranslator(1), str(tmp_path / "fixed"))
  os.makedirs(os.path.join(path, os.path.dirname(tl.MODEL_CARD)), exist_ok=True)
  with open(os.path.join(path, tl.MODEL_CARD), "w") as f:
    json.dump({"size_multiple": 1, "fixed_size": 16}, f)
  model = tl.SignatureModel(path)
  assert (model.fixed_size, model.size_multiple) == (16, 1)
  rng = np.random.default_rng(0)
  exact = rng.integers(0, 256, [16, 16, 3], np.uint8)
  yy, xx = np.mgrid[0:40, 0:70]
  smooth = np.stack([xx * 3, yy * 5, np.full_like(xx, 90)], -1).astype(np.uint8)
  folder = tmp_path / "in"
  folder.mkdir()
  Image.fromarray(exact).save(folder / "exact.png")
  Image.fromarray(smooth).save(folder / "smooth.png")
  result = _run(model, folder, tmp_path / "out", tile_size=16)
  assert (result.translated, result.tiled, result.batch_sizes) == (2, 0, (2,))  # both 16 x 16: one batch
  np.testing.assert_array_equal(_png(tmp_path / "out" / "exact_a2b.png"), 255 - exact)
  out = _png(tmp_path / "out" / "smooth_a2b.png").astype(int)
  assert out.shape == (40, 70, 3)
  assert np.abs(out - (255 - smooth.astype(int))).mean() < 3.0
