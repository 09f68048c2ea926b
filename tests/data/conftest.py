"""Shared fixtures."""
import pytest

from vig_jax.data import digits
from vig_jax.data.tf_cpu import tfds


@pytest.fixture(scope="session")
def digits_dir(tmp_path_factory):
  """A data_dir holding the prepared vig_digits dataset."""
  data_dir = str(tmp_path_factory.mktemp("tfds"))
  tfds.builder(digits.VigDigits.name, data_dir=data_dir).download_and_prepare()
  return data_dir
