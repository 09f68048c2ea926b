"""BiGLA by `lax.associative_scan` over (decay, k^T v) pairs.

Materialises an [L, dk, dv] state per head: log-depth and fine for short sequences, memory-bound
for long ones.
"""
import jax
import jax.numpy as jnp


def _combine(earlier, later):
  decay_a, state_a = earlier
  decay_b, state_b = later
  return decay_a * decay_b, decay_b[..., None] * state_a + state_b


def bigla_associative_scan(q, k, v, log_gate_fwd, log_gate_bwd):
  out_dtype = v.dtype
  q, k, v = (x.astype(jnp.float32) for x in (q, k, v))
  q = q * q.shape[-1] ** -0.5
  kv = k[..., :, None] * v[..., None, :]  # [B, L, H, dk, dv]
  out = 0.0
  for log_gate, reverse in ((log_gate_fwd, False), (log_gate_bwd, True)):
    decay = jnp.exp(log_gate.astype(jnp.float32))
    _, states = jax.lax.associative_scan(_combine, (decay, kv), reverse=reverse, axis=1)
    out = out + jnp.einsum("blhk,blhkv->blhv", q, states)
  return (out / 2).astype(out_dtype)
