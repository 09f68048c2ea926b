"""Orbax checkpoints of the whole training state in <workdir>/checkpoints.

Each step saves the TrainState (restored into whatever mesh the current run has) and a small
JSON of what the state belongs to (model, sizes), checked before restoring so that a checkpoint
of another model fails with a one-line error instead of a shape dump. The data position is the
step: the input pipeline is deterministic in it.
"""
import os

import jax
import orbax.checkpoint as ocp


def create_manager(workdir, *, keep, async_save=True):
  options = ocp.CheckpointManagerOptions(max_to_keep=keep, create=True,
                                         enable_async_checkpointing=async_save)
  return ocp.CheckpointManager(os.path.join(os.path.abspath(workdir), "checkpoints"),
                               options=options, item_names=("state", "meta"))


def save(manager, state, meta, *, force=False):
  step = int(jax.device_get(state.step))
  return manager.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(state),
                                                    meta=ocp.args.JsonSave(meta)), force=force)


def restore_latest(manager, abstract_state, meta):
  """The newest complete checkpoint restored as `abstract_state` (shapes + shardings), or None.

  Raises ValueError if it was written for another model (`meta` differs).
  """
  step = manager.latest_step()
  if step is None:
    return None
  stored = manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))["meta"]
  different = {k: (stored.get(k), v) for k, v in meta.items() if stored.get(k) != v}
  if different:
    what = ", ".join(f"{k}: checkpoint {a!r} vs config {b!r}" for k, (a, b) in different.items())
    raise ValueError(f"checkpoint {manager.directory}/{step} is for another model ({what})")
  restored = manager.restore(step, args=ocp.args.Composite(
      state=ocp.args.StandardRestore(abstract_state)))
  return restored["state"]



def read_params(workdir, step, item="params"):
  """`item` ("params", "ema_params", ...) of the TrainState saved at `step`, on this process's
  first device, whatever mesh wrote it: for inspection and export."""
  path = os.path.join(os.path.abspath(workdir), "checkpoints", str(step), "state")
  device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
  with ocp.StandardCheckpointer() as ckptr:
    metadata = ckptr.metadata(path)
    metadata = getattr(metadata, "item_metadata", metadata)
    target = jax.tree.map(lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=device),
                          metadata)
    return ckptr.restore(path, target)[item]
