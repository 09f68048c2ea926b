"""Multi-process training (one process per accelerator) equals one process driving them all."""
import os
import re
import signal
import socket
import subprocess
import sys
import time

import jax
import numpy as np

from tests.cpu_devices import env_with_cpu_devices
from vig_jax.checkpointing import read_params

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FLAGS = ["--config=configs/tiny.py", "--config.total_steps=4", "--config.mesh.data=4",
         "--config.mesh.fsdp=2", "--config.model_kwargs.embed_dim=64"]


def free_port():
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def test_two_processes_of_four_devices_match_one_process_of_eight(tmp_path):
  one = subprocess.run([sys.executable, "train.py", *FLAGS, f"--workdir={tmp_path / 'one'}"],
                       cwd=REPO, capture_output=True, text=True,
                       env=env_with_cpu_devices(8))
  assert one.returncode == 0, one.stderr[-2000:]

  address = f"127.0.0.1:{free_port()}"
  procs = [subprocess.Popen(
      [sys.executable, "train.py", *FLAGS, f"--workdir={tmp_path / 'two'}"], cwd=REPO,
      stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
      env=env_with_cpu_devices(4, JAX_COORDINATOR_ADDRESS=address, JAX_NUM_PROCESSES="2",
                               JAX_PROCESS_ID=str(i)))
      for i in range(2)]
  outputs = [p.communicate(timeout=600)[0] for p in procs]
  for p, out in zip(procs, outputs):
    assert p.returncode == 0, out[-3000:]
  assert "mesh {'data': 4, 'fsdp': 2}" in outputs[0]
  for a, b in zip(jax.tree.leaves(read_params(tmp_path / "one", 4)),
                  jax.tree.leaves(read_params(tmp_path / "two", 4))):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=2e-5, atol=1e-7)
  # Metrics and config are written by process 0 only, once.
  assert len((tmp_path / "two" / "metrics.jsonl").read_text().splitlines()) == len(
      (tmp_path / "one" / "metrics.jsonl").read_text().splitlines())


def test_sigterm_to_one_process_stops_both_at_the_same_step(tmp_path):
  address = f"127.0.0.1:{free_port()}"
  workdir = tmp_path / "run"
  procs = [subprocess.Popen(
      [sys.executable, "train.py", "--config=configs/tiny.py", "--config.total_steps=200",
       "--config.checkpoint_every_steps=100", "--config.log_every_steps=1",
       f"--workdir={workdir}"], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
      text=True, env=env_with_cpu_devices(4, JAX_COORDINATOR_ADDRESS=address,
                                          JAX_NUM_PROCESSES="2", JAX_PROCESS_ID=str(i)))
      for i in range(2)]
  metrics = workdir / "metrics.jsonl"
  while procs[0].poll() is None and not (metrics.exists() and
                                         len(metrics.read_text().splitlines()) >= 3):
    time.sleep(0.01)
  procs[1].send_signal(signal.SIGTERM)  # not process 0: the one that writes metrics and the lock
  outputs = [p.communicate(timeout=300)[0] for p in procs]
  stopped = [re.findall(r"preempted at step (\d+): checkpoint saved", out) for out in outputs]
  for p, out in zip(procs, outputs):
    assert p.returncode == 75, out[-3000:]
  assert stopped[0] == stopped[1] and len(stopped[0]) == 1, stopped
  step = int(stopped[0][0])
  assert 3 <= step < 100
  assert sorted(int(n) for n in os.listdir(workdir / "checkpoints") if n.isdigit()) == [step]
  assert not (workdir / "lock.json").exists()
