"""Test images that stay recognisable through the pipeline."""
import os

import numpy as np

from vig_jax.data import augment
from vig_jax.data.tf_cpu import tf

# Augmentation off: train batches show the images as written.
NO_AUGMENT = dict(crop_scale=None, hflip=False, randaugment_layers=0, erase_prob=0)


def write_image(path, image_id, fmt="png", shape=(12, 16)):
  """Writes an image of constant colour 12 * image_id, which any resize keeps."""
  os.makedirs(os.path.dirname(path), exist_ok=True)
  image = tf.fill(shape + (3,), tf.constant(12 * image_id, tf.uint8))
  tf.io.write_file(path, tf.io.encode_png(image) if fmt == "png" else tf.io.encode_jpeg(image))


def image_ids(images):
  """write_image's ids back from normalised [N, H, W, 3] images."""
  pixels = np.asarray(images) * np.array(augment.IMAGENET_STD) + np.array(augment.IMAGENET_MEAN)
  return np.round(pixels.mean(axis=(1, 2, 3)) * 255 / 12).astype(int)
