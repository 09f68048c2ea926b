"""The Pallas BiGLA kernels agree with the lax.scan reference: forward and all five gradients.

CPU tests run the kernels in interpret mode (slow: small batches, few heads, L=1024 once per
kernel). The cases cover every length, head size, gate regime and dtype without the full product,
and the kernels' structural cases: GPU sequences split into segments (L=196 with 2x2 heads, 200,
1024), ragged segments and TPU blocks (196, 200), several TPU head groups (8 heads). The `gpu`
test runs the real Triton lowering on a GPU and is skipped elsewhere; the lowering tests check
on the CPU that both kernels lower (to Triton IR and to Mosaic), which interpret mode does not.

Tolerances (max |error| / max |reference|):
- fp32: 2e-5. The kernels accumulate in fp32 with fp32 (not TF32) matmuls; the error is fp32
  rounding of sums over up to L terms, measured at ~1e-6.
- bf16 inputs: 2e-2. The reference runs in fp32 on the same bf16 values; the kernels round the
  matmul operands (decayed q and k, the states, the score matrix) to bf16 (relative 2^-9 each)
  and the output to bf16, measured at ~5e-3.
"""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pallas_kernels import bigla, default_impl

CLOSED = (-6.0, -5.5)  # strongly closed gates: log-decay about -6 per token
OPEN = (-2e-3, -5e-4)  # nearly open
MIXED = (-6.0, -1e-3)

CASES = [  # (batch, length, heads, dk, dv, gate range, dtype of q/k/v, dtype of the gates)
    (2, 1, 2, 16, 32, MIXED, jnp.float32, jnp.float32),
    (1, 7, 2, 32, 64, CLOSED, jnp.float32, jnp.float32),
    (1, 196, 2, 32, 64, OPEN, jnp.float32, jnp.float32),
    (1, 200, 1, 64, 128, CLOSED, jnp.float32, jnp.float32),
    (1, 1024, 1, 32, 64, MIXED, jnp.float32, jnp.float32),
    (2, 196, 2, 32, 64, MIXED, jnp.bfloat16, jnp.float32),  # ViG: bf16 activations, fp32 gates
    (1, 200, 1, 16, 128, OPEN, jnp.bfloat16, jnp.bfloat16),
    (1, 7, 8, 32, 64, CLOSED, jnp.bfloat16, jnp.float32),  # TPU: two lane-dense head groups
]
ARGNAMES = ("q", "k", "v", "log_gate_fwd", "log_gate_bwd")


def case_id(case):
  b, l, h, dk, dv, gates, dtype, _ = case
  return f"L{l}-dk{dk}-dv{dv}-g{gates[0]}-{jnp.dtype(dtype).name}"


def make_inputs(seed, batch, length, heads, dk, dv, gates, dtype, gate_dtype):
  keys = jax.random.split(jax.random.PRNGKey(seed), 5)
  q, k = (jax.random.normal(key, (batch, length, heads, dk), dtype) for key in keys[:2])
  v = jax.random.normal(keys[2], (batch, length, heads, dv), dtype)
  log_gates = [jax.random.uniform(key, q.shape, jnp.float32, *gates).astype(gate_dtype)
               for key in keys[3:]]
  return (q, k, v, *log_gates)


def rel_err(x, ref):
  x, ref = np.asarray(x, np.float64), np.asarray(ref, np.float64)
  return np.max(np.abs(x - ref)) / max(np.max(np.abs(ref)), 1e-30)


def tolerance(dtype):
  return 2e-5 if dtype == jnp.float32 else 2e-2


def loss(fn, *args):
  # Quadratic with fixed random weights: every output element gets its own cotangent.
  out = fn(*args).astype(jnp.float32)
  weights = jax.random.normal(jax.random.PRNGKey(99), out.shape)
  return jnp.sum(weights * out + out ** 2)


def check_against_reference(fn, case, seed=0):
  args = make_inputs(seed, *case)
  dtype = case[6]
  ref_args = [a.astype(jnp.float32) for a in args]
  reference = functools.partial(bigla, impl="reference")

  out = jax.jit(fn)(*args)
  assert out.dtype == dtype
  assert rel_err(out, reference(*ref_args)) < tolerance(dtype)

  grads = jax.jit(jax.grad(functools.partial(loss, fn), argnums=range(5)))(*args)
  ref_grads = jax.grad(functools.partial(loss, reference), argnums=range(5))(*ref_args)
  for name, arg, g, ref in zip(ARGNAMES, args, grads, ref_grads):
    assert g.dtype == arg.dtype, name
    assert np.all(np.isfinite(np.asarray(g, np.float32))), name
    if case[1] == 1 and name.startswith("log_gate"):  # one token: no decay touches the output
      np.testing.assert_array_equal(g, 0.0)
    else:
      assert rel_err(g, ref) < tolerance(dtype), (name, rel_err(g, ref))


@pytest.mark.parametrize("impl", ["pallas_gpu", "pallas_tpu"])
@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_interpret_matches_reference(impl, case):
  check_against_reference(functools.partial(bigla, impl=impl, interpret=True), case)


@pytest.mark.gpu
@pytest.mark.skipif(jax.default_backend() != "gpu", reason="needs a GPU")
@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_gpu_lowering_matches_reference(case):
  with jax.default_matmul_precision("highest"):  # keep the reference out of TF32
    check_against_reference(functools.partial(bigla, impl="pallas_gpu"), case, seed=1)


@pytest.mark.parametrize("platform, impl, custom_call", [
    ("cuda", "pallas_gpu", "__gpu$xla.gpu.triton"), ("tpu", "pallas_tpu", "tpu_custom_call")])
def test_forward_and_backward_lower_for_the_device(platform, impl, custom_call):
  b, l, h, dk, dv = 2, 300, 6, 32, 64
  args = [jax.ShapeDtypeStruct((b, l, h, d), dtype) for d, dtype in
          ((dk, jnp.bfloat16), (dk, jnp.bfloat16), (dv, jnp.bfloat16), (dk, jnp.float32),
           (dk, jnp.float32))]
  grad = jax.jit(jax.grad(functools.partial(loss, functools.partial(bigla, impl=impl)),
                          argnums=range(5)))
  exported = jax.export.export(
      grad, platforms=[platform],
      disabled_checks=[jax.export.DisabledSafetyCheck.custom_call(custom_call)])(*args)
  assert exported.mlir_module().count(custom_call) >= 2  # forward and backward kernels


def test_tpu_block_size_does_not_change_result():
  args = make_inputs(0, 1, 70, 2, 16, 32, MIXED, jnp.float32, jnp.float32)
  out = [bigla(*args, impl="pallas_tpu", chunk_size=size, interpret=True) for size in (32, 128)]
  assert rel_err(out[0], out[1]) < 1e-6


def test_chunk_size_errors():
  args = make_inputs(0, *CASES[1])
  with pytest.raises(ValueError, match="chunks of 16"):
    bigla(*args, impl="pallas_gpu", chunk_size=32, interpret=True)
  with pytest.raises(ValueError, match="multiple of 16"):
    bigla(*args, impl="pallas_tpu", chunk_size=40, interpret=True)


def test_auto_picks_the_backends_kernel():
  assert [default_impl(b) for b in ("gpu", "tpu", "cpu")] == ["pallas_gpu", "pallas_tpu", "chunked"]
