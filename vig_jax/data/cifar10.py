"""CIFAR-10 from its JPEG files (a .tar.gz, or the folder unpacked from it), decoded into memory.

The archive holds `train/<class>/NNNN.jpg`, 5,000 per class. 50,000 32x32 images are 150 MB as
uint8: decoding them once (seconds) beats decoding every step, and random access to an array
keeps the host's share of a 20k img/s step to a copy. VAL_FRACTION of each class's files (500 of
5,000; the smallest name hashes, the same on every run and machine) are the validation split.
"""
import concurrent.futures
import os
import tarfile
import zlib

import numpy as np

from vig_jax.data import host

VAL_FRACTION = 0.1  # 5,000 of the 50,000
IMAGE_SIZE = 32


def _decode(data: bytes) -> np.ndarray:
  image = host.decode(data)
  if image.shape != (IMAGE_SIZE, IMAGE_SIZE, 3):
    raise host.DecodeError(f"{image.shape[1]}x{image.shape[0]} image, expected 32x32")
  return image


def _read_files(path: str) -> dict[str, bytes]:
  """{"<class>/<name>.jpg": bytes} from the archive or the folder (which holds train/)."""
  if os.path.isdir(path):
    root = os.path.join(path, "train")
    if not os.path.isdir(root):
      raise ValueError(f"CIFAR-10 folder {path} has no train/ (unpack the archive there).")
    files = {}
    for cls in sorted(os.listdir(root)):
      for name in sorted(os.listdir(os.path.join(root, cls))):
        with open(os.path.join(root, cls, name), "rb") as f:
          files[f"{cls}/{name}"] = f.read()
    return files
  if not os.path.isfile(path):
    raise ValueError(f"CIFAR-10 data {path} does not exist (the .tar.gz or its unpacked folder).")
  files = {}
  try:
    with tarfile.open(path) as tar:
      for member in tar:
        parts = member.name.split("/")
        if member.isfile() and len(parts) >= 3 and parts[-3] == "train":
          files[f"{parts[-2]}/{parts[-1]}"] = tar.extractfile(member).read()
  except (tarfile.TarError, OSError, EOFError) as e:
    raise ValueError(f"cannot read CIFAR-10 archive {path}: {e}") from None
  return files


def load(path: str):
  """(train, val) as ((images uint8 [N, 32, 32, 3], labels int64 [N], names), ...), classes.

  A file that fails to decode is left out and named in the error list returned last.
  """
  files = _read_files(path)
  classes = sorted({name.split("/")[0] for name in files})
  if len(classes) != 10:
    raise ValueError(f"CIFAR-10 data {path} has {len(classes)} classes under train/, expected 10.")
  names = sorted(files, key=lambda n: (n.split("/")[0], zlib.crc32(n.encode()), n))
  per_class = {c: round(VAL_FRACTION * sum(n.startswith(c + "/") for n in names)) for c in classes}
  with concurrent.futures.ThreadPoolExecutor(os.cpu_count()) as pool:  # PIL releases the GIL
    decoded = list(pool.map(lambda n: _try_decode(files[n]), names))
  bad = [n for n, image in zip(names, decoded) if image is None]
  splits = {"train": ([], [], []), "val": ([], [], [])}
  seen = {c: 0 for c in classes}
  for name, image in zip(names, decoded):
    cls = name.split("/")[0]
    split = "val" if seen[cls] < per_class[cls] else "train"
    seen[cls] += 1
    if image is not None:
      for column, value in zip(splits[split], (image, classes.index(cls), name)):
        column.append(value)
  as_arrays = lambda s: (np.stack(s[0]), np.array(s[1], np.int64), tuple(s[2]))
  return as_arrays(splits["train"]), as_arrays(splits["val"]), tuple(classes), bad


def _try_decode(data):
  try:
    return _decode(data)
  except host.DecodeError:
    return None
