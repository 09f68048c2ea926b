"""The original recipe's optimizer (DESIGN.md §3): AdamW, warm-up + cosine, clipping."""
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


def create_optimizer(schedule, *, weight_decay, b1=0.9, b2=0.999, eps=1e-8, grad_clip=5.0):
  return optax.chain(
      optax.clip_by_global_norm(grad_clip),
      optax.adamw(schedule, b1=b1, b2=b2, eps=eps, weight_decay=weight_decay, mask=decay_mask))
