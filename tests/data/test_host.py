"""Host transforms against PIL (what timm calls): decode, crop boxes, canvases, eval resize."""
import math

import numpy as np
import pytest
from PIL import Image

from vig_jax.data import host

from .images import damaged_jpeg, damaged_png, encode, noise


@pytest.mark.parametrize("fmt", ["png", "jpeg", "bmp", "webp", "gif"])
def test_decode_gives_rgb_uint8(fmt):
  image = noise((10, 14))
  out = host.decode(encode(image, fmt))

  assert out.shape == (10, 14, 3) and out.dtype == np.uint8
  if fmt in ("png", "bmp"):
    np.testing.assert_array_equal(out, image)


def test_decode_converts_gray_and_rgba():
  gray = noise((6, 5))[..., 0]
  np.testing.assert_array_equal(host.decode(encode(gray)), np.repeat(gray[..., None], 3, -1))
  rgba = np.concatenate([noise((6, 5)), np.full((6, 5, 1), 7, np.uint8)], -1)
  np.testing.assert_array_equal(host.decode(encode(rgba)), rgba[..., :3])


@pytest.mark.parametrize("data", [damaged_jpeg(), damaged_png(), b"<html>not an image</html>",
                                  b""], ids=["jpeg", "png", "text", "empty"])
def test_damaged_data_raises_decode_error(data):
  with pytest.raises(host.DecodeError):
    host.decode(data)


def _timm_box(rng, height, width, scale, ratio):
  """timm's RandomResizedCropAndInterpolation.get_params, with `rng` for `random`."""
  area = height * width
  for _ in range(10):
    target_area = rng.uniform(*scale) * area
    aspect = math.exp(rng.uniform(math.log(ratio[0]), math.log(ratio[1])))
    w, h = int(round(math.sqrt(target_area * aspect))), int(round(math.sqrt(target_area / aspect)))
    if w <= width and h <= height:
      return int(rng.integers(0, height - h + 1)), int(rng.integers(0, width - w + 1)), h, w
  in_ratio = width / height
  if in_ratio < min(ratio):
    w, h = width, int(round(width / min(ratio)))
  elif in_ratio > max(ratio):
    h, w = height, int(round(height * max(ratio)))
  else:
    w, h = width, height
  return (height - h) // 2, (width - w) // 2, h, w


@pytest.mark.parametrize("shape,scale,ratio", [((300, 400), (0.08, 1.0), (3 / 4, 4 / 3)),
                                               ((32, 32), (0.35, 1.0), (3 / 4, 4 / 3)),
                                               ((32, 96), (1.0, 1.0), (1.0, 1.0)),  # fallback
                                               ((96, 20), (0.9, 1.0), (3 / 4, 4 / 3))])
def test_crop_box_is_timms(shape, scale, ratio):
  for seed in range(20):
    got = host.crop_box(np.random.default_rng(seed), *shape, scale=scale, ratio=ratio)
    want = _timm_box(np.random.default_rng(seed), *shape, scale, ratio)
    assert got == want
    top, left, h, w = got
    assert 0 <= top and top + h <= shape[0] and 0 <= left and left + w <= shape[1]


@pytest.mark.parametrize("as_pil", [False, True])
def test_train_crop_is_the_box(as_pil):
  image = noise((40, 50))
  source = Image.fromarray(image) if as_pil else image
  crop = host.train_crop(source, np.random.default_rng(3), max_size=64, image_size=32,
                         scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3))
  top, left, h, w = host.crop_box(np.random.default_rng(3), 40, 50)

  assert crop.dtype == np.uint8
  np.testing.assert_array_equal(crop, image[top:top + h, left:left + w])


@pytest.mark.parametrize("as_pil", [False, True])
def test_train_crop_larger_than_max_size_is_resized_on_the_host(as_pil):
  image = noise((100, 120))
  source = Image.fromarray(image) if as_pil else image
  crop = host.train_crop(source, np.random.default_rng(0), max_size=40, image_size=24,
                         scale=None, ratio=(3 / 4, 4 / 3))

  np.testing.assert_array_equal(crop, np.asarray(Image.fromarray(image).resize((24, 24),
                                                                               Image.BICUBIC)))


def test_resize_center_crop_is_timms_eval_transform():
  image = noise((64, 128))
  out = host.resize_center_crop(image, 28, crop_pct=0.875)
  # Shorter side 64 -> floor(28 / 0.875) = 32, so 128 -> 64; centre 28 x 28 at (2, 18).
  resized = np.asarray(Image.fromarray(image).resize((64, 32), Image.BICUBIC))

  np.testing.assert_array_equal(out, resized[2:30, 18:46])
  np.testing.assert_array_equal(host.resize_center_crop(image[:32, :32], 32, 1.0), image[:32, :32])
