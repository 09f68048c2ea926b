"""Chunk math shared by the Pallas BiGLA kernels (GPU and TPU), for one head and one chunk.

A chunk is C = 16 tokens, the smallest size every backend's matmul accepts. Values are 2-D:
q, k, gates [C, dk]; v and the output cotangent g [C, dv]; states [dk, dv] in fp32. `dtype` is
the matmul operand dtype (bf16 or fp32); accumulation is always fp32.

In-chunk cumulative log-decays, in log2 units (exp2 is one hardware instruction): `cf` is the
inclusive prefix sum of the forward gates (decay from key j to query t >= j: 2^(cf_t - cf_j)),
`cb` the exclusive prefix sum of the backward gates (from key j to query t <= j: 2^(cb_j - cb_t)).
Every exponent is a sum of log-decays, never positive: stable for log-decays of any size.

Four recurrences cross chunk boundaries: each direction's state (sum of decayed k^T v) and its
adjoint (sum of decayed q^T g, the state's gradient), each carried away from where it enters.
"""
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp

CHUNK = 16
_LOG2E = math.log2(math.e)


class Decay(NamedTuple):
  """How one direction crosses a chunk: its state enters at one boundary, leaves at the other."""
  to_query: jax.Array  # [C, dk]: decay from the entry boundary to each token as a query
  from_key: jax.Array  # [C, dk]: decay from each token as a key to the exit boundary
  total: jax.Array  # [dk, 1]: decay across the chunk, applied to the rows of a state


def _iota(shape, axis):
  return jax.lax.broadcasted_iota(jnp.int32, shape, axis)


def dot(a, b, dtype):
  """a @ b with operands cast to `dtype` and fp32 accumulation; fp32 stays fp32 (no TF32)."""
  precision = jax.lax.Precision.HIGHEST if dtype == jnp.float32 else None
  return jnp.dot(a.astype(dtype), b.astype(dtype), precision=precision,
                 preferred_element_type=jnp.float32)


def prefix_sum_by_matmul(x):
  """Inclusive prefix sum over tokens as an fp32 matmul with a triangle of ones (Mosaic TPU has
  no cumsum)."""
  c = x.shape[0]
  return dot((_iota((c, c), 0) >= _iota((c, c), 1)).astype(jnp.float32), x, jnp.float32)


def prefix_sum_by_scan(x):
  """Inclusive prefix sum over tokens as a scan. For Triton: its fp32 dot (no TF32) runs on the
  FMA units with [C, C] operands that cost registers, and the kernels run out of them."""
  return jnp.cumsum(x.astype(jnp.float32), axis=0)


def _log2_gates(g):
  return g.astype(jnp.float32) * _LOG2E


def forward_decay(gf, prefix_sum):
  """(Decay, cf) of the forward direction, which enters a chunk on the left. prefix_sum: one of
  the prefix_sum_by_* functions."""
  gf = _log2_gates(gf)
  cf = prefix_sum(gf)
  total = jnp.sum(gf, axis=0)
  return Decay(jnp.exp2(cf), jnp.exp2(total[None, :] - cf), jnp.exp2(total)[:, None]), cf


def backward_decay(gb, prefix_sum):
  """(Decay, cb) of the backward direction, which enters a chunk on the right."""
  gb = _log2_gates(gb)
  cb = prefix_sum(gb) - gb
  total = jnp.sum(gb, axis=0)
  return Decay(jnp.exp2(total[None, :] - cb), jnp.exp2(cb), jnp.exp2(total)[:, None]), cb


def _propagate(state, a, b, decay_a, total, dtype):
  return total * state + dot((a * decay_a).T, b, dtype)


def carry_state(state, k, v, decay, dtype):
  """The state leaving the chunk, given the one entering it."""
  return _propagate(state, k, v, decay.from_key, decay.total, dtype)


def carry_adjoint(adjoint, q, g, decay, dtype):
  """The adjoint state leaving the chunk (against the direction), given the one entering it."""
  return _propagate(adjoint, q, g, decay.to_query, decay.total, dtype)


def state_output(q, decay, state, dtype):
  """What the chunk's queries read from the state entering it: [C, dv]."""
  return dot(q * decay.to_query, state, dtype)


def state_dq(g, decay, state, dtype):
  """Gradient of q through state_output."""
  return decay.to_query * dot(g, state.T, dtype)


def adjoint_dk(v, decay, adjoint, dtype):
  """Gradient of k through what the chunk's keys add to the state leaving it."""
  return decay.from_key * dot(v, adjoint.T, dtype)


def adjoint_dv(k, decay, adjoint, dtype):
  """Gradient of v through what the chunk's keys add to the state leaving it."""
  return dot(k * decay.from_key, adjoint, dtype)


def pair_decays(cf, cb):
  """[C(t), C(j), dk]: the in-chunk decay from key j to query t for both directions (forward
  where j <= t, backward where j > t; the diagonal is 2^0 = 1 in both)."""
  c = cf.shape[0]
  lower = (_iota((c, c), 0) >= _iota((c, c), 1))[:, :, None]
  forward = cf[:, None, :] - cf[None, :, :]
  backward = cb[None, :, :] - cb[:, None, :]
  return jnp.exp2(jnp.where(lower, forward, backward))


def _diag_twice(c):
  """1 off the diagonal, 2 on it: the diagonal pair belongs to both directions."""
  return 1.0 + (_iota((c, c), 0) == _iota((c, c), 1)).astype(jnp.float32)


def scores(q, k, pair):
  """The chunk's [C, C] score matrix of both directions: sum_k q_tk k_jk pair_tjk."""
  return jnp.sum(q[:, None, :] * k[None, :, :] * pair, axis=-1) * _diag_twice(q.shape[0])


class IntraGrads(NamedTuple):
  """In-chunk gradients of q and k. The gate gradients need them split by direction; the diagonal
  pair belongs to both and cancels there, so it is kept apart (adding no rounding noise)."""
  dq_f: jax.Array
  dq_b: jax.Array
  dq_diag: jax.Array
  dk_f: jax.Array
  dk_b: jax.Array
  dk_diag: jax.Array


def intra_grads(q, k, pair, dscores):
  """Gradients of q and k through `scores`, given its cotangent dscores [C, C].

  One [C, C, dk] tensor, the pair decays weighted by dscores, serves both directions: each takes
  its side of the diagonal as it reduces (on the GPU, fewer such tensors live at once)."""
  c = q.shape[0]
  row, col = _iota((c, c), 0), _iota((c, c), 1)
  w = jnp.where(row != col, dscores, 0.0)[:, :, None] * pair

  def direction(mask):
    w_dir = jnp.where(mask[:, :, None], w, 0.0)
    return jnp.sum(w_dir * k[None, :, :], axis=1), jnp.sum(w_dir * q[:, None, :], axis=0)

  dq_f, dk_f = direction(row > col)
  dq_b, dk_b = direction(row < col)
  ds_diag = 2 * jnp.sum(jnp.where(row == col, dscores, 0.0), axis=1, keepdims=True)
  return IntraGrads(dq_f=dq_f, dq_b=dq_b, dq_diag=ds_diag * k,
                    dk_f=dk_f, dk_b=dk_b, dk_diag=ds_diag * q)
