"""A model of the ImageNet recipe on random images: benchmarks and multi-process checks, no data.

  python train.py --config=configs/synthetic.py:vig_s --workdir=/tmp/synthetic \
      --config.total_steps=200

ImageNet-1k's sizes (so the schedule is the recipe's), but a 1,024-image evaluation set.
"""
from configs import imagenet
from configs.common import input_config


def get_config(arg="vig_s"):
  c = imagenet.get_config(arg)
  c.input = input_config("synthetic", num_classes=1000, num_train=1_281_167, num_eval=1024)
  return c
