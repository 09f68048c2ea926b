"""The torch-free .pth reader gives what torch.load gives, and never runs or imports code."""
import pickle

import numpy as np
import pytest

from vig_jax import weight_files

torch = pytest.importorskip("torch")  # in requirements.txt: writes the files under test


def test_tensors_match_torch(tmp_path):
  base = torch.randn(4, 6)
  tensors = {"plain": torch.randn(3, 5), "transposed": base.t(), "slice": base[1:, 2:5],
             "shared": base[2], "half": torch.randn(2, 3).half(),
             "bf16": torch.randn(3).bfloat16(), "double": torch.randn(2).double(),
             "param": torch.nn.Parameter(torch.randn(2, 2)), "scalar": torch.tensor(1.5),
             "conv": torch.randn(8, 1, 3, 3)}
  torch.save({"model": tensors}, tmp_path / "w.pth")
  read = weight_files.load_pth(str(tmp_path / "w.pth"))["model"]
  for name, tensor in tensors.items():
    expected = tensor.detach().float().numpy() if name == "bf16" else tensor.detach().numpy()
    np.testing.assert_array_equal(read[name].astype(expected.dtype), expected, err_msg=name)
    assert read[name].dtype == ("bfloat16" if name == "bf16" else expected.dtype), name


def test_out_of_storage_views_are_refused():
  """A crafted pickle cannot make the reader read past a storage (as_strided does not check)."""
  storage = np.zeros(4, np.float32)
  with pytest.raises(ValueError, match="lies outside its storage of 4 elements"):
    weight_files._rebuild_tensor(storage, 2, (3,), (1,))
  with pytest.raises(ValueError, match="lies outside"):
    weight_files._rebuild_tensor(storage, 0, (2,), (-1,))


def test_unknown_globals_are_never_imported(tmp_path):
  class Callback:  # stands for any class: its module is never imported, its code never run
    def __reduce__(self):
      return (pickle.loads, ("never called",))

  torch.save({"model": {"w": torch.ones(2)}, "hook": Callback()}, tmp_path / "w.pth")
  read = weight_files.load_pth(str(tmp_path / "w.pth"))
  assert isinstance(read["hook"], weight_files.Opaque) and read["hook"].args == ("never called",)
  assert repr(read["hook"]) == "<pickle.loads>"
