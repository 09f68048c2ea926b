"""Time every BiGLA implementation, forward and forward+backward, against the HBM floor.

    python benchmarks/bigla_bench.py [--impls pallas_gpu mosaic_gpu] [--dtypes bf16] [--out DIR]

Every implementation runs on every shape; one that runs out of device memory is reported as
skipped, with the error. Times are medians over repeats of back-to-back calls of a jitted
function (dispatch is asynchronous, so the device stays busy; each repeat ends with
block_until_ready). Inputs rotate over three sets, so that a call does not find its inputs left
in L2 by the previous one. The HBM floor is the bytes that must move (inputs read once, outputs
written once; for forward+backward also the output cotangent read and the five gradients
written) over the device-to-device copy bandwidth measured in the same run.
Prints a markdown table and writes JSON to DIR/bigla_<device>_<date>_<dtypes>.json.
"""
import argparse
import datetime
import json
import os
import statistics
import time

import jax
import jax.numpy as jnp

from pallas_kernels import IMPLS, bigla

SHAPES = (  # (batch, heads, length, dk, dv)
    (128, 6, 196, 32, 64),
    (64, 12, 196, 32, 64),
    (16, 3, 4096, 32, 64),
    (32, 3, 1024, 32, 64),
)
DTYPES = {"bf16": jnp.bfloat16, "fp32": jnp.float32}
TARGET_SECONDS = 0.3  # per repeat
REPEATS = 7


def make_inputs(seed, shape, dtype):
  b, h, l, dk, dv = shape
  keys = jax.random.split(jax.random.PRNGKey(seed), 5)
  q, k = (jax.random.normal(key, (b, l, h, dk), dtype) for key in keys[:2])
  v = jax.random.normal(keys[2], (b, l, h, dv), dtype)
  gates = [jax.random.uniform(key, (b, l, h, dk), jnp.float32, -1.0, -1e-3).astype(dtype)
           for key in keys[3:]]
  return (q, k, v, *gates)


def hbm_bytes(shape, dtype, backward):
  b, h, l, dk, dv = shape
  per_token = 4 * dk + 2 * dv  # q, k, gf, gb read; v read; o written
  if backward:
    per_token *= 2  # and do read, dq, dk, dgf, dgb, dv written
  return b * h * l * per_token * jnp.dtype(dtype).itemsize


def time_call(fn, input_sets):
  """Median seconds per call of fn over back-to-back calls."""
  jax.block_until_ready(fn(*input_sets[0]))  # compile
  start = time.perf_counter()
  jax.block_until_ready(fn(*input_sets[-1]))
  calls = max(1, min(200, int(TARGET_SECONDS / max(time.perf_counter() - start, 1e-6))))
  samples = []
  for _ in range(REPEATS if calls > 1 else 2):
    start = time.perf_counter()
    for i in range(calls):  # one stream: the last call finishes last; earlier outputs are freed
      out = fn(*input_sets[i % len(input_sets)])
    jax.block_until_ready(out)
    samples.append((time.perf_counter() - start) / calls)
  return statistics.median(samples)


def copy_bandwidth():
  """Device-to-device copy bandwidth in bytes/s (bytes read + written)."""
  x = jnp.ones((64, 1024, 1024), jnp.float32)  # 256 MiB, well past L2
  copy = jax.jit(lambda x: x + 1)
  seconds = time_call(copy, [(x,)])
  return 2 * x.nbytes / seconds


def forward_fn(impl):
  return jax.jit(lambda *args: bigla(*args, impl=impl))


def forward_backward_fn(impl):
  # Quadratic loss: a linear one would let XLA drop the forward pass.
  loss = lambda *args: jnp.sum(bigla(*args, impl=impl).astype(jnp.float32) ** 2)
  return jax.jit(jax.value_and_grad(loss, argnums=range(5)))


def run(impls, dtypes, shapes):
  bandwidth = copy_bandwidth()
  rows = []
  for shape in shapes:
    for dtype_name in dtypes:
      dtype = DTYPES[dtype_name]
      input_sets = [make_inputs(seed, shape, dtype) for seed in range(3)]
      for impl in impls:
        row = {"shape": shape, "dtype": dtype_name, "impl": impl}
        for name, make, backward in (("fwd", forward_fn, False),
                                     ("fwd_bwd", forward_backward_fn, True)):
          nbytes = hbm_bytes(shape, dtype, backward)
          row[f"{name}_bytes"] = nbytes
          try:
            seconds = time_call(make(impl), input_sets)
          except jax.errors.JaxRuntimeError as e:  # out of memory: say so in the table
            row[f"{name}_skipped"] = str(e).splitlines()[0][:80]
            continue
          row[f"{name}_ms"] = seconds * 1e3
          row[f"{name}_gbps"] = nbytes / seconds / 1e9
          row[f"{name}_x_floor"] = seconds / (nbytes / bandwidth)
        rows.append(row)
        print(json.dumps(row), flush=True)
  return bandwidth, rows


def markdown(bandwidth, rows):
  lines = [f"HBM copy bandwidth measured: {bandwidth / 1e12:.2f} TB/s (read + write).", "",
           "| shape (B H L dk dv) | dtype | impl | fwd ms | fwd GB/s | fwd × floor "
           "| fwd+bwd ms | fwd+bwd GB/s | fwd+bwd × floor |",
           "|---|---|---|---|---|---|---|---|---|"]
  for r in rows:
    cells = []
    for name in ("fwd", "fwd_bwd"):
      if f"{name}_ms" in r:
        cells += [f"{r[f'{name}_ms']:.3f}", f"{r[f'{name}_gbps']:.0f}",
                  f"{r[f'{name}_x_floor']:.1f}"]
      else:
        cells += [f"skipped: {r[f'{name}_skipped']}", "", ""]
    lines.append(f"| {' '.join(map(str, r['shape']))} | {r['dtype']} | {r['impl']} | "
                 + " | ".join(cells) + " |")
  return "\n".join(lines)


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--impls", nargs="+", default=None,
                      help="default: every implementation except the other backend's Pallas ones")
  parser.add_argument("--dtypes", nargs="+", default=list(DTYPES), choices=list(DTYPES))
  parser.add_argument("--shapes", nargs="+", type=int, default=None,
                      help="indices into SHAPES (default: all)")
  parser.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results"))
  args = parser.parse_args()
  other_pallas = (("pallas_tpu",) if jax.default_backend() == "gpu"
                  else ("pallas_gpu", "mosaic_gpu"))
  impls = args.impls or [i for i in IMPLS if i not in other_pallas]
  shapes = [SHAPES[i] for i in args.shapes] if args.shapes is not None else SHAPES

  bandwidth, rows = run(impls, args.dtypes, shapes)
  device = jax.devices()[0].device_kind
  table = markdown(bandwidth, rows)
  print(f"\n{device}, jax {jax.__version__}\n{table}")
  os.makedirs(args.out, exist_ok=True)
  date = datetime.date.today().isoformat()
  name = "_".join(["bigla", device.replace(" ", "_"), date, *args.dtypes])
  path = os.path.join(args.out, f"{name}.json")
  with open(path, "w") as f:
    json.dump({"device": device, "jax": jax.__version__, "date": date,
               "copy_bandwidth_bytes_per_s": bandwidth, "rows": rows}, f, indent=1)
  print(f"wrote {path}")


if __name__ == "__main__":
  main()
