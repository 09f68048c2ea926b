"""The embedded demo dataset: scikit-learn's 1,797 real 8x8 digits as 32x32 RGB, in memory."""
import numpy as np
from PIL import Image
from sklearn import datasets, model_selection

IMAGE_SIZE = 32
NUM_EVAL = 300  # validation examples, stratified by label; the other 1,497 are train
_SPLIT_SEED = 0


def load() -> tuple[np.ndarray, np.ndarray]:
  """All digits as uint8 [1797, 32, 32, 3] images and int64 [1797] labels 0..9.

  Bilinear upsampling: nearest would turn each pixel into a 4x4 block whose hard edges, not the
  strokes, dominate later crops, rotations and resizes.
  """
  digits = datasets.load_digits()
  pixels = digits.images.astype(np.float32) * (255.0 / 16.0)  # 0..16 -> 0..255
  images = np.stack([np.asarray(Image.fromarray(p, "F").resize((IMAGE_SIZE, IMAGE_SIZE),
                                                                Image.BILINEAR)) for p in pixels])
  images = np.repeat(np.clip(np.round(images), 0, 255).astype(np.uint8)[..., None], 3, axis=-1)
  return images, digits.target.astype(np.int64)


def split_indices(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """The fixed (train, validation) indices into `load()`'s arrays."""
  train, val = model_selection.train_test_split(
      np.arange(len(labels)), test_size=NUM_EVAL, stratify=labels, random_state=_SPLIT_SEED)
  return np.sort(train), np.sort(val)
