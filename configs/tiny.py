"""A tiny model on synthetic data: seconds per run on a CPU, for tests and drills."""
from configs.common import base_config, input_config


def get_config(arg="synthetic"):
  c = base_config()
  c.model = "vig_t"
  c.model_kwargs.update(embed_dim=32, depth=2, num_heads=2, patch_size=8, drop_path_rate=0.1)
  c.dtype = "float32"
  augment = dict(num_workers=0, crop_canvas=32, randaugment_layers=0, erase_prob=0.0)
  if arg == "synthetic":
    c.input = input_config("synthetic", num_classes=10, num_train=256, num_eval=40, **augment)
  elif arg == "digits":
    c.input = input_config("digits", **augment)
  else:
    raise ValueError(f"configs/tiny.py: unknown data {arg!r}; choose 'synthetic' or 'digits'")
  c.image_size = 32
  c.eval_crop_pct = 1.0
  c.batch_size = 16
  c.eval_batch_size = 16
  c.total_steps = 8
  c.warmup_epochs = 0
  c.base_lr = 1e-3
  c.ema_decay = 0.9
  c.log_every_steps = 2
  c.checkpoint_every_steps = 4
  c.keep_checkpoints = 2
  return c
