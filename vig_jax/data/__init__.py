"""Input pipeline: Grain sources and host crops, augmentation and Mixup/CutMix on device."""
from vig_jax.data.info import DatasetInfo
from vig_jax.data.mixup import mixup_cutmix
from vig_jax.data.pipeline import (augment_batch, check_input, dataset_info, eval_iterator,
                                   normalize, train_iterator)

__all__ = ["DatasetInfo", "augment_batch", "check_input", "dataset_info", "eval_iterator",
           "mixup_cutmix", "normalize", "train_iterator"]
