"""Pretrained weights: converted checkpoints on disk, the released weights, and fitting them to a
model with a new head or another resolution.

A converted checkpoint is a directory holding `params` (an Orbax checkpoint of the params tree)
and `model.json` ({"model": registry name, "model_kwargs": size overrides}); `python -m
vig_jax.convert` writes them. Fitting (`fit_params`) keeps every stored array, resizes a plain
ViG's position embedding to the model's grid with the model's own bicubic, and, when allowed,
swaps a head of another class count for a freshly initialised one; any other difference is an
error naming it.
"""
import json
import os

import jax
import jax.numpy as jnp
import orbax.checkpoint as ocp
from absl import logging

from vig_jax import hub, weight_files
from vig_jax.models import create_model, layers, model_fields

_PARAMS = "params"
_META = "model.json"
_HEAD = "head"  # the classifier of both families: {"kernel": [d, classes], "bias": [classes]}
_POS_EMBED = "pos_embed"
# Fields that do not change what the weights compute, or that fitting adapts.
_FREE_FIELDS = ("num_classes", "img_size", "drop_path_rate", "dtype", "bigla_impl",
                "bigla_batch_axes", "remat")


def check_new_directory(directory):
  """Raises FileExistsError unless `directory` is new or an empty directory: nothing is overwritten."""
  if os.path.isfile(directory):
    raise FileExistsError(f"output {os.path.abspath(directory)} is a file; choose a new directory")
  if os.path.isdir(directory) and os.listdir(directory):
    raise FileExistsError(f"output directory {os.path.abspath(directory)} is not empty; "
                          f"choose a new one")


def save(directory, params, model_name, model_kwargs):
  """Writes `directory/params` (Orbax) and `directory/model.json`; refuses a non-empty directory."""
  directory = os.path.abspath(directory)
  check_new_directory(directory)
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


def restore(directory):
  """(params, meta) of converted checkpoint `directory`, as stored (`restore_fitting` lays them
  out for a model)."""
  meta = load_meta(directory)
  with ocp.StandardCheckpointer() as ckptr:
    return ckptr.restore(os.path.join(os.path.abspath(directory), _PARAMS)), meta


def _stored_shapes(ckptr, path):
  """The stored params tree (a dict of array metadata) without reading any array."""
  stored = ckptr.metadata(path)
  stored = getattr(stored, "item_metadata", stored)
  return getattr(stored, "tree", stored)


def _flat_shapes(tree):
  return {jax.tree_util.keystr(p): tuple(x.shape)
          for p, x in jax.tree_util.tree_flatten_with_path(tree)[0]}


def _is_head(key):
  return key.startswith(f"['{_HEAD}']")


def _check_fit(stored, target, source, new_head):
  """Raises ValueError naming every difference between the trees that fitting cannot absorb."""
  have, want = _flat_shapes(stored), _flat_shapes(target)
  adaptable = lambda k: k == f"['{_POS_EMBED}']" or (new_head and _is_head(k))
  problems = [f"missing {k}" for k in sorted(set(want) - set(have))]
  problems += [f"unexpected {k}" for k in sorted(set(have) - set(want))]
  problems += [f"{k} has shape {have[k]}, model needs {want[k]}"
               for k in sorted(set(have) & set(want)) if have[k] != want[k] and not adaptable(k)]
  if problems:
    shown = "; ".join(problems[:5]) + (f"; and {len(problems) - 5} more" if len(problems) > 5 else "")
    raise ValueError(f"checkpoint {source} does not fit the model: {shown}")


def check_architecture(meta, model, source):
  """The model computes what the stored weights were trained for: same family and every
  architecture field equal (classes, resolution and training-only fields may differ)."""
  stored = create_model(meta["model"], **meta.get("model_kwargs", {}))
  if type(stored) is not type(model):
    raise ValueError(f"checkpoint {source} holds a {type(stored).__name__} ({meta['model']}), "
                     f"the model is a {type(model).__name__}")
  value = lambda m, f: tuple(getattr(m, f)) if isinstance(getattr(m, f), list) else getattr(m, f)
  differ = [f"{f}={value(stored, f)!r} (checkpoint) vs {value(model, f)!r} (model)"
            for f in model_fields(meta["model"])
            if f not in _FREE_FIELDS and value(stored, f) != value(model, f)]
  if differ:
    raise ValueError(f"checkpoint {source} does not fit the model: {'; '.join(differ)}")


def check_fits(directory, target, new_head):
  """`restore_fitting` will succeed: the metadata-only check, before any compute."""
  path = os.path.join(os.path.abspath(directory), _PARAMS)
  with ocp.StandardCheckpointer() as ckptr:
    _check_fit(_stored_shapes(ckptr, path), target, directory, new_head)


def fit_params(stored, target, source, new_head=None):
  """`stored` params fitted to `target`'s shapes (see the module docstring).

  target: arrays or ShapeDtypeStructs; those with a sharding get the fitted leaves laid out alike.
  new_head: params of a fresh head, used when the stored head's class count differs; None makes
  that an error.
  """
  _check_fit(stored, target, source, new_head is not None)
  fitted = dict(stored)
  pos_in, pos_out = stored.get(_POS_EMBED), target.get(_POS_EMBED)
  if pos_out is not None and pos_in.shape != pos_out.shape:
    grid_in, grid_out = (_square_grid(p.shape[1], source) for p in (pos_in, pos_out))
    resize = lambda p: layers.resize_pos_embed(p, grid_in, grid_out)
    fitted[_POS_EMBED] = _jit_like(resize, pos_out)(pos_in)
    logging.info("%s: position embedding resized from a %dx%d to a %dx%d grid (bicubic)", source,
                 *grid_in, *grid_out)
  if stored[_HEAD]["bias"].shape != target[_HEAD]["bias"].shape:
    fitted[_HEAD] = jax.tree.map(lambda x, t: _jit_like(lambda y: y, t)(x), new_head, target[_HEAD])
    logging.warning("%s: new head for %d classes (the checkpoint's has %d), freshly initialised",
                    source, target[_HEAD]["bias"].shape[0], stored[_HEAD]["bias"].shape[0])
  return fitted


def _square_grid(tokens, source):
  side = int(round(tokens**0.5))
  if side * side != tokens:
    raise ValueError(f"checkpoint {source}: position embedding of {tokens} tokens is no square grid")
  return side, side


def _jit_like(fn, like):
  """`fn` jitted to produce `like`'s dtype and (where it has one) sharding: works across hosts."""
  sharding = getattr(like, "sharding", None)
  return jax.jit(lambda x: fn(x).astype(like.dtype), out_shardings=sharding)


def restore_fitting(directory, target, new_head=None):
  """The params of converted checkpoint `directory`, fitted to `target` (see `fit_params`).

  Leaves that keep their shape are restored straight into `target`'s layout; the others (the
  position embedding, a head of another class count) as they are stored, then fitted.
  """
  path = os.path.join(os.path.abspath(directory), _PARAMS)
  with ocp.StandardCheckpointer() as ckptr:
    stored = _stored_shapes(ckptr, path)
    _check_fit(stored, target, directory, new_head is not None)
    layout = jax.tree.map(lambda s, t: t if tuple(s.shape) == tuple(t.shape) else
                          jax.ShapeDtypeStruct(s.shape, t.dtype, sharding=_replicated(t)),
                          stored, target)
    params = ckptr.restore(path, layout)
  return fit_params(params, target, directory, new_head)


def _replicated(like):
  sharding = getattr(like, "sharding", None)
  if isinstance(sharding, jax.sharding.NamedSharding):
    return jax.sharding.NamedSharding(sharding.mesh, jax.sharding.PartitionSpec())
  return sharding


def load(name, *, revision=None, rng=None, **overrides):
  """(model, variables) of pretrained weights, ready for `model.apply(variables, images)`.

  name: a registry name ('vig_s': the released ImageNet-1k weights, downloaded from the hub into
  its cache; `revision` pins a hub revision) or a converted checkpoint directory.
  overrides: any `create_model` field. Another num_classes gets a new head initialised from `rng`
  (default PRNGKey(0)); another img_size (plain ViG) a resized position embedding.
  """
  from vig_jax import convert  # convert's CLI imports this module
  if os.path.isdir(name):
    params, meta = restore(name)
    model_name, stored_kwargs = meta["model"], meta["model_kwargs"]
  else:
    state_dict = weight_files.read_state_dict(hub.download(name, revision))
    model_name, stored_kwargs = name, convert.size_overrides(name, state_dict)
    params = convert.convert_state_dict(state_dict, create_model(name, **stored_kwargs))["params"]
  model = create_model(model_name, **{**stored_kwargs, **overrides})
  rng = jax.random.PRNGKey(0) if rng is None else rng
  images = jnp.zeros((1, getattr(model, "img_size", 224), getattr(model, "img_size", 224), 3))
  target = jax.eval_shape(model.init, rng, images)["params"]
  new_head = None
  if target[_HEAD]["bias"].shape != params[_HEAD]["bias"].shape:
    new_head = jax.jit(model.init)(rng, images)["params"][_HEAD]
  return model, {"params": fit_params(params, target, name, new_head)}
