"""Train/eval transforms: shapes, ranges, determinism, timm's crop and erasing rules."""
import numpy as np
import pytest

from vig_jax.data import augment
from vig_jax.data.tf_cpu import tf


def _photo(height=48, width=64):
  """An image with structure, so that crops and flips change it."""
  y, x = np.mgrid[0:height, 0:width]
  return np.stack([x * 255 // width, y * 255 // height, (x * y) % 256], -1).astype(np.uint8)


def _seed(i):
  return tf.constant([7, i], tf.int64)


def test_train_transform_shape_dtype_and_determinism():
  encoded = tf.io.encode_jpeg(_photo())
  outs = [augment.train_transform(encoded, _seed(i), image_size=32).numpy() for i in (0, 0, 1)]

  assert outs[0].shape == (32, 32, 3) and outs[0].dtype == np.float32
  # Normalised uint8 values, or N(0, 1) noise where erased.
  assert np.isfinite(outs[0]).all() and np.abs(outs[0]).max() < 10
  np.testing.assert_array_equal(outs[0], outs[1])
  assert not np.array_equal(outs[0], outs[2])


def test_train_transform_with_augmentation_off_is_a_resize():
  image = np.full((10, 14, 3), 200, np.uint8)
  out = augment.train_transform(tf.io.encode_png(image), _seed(0), image_size=8, crop_scale=None,
                                hflip=False, randaugment_layers=0, erase_prob=0).numpy()

  want = (200 / 255 - np.array(augment.IMAGENET_MEAN)) / np.array(augment.IMAGENET_STD)
  np.testing.assert_allclose(out, np.broadcast_to(want, (8, 8, 3)), rtol=1e-6)


def test_eval_transform_resizes_shorter_side_and_centre_crops():
  image = np.zeros((64, 128, 3), np.uint8)
  image[:, 56:72] = 255  # a bright centre stripe, 16 of 128 columns
  out = augment.eval_transform(tf.io.encode_png(image), image_size=28, crop_pct=0.875).numpy()

  # Shorter side 64 -> floor(28 / 0.875) = 32, so 128 -> 64 columns and the stripe
  # covers columns 28..35 of the resized image, 10..17 of the 28-wide centre crop.
  assert out.shape == (28, 28, 3)
  bright = out[14, :, 0] > 0
  assert bright[11:17].all() and not bright[:9].any() and not bright[19:].any()


def test_random_resized_crop_falls_back_to_centre_crop():
  """A square box of the whole image's area never fits a 2:1 image: timm's fallback."""
  image = tf.constant(_photo(32, 64))
  out = augment.random_resized_crop(image, _seed(0), 32, scale=(1.0, 1.0), ratio=(1.0, 1.0))

  np.testing.assert_array_equal(out.numpy(), image.numpy()[:, 16:48])


@pytest.mark.parametrize("i", range(5))
def test_random_resized_crop_with_full_scale_keeps_everything(i):
  image = tf.constant(_photo(40, 40))
  out = augment.random_resized_crop(image, _seed(i), 40, scale=(1.0, 1.0), ratio=(1.0, 1.0))

  np.testing.assert_array_equal(out.numpy(), image.numpy())


def test_random_erasing_replaces_one_box_with_noise():
  image = tf.zeros([32, 32, 3])
  areas = []
  for i in range(20):
    erased = augment.random_erasing(image, _seed(i), prob=1.0).numpy() != 0
    rows, cols = np.nonzero(erased.any(-1))
    box = erased[rows.min():rows.max() + 1, cols.min():cols.max() + 1]
    assert box.all()  # a filled rectangle, all channels
    areas.append(box.shape[0] * box.shape[1] / 32**2)

  assert 0.015 < min(areas) and max(areas) < 0.36  # timm's 0.02..1/3, after rounding sides
  np.testing.assert_array_equal(augment.random_erasing(image, _seed(0), prob=0.0), image)
