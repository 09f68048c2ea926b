"""Defaults shared by every config: the original ImageNet recipe (docs/recipe.md)."""
import ml_collections


def input_config(source="tfds", **overrides):
  """config.input: the dataset and its augmentation (checked by vig_jax.data.check_input).

  Every source's keys are here, so --config.input.source=folder --config.input.folder=... works;
  each source reads its own. Augmentation: the timm/DeiT recipe (rand-m9-mstd0.5-inc1, random
  erasing 0.25); crops are drawn on the host, the rest runs on the accelerator.
  """
  c = ml_collections.ConfigDict(dict(
      source=source,
      # tfds (ArrayRecord format; see README)
      name="imagenet2012", data_dir=ml_collections.FieldReference(None, str),
      train_split="train", eval_split="validation",
      # folder: <folder>/<class>/* with eval_fraction held out, or <folder>/{train,val}/<class>/*
      folder=ml_collections.FieldReference(None, str), eval_fraction=0.1,
      # cifar10: the .tar.gz or the folder unpacked from it
      path=ml_collections.FieldReference(None, str),
      # host: Grain worker processes (0: in this process) and the random crop
      num_workers=8, crop_canvas=ml_collections.FieldReference(None, int),
      crop_scale=(0.08, 1.0), crop_ratio=(3 / 4, 4 / 3),
      # accelerator
      hflip=True, randaugment_layers=2, randaugment_magnitude=9.0, randaugment_magnitude_std=0.5,
      erase_prob=0.25))
  c.update(overrides)
  return c


def base_config():
  c = ml_collections.ConfigDict()
  c.model = "vig_s"
  c.model_kwargs = ml_collections.ConfigDict()  # size overrides, e.g. depth=4
  c.dtype = "bfloat16"  # compute; params stay fp32
  c.bigla_impl = "auto"
  c.remat = False

  c.input = input_config()
  c.image_size = 224
  c.eval_crop_pct = 0.875  # resize 256, centre crop 224
  c.batch_size = 1024  # global
  c.eval_batch_size = 1024
  c.grad_accum_steps = 1

  c.num_epochs = 300
  c.total_steps = 0  # > 0 overrides num_epochs
  c.warmup_epochs = 20
  c.base_lr = 1e-3  # scaled by batch_size / 512
  c.warmup_lr = 5e-7
  c.min_lr = 5e-6
  c.weight_decay = 0.05
  c.layer_decay = 1.0  # < 1: layer-wise lr decay (fine-tuning; see optim.scale_by_layer_decay)
  c.grad_clip = 5.0
  c.ema_decay = 0.9999
  c.label_smoothing = 0.1
  c.mixup = ml_collections.ConfigDict(dict(mixup_alpha=0.8, cutmix_alpha=1.0, prob=1.0,
                                           switch_prob=0.5))
  c.on_nonfinite = "stop"  # or "skip": drop the update of a step with a NaN/Inf loss or gradient

  c.mesh = ml_collections.ConfigDict(dict(data=-1, fsdp=1, num_devices=-1))  # -1: all / the rest
  c.distributed = ml_collections.FieldReference(None, bool)  # None: if JAX_COORDINATOR_ADDRESS set
  c.seed = 0
  c.log_every_steps = 100
  c.checkpoint_every_steps = 1000
  c.keep_checkpoints = 3
  c.eval_every_steps = 0  # 0: evaluate at the end only
  # Resume a workdir whose checkpoints were trained with other settings (batch size, schedule,
  # data, ...; vig_jax/run_config.py lists those free to change): off, that is a one-line error.
  c.allow_config_change = False
  # A converted checkpoint (python -m vig_jax.convert): a head of another class count is
  # re-initialised, the position embedding resized to image_size; the rest must match.
  c.init_from = ""
  c.eval_from = ""  # --mode=eval on a converted checkpoint instead of the workdir's
  return c
