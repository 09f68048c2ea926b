"""One mesh over all devices with axes (data, fsdp); params placed by logical-axis rules.

Each param gets logical axis names from its module and shape; a few rules map logical names to
mesh axes (MaxText style). Large weights shard their embedding dimension over `fsdp`; everything
else is replicated. The batch is split over (data, fsdp).
"""
import math

import jax
import numpy as np
from jax.sharding import AxisType, NamedSharding, PartitionSpec as P

MESH_AXES = ("data", "fsdp")
BATCH_AXES = MESH_AXES
# Logical axis -> mesh axis. Unlisted logical axes are replicated.
RULES = {"embed": "fsdp"}
# Smaller params are replicated: sharding them saves little and costs a gather each.
MIN_SHARDED_SIZE = 2**14


def create_mesh(data=-1, fsdp=1, num_devices=-1):
  """Mesh (data, fsdp) over the first `num_devices` devices (-1: all); -1 takes what is left."""
  devices = jax.devices()
  if num_devices > len(devices):
    raise ValueError(f"mesh: num_devices={num_devices} but only {len(devices)} devices exist")
  devices = devices[:num_devices] if num_devices > 0 else devices
  n = len(devices)
  if data == -1 and fsdp == -1:
    raise ValueError("mesh: at most one of data, fsdp may be -1")
  data = n // fsdp if data == -1 else data
  fsdp = n // data if fsdp == -1 else fsdp
  if data * fsdp != n:
    raise ValueError(f"mesh: data={data} x fsdp={fsdp} does not match the {n} devices")
  return jax.make_mesh((data, fsdp), MESH_AXES, axis_types=(AxisType.Auto,) * 2, devices=devices)


def logical_axes(path, shape):
  """Logical axis names of the array at `path` (a tuple of str keys) with `shape`."""
  if len(shape) < 2 or math.prod(shape) < MIN_SHARDED_SIZE:
    return (None,) * len(shape)
  if path[-1] == "pos_embed":
    return (None, None, "embed")
  module = path[-2] if len(path) > 1 else ""
  if len(shape) == 4:  # conv kernels [kh, kw, in, out]
    return (None, None, "conv_in", "embed")
  if len(shape) == 2:  # dense kernels [in, out]
    if module in ("down_proj", "o_proj"):
      return ("hidden", "embed")
    return ("embed", "classes") if module == "head" else ("embed", "hidden")
  return (None,) * len(shape)


def spec_for(path, shape, mesh):
  axes = []
  for name, size in zip(logical_axes(path, shape), shape):
    mesh_axis = RULES.get(name)
    axes.append(mesh_axis if mesh_axis and size % mesh.shape[mesh_axis] == 0 else None)
  return P(*axes)


def _keys(path):
  return tuple(str(getattr(p, "key", getattr(p, "name", getattr(p, "idx", p)))) for p in path)


def tree_shardings(tree, mesh):
  """NamedShardings for every array of `tree` (params, optimizer state, EMA alike)."""
  return jax.tree_util.tree_map_with_path(
      lambda path, x: NamedSharding(mesh, spec_for(_keys(path), np.shape(x), mesh)), tree)


def batch_sharding(mesh):
  return NamedSharding(mesh, P(BATCH_AXES))


def global_batch(local_batch, mesh):
  """This process's numpy batch -> global jax arrays split over the batch axes."""
  sharding = batch_sharding(mesh)
  return jax.tree.map(lambda x: jax.make_array_from_process_local_data(sharding, x), local_batch)
