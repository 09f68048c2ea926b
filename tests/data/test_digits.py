"""The vig_digits tfds dataset: real scikit-learn digits, fixed stratified split."""
import numpy as np

from vig_jax.data import digits
from vig_jax.data.tf_cpu import tfds


def _split(data_dir, split):
  ds = tfds.builder(digits.VigDigits.name, data_dir=data_dir).as_dataset(split=split,
                                                                         batch_size=-1)
  arrays = tfds.as_numpy(ds)
  return arrays["image"], arrays["label"]


def test_splits_shapes_and_labels(digits_dir):
  train_images, train_labels = _split(digits_dir, "train")
  val_images, val_labels = _split(digits_dir, "validation")

  assert train_images.shape == (1497, 32, 32, 3) and val_images.shape == (300, 32, 32, 3)
  assert train_images.dtype == np.uint8
  assert (train_images.min(), train_images.max()) == (0, 255)  # 0..16 scaled to 0..255
  np.testing.assert_array_equal(train_images[..., 0], train_images[..., 2])  # gray as RGB
  # Stratified: each digit's share of validation matches its share of the data.
  all_counts = np.bincount(np.concatenate([train_labels, val_labels]), minlength=10)
  np.testing.assert_allclose(np.bincount(val_labels, minlength=10), all_counts * 300 / 1797,
                             atol=1)


def test_content_is_the_fixed_split_of_load(digits_dir):
  images, labels = digits.load()
  _, val = digits.split_indices(labels)
  stored_images, stored_labels = _split(digits_dir, "validation")

  def canonical(images, labels):  # tfds stores examples in its own order
    return sorted(zip(labels.tolist(), (image.tobytes() for image in images)))

  assert canonical(stored_images, stored_labels) == canonical(images[val], labels[val])


def test_split_is_deterministic():
  labels = digits.load()[1]
  first, second = digits.split_indices(labels), digits.split_indices(labels)

  for a, b in zip(first, second):
    np.testing.assert_array_equal(a, b)
  assert not set(first[0]) & set(first[1])
  assert len(first[0]) + len(first[1]) == 1797
