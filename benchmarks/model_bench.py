"""End-to-end ViG speed against its peers, measured in one run on one device.

  python benchmarks/model_bench.py --out benchmarks/results          # the full set (GPU)
  python benchmarks/model_bench.py --smoke --out /tmp/bench          # tiny shapes, any backend
  python benchmarks/model_bench.py --report rows.jsonl --out DIR     # redo the tables from rows

Peers, in the same process on the same shapes: timm (DeiT, ConvNeXt, Swin) eager and under
`torch.compile` (default mode; bf16 autocast; train = forward, backward, fused AdamW), and a plain
Flax DeiT (benchmarks/flax_deit.py: cuDNN attention where cuDNN takes the shape, else XLA;
train = forward, backward and the project's optimizer, vig_jax/optim.py). ViG train is the training
code's own sharded step (trainer.jit_train_step: Mixup/CutMix, forward, backward, clipping, AdamW,
EMA) on synthetic data, with the input's device half reduced to resize + normalise, since the peers
are timed on ready tensors; one more row times the step with that half whole (flip, RandAugment,
erasing). ViG eval is jit(model.apply). timm is skipped when it does not import.

Every ratio is ViG's throughput over the fastest peer of its workload in the same run. Writes
model_bench.jsonl (rows as they come), model_bench.json and model_bench.md (tables and the bars).
"""
import argparse
import dataclasses
import functools
import json
import os
import statistics
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks import flax_deit  # noqa: E402
from configs import imagenet  # noqa: E402
from configs.common import input_config  # noqa: E402
from vig_jax import create_model, optim, sharding, trainer, xla_flags  # noqa: E402

TIMM = {"deit_tiny": "deit_tiny_patch16_224", "deit_small": "deit_small_patch16_224",
        "deit_base": "deit_base_patch16_224", "convnext_tiny": "convnext_tiny",
        "swin_tiny": "swin_tiny_patch4_window7_224"}


@dataclasses.dataclass(frozen=True)
class Job:
  framework: str  # "vig" (ours), "flax" (flax_deit), "timm_eager", "timm_compiled"
  model: str
  res: int
  mode: str  # "train" or "eval"
  batch: int
  overrides: tuple = ()  # size overrides, (name, value) pairs
  augment: bool = False  # ViG train: the input's device half (flip, RandAugment, erasing) in the step
  devices: int = 1  # ViG train: data-parallel over this many devices; batch is the global batch

  @property
  def label(self):
    return (f"{self.framework}:{self.model}@{self.res}/{self.mode}/b{self.batch}"
            + ("+augment" if self.augment else "")
            + (f"/data={self.devices}" if self.devices > 1 else ""))


@dataclasses.dataclass(frozen=True)
class Workload:
  title: str
  ours: Job
  peers: tuple
  bar: float = 0.0  # ours / fastest peer must reach this (0: no bar)


def peers(model, res, mode, batch, frameworks=("timm_eager", "timm_compiled", "flax"), overrides=()):
  return tuple(Job(f, model, res, mode, batch, overrides) for f in frameworks)


def full_set():
  timm_only = ("timm_eager", "timm_compiled")
  workloads = [
      Workload("ViG-S train 224 b128 vs DeiT-S", Job("vig", "vig_s", 224, "train", 128),
               peers("deit_small", 224, "train", 128), 1.0),
      Workload("ViG-S eval 224 b256 vs DeiT-B", Job("vig", "vig_s", 224, "eval", 256),
               peers("deit_base", 224, "eval", 256), 2.0),
      Workload("ViG-T eval 1024 b16 vs DeiT-T", Job("vig", "vig_t", 1024, "eval", 16),
               peers("deit_tiny", 1024, "eval", 16), 2.0),
      Workload("ViG-H-T train 224 b128 vs ConvNeXt-T, Swin-T", Job("vig", "vig_h_t", 224, "train", 128),
               peers("convnext_tiny", 224, "train", 128, timm_only) +
               peers("swin_tiny", 224, "train", 128, timm_only), 1.0),
      Workload("ViG-S eval 224 b256 vs DeiT-S", Job("vig", "vig_s", 224, "eval", 256),
               peers("deit_small", 224, "eval", 256)),  # no bar: last, in case time runs out
      Workload("ViG-S train 224 b128 with the input's device half",
               Job("vig", "vig_s", 224, "train", 128, augment=True), ()),
  ]
  # Time per token, 224 -> 2048, each batch holding ~50-65k tokens.
  per_token = [Job("vig", "vig_t", res, "eval", batch)
               for res, batch in ((224, 256), (512, 64), (1024, 16), (2048, 4))]
  return workloads, per_token


def smoke_set():
  tiny = (("depth", 2),)
  workloads = [
      Workload("ViG-T train 64 b4 vs DeiT-T", Job("vig", "vig_t", 64, "train", 4, tiny),
               peers("deit_tiny", 64, "train", 4, overrides=tiny), 1.0),
      Workload("ViG-T eval 64 b4 vs DeiT-T", Job("vig", "vig_t", 64, "eval", 4, tiny),
               peers("deit_tiny", 64, "eval", 4, overrides=tiny), 2.0),
  ]
  per_token = [Job("vig", "vig_t", 64, "eval", 4, tiny), Job("vig", "vig_t", 128, "eval", 1, tiny)]
  return workloads, per_token


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


def planned_gib(compiled):
  stats = compiled.memory_analysis()
  return (stats.argument_size_in_bytes + stats.output_size_in_bytes + stats.temp_size_in_bytes
          - stats.alias_size_in_bytes) / 2**30


def compile_timed(lower):
  start = time.perf_counter()
  compiled = lower().compile()
  return compiled, time.perf_counter() - start


def result(job, seconds, **extra):
  return {"img_per_s": job.batch / seconds, "ms_per_batch": seconds * 1e3, **extra}


def vig_step(job):
  """(run, compiled, compile_s): ViG's compiled eval or train step on `job`'s shapes.

  run() makes one call and blocks on its result; the train state lives on between calls.
  """
  if job.mode == "eval":
    kwargs = {} if "_h_" in job.model else {"img_size": job.res}
    model = create_model(job.model, dtype=jnp.bfloat16, **kwargs, **dict(job.overrides))
    images = jax.random.normal(jax.random.PRNGKey(0), (job.batch, job.res, job.res, 3), jnp.float32)
    variables = jax.jit(model.init)(jax.random.PRNGKey(0), images[:1])
    compiled, compile_s = compile_timed(lambda: jax.jit(model.apply).lower(variables, images))
    return lambda: compiled(variables, images).block_until_ready(), compiled, compile_s
  mesh = dict(data=job.devices, fsdp=1, num_devices=job.devices)
  config, s = vig_train_setup(job.model, job.res, job.batch, job.overrides, mesh,
                              augment=job.augment)
  with jax.set_mesh(s.mesh):
    holder = [trainer.init_state(config, s)]
    batch = synthetic_batch(job.res, job.batch, s.mesh)
    compiled, compile_s = compile_timed(
        lambda: trainer.jit_train_step(config, s).lower(holder[0], batch))

  def run():
    holder[0], metrics = compiled(holder[0], batch)
    metrics["loss"].block_until_ready()

  return run, compiled, compile_s


def vig_train_setup(model, res, batch, overrides=(), mesh=None, dtype="bfloat16", augment=True):
  """The training code's own (config, Setup) for `model` on synthetic data. augment=False turns
  the input's device half off (no flip, RandAugment or erasing; the resize of a whole-image crop
  and the normalisation stay): the step then does the work a peer timed on ready tensors does."""
  config = imagenet.get_config(model)
  config.input = input_config("synthetic", num_classes=1000)
  if not augment:
    config.input.update(hflip=False, randaugment_layers=0, erase_prob=0.0)
  config.update(image_size=res, batch_size=batch, eval_batch_size=batch, dtype=dtype)
  config.model_kwargs.update(dict(overrides))
  if mesh:
    config.mesh.update(mesh)
  return config, trainer.setup(config)


def synthetic_batch(res, batch, mesh, seed=0):
  """A train batch as the input pipeline ships it: whole res x res uint8 crops, packed."""
  rng = np.random.default_rng(seed)
  return sharding.global_batch(
      {"image": rng.integers(0, 256, (batch, res * res * 3), np.uint8),
       "crop_size": np.full((batch, 2), res, np.int32),
       "label": rng.integers(0, 1000, batch).astype(np.int32)}, mesh)


def vig_peer(job, iters):
  run, compiled, compile_s = vig_step(job)
  return result(job, timed(run, 2, iters), memory_gib=planned_gib(compiled), compile_s=compile_s)


def flax_peer(job, iters):
  """The Flax DeiT: eval = jit(apply); train = forward, backward, clipping + AdamW (optim.py)."""
  images = jax.random.normal(jax.random.PRNGKey(0), (job.batch, job.res, job.res, 3), jnp.float32)
  labels = jax.random.randint(jax.random.PRNGKey(1), (job.batch,), 0, 1000)
  make = lambda impl: flax_deit.create(job.model, implementation=impl, dtype=jnp.bfloat16,
                                       **dict(job.overrides))
  params = jax.jit(make(None).init)(jax.random.PRNGKey(0), images[:1])["params"]
  tx = optim.create_optimizer(optax.constant_schedule(1e-3), weight_decay=0.05)
  if job.mode == "eval":
    build = lambda impl: functools.partial(make(impl).apply, {"params": params})
    args = (images,)
  else:
    def build(impl):
      model = make(impl)

      def step(params, opt_state, images, labels):
        def loss_fn(p):
          logits = model.apply({"params": p}, images)
          return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()
        loss, grads = jax.value_and_grad(loss_fn)(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

      return step
    args = (params, tx.init(params), images, labels)
  start = time.perf_counter()
  compiled, impl, refusals = flax_deit.compile_with_fallback(build, args)
  compile_s = time.perf_counter() - start
  if job.mode == "eval":
    run = lambda: compiled(images).block_until_ready()
  else:
    holder = list(args[:2])

    def run():
      holder[0], holder[1], loss = compiled(*holder, images, labels)
      loss.block_until_ready()
  seconds = timed(run, 2, iters)
  return result(job, seconds, memory_gib=planned_gib(compiled), compile_s=compile_s,
                attention=impl, attention_refused=refusals)


def timm_peer(job, iters):
  """timm eager or under torch.compile: eval = forward; train = forward, backward, fused AdamW."""
  import torch
  row = _timm_measure(job, iters)
  if torch.cuda.is_available():
    torch.cuda.empty_cache()  # the next job, PyTorch's or JAX's, gets the memory back
  torch._dynamo.reset()
  return row


def _timm_measure(job, iters):
  import timm
  import torch
  device = "cuda" if torch.cuda.is_available() else "cpu"
  kwargs = {"img_size": job.res} if job.model.startswith("deit") else {}
  model = timm.create_model(TIMM[job.model], num_classes=1000, **kwargs, **dict(job.overrides))
  model = model.to(device).train(job.mode == "train")
  forward = torch.compile(model) if job.framework == "timm_compiled" else model
  images = torch.randn(job.batch, 3, job.res, job.res, device=device)
  labels = torch.randint(0, 1000, (job.batch,), device=device)
  sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
  autocast = functools.partial(torch.autocast, device, dtype=torch.bfloat16)
  if job.mode == "train":
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, fused=device == "cuda")

    def run():
      with autocast():
        loss = torch.nn.functional.cross_entropy(forward(images), labels)
      opt.zero_grad(set_to_none=True)
      loss.backward()
      opt.step()
      sync()
  else:
    def run():
      with torch.no_grad(), autocast():
        forward(images)
      sync()
  if device == "cuda":
    torch.cuda.reset_peak_memory_stats()
  start = time.perf_counter()
  run()  # the compile, for torch.compile
  first_s = time.perf_counter() - start
  seconds = timed(run, 2, iters)
  extra = {"compile_s": first_s} if job.framework == "timm_compiled" else {}
  if device == "cuda":
    extra["memory_gib"] = torch.cuda.max_memory_allocated() / 2**30
  return result(job, seconds, **extra)


RUNNERS = {"vig": vig_peer, "flax": flax_peer, "timm_eager": timm_peer, "timm_compiled": timm_peer}
FRAMEWORKS = ("vig", "flax", "timm", "timm_eager", "timm_compiled")  # timm: eager and compiled


def timm_available():
  try:
    import timm  # noqa: F401
    import torch  # noqa: F401
    return True
  except ImportError:
    return False


def jobs_of(workloads, per_token, frameworks):
  """Every distinct job of `frameworks` (FRAMEWORKS) once, timm first.

  timm first: its peers are every ratio's reference, and PyTorch hands its cached memory back
  (empty_cache) before JAX, which reserves most of the GPU's memory when it starts.
  """
  jobs = []
  for job in [j for w in workloads for j in (w.ours, *w.peers)] + per_token:
    selected = job.framework in frameworks or job.framework.split("_")[0] in frameworks
    if job not in jobs and selected:
      jobs.append(job)
  return sorted(jobs, key=lambda j: not j.framework.startswith("timm"))


def run_all(jobs, iters, log):
  rows = []
  for job in jobs:
    print(f"running {job.label}", flush=True)
    row, start = {"job": job.label, **dataclasses.asdict(job)}, time.perf_counter()
    try:
      row.update(RUNNERS[job.framework](job, iters))
    except Exception as e:  # noqa: BLE001 -- one failed peer must not lose the run's other rows
      row["error"] = f"{type(e).__name__}: {str(e).splitlines()[0][:300] if str(e) else ''}"
    row["elapsed_s"] = time.perf_counter() - start  # set-up, compiles and timing: for planning
    rows.append(row)
    print(json.dumps(row), flush=True)
    log.write(json.dumps(row) + "\n")
    log.flush()
  return rows


def _fmt(x, spec):
  return "–" if x is None else format(x, spec)


def _impl(row):
  if row["framework"] == "flax":
    return f"Flax, {row['attention']} attention"
  if row["framework"] == "vig" and row.get("augment"):
    return "vig-jax, with the input's device half"
  return {"vig": "vig-jax", "timm_eager": "timm eager", "timm_compiled": "timm torch.compile"}[
      row["framework"]]


def report(workloads, per_token, rows, header):
  """Markdown: a table per workload (ratio = ours / that row), the bars, time per token."""
  by_label = {r["job"]: r for r in rows}
  ok = lambda job: job.label in by_label and "error" not in by_label[job.label]
  lines, bars = [header, ""], []
  for w in workloads:
    lines += [f"### {w.title}", "",
              "| model | implementation | batch | img/s | ms/batch | memory GiB | compile s | ViG / this |",
              "|---|---|---|---|---|---|---|---|"]
    ours = by_label.get(w.ours.label)
    for job in (w.ours, *w.peers):
      r = by_label.get(job.label)
      if r is None:
        continue
      if "error" in r:
        lines.append(f"| {job.model} | {job.framework} | {job.batch} | failed: {r['error']} | | | | |")
        continue
      ratio = ours["img_per_s"] / r["img_per_s"] if ok(w.ours) else None
      lines.append(f"| {job.model} | {_impl(r)} | {job.batch} | {r['img_per_s']:,.0f} | "
                   f"{r['ms_per_batch']:.2f} | {_fmt(r.get('memory_gib'), '.2f')} | "
                   f"{_fmt(r.get('compile_s'), '.1f')} | {_fmt(ratio, '.2f')}x |")
    done = [by_label[p.label] for p in w.peers if ok(p)]
    if ok(w.ours) and done:
      best = max(done, key=lambda r: r["img_per_s"])
      ratio = ours["img_per_s"] / best["img_per_s"]
      lines += ["", f"Fastest peer: {best['model']} ({_impl(best)}), {best['img_per_s']:,.0f} img/s; "
                f"ViG / fastest peer = **{ratio:.2f}x**"]
      if w.bar:
        bars.append(f"| {w.title}: ViG / fastest peer ≥ {w.bar:.1f}x | {ratio:.2f}x "
                    f"({best['model']}, {_impl(best)}) | {'**met**' if ratio >= w.bar else 'missed'} |")
    elif w.bar:
      bars.append(f"| {w.title}: ViG / fastest peer ≥ {w.bar:.1f}x | not measured | – |")
    lines.append("")
  tokens = [(j, by_label[j.label]) for j in per_token if ok(j)]
  if tokens:
    lines += ["### ViG-T eval: time per token", "", "| res | batch | img/s | µs per token | vs first |",
              "|---|---|---|---|---|"]
    per = [r["ms_per_batch"] * 1e3 / (j.batch * (j.res // 16) ** 2) for j, r in tokens]
    for (j, r), t in zip(tokens, per):
      lines.append(f"| {j.res} | {j.batch} | {r['img_per_s']:,.1f} | {t:.4f} | {t / per[0]:.2f}x |")
    lines.append("")
  if per_token:
    bar = f"| time per token {per_token[0].res} → {per_token[-1].res} grows ≤ 1.15x |"
    if len(tokens) == len(per_token):
      growth = max(per) / per[0]
      bars.append(f"{bar} {growth:.2f}x (largest) | {'**met**' if growth <= 1.15 else 'missed'} |")
    else:  # a growth over some resolutions only would claim what was not measured
      bars.append(f"{bar} not measured ({len(tokens)} of {len(per_token)} resolutions ran) | – |")
  lines += ["### Bars", "", "| bar | result | |", "|---|---|---|", *bars]
  return "\n".join(lines) + "\n"


def main():
  xla_flags.set_default_flags()  # as train.py runs
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--out", default="benchmarks/results")
  parser.add_argument("--smoke", action="store_true", help="tiny shapes, any backend")
  parser.add_argument("--iters", type=int, default=10, help="calls per timed repeat")
  parser.add_argument("--frameworks", default="vig,flax,timm",
                      help="which to run: vig (ours), flax (the Flax DeiT), timm (eager + "
                      "compiled), timm_eager, timm_compiled")
  parser.add_argument("--bars-only", action="store_true",
                      help="only the workloads with a bar, and time per token")
  parser.add_argument("--report", nargs="+", default=(),
                      help="only redo the tables from these rows files (.jsonl of earlier runs)")
  args = parser.parse_args()
  workloads, per_token = smoke_set() if args.smoke else full_set()
  if args.bars_only:
    workloads = [w for w in workloads if w.bar]
  frameworks = set(args.frameworks.split(","))
  if not frameworks <= set(FRAMEWORKS):
    sys.exit(f"model_bench: --frameworks {args.frameworks!r}: choose from {', '.join(FRAMEWORKS)}")
  os.makedirs(args.out, exist_ok=True)
  if args.report:
    rows = []
    for path in args.report:
      with open(path) as f:
        rows += [json.loads(line) for line in f if line.strip()]
    header = "Tables from the rows of " + ", ".join(args.report)
  else:
    timm_frameworks = {f for f in frameworks if f.startswith("timm")}
    with_timm = bool(timm_frameworks) and timm_available()
    if timm_frameworks and not with_timm:
      print("timm/torch do not import: the timm peers are skipped", flush=True)
    jobs = jobs_of(workloads, per_token, frameworks if with_timm else frameworks - timm_frameworks)
    with open(os.path.join(args.out, "model_bench.jsonl"), "w") as log:  # rows as they come
      rows = run_all(jobs, 2 if args.smoke else args.iters, log)
    versions = {"jax": jax.__version__}
    if with_timm:
      import timm
      import torch
      versions.update(torch=torch.__version__, timm=timm.__version__)
    device = jax.devices()[0].device_kind
    header = (f"device: {device}; " + ", ".join(f"{k} {v}" for k, v in versions.items()) +
              f"; XLA_FLAGS={os.environ['XLA_FLAGS']}")
    with open(os.path.join(args.out, "model_bench.json"), "w") as f:
      json.dump({"device": device, **versions, "rows": rows}, f, indent=1)
  text = report(workloads, per_token, rows, header)
  with open(os.path.join(args.out, "model_bench.md"), "w") as f:
    f.write(text)
  print(text)


if __name__ == "__main__":
  main()
