"""Where a ViG step's device time goes: `jax.profiler` traces broken down by category.

  python benchmarks/profile_step.py --out benchmarks/results         # ViG-S train, ViG-T 1024 eval
  python benchmarks/profile_step.py --smoke --out /tmp/profile       # tiny shapes, any backend
  python benchmarks/profile_step.py --data 2 --out DIR               # + the train step on 2 devices

For each workload: the step time (wall clock, as model_bench times it), a trace of a few steps, and
every device kernel's time attributed to the HLO instruction that launched it (the trace's
`hlo_op`), whose category comes from the compiled HLO: the fused computation's ops and their
`op_name` metadata, which carries the Flax module path. Categories: input (the input's device
half, with --augment: resize, flip, RandAugment, erasing), matmul (dots, GEMM custom
calls, dense convs), BiGLA (the kernel and the XLA ops around it in the mixer's `_bigla`),
depthwise conv (the mixer's `in_proj`), norm/elementwise/gating (the rest of the model),
optimizer (the ops outside the model: clipping, AdamW, EMA, and the loss), collectives (NCCL
kernels, by name: their HLO ops carry the op_names of the values they reduce), other (random
numbers, Mixup/CutMix, drop path's masks, copies, unattributed kernels). Then the same step with BiGLA
replaced by `o = v` (the ablation; everything else unchanged).

XLA's command buffers (CUDA graphs) are turned off for the whole script, so that each kernel in the
trace carries its HLO op; the step times printed here are measured with the same flags.
Writes profile_step.json and profile_step.md.
"""
import os

os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") +
                           " --xla_gpu_enable_command_buffer=").strip()

import argparse  # noqa: E402
import collections  # noqa: E402
import contextlib  # noqa: E402
import dataclasses  # noqa: E402
import json  # noqa: E402
import re  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402

import jax  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks import model_bench, traces  # noqa: E402
from benchmarks.model_bench import Job  # noqa: E402
from vig_jax import xla_flags  # noqa: E402
from vig_jax.models import layers  # noqa: E402

CATEGORIES = ("input", "matmul", "BiGLA", "depthwise conv", "norm/elementwise/gating",
              "optimizer", "collectives", "other")
FULL = [Job("vig", "vig_s", 224, "train", 128), Job("vig", "vig_t", 1024, "eval", 16)]
SMOKE = [Job("vig", "vig_t", 32, "train", 4, (("depth", 2),)),
         Job("vig", "vig_t", 64, "eval", 2, (("depth", 2),))]

_INSTRUCTION = re.compile(r"^\s+(?:ROOT )?%?([\w.\-]+) = (.*)$")
_COMPUTATION = re.compile(r"^(?:ENTRY )?%?([\w.\-]+) .*\{$")
_CALLED = re.compile(r"(?:calls|body|condition)=%?([\w.\-]+)")
_OP_NAME = re.compile(r'op_name="([^"]*)"')
_RANDOM = re.compile(r"threefry|_uniform|_normal|_beta|_gamma|_randint|_bernoulli|mixup|Dropout")
_GEMM = re.compile(r" dot\(|__cublas|gemm|__cudnn\$fusion")


def parse_hlo(text):
  """(instructions, computations): name -> its line; computation name -> its instruction names."""
  instructions, computations, current = {}, {}, None
  for line in text.splitlines():
    match = _INSTRUCTION.match(line)
    if match and current is not None:
      instructions[match.group(1)] = match.group(2)
      computations[current].append(match.group(1))
      continue
    match = _COMPUTATION.match(line)
    if match:
      current = match.group(1)
      computations[current] = []
  return instructions, computations


def _lines_of(name, instructions, computations, seen=None):
  """The instruction's own line and, recursively, those of the computations it calls."""
  seen = set() if seen is None else seen
  line = instructions[name]
  lines = [line]
  for called in _CALLED.findall(line):
    if called not in seen and called in computations:
      seen.add(called)
      for inner in computations[called]:
        lines += _lines_of(inner, instructions, computations, seen)
  return lines


def scope_category(op_name):
  """Category of one op from its op_name (the jit / transform / Flax module path)."""
  if "/input/" in op_name:  # train_state's scope around the input's device half
    return "input"
  if _RANDOM.search(op_name):
    return "other"
  if "ViG" not in op_name:  # outside model.apply: clipping, AdamW, EMA, the loss
    return "optimizer"
  if "_bigla" in op_name:
    return "BiGLA"
  if "/in_proj" in op_name:
    return "depthwise conv"
  return "norm/elementwise/gating"


def categorize(name, instructions, computations):
  """(category, the op_name most of the op's fused instructions carry)."""
  lines = _lines_of(name, instructions, computations)
  op_names = [m.group(1) for line in lines for m in [_OP_NAME.search(line)] if m]
  if not op_names:
    return "other", ""
  votes = collections.Counter(scope_category(o) for o in op_names)
  category = votes.most_common(1)[0][0]
  text = "\n".join(lines)
  if category not in ("input", "BiGLA", "depthwise conv") and (
      _GEMM.search(text) or ("convolution(" in text or "__cudnn$conv" in text)):
    category = "matmul"
  main = collections.Counter(o for o in op_names if scope_category(o) == category).most_common(1)
  return category, (main[0][0] if main else op_names[0])


def _location(op_name):
  """op_name without the primitive and with every block number folded: a place in the model."""
  return re.sub(r"blocks_\d+", "blocks_*", op_name.rsplit("/", 1)[0]) or "(no op_name: copies)"


def kernel_events(trace_dir, module_name):
  """[(hlo_op, kernel name, duration ns)] of the device kernels the module's runs launched."""
  events = []
  for plane in traces.kernel_planes(trace_dir):
    for event in traces.kernels(plane):
      stats = {name: value for name, value in event.stats}
      if stats.get("hlo_module", module_name) != module_name or "hlo_op" not in stats:
        continue
      events.append((str(stats["hlo_op"]), event.name, event.duration_ns))
  return events


def breakdown(events, instructions, computations, steps):
  """Per-category and per-location milliseconds per step."""
  per_category = collections.Counter({c: 0.0 for c in CATEGORIES})
  per_location = collections.Counter()
  location_category = {}
  cache = {}
  for hlo_op, kernel, ns in events:
    op = hlo_op.lstrip("%")
    if traces.is_collective(kernel):  # by the kernel: their HLO ops carry the model's op_names
      cache[op] = ("collectives", f"{hlo_op.split('.')[0]} (NCCL)")
    elif op not in cache:
      cache[op] = categorize(op, instructions, computations) if op in instructions else (
          "matmul" if re.search("gemm|xmma|cutlass", kernel) else "other", f"unattributed: {kernel}")
    category, op_name = cache[op]
    ms = ns / 1e6 / steps
    per_category[category] += ms
    location = _location(op_name)
    per_location[location] += ms
    location_category[location] = category
  top = [{"location": loc, "category": location_category[loc], "ms": ms}
         for loc, ms in per_location.most_common(15)]
  return dict(per_category), top


@contextlib.contextmanager
def bigla_as_identity():
  """The ablation: BiGLA's output replaced by v (o = v), every other op of the model unchanged."""
  if not hasattr(layers, "bigla"):
    raise RuntimeError("vig_jax.models.layers no longer calls `bigla` by that name: the o = v "
                       "ablation needs updating")
  original = layers.bigla
  layers.bigla = lambda q, k, v, log_gate_fwd, log_gate_bwd, **kwargs: v
  try:
    yield
  finally:
    layers.bigla = original


def profile(job, steps, iters, ablation=True):
  run, compiled, _ = model_bench.vig_step(job)
  step_ms = model_bench.timed(run, 2, iters) * 1e3
  text = compiled.as_text()
  module_name = text.split(",", 1)[0].split()[1]
  with tempfile.TemporaryDirectory() as trace_dir:
    with jax.profiler.trace(trace_dir):
      for _ in range(steps):
        run()
    events = kernel_events(trace_dir, module_name)
  if not events:
    raise RuntimeError(f"the trace of {job.label} holds no kernel of module {module_name}")
  # Per device: a data-parallel step's trace holds every device's kernels.
  per_category, top = breakdown(events, *parse_hlo(text), steps * job.devices)
  ablated_ms = None
  if ablation:
    with bigla_as_identity():
      ablated_run, _, _ = model_bench.vig_step(job)
      ablated_ms = model_bench.timed(ablated_run, 2, iters) * 1e3
  return {"job": job.label, "step_ms": step_ms, "device_ms": sum(per_category.values()),
          "categories": per_category, "top_locations": top, "step_ms_bigla_as_identity": ablated_ms,
          "kernels_per_step": len(events) / steps / job.devices}


def report(results, header):
  lines = [header, ""]
  for r in results:
    busy = r["device_ms"]
    ablated = r["step_ms_bigla_as_identity"]
    lines += [f"### {r['job']}", "",
              f"Step {r['step_ms']:.2f} ms (wall clock); device kernels {busy:.2f} ms per step "
              f"({r['kernels_per_step']:.0f} kernels)" + (
                  "." if ablated is None else
                  f"; with BiGLA replaced by o = v: {ablated:.2f} ms (BiGLA's share of the step "
                  f"{1 - ablated / r['step_ms']:.0%})."), "",
              "| category | ms per step | % of device time |", "|---|---|---|"]
    for category in CATEGORIES:
      ms = r["categories"][category]
      lines.append(f"| {category} | {ms:.2f} | {ms / busy:.1%} |")
    lines.append(f"| (no kernel running: wall clock − kernels) | {r['step_ms'] - busy:.2f} | – |")
    lines += ["", "Largest places (op_name, blocks folded):", "",
              "| place | category | ms per step |", "|---|---|---|"]
    lines += [f"| `{t['location']}` | {t['category']} | {t['ms']:.2f} |" for t in r["top_locations"]]
    lines.append("")
  return "\n".join(lines) + "\n"


def main():
  xla_flags.set_default_flags()  # as train.py runs
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--out", default="benchmarks/results")
  parser.add_argument("--smoke", action="store_true", help="tiny shapes, any backend")
  parser.add_argument("--steps", type=int, default=5, help="steps in each trace")
  parser.add_argument("--iters", type=int, default=10, help="calls per timed repeat")
  parser.add_argument("--data", type=int, default=1,
                      help="N > 1: also the first (train) job data-parallel on N devices, the same "
                      "batch per device; its times are per device")
  parser.add_argument("--train-only", action="store_true", help="skip the eval workload")
  parser.add_argument("--no-ablation", action="store_true", help="skip the o = v ablation")
  parser.add_argument("--augment", action="store_true",
                      help="train jobs run the input's device half (flip, RandAugment, erasing)")
  args = parser.parse_args()
  if args.data > jax.device_count():
    sys.exit(f"profile_step: --data {args.data} but only {jax.device_count()} devices exist")
  os.makedirs(args.out, exist_ok=True)
  jobs = [dataclasses.replace(j, augment=args.augment and j.mode == "train")
          for j in (SMOKE if args.smoke else FULL) if j.mode == "train" or not args.train_only]
  if args.data > 1:
    jobs.insert(1, dataclasses.replace(jobs[0], batch=jobs[0].batch * args.data, devices=args.data))
  results = []
  for job in jobs:
    results.append(profile(job, 2 if args.smoke else args.steps, 2 if args.smoke else args.iters,
                           ablation=not args.no_ablation))
    print(json.dumps(results[-1]), flush=True)
  device = jax.devices()[0].device_kind
  header = f"device: {device}; jax {jax.__version__}; XLA_FLAGS={os.environ['XLA_FLAGS']}"
  with open(os.path.join(args.out, "profile_step.json"), "w") as f:
    json.dump({"device": device, "jax": jax.__version__, "results": results}, f, indent=1)
  text = report(results, header)
  with open(os.path.join(args.out, "profile_step.md"), "w") as f:
    f.write(text)
  print(text)


if __name__ == "__main__":
  main()
