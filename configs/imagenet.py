"""ImageNet-1k from scratch, the original recipe (docs/recipe.md): 300 epochs, global batch 1024.

  python train.py --config=configs/imagenet.py:vig_s --workdir=gs://bucket/vig_s \
      --config.data.data_dir=gs://bucket/tfds --config.data.manual_dir=/path/to/imagenet_tars

Expected ImageNet-1k val top-1 (the original's released weights, 224x224):

  | arg     | top-1 | lr (at batch 512) | weight decay | drop path |
  |---------|-------|-------------------|--------------|-----------|
  | vig_t   | 77.2  | 1e-3              | 0.05         | 0.0       |
  | vig_s   | 81.7  | 5e-4              | 0.1          | 0.2       |
  | vig_b   | 82.6  | 1e-3              | 0.05         | 0.5       |
  | vig_h_t | 82.8  | 8e-4              | 0.05         | 0.2       |
  | vig_h_s | 83.8  | 5e-4              | 0.05         | 0.3       |
  | vig_h_b | 84.2  | 5e-4              | 0.05         | 0.6       |

Hardware it was set for: global batch 1024 in bf16 on a TPU v4-32 / v5e-32 pod slice or one 8-GPU
(H100/A100 80 GB) host: 128 images per chip, data parallel (mesh data=-1, fsdp=1). For ViG-B and
ViG-H-B on 16 GB chips use --config.mesh.fsdp=<chips per host> and/or --config.remat=True.
"""
from configs.common import base_config

# (base lr, weight decay) per size; drop path is each model's default in the registry.
RECIPES = {"vig_t": (1e-3, 0.05), "vig_s": (5e-4, 0.1), "vig_b": (1e-3, 0.05),
           "vig_h_t": (8e-4, 0.05), "vig_h_s": (5e-4, 0.05), "vig_h_b": (5e-4, 0.05)}


def get_config(arg="vig_s"):
  if arg not in RECIPES:
    raise ValueError(f"configs/imagenet.py: unknown model {arg!r}; choose one of {sorted(RECIPES)}")
  c = base_config()
  c.model = arg
  c.base_lr, c.weight_decay = RECIPES[arg]
  return c
