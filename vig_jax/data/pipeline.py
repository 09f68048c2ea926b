"""The trainer's input: resumable infinite train batches and padded one-pass eval batches.

Batches are dicts of numpy arrays for this process: "image" float32 [b, H, W, 3]
(ImageNet-normalised NHWC), "label" int32 [b] and, for eval, "mask" float32 [b].
`source` is "tfds", "folder" or "digits" (see `sources`), or "synthetic", which
needs no tensorflow: the functions import the tf modules only for the others.

Train determinism: process p's stream position g holds an example chosen by a
per-epoch shuffle seeded from (seed, p) and augmented with a seed folded from
(seed, p) and g, so batch s is positions [s b, (s + 1) b) whatever came before,
and start_step=s starts there without decoding anything earlier.

The functions build their tf.data pipelines before returning, so a missing
dataset raises here rather than at the first batch.
"""
import inspect

from vig_jax.data import synthetic
from vig_jax.data.info import DatasetInfo


def _ceil_div(a: int, b: int) -> int:
  return -(-a // b)


def _numpy_batches(ds):
  from vig_jax.data.tf_cpu import tf
  options = tf.data.Options()
  options.deterministic = True
  options.threading.max_intra_op_parallelism = 1  # parallelism comes from tf.data's maps
  return ds.with_options(options).prefetch(tf.data.AUTOTUNE).as_numpy_iterator()


def dataset_info(*, source, **source_kwargs) -> DatasetInfo:
  """Sizes and classes of the dataset `source` (kwargs as for the iterators)."""
  if source == "synthetic":
    return synthetic.info(**source_kwargs)
  from vig_jax.data import sources
  return sources.get(source, **source_kwargs).info


def train_iterator(*, source, batch_size, image_size, seed, start_step=0, process_index=0,
                   process_count=1, **source_and_augment_kwargs):
  """Infinite shuffled, augmented batches of `batch_size` (per process) examples.

  Keyword arguments of `augment.train_transform` (crop_scale, hflip,
  randaugment_layers, erase_prob, ...) tune augmentation; the rest go to the
  source. The batches depend only on (source, seed, process_index,
  process_count), and start_step=s yields exactly what an iterator started at
  0 yields from its step s on.
  """
  if source == "synthetic":  # augmentation kwargs do not apply to noise
    info_names = inspect.signature(synthetic.info).parameters
    dataset = synthetic.info(**{k: v for k, v in source_and_augment_kwargs.items() if k in info_names})
    return synthetic.train_batches(
        dataset=dataset, batch_size=batch_size,
        image_size=image_size, seed=seed, start_step=start_step, process_index=process_index,
        process_count=process_count)
  from vig_jax.data import augment, sources
  from vig_jax.data.tf_cpu import tf
  augment_names = inspect.signature(augment.train_transform).parameters
  augment_kwargs = {k: v for k, v in source_and_augment_kwargs.items() if k in augment_names}
  source_kwargs = {k: v for k, v in source_and_augment_kwargs.items() if k not in augment_names}
  src = sources.get(source, process_index=process_index, process_count=process_count,
                    **source_kwargs)
  shuffle_key, augment_key = tf.unstack(
      tf.random.experimental.stateless_split(tf.constant([seed, process_index], tf.int64), 2))

  def prepare(example):
    key = tf.random.experimental.stateless_fold_in(augment_key, example["index"])
    return {"image": augment.train_transform(example["image"], key, image_size=image_size,
                                             **augment_kwargs),
            "label": tf.cast(example["label"], tf.int32)}

  ds = src.train_examples(shuffle_key, start_step * batch_size)
  ds = ds.map(prepare, num_parallel_calls=tf.data.AUTOTUNE)
  return _numpy_batches(ds.batch(batch_size, drop_remainder=True))


def eval_iterator(*, source, batch_size, image_size, process_index=0, process_count=1,
                  crop_pct=0.875, **source_kwargs):
  """One pass over this process's eval examples, centre-cropped, in batches of `batch_size`.

  Every process yields the same number of batches, enough for the largest
  share (processes' shares differ by at most one example), so that eval steps
  run in lockstep across processes; padding examples are zeros with mask 0.
  Over all processes, each eval example appears exactly once with mask 1.
  """
  if source == "synthetic":
    dataset = synthetic.info(**source_kwargs)
    return synthetic.eval_batches(
        dataset=dataset, batch_size=batch_size, image_size=image_size,
        num_batches=_ceil_div(_ceil_div(dataset.num_eval, process_count), batch_size),
        process_index=process_index, process_count=process_count)
  from vig_jax.data import augment, sources
  from vig_jax.data.tf_cpu import tf
  src = sources.get(source, process_index=process_index, process_count=process_count,
                    **source_kwargs)
  num_batches = _ceil_div(_ceil_div(src.info.num_eval, process_count), batch_size)

  def prepare(example):
    return {"image": augment.eval_transform(example["image"], image_size=image_size,
                                            crop_pct=crop_pct),
            "label": tf.cast(example["label"], tf.int32),
            "mask": tf.constant(1.0)}

  padding = tf.data.Dataset.from_tensors({
      "image": tf.zeros([image_size, image_size, 3]),
      "label": tf.constant(0),
      "mask": tf.constant(0.0)}).repeat()
  ds = src.eval_examples().map(prepare, num_parallel_calls=tf.data.AUTOTUNE)
  ds = ds.concatenate(padding).take(num_batches * batch_size)
  return _numpy_batches(ds.batch(batch_size))
