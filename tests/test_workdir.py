"""The workdir: one run at a time (lock), checked before any compute, local or in a bucket."""
import builtins
import errno
import importlib
import json
import os
import socket
import subprocess

import orbax.checkpoint as ocp
import pytest
from etils.epath import backend as epath_backend, gpath
from fsspec.implementations.memory import MemoryFileSystem

from tests.test_trainer import tiny_config
from vig_jax import metric_writers, trainer, workdir


def test_a_live_holder_is_named_and_a_dead_one_is_taken_over(tmp_path):
  holder = subprocess.Popen(["sleep", "60"])
  try:
    (tmp_path / workdir.LOCK).write_text(json.dumps(
        {"host": socket.gethostname(), "pid": holder.pid, "since": "earlier"}))
    holder_is_named = f"in use by the run of pid {holder.pid} on host {socket.gethostname()}"
    with pytest.raises(workdir.WorkdirError, match=holder_is_named):
      with workdir.lock(workdir.path(tmp_path)):
        pass
  finally:
    holder.kill()
    holder.wait()  # gone (kill -9), its lock left behind: stale
  with workdir.lock(workdir.path(tmp_path)):
    assert json.loads((tmp_path / workdir.LOCK).read_text())["pid"] == os.getpid()
  assert not (tmp_path / workdir.LOCK).exists()  # released at the end


def test_a_lock_from_another_host_is_not_taken_over(tmp_path):
  (tmp_path / workdir.LOCK).write_text(json.dumps({"host": "elsewhere", "pid": 1, "since": "x"}))
  with pytest.raises(workdir.WorkdirError, match=f"delete {tmp_path / workdir.LOCK}"):
    with workdir.lock(workdir.path(tmp_path)):
      pass


def test_a_workdir_that_is_a_file_fails_before_compute(tmp_path):
  not_a_dir = tmp_path / "file"
  not_a_dir.write_text("x")
  for run in (trainer.train_and_evaluate, trainer.evaluate):
    with pytest.raises(workdir.WorkdirError, match=f"workdir {not_a_dir} is a file"):
      run(tiny_config(), str(not_a_dir))
  assert not_a_dir.read_text() == "x"


def test_a_read_only_workdir_fails_before_compute(tmp_path, monkeypatch):
  # The tests may run as root, whom chmod does not stop: files opened for writing under tmp_path
  # are refused as on a read-only filesystem.
  real_open = builtins.open

  def read_only_open(path, mode="r", *args, **kwargs):
    if str(path).startswith(str(tmp_path)) and set(mode) & set("wax+"):
      raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(path))
    return real_open(path, mode, *args, **kwargs)

  monkeypatch.setattr(builtins, "open", read_only_open)
  monkeypatch.setattr(trainer, "init_state", lambda *a: pytest.fail("computed before the check"))
  with pytest.raises(workdir.WorkdirError, match=f"workdir {tmp_path} is not writable: Read-only"):
    trainer.train_and_evaluate(tiny_config(), str(tmp_path))
  assert os.listdir(tmp_path) == []


class _Bucket(MemoryFileSystem):
  """gs:// served from memory: a bucket that needs no network."""
  protocol = ("gs", "gcs")
  store, pseudo_dirs = {}, [""]

  @classmethod
  def _strip_protocol(cls, path):
    path = str(path)
    return super()._strip_protocol("memory://" + path.removeprefix("gs://"))


@pytest.fixture
def bucket(monkeypatch):
  """epath's gs:// through fsspec, to `_Bucket`; Orbax's tensorstore writes locally instead."""
  monkeypatch.setattr(gpath, "_is_tf_installed", lambda: False)  # else epath takes tf.io.gfile
  registry = importlib.import_module("fsspec.registry")  # the module; fsspec.registry is a view
  monkeypatch.setitem(registry._registry, "gcs", _Bucket)  # pylint: disable=protected-access
  epath_backend.fsspec_backend._get_filesystem.cache_clear()
  _Bucket.store.clear()
  yield _Bucket.store
  epath_backend.fsspec_backend._get_filesystem.cache_clear()


def test_a_gs_workdir_stays_a_url_everywhere(bucket, tmp_path, monkeypatch):
  orbax_dirs = []
  real_manager = ocp.CheckpointManager

  def local_manager(directory, **kwargs):  # tensorstore has its own gcs driver: keep it local
    orbax_dirs.append(str(directory))
    return real_manager(tmp_path / "checkpoints", **kwargs)

  monkeypatch.setattr(ocp, "CheckpointManager", local_manager)
  monkeypatch.setattr(metric_writers, "tensorboard_writer", lambda directory: None)
  results = trainer.train_and_evaluate(tiny_config(total_steps=2, log_every_steps=1),
                                       "gs://bucket/run")
  assert orbax_dirs == ["gs://bucket/run/checkpoints"]
  assert json.loads(bucket["/bucket/run/config.json"].getvalue())["total_steps"] == 2
  assert [json.loads(line)["step"] for line in
          bucket["/bucket/run/metrics.jsonl"].getvalue().decode().splitlines()] == [1, 2, 2]
  assert "/bucket/run/lock.json" not in bucket  # taken and released in the bucket
  assert not os.path.exists("gs:")  # nothing under ./gs:/bucket/run
  (gpath.PosixGPath("gs://bucket/run/checkpoints")).mkdir()  # what Orbax does in a real bucket
  evaluated = trainer.evaluate(tiny_config(total_steps=2), "gs://bucket/run")
  assert evaluated["checkpoint_step"] == 2 and evaluated["top1"] == results["top1"]
  assert json.loads(bucket["/bucket/run/eval_results.json"].getvalue()) == evaluated
