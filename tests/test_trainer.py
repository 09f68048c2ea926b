"""The training program: sharding equivalence, exact resume, resharding restore, eval counts."""
import json
import os
import shutil
import subprocess

import jax
import numpy as np
import pytest

from configs import tiny
from tests import without_tensorflow
from tests.cpu_devices import env_with_cpu_devices
from vig_jax import trainer

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def tiny_config(**overrides):
  config = tiny.get_config()
  for key, value in overrides.items():
    target = config
    *parents, leaf = key.split(".")
    for p in parents:
      target = target[p]
    target[leaf] = value
  return config


def params_of(workdir, config):
  s = trainer.setup(config)
  from vig_jax import checkpointing
  manager = checkpointing.create_manager(workdir, keep=10, async_save=False)
  with jax.set_mesh(s.mesh):
    state = checkpointing.restore_latest(manager, s.abstract_state, s.meta)
  manager.close()
  return jax.device_get(state)


def test_sharded_step_equals_single_device_step(tmp_path):
  assert jax.device_count() == 8, "make test sets 8 fake CPU devices"
  one = params_of_run(tmp_path / "one", **{"mesh.num_devices": 1})
  sharded = params_of_run(tmp_path / "sharded", **{"mesh.data": 4, "mesh.fsdp": 2})
  for a, b in zip(jax.tree.leaves(one.params), jax.tree.leaves(sharded.params)):
    np.testing.assert_allclose(a, b, rtol=2e-4, atol=2e-6)
  assert int(one.step) == int(sharded.step) == 4


def params_of_run(workdir, **overrides):
  config = tiny_config(**{"total_steps": 4, **overrides})
  trainer.train_and_evaluate(config, str(workdir))
  return params_of(str(workdir), config)


def test_fsdp_shards_large_weights(tmp_path):
  config = tiny_config(**{"mesh.data": 4, "mesh.fsdp": 2, "model_kwargs.embed_dim": 128})
  s = trainer.setup(config)
  spec = s.abstract_state.params["blocks_0"]["ffn"]["up_proj"]["kernel"].sharding.spec
  assert spec[0] == "fsdp"
  mu = s.abstract_state.opt_state[1][0].mu["blocks_0"]["ffn"]["up_proj"]["kernel"]
  assert mu.sharding.spec[0] == "fsdp"  # optimizer state follows its param
  assert s.abstract_state.params["norm"]["scale"].sharding.spec == jax.sharding.PartitionSpec(None)


def test_resume_gives_the_same_parameters_bit_for_bit(tmp_path):
  straight = tiny_config(total_steps=8, checkpoint_every_steps=4)
  trainer.train_and_evaluate(straight, str(tmp_path / "straight"))
  # A run that stopped right after its step-4 checkpoint: a workdir holding only that checkpoint.
  shutil.copytree(tmp_path / "straight" / "checkpoints" / "4", tmp_path / "resumed" / "checkpoints" / "4")
  trainer.train_and_evaluate(straight, str(tmp_path / "resumed"))  # resumes at step 4
  a, b = params_of(str(tmp_path / "straight"), straight), params_of(str(tmp_path / "resumed"), straight)
  assert int(a.step) == int(b.step) == 8
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    np.testing.assert_array_equal(x, y)


def test_checkpoint_of_8_devices_restores_on_4(tmp_path):
  config8 = tiny_config(total_steps=4, **{"mesh.data": 4, "mesh.fsdp": 2,
                                          "model_kwargs.embed_dim": 128})
  trainer.train_and_evaluate(config8, str(tmp_path))
  config4 = tiny_config(total_steps=4, **{"mesh.data": 2, "mesh.fsdp": 2, "mesh.num_devices": 4,
                                          "model_kwargs.embed_dim": 128})
  s4 = trainer.setup(config4)
  restored = params_of(str(tmp_path), config4)
  expected = params_of(str(tmp_path), config8)
  for x, y in zip(jax.tree.leaves(restored), jax.tree.leaves(expected)):
    np.testing.assert_array_equal(x, y)
  kernel = s4.abstract_state.params["blocks_0"]["ffn"]["up_proj"]["kernel"]
  assert len(kernel.sharding.mesh.devices.flat) == 4


def test_eval_counts_every_example_once_and_compiles_once(tmp_path, monkeypatch):
  traces = []
  make_eval_step = trainer.make_eval_step

  def counted(model):
    step = make_eval_step(model)
    return lambda params, batch: traces.append(1) or step(params, batch)

  monkeypatch.setattr(trainer, "make_eval_step", counted)
  # 40 examples in batches of 16: the last batch is half padding, which must not count.
  config = tiny_config(total_steps=3, eval_batch_size=16, eval_every_steps=1)
  results = trainer.train_and_evaluate(config, str(tmp_path))
  assert results["num_examples"] == 40
  for prefix in ("", "ema_"):  # params and EMA scored on the same pass
    assert 0.0 <= results[prefix + "top1"] <= results[prefix + "top5"] <= 1.0
    assert results[prefix + "top1"] * 40 == pytest.approx(round(results[prefix + "top1"] * 40))
  evals = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()
           if "eval_top1" in line]
  assert [e["step"] for e in evals] == [1, 2, 3]
  assert len(traces) == 1  # three evaluations, params and EMA: one trace, one compile


def test_the_train_stream_is_closed_when_training_ends(tmp_path, monkeypatch):
  """An endless Grain stream's worker processes stop only when it is closed."""
  closed, make_stream = [], trainer.train_iterator

  class Tracked:
    def __init__(self, stream):
      self.stream = stream

    def __iter__(self):
      return self

    def __next__(self):
      return next(self.stream)

    def close(self):
      closed.append(True)
      self.stream.close()

  monkeypatch.setattr(trainer, "train_iterator", lambda **kw: Tracked(make_stream(**kw)))
  trainer.train_and_evaluate(tiny_config(total_steps=1), str(tmp_path))
  assert closed == [True]


def test_eval_at_another_image_size_resizes_pos_embed(tmp_path):
  trainer.train_and_evaluate(tiny_config(total_steps=2), str(tmp_path))  # 32 px
  bigger = trainer.evaluate(tiny_config(image_size=64), str(tmp_path))
  # The same as a model kept at 32 px, which resizes its pos_embed (bicubic) on each 64 px input.
  kept = trainer.evaluate(tiny_config(image_size=64, **{"model_kwargs.img_size": 32}),
                          str(tmp_path))
  assert bigger["checkpoint_step"] == 2 and bigger["num_examples"] == 40
  for key in ("top1", "top5", "ema_top1", "ema_top5"):
    assert bigger[key] == kept[key], key


def test_eval_of_a_workdir_without_checkpoints_fails_and_creates_nothing(tmp_path):
  with pytest.raises(trainer.ConfigError, match="no checkpoint in"):
    trainer.evaluate(tiny_config(), str(tmp_path / "empty"))
  assert not (tmp_path / "empty").exists()


def test_gradient_accumulation_matches_one_big_batch(tmp_path):
  # Without dropout the mean of two half-batch gradients is the full-batch gradient.
  common = {"model_kwargs.drop_path_rate": 0.0, "total_steps": 2}
  whole = params_of_run(tmp_path / "whole", **common)
  accum = params_of_run(tmp_path / "accum", grad_accum_steps=2, **common)
  for a, b in zip(jax.tree.leaves(whole.params), jax.tree.leaves(accum.params)):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


def test_train_py_end_to_end(tmp_path):
  """train.py trains and evaluates, on a machine without tensorflow."""
  env = env_with_cpu_devices(2)
  base = ["--config=configs/tiny.py", f"--workdir={tmp_path}"]
  run = lambda *flags: subprocess.run(without_tensorflow.script_command("train.py", *base, *flags),
                                      cwd=REPO, env=env, capture_output=True, text=True)
  train = run("--config.total_steps=4", "--config.batch_size=8")
  assert train.returncode == 0, train.stderr[-2000:]
  assert without_tensorflow.REPORT in train.stderr
  for name in ("config.json", "metrics.jsonl", "checkpoints/4", "tensorboard"):
    assert os.path.exists(tmp_path / name), name
  assert json.loads((tmp_path / "config.json").read_text())["batch_size"] == 8
  logged = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
  assert {"loss", "lr", "grad_norm", "img_per_s", "step_time"} <= set(logged[0])
  evaluation = run("--mode=eval", "--config.batch_size=8")
  assert evaluation.returncode == 0, evaluation.stderr[-2000:]
  assert without_tensorflow.REPORT in evaluation.stderr
  last_line = json.loads(evaluation.stdout.strip().splitlines()[-1])
  assert last_line == json.loads((tmp_path / "eval_results.json").read_text())
  assert last_line["checkpoint_step"] == 4 and last_line["num_examples"] == 40


def test_init_from_and_eval_from_a_converted_checkpoint(tmp_path):
  from vig_jax import pretrained
  config = tiny_config(total_steps=1, base_lr=0.0, warmup_lr=0.0, min_lr=0.0)
  s = trainer.setup(config)
  rng = np.random.default_rng(0)
  params = jax.tree.map(lambda x: rng.standard_normal(x.shape).astype(np.float32) * 0.05,
                        s.abstract_state.params)
  pretrained.save(str(tmp_path / "converted"), params, "vig_t", dict(config.model_kwargs))
  config.init_from = str(tmp_path / "converted")
  trainer.train_and_evaluate(config, str(tmp_path / "run"))  # lr 0: the params stay as loaded
  for a, b in zip(jax.tree.leaves(params_of(str(tmp_path / "run"), config).params),
                  jax.tree.leaves(params)):
    np.testing.assert_array_equal(a, b)
  config.init_from = ""
  config.eval_from = str(tmp_path / "converted")
  results = trainer.evaluate(config, str(tmp_path / "eval"))
  assert results["num_examples"] == 40 and results["checkpoint_step"] is None
