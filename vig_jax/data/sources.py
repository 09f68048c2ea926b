"""Where examples come from: image folders, tfds datasets (ArrayRecord), CIFAR-10, the digits.

A source holds `info` (sizes over all processes) and `train` / `eval` records: random access,
`records[i] -> (image, label)` with image encoded bytes or uint8 [H, W, 3], and `records.name(i)`
for log lines. Records read nothing until indexed and are picklable: Grain ships them to its
worker processes. None of this imports tensorflow.
"""
import dataclasses
import functools
import os

from absl import logging

from vig_jax.data import cifar10, folder as folder_lib
from vig_jax.data.info import DatasetInfo


class FileRecords:
  def __init__(self, paths, labels):
    self._paths, self._labels = paths, labels

  def __len__(self):
    return len(self._paths)

  def __getitem__(self, i):
    with open(self._paths[i], "rb") as f:
      return f.read(), self._labels[i]

  def name(self, i):
    return self._paths[i]


class ArrayRecords:
  def __init__(self, images, labels, names):
    self._images, self._labels, self._names = images, labels, names

  def __len__(self):
    return len(self._images)

  def __getitem__(self, i):
    return self._images[i], int(self._labels[i])

  def name(self, i):
    return self._names[i]


class TfdsRecords:
  """A split of a tfds dataset in ArrayRecord format, images left encoded."""

  def __init__(self, name, data_dir, split, image_key, label_key):
    import tensorflow_datasets as tfds  # only this source needs it; it reads without tensorflow
    self._source = tfds.data_source(name, split=split, data_dir=data_dir,
                                    decoders={image_key: tfds.decode.SkipDecoding()})
    self._label, self._split = (image_key, label_key), f"{name}/{split}"

  def __len__(self):
    return len(self._source)

  def __getitem__(self, i):
    example = self._source[i]
    return example[self._label[0]], int(example[self._label[1]])

  def name(self, i):
    return f"{self._split}[{i}]"


@dataclasses.dataclass(frozen=True)
class Source:
  info: DatasetInfo
  train: object
  eval: object


def folder(*, folder, eval_fraction=0.1):
  """`folder`/<class>/* (eval_fraction held out per class) or `folder`/{train,val}/<class>/*."""
  scanned = folder_lib.scan(os.path.abspath(folder), eval_fraction)
  train, evaluation = (FileRecords(f.paths, f.labels) for f in (scanned.train, scanned.eval))
  return Source(DatasetInfo(len(scanned.classes), len(train), len(evaluation)), train, evaluation)


def tfds(*, name, data_dir=None, train_split="train", eval_split="validation"):
  """A tfds image-classification dataset prepared in ArrayRecord format in `data_dir`."""
  import tensorflow_datasets as tfds_lib
  try:
    builder = tfds_lib.builder(name, data_dir=data_dir)
  except tfds_lib.core.DatasetNotFoundError:
    raise ValueError(f"tfds has no dataset named {name!r}.") from None
  except ModuleNotFoundError as e:  # a builder whose definition needs tensorflow
    raise ValueError(f"tfds dataset {name!r} is not prepared in {data_dir} ({e}); build it with "
                     f"`tfds build {name} --data_dir=... --file_format=array_record`.") from None
  build = (f"build it with `tfds build {name} --data_dir={builder.data_dir_root} "
           f"--file_format=array_record` (building needs tensorflow; reading does not)")
  if not builder.is_prepared():
    raise ValueError(f"tfds dataset {name!r} is not prepared in {builder.data_dir}: {build}.")
  if builder.info.file_format.value != "array_record":
    raise ValueError(f"tfds dataset {name!r} in {builder.data_dir} is in "
                     f"{builder.info.file_format.value} format, which needs tensorflow to read: "
                     f"convert it with `tfds convert_format --dataset_dir={builder.data_dir} "
                     f"--out_file_format=array_record`, or {build}.")
  image_key, label_key = builder.info.supervised_keys or ("image", "label")
  train, evaluation = (TfdsRecords(name, data_dir, split, image_key, label_key)
                       for split in (train_split, eval_split))
  return Source(DatasetInfo(builder.info.features[label_key].num_classes, len(train),
                            len(evaluation)), train, evaluation)


def cifar(*, path):
  """CIFAR-10's 50,000 train JPEGs (`path`: the .tar.gz or the folder holding train/), with
  cifar10.VAL_FRACTION of each class held out as validation."""
  train, val, classes, bad = cifar10.load(os.path.abspath(path))
  if bad:
    logging.warning("CIFAR-10: %d files failed to decode and are left out: %s", len(bad),
                    ", ".join(bad))
  return Source(DatasetInfo(len(classes), len(train[0]), len(val[0])), ArrayRecords(*train),
                ArrayRecords(*val))


def digits_demo():
  """scikit-learn's digits (`digits`), its fixed stratified validation split."""
  from vig_jax.data import digits  # scikit-learn: only the demo needs it
  images, labels = digits.load()
  split = lambda idx: ArrayRecords(images[idx], labels[idx], tuple(f"digits[{i}]" for i in idx))
  train, val = digits.split_indices(labels)
  return Source(DatasetInfo(10, len(train), len(val)), split(train), split(val))


SOURCES = {"folder": folder, "tfds": tfds, "cifar10": cifar, "digits": digits_demo}


@functools.cache
def _cached(source, items):
  return SOURCES[source](**dict(items))


def get(source, **kwargs) -> Source:
  """The source named `source` built from its kwargs (once per process: CIFAR-10 decodes)."""
  return _cached(source, tuple(sorted(kwargs.items())))
