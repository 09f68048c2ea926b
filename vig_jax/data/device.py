"""Train-time augmentation on the accelerator, per example under vmap, in jnp ops.

The host ships uint8 crops packed into rows of C * C * 3 bytes (`pipeline`); here they are
unpacked onto a C x C canvas, resized with PIL's antialiased bicubic (as timm's
RandomResizedCrop), flipped, RandAugmented, normalised and randomly erased, in timm's order.
Images hold float32 0..255 integer values until `normalize`.
"""
import math

import jax
import jax.numpy as jnp

from vig_jax.data import randaugment

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
_ATTEMPTS = 10  # timm's tries at drawing an erasing box that fits


def _bicubic(x, a=-0.5):
  """PIL's bicubic filter (support 2)."""
  x = jnp.abs(x)
  near = ((a + 2.0) * x - (a + 3.0)) * x * x + 1.0
  far = (((x - 5.0) * x + 8.0) * x - 4.0) * a
  return jnp.where(x < 1.0, near, jnp.where(x < 2.0, far, 0.0))


def _resize_weights(in_size, out_size: int, canvas: int):
  """[out_size, canvas] weights of PIL's `precompute_coeffs` for input pixels [0, in_size)."""
  scale = in_size / out_size
  filter_scale = jnp.maximum(scale, 1.0)  # shrinking widens the kernel: antialiasing
  centre = (jnp.arange(out_size) + 0.5) * scale
  x = jnp.arange(canvas)
  w = _bicubic((x[None, :] - centre[:, None] + 0.5) / filter_scale) * (x[None, :] < in_size)
  return w / jnp.sum(w, axis=1, keepdims=True)


def _to_pixels(x):
  """PIL's rounding of resampled values back to uint8 (half up, clipped)."""
  return jnp.clip(jnp.floor(x + 0.5), 0.0, 255.0)


def resize_crop(canvas, crop_size, out_size: int):
  """The crop canvas[:h, :w] ([C, C, 3], crop_size = [h, w]) resized to out_size x out_size.

  As PIL: horizontal pass, rounded to uint8, then vertical pass. Full-precision matmuls: TF32
  would move pixel values.
  """
  c = canvas.shape[0]
  wy = _resize_weights(crop_size[0], out_size, c)
  wx = _resize_weights(crop_size[1], out_size, c)
  hp = jax.lax.Precision.HIGHEST
  rows = _to_pixels(jnp.einsum("yxc,ox->yoc", canvas.astype(jnp.float32), wx, precision=hp))
  return _to_pixels(jnp.einsum("py,yoc->poc", wy, rows, precision=hp))


def unpack_crop(packed, crop_size):
  """uint8 [C * C * 3] holding an h x w crop row-major (crop_size = [h, w]) -> [C, C, 3], the crop
  at the top-left corner, zeros elsewhere."""
  c = math.isqrt(packed.shape[0] // 3)
  h, w = crop_size[0], crop_size[1]
  y, x = jnp.arange(c)[:, None, None], jnp.arange(c)[None, :, None]
  inside = (y < h) & (x < w)
  index = jnp.where(inside, (y * w + x) * 3 + jnp.arange(3), 0)
  return jnp.where(inside, packed[index], 0)


def normalize(image):
  """0..255 values -> float32 standardised with the ImageNet mean and std."""
  return (image.astype(jnp.float32) / 255.0 - jnp.array(IMAGENET_MEAN)) / jnp.array(IMAGENET_STD)


def random_erasing(rng, image, *, prob=0.25, area=(0.02, 1 / 3), min_aspect=0.3):
  """timm's RandomErasing(mode="pixel", max_count=1) on a normalised image: N(0, 1) noise."""
  apply_rng, area_rng, ratio_rng, top_rng, left_rng, noise_rng = jax.random.split(rng, 6)
  height, width = image.shape[:2]
  target = jax.random.uniform(area_rng, (_ATTEMPTS,), minval=area[0], maxval=area[1])
  target = target * height * width
  log_aspect = -math.log(min_aspect)
  aspect = jnp.exp(jax.random.uniform(ratio_rng, (_ATTEMPTS,), minval=-log_aspect,
                                      maxval=log_aspect))
  box_h = jnp.round(jnp.sqrt(target * aspect)).astype(jnp.int32)
  box_w = jnp.round(jnp.sqrt(target / aspect)).astype(jnp.int32)
  fits = (box_w < width) & (box_h < height)
  first = jnp.argmax(fits)  # timm keeps the first attempt that fits
  box_h, box_w = box_h[first], box_w[first]
  top = jax.random.randint(top_rng, (), 0, height - box_h + 1)
  left = jax.random.randint(left_rng, (), 0, width - box_w + 1)
  rows, cols = jnp.arange(height)[:, None], jnp.arange(width)[None, :]
  inside = (rows >= top) & (rows < top + box_h) & (cols >= left) & (cols < left + box_w)
  erase = jnp.any(fits) & (jax.random.uniform(apply_rng) < prob) & inside
  return jnp.where(erase[..., None], jax.random.normal(noise_rng, image.shape), image)


def augment_example(rng, packed, crop_size, *, image_size, hflip=True, randaugment_layers=2,
                    randaugment_magnitude=9.0, randaugment_magnitude_std=0.5, erase_prob=0.25):
  """One example: packed uint8 crop -> augmented, normalised float32 [image_size, image_size, 3]."""
  flip_rng, ra_rng, erase_rng = jax.random.split(rng, 3)
  image = resize_crop(unpack_crop(packed, crop_size), crop_size, image_size)
  if hflip:
    image = jnp.where(jax.random.uniform(flip_rng) < 0.5, image[:, ::-1], image)
  if randaugment_layers:
    image = randaugment.rand_augment(ra_rng, image, num_layers=randaugment_layers,
                                     magnitude=randaugment_magnitude,
                                     magnitude_std=randaugment_magnitude_std)
  image = normalize(image)
  if erase_prob:
    image = random_erasing(erase_rng, image, prob=erase_prob)
  return image


def augment_batch(rng, batch, **kwargs):
  """A train batch {"image": uint8 [B, C * C * 3] packed crops, "crop_size": [B, 2]} -> float32
  images.

  kwargs as `augment_example`; each example gets its own key split from `rng`, so an example's
  augmentation does not depend on the mesh the batch is split over.
  """
  keys = jax.random.split(rng, batch["image"].shape[0])
  return jax.vmap(lambda k, im, size: augment_example(k, im, size, **kwargs))(
      keys, batch["image"], batch["crop_size"])
