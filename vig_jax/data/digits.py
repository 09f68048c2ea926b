"""`vig_digits`: scikit-learn's 1,797 real 8x8 digits as a 32x32 RGB tfds dataset.

The images ship with scikit-learn, so the dataset builds offline into any
data_dir. Only `sources` imports this module: defining a tfds builder needs
tfds (and so tensorflow) at import time.
"""
import numpy as np
from sklearn import datasets, model_selection

from vig_jax.data.tf_cpu import tf, tfds

IMAGE_SIZE = 32
NUM_EVAL = 300  # validation examples, stratified by label; the other 1,497 are train
_SPLIT_SEED = 0


def load() -> tuple[np.ndarray, np.ndarray]:
  """All digits as uint8 [1797, 32, 32, 3] images and int64 [1797] labels 0..9.

  Bilinear upsampling: nearest would turn each pixel into a 4x4 block whose
  hard edges, not the strokes, dominate later crops, rotations and resizes.
  """
  digits = datasets.load_digits()
  pixels = digits.images[..., None].astype(np.float32) * (255.0 / 16.0)  # 0..16 -> 0..255
  images = tf.image.resize(pixels, [IMAGE_SIZE, IMAGE_SIZE], "bilinear").numpy()
  images = np.repeat(np.clip(np.round(images), 0, 255).astype(np.uint8), 3, axis=-1)
  return images, digits.target.astype(np.int64)


def split_indices(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """The fixed (train, validation) indices into `load()`'s arrays."""
  train, val = model_selection.train_test_split(
      np.arange(len(labels)), test_size=NUM_EVAL, stratify=labels, random_state=_SPLIT_SEED)
  return np.sort(train), np.sort(val)


class VigDigits(tfds.core.GeneratorBasedBuilder):
  """scikit-learn's digits, upsampled to 32x32 RGB, with a fixed stratified split."""

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "Initial release."}

  def _info(self) -> tfds.core.DatasetInfo:
    return self.dataset_info_from_configs(
        features=tfds.features.FeaturesDict({
            "image": tfds.features.Image(shape=(IMAGE_SIZE, IMAGE_SIZE, 3)),
            "label": tfds.features.ClassLabel(num_classes=10),
        }),
        supervised_keys=("image", "label"),
        homepage="https://scikit-learn.org/stable/datasets/toy_dataset.html",
    )

  def _split_generators(self, dl_manager):
    del dl_manager  # nothing to download
    images, labels = load()
    train, val = split_indices(labels)
    return {
        "train": self._generate_examples(images, labels, train),
        "validation": self._generate_examples(images, labels, val),
    }

  def _generate_examples(self, images, labels, indices):
    for i in indices:
      yield int(i), {"image": images[i], "label": labels[i]}
