"""Params-only checkpoints (converted original weights): an Orbax checkpoint plus model.json."""
import json
import os

import jax
import orbax.checkpoint as ocp

_PARAMS = "params"
_META = "model.json"


def save(directory, params, model_name, model_kwargs):
  """Writes `directory/params` (Orbax) and `directory/model.json`; refuses a non-empty directory."""
  directory = os.path.abspath(directory)
  if os.path.exists(directory) and os.listdir(directory):
    raise FileExistsError(f"output directory {directory} is not empty; choose a new one")
  os.makedirs(directory, exist_ok=True)
  with ocp.StandardCheckpointer() as ckptr:
    ckptr.save(os.path.join(directory, _PARAMS), params)
  with open(os.path.join(directory, _META), "w") as f:
    json.dump({"model": model_name, "model_kwargs": model_kwargs}, f, indent=1)


def load_meta(directory):
  path = os.path.join(os.path.abspath(directory), _META)
  if not os.path.isfile(path):
    raise FileNotFoundError(f"{directory} is not a converted checkpoint: {path} is missing")
  with open(path) as f:
    return json.load(f)


def load(directory, target=None):
  """Returns (params, meta). `target` (arrays or ShapeDtypeStructs, optionally sharded) sets the
  layout; a checkpoint whose tree or shapes differ from it fails with a message naming them."""
  meta = load_meta(directory)
  path = os.path.join(os.path.abspath(directory), _PARAMS)
  with ocp.StandardCheckpointer() as ckptr:
    if target is None:
      return ckptr.restore(path), meta
    stored = ckptr.metadata(path)
    stored = getattr(stored, "item_metadata", stored)
    _check_same_tree(stored, target, directory)
    return ckptr.restore(path, target), meta


def _check_same_tree(stored, target, directory):
  flat = lambda tree: {jax.tree_util.keystr(p): tuple(x.shape)
                       for p, x in jax.tree_util.tree_flatten_with_path(tree)[0]}
  have, want = flat(stored), flat(target)
  problems = [f"missing {k}" for k in sorted(set(want) - set(have))]
  problems += [f"unexpected {k}" for k in sorted(set(have) - set(want))]
  problems += [f"{k} has shape {have[k]}, model needs {want[k]}"
               for k in sorted(set(have) & set(want)) if have[k] != want[k]]
  if problems:
    shown = "; ".join(problems[:5]) + (f"; and {len(problems) - 5} more" if len(problems) > 5 else "")
    raise ValueError(f"checkpoint {directory} does not fit the model: {shown}")
