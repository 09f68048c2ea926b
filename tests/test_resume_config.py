"""Resuming a workdir: a changed training trajectory is a one-line error, operational changes are
free, allow_config_change resumes and keeps the earlier config."""
import json
import logging
import shutil
import subprocess

import jax
import numpy as np
import pytest

from tests.test_reliability import ENV, REPO, snapshot, train_py
from tests.test_trainer import tiny_config
from vig_jax import run_config, trainer
from vig_jax.checkpointing import read_params

HINT = "Use a new --workdir, or pass --config.allow_config_change=True to resume anyway."


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
  """A tiny run's workdir (batch_size 16) with checkpoints 4 and 8, and its step-8 params."""
  workdir = tmp_path_factory.mktemp("finished")
  trainer.train_and_evaluate(tiny_config(total_steps=8, checkpoint_every_steps=4), str(workdir))
  return workdir, read_params(workdir, 8)


@pytest.fixture
def half_done(finished, tmp_path):
  """The finished run as if stopped after its step-4 checkpoint: a resume trains steps 5..8."""
  workdir = tmp_path / "w"
  shutil.copytree(finished[0], workdir)
  shutil.rmtree(workdir / "checkpoints" / "8")
  return workdir


def no_compute(monkeypatch):
  for name in ("init_state", "jit_train_step"):
    monkeypatch.setattr(trainer, name, lambda *a: pytest.fail("computed before the check"))


def test_changed_trajectory_is_one_line_error_and_nothing_changes(half_done, monkeypatch):
  before = snapshot(half_done)
  no_compute(monkeypatch)
  config = tiny_config(total_steps=8, checkpoint_every_steps=4, batch_size=8, base_lr=2e-3,
                       **{"input.erase_prob": 0.5, "log_every_steps": 1})  # the last one is free
  with pytest.raises(trainer.ConfigError) as error:
    trainer.train_and_evaluate(config, str(half_done))
  assert str(error.value) == (
      f"{half_done} holds a run with input.erase_prob=0.0, batch_size=16, base_lr=0.001; this "
      f"config has input.erase_prob=0.5, batch_size=8, base_lr=0.002. {HINT}")
  assert snapshot(half_done) == before


def test_train_py_exits_1_with_the_one_line(finished):
  before = snapshot(finished[0])
  result = subprocess.run(train_py(finished[0], "--config.batch_size=8"), cwd=REPO, env=ENV,
                          capture_output=True, text=True)
  assert result.returncode == 1
  assert result.stderr.strip().splitlines()[-1] == (
      f"train.py: error: {finished[0]} holds a run with batch_size=16; this config has "
      f"batch_size=8. {HINT}")
  assert snapshot(finished[0]) == before


def test_operational_changes_resume_exactly(finished, half_done):
  config = tiny_config(total_steps=8, checkpoint_every_steps=2, log_every_steps=1,
                       keep_checkpoints=5, eval_batch_size=8, eval_every_steps=3)
  trainer.train_and_evaluate(config, str(half_done))
  for a, b in zip(jax.tree.leaves(read_params(half_done, 8)), jax.tree.leaves(finished[1])):
    np.testing.assert_array_equal(a, b)  # the same trajectory
  assert json.loads((half_done / "config.json").read_text())["log_every_steps"] == 1
  assert not list(half_done.glob("config.*.json"))  # nothing of the trajectory changed


def test_allow_config_change_resumes_and_keeps_the_earlier_config(half_done, caplog):
  first = (half_done / "config.json").read_text()
  config = tiny_config(total_steps=8, checkpoint_every_steps=4, batch_size=8,
                       allow_config_change=True)
  with caplog.at_level(logging.WARNING):
    trainer.train_and_evaluate(config, str(half_done))
  assert any("holds a run with batch_size=16; this config has batch_size=8" in r.getMessage()
             for r in caplog.records)
  assert json.loads((half_done / "config.json").read_text())["batch_size"] == 8
  assert (half_done / "config.4.json").read_text() == first  # what trained steps 1..4
  # Resumed from step 4 again with yet another config: config.4.json still names steps 1..4's.
  shutil.rmtree(half_done / "checkpoints" / "8")
  trainer.train_and_evaluate(tiny_config(total_steps=8, checkpoint_every_steps=4, batch_size=32,
                                         allow_config_change=True), str(half_done))
  assert json.loads((half_done / "config.json").read_text())["batch_size"] == 32
  assert (half_done / "config.4.json").read_text() == first
  assert sorted(p.name for p in half_done.glob("config*.json")) == ["config.4.json", "config.json"]


def test_config_json_of_an_older_version_is_compared_on_the_fields_it_has(half_done):
  """Fields it lacks (added since) are not compared, except optional model arguments."""
  stored = json.loads((half_done / "config.json").read_text())
  for name in ("label_smoothing", "allow_config_change"):
    del stored[name]
  del stored["input"]["hflip"]
  (half_done / "config.json").write_text(json.dumps(stored))
  config = tiny_config(total_steps=8, checkpoint_every_steps=4, label_smoothing=0.2)
  run_config.check_resume(config, half_done)  # resumes
  del stored["model_kwargs"]["drop_path_rate"]
  (half_done / "config.json").write_text(json.dumps(stored))
  with pytest.raises(run_config.ConfigChangeError, match=(
      r"holds a run with model_kwargs.drop_path_rate unset; this config has "
      r"model_kwargs.drop_path_rate=0.1\. Use")):
    run_config.check_resume(config, half_done)


def test_model_kwargs_set_on_one_side_only_is_a_change():
  stored = {"model": "vig_s", "model_kwargs": {"depth": 4}, "log_every_steps": 10}
  current = {"model": "vig_s", "model_kwargs": {"drop_path_rate": 0.1}, "log_every_steps": 1,
             "new_field": 3}
  changes = run_config.differences(stored, current)
  assert list(changes) == ["model_kwargs.drop_path_rate", "model_kwargs.depth"]
  assert changes["model_kwargs.depth"] == (4, run_config.UNSET)
  assert changes["model_kwargs.drop_path_rate"] == (run_config.UNSET, 0.1)


def test_fresh_workdir_and_eval_are_not_checked(finished, half_done, tmp_path):
  # A workdir with a config.json but no checkpoint (a run that failed early): a fresh start.
  workdir = tmp_path / "fresh"
  workdir.mkdir()
  shutil.copy(finished[0] / "config.json", workdir / "config.json")
  config = tiny_config(total_steps=2, batch_size=8)
  run_config.check_resume(config, workdir)
  run_config.write(config, workdir, 0)  # as the trainer does when it starts at step 0
  assert json.loads((workdir / "config.json").read_text())["batch_size"] == 8
  assert not list(workdir.glob("config.*.json"))
  # --mode=eval reads the checkpoint with whatever training settings.
  results = trainer.evaluate(tiny_config(batch_size=8, base_lr=1.0), str(half_done))
  assert results["checkpoint_step"] == 4
