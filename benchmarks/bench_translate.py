"""Offline translation benchmark: `python -m serving.translate` in-process vs the same images over gRPC.

  python -m benchmarks.bench_translate [--saved_model=DIR] [--family=ugatit --preset=budget]
                                       [--input=tests/fixtures/photos] [--copies=4] [--batch_sizes=1,4]

The same images (every readable image of --input, each copied --copies times) are translated
  * in-process: serving.translate_lib.run with a loaded model, at each --batch_sizes (model load excluded;
    one untimed pass first so every size's graph is traced);
  * over gRPC: `python -m serving.server` in a child process on loopback (warm: one untimed pass first) and
    serving.client.translate_files, the CLI's loop (one image per request), PNGs written the same way.
No image is tiled (the tile cap is set above the largest image), so both sides run the same computations;
images/s counts input images. Without --saved_model an untrained model of --family/--preset is exported
(verification off) into a temporary directory.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time

from absl import app, flags

FLAGS = flags.FLAGS
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
flags.DEFINE_string("saved_model", None, "Exported SavedModel (default: export an untrained --family/--preset).")
flags.DEFINE_string("family", "ugatit", "Family of the untrained model built without --saved_model.")
flags.DEFINE_string("preset", "budget", "Preset of the untrained model built without --saved_model.")
flags.DEFINE_string("input", os.path.join(ROOT, "tests", "fixtures", "photos"), "Folder of images.")
flags.DEFINE_integer("copies", 4, "Copies of each image (more images per size, so batches fill).")
flags.DEFINE_list("batch_sizes", ["1", "4"], "In-process batch sizes to measure.")
flags.DEFINE_string("output_json", None, "Also write the results as JSON here.")


def export_untrained(family_name: str, preset: str, path: str) -> str:
  """Exports the seeded random initialisation of family/preset to `path`/1 (export verification off)."""
  import keras  # pylint: disable=import-outside-toplevel
  import tensorflow as tf  # pylint: disable=import-outside-toplevel

  import models  # pylint: disable=import-outside-toplevel
  from components import export_lib  # pylint: disable=import-outside-toplevel
  from components import model_dir as model_dir_lib  # pylint: disable=import-outside-toplevel
  keras.utils.set_random_seed(0)
  family = models.get_family(family_name)
  config = models.get_config(family_name, preset)
  model = family.build_model(config)
  model_dir = os.path.join(path, "model_dir")
  checkpoint = model_dir_lib.model_checkpoint(model, step=tf.Variable(0, dtype=tf.int64))
  tf.train.CheckpointManager(checkpoint, os.path.join(model_dir, model_dir_lib.CHECKPOINT_DIR), max_to_keep=1).save()
  with open(os.path.join(model_dir, model_dir_lib.CONFIG_FILE), "w", encoding="utf-8") as f:
    json.dump({"family": family_name, "preset": preset, "model": config.to_dict(), "train": {}}, f)
  export_lib.run(export_lib.ExportConfig(model_dir, os.path.join(path, "base", "1"), verify=False))
  return os.path.join(path, "base", "1")


def main(argv):
  del argv
  from serving import client as client_lib  # pylint: disable=import-outside-toplevel
  from serving import process, translate_lib  # pylint: disable=import-outside-toplevel
  work = tempfile.mkdtemp(prefix="bench_translate_")
  try:
    saved_model = FLAGS.saved_model or export_untrained(FLAGS.family, FLAGS.preset, work)
    images = os.path.join(work, "images")
    os.makedirs(images)
    largest = 0
    for name in sorted(os.listdir(FLAGS.input)):
      try:
        image = client_lib.read_image(os.path.join(FLAGS.input, name))
      except ValueError:
        continue
      largest = max(largest, *image.shape[:2])
      for k in range(FLAGS.copies):
        shutil.copy(os.path.join(FLAGS.input, name), os.path.join(images, f"{k}_{name}"))
    paths = [os.path.join(images, n) for n in sorted(os.listdir(images))]
    model = translate_lib.SignatureModel(saved_model)
    rows = {"images": len(paths), "largest_side": largest, "saved_model": FLAGS.saved_model or
            f"untrained {FLAGS.family}/{FLAGS.preset}"}
    for batch in (int(b) for b in FLAGS.batch_sizes):
      config = translate_lib.TranslateConfig(model.path, images, os.path.join(work, f"out_b{batch}"),
                                             batch_size=batch, tile_size=max(16, largest), progress=False)
      translate_lib.run(config, model)  # untimed: traces every size
      result = translate_lib.run(config, model)
      rows[f"in_process_batch{batch}"] = result.images_per_second
    base = os.path.dirname(model.path)
    if not os.path.basename(model.path).isdigit():  # an export dir outside a version layout: link it as version 1
      base = os.path.join(work, "served")
      os.makedirs(base)
      os.symlink(os.path.abspath(model.path), os.path.join(base, "1"))
    port = process.free_port()
    with process.ServerProcess(["--model_name=bench", f"--model_base_path={base}"], port) as server:
      with client_lib.TranslationClient(server.target, "bench", timeout=600) as client:
        client.wait_until_available(120)
        client_lib.translate_files(client, paths, os.path.join(work, "grpc_warm"))
        start = time.perf_counter()
        client_lib.translate_files(client, paths, os.path.join(work, "grpc"))
        rows["grpc_batch1"] = len(paths) / (time.perf_counter() - start)
    print(json.dumps(rows, indent=2))
    if FLAGS.output_json:
      with open(FLAGS.output_json, "w", encoding="utf-8") as f:
        json.dump(rows, f, indent=2)
  finally:
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
  app.run(main)
