"""<workdir>/config.json: the config of the run a workdir holds, compared before resuming it.

A run that resumes from a checkpoint must go on as it started: if a field that shapes the training
trajectory (model, data, batch size, schedule, regularisation, seed, ...) differs from the
workdir's config.json, the run stops with a one-line error before any compute or write. Only the
OPERATIONAL fields may change. Every other field is compared, so a new field is checked unless it
is added to OPERATIONAL.

Fields are compared by dotted name (`input.path`, `model_kwargs.depth`). A field missing from one
side (a config.json written before the field existed, or a field since removed) is not compared,
except under model_kwargs, whose keys are optional model arguments: there a key set on one side
only is a change.

config.allow_config_change=True resumes anyway, with a warning naming the changes; config.json
then becomes the new config and the one it replaces is kept as config.<step>.json, <step> being
the checkpoint resumed from (the last step trained under it). A config.<step>.json already there
is left as it is: the config it holds trained up to <step>; the one replaced trained no saved step.
"""
import json

from absl import logging

from vig_jax import checkpointing

CONFIG = "config.json"

# Fields that change how a run is operated, not the parameters it computes; free to change on
# resume. Each with why it cannot change the trajectory:
OPERATIONAL = (
    "log_every_steps", "checkpoint_every_steps", "keep_checkpoints",  # when to log and save
    "eval_every_steps", "eval_batch_size",  # evaluations read the params, never change them
    "input.num_workers",  # host worker processes: the batches are a function of the step
    "mesh", "distributed",  # device layout and process setup: the same global batch and math
    "bigla_impl", "remat",  # the same function, computed another way
    "on_nonfinite",  # only acts on a step whose loss or gradient is not finite
    "eval_from",  # read by --mode=eval only
    "allow_config_change",
)  # Not eval_crop_pct: the run's eval curve would mix two protocols.
OPEN_FIELDS = ("model_kwargs",)  # optional arguments: a key missing on one side is a change
UNSET = object()


class ConfigChangeError(ValueError):
  """The config differs from the one the workdir's checkpoints were trained with."""


def _flat(tree, prefix=""):
  out = {}
  for key, value in tree.items():
    if isinstance(value, dict):
      out.update(_flat(value, f"{prefix}{key}."))
    else:
      out[prefix + key] = value
  return out


def _under(key, names):
  return any(key == name or key.startswith(name + ".") for name in names)


def differences(stored, current):
  """{dotted field: (stored value, current value)} of the trajectory fields that differ, in the
  current config's order; `stored` and `current` are configs as JSON-decoded dicts."""
  old, new = _flat(stored), _flat(current)
  out = {}
  for key in [*new, *(k for k in old if k not in new)]:
    one_side = key not in old or key not in new
    if _under(key, OPERATIONAL) or (one_side and not _under(key, OPEN_FIELDS)):
      continue
    if old.get(key, UNSET) != new.get(key, UNSET):
      out[key] = (old.get(key, UNSET), new.get(key, UNSET))
  return out


def _describe(changes, side):
  return ", ".join(f"{key} unset" if values[side] is UNSET else f"{key}={values[side]!r}"
                   for key, values in changes.items())


def _as_json(config):
  return json.loads(config.to_json_best_effort())  # as config.json holds it: tuples as lists, ...


def check_resume(config, workdir):
  """Raises ConfigChangeError if `workdir` (an epath) has checkpoints trained with another
  trajectory than `config` (and config.allow_config_change is off). Reads only."""
  path = workdir / CONFIG
  if not checkpointing.saved_steps(workdir) or not path.exists():
    return
  try:
    stored = json.loads(path.read_text())
  except ValueError as e:
    raise ConfigChangeError(f"{path} is not a JSON config ({e}); delete it to resume without "
                            "comparing configs") from None
  changes = differences(stored, _as_json(config))
  if changes and not config.allow_config_change:
    raise ConfigChangeError(
        f"{workdir} holds a run with {_describe(changes, 0)}; this config has "
        f"{_describe(changes, 1)}. Use a new --workdir, or pass --config.allow_config_change=True "
        "to resume anyway.")
  if changes:
    logging.warning("resuming with a changed config (allow_config_change): %s holds a run with "
                    "%s; this config has %s", workdir, _describe(changes, 0), _describe(changes, 1))


def write(config, workdir, resumed_step):
  """Writes `config` as `workdir`'s config.json; resumed from `resumed_step` (> 0) with a changed
  trajectory, the config.json it replaces is kept as config.<resumed_step>.json first."""
  path, text = workdir / CONFIG, config.to_json_best_effort(indent=1)
  if resumed_step and path.exists():
    previous = path.read_text()
    kept = workdir / f"config.{resumed_step}.json"
    if differences(json.loads(previous), json.loads(text)) and not kept.exists():
      kept.write_text(previous)
      logging.info("the config that trained up to step %d is kept as %s", resumed_step, kept)
  path.write_text(text)

