"""impl="auto" on a TPU: pallas_tpu is checked against chunked first, chunked taken if it fails.

The TPU is simulated: jax.default_backend() answers "tpu" and pallas_tpu is replaced by the
interpret-mode kernel (works), a kernel that does not compile, or one that computes wrong values.
"""
import functools

import jax
import numpy as np
import pytest

from pallas_kernels import api
from pallas_kernels.pallas_tpu import bigla_pallas_tpu
from tests.pallas_kernels.test_bigla import make_inputs


def fails_to_compile(*args, **kwargs):
  raise RuntimeError("Mosaic failed to compile TPU kernel: unsupported shape\nmore detail")


def wrong_values(*args, **kwargs):
  return bigla_pallas_tpu(*args, **{**kwargs, "interpret": True}) * 1.5


@pytest.fixture
def on_tpu(monkeypatch):
  monkeypatch.setattr(jax, "default_backend", lambda: "tpu")
  api._pallas_tpu_works.cache_clear()  # pylint: disable=protected-access
  yield
  api._pallas_tpu_works.cache_clear()  # pylint: disable=protected-access


@pytest.mark.parametrize("kernel,picked,warning", [
    (functools.partial(bigla_pallas_tpu, interpret=True), "pallas_tpu", None),
    (fails_to_compile, "chunked", "pallas_tpu does not run on this TPU (RuntimeError: Mosaic"),
    (wrong_values, "chunked", "pallas_tpu differs from chunked by"),
], ids=["works", "fails_to_compile", "wrong_values"])
def test_auto_checks_pallas_tpu_once(on_tpu, monkeypatch, caplog, kernel, picked, warning):
  calls = []
  monkeypatch.setattr(api, "bigla_pallas_tpu", lambda *a, **k: calls.append(1) or kernel(*a, **k))
  args = make_inputs(0, 1, 16, 2, 16, 16, (-2.0, -1e-2))
  auto = lambda *a: api.bigla(*a, impl="auto", interpret=True)
  out = jax.jit(auto)(*args)  # "auto" is resolved while tracing: the check runs in there
  checked = len(calls)
  assert checked >= 1
  out_again = jax.jit(lambda *a: auto(*a) + 0)(*args)  # a second trace: no second check
  assert len(calls) == checked + (picked == "pallas_tpu")  # a failed kernel is not used again
  np.testing.assert_array_equal(out, out_again)
  warned = [r.getMessage() for r in caplog.records if "bigla:" in r.getMessage()]
  if warning is None:
    assert not warned
  else:
    assert len(warned) == 1 and warning in warned[0], warned  # once per process, one line
  expected = api.bigla(*args, impl="chunked") if picked == "chunked" else kernel(*args)
  np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-6)
