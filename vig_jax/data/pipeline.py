"""The trainer's input, on Grain: resumable infinite train batches and padded one-pass eval batches.

`config.input` is one flat group of keyword arguments, checked by `check_input`: `source`
("folder", "tfds", "cifar10", "digits" or "synthetic") and that source's arguments (see
`sources`), `num_workers` and `crop_canvas`, host augmentation (`crop_scale`, `crop_ratio`) and
device augmentation (`device.augment_example`'s). Nothing here imports tensorflow.

Train batches: {"image": uint8 [b, C * C * 3] crops of up to C x C packed row-major (C =
crop_canvas, default 2 x image_size), "crop_size": int32 [b, 2], "label": int32 [b]};
`augment_batch` (on device) turns them into float32 images. Eval batches: {"image": uint8
[b, S, S, 3] centre crops, "label", "mask" float32 [b]}; `normalize` (on device) finishes them.

Determinism: process p reads examples p, p + P, ... of the split (its shard, n examples). Its
stream position g holds the example at position g mod n of a permutation seeded from
(seed, p, g div n) and draws its crop from a generator seeded from (seed, p, g), so batch s is
positions [s b, (s + 1) b) whatever the worker count, and start_step=s starts there without
reading anything earlier.

A file that fails to decode (anywhere in its data) is named in a warning and skipped: in train
the next example of the split takes its place, in eval it gets mask 0. The iterators count them
(`skipped`) and log the count.
"""
import difflib
import inspect
import sys

import grain
import numpy as np
from absl import flags, logging
from grain.python import SharedMemoryArray

from vig_jax.data import device, host, sources, synthetic
from vig_jax.data.info import DatasetInfo

# Keys of config.input besides each source's and device.augment_example's.
_LOADER = dict(source="tfds", num_workers=0, crop_canvas=None, crop_scale=(0.08, 1.0),
               crop_ratio=(3 / 4, 4 / 3))
_DEVICE = [n for n in inspect.signature(device.augment_example).parameters
           if n not in ("rng", "packed", "crop_size", "image_size")]
_SYNTHETIC = list(inspect.signature(synthetic.info).parameters)
_FOREVER = sys.maxsize  # train stream positions


def _source_keys(source):
  if source == "synthetic":
    return _SYNTHETIC
  return list(inspect.signature(sources.SOURCES[source]).parameters)


def check_input(**input_kwargs):
  """Raises ValueError (one line) for an unknown source or a key no part of the pipeline takes."""
  source = input_kwargs.get("source", _LOADER["source"])
  names = [*sources.SOURCES, "synthetic"]
  if source not in names:
    raise ValueError(f"Unknown data source {source!r}; expected one of {', '.join(names)}.")
  known = {*_LOADER, *_DEVICE, *(k for s in names for k in _source_keys(s))}
  for key in input_kwargs:
    if key not in known:
      close = difflib.get_close_matches(key, known, n=1)
      raise ValueError(f"config.input has no key {key!r}" +
                       (f"; did you mean {close[0]!r}?" if close else "."))


def _split(input_kwargs):
  """(source, its kwargs, loader kwargs, device kwargs) of a checked config.input."""
  check_input(**input_kwargs)
  loader = {k: input_kwargs.get(k, v) for k, v in _LOADER.items()}
  source = loader.pop("source")
  own = {k: input_kwargs[k] for k in _source_keys(source) if k in input_kwargs}
  return source, own, loader, {k: input_kwargs[k] for k in _DEVICE if k in input_kwargs}


def dataset_info(**input_kwargs) -> DatasetInfo:
  """Sizes and classes of config.input's dataset (checking config.input first)."""
  source, own, _, _ = _split(input_kwargs)
  if source == "synthetic":
    return synthetic.info(**own)
  return sources.get(source, **own).info


def augment_batch(rng, batch, *, image_size, **input_kwargs):
  """Device half of train augmentation: a train batch -> float32 [b, S, S, 3] (jit it)."""
  return device.augment_batch(rng, batch, image_size=image_size, **_split(input_kwargs)[3])


normalize = device.normalize


def _seeds(*entropy):
  return np.random.SeedSequence(entropy).generate_state(2)  # uint32 [shuffle, augment]


def _read(records, index, log_name, decode=host.decode):
  """(image, label) of records[index] (arrays as stored, bytes decoded); None if it does not
  decode."""
  data, label = records[index]
  if isinstance(data, np.ndarray):
    return data, label
  try:
    return decode(data), label
  except host.DecodeError as e:
    logging.warning("%s: skipping %s, which does not decode: %s", log_name, records.name(index), e)
    return None


class _TrainExample(grain.transforms.RandomMap):
  """Stream position -> crop of an example of this process's shard.

  Position g is shard[perm_e[g mod n]], perm_e a permutation seeded from (shuffle_seed, epoch
  e = g div n); a file that does not decode gives way to the next example of the split.
  """

  def __init__(self, records, shard, shuffle_seed, *, max_size, image_size, scale, ratio):
    self._records, self._shard, self._seed = records, shard, shuffle_seed
    self._crop = dict(max_size=max_size, image_size=image_size, scale=scale, ratio=ratio)
    self._cached = (None, None)  # (epoch, its permutation), replaced as one

  def _example(self, position):
    epoch, i = divmod(position, len(self._shard))
    cached = self._cached
    if cached[0] != epoch:  # one permutation per epoch and worker
      cached = epoch, np.random.default_rng([self._seed, epoch]).permutation(len(self._shard))
      self._cached = cached
    return self._shard[cached[1][i]]

  def random_map(self, position, rng):
    n, index = len(self._records), self._example(position)
    for skipped in range(n):
      read = _read(self._records, (index + skipped) % n, "train", host.open_image)
      if read is not None:
        return {"image": host.train_crop(read[0], rng, **self._crop), "label": read[1],
                "skipped": skipped}
    raise host.DecodeError("no train image decodes")


class _TrainBatch:
  """Crops of any size up to canvas -> uint8 [b, canvas * canvas * 3], each row one crop's pixels
  packed row-major from the start (zeros after), and their int32 [b, 2] sizes.

  Packed, not padded onto the canvas: only the crop's bytes are written (typically 40% of the
  canvas at 224), and in a worker process (`shared`) they are written straight into shared
  memory, which Grain would otherwise copy them to. `device.unpack_crop` undoes the packing.
  """

  def __init__(self, canvas, shared):
    self._canvas, self._shared = canvas, shared

  def __call__(self, examples):
    shape = (len(examples), self._canvas * self._canvas * 3)
    # Both start as zeros: new shared memory reads as zeros, np.zeros maps zero pages.
    images = SharedMemoryArray(shape, np.uint8) if self._shared else np.zeros(shape, np.uint8)
    for row, example in zip(images, examples):
      pixels = example["image"].ravel()
      row[:pixels.size] = pixels
    return {"image": images,
            "crop_size": np.array([e["image"].shape[:2] for e in examples], np.int32),
            "label": np.array([e["label"] for e in examples], np.int32),
            "skipped": np.array([e["skipped"] for e in examples], np.int32)}


class _EvalExample(grain.transforms.Map):
  """Position in this process's padded share -> centre crop (mask 0: padding or undecodable)."""

  def __init__(self, records, indices, *, image_size, crop_pct):
    self._records, self._indices = records, indices
    self._size, self._crop_pct = image_size, crop_pct

  def map(self, position):
    read = None
    if position < len(self._indices):
      read = _read(self._records, self._indices[position], "eval")
    if read is None:
      image, label, mask = np.zeros((self._size, self._size, 3), np.uint8), 0, 0.0
    else:
      image = host.resize_center_crop(read[0], self._size, self._crop_pct)
      label, mask = read[1], 1.0
    skipped = position < len(self._indices) and read is None
    return {"image": image, "label": np.int32(label), "mask": np.float32(mask),
            "skipped": np.int32(skipped)}


class Batches:
  """Iterates a Grain pipeline's batches, moving their "skipped" counts into `self.skipped`."""

  def __init__(self, dataset, split):
    self._iterator, self._split, self.skipped = iter(dataset), split, 0

  def __iter__(self):
    return self

  def close(self):
    """Stops the workers and frees the shared memory of batches in flight."""
    self._iterator.close()

  def __next__(self):
    batch = next(self._iterator)
    skipped = int(batch.pop("skipped").sum())
    if skipped:
      self.skipped += skipped
      logging.warning("input: %d %s images skipped so far, not decodable (named above)",
                      self.skipped, self._split)
    return batch


def _loader(ds, num_workers):
  """A batched MapDataset read by `num_workers` processes (0: a thread of this one).

  Batching is the last step before the workers, so whole batches travel through shared memory,
  and worker w builds batches w, w + num_workers, ...: the batches do not depend on the worker
  count. One thread per worker: the workers are the parallelism.
  """
  ds = ds.to_iter_dataset(grain.ReadOptions(num_threads=1, prefetch_buffer_size=2))
  if num_workers:
    if not flags.FLAGS.is_parsed():  # Grain reads its absl flags; a notebook or test has none
      flags.FLAGS.mark_as_parsed()
    ds = ds.mp_prefetch(grain.MultiprocessingOptions(num_workers=num_workers,
                                                     per_worker_buffer_size=2))
  return ds


def train_iterator(*, batch_size, image_size, seed, start_step=0, process_index=0, process_count=1,
                   **input_kwargs):
  """Infinite shuffled batches of `batch_size` (per process) examples, augmented on the host side.

  The batches depend only on (config.input, seed, process_index, process_count), and
  start_step=s yields exactly what an iterator started at 0 yields from its step s on.
  """
  source, own, loader, _ = _split(input_kwargs)
  if source == "synthetic":
    return synthetic.train_batches(
        dataset=synthetic.info(**own), batch_size=batch_size, image_size=image_size, seed=seed,
        start_step=start_step, process_index=process_index, process_count=process_count)
  records = sources.get(source, **own).train
  canvas = loader["crop_canvas"] or 2 * image_size
  if canvas < image_size:
    raise ValueError(f"crop_canvas {canvas} is smaller than image_size {image_size}.")
  shard = range(len(records))[process_index::process_count]
  if not shard:
    raise ValueError(f"{len(records)} train examples are too few for {process_count} processes.")
  shuffle_seed, augment_seed = _seeds(seed, process_index)
  crop_scale = loader["crop_scale"]
  examples = _TrainExample(records, shard, int(shuffle_seed), max_size=canvas,
                           image_size=image_size,
                           scale=None if crop_scale is None else tuple(crop_scale),
                           ratio=tuple(loader["crop_ratio"]))
  ds = grain.MapDataset.range(_FOREVER).random_map(examples, seed=int(augment_seed))
  ds = ds.batch(batch_size, drop_remainder=True,
                batch_fn=_TrainBatch(canvas, shared=loader["num_workers"] > 0))
  return Batches(_loader(ds[start_step:], loader["num_workers"]), "train")


def _ceil_div(a, b):
  return -(-a // b)


def eval_iterator(*, batch_size, image_size, process_index=0, process_count=1, crop_pct=0.875,
                  **input_kwargs):
  """One pass over this process's eval examples, centre-cropped, in batches of `batch_size`.

  Every process yields the same number of batches, enough for the largest share (shares differ by
  at most one example), so that eval steps run in lockstep across processes; padding examples are
  zeros with mask 0. Over all processes, each eval example appears exactly once with mask 1
  (undecodable files: mask 0, counted).
  """
  source, own, loader, _ = _split(input_kwargs)
  if source == "synthetic":
    dataset = synthetic.info(**own)
    return synthetic.eval_batches(
        dataset=dataset, batch_size=batch_size, image_size=image_size,
        num_batches=_ceil_div(_ceil_div(dataset.num_eval, process_count), batch_size),
        process_index=process_index, process_count=process_count)
  records = sources.get(source, **own).eval
  indices = range(len(records))[process_index::process_count]
  num_batches = _ceil_div(_ceil_div(len(records), process_count), batch_size)
  ds = (grain.MapDataset.range(num_batches * batch_size)
        .map(_EvalExample(records, indices, image_size=image_size, crop_pct=crop_pct))
        .batch(batch_size))
  return Batches(_loader(ds, loader["num_workers"]), "eval")
