"""vig_jax.xla_flags: the measured GPU flags are added, and a user's own XLA_FLAGS always win."""
import os

from vig_jax import xla_flags


def test_adds_gpu_flags_to_empty(monkeypatch):
  monkeypatch.delenv("XLA_FLAGS", raising=False)
  xla_flags.set_default_flags()
  assert os.environ["XLA_FLAGS"].split() == list(xla_flags.GPU_FLAGS)


def test_keeps_user_flags_and_values(monkeypatch):
  monkeypatch.setenv("XLA_FLAGS", "--xla_force_host_platform_device_count=8 "
                                  "--xla_gpu_enable_triton_gemm=true")
  xla_flags.set_default_flags()
  flags = os.environ["XLA_FLAGS"].split()
  assert flags == ["--xla_force_host_platform_device_count=8", "--xla_gpu_enable_triton_gemm=true",
                   "--xla_gpu_enable_latency_hiding_scheduler=true"]
  xla_flags.set_default_flags()  # idempotent
  assert os.environ["XLA_FLAGS"].split() == flags
