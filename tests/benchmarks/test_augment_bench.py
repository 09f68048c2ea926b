"""The input-half benchmark on CPU devices: both layouts timed, costed and their HLO written."""
import json
import os
import subprocess
import sys

import pytest

from tests.cpu_devices import env_with_cpu_devices

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_augment_bench_times_one_device_and_the_mesh(tmp_path):
  env = env_with_cpu_devices(2)
  result = subprocess.run([sys.executable, "benchmarks/augment_bench.py", "--smoke", "--devices=2",
                           "--iters=1", f"--out={tmp_path}", f"--hlo-dir={tmp_path / 'hlo'}"],
                          cwd=REPO, env=env, capture_output=True, text=True)
  assert result.returncode == 0, result.stderr[-2000:]
  with open(tmp_path / "augment_bench.json") as f:
    rows = json.load(f)["rows"]
  assert [r["devices"] for r in rows] == [1, 2]
  assert rows[0]["efficiency"] == 1.0
  for r in rows:
    assert r["images_per_device"] == 2 and r["ms"] > 0 and r["flops"] > 0 and r["bytes"] > 0
  # Each device augments its own rows: the partitioned program costs what the 1-device one does
  # (give or take the few ops that pick its rows' keys).
  assert rows[1]["flops"] == pytest.approx(rows[0]["flops"], rel=1e-4)
  assert sorted(os.listdir(tmp_path / "hlo")) == ["augment_1dev.hlo", "augment_2dev.hlo"]
