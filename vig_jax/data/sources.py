"""Where examples come from: tfds datasets, image folders and the digits dataset.

A source holds one process's share of a dataset and gives
  info: DatasetInfo, sizes over all processes;
  train_examples(key, start): the infinite stream {"index", "image", "label"},
    reshuffled every epoch from `key` ([2] int64) and started at position
    `start`; "index" is the position, from which the pipeline derives each
    example's augmentation seed;
  eval_examples(): each eval example of this process once, {"image", "label"}.
Images stay encoded: the pipeline decodes after resume has skipped what it skips.
"""
import inspect
import os

from vig_jax.data import digits, folder as folder_lib
from vig_jax.data.info import DatasetInfo
from vig_jax.data.tf_cpu import tf, tfds

_FOREVER = tf.int64.max


def _size(ds: tf.data.Dataset) -> int:
  size = int(ds.cardinality())
  if size < 0:
    raise ValueError(f"Cannot count the examples of {ds}.")
  return size


def _prepared_builder(name, data_dir, manual_dir):
  """The tfds builder, prepared into data_dir if it is not yet (from manual_dir if needed)."""
  try:
    builder = tfds.builder(name, data_dir=data_dir)
  except tfds.core.DatasetNotFoundError:
    raise ValueError(f"tfds has no dataset named {name!r}.") from None
  if builder.is_prepared():
    return builder
  if builder.MANUAL_DOWNLOAD_INSTRUCTIONS:
    manual_dir = manual_dir or os.fspath(builder.data_dir_root / "downloads" / "manual")
    if not os.path.isdir(manual_dir) or not os.listdir(manual_dir):
      raise ValueError(f"tfds dataset {name!r} is not prepared in {builder.data_dir} and its "
                       f"manual_dir {manual_dir} is missing or empty; put the source files there.")
  builder.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=manual_dir))
  return builder


class TfdsSource:
  """A tfds image-classification dataset; each process reads `tfds.split_for_jax_process`."""

  def __init__(self, *, name, data_dir=None, manual_dir=None, train_split="train",
               eval_split="validation", shuffle_buffer_size=10_000, process_index=0,
               process_count=1):
    self._builder = _prepared_builder(name, data_dir, manual_dir)
    self._image_key, self._label_key = self._builder.info.supervised_keys or ("image", "label")
    self._shuffle_buffer_size = shuffle_buffer_size
    share = lambda split: tfds.split_for_jax_process(
        split, process_index=process_index, process_count=process_count)
    self._train, self._eval = self._read(share(train_split)), self._read(share(eval_split))
    self.info = DatasetInfo(
        num_classes=self._builder.info.features[self._label_key].num_classes,
        num_train=_size(self._read(train_split)),
        num_eval=_size(self._read(eval_split)))

  def _read(self, split):
    ds = self._builder.as_dataset(split=split, shuffle_files=False,
                                  decoders={self._image_key: tfds.decode.SkipDecoding()})
    return ds.map(lambda ex: {"image": ex[self._image_key], "label": ex[self._label_key]})

  def train_examples(self, key, start):
    """Epoch e is this process's split through a shuffle buffer seeded from (key, e).

    tfrecords have no random access, so resuming at `start` reads, without
    decoding, at most one epoch of records; earlier epochs are skipped for free.
    """
    n = _size(self._train)
    first_epoch, offset = divmod(start, n)

    def epoch(e):
      seed = tf.random.experimental.stateless_fold_in(key, e)[0]
      examples = self._train.shuffle(self._shuffle_buffer_size, seed=seed)
      return tf.data.Dataset.zip(tf.data.Dataset.range(e * n, (e + 1) * n), examples)

    ds = tf.data.Dataset.range(first_epoch, _FOREVER).flat_map(epoch).skip(offset)
    return ds.map(lambda index, ex: {"index": index, **ex})

  def eval_examples(self):
    return self._eval


class FolderSource:
  """Images in a folder (see `folder.scan`); process p reads files p, p + count, ...."""

  def __init__(self, *, folder, eval_fraction=0.1, process_index=0, process_count=1):
    scanned = folder_lib.scan(os.path.abspath(folder), eval_fraction)
    # Strided rather than contiguous shares: the lists are sorted by class and
    # every process should see every class.
    self._train, self._eval = (
        folder_lib.Files(files.paths[process_index::process_count],
                         files.labels[process_index::process_count])
        for files in (scanned.train, scanned.eval))
    if not self._train.paths:
      raise ValueError(f"{folder} has too few images ({len(scanned.train.paths)}) for "
                       f"{process_count} processes.")
    self.info = DatasetInfo(num_classes=len(scanned.classes), num_train=len(scanned.train.paths),
                            num_eval=len(scanned.eval.paths), skipped_files=scanned.skipped)

  def train_examples(self, key, start):
    """Position g is file perm_e(g mod n) of epoch e = g div n, perm_e a permutation
    seeded from (key, e): random access, so resuming at `start` costs nothing."""
    paths = tf.constant(self._train.paths)
    labels = tf.constant(self._train.labels, tf.int64)
    n = len(self._train.paths)

    def example(index):
      seed = tf.random.experimental.stateless_fold_in(key, index // n)
      i = tf.random.experimental.index_shuffle(index % n, seed, n - 1)
      return {"index": index, "image": tf.io.read_file(paths[i]), "label": labels[i]}

    return tf.data.Dataset.range(start, _FOREVER).map(example, num_parallel_calls=tf.data.AUTOTUNE)

  def eval_examples(self):
    ds = tf.data.Dataset.from_tensor_slices(
        (tf.constant(self._eval.paths, tf.string), tf.constant(self._eval.labels, tf.int64)))
    return ds.map(lambda path, label: {"image": tf.io.read_file(path), "label": label},
                  num_parallel_calls=tf.data.AUTOTUNE)


def _own_kwargs(cls, kwargs, fixed=()):
  """The kwargs `cls` takes: a config's data fields may serve several sources (--config.data.source
  switches between them), so each source ignores the others' fields."""
  names = set(inspect.signature(cls).parameters) - set(fixed)
  return {k: v for k, v in kwargs.items() if k in names}


def get(source, **kwargs):
  """The source named `source` ("tfds", "folder" or "digits"), built from its kwargs."""
  if source == "tfds":
    return TfdsSource(**_own_kwargs(TfdsSource, kwargs))
  if source == "folder":
    return FolderSource(**_own_kwargs(FolderSource, kwargs))
  if source == "digits":  # `digits` registered vig_digits with tfds on import
    fixed = dict(name=digits.VigDigits.name, train_split="train", eval_split="validation")
    return TfdsSource(**fixed, **_own_kwargs(TfdsSource, kwargs, fixed))
  raise ValueError(f"Unknown data source {source!r}; expected tfds, folder, digits or synthetic.")
