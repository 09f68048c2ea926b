"""The "tfds" source: ArrayRecord datasets read through tfds.data_source, clear errors otherwise."""
import numpy as np
import pytest

from vig_jax import data

from . import tfds_builder
from .images import NO_AUGMENT, image_ids


def test_batches_shares_and_a_damaged_image(tfds_dir):
  """Over 1 or 2 processes: every train image in an epoch, every eval image once; the damaged
  PNG (id 5) is skipped, its neighbour taking its place."""
  source = dict(source="tfds", name="vig_test_images", data_dir=tfds_dir)
  info = data.dataset_info(**source)
  kwargs = dict(source, image_size=8)
  assert (info.num_classes, info.num_train, info.num_eval) == (3, 10, 4)

  for count in (1, 2):
    train_ids, eval_ids, skipped = [], [], 0
    for p in range(count):
      train = data.train_iterator(batch_size=10 // count, seed=0, process_index=p,
                                  process_count=count, **kwargs, **NO_AUGMENT)
      batch = next(train)
      train_ids += list(image_ids(batch["image"]))
      skipped += train.skipped
      np.testing.assert_array_equal(batch["label"], (image_ids(batch["image"]) - 1) % 3)
      for batch in data.eval_iterator(batch_size=3, process_index=p, process_count=count,
                                      **kwargs):
        eval_ids += list(image_ids(batch["image"])[batch["mask"] == 1])
    assert skipped == 1 and len(train_ids) == 10
    assert set(train_ids) == set(range(1, 11)) - {tfds_builder.DAMAGED + 1}
    assert sorted(eval_ids) == [15, 16, 17, 18]


def test_unknown_dataset_raises():
  with pytest.raises(ValueError, match="tfds has no dataset named 'no_such_dataset'"):
    data.dataset_info(source="tfds", name="no_such_dataset")


def test_unprepared_dataset_says_how_to_build_it(tmp_path):
  with pytest.raises(ValueError, match="--file_format=array_record"):
    data.dataset_info(source="tfds", name="mnist", data_dir=str(tmp_path))
