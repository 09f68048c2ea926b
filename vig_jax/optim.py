"""The original recipe's optimizer (docs/recipe.md): AdamW, warm-up + cosine, clipping; and
layer-wise learning-rate decay for fine-tuning."""
import re

import jax
import optax


def learning_rate(*, base_lr, batch_size, total_steps, warmup_steps, warmup_lr, min_lr):
  """Linear scaling by batch/512, linear warm-up from warmup_lr, cosine down to min_lr."""
  peak = base_lr * batch_size / 512
  return optax.warmup_cosine_decay_schedule(
      init_value=warmup_lr, peak_value=peak, warmup_steps=warmup_steps,
      decay_steps=max(total_steps, warmup_steps + 1), end_value=min_lr)


def decay_mask(params):
  """Weight decay on matrices and conv kernels only: not on norms, biases or pos_embed."""
  return jax.tree_util.tree_map_with_path(
      lambda path, x: x.ndim > 1 and getattr(path[-1], "key", None) != "pos_embed", params)


def _block_position(name):
  """(stage, block) of a top-level param name of either family, or None if it is no block."""
  m = re.fullmatch(r"blocks_(\d+)|stages_(\d+)_blocks_(\d+)", name)
  if m is None:
    return None
  return (0, int(m[1])) if m[1] else (int(m[2]), int(m[3]))


def layer_ids(names):
  """{top-level param name: layer} for layer-wise decay: the stem (patch_embed, pos_embed, stem_*)
  is layer 0, the blocks in order 1..L, a ViG-H downsample the layer of its stage's first block,
  the final norm and head L + 1."""
  blocks = sorted((_block_position(n), n) for n in names if _block_position(n) is not None)
  ids = {n: i + 1 for i, (_, n) in enumerate(blocks)}
  first_of_stage = {}
  for (stage, _), n in blocks:
    first_of_stage.setdefault(stage, ids[n])
  for n in names:
    downsample = re.fullmatch(r"downsample_(\d+)_\w+", n)
    if n in ids:
      continue
    if n in ("patch_embed", "pos_embed") or n.startswith("stem_"):
      ids[n] = 0
    elif downsample:
      ids[n] = first_of_stage[int(downsample[1])]
    else:
      ids[n] = len(blocks) + 1
  return ids


def scale_by_layer_decay(decay):
  """Multiplies the updates of layer i by decay ** (L + 1 - i) (BEiT-style layer-wise lr decay):
  the head learns at the full rate, earlier layers ever more slowly."""

  def scale(updates, params=None):
    del params
    ids = layer_ids(list(updates))
    top = max(ids.values())
    return {n: jax.tree.map(lambda x, n=n: x * decay ** (top - ids[n]), u)
            for n, u in updates.items()}

  return optax.stateless(scale)


def create_optimizer(schedule, *, weight_decay, b1=0.9, b2=0.999, eps=1e-8, grad_clip=5.0,
                     layer_decay=1.0):
  """AdamW after global-norm clipping; layer_decay < 1 adds layer-wise lr decay."""
  adamw = optax.adamw(schedule, b1=b1, b2=b2, eps=eps, weight_decay=weight_decay, mask=decay_mask)
  parts = [optax.clip_by_global_norm(grad_clip), adamw]
  if layer_decay != 1.0:
    parts.append(scale_by_layer_decay(layer_decay))
  return optax.chain(*parts)
