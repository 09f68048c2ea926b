"""Shared fixtures."""
import pytest

from .images import tiny_tfds


@pytest.fixture(scope="session")
def tfds_dir(tmp_path_factory):
  """A data_dir holding `vig_test_images` in ArrayRecord format (10 train, 4 validation)."""
  data_dir = str(tmp_path_factory.mktemp("tfds"))
  tiny_tfds(data_dir)
  return data_dir
