"""The step profiler: trace -> per-category device time, and the o = v ablation."""
import re

import jax
import pytest

from benchmarks import model_bench, profile_step
from vig_jax import trainer
from vig_jax.models import layers


@pytest.fixture(scope="module")
def eval_profile():
  job = profile_step.SMOKE[1]  # tiny ViG-T eval
  return profile_step.profile(job, steps=1, iters=1)


def test_profile_attributes_device_time_to_the_model_parts(eval_profile):
  r = eval_profile
  assert set(r["categories"]) == set(profile_step.CATEGORIES)
  assert r["device_ms"] == pytest.approx(sum(r["categories"].values()))
  for category in ("matmul", "BiGLA", "depthwise conv", "norm/elementwise/gating"):
    assert r["categories"][category] > 0, category
  assert r["categories"]["optimizer"] == 0  # eval: nothing outside the model but the output
  assert r["step_ms"] > 0 and r["step_ms_bigla_as_identity"] > 0
  assert any("mixer" in t["location"] for t in r["top_locations"])
  assert layers.bigla is not None and "lambda" not in layers.bigla.__name__  # restored


def test_categories_follow_the_hlo():
  model = jax.numpy.ones((8, 8))
  text = jax.jit(lambda a: jax.numpy.tanh(a @ a)).lower(model).compile().as_text()
  instructions, computations = profile_step.parse_hlo(text)
  assert instructions and all(computations.values())
  assert profile_step.scope_category("jit(train_step)/transpose(jvp(ViG))/blocks_3/mixer/"
                                     "mixer._bigla/transpose") == "BiGLA"
  assert profile_step.scope_category("jit(apply)/ViG/blocks_0/mixer/in_proj/conv") == "depthwise conv"
  assert profile_step.scope_category("jit(apply)/ViG/blocks_0/mixer/g_norm/mul") == \
      "norm/elementwise/gating"
  assert profile_step.scope_category("jit(train_step)/mul") == "optimizer"
  assert profile_step.scope_category("jit(train_step)/jit(_beta)/jit(_gamma)/add") == "other"
  assert profile_step.scope_category("jit(train_step)/input/vmap(jit(_uniform))/add") == "input"


def test_the_train_step_names_its_input_half():
  """--augment's "input" row relies on train_state's named scope around the input's device half."""
  overrides = (("depth", 1), ("embed_dim", 32), ("num_heads", 2), ("patch_size", 8))
  mesh = dict(data=1, fsdp=1, num_devices=1)
  config, s = model_bench.vig_train_setup("vig_t", 32, 2, overrides, mesh, "float32", augment=True)
  with jax.set_mesh(s.mesh):
    state = trainer.init_state(config, s)
    batch = model_bench.synthetic_batch(32, 2, s.mesh)
    lowered = trainer.jit_train_step(config, s).lower(state, batch)
  categories = {profile_step.scope_category(name)
                for name in re.findall(r'loc\("([^"]*)"', lowered.as_text(debug_info=True))}
  assert {"input", "BiGLA", "optimizer"} <= categories


def test_report_without_the_ablation(eval_profile):
  text = profile_step.report([{**eval_profile, "step_ms_bigla_as_identity": None}], "header")
  assert "o = v" not in text and "| BiGLA |" in text
  assert "o = v" in profile_step.report([eval_profile], "header")


def test_nccl_kernels_are_collectives_whatever_their_op_names():
  text = jax.jit(lambda a: jax.numpy.tanh(a @ a)).lower(jax.numpy.ones((8, 8))).compile().as_text()
  instructions, computations = profile_step.parse_hlo(text)
  some_op = next(iter(instructions))
  events = [("all-reduce.3", "ncclDevKernel_AllReduce_Sum_f32_RING_LL", 2e6),
            (some_op, "fusion_kernel", 1e6)]
  per_category, top = profile_step.breakdown(events, instructions, computations, steps=2)
  assert per_category["collectives"] == 1.0
  assert sum(per_category.values()) == 1.5
  assert {"location": "all-reduce (NCCL)", "category": "collectives", "ms": 1.0} in top
