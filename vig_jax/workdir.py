"""The workdir: a local or cloud path (etils epath: gs://, s3://), checked and locked before a run.

One run at a time: process 0 holds <workdir>/lock.json (host, pid) for the whole run. A lock whose
process is gone (same host, pid not running: a run killed with kill -9) is stale and taken over;
a lock held from another host is never taken over automatically (its process cannot be seen from
here): the error says which file to delete once that run is known to be gone.
"""
import contextlib
import json
import os
import socket
import time

import jax
import numpy as np
from absl import logging
from etils import epath
from jax.experimental import multihost_utils

LOCK = "lock.json"


class WorkdirError(ValueError):
  """The workdir cannot be used (a file, not writable, held by another run)."""


def path(workdir):
  """`workdir` as an epath: URLs (gs://...) kept as they are, local paths made absolute."""
  workdir = os.fspath(workdir)
  return epath.Path(workdir if "://" in workdir else os.path.abspath(workdir))


def check_not_a_file(directory):
  if directory.exists() and not directory.is_dir():
    raise WorkdirError(f"workdir {directory} is a file, not a directory")


def _alive(pid):
  """Whether process `pid` of this host runs (an unreadable pid counts as running)."""
  if not isinstance(pid, int) or pid <= 0:
    return True
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  except PermissionError:  # another user's process
    pass
  return True


def _create(lock, text):
  """Creates `lock` holding `text`, whole; FileExistsError if it exists (atomic when local)."""
  if "://" in os.fspath(lock):  # object stores have no exclusive create: check, then write
    if lock.exists():
      raise FileExistsError(lock)
    lock.write_text(text)
    return
  staged = lock.with_name(f"{lock.name}.{os.getpid()}")
  staged.write_text(text)
  try:
    os.link(staged, lock)  # fails if `lock` exists; never leaves a half-written one
  finally:
    staged.unlink()


def _take(directory):
  """Takes the lock of `directory` (created if missing) for this process; returns the lock path."""
  check_not_a_file(directory)
  lock = directory / LOCK
  me = {"host": socket.gethostname(), "pid": os.getpid(),
        "since": time.strftime("%Y-%m-%d %H:%M:%S")}
  try:
    directory.mkdir(parents=True, exist_ok=True)
    for _ in range(2):  # the second try follows the removal of a stale lock
      try:
        _create(lock, json.dumps(me))
        return lock
      except FileExistsError:
        try:
          holder = json.loads(lock.read_text())
        except (OSError, ValueError):  # unreadable: another run is writing it right now
          holder = {}
        pid = holder.get("pid")
        # A dead holder's pid may since have been given to this very process.
        if holder.get("host") != me["host"] or (pid != me["pid"] and _alive(pid)):
          raise WorkdirError(
              f"workdir {directory} is in use by the run of pid {pid} on host "
              f"{holder.get('host', '?')} (since {holder.get('since', '?')}); if that run is gone, "
              f"delete {lock}") from None
        logging.warning("taking over the stale lock of pid %s on %s (that process is gone)",
                        holder.get("pid"), holder.get("host"))
        lock.unlink(missing_ok=True)
    raise WorkdirError(f"workdir {directory}: another run took {lock} at the same moment")
  except OSError as e:  # read-only filesystem, no permission, ...
    raise WorkdirError(f"workdir {directory} is not writable: {e.strerror or e}") from None


@contextlib.contextmanager
def lock(directory):
  """Holds `directory` for this run (process 0 takes the lock; every process learns if it failed).

  Checks first that it is a directory (or absent) and writable; all before any compute.
  """
  error, held = None, None
  if jax.process_index() == 0:
    try:
      held = _take(directory)
    except WorkdirError as e:
      error = e
  if jax.process_count() > 1:
    failed = multihost_utils.broadcast_one_to_all(np.int32(error is not None))
    if failed and error is None:
      error = WorkdirError(f"process 0 could not take workdir {directory} (see its log)")
  if error is not None:
    raise error
  try:
    yield
  finally:
    if held is not None:
      held.unlink(missing_ok=True)
