"""Device transforms against PIL/timm references: resize, flip, normalise, erasing."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from vig_jax import sharding
from vig_jax.data import device

from .hlo import assert_no_collectives
from .images import noise


@pytest.mark.parametrize("box,out", [((37, 53), 24), ((20, 20), 20), ((10, 14), 32),
                                     ((64, 48), 16), ((3, 64), 8)])
def test_resize_crop_is_pil_bicubic(box, out):
  """timm's crop + PIL bicubic resize (antialiased when shrinking), up to PIL's fixed point."""
  canvas = noise((64, 64), seed=sum(box))
  want = np.asarray(Image.fromarray(canvas[:box[0], :box[1]]).resize((out, out), Image.BICUBIC))
  got = np.asarray(device.resize_crop(jnp.asarray(canvas), jnp.array(box), out))

  diff = np.abs(got.astype(int) - want)
  assert diff.max() <= 1 and (diff > 0).mean() < 0.01, (diff.max(), (diff > 0).mean())


def test_unpack_crop_undoes_the_packing():
  crop = noise((5, 7))
  packed = np.zeros(8 * 8 * 3, np.uint8)
  packed[:crop.size] = crop.ravel()
  canvas = np.asarray(device.unpack_crop(jnp.asarray(packed), jnp.array([5, 7])))

  np.testing.assert_array_equal(canvas[:5, :7], crop)
  assert not canvas[5:].any() and not canvas[:, 7:].any()


def test_normalize():
  image = jnp.array([[[0.0, 128.0, 255.0]]])
  want = (np.array([0, 128, 255]) / 255 - np.array(device.IMAGENET_MEAN)) / device.IMAGENET_STD
  np.testing.assert_allclose(device.normalize(image)[0, 0], want, rtol=1e-6)


def test_random_erasing_replaces_one_box_with_noise():
  image = jnp.zeros([32, 32, 3])
  areas = []
  for i in range(20):
    erased = np.asarray(device.random_erasing(jax.random.key(i), image, prob=1.0)) != 0
    rows, cols = np.nonzero(erased.any(-1))
    box = erased[rows.min():rows.max() + 1, cols.min():cols.max() + 1]
    assert box.all()  # a filled rectangle, all channels
    areas.append(box.shape[0] * box.shape[1] / 32**2)

  assert 0.015 < min(areas) and max(areas) < 0.36  # timm's 0.02..1/3, after rounding sides
  np.testing.assert_array_equal(device.random_erasing(jax.random.key(0), image, prob=0.0), image)


def test_augment_batch_off_is_resize_and_normalise_and_flips_half():
  canvases = jnp.asarray(np.stack([noise((16, 16), seed=i) for i in range(64)]))
  batch = {"image": canvases.reshape(64, -1), "crop_size": jnp.full((64, 2), 16)}
  plain = device.augment_batch(jax.random.key(0), batch, image_size=16, hflip=False,
                               randaugment_layers=0, erase_prob=0.0)
  np.testing.assert_allclose(plain, device.normalize(canvases), rtol=1e-6)

  flipped = device.augment_batch(jax.random.key(0), batch, image_size=16, randaugment_layers=0,
                                 erase_prob=0.0)
  same = np.all(np.asarray(flipped) == np.asarray(plain), axis=(1, 2, 3))
  mirrored = np.all(np.asarray(flipped) == np.asarray(plain)[:, :, ::-1], axis=(1, 2, 3))
  assert (same | mirrored).all() and 16 < mirrored.sum() < 48


def test_augment_batch_is_deterministic_per_key_and_jits():
  batch = {"image": jnp.asarray(np.stack([noise((24, 24), seed=i).ravel() for i in range(4)])),
           "crop_size": jnp.array([[24, 24], [10, 20], [24, 5], [13, 13]])}
  fn = jax.jit(lambda rng, b: device.augment_batch(rng, b, image_size=16))
  a, b, c = fn(jax.random.key(1), batch), fn(jax.random.key(1), batch), fn(jax.random.key(2), batch)

  assert a.shape == (4, 16, 16, 3) and a.dtype == jnp.float32 and np.isfinite(a).all()
  np.testing.assert_array_equal(a, b)
  assert not np.array_equal(a, c)


def test_augment_batch_on_a_mesh_matches_one_device_and_moves_no_data():
  """Partitioned over the batch axes, each device augments its own rows: the same images as one
  device, and the compiled program holds no collective. "The same" up to PIL's integer rounding:
  the two programs round floats differently (contraction, vectorisation), so a value on a .5
  boundary may land one 8-bit level away, on a few pixels."""
  n = jax.device_count()
  batch = {"image": jnp.asarray(np.stack([noise((24, 24), seed=i).ravel() for i in range(2 * n)])),
           "crop_size": jnp.asarray(np.tile([[24, 24], [10, 20]], (n, 1)))}
  augment = jax.jit(lambda rng, b: device.augment_batch(rng, b, image_size=16))
  one = augment(jax.random.key(3), batch)
  mesh = sharding.create_mesh(data=n // 2, fsdp=2)
  with jax.set_mesh(mesh):
    sharded = jax.device_put(batch, sharding.batch_sharding(mesh))
    levels = np.abs(augment(jax.random.key(3), sharded) - one) * np.array(device.IMAGENET_STD) * 255
    differ = np.mean(levels > 1e-3)
    assert levels.max() < 1.001 and differ < 1e-3, (levels.max(), differ)
    text = augment.lower(jax.random.key(3), sharded).compile().as_text()
  assert_no_collectives(text)
