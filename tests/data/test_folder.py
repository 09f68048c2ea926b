"""The "folder" source: class sub-folders, splits, per-process shares."""
import itertools
import os

import numpy as np
import pytest

from vig_jax import data
from vig_jax.data import folder
from .images import NO_AUGMENT, image_ids, write_image

CLASSES = ("ant", "bee", "cat")


@pytest.fixture
def flat_folder(tmp_path):
  """12 images, 4 per class (one JPEG), ids 1..12, and a text file."""
  for i in range(12):
    cls = CLASSES[i // 4]
    fmt = "jpeg" if i % 4 == 3 else "png"
    write_image(str(tmp_path / cls / f"img{i}.{fmt}"), i + 1, fmt)
  (tmp_path / "ant" / "notes.txt").write_text("ignored: not an image extension")
  return str(tmp_path)


def test_sizes_and_hold_out(flat_folder):
  info = data.dataset_info(source="folder", folder=flat_folder, eval_fraction=0.25)
  assert (info.num_classes, info.num_train, info.num_eval) == (3, 9, 3)  # one eval per class


def test_labels_are_sorted_class_folders(flat_folder):
  batch = next(data.train_iterator(source="folder", folder=flat_folder, batch_size=9,
                                   image_size=8, seed=0, eval_fraction=0.25, **NO_AUGMENT))
  ids, labels = image_ids(batch["image"]), batch["label"]

  assert labels.dtype == np.int32
  np.testing.assert_array_equal(labels, (ids - 1) // 4)  # ids 1-4: ant, 5-8: bee, 9-12: cat


def test_train_and_eval_shares_partition_the_folder(flat_folder):
  """Over 3 processes the train epochs and eval passes cover every image once."""
  train_ids, eval_ids = [], []
  for p in range(3):
    kwargs = dict(source="folder", folder=flat_folder, image_size=8, process_index=p,
                  process_count=3, eval_fraction=0.25)
    epoch = next(data.train_iterator(batch_size=3, seed=0, **kwargs, **NO_AUGMENT))
    train_ids += list(image_ids(epoch["image"]))
    for batch in data.eval_iterator(batch_size=2, **kwargs):
      eval_ids += list(image_ids(batch["image"])[batch["mask"] == 1])

  assert len(train_ids) == 9 and len(eval_ids) == 3
  assert sorted(train_ids + eval_ids) == list(range(1, 13))


def test_train_val_subfolders(tmp_path):
  for i, (split, cls) in enumerate(itertools.product(("train", "val"), ("x", "y"))):
    write_image(str(tmp_path / split / cls / "a.png"), i + 1)
    write_image(str(tmp_path / split / cls / "b.png"), i + 5)
  scanned = folder.scan(str(tmp_path))

  assert scanned.classes == ("x", "y")
  assert [os.path.relpath(p, tmp_path) for p in scanned.eval.paths] == [
      "val/x/a.png", "val/x/b.png", "val/y/a.png", "val/y/b.png"]
  assert scanned.train.labels == (0, 0, 1, 1)


def test_empty_folder_raises(tmp_path):
  (tmp_path / "empty_class").mkdir()
  with pytest.raises(ValueError, match=f"No images found in {tmp_path}"):
    data.dataset_info(source="folder", folder=str(tmp_path))
  with pytest.raises(ValueError, match="does not exist"):
    data.dataset_info(source="folder", folder=str(tmp_path / "missing"))
