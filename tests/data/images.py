"""Test images that stay recognisable through the pipeline, and damaged ones."""
import io
import os

import numpy as np
from PIL import Image

# Host augmentation off: train batches show the images as written (on the canvas).
NO_AUGMENT = dict(crop_scale=None)


def encode(image: np.ndarray, fmt="png") -> bytes:
  buffer = io.BytesIO()
  Image.fromarray(image).save(buffer, "JPEG" if fmt in ("jpg", "jpeg") else fmt.upper())
  return buffer.getvalue()


def write_image(path, image_id, fmt="png", shape=(12, 16)):
  """Writes an image of constant colour 12 * image_id, which any resize keeps."""
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path, "wb") as f:
    f.write(encode(np.full(shape + (3,), 12 * image_id, np.uint8), fmt))


def image_ids(images):
  """write_image's ids back from uint8 images: packed train crops [N, C * C * 3] or eval crops
  [N, H, W, 3] (both start with the top-left pixel)."""
  images = np.asarray(images)
  return np.round(images.reshape(len(images), -1)[:, :3].mean(-1) / 12).astype(int)


def noise(shape=(48, 64), seed=0):
  return np.random.default_rng(seed).integers(0, 256, shape + (3,), np.uint8)


def damaged_jpeg() -> bytes:
  """A JPEG whose header is intact and whose entropy-coded data is cut in the middle."""
  data = encode(noise(), "jpeg")
  return data[:len(data) // 2]


def damaged_png() -> bytes:
  """A PNG with intact framing (signature, chunks, IEND) and zeroed bytes inside IDAT."""
  data = bytearray(encode(noise(), "png"))
  start = data.index(b"IDAT") + 40
  data[start:start + 20] = bytes(20)
  return bytes(data)


def tiny_tfds(data_dir):
  """Builds `vig_test_images` into data_dir: image id = label + 1 ... (see the builder)."""
  from tests.data import tfds_builder
  tfds_builder.VigTestImages(data_dir=data_dir, file_format="array_record").download_and_prepare()
