"""Training state and the jitted train / eval steps."""
from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import optax

from vig_jax.data import mixup_cutmix, normalize


@flax.struct.dataclass
class TrainState:
  step: jax.Array
  params: Any
  opt_state: Any
  ema_params: Any
  # First step (1-based, as logged) whose loss or gradients were not finite (-1: none). Checked on
  # the host before every checkpoint, so a checkpoint never holds what a NaN step produced.
  nonfinite_step: jax.Array
  skipped_steps: jax.Array


def create_state(model, tx, rng, image_size):
  # Init traces a batch of one, which cannot be split over the batch axes; params do not depend on
  # how BiGLA is sharded.
  params = model.clone(bigla_batch_axes=None).init(rng, jnp.zeros((1, image_size, image_size, 3)))
  params = params["params"]
  return TrainState(step=jnp.zeros((), jnp.int32), params=params, opt_state=tx.init(params),
                    ema_params=params, nonfinite_step=jnp.full((), -1, jnp.int32),
                    skipped_steps=jnp.zeros((), jnp.int32))


def _tree_where(cond, a, b):
  return jax.tree.map(lambda x, y: jnp.where(cond, x, y), a, b)


def make_train_step(model, tx, *, augment, num_classes, mixup, label_smoothing, ema_decay,
                    accum_steps, seed, skip_nonfinite):
  """(state, batch) -> (state, metrics). Gradients are accumulated over `accum_steps` slices.

  `augment(rng, batch)` turns the host's batch into float32 images (the device half of the input
  pipeline).
  """

  def loss_fn(params, images, targets, rng):
    logits = model.apply({"params": params}, images, train=True, rngs={"dropout": rng})
    return optax.softmax_cross_entropy(logits, targets).mean()

  def train_step(state, batch):
    rng = jax.random.fold_in(jax.random.PRNGKey(seed), state.step)
    augment_rng, mix_rng, drop_rng = jax.random.split(rng, 3)
    with jax.named_scope("input"):  # the input's device half, named for profiles
      images = augment(augment_rng, batch)
    images, targets = mixup_cutmix(mix_rng, images, batch["label"], num_classes=num_classes,
                                   label_smoothing=label_smoothing, **mixup)
    grad_fn = jax.value_and_grad(loss_fn)
    if accum_steps == 1:
      loss, grads = grad_fn(state.params, images, targets, drop_rng)
    else:
      # Slice i takes examples i, i+k, ...: every device contributes to every slice.
      split = lambda x: x.reshape(x.shape[0] // accum_steps, accum_steps, *x.shape[1:]).swapaxes(0, 1)

      def accumulate(carry, xs):
        i, (img, tgt) = xs
        loss, grads = grad_fn(state.params, img, tgt, jax.random.fold_in(drop_rng, i))
        return jax.tree.map(jnp.add, carry, (loss, grads)), None

      zeros = (jnp.zeros(()), jax.tree.map(jnp.zeros_like, state.params))
      xs = (jnp.arange(accum_steps), (split(images), split(targets)))
      (loss, grads), _ = jax.lax.scan(accumulate, zeros, xs)
      loss, grads = jax.tree.map(lambda x: x / accum_steps, (loss, grads))

    grad_norm = optax.tree.norm(grads)
    finite = jnp.isfinite(loss) & jnp.isfinite(grad_norm)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    ema = jax.tree.map(lambda e, p: ema_decay * e + (1 - ema_decay) * p, state.ema_params, params)
    new = state.replace(step=state.step + 1, params=params, opt_state=opt_state, ema_params=ema)
    if skip_nonfinite:
      new = _tree_where(finite, new, state.replace(step=state.step + 1,
                                                   skipped_steps=state.skipped_steps + 1))
    else:
      first_bad = jnp.where((state.nonfinite_step < 0) & ~finite, state.step + 1,
                            state.nonfinite_step)
      new = new.replace(nonfinite_step=first_bad)
    return new, {"loss": loss, "grad_norm": grad_norm}

  return train_step


def make_eval_step(model):
  """(params, batch) -> summed top-1 / top-5 hits and the example count (mask weighted)."""

  def eval_step(params, batch):
    logits = model.apply({"params": params}, normalize(batch["image"]))
    top5 = jax.lax.top_k(logits, min(5, logits.shape[-1]))[1]
    hits = top5 == batch["label"][:, None]
    mask = batch["mask"]
    return {"top1": jnp.sum(hits[:, 0] * mask), "top5": jnp.sum(jnp.any(hits, axis=1) * mask),
            "count": jnp.sum(mask)}

  return eval_step
