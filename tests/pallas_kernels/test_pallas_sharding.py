"""The Pallas BiGLA kernels run under jax.shard_map inside a sharded jit (batch sharded, length
whole) and give the unsharded result, forward and gradients. Interpret mode on CPU devices:
`make test` provides 8 (XLA_FLAGS=--xla_force_host_platform_device_count=8). The `gpu` test runs
the real lowering under shard_map on the GPUs there are."""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import NamedSharding, PartitionSpec as P

from pallas_kernels import bigla
from tests.pallas_kernels.test_pallas_kernels import MIXED, loss, make_inputs


def check_sharded_equals_unsharded(impl, interpret, check_vma=True):
  mesh = jax.make_mesh((jax.device_count(),), ("data",))
  batch = 2 * jax.device_count()
  args = make_inputs(0, batch, 20, 2, 16, 32, MIXED, jnp.float32, jnp.float32)
  fn = functools.partial(bigla, impl=impl, interpret=interpret)
  sharded_fn = jax.shard_map(fn, mesh=mesh, in_specs=(P("data"),) * 5, out_specs=P("data"),
                             check_vma=check_vma)
  sharded_args = jax.device_put(args, NamedSharding(mesh, P("data")))

  out = jax.jit(sharded_fn)(*sharded_args)
  assert out.sharding.is_equivalent_to(NamedSharding(mesh, P("data")), out.ndim)
  np.testing.assert_allclose(out, jax.jit(fn)(*args), rtol=1e-6, atol=1e-6)

  grads = jax.jit(jax.grad(functools.partial(loss, sharded_fn), argnums=range(5)))(*sharded_args)
  ref_grads = jax.jit(jax.grad(functools.partial(loss, fn), argnums=range(5)))(*args)
  for g, ref in zip(grads, ref_grads):
    np.testing.assert_allclose(g, ref, rtol=1e-5, atol=1e-5)


@pytest.mark.skipif(
    jax.device_count() < 2,
    reason="needs several devices: XLA_FLAGS=--xla_force_host_platform_device_count=8")
@pytest.mark.parametrize("impl, check_vma", [
    # jax 0.10.2's interpreter for GPU-style kernels breaks shard_map's varying-axes check (its
    # grid loop drops the carry's axes); the real lowering passes it (test_gpu_under_shard_map).
    ("pallas_gpu", False),
    ("pallas_tpu", True),
])
def test_interpret_sharded_equals_unsharded(impl, check_vma):
  check_sharded_equals_unsharded(impl, interpret=True, check_vma=check_vma)


@pytest.mark.gpu
@pytest.mark.skipif(jax.default_backend() != "gpu", reason="needs a GPU")
def test_gpu_under_shard_map():
  with jax.default_matmul_precision("highest"):
    check_sharded_equals_unsharded("pallas_gpu", interpret=False)
