"""DeiT/timm image transforms in tf ops: encoded image bytes in, normalised float32 out.

Train: RandomResizedCrop (bicubic) + horizontal flip, RandAugment, normalise,
random erasing, as timm's `transforms_imagenet_train`. timm leaves out colour
jitter (0.4 in DeiT's config) whenever RandAugment is on, so there is none here.
Eval: resize the shorter side to image_size / crop_pct (bicubic), centre crop.

All randomness is stateless, drawn from a per-example `seed` ([2] int), so an
example's augmentation depends only on that seed.
"""
import math

from vig_jax.data import randaugment
from vig_jax.data.tf_cpu import tf

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
_ATTEMPTS = 10  # timm's tries at drawing a box that fits, for crops and erasing


def decode(data):
  """Encoded JPEG/PNG/GIF/BMP/WebP bytes -> uint8 [H, W, 3] (gray and RGBA converted)."""
  image = tf.io.decode_image(data, channels=3, expand_animations=False)
  image.set_shape([None, None, 3])
  return image


def _resize(image, size):
  """Bicubic, antialiased like PIL when shrinking, back to uint8 as PIL returns."""
  out = tf.image.resize(image, size, "bicubic", antialias=True)
  return tf.cast(tf.round(tf.clip_by_value(out, 0.0, 255.0)), tf.uint8)


def _randint(seed, high):
  """Uniform in [0, high], both ends included as in random.randint (0 if high < 0)."""
  return tf.random.stateless_uniform([], seed, 0, tf.maximum(high, 0) + 1, tf.int32)


def _sample_box(seed, height, width, area, log_ratio, *, strict):
  """timm's rejection sampling of a box of relative `area` and log aspect `log_ratio`.

  Draws all attempts at once and keeps the first that fits (strictly smaller
  than the image if `strict`). Returns (found, top, left, box_height, box_width).
  """
  area_seed, ratio_seed, top_seed, left_seed = tf.unstack(
      tf.random.experimental.stateless_split(seed, 4))
  h, w = tf.cast(height, tf.float32), tf.cast(width, tf.float32)
  target = tf.random.stateless_uniform([_ATTEMPTS], area_seed, *area) * h * w
  ratio = tf.exp(tf.random.stateless_uniform([_ATTEMPTS], ratio_seed, *log_ratio))
  box_w = tf.cast(tf.round(tf.sqrt(target * ratio)), tf.int32)
  box_h = tf.cast(tf.round(tf.sqrt(target / ratio)), tf.int32)
  fits = (box_w < width) & (box_h < height) if strict else (box_w <= width) & (box_h <= height)
  first = tf.argmax(tf.cast(fits, tf.int32), output_type=tf.int32)
  box_h, box_w = box_h[first], box_w[first]
  top = _randint(top_seed, height - box_h)
  left = _randint(left_seed, width - box_w)
  return tf.reduce_any(fits), top, left, box_h, box_w


def random_resized_crop(image, seed, size, *, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3)):
  """timm's RandomResizedCropAndInterpolation: random box, bicubic resize to size x size."""
  height, width = tf.shape(image)[0], tf.shape(image)[1]
  found, top, left, box_h, box_w = _sample_box(
      seed, height, width, scale, (math.log(ratio[0]), math.log(ratio[1])), strict=False)

  def central():  # timm's fallback: the largest centred box with aspect inside `ratio`
    aspect = tf.clip_by_value(tf.cast(width, tf.float32) / tf.cast(height, tf.float32), *ratio)
    h = tf.minimum(height, tf.cast(tf.round(tf.cast(width, tf.float32) / aspect), tf.int32))
    w = tf.minimum(width, tf.cast(tf.round(tf.cast(height, tf.float32) * aspect), tf.int32))
    return (height - h) // 2, (width - w) // 2, h, w

  top, left, box_h, box_w = tf.cond(found, lambda: (top, left, box_h, box_w), central)
  return _resize(image[top:top + box_h, left:left + box_w], [size, size])


def resize_center_crop(image, size, crop_pct=0.875):
  """timm's eval transform: shorter side to floor(size / crop_pct), centre size x size."""
  height, width = tf.shape(image)[0], tf.shape(image)[1]
  short = math.floor(size / crop_pct)
  new_h = short * height // tf.minimum(height, width)  # integer maths, as torchvision's Resize
  new_w = short * width // tf.minimum(height, width)
  image = _resize(image, tf.stack([new_h, new_w]))
  top = tf.cast(tf.round(tf.cast(new_h - size, tf.float32) / 2), tf.int32)
  left = tf.cast(tf.round(tf.cast(new_w - size, tf.float32) / 2), tf.int32)
  return image[top:top + size, left:left + size]


def normalize(image):
  """uint8 -> float32, standardised with the ImageNet mean and std."""
  x = tf.cast(image, tf.float32) / 255.0
  return (x - tf.constant(IMAGENET_MEAN)) / tf.constant(IMAGENET_STD)


def random_erasing(image, seed, *, prob=0.25, area=(0.02, 1 / 3), min_aspect=0.3):
  """timm's RandomErasing(mode="pixel", count 1) on a normalised image: N(0, 1) noise."""
  apply_seed, box_seed, noise_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 3))
  height, width = tf.shape(image)[0], tf.shape(image)[1]
  found, top, left, box_h, box_w = _sample_box(
      box_seed, height, width, area, (math.log(min_aspect), -math.log(min_aspect)), strict=True)
  rows, cols = tf.range(height)[:, None], tf.range(width)[None, :]
  inside = (rows >= top) & (rows < top + box_h) & (cols >= left) & (cols < left + box_w)
  erase = found & (tf.random.stateless_uniform([], apply_seed) < prob) & inside
  return tf.where(erase[..., None], tf.random.stateless_normal(tf.shape(image), noise_seed), image)


def train_transform(data, seed, *, image_size, crop_scale=(0.08, 1.0), crop_ratio=(3 / 4, 4 / 3),
                    hflip=True, randaugment_layers=2, randaugment_magnitude=9.0,
                    randaugment_magnitude_std=0.5, erase_prob=0.25):
  """Encoded image -> augmented, normalised float32 [image_size, image_size, 3].

  crop_scale=None resizes the whole image instead of a random crop;
  randaugment_layers=0 and erase_prob=0 switch those off.
  """
  crop_seed, flip_seed, ra_seed, erase_seed = tf.unstack(
      tf.random.experimental.stateless_split(seed, 4))
  image = decode(data)
  if crop_scale is None:
    image = _resize(image, [image_size, image_size])
  else:
    image = random_resized_crop(image, crop_seed, image_size, scale=crop_scale, ratio=crop_ratio)
  if hflip:
    flip = tf.random.stateless_uniform([], flip_seed) < 0.5
    image = tf.cond(flip, lambda: image[:, ::-1], lambda: image)
  if randaugment_layers:
    image = randaugment.rand_augment(image, ra_seed, num_layers=randaugment_layers,
                                     magnitude=randaugment_magnitude,
                                     magnitude_std=randaugment_magnitude_std)
  image = normalize(image)
  if erase_prob:
    image = random_erasing(image, erase_seed, prob=erase_prob)
  return image


def eval_transform(data, *, image_size, crop_pct=0.875):
  """Encoded image -> normalised float32 [image_size, image_size, 3] centre crop."""
  return normalize(resize_center_crop(decode(data), image_size, crop_pct))
