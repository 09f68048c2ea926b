"""The embedded demo: a small ViG on scikit-learn's 1,797 8x8 digits, upsampled to 32x32.

`make demo` trains this on a 2-core CPU in a few minutes and evaluates the saved checkpoint.
"""
from configs.common import base_config, input_config


def get_config():
  c = base_config()
  c.model = "vig_t"
  c.model_kwargs.update(embed_dim=96, depth=4, num_heads=3, patch_size=4, drop_path_rate=0.05)
  c.dtype = "float32"  # CPU: bf16 brings no speed
  # 32x32 digits in memory: a gentle crop, no flips (a mirrored 3 is no digit), light RandAugment;
  # no worker processes (a 2-core CPU keeps up).
  c.input = input_config("digits", num_workers=0, crop_canvas=32, crop_scale=(0.6, 1.0),
                         hflip=False, randaugment_layers=1, randaugment_magnitude=5.0,
                         erase_prob=0.0)
  c.mixup.update(mixup_alpha=0.0, cutmix_alpha=0.0)
  c.image_size = 32
  c.eval_crop_pct = 1.0
  c.batch_size = 64
  c.eval_batch_size = 100
  c.num_epochs = 30
  c.warmup_epochs = 2
  c.base_lr = 8e-3  # x 64/512: peak 1e-3
  c.weight_decay = 0.05
  c.ema_decay = 0.99
  c.log_every_steps = 50
  c.checkpoint_every_steps = 200
  c.keep_checkpoints = 2
  return c
