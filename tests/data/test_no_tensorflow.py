"""Every source's read path runs with tensorflow uninstallable (train.py's train and eval:
tests/test_trainer.py's end-to-end test runs them so)."""
import pathlib
import subprocess

import numpy as np

from tests import without_tensorflow

from .images import encode

REPO = pathlib.Path(__file__).parents[2]


def _run(code):
  return subprocess.run(without_tensorflow.code_command(code), cwd=REPO, capture_output=True,
                        text=True, check=False)


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
  assert without_tensorflow.REPORT in result.stderr
  assert result.stdout.count("(2, 768)") == 3 and "synthetic (2, 192)" in result.stdout
