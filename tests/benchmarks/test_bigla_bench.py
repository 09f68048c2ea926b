"""bigla_bench's rows per pallas_gpu k-blocks and its argument check (its timings need a GPU)."""
import sys

import pytest

from benchmarks import bigla_bench


def test_pallas_gpu_is_timed_once_per_k_blocks():
  assert bigla_bench.variants(["pallas_gpu", "chunked"], [1, 2]) == [
      ("pallas_gpu", 1), ("pallas_gpu", 2), ("chunked", None)]
  row = {"shape": (1, 2, 3, 32, 64), "dtype": "bf16", "fwd_ms": 1.0, "fwd_gbps": 2.0,
         "fwd_x_floor": 3.0, "fwd_bwd_skipped": "out of memory"}
  table = bigla_bench.markdown(1e12, [{**row, "impl": "pallas_gpu", "k_blocks": 2},
                                      {**row, "impl": "chunked", "k_blocks": None}])
  assert "| 1 2 3 32 64 | bf16 | pallas_gpu | 2 | 1.000 |" in table
  assert "| 1 2 3 32 64 | bf16 | chunked | – | 1.000 |" in table


def test_k_blocks_that_do_not_split_dk_are_refused_before_any_work(monkeypatch, capsys, tmp_path):
  monkeypatch.setattr(sys, "argv", ["bigla_bench.py", "--impls", "pallas_gpu", "--k-blocks", "1",
                                    "4", f"--out={tmp_path}"])
  with pytest.raises(SystemExit) as exit_info:
    bigla_bench.main()
  assert exit_info.value.code == 2
  assert "k_blocks=4 must split dk=32" in capsys.readouterr().err.splitlines()[-1]
  assert not list(tmp_path.iterdir())
