"""RandAugment ops (PIL semantics) and the policy's randomness."""
import numpy as np
import pytest

from vig_jax.data import randaugment as ra
from vig_jax.data.tf_cpu import tf


def _image(seed=0, size=(24, 20)):
  return tf.constant(np.random.default_rng(seed).integers(0, 256, size + (3,), np.uint8))


@pytest.mark.parametrize("index", range(len(ra.OPS)))
def test_every_op_runs_through_switch(index):
  image = _image()
  for level, sign in ((0.0, 1.0), (0.9, -1.0), (1.0, 1.0)):
    out = ra.apply_op(image, tf.constant(index), tf.constant(level), tf.constant(sign))
    direct = ra.OPS[index][1](image, tf.constant(level), tf.constant(sign))
    assert out.shape == image.shape and out.dtype == tf.uint8
    np.testing.assert_array_equal(out, direct)


def test_pixel_ops_follow_pil():
  x = tf.constant([[[0, 100, 255], [127, 128, 200]]], tf.uint8)

  np.testing.assert_array_equal(ra.invert(x), 255 - x.numpy())
  np.testing.assert_array_equal(ra.solarize(x, 128), [[[0, 100, 0], [127, 127, 55]]])
  np.testing.assert_array_equal(ra.solarize_add(x, 110), [[[110, 210, 255], [237, 128, 200]]])
  np.testing.assert_array_equal(ra.posterize(x, 1), [[[0, 0, 128], [0, 128, 128]]])
  np.testing.assert_array_equal(ra.posterize(x, 0), np.zeros([1, 2, 3]))
  np.testing.assert_array_equal(ra.brightness(x, 1.0), x)


def test_auto_contrast_and_equalize_stretch_each_channel():
  # 1024 pixels over 51 values: enough per value for PIL's equalize step to be > 0.
  x = tf.constant(np.stack([np.linspace(50, 100, 1024).reshape(32, 32)] * 3, -1).astype(np.uint8))

  stretched = ra.auto_contrast(x).numpy()
  assert (stretched.min(), stretched.max()) == (0, 255)
  equalized = ra.equalize(x).numpy()
  assert equalized.min() == 0 and equalized.max() > 220
  assert (np.diff(np.sort(equalized[..., 0].ravel())) >= 0).all()


def test_geometric_ops_move_pixels_and_fill_with_the_mean():
  x = _image(size=(8, 10))
  shifted = ra.translate_x(x, tf.constant(3.0)).numpy()

  np.testing.assert_array_equal(shifted[:, :7], x.numpy()[:, 3:])
  np.testing.assert_array_equal(shifted[:, 7:], np.broadcast_to(ra._FILL, (8, 3, 3)))
  np.testing.assert_array_equal(ra.rotate(x, tf.constant(0.0)), x)
  np.testing.assert_array_equal(ra.shear_y(x, tf.constant(0.0)), x)
  np.testing.assert_array_equal(ra.rotate(x, tf.constant(180.0)), x.numpy()[::-1, ::-1])


def test_rand_augment_is_deterministic_per_seed():
  image = _image()
  outs = [ra.rand_augment(image, tf.constant([1, i], tf.int64)).numpy() for i in range(8)]

  np.testing.assert_array_equal(outs[0], ra.rand_augment(image, tf.constant([1, 0], tf.int64)))
  assert len({o.tobytes() for o in outs}) > 4  # different seeds, different ops
  np.testing.assert_array_equal(ra.rand_augment(image, tf.constant([1, 0], tf.int64), prob=0.0),
                                image)
