"""Host-side image work, run in the input workers: decoding, crop boxes and the eval resize.

Train images leave the host as unresized uint8 crops (timm's RandomResizedCrop box), which the
pipeline batches onto a fixed square canvas; the accelerator resizes them (`device.resize_crop`,
PIL's antialiased bicubic as matrices). That keeps the costly resize off the CPU and ships uint8,
not float32. Eval images are resized and centre-cropped here, with PIL, as timm does.
"""
import io
import math

import numpy as np
from PIL import Image

_ATTEMPTS = 10  # timm's tries at drawing a crop box that fits


class DecodeError(ValueError):
  """An image that cannot be decoded: anywhere in its data, not only its header."""


def open_image(data: bytes) -> Image.Image:
  """Encoded JPEG/PNG/GIF/BMP/WebP bytes -> a decoded RGB PIL image (gray, palette, RGBA
  converted)."""
  try:
    image = Image.open(io.BytesIO(data))
    image.load()  # decodes all the data: a truncated or damaged stream raises here
  except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
    raise DecodeError(f"{type(e).__name__}: {e}") from None
  return image if image.mode == "RGB" else image.convert("RGB")


def decode(data: bytes) -> np.ndarray:
  """Encoded image bytes -> uint8 [H, W, 3]."""
  return np.asarray(open_image(data))


def crop_box(rng: np.random.Generator, height: int, width: int, *, scale=(0.08, 1.0),
             ratio=(3 / 4, 4 / 3)) -> tuple[int, int, int, int]:
  """timm's RandomResizedCropAndInterpolation.get_params: (top, left, height, width)."""
  area = height * width
  log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
  for _ in range(_ATTEMPTS):
    target = rng.uniform(*scale) * area
    aspect = math.exp(rng.uniform(*log_ratio))
    w = round(math.sqrt(target * aspect))
    h = round(math.sqrt(target / aspect))
    if w <= width and h <= height:
      return int(rng.integers(0, height - h + 1)), int(rng.integers(0, width - w + 1)), h, w
  aspect = width / height  # fallback: the largest centred box with aspect inside `ratio`
  if aspect < min(ratio):
    w, h = width, round(width / min(ratio))
  elif aspect > max(ratio):
    w, h = round(height * max(ratio)), height
  else:
    w, h = width, height
  return (height - h) // 2, (width - w) // 2, h, w


def _resize(image: np.ndarray, height: int, width: int) -> np.ndarray:
  if image.shape[:2] == (height, width):
    return image
  return np.asarray(Image.fromarray(image).resize((width, height), Image.BICUBIC))


def train_crop(image, rng: np.random.Generator, *, max_size: int, image_size: int, scale,
               ratio) -> np.ndarray:
  """A random crop box (the whole image if scale is None) of `image` (PIL or uint8 [H, W, 3]).

  Returns the uint8 crop; one with a side over `max_size` is resized to image_size x image_size
  here (the same PIL resize), which the device's resize then leaves unchanged.
  """
  is_pil = isinstance(image, Image.Image)
  height, width = (image.height, image.width) if is_pil else image.shape[:2]
  top, left, h, w = (crop_box(rng, height, width, scale=scale, ratio=ratio) if scale is not None
                     else (0, 0, height, width))
  if is_pil:  # crop before converting: only the box's pixels are copied out of PIL
    crop = image.crop((left, top, left + w, top + h))
    if h > max_size or w > max_size:
      crop = crop.resize((image_size, image_size), Image.BICUBIC)
    return np.asarray(crop)
  crop = image[top:top + h, left:left + w]
  if h > max_size or w > max_size:
    crop = _resize(np.ascontiguousarray(crop), image_size, image_size)
  return crop


def resize_center_crop(image: np.ndarray, size: int, crop_pct: float = 0.875) -> np.ndarray:
  """timm's eval transform: shorter side to floor(size / crop_pct) (bicubic), centre size x size."""
  height, width = image.shape[:2]
  short = math.floor(size / crop_pct)
  new_h, new_w = short * height // min(height, width), short * width // min(height, width)
  image = _resize(image, new_h, new_w)
  top, left = round((new_h - size) / 2), round((new_w - size) / 2)  # torchvision's CenterCrop
  return image[top:top + size, left:left + size]
