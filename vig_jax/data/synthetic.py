"""Random uint8 batches for benchmarks and tests: no files, no decoding, no workers."""
import itertools

import numpy as np

from vig_jax.data.info import DatasetInfo

# Train cycles through a few batches: drawing fresh full-size noise every step
# would make a benchmark time numpy instead of the model.
_DISTINCT_TRAIN_BATCHES = 4


def info(*, num_classes=1000, num_train=1_281_167, num_eval=50_000) -> DatasetInfo:
  """Defaults mimic ImageNet-1k, so schedules computed from the sizes look realistic."""
  return DatasetInfo(num_classes=num_classes, num_train=num_train, num_eval=num_eval)


def _batch(seed, batch_size, image_size, num_classes):
  rng = np.random.default_rng(seed)
  return {
      "image": rng.integers(0, 256, (batch_size, image_size, image_size, 3), np.uint8),
      "label": rng.integers(0, num_classes, batch_size, dtype=np.int32),
  }


def train_batches(*, dataset, batch_size, image_size, seed, start_step, process_index,
                  process_count):
  """Step s yields this process's slice of global batch s mod _DISTINCT_TRAIN_BATCHES: the global
  batches are the same however many processes share them, so runs compare across layouts.
  Each image is a whole image_size x image_size crop, packed as the pipeline's."""
  lo, hi = process_index * batch_size, (process_index + 1) * batch_size
  batches = [{k: v[lo:hi] for k, v in _batch([seed, i], batch_size * process_count, image_size,
                                             dataset.num_classes).items()}
             for i in range(_DISTINCT_TRAIN_BATCHES)]
  crop_size = np.full((batch_size, 2), image_size, np.int32)
  batches = [{**b, "image": b["image"].reshape(batch_size, -1), "crop_size": crop_size}
             for b in batches]
  return (batches[step % _DISTINCT_TRAIN_BATCHES] for step in itertools.count(start_step))


def eval_batches(*, dataset, batch_size, image_size, num_batches, process_index, process_count):
  """This process's share of num_eval examples (as the file sources' strided shares), padded
  with mask 0."""
  share = dataset.num_eval // process_count + (process_index < dataset.num_eval % process_count)
  for i in range(num_batches):
    batch = _batch([process_index, i], batch_size, image_size, dataset.num_classes)
    batch["mask"] = (np.arange(i * batch_size, (i + 1) * batch_size) < share).astype(np.float32)
    yield batch
