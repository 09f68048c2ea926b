"""Image folders with one sub-folder per class: listing, splitting and checking files.

Corrupt images. Decoding every file up front would decode the whole folder on
every start; dropping decode failures inside tf.data would make the step ->
examples mapping depend on what failed so far, which breaks exact resume.
Instead each file's container framing is checked once, reading a few bytes at
both ends (magic number and end marker). That catches what corruption usually
is (truncated copies, empty files, non-image bytes) but not damage inside the
compressed data, which still fails at decode time. Failing files are left out
of the lists before any stream is built, so they are skipped deterministically,
and reported. Every process checks the whole folder (cached per process), so
all processes agree on split sizes without talking.
"""
import concurrent.futures
import dataclasses
import functools
import os
import zlib

from absl import logging

_EXTENSIONS = (".jpg", ".jpeg", ".png", ".gif", ".bmp", ".webp")
_PEEK = 32  # bytes read at each end of a file
_CHUNK = 1024  # files per thread-pool task
_LOGGED = 20  # corrupt file names in the warning; all are in ImageFolder.skipped


@dataclasses.dataclass(frozen=True)
class Files:
  paths: tuple[str, ...]
  labels: tuple[int, ...]


@dataclasses.dataclass(frozen=True)
class ImageFolder:
  classes: tuple[str, ...]
  train: Files
  eval: Files
  skipped: tuple[str, ...]  # image files that failed the check, left out of train/eval


def _intact(head: bytes, tail: bytes, size: int) -> bool:
  """Whether a file's framing is whole, for the formats tf.io.decode_image reads."""
  if head.startswith(b"\xff\xd8\xff"):
    return b"\xff\xd9" in tail  # JPEG end-of-image marker
  if head.startswith(b"\x89PNG\r\n\x1a\n"):
    return b"IEND" in tail
  if head[:6] in (b"GIF87a", b"GIF89a"):
    return tail.rstrip(b"\0").endswith(b";")
  if head.startswith(b"BM"):
    return int.from_bytes(head[2:6], "little") <= size  # size from the header
  if head.startswith(b"RIFF") and head[8:12] == b"WEBP":
    return int.from_bytes(head[4:8], "little") + 8 <= size
  return False


def _check(path: str) -> bool:
  try:
    with open(path, "rb") as f:
      head = f.read(_PEEK)
      size = f.seek(0, os.SEEK_END)
      f.seek(max(size - _PEEK, 0))
      return _intact(head, f.read(), size)
  except OSError:  # unreadable, e.g. a dangling link
    return False


def _check_chunk(paths: list[str]) -> list[bool]:
  return [_check(p) for p in paths]


def _keep_intact(files: list[tuple[str, int]], num_threads: int = 32):
  paths = [p for p, _ in files]
  chunks = [paths[i:i + _CHUNK] for i in range(0, len(paths), _CHUNK)]
  with concurrent.futures.ThreadPoolExecutor(num_threads) as pool:  # I/O-bound
    ok = [good for chunk in pool.map(_check_chunk, chunks) for good in chunk]
  return [f for f, good in zip(files, ok) if good], [p for p, good in zip(paths, ok) if not good]


def _list_class(class_dir: str) -> list[str]:
  return sorted(os.path.join(d, f) for d, _, names in os.walk(class_dir, followlinks=True)
                for f in names if f.lower().endswith(_EXTENSIONS))


def _list(root: str, classes: tuple[str, ...]) -> list[tuple[str, int]]:
  return [(p, label) for label, name in enumerate(classes)
          for p in _list_class(os.path.join(root, name))]


def _hash_split(root: str, classes: tuple[str, ...], fraction: float):
  """Per class, the files with the smallest name hashes go to eval.

  A file's side depends on its name and its class's size, not on listing order.
  """
  train, evaluation = [], []
  for label, name in enumerate(classes):
    paths = sorted(_list_class(os.path.join(root, name)),
                   key=lambda p: (zlib.crc32(os.path.basename(p).encode()), p))
    cut = round(fraction * len(paths))
    evaluation += [(p, label) for p in paths[:cut]]
    train += [(p, label) for p in paths[cut:]]
  return train, evaluation


def _files(pairs: list[tuple[str, int]]) -> Files:
  return Files(tuple(p for p, _ in pairs), tuple(l for _, l in pairs))


@functools.cache
def scan(root: str, eval_fraction: float = 0.1) -> ImageFolder:
  """Lists `root`/<class>/..., or `root`/train/<class>/... and `root`/val/<class>/....

  Class names are the sorted sub-folders (of train/ if present); labels index
  them. Without train/ and val/, `eval_fraction` of each class is held out.

  Raises:
    ValueError: if there are no images, or val/ has classes train/ lacks.
  """
  train_root = os.path.join(root, "train")
  split_dirs = os.path.isdir(train_root)
  base = train_root if split_dirs else root
  if not os.path.isdir(base):
    raise ValueError(f"Image folder {root} does not exist.")
  classes = tuple(sorted(d.name for d in os.scandir(base) if d.is_dir()))
  if split_dirs:
    val_root = os.path.join(root, "val")
    if not os.path.isdir(val_root):
      raise ValueError(f"{train_root} exists but {val_root} does not.")
    val_classes = {d.name for d in os.scandir(val_root) if d.is_dir()}
    if not val_classes <= set(classes):
      raise ValueError(f"{val_root} has classes missing in {train_root}: "
                       f"{sorted(val_classes - set(classes))}")
    train, evaluation = _list(train_root, classes), _list(val_root, classes)
  else:
    train, evaluation = _hash_split(root, classes, eval_fraction)
  if not train:
    raise ValueError(f"No images found in {base} (expected <class>/*{'|'.join(_EXTENSIONS)}).")

  train, bad_train = _keep_intact(train)
  evaluation, bad_eval = _keep_intact(evaluation)
  skipped = tuple(bad_train + bad_eval)
  if skipped:
    logging.warning("Skipping %d corrupt images in %s: %s%s", len(skipped), root,
                    ", ".join(skipped[:_LOGGED]), ", ..." if len(skipped) > _LOGGED else "")
  if not train:
    raise ValueError(f"No readable images in {base}: all {len(bad_train)} are corrupt.")
  return ImageFolder(classes, _files(train), _files(evaluation), skipped)
