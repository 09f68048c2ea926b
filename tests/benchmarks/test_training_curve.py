"""benchmarks/training_curve.py: minutes summed from logged step times, one point per evaluation."""
from benchmarks import training_curve


def test_curve_sums_step_times_and_keeps_evaluations():
  rows = [{"step": 10, "step_time": 6.0}, {"step": 20, "step_time": 3.0},
          {"step": 20, "eval_top1": 0.5}, {"step": 30, "step_time": 1.2},
          {"step": 30, "eval_top1": 0.75, "eval_ema_top1": 0.7}]
  assert training_curve.curve(rows) == [(20, 1.5, 0.5, None), (30, 1.7, 0.75, 0.7)]
