"""Orbax checkpoints of the whole training state in <workdir>/checkpoints.

Each step saves the TrainState (restored into whatever mesh the current run has) and a small
JSON of what the state belongs to (model, sizes), checked before restoring so that a checkpoint
of another model fails with a one-line error instead of a shape dump. The data position is the
step: the input pipeline is deterministic in it.

A checkpoint that no longer restores (a file deleted or truncated after it was written) is skipped
with a warning and the next older one is used; in training it is moved, never deleted, to
<workdir>/checkpoints.damaged/<step> so that the run can write that step again.
"""
import time

import jax
import numpy as np
import orbax.checkpoint as ocp
from absl import logging
from jax.experimental import multihost_utils

from vig_jax import workdir as workdir_lib

DAMAGED = "checkpoints.damaged"


class ModelMismatchError(ValueError):
  """The checkpoint was written for another model than the config's."""


def create_manager(workdir, *, keep, async_save=True):
  options = ocp.CheckpointManagerOptions(max_to_keep=keep, create=True,
                                         enable_async_checkpointing=async_save)
  return ocp.CheckpointManager(workdir_lib.path(workdir) / "checkpoints", options=options,
                               item_names=("state", "meta"))


def saved_steps(workdir):
  """The steps of the complete checkpoints in `workdir` ([] if none); reads only."""
  return ocp.utils.checkpoint_steps(workdir_lib.path(workdir) / "checkpoints")


def save(manager, state, meta, *, force=False):
  step = int(jax.device_get(state.step))
  return manager.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(state),
                                                    meta=ocp.args.JsonSave(meta)), force=force)


def _stored_metadata(manager, step):
  with ocp.StandardCheckpointer() as ckptr:
    metadata = ckptr.metadata(manager.directory / str(step) / "state")
  metadata = getattr(metadata, "item_metadata", metadata)
  if metadata is None:
    raise FileNotFoundError("its array metadata (state/_METADATA) is missing or unreadable")
  return metadata


def _with_stored_pos_embed(abstract_state, stored_params):
  """`abstract_state` with every pos_embed leaf (params, EMA, optimizer moments) at its stored
  shape, replicated: a checkpoint written at another image size restores as it was saved."""
  if "pos_embed" not in stored_params:
    return abstract_state
  shape = tuple(stored_params["pos_embed"].shape)

  def leaf(path, x):
    if getattr(path[-1], "key", None) != "pos_embed" or x.shape == shape:
      return x
    replicated = jax.sharding.NamedSharding(x.sharding.mesh, jax.sharding.PartitionSpec())
    return jax.ShapeDtypeStruct(shape, x.dtype, sharding=replicated)

  return jax.tree_util.tree_map_with_path(leaf, abstract_state)


def _restore_step(manager, step, abstract_state, meta, stored_pos_embed):
  stored = manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))["meta"]
  different = {k: (stored.get(k), v) for k, v in meta.items() if stored.get(k) != v}
  if different:
    what = ", ".join(f"{k}: checkpoint {a!r} vs config {b!r}" for k, (a, b) in different.items())
    raise ModelMismatchError(f"checkpoint {manager.directory}/{step} is for another model ({what})")
  stored_params = _stored_metadata(manager, step)["params"]
  shapes = lambda tree: {jax.tree_util.keystr(p): tuple(x.shape)
                         for p, x in jax.tree_util.tree_flatten_with_path(tree)[0]}
  have, want = shapes(stored_params), shapes(abstract_state.params)
  if stored_pos_embed:
    for tree in (have, want):
      tree.pop("['pos_embed']", None)
    abstract_state = _with_stored_pos_embed(abstract_state, stored_params)
  if have != want:
    what = "; ".join(f"{k}: checkpoint {have.get(k)} vs config {want.get(k)}"
                     for k in sorted(set(have) | set(want)) if have.get(k) != want.get(k))
    raise ModelMismatchError(f"checkpoint {manager.directory}/{step} does not fit the config "
                             f"({what[:500]})")
  return manager.restore(step, args=ocp.args.Composite(
      state=ocp.args.StandardRestore(abstract_state)))["state"]


def _root_cause(error):
  """'Type: first line' of the innermost exception: tensorstore's names the array and the fault."""
  while error.__cause__ or error.__context__:
    error = error.__cause__ or error.__context__
  return f"{type(error).__name__}: {(str(error).strip().splitlines() or [''])[0][:400]}"


def _everywhere(ok):
  """True when `ok` holds on every process (all processes must take the same checkpoint)."""
  if jax.process_count() == 1:
    return ok
  return bool(np.all(multihost_utils.process_allgather(np.int32(ok))))


def _set_aside(manager, step):
  if jax.process_index() == 0:
    target = manager.directory.parent / DAMAGED / str(step)
    if target.exists():
      target = target.with_name(f"{step}.{time.strftime('%Y%m%d-%H%M%S')}")
    target.parent.mkdir(parents=True, exist_ok=True)
    (manager.directory / str(step)).rename(target)
    logging.warning("moved the damaged checkpoint step %d to %s", step, target)
  if jax.process_count() > 1:
    multihost_utils.sync_global_devices(f"set aside checkpoint {step}")
  manager.reload()


def restore_latest(manager, abstract_state, meta, *, set_aside_damaged=False,
                   stored_pos_embed=False):
  """The newest checkpoint that restores, as `abstract_state` (shapes + shardings), or None if
  there is no checkpoint.

  A step that fails to restore is skipped with a warning naming it and why; with
  `set_aside_damaged`, once an older step has restored, the skipped ones are moved aside. With
  `stored_pos_embed` the position embeddings come back at the shape they were saved with (the
  caller resizes them). Raises ModelMismatchError if the checkpoint was
  written for another model (`meta` differs), ValueError if checkpoints exist but none restores.
  """
  failures = []
  for step in sorted(manager.all_steps(), reverse=True):
    error = None
    try:
      state = _restore_step(manager, step, abstract_state, meta, stored_pos_embed)
    except ModelMismatchError:
      raise
    except Exception as e:  # pylint: disable=broad-except  # whatever a damaged file raises
      error = _root_cause(e)
    if _everywhere(error is None):
      if set_aside_damaged:
        for bad, _ in failures:
          _set_aside(manager, bad)
      return state
    error = error or "it failed to restore on another process"
    logging.warning("checkpoint step %d in %s cannot be restored (%s); trying the one before",
                    step, manager.directory, error)
    failures.append((step, error))
  if failures:
    raise ValueError(f"no checkpoint in {manager.directory} can be restored ("
                     + "; ".join(f"step {step}: {error}" for step, error in failures) + ")")
  return None


def read_params(workdir, step, item="params"):
  """`item` ("params", "ema_params", ...) of the TrainState saved at `step`, on this process's
  first device, whatever mesh wrote it: for inspection and export."""
  path = workdir_lib.path(workdir) / "checkpoints" / str(step) / "state"
  device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
  with ocp.StandardCheckpointer() as ckptr:
    metadata = ckptr.metadata(path)
    metadata = getattr(metadata, "item_metadata", metadata)
    target = jax.tree.map(lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=device),
                          metadata)
    return ckptr.restore(path, target)[item]
