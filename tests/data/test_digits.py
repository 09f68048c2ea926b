"""The digits demo data: real scikit-learn digits, fixed stratified split, in memory."""
import numpy as np

from vig_jax import data
from vig_jax.data import digits, sources


def test_splits_shapes_and_labels():
  images, labels = digits.load()
  train, val = digits.split_indices(labels)

  assert images.shape == (1797, 32, 32, 3) and images.dtype == np.uint8
  assert (images.min(), images.max()) == (0, 255)  # 0..16 scaled to 0..255
  np.testing.assert_array_equal(images[..., 0], images[..., 2])  # gray as RGB
  assert len(train) == 1497 and len(val) == 300
  # Stratified: each digit's share of validation matches its share of the data.
  np.testing.assert_allclose(np.bincount(labels[val], minlength=10),
                             np.bincount(labels, minlength=10) * 300 / 1797, atol=1)


def test_source_serves_the_fixed_split():
  images, labels = digits.load()
  _, val = digits.split_indices(labels)
  source = sources.get("digits")

  assert data.dataset_info(source="digits").num_eval == 300
  image, label = source.eval[7]
  np.testing.assert_array_equal(image, images[val[7]])
  assert label == labels[val[7]]


def test_split_is_deterministic():
  labels = digits.load()[1]
  first, second = digits.split_indices(labels), digits.split_indices(labels)

  for a, b in zip(first, second):
    np.testing.assert_array_equal(a, b)
  assert not set(first[0]) & set(first[1])
  assert len(first[0]) + len(first[1]) == 1797
