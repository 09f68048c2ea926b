"""Training, evaluation and every source's read path run with tensorflow uninstallable."""
import pathlib
import subprocess
import sys

import numpy as np

from .images import encode

REPO = pathlib.Path(__file__).parents[2]

# Every import finder answers "not installed" for tensorflow, as on a machine without it (a None
# in sys.modules would not do: tfds reads a present sys.modules entry as "tensorflow is loaded").
HIDE_TENSORFLOW = """
import atexit, sys

class _WithoutTensorflow:
  def __init__(self, finder):
    self._finder = finder

  def find_spec(self, name, path=None, target=None):
    if name.partition(".")[0] == "tensorflow":
      return None
    return self._finder.find_spec(name, path, target)

  def __getattr__(self, name):
    return getattr(self._finder, name)

sys.meta_path[:] = [_WithoutTensorflow(f) for f in sys.meta_path]
atexit.register(lambda: print("tensorflow imported:", "tensorflow" in sys.modules))
"""


def _run(code):
  return subprocess.run([sys.executable, "-c", HIDE_TENSORFLOW + code], cwd=REPO,
                        capture_output=True, text=True, check=False)


def test_train_and_eval_without_tensorflow(tmp_path):
  for mode in ("train", "eval"):
    result = _run(f"""
import runpy
sys.argv = ["train.py", "--config=configs/tiny.py:digits", "--workdir={tmp_path}", "--mode={mode}",
            "--config.total_steps=2", "--config.input.num_workers=1"]
runpy.run_path("train.py", run_name="__main__")
""")
    assert result.returncode == 0, result.stderr[-3000:]
    assert '"num_examples": 300' in result.stdout
    assert "tensorflow imported: False" in result.stdout


def test_sources_read_without_tensorflow(tfds_dir, tmp_path):
  (tmp_path / "a").mkdir()
  (tmp_path / "a" / "x.png").write_bytes(encode(np.zeros((4, 4, 3), np.uint8)))
  result = _run(f"""
from vig_jax import data
for source in (dict(source="tfds", name="vig_test_images", data_dir={tfds_dir!r}),
               dict(source="folder", folder={str(tmp_path)!r}, eval_fraction=0.0),
               dict(source="digits"), dict(source="synthetic")):
  batch = next(data.train_iterator(batch_size=2, image_size=8, seed=0, **source))
  print(source["source"], batch["image"].shape)
""")
  assert result.returncode == 0, result.stderr[-3000:]
  assert "tensorflow imported: False" in result.stdout
  assert result.stdout.count("(2, 768)") == 3 and "synthetic (2, 192)" in result.stdout
