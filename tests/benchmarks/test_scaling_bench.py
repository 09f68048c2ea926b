"""The scaling benchmark on CPU devices: every layout trains the same first steps as one device."""
import json
import os
import subprocess
import sys

import pytest

from tests.cpu_devices import env_with_cpu_devices

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_scaling_bench_layouts_match_one_device(tmp_path):
  env = env_with_cpu_devices(2)
  result = subprocess.run([sys.executable, "benchmarks/scaling_bench.py", "--smoke", "--devices=2",
                           "--steps=2", "--iters=1", f"--out={tmp_path}"], cwd=REPO, env=env,
                          capture_output=True, text=True)
  assert result.returncode == 0, result.stderr[-2000:]
  with open(tmp_path / "scaling_bench.json") as f:
    rows = json.load(f)["rows"]
  assert [r["layout"] for r in rows] == ["1 device", "data=2", "data=1 fsdp=2", "2 x 1 device"]
  one, *layouts, independent = rows
  assert one["efficiency"] == 1.0 and one["global_batch"] == 2
  # The ceiling: the 1-device program on each device at once, each on its own batch.
  assert independent["devices"] == 2 and independent["global_batch"] == 4
  assert independent["losses"] is None and independent["mesh"]["num_devices"] == 1
  assert independent["img_per_s_per_device"] == pytest.approx(independent["img_per_s"] / 2)
  for r in layouts:
    assert r["devices"] == 2 and r["global_batch"] == 4
    assert r["losses"] == pytest.approx(one["losses"], rel=1e-5)
    assert r["img_per_s_per_device"] == pytest.approx(r["img_per_s"] / 2)
    assert r["memory_gib_per_device"] > 0
  table = (tmp_path / "scaling_bench.md").read_text()
  assert "| data=1 fsdp=2 | 2 | 4 |" in table and "| 2 x 1 device | 2 | 4 |" in table


def test_scaling_bench_refuses_more_devices_than_exist(tmp_path):
  env = env_with_cpu_devices(2)
  result = subprocess.run([sys.executable, "benchmarks/scaling_bench.py", "--smoke", "--devices=4",
                           f"--out={tmp_path}"], cwd=REPO, env=env, capture_output=True, text=True)
  assert result.returncode != 0
  assert result.stderr.strip().splitlines()[-1] == \
      "scaling_bench: --devices 4 but only 2 devices exist"
  assert not os.listdir(tmp_path)


def test_exposed_collective_time_is_what_no_compute_interval_covers():
  from benchmarks import scaling_bench
  compute = scaling_bench._union([(0, 10), (5, 20), (30, 40)])
  assert compute == [[0, 20], [30, 40]]
  collective = scaling_bench._union([(15, 35), (45, 50)])
  # 15..35 is covered by compute on 15..20 and 30..35: 10 exposed; 45..50 all exposed.
  assert scaling_bench._minus(collective, compute) == 15
  assert scaling_bench._minus(compute, []) == scaling_bench._length(compute) == 30


def test_cases_end_with_the_ceiling_unless_left_out():
  from benchmarks import scaling_bench
  names = ["1 device", "data=4", "data=2 fsdp=2", "data=1 fsdp=4"]
  assert [c[0] for c in scaling_bench.cases(4)] == names + ["4 x 1 device"]
  assert [c[0] for c in scaling_bench.cases(4, ceiling=False)] == names
  ceiling = scaling_bench.cases(4)[-1]
  assert ceiling[1]["num_devices"] == 1 and ceiling[2]
  assert not any(independent for _, _, independent in scaling_bench.cases(4)[:-1])
  assert scaling_bench.cases(1) == [("1 device", dict(data=1, fsdp=1, num_devices=1), False)]
