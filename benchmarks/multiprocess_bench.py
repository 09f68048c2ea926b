"""One process driving every device vs one process per device: same losses, same throughput.

  python benchmarks/multiprocess_bench.py --out benchmarks/results              # GPUs of one host
  python benchmarks/multiprocess_bench.py --platform cpu --processes 2 --smoke --out /tmp/mp

Runs `train.py` twice on synthetic data with the same config and global batch: once as a single
process that sees all N devices, once as N processes of one device each, joined through
`jax.distributed` with the coordinator on localhost (JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES,
JAX_PROCESS_ID; on GPUs JAX_LOCAL_DEVICE_IDS gives each process its own GPU, while CUDA still sees
all of them, so NCCL keeps its NVLink paths). Compares the logged losses and the final
parameters, and the steady img/s from metrics.jsonl (median of the logged intervals after the first,
which holds the compile). Writes multiprocess_bench.json and multiprocess_bench.md.
"""
import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

FULL = ["--config=configs/synthetic.py:vig_s", "--config.total_steps=200",
        "--config.log_every_steps=25"]
SMOKE = ["--config=configs/tiny.py", "--config.total_steps=6", "--config.log_every_steps=2"]


def _free_port():
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def _device_env(platform, devices, joined):
  """Environment that gives a process `devices` devices (GPU ids, or as many CPU devices).
  jax.distributed.initialize reads JAX_LOCAL_DEVICE_IDS: only joined processes take it."""
  if platform == "gpu":
    return {"JAX_LOCAL_DEVICE_IDS": ",".join(map(str, devices))} if joined else {}
  return {"JAX_PLATFORMS": "cpu",
          "XLA_FLAGS": f"--xla_force_host_platform_device_count={len(devices)}"}


def _launch(flags, workdir, envs, log_path, timeout):
  """Starts one train.py per environment and waits up to `timeout` seconds for all of them;
  returns the exit codes, with "timeout" for a process it had to kill (a hung peer or exit)."""
  with open(log_path, "w") as log:
    procs = [subprocess.Popen([sys.executable, "train.py", *flags, f"--workdir={workdir}"],
                              cwd=REPO, env={**os.environ, **env}, stdout=log,
                              stderr=subprocess.STDOUT) for env in envs]
    deadline = time.monotonic() + timeout
    codes = []
    for p in procs:
      try:
        codes.append(p.wait(timeout=max(0.0, deadline - time.monotonic())))
      except subprocess.TimeoutExpired:
        p.kill()
        p.wait()
        codes.append("timeout")
    return codes


def _metrics(workdir):
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    rows = [json.loads(line) for line in f]
  train = [r for r in rows if "loss" in r]
  return {"steps": [r["step"] for r in train], "losses": [r["loss"] for r in train],
          "img_per_s": statistics.median(r["img_per_s"] for r in train[1:])}


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--out", default="benchmarks/results")
  parser.add_argument("--workdir", default="/tmp/multiprocess_bench")
  parser.add_argument("--platform", choices=["gpu", "cpu"], default="gpu")
  parser.add_argument("--processes", type=int, default=2, help="N: devices, and processes")
  parser.add_argument("--per-device-batch", type=int, default=128)
  parser.add_argument("--smoke", action="store_true", help="tiny model (configs/tiny.py)")
  parser.add_argument("--timeout", type=float, default=600, help="seconds each run may take")
  args = parser.parse_args()
  n = args.processes
  flags = [*(SMOKE if args.smoke else FULL), f"--config.batch_size={args.per_device_batch * n}",
           f"--config.eval_batch_size={args.per_device_batch * n}",
           "--config.checkpoint_every_steps=100000", "--config.mesh.data=-1",
           "--config.mesh.fsdp=1"]
  os.makedirs(args.out, exist_ok=True)
  shutil.rmtree(args.workdir, ignore_errors=True)
  one, many = os.path.join(args.workdir, "one_process"), os.path.join(args.workdir, "processes")
  codes = _launch(flags, one, [_device_env(args.platform, list(range(n)), False)],
                  os.path.join(args.out, "one_process.log"), args.timeout)
  coordinator = {"JAX_COORDINATOR_ADDRESS": f"127.0.0.1:{_free_port()}",
                 "JAX_NUM_PROCESSES": str(n)}
  codes += _launch(flags, many, [{**coordinator, "JAX_PROCESS_ID": str(i),
                                  **_device_env(args.platform, [i], True)} for i in range(n)],
                   os.path.join(args.out, "processes.log"), args.timeout)
  if any(codes):
    sys.exit(f"multiprocess_bench: train.py exit codes {codes} (logs in {args.out})")

  from vig_jax.checkpointing import read_params  # after the runs: this process takes no device
  import jax
  import numpy as np
  a, b = _metrics(one), _metrics(many)
  step = a["steps"][-1]
  param_diff = max(float(np.max(np.abs(np.asarray(x, np.float32) - np.asarray(y, np.float32))))
                   for x, y in zip(jax.tree.leaves(read_params(one, step)),
                                   jax.tree.leaves(read_params(many, step))))
  result = {"processes": n, "flags": flags, "one_process": a, "processes_run": b,
            "throughput_ratio": b["img_per_s"] / a["img_per_s"],
            "max_abs_loss_diff": max(abs(x - y) for x, y in zip(a["losses"], b["losses"])),
            "max_abs_param_diff": param_diff}
  with open(os.path.join(args.out, "multiprocess_bench.json"), "w") as f:
    json.dump(result, f, indent=1)
  text = "\n".join([
      f"{n} devices; train.py {' '.join(flags)}", "",
      "| run | img/s (median of logged intervals) | losses at the logged steps |", "|---|---|---|",
      f"| 1 process, {n} devices | {a['img_per_s']:,.0f} | {', '.join(f'{x:.4f}' for x in a['losses'])} |",
      f"| {n} processes, 1 device each | {b['img_per_s']:,.0f} | "
      f"{', '.join(f'{x:.4f}' for x in b['losses'])} |", "",
      f"Throughput, processes / one process: {result['throughput_ratio']:.3f}. Largest loss "
      f"difference {result['max_abs_loss_diff']:.2e}; largest parameter difference at step {step}: "
      f"{param_diff:.2e}.", ""])
  with open(os.path.join(args.out, "multiprocess_bench.md"), "w") as f:
    f.write(text)
  print(text)


if __name__ == "__main__":
  main()
