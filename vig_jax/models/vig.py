"""Plain (isotropic) ViG: ViG-T/S/B (docs/model.md, "Plain ViG")."""
from typing import Any, Optional, Sequence

import flax.linen as nn
import jax.numpy as jnp

from vig_jax.models import layers


class PatchEmbed(nn.Module):
  """conv(P/2+1, stride P/2) -> LN -> SiLU -> conv(3, stride 2) -> LN: an image to a P-strided grid."""
  embed_dim: int
  patch_size: int
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    half = self.patch_size // 2
    ln = lambda name: nn.LayerNorm(epsilon=1e-5, dtype=self.dtype, name=name)
    x = layers.conv(self.embed_dim // 2, half + 1, half, "conv_0", dtype=self.dtype)(x)
    x = nn.silu(ln("norm_0")(x))
    x = layers.conv(self.embed_dim, 3, 2, "conv_1", dtype=self.dtype)(x)
    return ln("norm_1")(x)

  @staticmethod
  def grid_size(img_size, patch_size):
    half = patch_size // 2
    return layers.conv_out_size(layers.conv_out_size(img_size, half + 1, half), 3, 2)


class ViG(nn.Module):
  """Plain ViG. NHWC float images -> logits. Any input size: the position embedding is resized."""
  num_classes: int = 1000
  img_size: int = 224
  patch_size: int = 16
  embed_dim: int = 192
  depth: int = 12
  num_heads: int = 3
  act_in_conv: bool = False
  out_act: bool = False
  drop_path_rate: float = 0.0
  dtype: Any = jnp.float32
  bigla_impl: str = "auto"
  bigla_batch_axes: Optional[Sequence[str]] = None
  remat: bool = False

  @nn.compact
  def __call__(self, images, train: bool = False, features_only: bool = False):
    """Logits [B, classes]; with features_only the normalised token grid [B, H/P, W/P, d]."""
    x = PatchEmbed(self.embed_dim, self.patch_size, self.dtype, name="patch_embed")(images)
    grid = PatchEmbed.grid_size(self.img_size, self.patch_size)
    pos_embed = self.param("pos_embed", nn.initializers.truncated_normal(0.02),
                           (1, grid * grid, self.embed_dim))
    pos_embed = layers.resize_pos_embed(pos_embed, (grid, grid), x.shape[1:3])
    x = x + pos_embed.reshape(1, *x.shape[1:]).astype(x.dtype)

    block = layers.make_block(self.remat)
    hidden = layers.ffn_hidden(self.embed_dim, 256)
    for i, rate in enumerate(layers.drop_path_rates(self.drop_path_rate, self.depth)):
      x = block(self.num_heads, hidden, "rms", rate, self.act_in_conv, self.out_act, self.bigla_impl,
                self.bigla_batch_axes, self.dtype, layers.xavier_small_init,
                nn.initializers.normal(0.02), name=f"blocks_{i}")(x, train)

    x = nn.RMSNorm(epsilon=1e-6, dtype=self.dtype, name="norm")(x)
    if features_only:
      return x
    x = jnp.mean(x, axis=(1, 2))
    head = nn.Dense(self.num_classes, dtype=self.dtype, kernel_init=nn.initializers.normal(0.02),
                    name="head")
    return head(x).astype(jnp.float32)

  def features(self, images, train: bool = False):
    """The token grid for dense tasks: `model.apply(variables, images, method="features")`."""
    return self(images, train, features_only=True)
