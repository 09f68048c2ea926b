"""Multi-process training (one process per accelerator) equals one process driving them all."""
import os
import socket
import subprocess
import sys

import jax
import numpy as np

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
                       env={**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=8"})
  assert one.returncode == 0, one.stderr[-2000:]

  address = f"127.0.0.1:{free_port()}"
  procs = [subprocess.Popen(
      [sys.executable, "train.py", *FLAGS, f"--workdir={tmp_path / 'two'}"], cwd=REPO,
      stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
      env={**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=4",
           "JAX_COORDINATOR_ADDRESS": address, "JAX_NUM_PROCESSES": "2", "JAX_PROCESS_ID": str(i)})
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
