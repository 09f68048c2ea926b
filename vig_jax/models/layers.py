"""Building blocks shared by plain and hierarchical ViG (docs/model.md, docs/bigla.md)."""
import functools
from typing import Any, Callable, Optional, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from pallas_kernels import bigla

GATE_RANK = 16
GATE_LOGIT_NORMALIZER = 16.0

Initializer = Callable[..., jax.Array]
# PyTorch's default conv/linear weight init (kaiming_uniform, a=sqrt(5)).
torch_default_init = nn.initializers.variance_scaling(1 / 3, "fan_in", "uniform")
# Xavier-uniform with gain 2^-2.5, the original's init for the mixer projections and dwconv.
xavier_small_init = nn.initializers.variance_scaling(2.0**-5, "fan_avg", "uniform")


def conv(features, kernel, stride, name, use_bias=True, dtype=jnp.float32, groups=1, init=torch_default_init):
  """A conv with the original's padding: 1 on every side, whatever the kernel."""
  return nn.Conv(features, (kernel, kernel), strides=stride, padding=((1, 1), (1, 1)),
                 feature_group_count=groups, use_bias=use_bias, dtype=dtype, kernel_init=init,
                 name=name)


def conv_out_size(size, kernel, stride):
  return (size + 2 - kernel) // stride + 1


class SwiGLU(nn.Module):
  """W_down(SiLU(a) * b) with [a | b] = x W_up; no biases."""
  hidden: int
  dtype: Any = jnp.float32
  kernel_init: Initializer = nn.initializers.normal(0.02)

  @nn.compact
  def __call__(self, x):
    dense = functools.partial(nn.Dense, use_bias=False, dtype=self.dtype, kernel_init=self.kernel_init)
    a, b = jnp.split(dense(2 * self.hidden, name="up_proj")(x), 2, axis=-1)
    return dense(x.shape[-1], name="down_proj")(nn.silu(a) * b)


class BiGLAMixer(nn.Module):
  """Depthwise conv + bidirectional gated linear attention + 2D gating locality injection.

  Input and output are NHWC token grids [B, H, W, d]; the sequence is the row-major flattening.
  """
  num_heads: int
  act_in_conv: bool = False
  out_act: bool = False
  bigla_impl: str = "auto"
  # Mesh axes the batch is sharded over; when set, BiGLA runs under jax.shard_map over them (the
  # Pallas kernels are not partitioned by jit). Needs an active mesh (jax.sharding.use_mesh).
  bigla_batch_axes: Optional[Sequence[str]] = None
  dtype: Any = jnp.float32
  proj_init: Initializer = xavier_small_init

  @nn.compact
  def __call__(self, x):
    batch, height, width, dim = x.shape
    heads = self.num_heads
    dk, dv = dim // 2, dim  # expand_k 0.5, expand_v 1.0
    dense = functools.partial(nn.Dense, dtype=self.dtype, kernel_init=self.proj_init)

    c = conv(dim, 3, 1, "in_proj", use_bias=False, dtype=self.dtype, groups=dim, init=xavier_small_init)(x)
    if self.act_in_conv:
      c = nn.silu(c)
    c = c.reshape(batch, height * width, dim)

    q, k, v = jnp.split(dense(2 * dk + dv, use_bias=False, name="qkv_proj")(c), [dk, 2 * dk], axis=-1)
    z = dense(GATE_RANK, use_bias=False, name="gk_proj_0")(c)
    z = dense(2 * dk, name="gk_proj_1", bias_init=nn.initializers.zeros)(z)
    # Log-decays in fp32: they are summed over hundreds of tokens.
    log_gates = jax.nn.log_sigmoid(z.astype(jnp.float32)) / GATE_LOGIT_NORMALIZER
    gf, gb = jnp.split(log_gates, 2, axis=-1)

    split = lambda t: t.reshape(batch, height * width, heads, t.shape[-1] // heads)
    o = self._bigla(split(q), split(k), split(v), split(gf), split(gb))

    norm = functools.partial(nn.RMSNorm, epsilon=1e-6, dtype=self.dtype)
    o_hat = norm(name="g_norm")(o)
    l_hat = norm(name="l_norm")(split(c))
    g = nn.sigmoid(split(dense(dim, name="g_proj")(c)))
    y = (g * o_hat + (1 - g) * l_hat).reshape(batch, height * width, dim)
    if self.out_act:
      y = nn.silu(y)
    y = dense(dim, use_bias=False, name="o_proj")(y)
    return y.reshape(batch, height, width, dim)

  def _bigla(self, *args):
    fn = functools.partial(bigla, impl=self.bigla_impl)
    if self.bigla_batch_axes:
      spec = jax.sharding.PartitionSpec(tuple(self.bigla_batch_axes))
      fn = jax.shard_map(fn, in_specs=(spec,) * 5, out_specs=spec)
    return fn(*args)


class Block(nn.Module):
  """Pre-norm residual block: x + DropPath(Mixer(norm(x))), then the same with a SwiGLU FFN."""
  num_heads: int
  ffn_hidden: int
  norm: str  # "rms" (plain ViG) or "layer" (hierarchical ViG)
  drop_path: float = 0.0
  act_in_conv: bool = False
  out_act: bool = False
  bigla_impl: str = "auto"
  bigla_batch_axes: Optional[Sequence[str]] = None
  dtype: Any = jnp.float32
  proj_init: Initializer = xavier_small_init
  ffn_init: Initializer = nn.initializers.normal(0.02)

  @nn.compact
  def __call__(self, x, train: bool = False):
    if self.norm == "rms":
      make_norm = functools.partial(nn.RMSNorm, epsilon=1e-6, dtype=self.dtype)
    else:
      make_norm = functools.partial(nn.LayerNorm, epsilon=1e-5, dtype=self.dtype)
    # Stochastic depth: one keep/drop per sample, rescaled by 1/keep (Dropout over the batch axis).
    drop_path = nn.Dropout(self.drop_path, broadcast_dims=tuple(range(1, x.ndim)),
                           deterministic=not train)
    mixer = BiGLAMixer(self.num_heads, self.act_in_conv, self.out_act, self.bigla_impl,
                       self.bigla_batch_axes, self.dtype, self.proj_init, name="mixer")
    x = x + drop_path(mixer(make_norm(name="norm1")(x)))
    ffn = SwiGLU(self.ffn_hidden, self.dtype, self.ffn_init, name="ffn")
    return x + drop_path(ffn(make_norm(name="norm2")(x)))


def make_block(remat: bool):
  # static_argnums counts `self`: `train` (argument 2) stays a Python bool under remat.
  return nn.remat(Block, static_argnums=(2,)) if remat else Block


def drop_path_rates(rate, total_blocks):
  return [float(r) for r in np.linspace(0.0, rate, total_blocks)]


def ffn_hidden(dim, multiple):
  """SwiGLU width of the original: `multiple * ceil(int(8 * dim / 3) / multiple)`."""
  return multiple * -(-int(8 * dim / 3) // multiple)


def _cubic_weights(t, a=-0.75):
  """Cubic-convolution weights for the 4 taps at offsets -1, 0, 1, 2 (PyTorch's bicubic, a=-0.75)."""
  def near(x):  # |x| <= 1
    return ((a + 2) * x - (a + 3)) * x * x + 1

  def far(x):  # 1 < |x| < 2
    return ((a * x - 5 * a) * x + 8 * a) * x - 4 * a

  return np.stack([far(t + 1), near(t), near(1 - t), far(2 - t)], axis=-1)


def bicubic_matrix(in_size: int, out_size: int) -> np.ndarray:
  """[out, in] matrix of `F.interpolate(mode="bicubic", align_corners=False)` along one axis.

  Sources at (i + 0.5) * in/out - 0.5, taps clamped to the border, no antialiasing.
  """
  src = (np.arange(out_size) + 0.5) * (in_size / out_size) - 0.5
  base = np.floor(src)
  weights = _cubic_weights(src - base)
  matrix = np.zeros((out_size, in_size))
  for tap in range(4):
    idx = np.clip(base.astype(int) - 1 + tap, 0, in_size - 1)
    np.add.at(matrix, (np.arange(out_size), idx), weights[:, tap])
  return matrix


def resize_pos_embed(pos_embed, grid_in, grid_out):
  """Resize a [1, h*w, d] position embedding on its 2D grid with PyTorch's bicubic."""
  if tuple(grid_in) == tuple(grid_out):
    return pos_embed
  rows = jnp.asarray(bicubic_matrix(grid_in[0], grid_out[0]), pos_embed.dtype)
  cols = jnp.asarray(bicubic_matrix(grid_in[1], grid_out[1]), pos_embed.dtype)
  grid = pos_embed.reshape(grid_in[0], grid_in[1], -1)
  grid = jnp.einsum("oh,hwd,pw->opd", rows, grid, cols, precision=jax.lax.Precision.HIGHEST)
  return grid.reshape(1, grid_out[0] * grid_out[1], -1)
