"""Reliability drills: kill -9, SIGTERM, non-finite steps and bad inputs lose nothing."""
import hashlib
import json
import os
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from tests.test_trainer import tiny_config
from vig_jax import trainer

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENV = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=8", "PYTHONUNBUFFERED": "1"}


def train_py(workdir, *flags):
  return [sys.executable, "train.py", "--config=configs/tiny.py", f"--workdir={workdir}", *flags]


def snapshot(directory):
  """Every file under `directory` with a hash of its bytes."""
  out = {}
  for root, _, files in os.walk(directory):
    for name in files:
      path = os.path.join(root, name)
      with open(path, "rb") as f:
        out[os.path.relpath(path, directory)] = hashlib.sha256(f.read()).hexdigest()
  return out


def test_kill_drill_short(tmp_path):
  """3 SIGKILLs (some during async checkpoint writes): exact resume, bit-identical result."""
  result = subprocess.run([sys.executable, "scripts/kill_drill.py", "--kills=3",
                           f"--workdir={tmp_path / 'drill'}"], cwd=REPO, capture_output=True,
                          text=True, env=ENV)
  summary = json.loads(result.stdout.strip().splitlines()[-1])
  assert result.returncode == 0, summary["failures"]
  assert summary["kills"] == 3 and summary["bit_identical"] and not summary["failures"]
  # The loss bound: the save interval, plus steps taken while the newest write was in flight.
  assert summary["max_steps_lost"] <= 2 * summary["save_interval"]


def test_sigterm_saves_the_current_step_and_exits_zero(tmp_path):
  flags = ("--config.total_steps=60", "--config.checkpoint_every_steps=50",
           "--config.log_every_steps=1")
  proc = subprocess.Popen(train_py(tmp_path, *flags), cwd=REPO, env=ENV, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True)
  metrics = tmp_path / "metrics.jsonl"
  while proc.poll() is None and not (metrics.exists() and len(metrics.read_text().splitlines()) >= 3):
    time.sleep(0.01)
  proc.send_signal(signal.SIGTERM)
  out, _ = proc.communicate(timeout=120)
  assert proc.returncode == 0, out[-2000:]
  saved = sorted(int(n) for n in os.listdir(tmp_path / "checkpoints") if n.isdigit())
  assert len(saved) == 1 and 3 <= saved[0] < 50, saved  # the current step, not an interval step
  assert f"preempted at step {saved[0]}: checkpoint saved" in out
  rerun = subprocess.run(train_py(tmp_path, *flags), cwd=REPO, env=ENV, capture_output=True,
                         text=True)
  assert rerun.returncode == 0, rerun.stderr[-2000:]
  assert f"resumed from checkpoint step {saved[0]}" in rerun.stderr
  assert 60 in [int(n) for n in os.listdir(tmp_path / "checkpoints") if n.isdigit()]


def poisoned(step_to_poison):
  """A train_iterator whose batch for `step_to_poison` (1-based) holds a NaN image."""
  real = trainer.train_iterator

  def iterator(**kwargs):
    for step, batch in enumerate(real(**kwargs), start=kwargs["start_step"] + 1):
      if step == step_to_poison:
        batch = {**batch, "image": np.full(batch["image"].shape, np.nan, np.float32)}
      yield batch

  return iterator


def test_nonfinite_step_stops_the_run_and_keeps_the_good_checkpoint(tmp_path, monkeypatch):
  monkeypatch.setattr(trainer, "train_iterator", poisoned(6))
  config = tiny_config(total_steps=8, checkpoint_every_steps=4, log_every_steps=2)
  with pytest.raises(trainer.NonFiniteError, match=r"at step 6; the last good checkpoint \(step 4\)"):
    trainer.train_and_evaluate(config, str(tmp_path))
  assert sorted(n for n in os.listdir(tmp_path / "checkpoints") if n.isdigit()) == ["4"]
  from tests.test_trainer import params_of
  state = params_of(str(tmp_path), config)
  assert int(state.step) == 4
  assert all(np.all(np.isfinite(x)) for x in jax.tree.leaves(state.params))


def test_nonfinite_step_is_skipped_when_asked(tmp_path, monkeypatch):
  monkeypatch.setattr(trainer, "train_iterator", poisoned(3))
  config = tiny_config(total_steps=6, checkpoint_every_steps=6, on_nonfinite="skip")
  trainer.train_and_evaluate(config, str(tmp_path))
  from tests.test_trainer import params_of
  state = params_of(str(tmp_path), config)
  assert int(state.step) == 6 and int(state.skipped_steps) == 1
  assert all(np.all(np.isfinite(x)) for x in jax.tree.leaves(state.params))


@pytest.fixture(scope="module")
def trained_workdir(tmp_path_factory):
  """A workdir holding a finished tiny run (10 classes, embed_dim 32)."""
  workdir = tmp_path_factory.mktemp("trained")
  result = subprocess.run(train_py(workdir, "--config.total_steps=2"), cwd=REPO, env=ENV,
                          capture_output=True, text=True)
  assert result.returncode == 0, result.stderr[-2000:]
  return workdir


BAD_INPUTS = [  # (flags, words the one-line error must contain)
    (["--config.model=vig_xl"], "unknown model 'vig_xl'"),
    (["--config.not_a_key=1"], "the config has no field 'not_a_key' (--config.not_a_key=1)"),
    (["--config.batch_size=eight"], "--config.batch_size=eight: invalid literal for int()"),
    (["--config.init_from=/nonexistent"], "/nonexistent is not a converted checkpoint"),
    (["--config.batch_size=12"], "batch_size 12 must be divisible by the 8 devices"),
    (["--config.image_size=36"], "image_size 36 is not a multiple of vig_t's token stride 8"),
    (["--config.input.num_classes=7"], "num_classes: checkpoint 10 vs config 7"),
    (["--config.model_kwargs.embed_dim=64"], "is for another model"),
    (["--config.input.source=nope"], "Unknown data source 'nope'"),
]


@pytest.mark.parametrize("flags,message", BAD_INPUTS, ids=lambda x: str(x)[:40])
def test_bad_input_is_one_line_error_and_nothing_is_overwritten(trained_workdir, flags, message):
  before = snapshot(trained_workdir)
  result = subprocess.run(train_py(trained_workdir, *flags), cwd=REPO, env=ENV,
                          capture_output=True, text=True)
  assert result.returncode != 0
  last = result.stderr.strip().splitlines()[-1]
  assert message in last, result.stderr[-1500:]
  assert snapshot(trained_workdir) == before


def test_missing_dataset_and_empty_folder(tmp_path):
  empty = tmp_path / "empty_folder"
  empty.mkdir()
  cases = [(["--config.input.source=tfds", "--config.input.name=imagenet2012",
             f"--config.input.data_dir={tmp_path / 'tfds'}"], "--file_format=array_record"),
           (["--config.input.source=folder", f"--config.input.folder={empty}"], str(empty))]
  for flags, message in cases:
    workdir = tmp_path / "w"
    result = subprocess.run(
        [sys.executable, "train.py", "--config=configs/imagenet.py:vig_t", f"--workdir={workdir}",
         *flags], cwd=REPO, env=ENV, capture_output=True, text=True)
    last = result.stderr.strip().splitlines()[-1]
    assert result.returncode != 0 and last.startswith("train.py: error: input:"), result.stderr[-1500:]
    assert message in last
    assert not workdir.exists()  # nothing was created before the error
