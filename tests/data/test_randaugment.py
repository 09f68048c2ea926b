"""RandAugment ops against PIL (what timm's ops call) and the policy's randomness."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image, ImageEnhance, ImageOps

from vig_jax.data import randaugment as ra

from .images import noise


def _image(seed=0, size=(24, 20)):
  return noise(size, seed)


def _ours(fn, image, *args):
  return np.asarray(jax.jit(fn)(jnp.asarray(image, jnp.float32), *args)).astype(np.uint8)


def _pil(fn, image, *args):
  return np.asarray(fn(Image.fromarray(image), *args))


PIXEL_OPS = [  # (ours, PIL, argument)
    (ra.auto_contrast, ImageOps.autocontrast, None),
    (ra.equalize, ImageOps.equalize, None),
    (ra.invert, ImageOps.invert, None),
    (ra.posterize, ImageOps.posterize, 2),
    (ra.solarize, ImageOps.solarize, 100),
    (ra.color, lambda im, f: ImageEnhance.Color(im).enhance(f), 1.7),
    (ra.color, lambda im, f: ImageEnhance.Color(im).enhance(f), 0.3),
    (ra.contrast, lambda im, f: ImageEnhance.Contrast(im).enhance(f), 1.8),
    (ra.contrast, lambda im, f: ImageEnhance.Contrast(im).enhance(f), 0.2),
    (ra.brightness, lambda im, f: ImageEnhance.Brightness(im).enhance(f), 1.5),
    (ra.brightness, lambda im, f: ImageEnhance.Brightness(im).enhance(f), 0.4),
    (ra.sharpness, lambda im, f: ImageEnhance.Sharpness(im).enhance(f), 1.9),
    (ra.sharpness, lambda im, f: ImageEnhance.Sharpness(im).enhance(f), 0.1),
]


@pytest.mark.parametrize("ours,pil,arg", PIXEL_OPS, ids=lambda x: getattr(x, "__name__", str(x)))
def test_pixel_ops_match_pil(ours, pil, arg):
  image = _image()
  args = () if arg is None else (arg,)
  diff = np.abs(_ours(ours, image, *args).astype(int) - _pil(pil, image, *args))
  assert diff.max() <= 1 and (diff > 0).mean() < 0.02, (diff.max(), (diff > 0).mean())


def test_equalize_matches_pil_on_a_narrow_histogram():
  x = np.stack([np.linspace(50, 100, 1024).reshape(32, 32)] * 3, -1).astype(np.uint8)
  np.testing.assert_array_equal(_ours(ra.equalize, x), _pil(ImageOps.equalize, x))


def test_posterize_to_zero_bits_is_black():  # level 10; Pillow >= 12 refuses bits=0
  np.testing.assert_array_equal(_ours(ra.posterize, _image(), 0), np.zeros_like(_image()))


def test_solarize_add_follows_timm():
  x = np.array([[[0, 100, 255], [127, 128, 200]]], np.uint8)
  np.testing.assert_array_equal(_ours(ra.solarize_add, x, 110),
                                [[[110, 210, 255], [237, 128, 200]]])


def _warped(matrix_fn):
  return lambda image, arg: ra.warp(image, matrix_fn(arg))


@pytest.mark.parametrize("op,arg,pil_matrix", [
    (ra.translate_x, 3.0, (1, 0, 3, 0, 1, 0)), (ra.translate_y, -2.0, (1, 0, 0, 0, 1, -2)),
    (ra.shear_x, 0.25, (1, 0.25, 0, 0, 1, 0)), (ra.shear_y, -0.2, (1, 0, 0, -0.2, 1, 0))])
def test_affine_ops_match_pil_inside_the_image(op, arg, pil_matrix):
  """timm: img.transform(size, AFFINE, matrix, fillcolor); we resample bilinearly."""
  image = _image(size=(16, 20))
  want = np.asarray(Image.fromarray(image).transform((20, 16), Image.AFFINE, pil_matrix,
                                                     Image.BILINEAR, fillcolor=ra.FILL))
  got = _ours(_warped(op), image, arg)
  # Pixels whose source lies well inside the image: PIL and ours interpolate the same points.
  ys, xs = np.mgrid[0:16, 0:20] + 0.5
  a, b, c, d, e, f = pil_matrix
  sx, sy = a * xs + b * ys + c, d * xs + e * ys + f
  inner = (sx > 1) & (sx < 19) & (sy > 1) & (sy < 15)
  assert np.abs(got.astype(int) - want)[inner].max() <= 1
  np.testing.assert_array_equal(got[~((sx > -0.5) & (sx < 20.5) & (sy > -0.5) & (sy < 16.5))],
                                np.broadcast_to(ra.FILL, got.shape)[~((sx > -0.5) & (sx < 20.5) &
                                                                     (sy > -0.5) & (sy < 16.5))])


def test_rotate_matches_pil():
  image = _image(size=(20, 20))
  rotate = _warped(lambda degrees: ra.rotation(image.shape, degrees))
  for degrees in (0.0, 90.0, 180.0):
    want = _pil(lambda im, d: im.rotate(d, Image.BILINEAR, fillcolor=ra.FILL), image, degrees)
    np.testing.assert_array_equal(_ours(rotate, image, degrees), want)
  got, want = _ours(rotate, image, 17.0), _pil(
      lambda im: im.rotate(17.0, Image.BILINEAR, fillcolor=ra.FILL), image)
  assert np.abs(got.astype(int) - want)[5:15, 5:15].max() <= 1


def test_sharpness_keeps_the_border_and_smooths_inside():
  """The 3x3 window sum against a direct loop over PIL's SMOOTH kernel (centre weight 5)."""
  image = _image(size=(9, 7)).astype(np.float64)
  got = _ours(ra.sharpness, image.astype(np.uint8), 0.0)  # factor 0: the smoothed image itself
  want = image.copy()
  for y in range(1, 8):
    for x in range(1, 6):
      want[y, x] = np.floor((image[y - 1:y + 2, x - 1:x + 2].sum(axis=(0, 1)) + 4 * image[y, x])
                            / 13 + 0.5)
  np.testing.assert_array_equal(got, want)


def test_every_op_runs_through_switch():
  image = jnp.asarray(_image(), jnp.float32)
  switch = jax.jit(ra.apply_op)
  for index, (_, kind, fn) in enumerate(ra.OPS):
    direct = jax.jit(fn if kind == "pixel" else
                     lambda im, level, sign, fn=fn: ra.warp(im, fn(im.shape, level, sign)))
    for level, sign in ((0.0, 1.0), (0.9, -1.0), (1.0, 1.0)):
      out = switch(image, index, level, sign)
      assert out.shape == image.shape and out.dtype == jnp.float32
      # Equal up to float rounding at .5 between the fused and the standalone program.
      np.testing.assert_allclose(out, direct(image, level, sign), atol=1)
      assert (out == jnp.round(out)).all() and out.min() >= 0 and out.max() <= 255


def test_rand_augment_is_deterministic_per_key():
  image = jnp.asarray(_image(), jnp.float32)
  fn = jax.jit(lambda key, prob: ra.rand_augment(key, image, prob=prob))
  outs = [np.asarray(fn(jax.random.key(i), 0.5)) for i in range(8)]

  np.testing.assert_array_equal(outs[0], fn(jax.random.key(0), 0.5))
  assert len({o.tobytes() for o in outs}) > 4  # different keys, different ops
  np.testing.assert_array_equal(fn(jax.random.key(0), 0.0), image)
