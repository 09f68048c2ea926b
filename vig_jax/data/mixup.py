"""timm's Mixup/CutMix in batch mode, in jnp ops for the jitted train step."""
import jax
import jax.numpy as jnp


def smooth_one_hot(labels, num_classes, smoothing):
  """timm's smoothed targets: smoothing / n everywhere, plus 1 - smoothing on the label."""
  off = smoothing / num_classes
  return jax.nn.one_hot(labels, num_classes) * (1.0 - smoothing) + off


def _cutmix_mask(rng, lam, height, width):
  """timm's `rand_bbox`: a box of side sqrt(1 - lam) times the image's, centred anywhere.

  Returns a [height, width] bool mask of the box and lam corrected to the
  box's clipped area.
  """
  ry, rx = jax.random.split(rng)
  ratio = jnp.sqrt(1.0 - lam)
  cut_h = jnp.floor(height * ratio).astype(jnp.int32)
  cut_w = jnp.floor(width * ratio).astype(jnp.int32)
  cy = jax.random.randint(ry, (), 0, height)
  cx = jax.random.randint(rx, (), 0, width)
  y0, y1 = jnp.clip(cy - cut_h // 2, 0, height), jnp.clip(cy + cut_h // 2, 0, height)
  x0, x1 = jnp.clip(cx - cut_w // 2, 0, width), jnp.clip(cx + cut_w // 2, 0, width)
  rows, cols = jnp.arange(height)[:, None], jnp.arange(width)[None, :]
  mask = (rows >= y0) & (rows < y1) & (cols >= x0) & (cols < x1)
  return mask, 1.0 - ((y1 - y0) * (x1 - x0)) / (height * width)


def partners(x):
  """x with each pair of neighbours swapped (rows 2i and 2i + 1); an odd batch's last row stays.

  timm's batch mode mixes example i with example B - 1 - i. For a shuffled batch, pairing
  neighbours is the same in distribution, and the pairs stay on one device when the batch is
  sharded over data-parallel devices: the reversed batch would move every image across devices in
  every step (a collective-permute of the whole batch).
  """
  even = x.shape[0] - x.shape[0] % 2
  pairs = x[:even].reshape(even // 2, 2, *x.shape[1:])[:, ::-1].reshape(even, *x.shape[1:])
  return jnp.concatenate([pairs, x[even:]]) if even < x.shape[0] else pairs


def mixup_cutmix(rng, images, labels, *, num_classes, mixup_alpha=0.8, cutmix_alpha=1.0,
                 prob=1.0, switch_prob=0.5, label_smoothing=0.1):
  """Mixes each example with its partner (`partners`), as timm's Mixup(mode="batch").

  With probability `prob` the batch is mixed: by CutMix with probability
  `switch_prob` (if both alphas are > 0), else by Mixup; lam ~ Beta(alpha, alpha)
  of the chosen method. An alpha of 0 disables that method.

  Args:
    rng: a jax PRNG key.
    images: float [B, H, W, C].
    labels: int [B].

  Returns:
    (images, targets): mixed images and float32 [B, num_classes] soft targets,
    lam * smoothed(labels) + (1 - lam) * smoothed(partners' labels); rows sum to 1.
  """
  targets = smooth_one_hot(labels, num_classes, label_smoothing)
  if mixup_alpha <= 0 and cutmix_alpha <= 0:
    return images, targets
  apply_rng, switch_rng, mix_rng, cut_rng, box_rng = jax.random.split(rng, 5)
  if mixup_alpha > 0 and cutmix_alpha > 0:
    use_cutmix = jax.random.uniform(switch_rng) < switch_prob
  else:
    use_cutmix = jnp.asarray(cutmix_alpha > 0)
  lam_mix = jax.random.beta(mix_rng, mixup_alpha, mixup_alpha) if mixup_alpha > 0 else 1.0
  lam_cut = jax.random.beta(cut_rng, cutmix_alpha, cutmix_alpha) if cutmix_alpha > 0 else 1.0
  mask, lam_cut = _cutmix_mask(box_rng, lam_cut, images.shape[1], images.shape[2])
  apply = jax.random.uniform(apply_rng) < prob

  other = partners(images)
  mixed = jnp.where(use_cutmix, jnp.where(mask[None, :, :, None], other, images),
                    lam_mix * images + (1.0 - lam_mix) * other)
  lam = jnp.where(apply, jnp.where(use_cutmix, lam_cut, lam_mix), 1.0)
  images = jnp.where(apply, mixed, images).astype(images.dtype)
  return images, lam * targets + (1.0 - lam) * partners(targets)
