"""Shared test helpers: the original implementation's fixtures (copied from shared/fixtures)."""
import glob
import json
import os

import numpy as np
import pytest

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures")


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
