"""Reading original weight files (.pth, .npz, .safetensors) into a {name: float32 array} dict.

`.pth` files are torch's zip format, read here without torch and without running any of their
code: a restricted unpickler that rebuilds tensors from the raw storages with numpy and never
imports a global it does not know. Anything else in the pickle (the original's config object,
optimizer and scheduler states, numpy scalars) becomes an inert `Opaque` record. That reads the
original's full training checkpoints as well as bare state dicts.
"""
import io
import os
import pickle
import zipfile

import ml_dtypes
import numpy as np
from absl import logging

# Entries of a training checkpoint that hold a model state dict, in the original's order of use.
MODEL_ENTRIES = ("model", "model_ema", "state_dict")

_STORAGE_DTYPES = {
    "DoubleStorage": np.float64, "FloatStorage": np.float32, "HalfStorage": np.float16,
    "BFloat16Storage": ml_dtypes.bfloat16,
    "LongStorage": np.int64, "IntStorage": np.int32, "ShortStorage": np.int16,
    "CharStorage": np.int8, "ByteStorage": np.uint8, "BoolStorage": np.bool_,
}


class Opaque(dict):
  """Stands in for an object of a class the unpickler does not import: keeps only its data."""
  qualname = "?"

  def __init__(self, *args, **kwargs):
    super().__init__()
    self.args, self.kwargs, self.state, self.items_ = args, kwargs, None, []

  def __setstate__(self, state):
    self.state = state

  def append(self, item):
    self.items_.append(item)

  def extend(self, items):
    self.items_.extend(items)

  def __repr__(self):
    return f"<{self.qualname}>"


def _opaque_class(module, name):
  return type(name, (Opaque,), {"qualname": f"{module}.{name}"})


class _StorageType:
  def __init__(self, dtype):
    self.dtype = np.dtype(dtype)


def _rebuild_tensor(storage, offset, size, stride, *unused):
  del unused  # requires_grad, backward hooks, metadata
  size, stride = tuple(map(int, size)), tuple(map(int, stride))
  last = offset + sum((n - 1) * s for n, s in zip(size, stride))
  if (len(size) != len(stride) or min(stride, default=0) < 0 or offset < 0
      or (0 not in size and last >= storage.size)):
    raise ValueError(f"tensor of size {size}, stride {stride} at offset {offset} lies outside its "
                     f"storage of {storage.size} elements")
  itemsize = storage.dtype.itemsize
  view = np.lib.stride_tricks.as_strided(storage[offset:], shape=tuple(size),
                                         strides=tuple(s * itemsize for s in stride))
  return np.array(view)  # a copy: the storage may be shared and is read-only


def _rebuild_parameter(tensor, *unused):
  del unused
  return tensor


class _RestrictedUnpickler(pickle.Unpickler):
  """Resolves only the globals a torch weights pickle needs; everything else becomes Opaque."""

  def __init__(self, file, archive, prefix, byteorder):
    super().__init__(file)
    self._archive, self._prefix, self._byteorder, self._storages = archive, prefix, byteorder, {}

  def find_class(self, module, name):
    if module == "torch._utils" and name in ("_rebuild_tensor_v2", "_rebuild_tensor"):
      return _rebuild_tensor
    if module == "torch._utils" and name == "_rebuild_parameter":
      return _rebuild_parameter
    if module == "torch" and name in _STORAGE_DTYPES:
      return _StorageType(_STORAGE_DTYPES[name])
    if module == "collections" and name == "OrderedDict":
      return dict
    return _opaque_class(module, name)  # never imported

  def persistent_load(self, saved_id):
    kind, storage_type, key, _, numel = saved_id
    if kind != "storage" or not isinstance(storage_type, _StorageType):
      raise pickle.UnpicklingError(f"unsupported storage {saved_id[:2]!r}")
    if key not in self._storages:
      raw = self._archive.read(f"{self._prefix}/data/{key}")
      dtype = storage_type.dtype.newbyteorder("<" if self._byteorder == "little" else ">")
      self._storages[key] = np.frombuffer(raw, dtype, count=numel)
    return self._storages[key]


def load_pth(path):
  """The object a torch.save'd zip file holds, tensors as numpy arrays (see module docstring)."""
  if not zipfile.is_zipfile(path):
    raise ValueError(f"cannot read {path}: not a torch zip checkpoint (truncated, or saved by "
                     f"torch < 1.6; re-save it with a current torch)")
  with zipfile.ZipFile(path) as archive:
    pickles = [n for n in archive.namelist() if n.endswith("/data.pkl")]
    if len(pickles) != 1:
      raise ValueError(f"cannot read {path}: no single data.pkl in the archive")
    prefix = pickles[0].removesuffix("/data.pkl")
    names = set(archive.namelist())
    byteorder = (archive.read(f"{prefix}/byteorder").decode().strip()
                 if f"{prefix}/byteorder" in names else "little")
    unpickler = _RestrictedUnpickler(io.BytesIO(archive.read(pickles[0])), archive, prefix,
                                     byteorder)
    try:
      return unpickler.load()
    except (pickle.UnpicklingError, zipfile.BadZipFile, KeyError, EOFError, TypeError, ValueError,
            AttributeError, IndexError) as e:
      raise ValueError(f"cannot read {path}: damaged torch checkpoint ({type(e).__name__}: "
                       f"{e})") from e


def _model_entry(obj, path, key):
  """The state dict inside a checkpoint object: obj[key], or the first of MODEL_ENTRIES it has."""
  if not isinstance(obj, dict):
    raise ValueError(f"{path} holds a {type(obj).__name__}, not a state dict")
  entries = [k for k in MODEL_ENTRIES if isinstance(obj.get(k), dict)]
  if key:
    if not isinstance(obj.get(key), dict):
      raise ValueError(f"{path} has no state dict under key {key!r}; it has {sorted(map(str, obj))}")
    return obj[key]
  if not entries:
    return obj  # a bare state dict
  if len(entries) > 1:
    logging.warning("%s: converting %r (the file also holds %s; --key picks another)", path,
                    entries[0], ", ".join(map(repr, entries[1:])))
  return obj[entries[0]]


def _float_arrays(state_dict, path):
  """Checks every value is a floating-point array; returns them as float32 numpy arrays."""
  bad = {k: type(v).__name__ for k, v in state_dict.items() if not isinstance(v, np.ndarray)}
  if bad:
    raise ValueError(f"{path}: entries that are not tensors: {_first(bad)}")
  floating = lambda dtype: np.issubdtype(dtype, np.floating) or dtype == ml_dtypes.bfloat16
  bad = {k: str(v.dtype) for k, v in state_dict.items() if not floating(v.dtype)}
  if bad:
    raise ValueError(f"{path}: weights must be floating point; got {_first(bad)}")
  return {k: v.astype(np.float32) for k, v in state_dict.items()}


def _first(named, count=3):
  shown = ", ".join(f"{k} ({v})" for k, v in list(named.items())[:count])
  return shown + (f" and {len(named) - count} more" if len(named) > count else "")


def _strip_module_prefix(state_dict, path):
  """DataParallel / DistributedDataParallel save every key as 'module.<key>'."""
  if state_dict and all(k.startswith("module.") for k in state_dict):
    logging.warning("%s: stripped the 'module.' prefix (DataParallel) from every key", path)
    return {k.removeprefix("module."): v for k, v in state_dict.items()}
  return state_dict


def read_state_dict(path, key=None):
  """{original key: float32 array} from a .pth/.pt/.bin, .npz or .safetensors file.

  `key` picks the entry of a training checkpoint (e.g. 'model_ema'); by default the first of
  MODEL_ENTRIES present, said in a warning when there are several. Every failure is a ValueError
  or FileNotFoundError with a one-line message.
  """
  if not os.path.isfile(path):
    raise FileNotFoundError(f"no checkpoint file at {path}")
  ext = os.path.splitext(path)[1].lower()
  torch_file = ext in (".pth", ".pt", ".bin")
  if key and not torch_file:
    raise ValueError(f"--key picks an entry of a .pth training checkpoint; {path} is {ext}")
  if torch_file:
    state_dict = _model_entry(load_pth(path), path, key)
  elif ext == ".npz":
    try:
      with np.load(path, allow_pickle=False) as data:
        state_dict = {k.removeprefix("sd/"): data[k] for k in data.files
                      if k.startswith("sd/") or "sd/" + k not in data.files}
    except (zipfile.BadZipFile, EOFError, OSError, ValueError) as e:
      raise ValueError(f"cannot read {path}: truncated or not an .npz file ({e})") from e
  elif ext == ".safetensors":
    from safetensors import SafetensorError
    from safetensors.numpy import load_file
    try:
      state_dict = load_file(path)
    except (SafetensorError, OSError, ValueError) as e:
      raise ValueError(f"cannot read {path}: truncated or not a .safetensors file ({e})") from e
  else:
    raise ValueError(f"unknown checkpoint format {ext!r} for {path}; use .pth, .npz or .safetensors")
  return _float_arrays(_strip_module_prefix(dict(state_dict), path), path)
