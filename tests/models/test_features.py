"""Features for dense tasks: the token grid of plain ViG, the four stage maps of ViG-H."""
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vig_jax import create_model

# The scan oracle compiles fastest; which BiGLA kernel runs does not matter for the features.
PLAIN = dict(num_classes=5, embed_dim=32, depth=2, num_heads=2, patch_size=8, img_size=32,
             bigla_impl="reference")
HIER = dict(num_classes=5, dims=16, depths=(1, 1, 1, 1), num_heads=(1, 2, 2, 4),
            bigla_impl="reference")


def _init(model, size):
  return jax.jit(model.init)(jax.random.PRNGKey(0), jnp.zeros((1, size, size, 3)))


def _features_and_logits(model, variables, images):
  """One compile for both outputs."""
  return jax.jit(lambda v, x: (model.apply(v, x, method="features"), model.apply(v, x)))(
      variables, images)


@pytest.mark.parametrize("size", [32, 48])
def test_plain_token_grid_and_its_pooling_is_the_logits(size):
  model = create_model("vig_t", **PLAIN)
  variables = _init(model, 32)  # built at 32 px; 48 px resizes the position embedding
  images = jax.random.normal(jax.random.PRNGKey(1), (2, size, size, 3))
  grid, logits = _features_and_logits(model, variables, images)
  assert grid.shape == (2, size // 8, size // 8, 32)
  head = variables["params"]["head"]
  pooled = jnp.mean(grid, axis=(1, 2)) @ head["kernel"] + head["bias"]
  np.testing.assert_allclose(pooled, logits, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("size", [32, 64])
def test_hier_stage_maps_and_the_last_one_gives_the_logits(size):
  model = create_model("vig_h_t", **HIER)
  variables = _init(model, 32)  # built at 32 px; 64 px is another input size
  images = jax.random.normal(jax.random.PRNGKey(1), (2, size, size, 3))
  maps, logits = _features_and_logits(model, variables, images)
  assert [m.shape for m in maps] == [(2, size // s, size // s, 16 * w)
                                     for s, w in ((4, 1), (8, 2), (16, 4), (32, 8))]
  params = variables["params"]
  normed = nn.LayerNorm(epsilon=1e-5).apply({"params": params["head_norm"]}, maps[-1])
  pooled = jnp.mean(normed, axis=(1, 2)) @ params["head"]["kernel"] + params["head"]["bias"]
  np.testing.assert_allclose(pooled, logits, rtol=1e-5, atol=1e-5)


def test_features_need_no_head_params():
  """A backbone without its classifier (e.g. for a detection head) still gives features."""
  model = create_model("vig_t", **PLAIN)
  params = dict(_init(model, 32)["params"])
  del params["head"]
  grid = jax.jit(lambda p, x: model.apply({"params": p}, x, method="features"))(
      params, jnp.zeros((1, 32, 32, 3)))
  assert grid.shape == (1, 4, 4, 32)
