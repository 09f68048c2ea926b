"""Reference BiGLA: two `lax.scan` recurrences with an fp32 state. The test oracle (slow)."""
import jax
import jax.numpy as jnp


def _scan_direction(q, k, v, log_gate, reverse):
  """One direction of S_t = diag(exp(g_t)) S_{t-1} + k_t^T v_t, o_t = q_t S_t. Inputs [B, L, H, d]."""
  b, _, h, dk = q.shape
  dv = v.shape[-1]

  def step(state, xs):
    q_t, k_t, v_t, g_t = xs  # [B, H, d]
    state = jnp.exp(g_t)[..., None] * state + k_t[..., :, None] * v_t[..., None, :]
    return state, jnp.einsum("bhk,bhkv->bhv", q_t, state)

  xs = tuple(jnp.moveaxis(x.astype(jnp.float32), 1, 0) for x in (q, k, v, log_gate))
  init = jnp.zeros((b, h, dk, dv), jnp.float32)
  _, out = jax.lax.scan(step, init, xs, reverse=reverse)
  return jnp.moveaxis(out, 0, 1)


def bigla_reference(q, k, v, log_gate_fwd, log_gate_bwd):
  scale = q.shape[-1] ** -0.5
  q = q.astype(jnp.float32) * scale
  out = _scan_direction(q, k, v, log_gate_fwd, reverse=False)
  out += _scan_direction(q, k, v, log_gate_bwd, reverse=True)
  return (out / 2).astype(v.dtype)
