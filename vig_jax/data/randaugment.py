"""timm's RandAugment "rand-m9-mstd0.5-inc1" in jnp ops, per image (vmap it over a batch).

Images are float32 [H, W, 3] holding uint8 values (0..255 integers); every op returns the same.
Ops and magnitude-to-argument maps follow timm's `_RAND_INCREASING_TRANSFORMS` (the "inc1"
variants, where a larger magnitude always means a stronger change) and the PIL functions they
call. One deliberate difference: geometric ops resample bilinearly (timm: bicubic in DeiT).
Under vmap `lax.switch` evaluates every branch and selects, so the five geometric ops share one
branch: each gives an affine matrix, and a single `warp` resamples with the one chosen.
"""
import math

import jax
import jax.numpy as jnp

# timm fills the area uncovered by geometric ops with round(255 * ImageNet mean).
FILL = (124, 116, 104)
_MAX_LEVEL = 10.0


def _to_pixels(x):
  return jnp.clip(jnp.floor(x), 0.0, 255.0)


def _blend(degenerate, image, factor):
  """PIL ImageEnhance: factor 0 gives `degenerate`, 1 the image, >1 extrapolates."""
  return _to_pixels(degenerate + factor * (image - degenerate))


def _grayscale(image):
  """PIL's "L" conversion (ITU-R 601-2 luma, its integer rounding), [H, W, 1]."""
  r, g, b = image[..., 0], image[..., 1], image[..., 2]
  return jnp.floor((r * 19595 + g * 38470 + b * 7471 + 32768) / 65536)[..., None]


def auto_contrast(image):
  """PIL ImageOps.autocontrast: stretches each channel to the full 0..255 range."""
  lo, hi = jnp.min(image, axis=(0, 1)), jnp.max(image, axis=(0, 1))
  scale = jnp.where(hi > lo, 255.0 / jnp.maximum(hi - lo, 1.0), 1.0)
  offset = jnp.where(hi > lo, -lo * scale, 0.0)
  return _to_pixels(image * scale + offset)


def _equalize_channel(channel):
  """PIL ImageOps.equalize on one channel of uint8 values."""
  values = channel.astype(jnp.int32).ravel()
  hist = jnp.zeros(256, jnp.int32).at[values].add(1)
  step = (values.size - hist[jnp.max(values)]) // 255  # the top value's count is left out
  lut = jnp.clip((jnp.cumsum(hist) - hist + step // 2) // jnp.maximum(step, 1), 0, 255)
  return jnp.where(step > 0, lut[channel.astype(jnp.int32)].astype(channel.dtype), channel)


def equalize(image):
  return jnp.stack([_equalize_channel(image[..., c]) for c in range(3)], -1)


def invert(image):
  return 255.0 - image


def posterize(image, bits):
  """Keeps the top `bits` bits of every value (bits 0 gives black)."""
  unit = 2.0 ** (8 - bits)
  return jnp.floor(image / unit) * unit


def solarize(image, threshold):
  return jnp.where(image >= threshold, 255.0 - image, image)


def solarize_add(image, addition, threshold=128):
  return jnp.where(image < threshold, jnp.minimum(image + addition, 255.0), image)


def color(image, factor):
  return _blend(jnp.broadcast_to(_grayscale(image), image.shape), image, factor)


def contrast(image, factor):
  mean = jnp.floor(jnp.mean(_grayscale(image)) + 0.5)
  return _blend(jnp.full_like(image, mean), image, factor)


def brightness(image, factor):
  return _blend(jnp.zeros_like(image), image, factor)


def sharpness(image, factor):
  """Blends with PIL's SMOOTH filter output; as in PIL, the 1-pixel border is kept."""
  h, w = image.shape[:2]
  # Sums of integers below 2^24: exact in float32, in any order.
  window = jax.lax.reduce_window(image, 0.0, jax.lax.add, (3, 3, 1), (1, 1, 1), "SAME")
  smooth = jnp.floor((window + 4.0 * image) / 13.0 + 0.5)
  ys, xs = jnp.arange(h)[:, None, None], jnp.arange(w)[None, :, None]
  border = (ys == 0) | (ys == h - 1) | (xs == 0) | (xs == w - 1)
  return _blend(jnp.where(border, image, smooth), image, factor)


def warp(image, matrix):
  """PIL's AFFINE transform, bilinear: output pixel (x, y) samples input (a x + b y + c,
  d x + e y + f); `matrix` is (a, b, c, d, e, f).

  Coordinates as PIL's, pixel centres at +0.5. Input pixels outside the image weigh nothing; the
  weight they would have had is filled with FILL.
  """
  a, b, c, d, e, f = matrix
  h, w = image.shape[:2]
  ys, xs = jnp.meshgrid(jnp.arange(h) + 0.5, jnp.arange(w) + 0.5, indexing="ij")
  sx, sy = a * xs + b * ys + c - 0.5, d * xs + e * ys + f - 0.5  # in pixel-index units
  x0, y0 = jnp.floor(sx), jnp.floor(sy)
  out, covered = jnp.zeros_like(image), jnp.zeros((h, w, 1))
  for dy in (0, 1):
    for dx in (0, 1):
      xi, yi = x0 + dx, y0 + dy
      weight = (1.0 - jnp.abs(sx - xi)) * (1.0 - jnp.abs(sy - yi))
      inside = (xi >= 0) & (xi < w) & (yi >= 0) & (yi < h)
      weight = jnp.where(inside, weight, 0.0)[..., None]
      pixel = image[jnp.clip(yi, 0, h - 1).astype(jnp.int32),
                    jnp.clip(xi, 0, w - 1).astype(jnp.int32)]
      out, covered = out + weight * pixel, covered + weight
  return jnp.clip(jnp.floor(out + (1.0 - covered) * jnp.array(FILL, jnp.float32) + 0.5), 0.0, 255.0)


# The geometric ops as the `warp` matrices timm passes to PIL.
def rotation(shape, degrees):
  """Counter-clockwise about the centre of an image of `shape`, as PIL's Image.rotate."""
  theta = degrees * (math.pi / 180.0)
  cos, sin = jnp.cos(theta), jnp.sin(theta)
  cx, cy = shape[1] / 2.0, shape[0] / 2.0
  return (cos, -sin, cx - cos * cx + sin * cy, sin, cos, cy - sin * cx - cos * cy)


def shear_x(factor):
  return (1.0, factor, 0.0, 0.0, 1.0, 0.0)


def shear_y(factor):
  return (1.0, 0.0, 0.0, factor, 1.0, 0.0)


def translate_x(pixels):
  return (1.0, 0.0, pixels, 0.0, 1.0, 0.0)


def translate_y(pixels):
  return (1.0, 0.0, 0.0, 0.0, 1.0, pixels)


def _enhance_factor(level, sign):
  return jnp.maximum(0.1, 1.0 + sign * level * 0.9)


def _int(x):
  return jnp.floor(x)  # timm's int() of a non-negative level


# (name, kind, fn(image or its shape, level in [0, 1], random sign ±1)), in timm's order. A
# "pixel" op returns the new image; a "warp" op, given the image's shape, returns its matrix.
OPS = (
    ("AutoContrast", "pixel", lambda im, level, sign: auto_contrast(im)),
    ("Equalize", "pixel", lambda im, level, sign: equalize(im)),
    ("Invert", "pixel", lambda im, level, sign: invert(im)),
    ("Rotate", "warp", lambda shape, level, sign: rotation(shape, sign * level * 30.0)),
    ("PosterizeIncreasing", "pixel", lambda im, level, sign: posterize(im, 4 - _int(level * 4.0))),
    ("SolarizeIncreasing", "pixel",
     lambda im, level, sign: solarize(im, 256 - _int(level * 256.0))),
    ("SolarizeAdd", "pixel", lambda im, level, sign: solarize_add(im, _int(level * 110.0))),
    ("ColorIncreasing", "pixel", lambda im, level, sign: color(im, _enhance_factor(level, sign))),
    ("ContrastIncreasing", "pixel",
     lambda im, level, sign: contrast(im, _enhance_factor(level, sign))),
    ("BrightnessIncreasing", "pixel",
     lambda im, level, sign: brightness(im, _enhance_factor(level, sign))),
    ("SharpnessIncreasing", "pixel",
     lambda im, level, sign: sharpness(im, _enhance_factor(level, sign))),
    ("ShearX", "warp", lambda shape, level, sign: shear_x(sign * level * 0.3)),
    ("ShearY", "warp", lambda shape, level, sign: shear_y(sign * level * 0.3)),
    ("TranslateXRel", "warp",
     lambda shape, level, sign: translate_x(sign * level * 0.45 * shape[1])),
    ("TranslateYRel", "warp",
     lambda shape, level, sign: translate_y(sign * level * 0.45 * shape[0])),
)
_PIXEL = [i for i, (_, kind, _) in enumerate(OPS) if kind == "pixel"]
_WARP = [i for i, (_, kind, _) in enumerate(OPS) if kind == "warp"]
# Per op index: its branch (the pixel ops, then the one warp) and its matrix among the warps.
_BRANCH = tuple(_PIXEL.index(i) if i in _PIXEL else len(_PIXEL) for i in range(len(OPS)))
_MATRIX = tuple(_WARP.index(i) if i in _WARP else 0 for i in range(len(OPS)))


def apply_op(image, index, level, sign):
  """Runs OPS[index] (a scalar int) on `image`: a switch over the pixel ops and one warp, whose
  matrix is the op's among the geometric ops' (six scalars each, all computed)."""
  matrices = jnp.asarray([OPS[i][2](image.shape, level, sign) for i in _WARP], jnp.float32)
  matrix = matrices[jnp.asarray(_MATRIX)[index]]
  branches = [lambda im, fn=OPS[i][2]: fn(im, level, sign) for i in _PIXEL]
  branches.append(lambda im: warp(im, matrix))
  return jax.lax.switch(jnp.asarray(_BRANCH)[index], branches, image)


def rand_augment(rng, image, *, num_layers=2, magnitude=9.0, magnitude_std=0.5, prob=0.5):
  """Applies `num_layers` ops drawn uniformly with replacement, each with probability `prob`.

  Each op's magnitude is drawn from N(magnitude, magnitude_std) clipped to [0, 10], and
  geometric/enhance ops flip direction with probability 1/2, as timm's `rand_augment_transform`.
  """
  for layer_rng in jax.random.split(rng, num_layers):
    op_rng, apply_rng, level_rng, sign_rng = jax.random.split(layer_rng, 4)
    index = jax.random.randint(op_rng, (), 0, len(OPS))
    level = jnp.clip(magnitude + magnitude_std * jax.random.normal(level_rng), 0.0, _MAX_LEVEL)
    sign = jnp.where(jax.random.uniform(sign_rng) < 0.5, -1.0, 1.0)
    image = jnp.where(jax.random.uniform(apply_rng) < prob,
                      apply_op(image, index, level / _MAX_LEVEL, sign), image)
  return image
