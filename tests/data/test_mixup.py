"""Mixup/CutMix: timm's batch mode, smoothed targets, jit and sharding."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vig_jax import sharding as vig_sharding
from vig_jax.data import mixup

from .hlo import assert_no_collectives

NUM_CLASSES = 10


def _batch(batch_size=8, size=16):
  images = jax.random.normal(jax.random.key(0), (batch_size, size, size, 3))
  return images, jnp.arange(batch_size, dtype=jnp.int32) % NUM_CLASSES


def _lam(targets, labels):
  """lam back from targets: the weight of each row's own label, less smoothing."""
  own = targets[jnp.arange(len(labels)), labels] - 0.1 / NUM_CLASSES
  return own / 0.9


def _data_parallel():
  """The batch split over every device, on the training code's mesh (Auto axes)."""
  return jax.sharding.NamedSharding(vig_sharding.create_mesh(), jax.sharding.PartitionSpec("data"))


def test_alphas_zero_only_smooth_labels():
  images, labels = _batch()
  out, targets = mixup.mixup_cutmix(jax.random.key(1), images, labels, num_classes=NUM_CLASSES,
                                    mixup_alpha=0.0, cutmix_alpha=0.0)

  np.testing.assert_array_equal(out, images)
  want = np.full((8, NUM_CLASSES), 0.01, np.float32)
  want[np.arange(8), labels] = 0.91  # 1 - 0.1 + 0.1 / 10
  np.testing.assert_allclose(targets, want, rtol=1e-6)


@pytest.mark.parametrize("seed", range(4))
def test_targets_are_distributions(seed):
  images, labels = _batch()
  out, targets = mixup.mixup_cutmix(jax.random.key(seed), images, labels,
                                    num_classes=NUM_CLASSES)

  assert out.shape == images.shape and out.dtype == images.dtype
  assert targets.shape == (8, NUM_CLASSES) and targets.dtype == jnp.float32
  np.testing.assert_allclose(targets.sum(-1), 1.0, rtol=1e-6)
  assert (targets >= 0.01 - 1e-6).all()


@pytest.mark.parametrize("seed", range(4))
def test_mixup_blends_each_example_with_its_neighbour(seed):
  images, labels = _batch()
  out, targets = mixup.mixup_cutmix(jax.random.key(seed), images, labels,
                                    num_classes=NUM_CLASSES, cutmix_alpha=0.0)
  lam = _lam(targets, labels)[0]

  assert 0 < lam < 1
  pairs = images[jnp.array([1, 0, 3, 2, 5, 4, 7, 6])]
  np.testing.assert_allclose(out, lam * images + (1 - lam) * pairs, atol=1e-5)


@pytest.mark.parametrize("seed", range(4))
def test_cutmix_lam_is_the_kept_area(seed):
  images, labels = _batch()
  out, targets = mixup.mixup_cutmix(jax.random.key(seed), images, labels,
                                    num_classes=NUM_CLASSES, mixup_alpha=0.0)
  from_other = np.asarray(out != images).all(-1)[0]  # [H, W] pixels pasted from example 1
  lam = _lam(targets, labels)[0]

  np.testing.assert_array_equal(out[0][from_other], images[1][from_other])
  np.testing.assert_allclose(lam, 1 - from_other.mean(), atol=1e-6)
  rows, cols = np.nonzero(from_other)
  if rows.size:  # the pasted region is one box
    assert from_other[rows.min():rows.max() + 1, cols.min():cols.max() + 1].all()


def test_prob_zero_only_smooths():
  images, labels = _batch()
  out, targets = mixup.mixup_cutmix(jax.random.key(0), images, labels, num_classes=NUM_CLASSES,
                                    prob=0.0)

  np.testing.assert_array_equal(out, images)
  np.testing.assert_allclose(targets, mixup.smooth_one_hot(labels, NUM_CLASSES, 0.1))


def test_jit_with_a_sharded_batch_matches_eager():
  images, labels = _batch()
  sharding = _data_parallel()
  fn = jax.jit(lambda rng, x, y: mixup.mixup_cutmix(rng, x, y, num_classes=NUM_CLASSES))
  rng = jax.random.key(5)

  out, targets = fn(rng, jax.device_put(images, sharding), jax.device_put(labels, sharding))
  want_out, want_targets = mixup.mixup_cutmix(rng, images, labels, num_classes=NUM_CLASSES)
  np.testing.assert_allclose(out, want_out, atol=1e-6)
  np.testing.assert_allclose(targets, want_targets, atol=1e-6)


def test_partners_swap_neighbours_and_leave_an_odd_last_row():
  np.testing.assert_array_equal(mixup.partners(jnp.arange(6)), [1, 0, 3, 2, 5, 4])
  np.testing.assert_array_equal(mixup.partners(jnp.arange(5)), [1, 0, 3, 2, 4])
  np.testing.assert_array_equal(mixup.partners(jnp.arange(1)), [0])


def test_a_sharded_batch_is_mixed_without_moving_data_between_devices():
  images, labels = _batch(batch_size=2 * jax.device_count())
  sharding = _data_parallel()
  fn = jax.jit(lambda rng, x, y: mixup.mixup_cutmix(rng, x, y, num_classes=NUM_CLASSES))
  text = fn.lower(jax.random.key(0), jax.device_put(images, sharding),
                  jax.device_put(labels, sharding)).compile().as_text()
  assert_no_collectives(text)
