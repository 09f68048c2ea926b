"""The Mosaic GPU BiGLA forward: its in-chunk factorisation (CPU), its lowering for CUDA (CPU),
and, on a GPU, forward and all five gradients against the lax.scan reference.

Tolerances as in test_pallas_kernels: bf16 inputs 2e-2 of max |reference| (the kernel rounds
its MMA operands, the decayed q and k, the states and the scores, to bf16 and accumulates in
fp32). The GPU cases cover the lengths (1, ragged chunks, several chunks),
head sizes, gate regimes down to -6 per token and both gate dtypes.
"""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import NamedSharding, PartitionSpec as P

from pallas_kernels import bigla
from pallas_kernels import mosaic_gpu
from tests.pallas_kernels.test_pallas_kernels import (
    CLOSED, MIXED, OPEN, case_id, check_against_reference, loss, make_inputs)

GPU_CASES = [  # (batch, length, heads, dk, dv, gate range, dtype of q/k/v, dtype of the gates)
    (2, 1, 2, 32, 64, MIXED, jnp.bfloat16, jnp.float32),
    (1, 7, 2, 32, 64, CLOSED, jnp.bfloat16, jnp.float32),
    (2, 196, 2, 32, 64, MIXED, jnp.bfloat16, jnp.float32),  # ViG: bf16 activations, fp32 gates
    (2, 196, 3, 32, 64, OPEN, jnp.bfloat16, jnp.bfloat16),
    (1, 200, 1, 32, 128, CLOSED, jnp.bfloat16, jnp.bfloat16),
    (1, 512, 2, 64, 64, MIXED, jnp.bfloat16, jnp.bfloat16),
    (1, 1024, 1, 32, 64, CLOSED, jnp.bfloat16, jnp.bfloat16),
]


def test_levels_factor_every_pair_decay_with_exponents_at_most_zero():
  """The level decomposition rebuilds the chunk's score matrix of both directions."""
  c, dk = mosaic_gpu.C, 8
  keys = jax.random.split(jax.random.PRNGKey(0), 4)
  q, k = (np.asarray(jax.random.normal(key, (c, dk)), np.float64) for key in keys[:2])
  gf, gb = (np.asarray(jax.random.uniform(key, (c, dk), jnp.float32, *MIXED), np.float64)
            for key in keys[2:])
  mats = mosaic_gpu.level_matrices()
  assert set(np.unique(mats)) == {0.0, 1.0}

  cf, cb = np.cumsum(gf, 0), np.cumsum(gb, 0) - gb
  t, j = np.arange(c)[:, None, None], np.arange(c)[None, :, None]
  decay = (np.where(j <= t, np.exp(np.minimum(cf[:, None] - cf[None], 0)), 0)
           + np.where(j >= t, np.exp(np.minimum(cb[None] - cb[:, None], 0)), 0))
  expected = np.sum(q[:, None] * k[None] * decay, axis=-1)

  row, col = np.arange(c)[:, None], np.arange(c)[None, :]
  scores = np.where(row == col, 2 * np.sum(q * k, axis=1)[:, None], 0.0)
  covered = row == col
  for mat, s in zip(mats, mosaic_gpu.LEVELS):
    ef, eb = mat @ gf, mat @ gb
    assert np.all(ef <= 0) and np.all(eb <= 0)
    second = (row // s) % 2 == 1
    q_hat = q * np.exp(np.where(second, ef, eb))
    k_hat = k * np.exp(np.where(second, eb - gb, ef - gf))
    keep = np.asarray(mosaic_gpu.level_pairs(row, col, s.bit_length() - 1))
    assert not np.any(keep & covered)  # every pair belongs to one level
    covered |= keep
    scores = np.where(keep, q_hat @ k_hat.T, scores)
  assert np.all(covered)
  np.testing.assert_allclose(scores, expected, rtol=1e-12, atol=1e-12)
  np.testing.assert_array_equal(mats[-2] @ gf, np.cumsum(gf, 0))  # prefix sums (0/1 exact)


def test_supports_only_what_the_kernel_takes():
  def args(dtype=jnp.bfloat16, gate=jnp.float32, length=196, dk=32, dv=64):
    x = jax.ShapeDtypeStruct((2, length, 3, dk), dtype)
    g = jax.ShapeDtypeStruct((2, length, 3, dk), gate)
    return x, x, jax.ShapeDtypeStruct((2, length, 3, dv), dtype), g, g

  assert mosaic_gpu.supports(*args())
  assert mosaic_gpu.supports(*args(gate=jnp.bfloat16, length=1024))
  assert not mosaic_gpu.supports(*args(dtype=jnp.float32))
  assert not mosaic_gpu.supports(*args(length=4096))  # the backward states overflow SMEM
  assert not mosaic_gpu.supports(*args(dk=16))
  assert not mosaic_gpu.supports(*args(dv=32))


def test_chunk_size_error():
  args = make_inputs(0, 1, 7, 2, 32, 64, CLOSED, jnp.bfloat16, jnp.float32)
  with pytest.raises(ValueError, match="chunks of 64"):
    bigla(*args, impl="mosaic_gpu", chunk_size=16)


@pytest.mark.parametrize("gate_dtype", [jnp.bfloat16, jnp.float32])
def test_forward_lowers_to_mosaic_gpu(gate_dtype):
  b, l, h, dk, dv = 2, 196, 3, 32, 64
  args = [jax.ShapeDtypeStruct((b, l, h, d), dtype) for d, dtype in
          ((dk, jnp.bfloat16), (dk, jnp.bfloat16), (dv, jnp.bfloat16), (dk, gate_dtype),
           (dk, gate_dtype))]
  fwd = jax.jit(functools.partial(bigla, impl="mosaic_gpu"))
  exported = jax.export.export(fwd, platforms=["cuda"])(*args)
  assert "mosaic_gpu" in exported.mlir_module()


@pytest.mark.gpu
@pytest.mark.skipif(jax.default_backend() != "gpu", reason="needs a GPU")
@pytest.mark.parametrize("case", GPU_CASES, ids=case_id)
def test_gpu_matches_reference(case):
  assert mosaic_gpu.supports(*make_inputs(0, *case))  # not the pallas_gpu fallback
  with jax.default_matmul_precision("highest"):  # keep the reference out of TF32
    check_against_reference(functools.partial(bigla, impl="mosaic_gpu"), case, seed=1)


@pytest.mark.gpu
@pytest.mark.skipif(jax.default_backend() != "gpu", reason="needs a GPU")
def test_gpu_unsupported_inputs_run_pallas_gpu():
  args = make_inputs(0, 1, 70, 2, 16, 32, MIXED, jnp.float32, jnp.float32)
  np.testing.assert_array_equal(jax.jit(functools.partial(bigla, impl="mosaic_gpu"))(*args),
                                jax.jit(functools.partial(bigla, impl="pallas_gpu"))(*args))


@pytest.mark.gpu
@pytest.mark.skipif(jax.default_backend() != "gpu", reason="needs a GPU")
def test_gpu_under_shard_map():
  """As the model calls it: batch sharded over the devices, forward and gradients unchanged."""
  mesh = jax.make_mesh((jax.device_count(),), ("data",))
  args = make_inputs(0, 2 * jax.device_count(), 196, 2, 32, 64, MIXED, jnp.bfloat16, jnp.float32)
  assert mosaic_gpu.supports(*args)
  fn = functools.partial(bigla, impl="mosaic_gpu")
  sharded_fn = jax.shard_map(fn, mesh=mesh, in_specs=(P("data"),) * 5, out_specs=P("data"))
  sharded_args = jax.device_put(args, NamedSharding(mesh, P("data")))
  np.testing.assert_array_equal(jax.jit(sharded_fn)(*sharded_args), jax.jit(fn)(*args))
  grads = jax.jit(jax.grad(functools.partial(loss, sharded_fn), argnums=range(5)))(*sharded_args)
  ref_grads = jax.jit(jax.grad(functools.partial(loss, fn), argnums=range(5)))(*args)
  for g, ref in zip(grads, ref_grads):
    np.testing.assert_array_equal(g, ref)
