"""`python -m serving.translate`: translate a folder of images, an image or a video with a SavedModel, no server.

  python -m serving.translate --saved_model=EXPORT_DIR --input=FOLDER|IMAGE|VIDEO --output_dir=OUT \
      [--direction=a2b] [--num_styles=K | --style_image=REF] [--seed=0] [--batch_size=4] \
      [--tile_size=512] [--tile_overlap=TILE/8] [--video_output=video|frames] [--noprogress]

Loads the SavedModel in this process and calls only its signatures (serving/translate_lib.py says what is
written where). Prints one summary line; exits 0 when every input was translated, 2 when some files were skipped
(listed in OUT/skipped.jsonl and on stderr), 1 with a one-line error for bad flags, an unusable model or input.
Video needs the optional extra `video` (pip install 'i2i-translate[video]').
"""

from __future__ import annotations

import sys

from absl import app, flags

FLAGS = flags.FLAGS
flags.DEFINE_string("saved_model", None, "Exported SavedModel directory (or a model base path with integer "
                    "versions: the highest is used).")
flags.DEFINE_string("input", None, "A folder of images (read recursively), one image, or one video file.")
flags.DEFINE_string("output_dir", None, "Where the translated images (or videos) are written.")
flags.DEFINE_enum("direction", "a2b", ["a2b", "b2a"], "Translation direction.")
flags.DEFINE_integer("num_styles", 1, "MUNIT: K random styles per image (seeds seed..seed+K-1), one output each.")
flags.DEFINE_string("style_image", None, "MUNIT: take the style from this image of the target domain.")
flags.DEFINE_integer("seed", 0, "MUNIT: seed of the first style.")
flags.DEFINE_integer("batch_size", 4, "Images (or tiles, frames) of one size per signature call.")
flags.DEFINE_integer("tile_size", 512, "Images with a side over this many pixels are translated in overlapping "
                     "tiles of at most this size (fully convolutional models).")
flags.DEFINE_integer("tile_overlap", None, "Pixels shared by adjacent tiles, blended with a raised-cosine ramp "
                     "(tiles are spaced evenly, so they may share more; default: --tile_size / 8).")
flags.DEFINE_enum("video_output", "video", ["video", "frames"], "A video input gives .mp4 files or PNG frames.")
flags.DEFINE_bool("progress", True, "Show a progress bar with ETA on stderr.")


def main(argv):
  """Builds the TranslateConfig from flags, runs it, prints a summary (flags are read only here)."""
  if len(argv) > 1:
    print(f"serving.translate: error: unexpected arguments {argv[1:]}; give the input with --input",
          file=sys.stderr)
    sys.exit(1)
  from serving import translate_lib  # after flag parsing: keeps --help fast
  try:
    config = translate_lib.TranslateConfig(
        saved_model=FLAGS.saved_model, input_path=FLAGS.input, output_dir=FLAGS.output_dir,
        direction=FLAGS.direction, num_styles=FLAGS.num_styles, style_image=FLAGS.style_image, seed=FLAGS.seed,
        batch_size=FLAGS.batch_size, tile_size=FLAGS.tile_size, tile_overlap=FLAGS.tile_overlap,
        video_output=FLAGS.video_output, progress=FLAGS.progress)
    result = translate_lib.run(config)
  except translate_lib.TranslateError as e:
    print(f"serving.translate: error: {e}", file=sys.stderr)
    sys.exit(1)
  for _, reason in result.skipped:
    print(f"serving.translate: skipped: {reason}", file=sys.stderr)
  summary = (f"translated {result.translated} inputs ({result.tiled} in tiles) in {result.seconds:.1f} s "
             f"({result.images_per_second:.2f}/s); wrote {len(result.written)} files to {FLAGS.output_dir}")
  if result.skipped:
    summary += f"; skipped {len(result.skipped)} (see {result.skipped_path})"
  print(summary)
  if result.skipped:
    sys.exit(2)


if __name__ == "__main__":
  flags.mark_flags_as_required(["saved_model", "input", "output_dir"])
  app.run(main)
