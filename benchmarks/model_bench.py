"""End-to-end ViG speed on one device, side by side with timm DeiT where torch/timm import.

  python benchmarks/model_bench.py --out benchmarks/results          # the full set (GPU)
  python benchmarks/model_bench.py --smoke --out /tmp/bench          # seconds, any backend

Measures, per workload and dtype: eval throughput (jit(model.apply)), train-step throughput (the
training code's own sharded step on synthetic data: forward, backward, AdamW, EMA), the device
memory XLA plans for each (arguments + outputs + temporaries), and compile time. DeiT runs in the
same process on the same batch shapes (bf16 autocast, eager PyTorch, as the original's numbers).
Writes model_bench.json, model_bench.md and model_bench.png (throughput and memory vs resolution).
"""
import argparse
import json
import os
import statistics
import sys
import time

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from configs import imagenet  # noqa: E402
from vig_jax import create_model, sharding, trainer  # noqa: E402

# (model, resolution, eval batch, train batch, dtypes, size overrides). Batches as docs/speed.md's;
# fp32 where it is compared, to fit one 10-minute device call.
BF16, BOTH = ("bfloat16",), ("bfloat16", "float32")
FULL = [("vig_t", 224, 256, 128, BOTH, {}), ("vig_s", 224, 256, 128, BOTH, {}),
        ("vig_b", 224, 256, 128, BF16, {}), ("vig_h_t", 224, 256, 128, BF16, {}),
        ("vig_t", 512, 64, 32, BF16, {}), ("vig_t", 1024, 16, 8, BOTH, {}),
        ("vig_t", 2048, 4, 2, BF16, {})]
SMOKE = [("vig_t", 64, 4, 4, ("float32",), {"depth": 2})]
DEIT = {"vig_t": "deit_tiny_patch16_224", "vig_s": "deit_small_patch16_224",
        "vig_b": "deit_base_patch16_224"}


def timed(fn, warmup, iters, repeats=3):
  """Median over `repeats` of the mean seconds per call of `fn` (which blocks on its result)."""
  for _ in range(warmup):
    fn()
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    for _ in range(iters):
      fn()
    times.append((time.perf_counter() - start) / iters)
  return statistics.median(times)


def planned_bytes(compiled):
  stats = compiled.memory_analysis()
  return (stats.argument_size_in_bytes + stats.output_size_in_bytes + stats.temp_size_in_bytes
          - stats.alias_size_in_bytes)


def vig_eval(name, size, batch, dtype, iters, overrides, bigla_impl):
  kwargs = {} if "_h_" in name else {"img_size": size}
  model = create_model(name, dtype=dtype, bigla_impl=bigla_impl, **kwargs, **overrides)
  images = jax.random.normal(jax.random.PRNGKey(0), (batch, size, size, 3), jnp.float32)
  variables = jax.jit(model.init)(jax.random.PRNGKey(0), images[:1])
  start = time.perf_counter()
  compiled = jax.jit(model.apply).lower(variables, images).compile()
  compile_s = time.perf_counter() - start
  seconds = timed(lambda: compiled(variables, images).block_until_ready(), 2, iters)
  return {"img_per_s": batch / seconds, "ms_per_batch": seconds * 1e3,
          "memory_gib": planned_bytes(compiled) / 2**30, "compile_s": compile_s}


def vig_train(name, size, batch, dtype, iters, overrides, bigla_impl):
  config = imagenet.get_config(name)
  config.data = ml_collections.ConfigDict(dict(source="synthetic", num_classes=1000))
  config.update(image_size=size, batch_size=batch, eval_batch_size=batch, dtype=dtype,
                bigla_impl=bigla_impl)
  config.model_kwargs.update(overrides)
  if "_h_" not in name:
    config.model_kwargs.img_size = size
  s = trainer.setup(config)
  with jax.set_mesh(s.mesh):
    state = trainer.init_state(config, s)
    rng = np.random.default_rng(0)
    batch_arrays = sharding.global_batch(
        {"image": rng.standard_normal((batch, size, size, 3), np.float32),
         "label": rng.integers(0, 1000, batch).astype(np.int32)}, s.mesh)
    step = trainer.jit_train_step(config, s)
    start = time.perf_counter()
    compiled = step.lower(state, batch_arrays).compile()
    compile_s = time.perf_counter() - start
    holder = [state]

    def run():
      holder[0], metrics = compiled(holder[0], batch_arrays)
      metrics["loss"].block_until_ready()

    seconds = timed(run, 2, iters)
  return {"img_per_s": batch / seconds, "ms_per_batch": seconds * 1e3,
          "memory_gib": planned_bytes(compiled) / 2**30, "compile_s": compile_s}


def deit(name, size, batch, train, iters):
  import timm
  import torch
  model = timm.create_model(DEIT[name], img_size=size, num_classes=1000).cuda()
  images = torch.randn(batch, 3, size, size, device="cuda")
  labels = torch.randint(0, 1000, (batch,), device="cuda")
  torch.cuda.reset_peak_memory_stats()
  if train:
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)

    def run():
      with torch.autocast("cuda", dtype=torch.bfloat16):
        loss = torch.nn.functional.cross_entropy(model(images), labels)
      opt.zero_grad(set_to_none=True)
      loss.backward()
      opt.step()
      torch.cuda.synchronize()
  else:
    model.eval()

    def run():
      with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16):
        model(images)
      torch.cuda.synchronize()
  seconds = timed(run, 3, iters)
  return {"img_per_s": batch / seconds, "ms_per_batch": seconds * 1e3,
          "memory_gib": torch.cuda.max_memory_allocated() / 2**30}


def torch_available():
  try:
    import timm  # noqa: F401
    import torch
    return torch.cuda.is_available()
  except ImportError:
    return False


def run_all(workloads, iters, with_deit, bigla_impl, modes, log):
  rows = []

  def record(row):
    rows.append(row)
    print(json.dumps(row), flush=True)
    log.write(json.dumps(row) + "\n")
    log.flush()

  for name, size, eval_batch, train_batch, dtypes, overrides in workloads:
    for dtype in dtypes:
      for mode, batch, fn in (("eval", eval_batch, vig_eval), ("train", train_batch, vig_train)):
        if mode not in modes:
          continue
        row = {"model": name, "res": size, "mode": mode, "dtype": dtype, "batch": batch}
        row.update(fn(name, size, batch, dtype, iters, overrides, bigla_impl))
        record(row)
    if with_deit and name in DEIT:
      for mode, batch in (("eval", eval_batch), ("train", train_batch)):
        row = {"model": DEIT[name].split("_patch")[0], "res": size, "mode": mode,
               "dtype": "bf16-autocast", "batch": batch}
        row.update(deit(name, size, batch, mode == "train", iters))
        record(row)
  if with_deit and any(w[:2] == ("vig_s", 224) for w in workloads):  # ViG-S eval's stretch bar
    row = {"model": "deit_base", "res": 224, "mode": "eval", "dtype": "bf16-autocast", "batch": 256}
    row.update(deit("vig_b", 224, 256, False, iters))
    record(row)
  return rows


def find(rows, model, res, mode, dtype="bfloat16"):
  for r in rows:
    if r["model"] == model and r["res"] == res and r["mode"] == mode and r["dtype"] in (dtype, "bf16-autocast"):
      return r
  return None


def summary(rows):
  """Markdown: the table, then the ratios the bars are stated in."""
  lines = ["| model | res | mode | dtype | batch | img/s | ms/batch | memory GiB | compile s |",
           "|---|---|---|---|---|---|---|---|---|"]
  for r in rows:
    lines.append(f"| {r['model']} | {r['res']} | {r['mode']} | {r['dtype']} | {r['batch']} | "
                 f"{r['img_per_s']:.0f} | {r['ms_per_batch']:.2f} | {r['memory_gib']:.2f} | "
                 f"{r.get('compile_s', float('nan')):.1f} |")
  ratios = []
  for ours, theirs, mode, res in (("vig_s", "deit_small", "train", 224), ("vig_s", "deit_small", "eval", 224),
                                  ("vig_s", "deit_base", "eval", 224), ("vig_t", "deit_tiny", "eval", 1024)):
    a, b = find(rows, ours, res, mode), find(rows, theirs, res, mode)
    if a and b:
      ratios.append(f"- {ours} / {theirs} {mode} {res}: {a['img_per_s'] / b['img_per_s']:.2f}x "
                    f"({a['img_per_s']:.0f} vs {b['img_per_s']:.0f} img/s)")
  per_token = [(r["res"], r["ms_per_batch"] / r["batch"] / (r["res"] // 16) ** 2)
               for r in rows if r["model"] == "vig_t" and r["mode"] == "eval" and r["dtype"] == "bfloat16"]
  if len(per_token) > 1:
    base = per_token[0][1]
    ratios.append("- vig_t eval time per token vs 224: " +
                  ", ".join(f"{res}: {t / base:.2f}x" for res, t in per_token))
  return "\n".join(lines + [""] + ratios) + "\n"


def plot(rows, path):
  try:
    import matplotlib
  except ImportError:
    print("matplotlib is not installed: no figure")
    return
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  fig, axes = plt.subplots(1, 2, figsize=(10, 4))
  for model, label in (("vig_t", "ViG-T (ours, JAX)"), ("deit_tiny", "DeiT-T (timm)")):
    pts = sorted((r["res"], r["img_per_s"], r["memory_gib"]) for r in rows
                 if r["model"] == model and r["mode"] == "eval" and r["dtype"] in ("bfloat16", "bf16-autocast"))
    if pts:
      res, ips, mem = zip(*pts)
      axes[0].plot(res, ips, "o-", label=label)
      axes[1].plot(res, mem, "o-", label=label)
  axes[0].set(xlabel="resolution", ylabel="eval img/s (bf16)", yscale="log", title="Throughput")
  axes[1].set(xlabel="resolution", ylabel="GiB (batch as in the table)", title="Memory")
  for ax in axes:
    ax.legend()
    ax.grid(alpha=0.3)
  fig.tight_layout()
  fig.savefig(path, dpi=120)


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--out", default="benchmarks/results")
  parser.add_argument("--smoke", action="store_true", help="one tiny workload, any backend")
  parser.add_argument("--iters", type=int, default=10)
  parser.add_argument("--bigla_impl", default="auto")
  parser.add_argument("--workloads", default="", help="subset as model@res, e.g. vig_s@224,vig_t@1024")
  parser.add_argument("--dtypes", default="", help="subset, e.g. bfloat16")
  parser.add_argument("--modes", default="eval,train", help="ViG modes to run (DeiT runs both)")
  args = parser.parse_args()
  os.makedirs(args.out, exist_ok=True)
  workloads = SMOKE if args.smoke else FULL
  if args.workloads:
    workloads = [w for w in workloads if f"{w[0]}@{w[1]}" in args.workloads.split(",")]
  if args.dtypes:
    workloads = [(*w[:4], tuple(d for d in w[4] if d in args.dtypes.split(",")), w[5])
                 for w in workloads]
  with_deit = not args.smoke and torch_available()
  with open(os.path.join(args.out, "model_bench.jsonl"), "w") as log:  # rows as they come
    rows = run_all(workloads, 2 if args.smoke else args.iters, with_deit, args.bigla_impl,
                   args.modes.split(","), log)
  device = jax.devices()[0].device_kind
  with open(os.path.join(args.out, "model_bench.json"), "w") as f:
    json.dump({"device": device, "jax": jax.__version__, "rows": rows}, f, indent=1)
  text = f"device: {device}, jax {jax.__version__}\n\n" + summary(rows)
  with open(os.path.join(args.out, "model_bench.md"), "w") as f:
    f.write(text)
  plot(rows, os.path.join(args.out, "model_bench.png"))
  print(text)


if __name__ == "__main__":
  main()
