"""Registers and spills of the pallas_gpu kernels, compile-only: no GPU needed, nothing timed.

    python -m venv /tmp/triton && /tmp/triton/bin/pip install triton==3.9.0
    python benchmarks/triton_registers.py --triton-python /tmp/triton/bin/python \
        [--shape 128 6 196 32 64] [--dtype bf16]

This interpreter (the project's, with jax) lowers the forward and backward pass of
pallas_gpu.bigla_pallas_gpu for the CUDA platform, which works on a CPU-only machine, and
captures every Triton kernel's IR as Pallas hands it over (through jax's private
jax._src.pallas.triton.lowering.lower_jaxpr_to_triton_module, wrapped for the call). Triton
itself is not a project dependency: the interpreter given by --triton-python, in a separate venv
with pip's triton (3.9.0 measured here), compiles each kernel for sm_90a (H100) with the
kernel's num_warps and num_stages, and its bundled ptxas reports registers per thread and
spill bytes. For the record: this path gives 241 registers forward and 255 backward, as Nsight
Compute reported for the same kernels on an H100 (jax's own Triton may differ a little).
"""
import argparse
import contextlib
import io
import json
import os
import re
import subprocess
import sys
import tempfile

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PTXAS_STATS = re.compile(
    r"(\d+) bytes spill stores, (\d+) bytes spill loads\n.*Used (\d+) registers")


def lower_kernels(shape, dtype_name, out_dir):
  """Write the Triton IR of every kernel of the forward and backward pass to out_dir; return
  [{name, path, num_warps, num_stages}] in lowering order."""
  import jax
  import jax.numpy as jnp
  from jax._src.pallas.triton import lowering

  sys.path.insert(0, REPO)
  from pallas_kernels import pallas_gpu

  batch, heads, length, dk, dv = shape
  dtype = {"bf16": jnp.bfloat16, "fp32": jnp.float32}[dtype_name]
  tokens = [jax.ShapeDtypeStruct((batch, length, heads, d), dtype) for d in (dk, dk, dv, dk, dk)]

  def loss(*args):
    return pallas_gpu.bigla_pallas_gpu(*args).astype(jnp.float32).sum()

  modules = []
  lower_module = lowering.lower_jaxpr_to_triton_module

  def capture(*args, **kwargs):
    result = lower_module(*args, **kwargs)
    modules.append(result.module.operation)
    return result

  lowering.lower_jaxpr_to_triton_module = capture
  try:
    hlo = jax.jit(jax.grad(loss, argnums=range(5))).trace(*tokens).lower(
        lowering_platforms=("cuda",)).as_text()
  finally:
    lowering.lower_jaxpr_to_triton_module = lower_module
  # The custom calls' backend configs, in the same order as the kernels were lowered.
  warps = [int(w) for w in re.findall(r"num_warps = (\d+)", hlo)]
  stages = [int(s) for s in re.findall(r"num_stages = (\d+)", hlo)]
  if not len(modules) == len(warps) == len(stages):
    raise RuntimeError(f"{len(modules)} kernels lowered, but {len(warps)} Triton calls in the HLO")
  kernels = []
  for i, (module, w, s) in enumerate(zip(modules, warps, stages)):
    name = module.attributes["sym_name"].value
    path = os.path.join(out_dir, f"{i}_{name}.ttir")
    with open(path, "w") as f:
      f.write(module.get_asm())
    kernels.append(dict(name=name, path=path, num_warps=w, num_stages=s))
  return kernels


def compile_kernels(kernels):
  """Under the Triton interpreter: registers and spill bytes of each kernel, compiled for sm_90a."""
  import triton
  from triton.backends.compiler import GPUTarget

  triton.knobs.nvidia.dump_ptxas_log = True  # printed to stdout by the cubin step
  triton.knobs.compilation.always_compile = True  # a cached kernel would skip ptxas
  stats = []
  for kernel in kernels:
    log = io.StringIO()
    with contextlib.redirect_stdout(log):
      triton.compile(kernel["path"], target=GPUTarget("cuda", 90, 32),
                     options=dict(num_warps=kernel["num_warps"], num_stages=kernel["num_stages"],
                                  enable_fp_fusion=True))
    match = PTXAS_STATS.search(log.getvalue())
    if match is None:
      sys.exit(f"triton_registers: no register count in ptxas's log of {kernel['name']}")
    spill_stores, spill_loads, registers = map(int, match.groups())
    stats.append(dict(kernel, registers=registers, spill_stores=spill_stores,
                      spill_loads=spill_loads, triton=triton.__version__))
  return stats


def check_triton(python):
  try:
    found = subprocess.run([python, "-c", "import triton"], capture_output=True).returncode == 0
  except OSError:
    found = False
  if not found:
    sys.exit(f"triton_registers: {python} cannot import triton (pip install triton==3.9.0 in a "
             "separate venv)")


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--triton-python", help="a Python interpreter with triton installed")
  parser.add_argument("--shape", type=int, nargs=5, default=(128, 6, 196, 32, 64),
                      metavar=("BATCH", "HEADS", "LENGTH", "DK", "DV"))
  parser.add_argument("--dtype", choices=("bf16", "fp32"), default="bf16")
  parser.add_argument("--compile", metavar="JSON", help=argparse.SUPPRESS)  # the Triton side
  args = parser.parse_args()
  if args.compile:
    with open(args.compile) as f:
      print(json.dumps(compile_kernels(json.load(f))))
    return
  if not args.triton_python:
    sys.exit("triton_registers: --triton-python is required (a venv with pip's triton==3.9.0)")
  check_triton(args.triton_python)

  print(f"compile-only (sm_90a, no GPU), shape B H L dk dv = {tuple(args.shape)}, {args.dtype}")
  print("| kernel | warps | stages | registers | spill stores (B) | spill loads (B) |")
  print("|---|---|---|---|---|---|")
  with tempfile.TemporaryDirectory() as tmp:
    kernels = lower_kernels(args.shape, args.dtype, tmp)
    listing = os.path.join(tmp, "kernels.json")
    with open(listing, "w") as f:
      json.dump(kernels, f)
    env = dict(os.environ, TRITON_DEFAULT_FP_FUSION="1")  # Triton 3.9's default, stated
    done = subprocess.run([args.triton_python, __file__, "--compile", listing],
                          capture_output=True, text=True, env=env)
  if done.returncode:
    sys.exit(done.stderr.strip().splitlines()[-1] if done.stderr.strip() else
             f"triton_registers: {args.triton_python} failed ({done.returncode})")
  for s in json.loads(done.stdout.strip().splitlines()[-1]):
    print(f"| {s['name']} | {s['num_warps']} | {s['num_stages']} | "
          f"{s['registers']} | {s['spill_stores']} | {s['spill_loads']} |")


if __name__ == "__main__":
  main()
