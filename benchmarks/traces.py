"""Reading the kernels out of a `jax.profiler.trace` directory (shared by the profiling benchmarks;
no side effects on import, unlike profile_step, which turns XLA's command buffers off)."""
import glob
import os

from jax.profiler import ProfileData


def kernel_planes(trace_dir):
  """The trace's per-device planes, or the host CPU's when no device ran (CPU backends)."""
  path = glob.glob(os.path.join(trace_dir, "**", "*.xplane.pb"), recursive=True)[0]
  planes = list(ProfileData.from_file(path).planes)
  return ([p for p in planes if p.name.startswith("/device:")] or
          [p for p in planes if p.name == "/host:CPU"])


def kernels(plane):
  """The events of a plane's GPU streams (every line of a plane that has none)."""
  lines = list(plane.lines)
  for line in [line for line in lines if line.name.startswith("Stream")] or lines:
    yield from line.events


def is_collective(kernel_name):
  """Whether a GPU kernel is one of NCCL's (all-reduce, all-gather, ...)."""
  return "nccl" in kernel_name.lower()
