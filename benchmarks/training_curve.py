"""Validation top-1 against training wall time, from a run's metrics.jsonl.

  python benchmarks/training_curve.py W/metrics.jsonl --out benchmarks/results/cifar10

Minutes are summed from the logged step times (compile and periodic evaluations included, the
set-up before the first step not). Prints a markdown table; writes <out>.png (needs matplotlib).
"""
import argparse
import json
import os


def curve(rows):
  """[(step, minutes, top1, ema_top1 or None)] at every evaluation."""
  points, seconds, last_step = [], 0.0, 0
  for row in rows:
    if "step_time" in row:
      seconds += row["step_time"] * (row["step"] - last_step)
      last_step = row["step"]
    if "eval_top1" in row:
      points.append((row["step"], seconds / 60, row["eval_top1"], row.get("eval_ema_top1")))
  return points


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("metrics", help="a run's metrics.jsonl")
  parser.add_argument("--out", required=True, help="path prefix of the figure")
  args = parser.parse_args()
  with open(args.metrics) as f:
    points = curve(json.loads(line) for line in f if line.strip())
  if not points:
    raise SystemExit(f"training_curve: {args.metrics} has no evaluation")
  print("| step | minutes | val top-1 | EMA top-1 |\n|---|---|---|---|")
  for step, minutes, top1, ema in points:
    print(f"| {step} | {minutes:.2f} | {top1:.2%} | {'' if ema is None else f'{ema:.2%}'} |")
  import matplotlib
  matplotlib.use("Agg")
  from matplotlib import pyplot as plt
  fig, ax = plt.subplots(figsize=(5, 3.5))
  ax.plot([p[1] for p in points], [100 * p[2] for p in points], "o-", label="val top-1")
  ax.set(xlabel="training wall time (minutes)", ylabel="top-1 (%)", title=os.path.basename(args.out))
  ax.grid(alpha=0.3)
  fig.tight_layout()
  fig.savefig(args.out + ".png", dpi=120)


if __name__ == "__main__":
  main()
