"""Convert the original PyTorch ViG checkpoints to vig-jax params.

Library: `convert_official(state_dict, kind, **original_kwargs) -> (model, variables)`.
CLI:     python -m vig_jax.convert --model vig_s --src ckpt.pth --out DIR
         python -m vig_jax.convert --model vig_s --from-hub [--revision R] --out DIR
"""
import os
import re
import sys

import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags

from vig_jax import hub, pretrained
from vig_jax.models import MODELS, ViG, create_model
from vig_jax.weight_files import read_state_dict

# (our param path, the original's state_dict key) as regex substitutions, tried in order.
_PLAIN_RULES = [
    (r"^patch_embed/conv_0/", "patch_embed.proj.0."),
    (r"^patch_embed/norm_0/", "patch_embed.proj.1."),
    (r"^patch_embed/conv_1/", "patch_embed.proj.3."),
    (r"^patch_embed/norm_1/", "patch_embed.proj.4."),
    (r"^blocks_(\d+)/norm1/", r"blocks.\1.attn_norm."),
    (r"^blocks_(\d+)/norm2/", r"blocks.\1.mlp_norm."),
    (r"^blocks_(\d+)/mixer/", r"blocks.\1.attn."),
    (r"^blocks_(\d+)/ffn/up_proj/", r"blocks.\1.mlp.gate_proj."),
    (r"^blocks_(\d+)/ffn/down_proj/", r"blocks.\1.mlp.down_proj."),
    (r"^norm/", "norm."),
    (r"^head/", "head."),
    (r"^pos_embed$", "pos_embed"),
]
_HIER_RULES = [
    (r"^stem_conv_0/", "patch_embed.0."),
    (r"^stem_norm_0/", "patch_embed.2."),
    (r"^stem_conv_1/", "patch_embed.5."),
    (r"^stem_norm_1/", "patch_embed.7."),
    (r"^stages_(\d+)_blocks_(\d+)/norm1/", r"layers.\1.blocks.\2.norm."),
    (r"^stages_(\d+)_blocks_(\d+)/norm2/", r"layers.\1.blocks.\2.norm2."),
    (r"^stages_(\d+)_blocks_(\d+)/mixer/", r"layers.\1.blocks.\2.op."),
    (r"^stages_(\d+)_blocks_(\d+)/ffn/up_proj/", r"layers.\1.blocks.\2.mlp.fc1."),
    (r"^stages_(\d+)_blocks_(\d+)/ffn/down_proj/", r"layers.\1.blocks.\2.mlp.fc2."),
    (r"^downsample_(\d+)_conv/", lambda m: f"layers.{int(m[1]) - 1}.downsample.1."),
    (r"^downsample_(\d+)_norm/", lambda m: f"layers.{int(m[1]) - 1}.downsample.3."),
    (r"^head_norm/", "classifier.norm."),
    (r"^head/", "classifier.head."),
]
# Inside the mixer the names match the original's, but for the sub-module indices.
_MIXER_RULES = [(r"in_proj/", "in_proj.0."), (r"gk_proj_(\d)/", r"gk_proj.\1.")]
_LEAF_RULES = [(r"kernel$", "weight"), (r"scale$", "weight"), (r"bias$", "bias")]


def original_key(path, hierarchical):
  """The original state_dict key of one of our params, e.g. 'blocks_0/mixer/qkv_proj/kernel'."""
  key = path
  for pattern, repl in (_HIER_RULES if hierarchical else _PLAIN_RULES):
    key, hits = re.subn(pattern, repl, key)
    if hits:
      break
  for pattern, repl in _MIXER_RULES + _LEAF_RULES:
    key = re.sub(pattern, repl, key)
  return key.replace("/", ".")


def _to_ours(array, target_shape):
  """Torch layout -> ours: conv [O, I, kh, kw] -> [kh, kw, I, O]; linear [O, I] -> [I, O]."""
  if array.ndim == 4:
    array = array.transpose(2, 3, 1, 0)
  elif array.ndim == 2 and len(target_shape) == 2:
    array = array.T
  return array


def convert_state_dict(state_dict, model, example_shape=None):
  """Maps an original state_dict onto `model`'s params. Returns {'params': ...} (numpy, fp32).

  Missing, unexpected and mis-shaped keys are all reported, by name, in one ValueError.
  """
  state_dict = {k: np.asarray(v) for k, v in state_dict.items()}
  hierarchical = not isinstance(model, ViG)
  size = getattr(model, "img_size", 224)
  images = jnp.zeros(example_shape or (1, size, size, 3))
  shapes = jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), images))["params"]
  flat, treedef = jax.tree_util.tree_flatten_with_path(shapes)
  leaves, missing, misshaped, used = [], [], [], set()
  for path, target in flat:
    ours = "/".join(p.key for p in path)
    key = original_key(ours, hierarchical)
    if key not in state_dict:
      missing.append(key)
      leaves.append(None)
      continue
    used.add(key)
    value = _to_ours(state_dict[key], target.shape)
    if value.shape != target.shape:
      misshaped.append(f"{key} {tuple(state_dict[key].shape)} (expected {_torch_shape(target.shape)})")
    leaves.append(value.astype(np.float32))
  unexpected = sorted(set(state_dict) - used)
  problems = [f"missing keys {missing}" if missing else "",
              f"unexpected keys {unexpected}" if unexpected else "",
              f"mis-shaped keys {misshaped}" if misshaped else ""]
  problems = [p for p in problems if p]
  if problems:
    raise ValueError("state_dict does not match the model: " + "; ".join(problems))
  return {"params": jax.tree_util.tree_unflatten(treedef, leaves)}


def _torch_shape(shape):
  if len(shape) == 4:
    return (shape[3], shape[2], shape[0], shape[1])
  return tuple(reversed(shape)) if len(shape) == 2 else tuple(shape)


# Original constructor arguments that our modules implement, with the only values they take.
_FIXED_PLAIN = dict(stride=None, channels=3, if_cls_token=False, use_middle_cls_token=False,
                    classification_mode="avgpool", if_abs_pos_embed=True, if_rc_pe=False,
                    hidden_act="swish", use_out_gate=False, use_swiglu=True, rope_mode="none",
                    expand_k=0.5, expand_v=1.0, patch_embed_version="v2", use_bias_in_patch=True,
                    use_act_in_patch=False, use_bias_in_dwconv=False)
_FIXED_HIER = dict(patch_size=4, in_chans=3, expand_k=0.5, expand_v=1.0, hidden_act="swish",
                   use_out_act=False, use_act_in_conv=False, rope_mode="none", mlp_ratio=4.0,
                   mlp_act_layer="gelu", mlp_drop_rate=0.0, gmlp=True, patch_norm=True,
                   norm_layer="ln2d", downsample_version="v3", patchembed_version="v2")
_ATTN_MODELS = ("fused_chunk", "fused_recurrent", "chunk")  # the same function, other kernels


def _check_fixed(kwargs, fixed):
  for name, value in kwargs.items():
    if name in fixed and fixed[name] is not None and value != fixed[name]:
      raise ValueError(f"original argument {name}={value!r} is not supported (only {fixed[name]!r})")


def model_from_original(kind, **kwargs):
  """Our module for the original constructor's keyword arguments."""
  if kind == "plain":
    _check_fixed(kwargs, _FIXED_PLAIN)
    if kwargs.get("stride", kwargs.get("patch_size", 16)) != kwargs.get("patch_size", 16):
      raise ValueError("original argument stride must equal patch_size")
    if kwargs.get("attn_model", "fused_chunk") not in _ATTN_MODELS:
      raise ValueError(f"original argument attn_model={kwargs['attn_model']!r} is not supported")
    return ViG(num_classes=kwargs.get("num_classes", 1000), img_size=kwargs.get("img_size", 224),
               patch_size=kwargs.get("patch_size", 16), embed_dim=kwargs["embed_dim"],
               depth=kwargs["depth"], num_heads=kwargs["num_heads"],
               act_in_conv=kwargs.get("use_act_in_conv", False),
               out_act=kwargs.get("use_out_act", False),
               drop_path_rate=kwargs.get("drop_path_rate", 0.0))
  if kind == "hier":
    _check_fixed(kwargs, _FIXED_HIER)
    if any(m not in _ATTN_MODELS for m in kwargs.get("attn_models", ())):
      raise ValueError(f"original argument attn_models={kwargs['attn_models']!r} is not supported")
    return create_model("vig_h_t", num_classes=kwargs.get("num_classes", 1000), dims=kwargs["dims"],
                        depths=tuple(kwargs["depths"]), num_heads=tuple(kwargs["num_heads"]),
                        drop_path_rate=kwargs.get("drop_path_rate", 0.0))
  raise ValueError(f"kind must be 'plain' or 'hier', got {kind!r}")


def convert_official(state_dict, kind, **original_kwargs):
  """(model, variables) such that `model.apply(variables, images_nhwc)` gives the original logits."""
  model = model_from_original(kind, **original_kwargs)
  return model, convert_state_dict(state_dict, model)


def size_overrides(name, state_dict):
  """num_classes (and for plain ViG img_size) as the checkpoint has them."""
  head = state_dict.get("head.weight", state_dict.get("classifier.head.weight"))
  overrides = {"num_classes": int(head.shape[0])} if head is not None else {}
  if MODELS[name][0] is ViG and "pos_embed" in state_dict:
    grid = int(round(state_dict["pos_embed"].shape[1] ** 0.5))
    overrides["img_size"] = grid * create_model(name).patch_size
  return overrides


FLAGS = flags.FLAGS
flags.DEFINE_enum("model", None, sorted(MODELS), "Model size of the checkpoint.")
flags.DEFINE_string("src", None, "Original checkpoint: .pth, .npz or .safetensors.")
flags.DEFINE_bool("from-hub", False, f"Convert the released weights from the hub ({hub.REPO_ID}).")
flags.DEFINE_string("revision", None, "Hub revision (branch, tag or commit) with --from-hub.")
flags.DEFINE_string("key", None, "Entry of a training checkpoint to convert, e.g. model_ema "
                    "(default: model, else model_ema, else state_dict, else the whole file).")
flags.DEFINE_string("out", None, "New (or empty) directory for the Orbax checkpoint.")


def _source():
  from_hub = FLAGS["from-hub"].value
  if bool(FLAGS.src) == from_hub:
    raise ValueError("give either --src=FILE or --from-hub")
  if FLAGS.revision and not from_hub:
    raise ValueError("--revision needs --from-hub")
  return hub.download(FLAGS.model, FLAGS.revision) if from_hub else FLAGS.src


def main(argv):
  del argv
  try:
    pretrained.check_new_directory(FLAGS.out)  # before any download or compute
    state_dict = read_state_dict(_source(), key=FLAGS.key)
    overrides = size_overrides(FLAGS.model, state_dict)
    model = create_model(FLAGS.model, **overrides)
    variables = convert_state_dict(state_dict, model)
    pretrained.save(FLAGS.out, variables["params"], FLAGS.model, overrides)
  except (ValueError, OSError) as e:  # OSError: FileNotFoundError, FileExistsError, hub errors
    sys.exit(f"convert: error: {e}")
  print(f"wrote {FLAGS.model} {overrides} params to {os.path.abspath(FLAGS.out)}")


if __name__ == "__main__":
  flags.mark_flags_as_required(["model", "out"])
  app.run(main)
