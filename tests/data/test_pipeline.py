"""train_iterator / eval_iterator contracts: determinism, resume, eval padding."""
import itertools
import pathlib
import subprocess
import sys

import numpy as np
import pytest

from vig_jax import data
from vig_jax.data import digits

from .images import NO_AUGMENT, image_ids, write_image


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
def digits_source(digits_dir):
  # Process 1 of 4 holds 374 train examples, so its stream of 64-example
  # batches crosses an epoch boundary in step 5.
  return dict(source="digits", data_dir=digits_dir, process_index=1, process_count=4)


@pytest.mark.parametrize("source", ["folder_source", "digits_source"])
def test_resume_matches_uninterrupted_stream(source, request):
  kwargs = dict(request.getfixturevalue(source), batch_size=64, image_size=16, seed=3)
  uninterrupted = _batches(data.train_iterator(**kwargs), 8)
  resumed = _batches(data.train_iterator(start_step=5, **kwargs), 3)

  _assert_same(resumed, uninterrupted[5:])
  assert not np.array_equal(uninterrupted[0]["image"], uninterrupted[1]["image"])
  other_seed = next(data.train_iterator(**{**kwargs, "seed": 4}))
  assert not np.array_equal(other_seed["image"], uninterrupted[0]["image"])


def test_folder_epochs_are_permutations(folder_source):
  """Each epoch shows every image once, in a new order."""
  batch = next(data.train_iterator(batch_size=30, image_size=8, seed=0, **folder_source,
                                   **NO_AUGMENT))
  epochs = image_ids(batch["image"]).reshape(3, 10)

  for epoch in epochs:
    assert sorted(epoch) == list(range(1, 11))
  assert len({tuple(epoch) for epoch in epochs}) == 3


@pytest.mark.parametrize("process_count", [1, 3])
def test_eval_counts_every_example_once(digits_dir, process_count):
  """300 validation examples: 100 per process, in 2 batches of 64 with 28 padded."""
  labels, num_batches = [], set()
  for p in range(process_count):
    batches = list(data.eval_iterator(source="digits", data_dir=digits_dir, batch_size=64,
                                      image_size=32, process_index=p,
                                      process_count=process_count))
    num_batches.add(len(batches))
    for batch in batches:
      assert batch["image"].shape == (64, 32, 32, 3) and batch["mask"].dtype == np.float32
      assert (batch["image"][batch["mask"] == 0] == 0).all()
      labels += list(batch["label"][batch["mask"] == 1])

  assert num_batches == {-(-300 // process_count // 64)}  # lockstep across processes
  all_labels = digits.load()[1]
  want = all_labels[digits.split_indices(all_labels)[1]]
  np.testing.assert_array_equal(np.bincount(labels, minlength=10), np.bincount(want, minlength=10))


def test_synthetic_batches():
  kwargs = dict(source="synthetic", batch_size=4, image_size=8, num_classes=5, num_eval=14)
  train = _batches(data.train_iterator(seed=0, **kwargs), 6)

  assert train[0]["image"].shape == (4, 8, 8, 3) and train[0]["image"].dtype == np.float32
  assert train[0]["label"].dtype == np.int32 and train[0]["label"].max() < 5
  _assert_same(_batches(data.train_iterator(seed=0, start_step=2, **kwargs), 4), train[2:])
  masks = [[b["mask"].sum() for b in data.eval_iterator(process_index=p, process_count=3,
                                                        **kwargs)] for p in range(3)]
  assert masks == [[4, 1], [4, 1], [4, 0]]  # shares of 5, 5 and 4 examples
  assert data.dataset_info(source="synthetic", num_classes=5).num_classes == 5


def test_synthetic_source_needs_no_tensorflow():
  code = """
import sys
sys.modules["tensorflow"] = sys.modules["tensorflow_datasets"] = None  # make importing them fail
from vig_jax import data
batch = next(data.train_iterator(source="synthetic", batch_size=2, image_size=4, seed=0))
next(data.eval_iterator(source="synthetic", batch_size=2, image_size=4))
print(batch["image"].shape)
"""
  result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=pathlib.Path(__file__).parents[2], check=False)
  assert result.returncode == 0, result.stderr
  assert result.stdout.strip() == "(2, 4, 4, 3)"
