"""Metrics to a JSONL file and TensorBoard event files (process 0 only), progress on the console."""
import json
import time

import jax
from absl import logging


def tensorboard_writer(directory):
  """tensorboard's own event writer for `directory` (no tensorflow needed), or None without it."""
  try:
    from tensorboard.summary import Writer
  except ImportError:
    logging.warning("tensorboard is not installed: no TensorBoard events, metrics.jsonl only")
    return None
  return Writer(str(directory))


class MetricWriter:
  """Writes scalars to <workdir>/metrics.jsonl and <workdir>/tensorboard; no-op off process 0.

  `workdir` is an epath (local or gs://). A context manager: closed however the run ends.
  """

  def __init__(self, workdir):
    self._active = jax.process_index() == 0
    self._jsonl = self._tb = None
    if not self._active:
      return
    self._jsonl = (workdir / "metrics.jsonl").open("a")
    self._tb = tensorboard_writer(workdir / "tensorboard")

  def write(self, step, scalars):
    if not self._active:
      return
    scalars = {k: float(v) for k, v in scalars.items()}
    self._jsonl.write(json.dumps({"step": step, **scalars}) + "\n")
    self._jsonl.flush()
    if self._tb is not None:
      for name, value in scalars.items():
        self._tb.add_scalar(name, value, step)
      self._tb.flush()

  def close(self):
    if self._jsonl:
      self._jsonl.close()
    if self._tb is not None:
      self._tb.close()
    self._jsonl = self._tb = None

  def __enter__(self):
    return self

  def __exit__(self, *exc):
    self.close()


class Progress:
  """A console line per log step: step, loss, throughput and the time left."""

  def __init__(self, total_steps, first_step):
    self._total, self._first, self._start = total_steps, first_step, time.time()

  def line(self, step, metrics):
    elapsed = time.time() - self._start
    done = max(step - self._first, 1)
    eta = elapsed / done * (self._total - step)
    parts = " ".join(f"{k} {v:.4g}" for k, v in metrics.items())
    return f"step {step}/{self._total} {parts} | eta {eta / 60:.1f} min"
