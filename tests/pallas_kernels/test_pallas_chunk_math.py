"""The GPU and TPU kernels' two in-chunk prefix sums agree with numpy's cumsum."""
import numpy as np

from pallas_kernels import pallas_chunk_math as cm


def test_prefix_sums_agree():
  x = np.random.default_rng(0).uniform(-6.0, 0.0, (cm.CHUNK, 32)).astype(np.float32)
  expected = np.cumsum(x.astype(np.float64), axis=0)
  for prefix_sum in (cm.prefix_sum_by_matmul, cm.prefix_sum_by_scan):
    np.testing.assert_allclose(np.asarray(prefix_sum(x)), expected, rtol=1e-6, atol=1e-5)
