"""Image folders with one sub-folder per class: listing and splitting files.

Files are not opened here: a file that fails to decode is skipped when the pipeline reads it
(see `pipeline`). Every process lists the whole folder (cached per process), so all processes
agree on split sizes without talking.
"""
import dataclasses
import functools
import os
import zlib

_EXTENSIONS = (".jpg", ".jpeg", ".png", ".gif", ".bmp", ".webp")


@dataclasses.dataclass(frozen=True)
class Files:
  paths: tuple[str, ...]
  labels: tuple[int, ...]


@dataclasses.dataclass(frozen=True)
class ImageFolder:
  classes: tuple[str, ...]
  train: Files
  eval: Files


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
  return ImageFolder(classes, _files(train), _files(evaluation))
