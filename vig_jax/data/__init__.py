"""Input pipeline: tf.data sources and augmentation on the host, Mixup/CutMix on device."""
from vig_jax.data.info import DatasetInfo
from vig_jax.data.mixup import mixup_cutmix
from vig_jax.data.pipeline import dataset_info, eval_iterator, train_iterator

__all__ = ["DatasetInfo", "dataset_info", "eval_iterator", "mixup_cutmix", "train_iterator"]
