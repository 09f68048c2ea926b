"""`train_and_evaluate(config, workdir)` and `evaluate(config, workdir)`: the training program.

Runs unchanged on one CPU, one GPU, a GPU host and a TPU pod slice: one jit with shardings over a
(data, fsdp) mesh of all devices, each process feeding its share of the batch.
"""
import contextlib
import dataclasses
import functools
import json
import math
import os
import signal
import time

import jax
import jax.numpy as jnp
from absl import logging
from jax.experimental import multihost_utils

from vig_jax import checkpointing, optim, pretrained, run_config, sharding, workdir as workdir_lib
from vig_jax.data import augment_batch, dataset_info, eval_iterator, train_iterator
from vig_jax.metric_writers import MetricWriter, Progress
from vig_jax.models import ViG, create_model, model_fields
from vig_jax.train_state import TrainState, create_state, make_eval_step, make_train_step


class ConfigError(ValueError):
  """A config or input that cannot work; raised before any compute."""


class NonFiniteError(FloatingPointError):
  """A step produced a non-finite loss or gradient (and the config does not skip such steps)."""


def maybe_initialize_distributed(config):
  """Multi-process runs (TPU pod slices, one process per GPU) join the cluster first.

  config.distributed None means: if JAX_COORDINATOR_ADDRESS is set. jax finds the process count
  and id on TPU, SLURM, Open MPI and k8s; elsewhere set JAX_NUM_PROCESSES and JAX_PROCESS_ID.
  """
  wanted = config.get("distributed")
  if wanted is None:
    wanted = bool(os.environ.get("JAX_COORDINATOR_ADDRESS"))
  if wanted and not jax.distributed.is_initialized():
    kwargs = {name: int(os.environ[var]) for name, var in (("num_processes", "JAX_NUM_PROCESSES"),
                                                           ("process_id", "JAX_PROCESS_ID"))
              if var in os.environ}
    jax.distributed.initialize(**kwargs)


@dataclasses.dataclass(frozen=True)
class Setup:
  mesh: jax.sharding.Mesh
  model: object
  num_classes: int
  meta: dict
  tx: object
  schedule: object
  total_steps: int
  fresh_state: object  # rng -> TrainState (unsharded function; see init_state)
  abstract_state: TrainState  # shapes with shardings
  data_kwargs: dict
  eval_step: object  # jitted once per run: (params, global batch) -> summed hits and count


def _check_values(config):
  """Settings that cannot work whatever the model and data; checked before anything is built."""
  for name in ("batch_size", "eval_batch_size", "image_size", "grad_accum_steps",
               "log_every_steps", "checkpoint_every_steps", "keep_checkpoints"):
    if not config[name] > 0:
      raise ConfigError(f"{name} must be > 0, got {config[name]}")
  for name in ("base_lr", "warmup_lr", "min_lr", "weight_decay", "grad_clip", "num_epochs",
               "warmup_epochs", "total_steps", "eval_every_steps"):
    if not (math.isfinite(config[name]) and config[name] >= 0):
      raise ConfigError(f"{name} must be a finite number >= 0, got {config[name]}")
  for name in ("ema_decay", "label_smoothing"):
    if not 0 <= config[name] < 1:
      raise ConfigError(f"{name} must be in [0, 1), got {config[name]}")


def _check_config(config, mesh, model):
  devices, processes = mesh.size, jax.process_count()
  batch, accum = config.batch_size, config.grad_accum_steps
  if batch % (devices * accum) or batch % processes:
    raise ConfigError(f"batch_size {batch} must be divisible by the {devices} devices x "
                      f"grad_accum_steps {accum} (and by the {processes} processes)")
  if config.eval_batch_size % devices:
    raise ConfigError(f"eval_batch_size {config.eval_batch_size} must be divisible by the "
                      f"{devices} devices")
  stride = model.patch_size if isinstance(model, ViG) else 32
  if config.image_size % stride:
    raise ConfigError(f"image_size {config.image_size} is not a multiple of {config.model}'s "
                      f"token stride {stride} (patch_size for plain ViG, 32 for ViG-H)")
  if config.on_nonfinite not in ("stop", "skip"):
    raise ConfigError(f"on_nonfinite must be 'stop' or 'skip', got {config.on_nonfinite!r}")


def setup(config):
  """Everything a run needs that costs no compute, with every config check done first."""
  _check_values(config)
  mesh = sharding.create_mesh(**config.mesh)
  data_kwargs = dict(config.input)
  try:
    info = dataset_info(**data_kwargs)
  except (ValueError, FileNotFoundError) as e:  # unknown key, missing dataset, empty folder, ...
    raise ConfigError(f"input: {e}") from e
  model_kwargs = dict(config.model_kwargs)
  if "num_classes" in model_kwargs and model_kwargs["num_classes"] != info.num_classes:
    raise ConfigError(f"model_kwargs.num_classes={model_kwargs['num_classes']} but the dataset has "
                      f"{info.num_classes} classes")
  try:
    fields = model_fields(config.model)
    if "img_size" in fields:
      model_kwargs.setdefault("img_size", config.image_size)
    model = create_model(config.model, num_classes=info.num_classes, dtype=jnp.dtype(config.dtype),
                         bigla_impl=config.bigla_impl, remat=config.remat,
                         bigla_batch_axes=sharding.BATCH_AXES if mesh.size > 1 else None,
                         **model_kwargs)
  except (ValueError, TypeError) as e:
    raise ConfigError(str(e)) from e
  _check_config(config, mesh, model)

  steps_per_epoch = max(info.num_train // config.batch_size, 1)
  total_steps = config.total_steps or int(config.num_epochs * steps_per_epoch)
  warmup_steps = int(config.warmup_epochs * steps_per_epoch)
  schedule = optim.learning_rate(base_lr=config.base_lr, batch_size=config.batch_size,
                                 total_steps=total_steps, warmup_steps=warmup_steps,
                                 warmup_lr=config.warmup_lr, min_lr=config.min_lr)
  tx = optim.create_optimizer(schedule, weight_decay=config.weight_decay, grad_clip=config.grad_clip,
                              layer_decay=config.layer_decay)
  init = functools.partial(create_state, model, tx, image_size=config.image_size)
  with jax.set_mesh(mesh):  # BiGLA's shard_map traces against the mesh
    abstract = jax.eval_shape(init, jax.random.PRNGKey(0))
  _check_pretrained(config, model, abstract.params)
  shardings = sharding.tree_shardings(abstract, mesh)
  abstract = jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s),
                          abstract, shardings)
  meta = {"model": config.model, "num_classes": info.num_classes,
          "model_kwargs": {k: v for k, v in model_kwargs.items() if k != "img_size"}}
  eval_step = jax.jit(make_eval_step(model),
                      in_shardings=(shardings.params, sharding.batch_sharding(mesh)))
  return Setup(mesh, model, info.num_classes, meta, tx, schedule, total_steps, init, abstract,
               data_kwargs, eval_step)


def _shardings(tree):
  return jax.tree.map(lambda x: x.sharding, tree)


def _check_pretrained(config, model, abstract_params):
  """init_from / eval_from fit the model (metadata only): init_from may differ in its head's class
  count, both in resolution; anything else is a ConfigError naming it."""
  for directory, new_head in ((config.init_from, True), (config.eval_from, False)):
    if directory:
      try:
        meta = pretrained.load_meta(directory)
        if meta["model"] != config.model:
          raise ValueError(f"{directory} holds {meta['model']} params, the config is {config.model}")
        pretrained.check_architecture(meta, model, directory)
        pretrained.check_fits(directory, abstract_params, new_head)
      except (ValueError, FileNotFoundError) as e:
        raise ConfigError(str(e)) from e


def _load_params(directory, s, new_head=None):
  """Converted params fitted to the model (checked in setup): position embedding resized, and
  with `new_head` a head of another class count replaced by it."""
  return pretrained.restore_fitting(directory, s.abstract_state.params, new_head)


def _restore(manager, s, **kwargs):
  try:
    return checkpointing.restore_latest(manager, s.abstract_state, s.meta, **kwargs)
  except ValueError as e:  # another model's checkpoint, or none restores
    raise ConfigError(str(e)) from e


def init_state(config, s):
  """A fresh TrainState (or one started from config.init_from), laid out over the mesh."""
  state = jax.jit(s.fresh_state, out_shardings=_shardings(s.abstract_state))(
      jax.random.PRNGKey(config.seed))
  if config.init_from:
    params = _load_params(config.init_from, s, new_head=state.params["head"])
    # The EMA gets its own buffers: the train step donates the state, and a buffer donated twice
    # is freed under the other alias.
    state = state.replace(params=params, ema_params=jax.tree.map(jnp.copy, params),
                          opt_state=jax.jit(s.tx.init, out_shardings=_shardings(
                              s.abstract_state.opt_state))(params))
  return state


def jit_train_step(config, s):
  """The sharded train step: (state, global batch) -> (state, metrics), the state donated."""
  augment = functools.partial(augment_batch, image_size=config.image_size, **s.data_kwargs)
  step = make_train_step(s.model, s.tx, augment=augment, num_classes=s.num_classes,
                         mixup=dict(config.mixup),
                         label_smoothing=config.label_smoothing, ema_decay=config.ema_decay,
                         accum_steps=config.grad_accum_steps, seed=config.seed,
                         skip_nonfinite=config.on_nonfinite == "skip")
  return jax.jit(step, in_shardings=(_shardings(s.abstract_state), sharding.batch_sharding(s.mesh)),
                 out_shardings=(_shardings(s.abstract_state), None), donate_argnums=0)


def evaluate_params(config, s, params, ema_params=None):
  """Top-1 / top-5 over the whole eval split, every example counted exactly once.

  With `ema_params`, the EMA is scored on the same pass (ema_top1, ema_top5): one decode of the
  split and one compiled step for both.
  """
  named = {"": params} if ema_params is None else {"": params, "ema_": ema_params}
  totals = {f"{name}{k}": 0.0 for name in named for k in ("top1", "top5", "count")}
  batches = eval_iterator(batch_size=config.eval_batch_size // jax.process_count(),
                          image_size=config.image_size, crop_pct=config.eval_crop_pct,
                          process_index=jax.process_index(), process_count=jax.process_count(),
                          **s.data_kwargs)
  for batch in batches:
    batch = sharding.global_batch(batch, s.mesh)
    for name, tree in named.items():
      for k, v in jax.device_get(s.eval_step(tree, batch)).items():
        totals[name + k] += float(v)
  n = max(totals["count"], 1.0)
  results = {"top1": totals["top1"] / n, "top5": totals["top5"] / n,
             "num_examples": int(totals["count"])}
  if ema_params is not None:
    results.update(ema_top1=totals["ema_top1"] / n, ema_top5=totals["ema_top5"] / n)
  return results


class _StopRequest:
  """SIGTERM (what TPU VMs and schedulers send) or Ctrl-C: save the current step and stop.

  A second Ctrl-C stops at once (KeyboardInterrupt). With several processes all must stop at the
  same step, or the next collective hangs: SIGTERM is then left to JAX's preemption service, which
  agrees on a step across processes (reached_preemption_sync_point, called every step), and
  Ctrl-C is handed to it as a SIGTERM to this process.
  """

  def __init__(self):
    self._multiprocess = jax.process_count() > 1
    self._local = self._interrupted = False

  def __enter__(self):
    signals = (signal.SIGINT,) if self._multiprocess else (signal.SIGINT, signal.SIGTERM)
    self._previous = {sig: signal.signal(sig, self._handle) for sig in signals}
    return self

  def _handle(self, signum, frame):
    del frame
    if signum == signal.SIGINT:
      if self._interrupted:
        raise KeyboardInterrupt
      self._interrupted = True
    logging.warning("%s: saving a checkpoint at the current step, then stopping%s",
                    signal.Signals(signum).name,
                    " (Ctrl-C again stops at once)" if signum == signal.SIGINT else "")
    if self._multiprocess:
      os.kill(os.getpid(), signal.SIGTERM)
    else:
      self._local = True

  def requested(self, step):
    if self._multiprocess:
      return multihost_utils.reached_preemption_sync_point(step)
    return self._local

  def __exit__(self, *exc):
    for sig, previous in self._previous.items():
      signal.signal(sig, previous)


def _check_finite(state, manager):
  bad = int(jax.device_get(state.nonfinite_step))
  if bad >= 0:
    last = manager.latest_step()
    kept = (f"the last good checkpoint (step {last}) is kept" if last is not None else
            "no checkpoint was written yet")
    raise NonFiniteError(f"non-finite loss or gradients at step {bad}; {kept}; "
                         f"config.on_nonfinite='skip' skips such steps")


def train_and_evaluate(config, workdir):
  """Trains `config` in `workdir`, resuming from its newest checkpoint; returns final eval metrics,
  or None when stopped early (SIGTERM, Ctrl-C) after saving the current step.

  `workdir` may be local or a URL (gs://...). Every check (config, data, workdir: a directory,
  writable, not in use by another run, its checkpoints trained with this config: see run_config)
  comes before any compute or write.
  """
  maybe_initialize_distributed(config)
  s = setup(config)
  if s.total_steps < 1:
    raise ConfigError(f"nothing to train: total_steps={config.total_steps}, "
                      f"num_epochs={config.num_epochs} make {s.total_steps} steps")
  workdir = workdir_lib.path(workdir)
  try:
    run_config.check_resume(config, workdir)
  except run_config.ConfigChangeError as e:
    raise ConfigError(str(e)) from e
  with workdir_lib.lock(workdir):
    manager = checkpointing.create_manager(workdir, keep=config.keep_checkpoints)
    try:
      return _train_loop(config, workdir, s, manager)
    finally:
      manager.wait_until_finished()  # an aborted run still completes the checkpoints it started
      manager.close()


def _train_loop(config, workdir, s, manager):
  with jax.set_mesh(s.mesh), _StopRequest() as stop:
    state = _restore(manager, s, set_aside_damaged=True)
    if state is None:
      state = init_state(config, s)
    else:
      logging.info("resumed from checkpoint step %d", int(jax.device_get(state.step)))
    first = int(jax.device_get(state.step))
    if jax.process_index() == 0:  # only once the workdir is known to belong to this config
      run_config.write(config, workdir, first)
    logging.info("%s: %d params, mesh %s, steps %d..%d", config.model,
                 sum(x.size for x in jax.tree.leaves(state.params)), dict(s.mesh.shape), first,
                 s.total_steps)
    train_step = jit_train_step(config, s)
    batches = train_iterator(batch_size=config.batch_size // jax.process_count(),
                             image_size=config.image_size, seed=config.seed, start_step=first,
                             process_index=jax.process_index(),
                             process_count=jax.process_count(), **s.data_kwargs)
    progress, last_time, last_step = Progress(s.total_steps, first), time.time(), first
    with MetricWriter(workdir) as writer:
      # The workers of an endless train stream stop only when told (and free their shared memory).
      with contextlib.closing(batches):
        for step in range(first + 1, s.total_steps + 1):
          state, metrics = train_step(state, sharding.global_batch(next(batches), s.mesh))
          stopping = stop.requested(step)
          if step % config.log_every_steps == 0 or step == s.total_steps:
            _check_finite(state, manager)
            metrics = {k: float(v) for k, v in jax.device_get(metrics).items()}
            now = time.time()
            metrics["step_time"] = (now - last_time) / (step - last_step)
            metrics["img_per_s"] = config.batch_size / metrics["step_time"]
            metrics["lr"] = float(s.schedule(step - 1))
            last_time, last_step = now, step
            writer.write(step, metrics)
            logging.info(progress.line(step, metrics))
          if step % config.checkpoint_every_steps == 0 or step == s.total_steps or stopping:
            _check_finite(state, manager)
            checkpointing.save(manager, state, s.meta, force=stopping)
          if stopping:
            manager.wait_until_finished()
            logging.warning("preempted at step %d: checkpoint saved", step)
            return None
          if config.eval_every_steps and step % config.eval_every_steps == 0 and step < s.total_steps:
            results = evaluate_params(config, s, state.params)
            writer.write(step, {f"eval_{k}": v for k, v in results.items()})
      results = evaluate_params(config, s, state.params, state.ema_params)
      writer.write(s.total_steps, {f"eval_{k}": v for k, v in results.items()})
  return results


def evaluate(config, workdir):
  """Evaluates the newest checkpoint of `workdir` (or config.eval_from, a converted checkpoint),
  at config.image_size whatever size it was trained at (pos_embed resized).

  Writes <workdir>/eval_results.json and returns the results (also when they cannot be written).
  """
  maybe_initialize_distributed(config)
  s = setup(config)
  workdir = workdir_lib.path(workdir)
  workdir_lib.check_not_a_file(workdir)
  with jax.set_mesh(s.mesh):
    if config.eval_from:
      results, step = evaluate_params(config, s, _load_params(config.eval_from, s)), None
    else:
      checkpoints = workdir / "checkpoints"
      if not checkpoints.is_dir():  # say so before the manager creates the directory
        raise ConfigError(f"no checkpoint in {checkpoints} to evaluate")
      manager = checkpointing.create_manager(workdir, keep=config.keep_checkpoints, async_save=False)
      state = _restore(manager, s, stored_pos_embed=True)
      manager.close()
      if state is None:
        raise ConfigError(f"no checkpoint in {checkpoints} to evaluate")
      step = int(jax.device_get(state.step))
      # Trained at another image_size: pos_embed resized to the model's grid (bicubic).
      fit = functools.partial(pretrained.fit_params, target=s.abstract_state.params,
                              source=f"{checkpoints}/{step}")
      results = evaluate_params(config, s, fit(state.params), fit(state.ema_params))
  results["checkpoint_step"] = step
  if jax.process_index() == 0:
    try:
      workdir.mkdir(parents=True, exist_ok=True)
      (workdir / "eval_results.json").write_text(json.dumps(results, indent=1))
    except OSError as e:
      logging.warning("could not write %s (%s); the results are only printed",
                      workdir / "eval_results.json", e.strerror or e)
  return results
