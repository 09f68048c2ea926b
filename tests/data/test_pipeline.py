"""train_iterator / eval_iterator: determinism, resume, workers, eval padding, bad files."""
import itertools
import logging
import os

import numpy as np
import pytest

from vig_jax import data
from vig_jax.data import digits

from .images import NO_AUGMENT, damaged_jpeg, damaged_png, image_ids, write_image


def _batches(iterator, n):
  return list(itertools.islice(iterator, n))


def _assert_same(batches, others):
  assert len(batches) == len(others)
  for batch, other in zip(batches, others):
    assert batch.keys() == other.keys()
    for key in batch:
      np.testing.assert_array_equal(batch[key], other[key])


@pytest.fixture
def folder_source(tmp_path):
  for i in range(10):
    write_image(str(tmp_path / f"class{i % 2}" / f"{i}.png"), i + 1, shape=(20, 28))
  return dict(source="folder", folder=str(tmp_path), eval_fraction=0.0)


@pytest.fixture
def digits_source():
  # Process 1 of 4 holds 374 train examples, so its stream of 64-example
  # batches crosses an epoch boundary in step 5.
  return dict(source="digits", process_index=1, process_count=4)


@pytest.mark.parametrize("source", ["folder_source", "digits_source"])
def test_resume_matches_uninterrupted_stream(source, request):
  kwargs = dict(request.getfixturevalue(source), batch_size=64, image_size=16, seed=3)
  uninterrupted = _batches(data.train_iterator(**kwargs), 8)
  resumed = _batches(data.train_iterator(start_step=5, **kwargs), 3)

  _assert_same(resumed, uninterrupted[5:])
  first = uninterrupted[0]
  assert first["image"].shape == (64, 32 * 32 * 3) and first["image"].dtype == np.uint8
  assert first["crop_size"].shape == (64, 2) and first["label"].dtype == np.int32
  assert not np.array_equal(first["image"], uninterrupted[1]["image"])
  other_seed = next(data.train_iterator(**{**kwargs, "seed": 4}))
  assert not np.array_equal(other_seed["image"], first["image"])


def test_batches_do_not_depend_on_the_worker_count(folder_source):
  kwargs = dict(folder_source, batch_size=4, image_size=16, seed=1)
  in_process = _batches(data.train_iterator(num_workers=0, **kwargs), 6)
  workers = data.train_iterator(num_workers=2, start_step=2, **kwargs)

  _assert_same(_batches(workers, 4), in_process[2:])
  _assert_same(list(data.eval_iterator(num_workers=2, batch_size=3, image_size=8, **folder_source)),
               list(data.eval_iterator(num_workers=0, batch_size=3, image_size=8, **folder_source)))


def test_folder_epochs_are_permutations(folder_source):
  """Each epoch shows every image once, in a new order."""
  batch = next(data.train_iterator(batch_size=30, image_size=8, seed=0,
                                   **{**folder_source, **NO_AUGMENT}))
  epochs = image_ids(batch["image"]).reshape(3, 10)

  for epoch in epochs:
    assert sorted(epoch) == list(range(1, 11))
  assert len({tuple(epoch) for epoch in epochs}) == 3
  assert (batch["crop_size"] == 8).all()  # 20 x 28 exceeds the 16 x 16 canvas: resized on the host


@pytest.mark.parametrize("process_count", [1, 3])
def test_eval_counts_every_example_once(process_count):
  """300 validation examples: 100 per process, in 2 batches of 64 with 28 padded."""
  labels, num_batches = [], set()
  for p in range(process_count):
    batches = list(data.eval_iterator(source="digits", batch_size=64, image_size=32,
                                      process_index=p, process_count=process_count))
    num_batches.add(len(batches))
    for batch in batches:
      assert batch["image"].shape == (64, 32, 32, 3) and batch["image"].dtype == np.uint8
      assert batch["mask"].dtype == np.float32
      assert (batch["image"][batch["mask"] == 0] == 0).all()
      labels += list(batch["label"][batch["mask"] == 1])

  assert num_batches == {-(-300 // process_count // 64)}  # lockstep across processes
  all_labels = digits.load()[1]
  want = all_labels[digits.split_indices(all_labels)[1]]
  np.testing.assert_array_equal(np.bincount(labels, minlength=10), np.bincount(want, minlength=10))


def test_undecodable_files_are_skipped_counted_and_named(tmp_path, caplog):
  """Header intact, compressed data damaged: train replaces them, eval masks them."""
  for i in range(6):
    write_image(str(tmp_path / "train" / f"c{i % 2}" / f"{i}.png"), i + 1)
    write_image(str(tmp_path / "val" / f"c{i % 2}" / f"{i}.png"), i + 11)
  (tmp_path / "train" / "c0" / "0.png").write_bytes(damaged_png())
  (tmp_path / "train" / "c1" / "bad.jpg").write_bytes(damaged_jpeg())
  (tmp_path / "val" / "c0" / "bad.jpg").write_bytes(damaged_jpeg())
  source = dict(source="folder", folder=str(tmp_path), **NO_AUGMENT)
  caplog.set_level(logging.WARNING)

  train = data.train_iterator(batch_size=7, image_size=8, seed=0, **source)  # one epoch a step
  batches = _batches(train, 3)
  for batch in batches:  # 7 positions, 2 damaged files replaced by their next neighbours
    assert sorted(set(image_ids(batch["image"]))) == [2, 3, 4, 5, 6]
  # Per epoch 3 failed reads: 0.png, bad.jpg and 0.png again as bad.jpg's (the last file's) next.
  assert train.skipped == 9
  assert "0.png, which does not decode" in caplog.text and "bad.jpg" in caplog.text
  assert "9 train images skipped so far" in caplog.text
  _assert_same(_batches(data.train_iterator(start_step=2, batch_size=7, image_size=8, seed=0,
                                            **source), 1), batches[2:])

  evaluation = data.eval_iterator(batch_size=4, image_size=8, **source)
  kept = [i for b in evaluation for i in image_ids(b["image"])[b["mask"] == 1]]
  assert sorted(kept) == list(range(11, 17)) and evaluation.skipped == 1
  assert os.path.join("val", "c0", "bad.jpg") in caplog.text


def test_synthetic_batches():
  kwargs = dict(source="synthetic", batch_size=4, image_size=8, num_classes=5, num_eval=14)
  train = _batches(data.train_iterator(seed=0, **kwargs), 6)

  assert train[0]["image"].shape == (4, 8 * 8 * 3) and train[0]["image"].dtype == np.uint8
  assert (train[0]["crop_size"] == 8).all()
  assert train[0]["label"].dtype == np.int32 and train[0]["label"].max() < 5
  _assert_same(_batches(data.train_iterator(seed=0, start_step=2, **kwargs), 4), train[2:])
  masks = [[b["mask"].sum() for b in data.eval_iterator(process_index=p, process_count=3,
                                                        **kwargs)] for p in range(3)]
  assert masks == [[4, 1], [4, 1], [4, 0]]  # shares of 5, 5 and 4 examples
  assert data.dataset_info(source="synthetic", num_classes=5).num_classes == 5


@pytest.mark.parametrize("kwargs,message", [
    (dict(source="digits", crop_scal=(0.5, 1.0)),
     "config.input has no key 'crop_scal'; did you mean 'crop_scale'?"),
    (dict(source="digits", colour_jitter=0.4), "config.input has no key 'colour_jitter'."),
    (dict(source="nope"), "Unknown data source 'nope'")])
def test_bad_input_config_is_a_one_line_error(kwargs, message):
  with pytest.raises(ValueError) as e:
    data.dataset_info(**kwargs)
  assert message in str(e.value) and "\n" not in str(e.value)
