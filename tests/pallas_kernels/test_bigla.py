"""The XLA BiGLA implementations agree with the lax.scan reference, forward and gradients."""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pallas_kernels import bigla

ARGNAMES = ("q", "k", "v", "log_gate_fwd", "log_gate_bwd")


def make_inputs(seed, batch, length, heads, dk, dv, gate_range, dtype=jnp.float32):
  keys = jax.random.split(jax.random.PRNGKey(seed), 5)
  q = jax.random.normal(keys[0], (batch, length, heads, dk), dtype)
  k = jax.random.normal(keys[1], (batch, length, heads, dk), dtype)
  v = jax.random.normal(keys[2], (batch, length, heads, dv), dtype)
  gates = [jax.random.uniform(key, (batch, length, heads, dk), jnp.float32, *gate_range)
           for key in keys[3:]]
  return (q, k, v, *gates)


def rel_err(x, ref):
  x, ref = np.asarray(x, np.float64), np.asarray(ref, np.float64)
  return np.max(np.abs(x - ref)) / max(np.max(np.abs(ref)), 1e-30)


def loss(impl, *args):
  # Quadratic so that the backward pass needs the forward (a linear loss lets XLA drop it).
  return jnp.sum(bigla(*args, impl=impl).astype(jnp.float32) ** 2)


@functools.lru_cache(maxsize=None)
def forward_and_grads(impl):
  """jit(args -> (output, the five gradients)) for one implementation."""
  grad_fn = jax.grad(functools.partial(loss, impl), argnums=range(5))
  return jax.jit(lambda *args: (bigla(*args, impl=impl), grad_fn(*args)))


CASES = [  # (batch, length, heads, dk, dv, gate range)
    (2, 1, 2, 16, 32, (-6.0, -0.01)),
    (2, 7, 3, 32, 64, (-6.0, -5.0)),        # strongly closed gates
    (1, 37, 2, 32, 64, (-1e-3, -1e-5)),     # nearly open gates, one ragged chunk
    (2, 196, 3, 32, 64, (-6.0, -0.01)),     # ViG's 14x14 grid, ragged against 64
    (1, 200, 2, 64, 128, (-0.1, -1e-3)),
]
XLA_IMPLS = ["associative_scan", "chunked"]


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"L{c[1]}_dk{c[3]}_dv{c[4]}_g{c[5][0]}")
def test_forward_and_gradients_match_reference_fp32(case):
  args = make_inputs(0, *case)
  ref_out, ref_grads = forward_and_grads("reference")(*args)
  for impl in XLA_IMPLS:
    out, grads = forward_and_grads(impl)(*args)
    assert rel_err(out, ref_out) < 1e-5, impl
    for name, g, ref in zip(ARGNAMES, grads, ref_grads):
      assert np.all(np.isfinite(g)), (impl, name)
      if case[1] > 1 or name[:3] != "log":  # at L=1 the decays do not touch the output: grad 0
        assert rel_err(g, ref) < 1e-4, (impl, name, rel_err(g, ref))
      else:
        np.testing.assert_array_equal(g, 0.0)


def test_bf16_matches_fp32_reference():
  # bf16 inputs are exact in fp32, so the main error is the bf16 rounding of the output (2^-8).
  args = make_inputs(1, 2, 196, 3, 32, 64, (-6.0, -0.01), dtype=jnp.bfloat16)
  ref, ref_grads = forward_and_grads("reference")(*(a.astype(jnp.float32) for a in args))
  for impl in XLA_IMPLS:
    out, grads = forward_and_grads(impl)(*args)
    assert out.dtype == jnp.bfloat16
    assert rel_err(out, ref) < 8e-3, impl
    for name, g, ref_g in zip(ARGNAMES, grads, ref_grads):
      assert g.dtype == args[ARGNAMES.index(name)].dtype
      assert rel_err(g, ref_g) < 3e-2, (impl, name, rel_err(g, ref_g))


@pytest.mark.parametrize("chunk_size", [16, 32, 128])
def test_chunk_size_does_not_change_result(chunk_size):
  args = make_inputs(2, 1, 150, 2, 32, 64, (-3.0, -0.001))
  out = bigla(*args, impl="chunked", chunk_size=chunk_size)
  assert rel_err(out, bigla(*args, impl="reference")) < 1e-5


def test_closed_gates_isolate_tokens():
  # With decay exp(-60) per token nothing crosses a token: o_t = s/2 * 2 (q_t . k_t) v_t.
  q, k, v, _, _ = make_inputs(3, 1, 70, 1, 16, 32, (-1.0, -0.5))
  gates = jnp.full(q.shape, -60.0)
  expected = jnp.einsum("blhk,blhk->blh", q, k)[..., None] * v * 16**-0.5
  for impl in ("reference", *XLA_IMPLS):
    assert rel_err(bigla(q, k, v, gates, gates, impl=impl), expected) < 1e-5, impl


def test_auto_is_chunked_on_cpu():
  args = make_inputs(4, 1, 20, 1, 16, 32, (-1.0, -0.1))
  np.testing.assert_array_equal(bigla(*args), bigla(*args, impl="chunked"))


def test_bad_arguments_are_named():
  q, k, v, gf, gb = make_inputs(5, 1, 8, 1, 16, 32, (-1.0, -0.1))
  with pytest.raises(ValueError, match="unknown impl 'fast'"):
    bigla(q, k, v, gf, gb, impl="fast")
  with pytest.raises(ValueError, match="log_gate_bwd has shape"):
    bigla(q, k, v, gf, gb[:, :4])
  with pytest.raises(ValueError, match="v must be"):
    bigla(q, k, v[:, :4], gf, gb)
  with pytest.raises(ValueError, match="multiple of 16"):
    bigla(q, k, v, gf, gb, impl="chunked", chunk_size=24)
