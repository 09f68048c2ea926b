"""bigla_bench's markdown table (its timings need a GPU)."""
from benchmarks import bigla_bench


def test_markdown_has_a_row_per_measurement_and_reports_skips():
  row = {"shape": (1, 2, 3, 32, 64), "dtype": "bf16", "impl": "chunked", "fwd_ms": 1.0,
         "fwd_gbps": 2.0, "fwd_x_floor": 3.0, "fwd_bwd_skipped": "out of memory"}
  lines = bigla_bench.markdown(1.5e12, [row]).splitlines()
  assert lines[0] == "HBM copy bandwidth measured: 1.50 TB/s (read + write)."
  header, rule, body = lines[2:]
  assert body == "| 1 2 3 32 64 | bf16 | chunked | 1.000 | 2 | 3.0 | skipped: out of memory |  |  |"
  assert header.count("|") == rule.count("|") == body.count("|")
