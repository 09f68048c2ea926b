"""timm's RandAugment "rand-m9-mstd0.5-inc1" in stateless tf ops on uint8 [H, W, 3] images.

Ops and magnitude-to-argument maps follow timm's `_RAND_INCREASING_TRANSFORMS`
(the "inc1" variants, where a larger magnitude always means a stronger change)
and the PIL functions they call. One deliberate difference: geometric ops
resample bilinearly, the best tf's projective-transform op offers (timm uses
bicubic in the DeiT recipe).
"""
import math

from vig_jax.data.tf_cpu import tf

# timm fills the area uncovered by geometric ops with round(255 * ImageNet mean).
_FILL = (124, 116, 104)
_MAX_LEVEL = 10.0


def _to_uint8(image):
  return tf.cast(tf.round(tf.clip_by_value(image, 0.0, 255.0)), tf.uint8)


def _blend(degenerate, image, factor):
  """PIL ImageEnhance: factor 0 gives `degenerate`, 1 the image, >1 extrapolates."""
  degenerate = tf.cast(degenerate, tf.float32)
  return _to_uint8(tf.floor(degenerate + factor * (tf.cast(image, tf.float32) - degenerate)))


def _grayscale(image):
  return tf.round(tf.image.rgb_to_grayscale(tf.cast(image, tf.float32)))  # PIL "L"


def auto_contrast(image):
  """Stretches each channel to the full 0..255 range."""
  x = tf.cast(image, tf.float32)
  lo = tf.reduce_min(x, axis=(0, 1))
  hi = tf.reduce_max(x, axis=(0, 1))
  scale = tf.where(hi > lo, 255.0 / tf.maximum(hi - lo, 1.0), 1.0)
  offset = tf.where(hi > lo, -lo * scale, 0.0)
  return _to_uint8(tf.floor(x * scale + offset))


def _equalize_channel(channel):
  """PIL ImageOps.equalize on one uint8 channel."""
  channel = tf.cast(channel, tf.int32)
  hist = tf.math.bincount(tf.reshape(channel, [-1]), minlength=256, maxlength=256)
  last = tf.gather(hist, tf.reduce_max(tf.where(hist > 0)))  # count of the top value
  step = (tf.reduce_sum(hist) - last) // 255
  lut = (tf.cumsum(hist, exclusive=True) + step // 2) // tf.maximum(step, 1)
  lut = tf.clip_by_value(lut, 0, 255)
  return tf.where(step > 0, tf.gather(lut, channel), channel)


def equalize(image):
  return tf.cast(tf.stack([_equalize_channel(image[..., c]) for c in range(3)], -1), tf.uint8)


def invert(image):
  return 255 - image


def posterize(image, bits):
  """Keeps the top `bits` bits of every value (bits 0 gives black)."""
  shift = tf.cast(8 - bits, tf.int32)
  x = tf.cast(image, tf.int32)
  return tf.cast(tf.bitwise.left_shift(tf.bitwise.right_shift(x, shift), shift), tf.uint8)


def solarize(image, threshold):
  x = tf.cast(image, tf.int32)
  return tf.cast(tf.where(x >= threshold, 255 - x, x), tf.uint8)


def solarize_add(image, addition, threshold=128):
  x = tf.cast(image, tf.int32)
  return tf.cast(tf.where(x < threshold, tf.minimum(x + addition, 255), x), tf.uint8)


def color(image, factor):
  return _blend(tf.tile(_grayscale(image), [1, 1, 3]), image, factor)


def contrast(image, factor):
  mean = tf.floor(tf.reduce_mean(_grayscale(image)) + 0.5)
  return _blend(tf.fill(tf.shape(image), mean), image, factor)


def brightness(image, factor):
  return _blend(tf.zeros_like(image), image, factor)


def sharpness(image, factor):
  """Blends with PIL's SMOOTH filter output; as in PIL, the 1-pixel border is kept."""
  x = tf.cast(image, tf.float32)[None]
  kernel = tf.constant([[1.0, 1.0, 1.0], [1.0, 5.0, 1.0], [1.0, 1.0, 1.0]]) / 13.0
  kernel = tf.tile(kernel[:, :, None, None], [1, 1, 3, 1])
  smooth = tf.round(tf.nn.depthwise_conv2d(x, kernel, [1, 1, 1, 1], "VALID")[0])
  inner = tf.pad(tf.ones_like(smooth, tf.bool), [[1, 1], [1, 1], [0, 0]])
  degenerate = tf.where(inner, tf.pad(smooth, [[1, 1], [1, 1], [0, 0]]), x[0])
  return _blend(degenerate, image, factor)


def _width(image):
  return tf.cast(tf.shape(image)[1], tf.float32)


def _height(image):
  return tf.cast(tf.shape(image)[0], tf.float32)


def _affine(image, matrix):
  """PIL's AFFINE transform: output pixel (x, y) samples input (a x + b y + c, d x + e y + f).

  PIL's coordinates put pixel centres at +0.5, tf's at integers; the offsets
  below convert `matrix` from the first to the second.
  """
  a, b, c, d, e, f = tf.unstack(tf.cast(matrix, tf.float32))
  transform = tf.stack([a, b, c + 0.5 * (a + b - 1.0), d, e, f + 0.5 * (d + e - 1.0), 0.0, 0.0])
  # A channel of ones, transformed alongside, tells how much of each output
  # pixel came from inside the image; the rest is filled with _FILL.
  x = tf.concat([tf.cast(image, tf.float32), tf.ones_like(image[..., :1], tf.float32)], -1)
  out = tf.raw_ops.ImageProjectiveTransformV3(
      images=x[None], transforms=transform[None], output_shape=tf.shape(image)[:2],
      fill_value=0.0, interpolation="BILINEAR", fill_mode="CONSTANT")[0]
  inside = out[..., 3:]
  return _to_uint8(out[..., :3] + (1.0 - inside) * tf.constant(_FILL, tf.float32))


def rotate(image, degrees):
  """Rotates counter-clockwise about the centre, as PIL's Image.rotate."""
  theta = degrees * (math.pi / 180.0)
  cos, sin = tf.cos(theta), tf.sin(theta)
  cx, cy = _width(image) / 2.0, _height(image) / 2.0
  return _affine(image, tf.stack([cos, -sin, cx - cos * cx + sin * cy,
                                  sin, cos, cy - sin * cx - cos * cy]))


def shear_x(image, factor):
  return _affine(image, tf.stack([1.0, factor, 0.0, 0.0, 1.0, 0.0]))


def shear_y(image, factor):
  return _affine(image, tf.stack([1.0, 0.0, 0.0, factor, 1.0, 0.0]))


def translate_x(image, pixels):
  return _affine(image, tf.stack([1.0, 0.0, pixels, 0.0, 1.0, 0.0]))


def translate_y(image, pixels):
  return _affine(image, tf.stack([1.0, 0.0, 0.0, 0.0, 1.0, pixels]))


def _enhance_factor(level, sign):
  return tf.maximum(0.1, 1.0 + sign * level * 0.9)


# (name, fn(image, level in [0, 1], random sign ±1)), in timm's order.
OPS = (
    ("AutoContrast", lambda im, level, sign: auto_contrast(im)),
    ("Equalize", lambda im, level, sign: equalize(im)),
    ("Invert", lambda im, level, sign: invert(im)),
    ("Rotate", lambda im, level, sign: rotate(im, sign * level * 30.0)),
    ("PosterizeIncreasing",
     lambda im, level, sign: posterize(im, 4 - tf.cast(level * 4.0, tf.int32))),
    ("SolarizeIncreasing",
     lambda im, level, sign: solarize(im, 256 - tf.cast(level * 256.0, tf.int32))),
    ("SolarizeAdd", lambda im, level, sign: solarize_add(im, tf.cast(level * 110.0, tf.int32))),
    ("ColorIncreasing", lambda im, level, sign: color(im, _enhance_factor(level, sign))),
    ("ContrastIncreasing", lambda im, level, sign: contrast(im, _enhance_factor(level, sign))),
    ("BrightnessIncreasing",
     lambda im, level, sign: brightness(im, _enhance_factor(level, sign))),
    ("SharpnessIncreasing", lambda im, level, sign: sharpness(im, _enhance_factor(level, sign))),
    ("ShearX", lambda im, level, sign: shear_x(im, sign * level * 0.3)),
    ("ShearY", lambda im, level, sign: shear_y(im, sign * level * 0.3)),
    ("TranslateXRel", lambda im, level, sign: translate_x(im, sign * level * 0.45 * _width(im))),
    ("TranslateYRel", lambda im, level, sign: translate_y(im, sign * level * 0.45 * _height(im))),
)


def apply_op(image, index, level, sign):
  """Runs OPS[index] (a scalar int32 tensor) on `image`."""
  return tf.switch_case(index, [lambda fn=fn: fn(image, level, sign) for _, fn in OPS])


def rand_augment(image, seed, *, num_layers=2, magnitude=9.0, magnitude_std=0.5, prob=0.5):
  """Applies `num_layers` ops drawn uniformly with replacement, each with probability `prob`.

  Each op's magnitude is drawn from N(magnitude, magnitude_std) clipped to
  [0, 10], and geometric/enhance ops flip direction with probability 1/2, all
  from the stateless `seed` ([2] int), as timm's `rand_augment_transform`.
  """
  for layer_seed in tf.unstack(tf.random.experimental.stateless_split(seed, num_layers)):
    op_seed, apply_seed, level_seed, sign_seed = tf.unstack(
        tf.random.experimental.stateless_split(layer_seed, 4))
    index = tf.random.stateless_uniform([], op_seed, 0, len(OPS), tf.int32)
    level = tf.clip_by_value(
        magnitude + magnitude_std * tf.random.stateless_normal([], level_seed), 0.0, _MAX_LEVEL)
    sign = tf.where(tf.random.stateless_uniform([], sign_seed) < 0.5, -1.0, 1.0)
    image = tf.cond(tf.random.stateless_uniform([], apply_seed) < prob,
                    lambda: apply_op(image, index, level / _MAX_LEVEL, sign),
                    lambda: image)
  return image
