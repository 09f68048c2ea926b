"""Model registry, parameter counts, mixed precision and train/eval behaviour."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vig_jax import create_model
from vig_jax.models import layers

# docs/model.md, and the original's count in official_state_dicts.json.
PARAM_COUNTS = {"vig_t": 5_834_536, "vig_s": 22_615_144, "vig_b": 89_022_184,
                "vig_h_t": 28_600_680, "vig_h_s": 50_051_688, "vig_h_b": 88_904_360}


def count_params(model, size=224):
  shapes = jax.eval_shape(model.init, jax.random.PRNGKey(0), jnp.zeros((1, size, size, 3)))
  return sum(x.size for x in jax.tree.leaves(shapes["params"]))


@pytest.mark.parametrize("name", sorted(PARAM_COUNTS))
def test_parameter_counts_are_exact(name, official_state_dicts):
  assert official_state_dicts[name]["num_params"] == PARAM_COUNTS[name]
  assert count_params(create_model(name)) == PARAM_COUNTS[name]


def test_overrides_change_sizes():
  model = create_model("vig_t", num_classes=10, embed_dim=64, depth=2, num_heads=2, img_size=64)
  params = jax.eval_shape(model.init, jax.random.PRNGKey(0), jnp.zeros((1, 64, 64, 3)))["params"]
  assert params["head"]["kernel"].shape == (64, 10)
  assert params["pos_embed"].shape == (1, 16, 64)
  assert sorted(k for k in params if k.startswith("blocks_")) == ["blocks_0", "blocks_1"]
  hier = create_model("vig_h_t", dims=32, depths=(1, 1, 1, 1), num_heads=(1, 2, 4, 8))
  assert count_params(hier, 64) < PARAM_COUNTS["vig_h_t"] / 10


def test_unknown_model_or_field_is_a_clear_error():
  with pytest.raises(ValueError, match="unknown model 'vig_xl'"):
    create_model("vig_xl")
  with pytest.raises(ValueError, match=r"no field\(s\) \['dims'\]"):
    create_model("vig_t", dims=3)


def test_bf16_forward_of_vig_t_is_close_to_fp32():
  images = jax.random.normal(jax.random.PRNGKey(1), (2, 224, 224, 3))
  model = create_model("vig_t")
  variables = jax.jit(model.init)(jax.random.PRNGKey(0), images)
  fp32 = jax.jit(model.apply)(variables, images)
  bf16 = jax.jit(create_model("vig_t", dtype=jnp.bfloat16).apply)(variables, images)
  assert bf16.dtype == jnp.float32  # logits are returned in fp32
  rel = float(jnp.max(jnp.abs(bf16 - fp32)) / jnp.max(jnp.abs(fp32)))
  # Stated tolerance: 12 blocks of bf16 matmuls (8-bit mantissa) give ~1e-2 relative drift.
  assert rel < 5e-2, rel
  assert float(jnp.corrcoef(bf16.ravel(), fp32.ravel())[0, 1]) > 0.999


def test_drop_path_only_when_training():
  model = create_model("vig_t", embed_dim=64, depth=2, num_heads=2, img_size=32, num_classes=5,
                       drop_path_rate=0.5)
  images = jax.random.normal(jax.random.PRNGKey(0), (8, 32, 32, 3))
  variables = jax.jit(model.init)(jax.random.PRNGKey(0), images)
  apply = jax.jit(model.apply, static_argnames="train")
  eval_a = apply(variables, images)
  np.testing.assert_array_equal(eval_a, apply(variables, images, train=False))
  train_a = apply(variables, images, train=True, rngs={"dropout": jax.random.PRNGKey(1)})
  train_b = apply(variables, images, train=True, rngs={"dropout": jax.random.PRNGKey(2)})
  assert not np.allclose(train_a, eval_a) and not np.allclose(train_a, train_b)


def test_remat_gives_the_same_gradients():
  kw = dict(embed_dim=64, depth=2, num_heads=2, img_size=32, num_classes=5)
  images = jax.random.normal(jax.random.PRNGKey(0), (2, 32, 32, 3))
  model = create_model("vig_t", **kw)
  variables = model.init(jax.random.PRNGKey(0), images)
  grad = lambda m: jax.jit(jax.grad(lambda v: jnp.sum(m.apply(v, images) ** 2)))(variables)
  for a, b in zip(jax.tree.leaves(grad(model)), jax.tree.leaves(grad(create_model("vig_t", remat=True, **kw)))):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_any_resolution_and_aspect_ratio():
  model = create_model("vig_t", embed_dim=64, depth=1, num_heads=2, img_size=64, num_classes=3)
  variables = model.init(jax.random.PRNGKey(0), jnp.zeros((1, 64, 64, 3)))
  for shape in [(1, 96, 96, 3), (1, 48, 80, 3)]:
    assert jax.jit(model.apply)(variables, jnp.ones(shape)).shape == (1, 3)


def test_bicubic_matrix_is_pytorch_bicubic():
  assert np.allclose(layers.bicubic_matrix(5, 5), np.eye(5))
  up = layers.bicubic_matrix(4, 6)
  np.testing.assert_allclose(up.sum(axis=1), 1.0)
  # Values printed by torch 2.13 F.interpolate(ramp, mode="bicubic", align_corners=False), up and
  # down: the a = -0.75 kernel with clamped borders and no antialiasing (jax.image.resize differs).
  torch_up = [-0.08680558, 0.40625, 1.21296275, 1.78703713, 2.59375, 3.08680582]
  np.testing.assert_allclose(up @ np.arange(4.0), torch_up, atol=1e-6)
  torch_down = [0.19140625, 1.703125, 3.296875, 4.80859375]
  np.testing.assert_allclose(layers.bicubic_matrix(6, 4) @ np.arange(6.0), torch_down, atol=1e-6)
