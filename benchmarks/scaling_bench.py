"""Scaling of the training code's own step from 1 device to N: data-parallel and data + fsdp.

  python benchmarks/scaling_bench.py --out benchmarks/results     # ViG-S 224, 128 per device, bf16
  XLA_FLAGS=--xla_force_host_platform_device_count=8 \\
      python benchmarks/scaling_bench.py --smoke --out /tmp/scaling  # tiny model on 8 CPU devices

Layouts: 1 device; all N devices data-parallel (mesh data=N); data + fsdp (fsdp=2, and fsdp=N
where N > 2); and the ceiling "N x 1 device": the 1-device step compiled for each device and run on
all N at once, independently (no collective, each its own batch), which shows what the machine
itself costs when all its devices are busy (host dispatch, power, the input's host side);
--no-ceiling leaves it out.
Throughput is weak scaling (the per-device batch fixed): img/s, img/s per device and efficiency =
img/s per device over the 1-device run's. Memory per device is XLA's plan for the
compiled (partitioned) step. Correctness: every layout trains its first steps on the same global
batch (per-device batch x N) from the same initial state, and its losses are compared with the
1-device run's on that batch.
Writes scaling_bench.json and scaling_bench.md.
"""
import os

os.environ.setdefault("NCCL_NVLS_ENABLE", "0")  # NVLink multicast stays off on shared hosts

import argparse  # noqa: E402
import dataclasses  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
from typing import NamedTuple  # noqa: E402

import jax  # noqa: E402
import numpy as np  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks import model_bench, traces  # noqa: E402
from vig_jax import trainer, xla_flags  # noqa: E402

class Spec(NamedTuple):
  model: str
  res: int
  per_device_batch: int
  dtype: str
  overrides: tuple  # size overrides, (name, value) pairs
  augment: bool  # the input's device half (flip, RandAugment, erasing) in the step


FULL = Spec("vig_s", 224, 128, "bfloat16", (), augment=True)  # the step train.py runs
# The smoke checks layouts, losses and rows; RandAugment's compile would double its time.
SMOKE = Spec("vig_t", 32, 2, "float32",
             (("embed_dim", 32), ("depth", 2), ("num_heads", 2), ("patch_size", 8)), augment=False)


def layouts(num_devices):
  """(name, mesh kwargs) for 1 device and for every layout of all `num_devices`."""
  out = [("1 device", dict(data=1, fsdp=1, num_devices=1))]
  if num_devices > 1:
    out.append((f"data={num_devices}", dict(data=num_devices, fsdp=1, num_devices=num_devices)))
    for fsdp in sorted({2, num_devices}):
      if num_devices % fsdp == 0:
        out.append((f"data={num_devices // fsdp} fsdp={fsdp}",
                    dict(data=num_devices // fsdp, fsdp=fsdp, num_devices=num_devices)))
  return out


def cases(num_devices, ceiling=True):
  """(name, mesh kwargs, independent) for every layout, then the ceiling where asked: the 1-device
  program run on every device at once, independently."""
  out = [(name, mesh, False) for name, mesh in layouts(num_devices)]
  if ceiling and num_devices > 1:
    out.append((f"{num_devices} x 1 device", dict(data=1, fsdp=1, num_devices=1), True))
  return out


def on_device(s, device):
  """The 1-device Setup `s` moved to `device`: its mesh and the state's shardings."""
  mesh = jax.sharding.Mesh(np.array([device]).reshape(s.mesh.devices.shape), s.mesh.axis_names,
                           axis_types=s.mesh.axis_types)
  abstract = jax.tree.map(
      lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype,
                                     sharding=jax.sharding.NamedSharding(mesh, x.sharding.spec)),
      s.abstract_state)
  return dataclasses.replace(s, mesh=mesh, abstract_state=abstract)


def compiled_step(spec, global_batch, mesh, device=None):
  """(config, setup, initial state, compiled step) for the global batch on the mesh; with
  `device`, the 1-device step on that device."""
  config, s = model_bench.vig_train_setup(spec.model, spec.res, global_batch, spec.overrides, mesh,
                                          spec.dtype, spec.augment)
  if device is not None:
    s = on_device(s, device)
  with jax.set_mesh(s.mesh):
    state = trainer.init_state(config, s)
    batch = model_bench.synthetic_batch(spec.res, global_batch, s.mesh)
    compiled = trainer.jit_train_step(config, s).lower(state, batch).compile()
  return config, s, state, compiled


def first_losses(spec, s, state, compiled, global_batch, steps):
  """(losses, state) after the first `steps` steps, each on its own synthetic global batch."""
  losses = []
  with jax.set_mesh(s.mesh):
    for i in range(steps):
      state, metrics = compiled(state, model_bench.synthetic_batch(spec.res, global_batch, s.mesh, i))
      losses.append(float(metrics["loss"]))
  return losses, state


class Run:
  """One compiled step with its state and batch; `step()` dispatches it without blocking."""

  def __init__(self, spec, s, state, compiled, batch_size):
    self.mesh, self.state, self.compiled = s.mesh, state, compiled
    self.batch = model_bench.synthetic_batch(spec.res, batch_size, s.mesh)

  def step(self):
    with jax.set_mesh(self.mesh):
      self.state, metrics = self.compiled(self.state, self.batch)
    return metrics["loss"]


def _steps(runs, n, block_each):
  """n rounds, each dispatching every run's step once (independent runs execute at once)."""
  for _ in range(n):
    losses = [run.step() for run in runs]
    if block_each:
      jax.block_until_ready(losses)
  jax.block_until_ready(losses)


def throughput(runs, images_per_round, iters):
  """(img/s with steps dispatched back to back as the training loop does, img/s blocking on every
  step's loss): the gap between them is host time a blocking loop exposes."""
  async_s = model_bench.timed(lambda: _steps(runs, iters, False), 1, 1) / iters
  blocking_s = model_bench.timed(lambda: _steps(runs, 1, True), 2, iters)
  return images_per_round / async_s, images_per_round / blocking_s


def traced(runs, steps, trace_dir):
  """Per device, from a jax.profiler trace of `steps` steps: kernel time split into compute and
  NCCL collectives, and the collective time no compute kernel overlaps (exposed), ms per step."""
  _steps(runs, 1, True)
  with jax.profiler.trace(trace_dir):
    _steps(runs, steps, False)
  return kernel_overlap(trace_dir, steps)


def _union(intervals):
  merged = []
  for start, end in sorted(intervals):
    if merged and start <= merged[-1][1]:
      merged[-1][1] = max(merged[-1][1], end)
    else:
      merged.append([start, end])
  return merged


def _length(intervals):
  return sum(end - start for start, end in intervals)


def _minus(a, b):
  """Total length of the union `a` not covered by the union `b` (both sorted, disjoint)."""
  exposed, j = 0, 0
  for start, end in a:
    cursor = start
    while j < len(b) and b[j][1] <= cursor:
      j += 1
    k = j
    while k < len(b) and b[k][0] < end:
      if b[k][0] > cursor:
        exposed += b[k][0] - cursor
      cursor = max(cursor, b[k][1])
      k += 1
    exposed += max(0, end - cursor)
  return exposed


def kernel_overlap(trace_dir, steps):
  per_device = []
  for plane in traces.kernel_planes(trace_dir):
    if not plane.name.startswith("/device:"):
      continue  # a CPU backend: no device kernels
    compute, collective = [], []
    for event in traces.kernels(plane):
      kind = collective if traces.is_collective(event.name) else compute
      kind.append((event.start_ns, event.end_ns))
    if not compute:
      continue
    launched = len(compute) / steps
    compute, collective = _union(compute), _union(collective)
    per_device.append({"device": plane.name, "compute_kernels": launched,
                       "compute_ms": _length(compute) / 1e6 / steps,
                       "collective_ms": _length(collective) / 1e6 / steps,
                       "exposed_collective_ms": _minus(collective, compute) / 1e6 / steps})
  return per_device


def run_all(spec, num_devices, steps, iters, trace_steps, ceiling=True):
  per_device = spec.per_device_batch
  check_batch = per_device * num_devices  # the global batch every layout's losses are taken on
  rows = []
  for name, mesh, independent in cases(num_devices, ceiling):
    n = num_devices if independent else mesh["num_devices"]
    row = {"layout": name, "devices": n, "global_batch": per_device * n, "mesh": mesh}
    if independent:  # no shared batch: each device trains its own
      runs = [Run(spec, s, state, compiled, per_device)
              for _, s, state, compiled in (compiled_step(spec, per_device, mesh, device)
                                            for device in jax.devices()[:n])]
      row["losses"] = None
    else:
      _, s, state, compiled = compiled_step(spec, per_device * n, mesh)
      if per_device * n != check_batch:  # the 1-device run: its own compile for the shared batch
        _, s_check, state_check, compiled_check = compiled_step(spec, check_batch, mesh)
        row["losses"], _ = first_losses(spec, s_check, state_check, compiled_check, check_batch,
                                        steps)
      else:  # the state is donated: time the steps from where the loss check left it
        row["losses"], state = first_losses(spec, s, state, compiled, check_batch, steps)
      runs = [Run(spec, s, state, compiled, per_device * n)]
    row["memory_gib_per_device"] = model_bench.planned_gib(runs[0].compiled)
    row["img_per_s"], row["img_per_s_blocking"] = throughput(runs, per_device * n, iters)
    row["img_per_s_per_device"] = row["img_per_s"] / n
    base = rows[0] if rows else row
    row["efficiency"] = row["img_per_s_per_device"] / base["img_per_s_per_device"]
    row["efficiency_blocking"] = row["img_per_s_blocking"] / n / base["img_per_s_blocking"]
    if trace_steps:
      with tempfile.TemporaryDirectory() as trace_dir:
        row["kernels"] = traced(runs, trace_steps, trace_dir)
    row["max_abs_loss_diff"] = None if independent else max(
        abs(a - b) for a, b in zip(row["losses"], base["losses"]))
    rows.append(row)
    print(json.dumps(row), flush=True)
  return rows, check_batch


def report(rows, check_batch, header):
  lines = [header, "",
           "| layout | devices | global batch | img/s | img/s per device | efficiency | "
           "efficiency, blocking on every step | "
           f"memory GiB per device | first losses (global batch {check_batch}) | max abs diff vs 1 device |",
           "|---|---|---|---|---|---|---|---|---|---|"]
  for r in rows:
    losses = "–" if r["losses"] is None else ", ".join(f"{x:.5f}" for x in r["losses"])
    diff = "– (each device its own batch)" if r["max_abs_loss_diff"] is None else (
        f"{r['max_abs_loss_diff']:.2e}")
    lines.append(f"| {r['layout']} | {r['devices']} | {r['global_batch']} | {r['img_per_s']:,.0f} | "
                 f"{r['img_per_s_per_device']:,.0f} | {r['efficiency']:.1%} | "
                 f"{r['efficiency_blocking']:.1%} | "
                 f"{r['memory_gib_per_device']:.2f} | {losses} | {diff} |")
  traced_rows = [r for r in rows if r.get("kernels")]
  if traced_rows:
    lines += ["", "Kernel time per step and device (trace): compute, NCCL collectives, and the "
              "collective time no compute kernel overlaps.", "",
              "| layout | device | step ms (wall) | compute kernels | compute ms | collective ms | "
              "exposed collective ms |",
              "|---|---|---|---|---|---|---|"]
    for r in traced_rows:
      for k in r["kernels"]:
        lines.append(f"| {r['layout']} | {k['device']} | {1e3 * r['global_batch'] / r['img_per_s']:.2f} | "
                     f"{k['compute_kernels']:.0f} | {k['compute_ms']:.2f} | {k['collective_ms']:.2f} | "
                     f"{k['exposed_collective_ms']:.2f} |")
  return "\n".join(lines) + "\n"


def main():
  xla_flags.set_default_flags()  # as train.py runs
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--out", default="benchmarks/results")
  parser.add_argument("--smoke", action="store_true", help="tiny model, any backend")
  parser.add_argument("--devices", type=int, default=0, help="N (0: all devices)")
  parser.add_argument("--steps", type=int, default=3, help="first steps whose losses are compared")
  parser.add_argument("--iters", type=int, default=10, help="calls per timed repeat")
  parser.add_argument("--no-augment", action="store_true",
                      help="leave the input's device half (flip, RandAugment, erasing) out of the step")
  parser.add_argument("--trace-steps", type=int, default=0,
                      help="> 0: trace this many steps of every layout (kernel overlap table)")
  parser.add_argument("--no-ceiling", action="store_true",
                      help="leave out the 'N x 1 device' row (one more compile per device)")
  args = parser.parse_args()
  num_devices = args.devices or jax.device_count()
  if num_devices > jax.device_count():
    sys.exit(f"scaling_bench: --devices {num_devices} but only {jax.device_count()} devices exist")
  os.makedirs(args.out, exist_ok=True)
  spec = SMOKE if args.smoke else FULL
  if args.no_augment:
    spec = spec._replace(augment=False)
  rows, check_batch = run_all(spec, num_devices, args.steps, 2 if args.smoke else args.iters,
                              args.trace_steps, ceiling=not args.no_ceiling)
  device = jax.devices()[0].device_kind
  header = (f"device: {num_devices} x {device}; jax {jax.__version__}; {spec.model} {spec.res}px "
            f"{spec.dtype}, {spec.per_device_batch} images per device, input's device half "
            f"{'in' if spec.augment else 'not in'} the step")
  with open(os.path.join(args.out, "scaling_bench.json"), "w") as f:
    json.dump({"device": device, "jax": jax.__version__, "spec": spec._asdict(), "rows": rows}, f, indent=1)
  text = report(rows, check_batch, header)
  with open(os.path.join(args.out, "scaling_bench.md"), "w") as f:
    f.write(text)
  print(text)


if __name__ == "__main__":
  main()
