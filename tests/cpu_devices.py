"""The environment for a subprocess on `n` fake CPU devices, with the suite's other XLA flags."""
import os

_COUNT = "--xla_force_host_platform_device_count"


def env_with_cpu_devices(n, **extra):
  """os.environ with XLA_FLAGS' device count set to `n` (the rest of XLA_FLAGS kept), plus `extra`."""
  flags = [f for f in os.environ.get("XLA_FLAGS", "").split() if f.split("=")[0] != _COUNT]
  return {**os.environ, "XLA_FLAGS": " ".join([*flags, f"{_COUNT}={n}"]), **extra}
