"""`bigla`: the one entry point to every BiGLA implementation."""
import concurrent.futures
import functools
import logging

import jax
import numpy as np

from pallas_kernels.associative import bigla_associative_scan
from pallas_kernels.chunked import bigla_chunked
from pallas_kernels.mosaic_gpu import bigla_mosaic_gpu
from pallas_kernels.pallas_gpu import bigla_pallas_gpu
from pallas_kernels.pallas_tpu import bigla_pallas_tpu
from pallas_kernels.reference import bigla_reference

IMPLS = ("reference", "associative_scan", "chunked", "pallas_gpu", "mosaic_gpu", "pallas_tpu")


def default_impl(backend=None):
  """The fastest implementation available on `backend` (default: jax.default_backend())."""
  backend = backend or jax.default_backend()
  # Not mosaic_gpu yet: faster with bf16 gates, slower with the fp32 gates ViG passes (H100,
  # 2026-11-26, BENCHMARKS.md).
  return {"gpu": "pallas_gpu", "cuda": "pallas_gpu", "tpu": "pallas_tpu"}.get(backend, "chunked")


@functools.cache
def _pallas_tpu_works():
  """pallas_tpu is tested in interpret mode only: before "auto" first uses it on a TPU, run it
  (values and gradients) against chunked on a small input. False, with a warning, if it fails to
  compile or disagrees."""
  # "auto" is resolved while a model is traced: check in a thread of its own, outside that trace.
  with concurrent.futures.ThreadPoolExecutor(1) as pool:
    return pool.submit(_check_pallas_tpu).result()


def _check_pallas_tpu():
  rng = np.random.default_rng(0)
  shape = (2, 64, 2, 16)
  args = [rng.standard_normal(shape).astype(np.float32) for _ in range(3)]
  args += [np.log(rng.uniform(0.8, 0.99, shape)).astype(np.float32) for _ in range(2)]
  cotangent = rng.standard_normal(shape).astype(np.float32)

  def value_and_grads(fn):
    def run(*inputs):
      out, vjp = jax.vjp(fn, *inputs)
      return out, vjp(cotangent)
    out, grads = jax.jit(run)(*args)  # compiled as a model would compile it
    return np.asarray(out), [np.asarray(g) for g in grads]

  with jax.default_matmul_precision("highest"):  # chunked at full fp32, as the kernel
    try:
      got = value_and_grads(bigla_pallas_tpu)
    except Exception as e:  # pylint: disable=broad-except  # a Mosaic error, whatever its type
      logging.warning("bigla: pallas_tpu does not run on this TPU (%s: %s); using chunked",
                      type(e).__name__, (str(e).strip().splitlines() or [""])[0][:200])
      return False
    want = value_and_grads(bigla_chunked)
  error = max(float(np.max(np.abs(a - b)) / np.max(np.abs(b)))
              for a, b in zip([got[0], *got[1]], [want[0], *want[1]]))
  if not error <= 1e-2:  # also catches NaN
    logging.warning("bigla: pallas_tpu differs from chunked by %.3g (relative) on this TPU; "
                    "using chunked", error)
    return False
  return True


def _auto_impl():
  impl = default_impl(jax.default_backend())
  return "chunked" if impl == "pallas_tpu" and not _pallas_tpu_works() else impl


def _check_shapes(q, k, v, log_gate_fwd, log_gate_bwd):
  if q.ndim != 4:
    raise ValueError(f"bigla: q must be [batch, length, heads, dk], got shape {q.shape}")
  for name, x in (("k", k), ("log_gate_fwd", log_gate_fwd), ("log_gate_bwd", log_gate_bwd)):
    if x.shape != q.shape:
      raise ValueError(f"bigla: {name} has shape {x.shape}, expected q's shape {q.shape}")
  if v.ndim != 4 or v.shape[:3] != q.shape[:3]:
    raise ValueError(f"bigla: v must be [batch, length, heads, dv] matching q {q.shape}, got {v.shape}")


def bigla(q, k, v, log_gate_fwd, log_gate_bwd, *, impl="auto", chunk_size=None, interpret=False):
  """Bidirectional gated linear attention, (forward + backward) / 2, scale dk^-1/2 inside.

  Args:
    q, k, log_gate_fwd, log_gate_bwd: [batch, length, heads, dk]; log-gates are log-decays (< 0).
    v: [batch, length, heads, dv].
    impl: "auto" (pallas_gpu on GPU, pallas_tpu on TPU once checked against chunked there,
      chunked elsewhere), or one of IMPLS. mosaic_gpu runs pallas_gpu for inputs its forward
      kernel does not take.
    chunk_size: tokens per chunk (None: the implementation's default). chunked: a multiple of 16
      or at most 16;
      pallas_tpu: tokens per grid step, a multiple of 16; pallas_gpu: 16 only; mosaic_gpu: 64
      only.
    interpret: run the Pallas kernels in interpret mode (CPU testing); ignored by XLA ones.

  Returns:
    [batch, length, heads, dv] in v's dtype; accumulation is fp32 in every implementation.
  """
  _check_shapes(q, k, v, log_gate_fwd, log_gate_bwd)
  if impl == "auto":
    impl = _auto_impl()
  args = (q, k, v, log_gate_fwd, log_gate_bwd)
  if impl == "reference":
    return bigla_reference(*args)
  if impl == "associative_scan":
    return bigla_associative_scan(*args)
  if impl == "chunked":
    return bigla_chunked(*args, chunk_size=chunk_size)
  if impl == "pallas_gpu":
    return bigla_pallas_gpu(*args, chunk_size=chunk_size, interpret=interpret)
  if impl == "mosaic_gpu":
    return bigla_mosaic_gpu(*args, chunk_size=chunk_size)
  if impl == "pallas_tpu":
    return bigla_pallas_tpu(*args, chunk_size=chunk_size, interpret=interpret)
  raise ValueError(f"bigla: unknown impl {impl!r}; choose 'auto' or one of {IMPLS}")
