"""The model benchmark: its smoke run end to end, and the ratios and bars of its report."""
import json
import os
import subprocess
import sys

from benchmarks import model_bench
from benchmarks.model_bench import Job, Workload
from tests.cpu_devices import env_with_cpu_devices

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_model_bench_smoke(tmp_path):
  env = env_with_cpu_devices(1)
  result = subprocess.run([sys.executable, "benchmarks/model_bench.py", "--smoke",
                           f"--out={tmp_path}"], cwd=REPO, env=env, capture_output=True, text=True)
  assert result.returncode == 0, result.stderr[-2000:]
  with open(tmp_path / "model_bench.json") as f:
    rows = json.load(f)["rows"]
  assert not [r for r in rows if "error" in r]
  done = {(r["framework"], r["model"], r["mode"]) for r in rows}
  assert {("vig", "vig_t", "train"), ("vig", "vig_t", "eval"), ("flax", "deit_tiny", "train"),
          ("flax", "deit_tiny", "eval")} <= done
  assert model_bench.timm_available() == any(r["framework"].startswith("timm") for r in rows)
  for r in rows:
    assert r["img_per_s"] > 0 and r["ms_per_batch"] > 0
  flax_rows = [r for r in rows if r["framework"] == "flax"]
  assert all(r["attention"] == "xla" and r["attention_refused"] for r in flax_rows)  # no cuDNN on CPU
  text = (tmp_path / "model_bench.md").read_text()
  assert "ViG / fastest peer" in text and "### Bars" in text and "time per token" in text


def _row(job, img_per_s):
  return {"job": job.label, "framework": job.framework, "model": job.model,
          "img_per_s": img_per_s, "ms_per_batch": job.batch / img_per_s * 1e3}


def test_report_takes_every_ratio_against_the_fastest_peer():
  ours = Job("vig", "vig_s", 224, "train", 128)
  slow, fast = Job("timm_eager", "deit_small", 224, "train", 128), Job("timm_compiled", "deit_small", 224, "train", 128)
  broken = Job("timm_compiled", "swin_tiny", 224, "train", 128)
  workloads = [Workload("met", ours, (slow, fast), 1.0), Workload("missed", ours, (slow, fast), 2.0),
               Workload("peer failed", ours, (slow, broken), 1.0)]
  per_token = [Job("vig", "vig_t", 224, "eval", 256), Job("vig", "vig_t", 448, "eval", 64)]
  rows = [_row(ours, 300.0), _row(slow, 100.0), _row(fast, 200.0),
          {"job": broken.label, "framework": broken.framework, "model": broken.model, "error": "boom"},
          _row(per_token[0], 1000.0), _row(per_token[1], 240.0)]  # 4x tokens at 1/4.1667 the rate
  text = model_bench.report(workloads, per_token, rows, "header")
  assert "ViG / fastest peer = **1.50x**" in text  # 300 / 200, not 300 / 100
  assert "| met: ViG / fastest peer ≥ 1.0x | 1.50x" in text and "**met**" in text
  assert "| missed: ViG / fastest peer ≥ 2.0x | 1.50x (deit_small, timm torch.compile) | missed |" in text
  assert "failed: boom" in text
  assert "| peer failed: ViG / fastest peer ≥ 1.0x | 3.00x" in text  # the peers that ran
  assert "1.04x (largest) | **met**" in text
  partial = model_bench.report(workloads, per_token, rows[:-1], "header")  # one resolution ran
  assert "| time per token 224 → 448 grows ≤ 1.15x | not measured (1 of 2 resolutions ran) | – |" \
      in partial


def test_model_bench_refuses_unknown_frameworks(tmp_path):
  result = subprocess.run([sys.executable, "benchmarks/model_bench.py", "--smoke", "--frameworks=vig,jaxx",
                           f"--out={tmp_path / 'out'}"], cwd=REPO, capture_output=True, text=True)
  assert result.returncode != 0
  assert result.stderr.strip().splitlines()[-1] == \
      "model_bench: --frameworks 'vig,jaxx': choose from vig, flax, timm, timm_eager, timm_compiled"
  assert not (tmp_path / "out").exists()


def test_frameworks_select_jobs_and_timm_names_both_modes():
  workloads, per_token = model_bench.full_set()
  frameworks = lambda selected: {j.framework for j in model_bench.jobs_of(workloads, per_token,
                                                                          selected)}
  assert frameworks({"vig", "timm"}) == {"vig", "timm_eager", "timm_compiled"}
  assert frameworks({"vig", "timm_compiled"}) == {"vig", "timm_compiled"}
  jobs = model_bench.jobs_of(workloads, per_token, {"vig", "timm_compiled"})
  assert jobs[0].framework == "timm_compiled"  # timm first: it hands its memory back before JAX


def test_the_train_step_with_augmentation_is_its_own_row_never_a_peer():
  plain, augmented = Job("vig", "vig_s", 224, "train", 128), Job("vig", "vig_s", 224, "train", 128,
                                                                 augment=True)
  assert plain.label != augmented.label
  workloads = model_bench.full_set()[0]
  assert all(not p.augment for w in workloads for p in w.peers)
  assert [w.ours for w in workloads if w.ours.augment] == [augmented]
  rows = [{**_row(augmented, 100.0), "augment": True}]
  text = model_bench.report([Workload("with aug", augmented, ())], [], rows, "header")
  assert "| vig_s | vig-jax, with the input's device half | 128 | 100 |" in text
