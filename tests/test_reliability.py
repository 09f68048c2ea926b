"""Reliability drills: kill -9, SIGTERM, non-finite steps and bad inputs lose nothing."""
import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import re
import time

import jax
import numpy as np
import pytest

from tests.cpu_devices import env_with_cpu_devices
from tests.test_trainer import tiny_config
from vig_jax import trainer
from vig_jax.checkpointing import read_params

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENV = env_with_cpu_devices(8, PYTHONUNBUFFERED="1")


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
  """2 SIGKILLs, one at a random step and one during an async checkpoint write (the drill's two
  kinds): exact resume, bit-identical result."""
  result = subprocess.run([sys.executable, "scripts/kill_drill.py", "--kills=2",
                           f"--workdir={tmp_path / 'drill'}"], cwd=REPO, capture_output=True,
                          text=True, env=ENV)
  summary = json.loads(result.stdout.strip().splitlines()[-1])
  assert result.returncode == 0, summary["failures"]
  assert summary["kills"] == 2 and summary["bit_identical"] and not summary["failures"]
  assert summary["kills_during_checkpoint_write"] >= 1, result.stdout
  # The loss bound: the save interval, plus steps taken while the newest write was in flight.
  assert summary["max_steps_lost"] <= 2 * summary["save_interval"]


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_stop_signal_saves_the_current_step_and_exits_75(tmp_path, signum):
  # SIGTERM: then resumed to the end; SIGINT: meanwhile a second run is started (slow), no resume.
  total, interval = (60, 50) if signum == signal.SIGTERM else (5000, 2500)
  flags = (f"--config.total_steps={total}", f"--config.checkpoint_every_steps={interval}",
           "--config.log_every_steps=1")
  log = tmp_path.parent / f"{tmp_path.name}.log"  # a file: the run never blocks on a full pipe
  with open(log, "w") as f:
    proc = subprocess.Popen(train_py(tmp_path, *flags), cwd=REPO, env=ENV, stdout=f,
                            stderr=subprocess.STDOUT)
  metrics = tmp_path / "metrics.jsonl"
  while proc.poll() is None and not (metrics.exists() and len(metrics.read_text().splitlines()) >= 3):
    time.sleep(0.01)
  if signum == signal.SIGINT:  # a second run on the workdir is refused
    second = subprocess.run(train_py(tmp_path, *flags), cwd=REPO, env=ENV, capture_output=True,
                            text=True)
    assert second.returncode == 1
    assert (f"is in use by the run of pid {proc.pid} on host {socket.gethostname()}" in
            second.stderr.strip().splitlines()[-1]), second.stderr[-1500:]
  proc.send_signal(signum)
  proc.wait(timeout=120)
  out = log.read_text()
  assert proc.returncode == 75, out[-2000:]  # train.py's EXIT_PREEMPTED: a scheduler requeues
  saved = sorted(int(n) for n in os.listdir(tmp_path / "checkpoints") if n.isdigit())
  assert len(saved) == 1 and 3 <= saved[0] < interval, saved  # the current step, not an interval
  assert f"preempted at step {saved[0]}: checkpoint saved" in out
  if signum == signal.SIGTERM:
    rerun = subprocess.run(train_py(tmp_path, *flags), cwd=REPO, env=ENV, capture_output=True,
                           text=True)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert f"resumed from checkpoint step {saved[0]}" in rerun.stderr
    assert total in [int(n) for n in os.listdir(tmp_path / "checkpoints") if n.isdigit()]


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


def test_nonfinite_before_any_checkpoint_says_so_and_closes_the_writer(tmp_path, monkeypatch):
  monkeypatch.setattr(trainer, "train_iterator", poisoned(1))
  closed = []
  real_close = trainer.MetricWriter.close
  monkeypatch.setattr(trainer.MetricWriter, "close", lambda self: closed.append(real_close(self)))
  config = tiny_config(total_steps=4, log_every_steps=2)
  with pytest.raises(trainer.NonFiniteError, match=r"at step 1; no checkpoint was written yet;"):
    trainer.train_and_evaluate(config, str(tmp_path))
  assert closed  # the metric writer is closed when the loop raises
  assert not (tmp_path / "lock.json").exists()  # and the workdir released


def test_second_ctrl_c_stops_at_once():
  before = signal.getsignal(signal.SIGINT)  # not always Python's default (xdist workers)
  with trainer._StopRequest() as stop:  # pylint: disable=protected-access
    assert not stop.requested(1)
    os.kill(os.getpid(), signal.SIGINT)
    assert stop.requested(2)  # the first asks to save and stop
    with pytest.raises(KeyboardInterrupt):
      os.kill(os.getpid(), signal.SIGINT)
  assert signal.getsignal(signal.SIGINT) is before


CONFIG_ERRORS = [  # (overrides, words of the error)
    ({"batch_size": 0}, "batch_size must be > 0, got 0"),
    ({"batch_size": -8}, "batch_size must be > 0, got -8"),
    ({"image_size": 0}, "image_size must be > 0, got 0"),
    ({"eval_batch_size": 0}, "eval_batch_size must be > 0"),
    ({"grad_accum_steps": 0}, "grad_accum_steps must be > 0"),
    ({"checkpoint_every_steps": 0}, "checkpoint_every_steps must be > 0"),
    ({"total_steps": 0, "num_epochs": 0}, "nothing to train: total_steps=0, num_epochs=0"),
    ({"total_steps": -1}, "total_steps must be a finite number >= 0, got -1"),
    ({"base_lr": float("nan")}, "base_lr must be a finite number >= 0, got nan"),
    ({"base_lr": float("inf")}, "base_lr must be a finite number >= 0, got inf"),
    ({"base_lr": -1e-3}, "base_lr must be a finite number >= 0, got -0.001"),
    ({"ema_decay": 1.5}, "ema_decay must be in [0, 1), got 1.5"),
]


@pytest.mark.parametrize("overrides,message", CONFIG_ERRORS, ids=lambda x: str(x)[:40])
def test_config_values_fail_before_anything_is_written(tmp_path, monkeypatch, overrides, message):
  monkeypatch.setattr(trainer, "init_state", lambda *a: pytest.fail("computed before the check"))
  with pytest.raises(trainer.ConfigError, match=re.escape(message)):
    trainer.train_and_evaluate(tiny_config(**overrides), str(tmp_path / "w"))
  assert not (tmp_path / "w").exists()


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


ALLOW = "--config.allow_config_change=True"
BAD_INPUTS = [  # (flags, words the one-line error must contain)
    (["--config.model=vig_xl"], "unknown model 'vig_xl'"),
    (["--config.not_a_key=1"], "the config has no field 'not_a_key' (--config.not_a_key=1)"),
    (["--config.batch_size=eight"], "--config.batch_size=eight: invalid literal for int()"),
    (["--config.init_from=/nonexistent"], "/nonexistent is not a converted checkpoint"),
    (["--config.batch_size=12"], "batch_size 12 must be divisible by the 8 devices"),
    (["--config.image_size=36"], "image_size 36 is not a multiple of vig_t's token stride 8"),
    # The checkpoint's own checks, behind the config.json comparison (allow_config_change).
    (["--config.input.num_classes=7", ALLOW], "num_classes: checkpoint 10 vs config 7"),
    (["--config.model_kwargs.embed_dim=64", ALLOW], "is for another model"),
    (["--config.input.source=nope"], "Unknown data source 'nope'"),
    (["--config.batch_size=0"], "batch_size must be > 0, got 0"),
    (["--config.image_size=64", ALLOW], "does not fit the config (['pos_embed']: checkpoint ("),
    (["--config.total_steps=2", "--config.grad_accum_steps=2"],
     "holds a run with grad_accum_steps=1; this config has grad_accum_steps=2. Use a new"),
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


def test_config_file_argument_error_is_one_line(tmp_path):
  result = subprocess.run([sys.executable, "train.py", "--config=configs/finetune.py",
                           f"--workdir={tmp_path / 'w'}"], cwd=REPO, env=ENV, capture_output=True,
                          text=True)
  assert result.returncode != 0
  assert result.stderr.strip().splitlines() == [
      "train.py: error: flag --config=configs/finetune.py: Error whilst parsing config file: "
      "ValueError: configs/finetune.py: folder=<image folder> is required, e.g. "
      "configs/finetune.py:model=vig_s,folder=/data/pets,res=384"]
  assert not (tmp_path / "w").exists()


@pytest.fixture(scope="module")
def two_checkpoints(tmp_path_factory):
  """A tiny run's workdir with checkpoints 4 and 8, and its step-8 params."""
  workdir = tmp_path_factory.mktemp("two_checkpoints")
  trainer.train_and_evaluate(tiny_config(total_steps=8, checkpoint_every_steps=4), str(workdir))
  return workdir, read_params(workdir, 8)


def damage(step_dir, what):
  if what == "data file":  # the largest array chunk file of the OCDBT store
    data = step_dir / "state" / "ocdbt.process_0" / "d"
    max(data.iterdir(), key=lambda p: p.stat().st_size).unlink()
  else:
    (step_dir / "state" / "_METADATA").unlink()


@pytest.mark.parametrize("what", ["data file", "_METADATA"])
def test_damaged_newest_checkpoint_is_skipped_and_kept(two_checkpoints, tmp_path, caplog, what):
  source, params_at_8 = two_checkpoints
  workdir = tmp_path / "w"
  shutil.copytree(source, workdir)
  damage(workdir / "checkpoints" / "8", what)
  damaged = snapshot(workdir / "checkpoints" / "8")
  config = tiny_config(total_steps=8, checkpoint_every_steps=4)
  assert trainer.evaluate(config, str(workdir))["checkpoint_step"] == 4  # eval: skipped in place
  assert snapshot(workdir / "checkpoints" / "8") == damaged
  trainer.train_and_evaluate(config, str(workdir))  # training: moved aside, then written again
  warned = [r.getMessage() for r in caplog.records if "cannot be restored" in r.getMessage()]
  assert warned and all("checkpoint step 8 in " in w for w in warned), warned
  assert snapshot(workdir / "checkpoints.damaged" / "8") == damaged  # nothing deleted
  for a, b in zip(jax.tree.leaves(read_params(workdir, 8)), jax.tree.leaves(params_at_8)):
    np.testing.assert_array_equal(a, b)  # resumed from 4, exactly as the first time


def test_no_restorable_checkpoint_is_one_line_error(two_checkpoints, tmp_path):
  workdir = tmp_path / "w"
  shutil.copytree(two_checkpoints[0], workdir)
  damage(workdir / "checkpoints" / "8", "data file")
  damage(workdir / "checkpoints" / "4", "_METADATA")
  before = snapshot(workdir)
  every_step_named = r"no checkpoint in .* can be restored \(step 8: .*; step 4: .*\)"
  with pytest.raises(trainer.ConfigError, match=every_step_named) as error:
    trainer.train_and_evaluate(tiny_config(total_steps=8, checkpoint_every_steps=4), str(workdir))
  assert "\n" not in str(error.value)
  assert snapshot(workdir) == before


def test_eval_results_are_returned_when_they_cannot_be_written(two_checkpoints, tmp_path, caplog):
  workdir = tmp_path / "w"
  shutil.copytree(two_checkpoints[0], workdir)
  (workdir / "eval_results.json").mkdir()  # unwritable, even for root
  results = trainer.evaluate(tiny_config(), str(workdir))
  assert results["checkpoint_step"] == 8 and results["num_examples"] == 40
  assert any("could not write" in r.getMessage() for r in caplog.records)
