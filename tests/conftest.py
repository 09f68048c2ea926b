"""Shared test helpers: the original implementation's fixtures (copied from shared/fixtures)."""
import glob
import json
import os
import shutil
import tempfile

import numpy as np
import pytest

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures")
_JIT_CACHE = "JAX_COMPILATION_CACHE_DIR"


def pytest_configure(config):
  """One persistent compilation cache for the run, shared by the xdist workers (they inherit the
  environment) and every train.py they start: the tiny model's steps compile once, not per process.
  A fresh directory each run, so the suite's time is that of a cold start."""
  if hasattr(config, "workerinput") or os.environ.get(_JIT_CACHE):
    return  # a worker (its controller made the cache), or the user's own cache
  config.jit_cache = tempfile.mkdtemp(prefix="vig-jax-tests-jit-cache-")
  os.environ[_JIT_CACHE] = config.jit_cache
  os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"


def pytest_unconfigure(config):
  if getattr(config, "jit_cache", None):
    shutil.rmtree(config.jit_cache, ignore_errors=True)
    del os.environ[_JIT_CACHE], os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"]


def load_fixture(name):
  """All arrays of fixture `name` (its .npz, or its shards name.shard*.npz, merged)."""
  paths = sorted(glob.glob(os.path.join(FIXTURES, f"{name}.npz")) +
                 glob.glob(os.path.join(FIXTURES, f"{name}.shard*.npz")))
  assert paths, f"no fixture {name} in {FIXTURES}"
  arrays = {}
  for path in paths:
    with np.load(path) as data:
      arrays.update({k: data[k] for k in data.files})
  return arrays


def fixture_meta():
  with open(os.path.join(FIXTURES, "fixtures_meta.json")) as f:
    return json.load(f)


def state_dict_of(arrays):
  return {k.removeprefix("sd/"): v for k, v in arrays.items() if k.startswith("sd/")}


@pytest.fixture(scope="session")
def official_state_dicts():
  with open(os.path.join(FIXTURES, "official_state_dicts.json")) as f:
    return json.load(f)
