"""The "tfds" source: any tfds dataset, clear errors when one is missing."""
import itertools

import numpy as np
import pytest

from vig_jax import data
from vig_jax.data.tf_cpu import tfds

from .images import NO_AUGMENT


def test_mock_imagenet_batches(tmp_path):
  """mock_data yields random-sized images, which the train and eval transforms resize."""
  # mock_data makes preparing a no-op; the source only checks manual_dir is not empty.
  (tmp_path / "ILSVRC2012_img_train.tar").touch()
  source = dict(source="tfds", name="imagenet2012", manual_dir=str(tmp_path))
  with tfds.testing.mock_data(num_examples=10):
    info = data.dataset_info(**source)
    train = list(itertools.islice(
        data.train_iterator(batch_size=4, image_size=24, seed=0, **source), 4))
    evaluation = list(data.eval_iterator(batch_size=4, image_size=24, **source))

  assert (info.num_classes, info.num_train, info.num_eval) == (1000, 10, 10)
  for batch in train + evaluation:
    assert batch["image"].shape == (4, 24, 24, 3) and batch["image"].dtype == np.float32
    assert batch["label"].dtype == np.int32
    assert ((0 <= batch["label"]) & (batch["label"] < 1000)).all()
    assert np.isfinite(batch["image"]).all()
  assert [b["mask"].tolist() for b in evaluation] == [[1] * 4, [1] * 4, [1, 1, 0, 0]]


def _sorted_examples(batches):
  """(label, image bytes) of every unmasked example, sorted: a multiset to compare."""
  return sorted((int(label), image.tobytes()) for batch in batches
                for label, image, keep in zip(batch["label"], batch["image"],
                                              batch.get("mask", np.ones(len(batch["label"]))))
                if keep)


def test_process_shares_partition_the_splits(digits_dir):
  """mock_data ignores sub-splits, so this uses a real tfds dataset: vig_digits."""
  kwargs = dict(source="tfds", name="vig_digits", data_dir=digits_dir, image_size=32)
  everything = {}
  for count in (1, 3):
    train, evaluation = [], []
    for p in range(count):
      share = -(-1497 // count) if p == 0 else 1497 // count  # 499 each for 3 processes
      train.append(next(data.train_iterator(batch_size=share, seed=0, process_index=p,
                                            process_count=count, **kwargs, **NO_AUGMENT)))
      evaluation += data.eval_iterator(batch_size=128, process_index=p, process_count=count,
                                       **kwargs)
    everything[count] = _sorted_examples(train), _sorted_examples(evaluation)

  assert len(everything[1][0]) == 1497 and len(everything[1][1]) == 300
  assert everything[3] == everything[1]


def test_unknown_dataset_raises():
  with pytest.raises(ValueError, match="tfds has no dataset named 'no_such_dataset'"):
    data.dataset_info(source="tfds", name="no_such_dataset")


def test_missing_manual_dir_raises(tmp_path):
  manual_dir = tmp_path / "manual"
  with pytest.raises(ValueError, match=f"manual_dir {manual_dir} is missing or empty"):
    data.train_iterator(source="tfds", name="imagenet2012", data_dir=str(tmp_path / "tfds"),
                        manual_dir=str(manual_dir), batch_size=2, image_size=8, seed=0)
