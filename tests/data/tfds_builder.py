"""`vig_test_images`: a tiny tfds dataset in ArrayRecord format, built without tensorflow.

Images are given pre-encoded (PNG bytes), so building needs no tensorflow either. Train example i
is write_image's id i + 1 (labels i mod 3); validation example i is id 15 + i. Train example 4
is a damaged PNG.
"""
import io

import numpy as np
import tensorflow_datasets as tfds

from tests.data.images import damaged_png, encode

NUM_TRAIN, NUM_EVAL, DAMAGED = 10, 4, 4


def _png(image_id):
  return encode(np.full((12, 16, 3), 12 * image_id, np.uint8))


class VigTestImages(tfds.core.GeneratorBasedBuilder):
  VERSION = tfds.core.Version("1.0.0")

  def _info(self):
    return self.dataset_info_from_configs(
        features=tfds.features.FeaturesDict({
            "image": tfds.features.Image(shape=(None, None, 3)),
            "label": tfds.features.ClassLabel(num_classes=3)}),
        supervised_keys=("image", "label"))

  def _split_generators(self, dl_manager):
    del dl_manager
    return {"train": self._generate_examples(range(1, NUM_TRAIN + 1)),
            "validation": self._generate_examples(range(15, 15 + NUM_EVAL))}

  def _generate_examples(self, ids):
    for image_id in ids:
      data = damaged_png() if image_id == DAMAGED + 1 else _png(image_id)
      yield image_id, {"image": io.BytesIO(data), "label": (image_id - 1) % 3}
