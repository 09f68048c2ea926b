"""A plain Flax DeiT/ViT: the same-framework speed peer of the benchmarks (not part of the package).

timm's DeiT layout (conv patch embedding, class token, pre-norm blocks of multi-head attention and
a GELU MLP, LayerNorm eps 1e-6, head on the class token), with attention through
`jax.nn.dot_product_attention`: `implementation="cudnn"` (cuDNN flash attention) where cuDNN takes
the shape, "xla" otherwise; `compile_with_fallback` picks and reports which.
"""
from typing import Any, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp

SIZES = {"deit_tiny": (192, 12, 3), "deit_small": (384, 12, 6), "deit_base": (768, 12, 12)}


class Attention(nn.Module):
  num_heads: int
  implementation: Optional[str]
  dtype: Any

  @nn.compact
  def __call__(self, x):
    batch, tokens, dim = x.shape
    qkv = nn.Dense(3 * dim, dtype=self.dtype, name="qkv")(x)
    q, k, v = jnp.split(qkv.reshape(batch, tokens, 3 * self.num_heads, dim // self.num_heads), 3,
                        axis=2)
    o = jax.nn.dot_product_attention(q, k, v, implementation=self.implementation)
    return nn.Dense(dim, dtype=self.dtype, name="proj")(o.reshape(batch, tokens, dim))


class Block(nn.Module):
  num_heads: int
  implementation: Optional[str]
  dtype: Any

  @nn.compact
  def __call__(self, x):
    norm = lambda name: nn.LayerNorm(epsilon=1e-6, dtype=self.dtype, name=name)
    x = x + Attention(self.num_heads, self.implementation, self.dtype, name="attn")(norm("norm1")(x))
    h = nn.Dense(4 * x.shape[-1], dtype=self.dtype, name="fc1")(norm("norm2")(x))
    return x + nn.Dense(x.shape[-1], dtype=self.dtype, name="fc2")(nn.gelu(h, approximate=False))


class DeiT(nn.Module):
  """NHWC float images -> logits."""
  embed_dim: int = 192
  depth: int = 12
  num_heads: int = 3
  patch_size: int = 16
  num_classes: int = 1000
  implementation: Optional[str] = None  # jax.nn.dot_product_attention's: None, "xla", "cudnn"
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, images):
    p = self.patch_size
    x = nn.Conv(self.embed_dim, (p, p), strides=p, dtype=self.dtype, name="patch_embed")(images)
    x = x.reshape(x.shape[0], -1, self.embed_dim)
    cls = self.param("cls_token", nn.initializers.zeros, (1, 1, self.embed_dim))
    x = jnp.concatenate([jnp.broadcast_to(cls, (x.shape[0], 1, self.embed_dim)).astype(x.dtype), x],
                        axis=1)
    pos = self.param("pos_embed", nn.initializers.normal(0.02), (1, x.shape[1], self.embed_dim))
    x = x + pos.astype(x.dtype)
    for i in range(self.depth):
      x = Block(self.num_heads, self.implementation, self.dtype, name=f"blocks_{i}")(x)
    x = nn.LayerNorm(epsilon=1e-6, dtype=self.dtype, name="norm")(x)
    return nn.Dense(self.num_classes, dtype=self.dtype, name="head")(x[:, 0]).astype(jnp.float32)


def create(name, **overrides):
  """DeiT `name` (deit_tiny / deit_small / deit_base) with any field overridden."""
  embed_dim, depth, num_heads = SIZES[name]
  return DeiT(**{"embed_dim": embed_dim, "depth": depth, "num_heads": num_heads, **overrides})


def compile_with_fallback(build, args, implementations=("cudnn", "xla")):
  """(compiled, impl, refusals): `build(impl)` jitted and compiled with the first impl that works.

  cuDNN refuses some shapes at lowering or compile time (e.g. in training: "Unsupported sequence
  length Q 197, KV 197"); those fall through to the next implementation.
  """
  errors = []
  for impl in implementations:
    try:
      return jax.jit(build(impl)).lower(*args).compile(), impl, errors
    except Exception as e:  # noqa: BLE001 -- cuDNN's refusals come as several exception types
      errors.append(f"{impl}: {str(e).splitlines()[0][:200]}")
  raise RuntimeError("no attention implementation compiled: " + "; ".join(errors))
