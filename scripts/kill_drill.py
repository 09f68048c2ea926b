"""Crash drill: SIGKILL the tiny training run at random moments, restart it, check nothing is lost.

  python scripts/kill_drill.py --kills 10 --workdir /tmp/drill

Runs the tiny config once uninterrupted (the reference), then again killed `--kills` times with
SIGKILL: half at a random step, half the moment an async checkpoint write is seen in progress.
After every restart it checks that the run resumed from the newest checkpoint that was complete at
the kill (never a partial one; the killed run's workdir lock taken over as stale) and counts the
steps lost. At the end the final parameters must equal
the reference's bit for bit. Prints a JSON summary as the last line; exits 1 if a check failed.
"""
import argparse
import json
import os
import random
import re
import signal
import subprocess
import sys
import time

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)


def command(workdir, total_steps, interval):
  return [sys.executable, os.path.join(REPO, "train.py"), "--config=configs/tiny.py",
          f"--workdir={workdir}", f"--config.total_steps={total_steps}",
          f"--config.checkpoint_every_steps={interval}", "--config.log_every_steps=1",
          "--config.keep_checkpoints=3"]


def complete_checkpoints(workdir):
  """Steps with a finished checkpoint; Orbax writes into a temporary name and renames at the end."""
  root = os.path.join(workdir, "checkpoints")
  names = os.listdir(root) if os.path.isdir(root) else []
  return sorted(int(n) for n in names if n.isdigit())


def checkpoint_being_written(workdir):
  """The step of a checkpoint whose write is in progress (its temporary directory exists), or -1."""
  root = os.path.join(workdir, "checkpoints")
  names = os.listdir(root) if os.path.isdir(root) else []
  steps = [int(m[1]) for m in (re.match(r"(\d+)\..*tmp", n) for n in names) if m]
  return max(steps, default=-1)


def last_logged_step(workdir):
  path = os.path.join(workdir, "metrics.jsonl")
  if not os.path.exists(path):
    return 0
  with open(path) as f:
    steps = [json.loads(line)["step"] for line in f if '"loss"' in line]
  return max(steps, default=0)


def start(cmd, log_path):
  log = open(log_path, "w")
  env = {**os.environ, "PYTHONUNBUFFERED": "1"}
  return subprocess.Popen(cmd, cwd=REPO, stdout=log, stderr=subprocess.STDOUT, env=env), log


def resumed_step(log_path):
  with open(log_path) as f:
    found = re.findall(r"resumed from checkpoint step (\d+)", f.read())
  return int(found[0]) if found else 0


def run_drill(workdir, kills, total_steps, interval, seed):
  rng = random.Random(seed)
  os.makedirs(workdir, exist_ok=True)
  reference = os.path.join(workdir, "reference")
  drilled = os.path.join(workdir, "drilled")
  ref = subprocess.run(command(reference, total_steps, interval), cwd=REPO, capture_output=True)
  if ref.returncode:
    raise RuntimeError(f"reference run failed:\n{ref.stdout.decode()[-3000:]}")

  records, failures, since = [], [], 0
  for i in range(kills + 1):
    log_path = os.path.join(workdir, f"run{i}.log")
    proc, log = start(command(drilled, total_steps, interval), log_path)
    during_write = i % 2 == 1
    target = since + rng.randint(1, interval + 2)
    while i < kills and proc.poll() is None:
      step = last_logged_step(drilled)
      if (during_write and checkpoint_being_written(drilled) > since) or (
          not during_write and step >= target):
        proc.send_signal(signal.SIGKILL)
        break
      time.sleep(0.002)
    proc.wait()
    log.close()
    resumed = resumed_step(log_path)
    if records and resumed != records[-1]["newest_complete"]:
      failures.append(f"run {i} resumed from {resumed}, newest complete was "
                      f"{records[-1]['newest_complete']}")
    if records:
      records[-1]["resumed_from"] = resumed
      records[-1]["steps_lost"] = records[-1]["last_step"] - resumed
    if i == kills:
      if proc.returncode != 0:
        failures.append(f"final run exited {proc.returncode}; see {log_path}")
      break
    ckpts = complete_checkpoints(drilled)
    records.append({"kill": i + 1, "during_checkpoint_write": checkpoint_being_written(drilled) >= 0,
                    "last_step": last_logged_step(drilled),
                    "newest_complete": ckpts[-1] if ckpts else 0})
    since = last_logged_step(drilled)
    if since >= total_steps:
      failures.append("the run finished before all kills; use more --total_steps")
      break

  identical = False
  if not failures:
    import jax
    from vig_jax.checkpointing import read_params
    a, b = read_params(reference, total_steps), read_params(drilled, total_steps)
    identical = all(np.array_equal(x, y) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))
    if not identical:
      failures.append("final parameters differ from the uninterrupted run")
  lost = [r["steps_lost"] for r in records if "steps_lost" in r]
  return {"kills": len(records), "kills_during_checkpoint_write":
          sum(r["during_checkpoint_write"] for r in records),
          "restored_steps": [r.get("resumed_from") for r in records],
          "max_steps_lost": max(lost, default=0), "save_interval": interval,
          "bit_identical": identical, "failures": failures, "records": records}


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--kills", type=int, default=10)
  parser.add_argument("--workdir", required=True)
  parser.add_argument("--total_steps", type=int, default=0, help="default: 8 per kill + 8")
  parser.add_argument("--interval", type=int, default=4, help="checkpoint every N steps")
  parser.add_argument("--seed", type=int, default=0)
  args = parser.parse_args()
  if os.path.exists(args.workdir) and os.listdir(args.workdir):
    sys.exit(f"kill_drill: error: {args.workdir} is not empty")
  total = args.total_steps or 8 * args.kills + 8
  summary = run_drill(args.workdir, args.kills, total, args.interval, args.seed)
  for r in summary["records"]:
    print(f"kill {r['kill']}: at step {r['last_step']}"
          f"{' during a checkpoint write' if r['during_checkpoint_write'] else ''}, newest complete "
          f"{r['newest_complete']}, resumed from {r.get('resumed_from')}, lost {r.get('steps_lost')}")
  print(json.dumps({k: v for k, v in summary.items() if k != "records"}))
  sys.exit(1 if summary["failures"] else 0)


if __name__ == "__main__":
  main()
