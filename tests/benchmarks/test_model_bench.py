"""Smoke test of the model benchmark: it runs its workloads end to end and writes its reports."""
import json
import os
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_model_bench_smoke(tmp_path):
  env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=1"}
  result = subprocess.run([sys.executable, "benchmarks/model_bench.py", "--smoke",
                           f"--out={tmp_path}"], cwd=REPO, env=env,
                          capture_output=True, text=True)
  assert result.returncode == 0, result.stderr[-2000:]
  with open(tmp_path / "model_bench.json") as f:
    rows = json.load(f)["rows"]
  assert {(r["model"], r["mode"]) for r in rows} == {("vig_t", "eval"), ("vig_t", "train")}
  for r in rows:
    assert r["img_per_s"] > 0 and r["memory_gib"] > 0 and r["compile_s"] > 0
  assert "| vig_t | 64 | train | float32 | 4 |" in (tmp_path / "model_bench.md").read_text()
