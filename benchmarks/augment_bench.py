"""The input's device half alone (resize, flip, RandAugment, erasing): 1 device against the same
per-device batch data-parallel over N devices, as the train step partitions it.

  python benchmarks/augment_bench.py --out benchmarks/results          # 224 px, 128 per device
  XLA_FLAGS=--xla_force_host_platform_device_count=2 \\
      python benchmarks/augment_bench.py --smoke --out /tmp/augment     # tiny, on 2 CPU devices

Per layout: ms per call (each device its 128 images), the efficiency (1-device ms over N-device
ms), and XLA's cost analysis of the compiled program (flops and bytes per device). --hlo-dir
writes each compiled program's HLO, to compare the fusions XLA chose. Writes augment_bench.json
and augment_bench.md.
"""
import argparse
import functools
import json
import os
import sys

import jax
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks import model_bench  # noqa: E402
from vig_jax import sharding, xla_flags  # noqa: E402
from vig_jax.data import augment_batch  # noqa: E402


def measure(res, per_device, num_devices, iters, hlo_dir=None):
  mesh = sharding.create_mesh(data=num_devices, fsdp=1, num_devices=num_devices)
  augment = jax.jit(functools.partial(augment_batch, image_size=res))
  with jax.set_mesh(mesh):
    batch = model_bench.synthetic_batch(res, per_device * num_devices, mesh)
    rng = jax.random.key(0)
    compiled = augment.lower(rng, batch).compile()
    ms = model_bench.timed(lambda: compiled(rng, batch).block_until_ready(), 3, iters) * 1e3
  cost = compiled.cost_analysis()
  cost = cost[0] if isinstance(cost, list) else cost
  if hlo_dir:
    with open(os.path.join(hlo_dir, f"augment_{num_devices}dev.hlo"), "w") as f:
      f.write(compiled.as_text())
  return {"devices": num_devices, "images_per_device": per_device, "ms": ms,
          "flops": cost.get("flops"), "bytes": cost.get("bytes accessed")}


def main():
  xla_flags.set_default_flags()  # as train.py runs
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--out", default="benchmarks/results")
  parser.add_argument("--smoke", action="store_true", help="32 px, 2 per device, any backend")
  parser.add_argument("--devices", type=int, default=0, help="N (0: all devices)")
  parser.add_argument("--iters", type=int, default=20, help="calls per timed repeat")
  parser.add_argument("--hlo-dir", help="write each layout's compiled HLO here")
  args = parser.parse_args()
  num_devices = args.devices or jax.device_count()
  if num_devices > jax.device_count():
    sys.exit(f"augment_bench: --devices {num_devices} but only {jax.device_count()} devices exist")
  res, per_device = (32, 2) if args.smoke else (224, 128)
  for directory in filter(None, (args.out, args.hlo_dir)):
    os.makedirs(directory, exist_ok=True)
  rows = []
  for n in sorted({1, num_devices}):
    rows.append(measure(res, per_device, n, args.iters, args.hlo_dir))
    rows[-1]["efficiency"] = rows[0]["ms"] / rows[-1]["ms"]
    print(json.dumps(rows[-1]), flush=True)
  device = jax.devices()[0].device_kind
  lines = [f"device: {num_devices} x {device}; jax {jax.__version__}; {res} px, {per_device} "
           "images per device", "",
           "| devices | ms per call | efficiency | GFLOP per device | GB accessed per device |",
           "|---|---|---|---|---|"]
  lines += [f"| {r['devices']} | {r['ms']:.3f} | {r['efficiency']:.1%} | {r['flops'] / 1e9:.2f} | "
            f"{r['bytes'] / 1e9:.3f} |" for r in rows]
  text = "\n".join(lines) + "\n"
  with open(os.path.join(args.out, "augment_bench.json"), "w") as f:
    json.dump({"device": device, "jax": jax.__version__, "rows": rows}, f, indent=1)
  with open(os.path.join(args.out, "augment_bench.md"), "w") as f:
    f.write(text)
  print(text)


if __name__ == "__main__":
  main()
