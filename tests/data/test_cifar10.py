"""The cifar10 source (archive or folder, fixed held-out split) and configs/cifar10.py on CPU."""
import io
import tarfile

import numpy as np
import pytest

from configs import cifar10 as cifar10_config
from vig_jax import data, trainer
from vig_jax.data import cifar10

from .images import damaged_jpeg, encode

CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


@pytest.fixture(scope="module")
def archive(tmp_path_factory):
  """A 200-image CIFAR-10 look-alike, laid out as the real archive: train/<class>/NNNN.jpg."""
  path = tmp_path_factory.mktemp("cifar") / "cifar10_train.tar.gz"
  rng = np.random.default_rng(0)
  with tarfile.open(path, "w:gz") as tar:
    for label, cls in enumerate(CLASSES):
      for i in range(20):
        image = np.clip(rng.normal(25 * label, 20, (32, 32, 3)), 0, 255).astype(np.uint8)
        payload = encode(image, "jpeg")
        member = tarfile.TarInfo(f"train/{cls}/{i:04d}.jpg")
        member.size = len(payload)
        tar.addfile(member, io.BytesIO(payload))
  return str(path)


def test_archive_and_folder_give_the_same_split(archive, tmp_path):
  train, val, classes, bad = cifar10.load(archive)
  with tarfile.open(archive) as tar:
    tar.extractall(tmp_path, filter="data")
  (tmp_path / "train" / "cat" / "0003.jpg").write_bytes(damaged_jpeg())
  f_train, f_val, _, f_bad = cifar10.load(str(tmp_path))

  assert classes == CLASSES and bad == []
  assert train[0].shape == (180, 32, 32, 3) and val[0].shape == (20, 32, 32, 3)
  np.testing.assert_array_equal(np.bincount(val[1]), [2] * 10)  # 10% of each class
  assert not set(train[2]) & set(val[2])
  assert f_bad == ["cat/0003.jpg"]  # skipped and named; the split does not move
  assert f_val[2] == val[2] and f_train[2] == tuple(n for n in train[2] if n != "cat/0003.jpg")


def test_missing_data_is_a_clear_error(tmp_path):
  with pytest.raises(ValueError, match="does not exist"):
    data.dataset_info(source="cifar10", path=str(tmp_path / "none.tar.gz"))


def test_config_trains_a_few_steps_on_cpu(archive, tmp_path):
  config = cifar10_config.get_config(archive)
  config.input.num_workers = 0  # worker processes are tested in test_pipeline.py
  config.batch_size, config.eval_batch_size, config.total_steps = 16, 16, 3
  config.log_every_steps = config.checkpoint_every_steps = 3
  config.dtype = "float32"  # bfloat16 on CPU only costs time
  config.model_kwargs.depth = 2  # the recipe's input, augmentation and schedule; a faster compile

  results = trainer.train_and_evaluate(config, str(tmp_path))
  assert results["num_examples"] == 20 and 0.0 <= results["top1"] <= 1.0
