"""Fine-tune pretrained ViG weights on an image folder (one sub-folder per class).

  python -m vig_jax.convert --model vig_s --from-hub --out converted/vig_s
  python train.py --config=configs/finetune.py:model=vig_s,folder=/data/pets,res=384 \
      --workdir=workdirs/pets

Argument: comma-separated name=value, names
  model   registry name (default vig_s)
  folder  the image folder (required); the number of classes is its number of sub-folders
  res     training and evaluation resolution (default 224)
  init    converted checkpoint to start from (default converted/<model>)

The checkpoint's head is replaced by a freshly initialised one when the class count differs, and a
plain ViG's position embedding is resized to `res` (bicubic, as the model does at run time).
Schedule: 30 epochs, 2 of linear warm-up, cosine decay, a tenth of the from-scratch peak rate, no
Mixup/CutMix; --config.layer_decay=0.75 adds layer-wise lr decay. Set for one GPU; on a CPU add
--config.dtype=float32.
"""
import ml_collections

from configs.common import base_config

_ARGS = dict(model="vig_s", folder="", res=224, init="")


def _parse(arg):
  args = dict(_ARGS)
  for item in filter(None, (arg or "").split(",")):
    name, sep, value = item.partition("=")
    if not sep or name not in _ARGS:
      raise ValueError(f"configs/finetune.py: bad argument {item!r}; expected name=value, names "
                       f"{sorted(_ARGS)}")
    try:
      args[name] = type(_ARGS[name])(value)
    except ValueError as e:
      raise ValueError(f"configs/finetune.py: {name}={value!r} is not a {type(_ARGS[name]).__name__}") from e
  if not args["folder"]:
    raise ValueError("configs/finetune.py: folder=<image folder> is required, e.g. "
                     "configs/finetune.py:model=vig_s,folder=/data/pets,res=384")
  return args


def data_config(folder):
  """The input: an image folder, a held-out tenth for evaluation."""
  return ml_collections.ConfigDict(dict(source="folder", folder=folder, eval_fraction=0.1))


def get_config(arg=None):
  args = _parse(arg)
  c = base_config()
  c.model = args["model"]
  c.data = data_config(args["folder"])
  c.image_size = args["res"]
  c.init_from = args["init"] or f"converted/{args['model']}"

  c.batch_size = 64
  c.eval_batch_size = 64
  c.num_epochs = 30
  c.warmup_epochs = 2
  c.base_lr = 5e-4  # x batch/512: peak 6.25e-5
  c.warmup_lr = 1e-6
  c.min_lr = 1e-6
  c.weight_decay = 0.05
  c.ema_decay = 0.999
  c.mixup.update(mixup_alpha=0.0, cutmix_alpha=0.0)  # small datasets: plain labels (smoothed)
  c.log_every_steps = 20
  c.checkpoint_every_steps = 500
  c.keep_checkpoints = 2
  return c
