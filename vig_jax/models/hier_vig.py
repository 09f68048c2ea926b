"""Hierarchical ViG: ViG-H-T/S/B (docs/model.md, "Hierarchical ViG"), channels-last."""
from typing import Any, Optional, Sequence

import flax.linen as nn
import jax.numpy as jnp

from vig_jax.models import layers

_trunc_normal = nn.initializers.truncated_normal(0.02)


class HierViG(nn.Module):
  """Four stages of widths dims * (1, 2, 4, 8) at strides 4, 8, 16, 32. NHWC images -> logits."""
  num_classes: int = 1000
  dims: int = 96
  depths: Sequence[int] = (2, 2, 5, 2)
  num_heads: Sequence[int] = (3, 6, 12, 24)
  drop_path_rate: float = 0.0
  dtype: Any = jnp.float32
  bigla_impl: str = "auto"
  bigla_batch_axes: Optional[Sequence[str]] = None
  remat: bool = False

  @nn.compact
  def __call__(self, images, train: bool = False, features_only: bool = False):
    """Logits [B, classes]; with features_only the four stage maps, [B, H/4, W/4, C] to
    [B, H/32, W/32, 8C] (each stage's output, before the head's norm)."""
    ln = lambda name: nn.LayerNorm(epsilon=1e-5, dtype=self.dtype, name=name)
    conv = lambda features, name: layers.conv(features, 3, 2, name, dtype=self.dtype)

    x = conv(self.dims // 2, "stem_conv_0")(images)
    x = nn.gelu(ln("stem_norm_0")(x), approximate=False)
    x = ln("stem_norm_1")(conv(self.dims, "stem_conv_1")(x))

    block = layers.make_block(self.remat)
    rates = iter(layers.drop_path_rates(self.drop_path_rate, sum(self.depths)))
    stage_maps = []
    for stage, (depth, heads) in enumerate(zip(self.depths, self.num_heads)):
      width = self.dims * 2**stage
      if stage:
        x = ln(f"downsample_{stage}_norm")(conv(width, f"downsample_{stage}_conv")(x))
      for i in range(depth):
        x = block(heads, layers.ffn_hidden(width, 32), "layer", next(rates), False, False,
                  self.bigla_impl, self.bigla_batch_axes, self.dtype, _trunc_normal, _trunc_normal,
                  name=f"stages_{stage}_blocks_{i}")(x, train)
      stage_maps.append(x)
    if features_only:
      return tuple(stage_maps)

    x = jnp.mean(ln("head_norm")(x), axis=(1, 2))
    head = nn.Dense(self.num_classes, dtype=self.dtype, kernel_init=_trunc_normal, name="head")
    return head(x).astype(jnp.float32)

  def features(self, images, train: bool = False):
    """The four stage maps for dense tasks: `model.apply(variables, images, method="features")`."""
    return self(images, train, features_only=True)
