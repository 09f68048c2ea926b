"""XLA flags the training step is measured to run faster with (BENCHMARKS.md, 2026-11-26).

On one H100, ViG-S train 224 b128 went from 36.4 to 33.0 ms per step and ViG-H-T from 59.3 to
54.0 ms with both flags: the latency-hiding scheduler overlaps independent kernels, and cuBLAS
runs the GEMMs that XLA's Triton GEMM emitter otherwise takes (slower here, at these small
widths). The flags are GPU-only; other backends ignore them.
"""
import os

GPU_FLAGS = ("--xla_gpu_enable_latency_hiding_scheduler=true",
             "--xla_gpu_enable_triton_gemm=false")


def set_default_flags():
  """Adds GPU_FLAGS to XLA_FLAGS, keeping every flag the user set. Call before jax's first computation."""
  current = os.environ.get("XLA_FLAGS", "").split()
  named = {flag.split("=")[0] for flag in current}
  os.environ["XLA_FLAGS"] = " ".join(
      current + [flag for flag in GPU_FLAGS if flag.split("=")[0] not in named])
