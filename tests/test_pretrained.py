"""Released weights from the hub (offline, from a cache filled here) and fitting stored params."""
import os
import shutil
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tests.conftest import fixture_meta, load_fixture, state_dict_of
from vig_jax import convert, hub, pretrained
from vig_jax.models import ViG, layers

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COMMIT = "0123456789abcdef0123456789abcdef01234567"


def fill_hub_cache(cache, model, src, commit=COMMIT):
  """Puts `src` in huggingface_hub's cache layout as `model`'s released file at `commit` (main)."""
  repo = cache / ("models--" + hub.REPO_ID.replace("/", "--"))
  (repo / "snapshots" / commit).mkdir(parents=True)
  shutil.copy(src, repo / "snapshots" / commit / hub.FILES[model])
  (repo / "refs").mkdir(exist_ok=True)
  (repo / "refs" / "main").write_text(commit)


@pytest.fixture(scope="module")
def released_vig_t(tmp_path_factory, official_state_dicts):
  """A full-size vig_t checkpoint in the original's layout, random weights."""
  torch = pytest.importorskip("torch")  # in requirements.txt; writes the original's format
  rng = np.random.default_rng(0)
  sd = {k: rng.standard_normal(shape).astype(np.float32) * 0.02
        for k, shape in official_state_dicts["vig_t"]["state_dict"].items()}
  path = tmp_path_factory.mktemp("released") / "vig_t.pth"
  torch.save({"model": {k: torch.from_numpy(v) for k, v in sd.items()}}, path)
  return path, sd


@pytest.fixture
def offline_hub(tmp_path, monkeypatch):
  """huggingface_hub reading only `tmp_path/hub` (as HF_HUB_OFFLINE=1 HF_HUB_CACHE=... would)."""
  from huggingface_hub import constants
  cache = tmp_path / "hub"
  cache.mkdir()
  monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
  monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
  return cache


def test_load_released_weights_from_the_cache(released_vig_t, offline_hub):
  src, sd = released_vig_t
  fill_hub_cache(offline_hub, "vig_t", src)
  model, variables = pretrained.load("vig_t")
  assert isinstance(model, ViG) and (model.num_classes, model.img_size) == (1000, 224)
  params = variables["params"]
  np.testing.assert_array_equal(params["head"]["kernel"], sd["head.weight"].T)
  np.testing.assert_array_equal(params["pos_embed"], sd["pos_embed"])


def test_load_with_new_classes_and_resolution(released_vig_t, offline_hub):
  src, sd = released_vig_t
  fill_hub_cache(offline_hub, "vig_t", src)
  model, variables = pretrained.load("vig_t", num_classes=3, img_size=160, revision=COMMIT)
  params = variables["params"]
  assert params["head"]["kernel"].shape == (192, 3)
  np.testing.assert_allclose(params["pos_embed"],
                             layers.resize_pos_embed(sd["pos_embed"], (14, 14), (10, 10)),
                             rtol=1e-6, atol=1e-7)
  np.testing.assert_array_equal(params["blocks_0"]["ffn"]["up_proj"]["kernel"],
                                sd["blocks.0.mlp.gate_proj.weight"].T)
  assert (model.num_classes, model.img_size) == (3, 160)


def test_offline_miss_and_unknown_model_are_one_line_errors(offline_hub):
  with pytest.raises(OSError, match=r"cannot get vig_s_81p7acc.pth \(revision main\) from the hub "
                                    r"repository hustvl/ViG \(HF_HUB_OFFLINE is set"):
    hub.download("vig_s")
  with pytest.raises(ValueError, match="no released weights for 'vig_l'"):
    pretrained.load("vig_l")


def _run_cli(*args, cache):
  env = dict(os.environ, HF_HUB_OFFLINE="1", HF_HUB_CACHE=str(cache))
  return subprocess.run([sys.executable, "-m", "vig_jax.convert", *args], cwd=REPO, env=env,
                        capture_output=True, text=True)


def test_cli_from_hub(released_vig_t, tmp_path):
  src, sd = released_vig_t
  cache = tmp_path / "hub"
  fill_hub_cache(cache, "vig_t", src)
  out = tmp_path / "converted"
  result = _run_cli("--model=vig_t", "--from-hub", f"--revision={COMMIT}", f"--out={out}",
                    cache=cache)
  assert result.returncode == 0, result.stderr
  params, meta = pretrained.restore(str(out))
  assert meta == {"model": "vig_t", "model_kwargs": {"num_classes": 1000, "img_size": 224}}
  np.testing.assert_array_equal(params["pos_embed"], sd["pos_embed"])

  missing = _run_cli("--model=vig_s", "--from-hub", f"--out={tmp_path / 'o'}", cache=cache)
  assert missing.returncode != 0 and not (tmp_path / "o").exists()
  assert missing.stderr.strip().splitlines()[-1].startswith("convert: error: cannot get vig_s")
  both = _run_cli("--model=vig_t", "--from-hub", f"--src={src}", f"--out={tmp_path / 'o'}",
                  cache=cache)
  assert both.returncode != 0 and "either --src=FILE or --from-hub" in both.stderr


def _tiny_converted():
  meta = fixture_meta()["tiny_plain_act"]
  return convert.convert_official(state_dict_of(load_fixture("tiny_plain_act")), meta["kind"],
                                  **meta["kwargs"])


def test_fit_params_adapts_only_pos_embed_and_head():
  model, variables = _tiny_converted()
  stored = variables["params"]
  bigger = model.clone(img_size=96, num_classes=4)
  target = jax.eval_shape(bigger.init, jax.random.PRNGKey(0), jnp.zeros((1, 96, 96, 3)))["params"]
  with pytest.raises(ValueError, match=r"\['head'\]\['kernel'\] has shape \(64, 10\), model needs "
                                       r"\(64, 4\)"):
    pretrained.fit_params(stored, target, "ckpt")  # no new head given: the head must match
  new_head = {"kernel": jnp.ones((64, 4)), "bias": jnp.zeros(4)}
  fitted = pretrained.fit_params(stored, target, "ckpt", new_head)
  assert jax.tree.map(lambda x: x.shape, fitted) == jax.tree.map(lambda x: x.shape, target)
  np.testing.assert_array_equal(fitted["head"]["kernel"], new_head["kernel"])
  np.testing.assert_allclose(fitted["pos_embed"],
                             layers.resize_pos_embed(stored["pos_embed"], (4, 4), (6, 6)),
                             rtol=1e-6, atol=1e-7)
  wider = model.clone(embed_dim=96)
  target = jax.eval_shape(wider.init, jax.random.PRNGKey(0), jnp.zeros((1, 64, 64, 3)))["params"]
  with pytest.raises(ValueError, match=r"does not fit the model: .*\['blocks_0'\].* has shape"):
    pretrained.fit_params(stored, target, "ckpt", new_head)


def test_a_resized_model_gives_the_same_logits_as_resizing_at_run_time():
  """Fitting resizes the position embedding as the model itself does for another input size."""
  model, variables = _tiny_converted()
  images = jax.random.normal(jax.random.PRNGKey(0), (1, 96, 96, 3))
  at_run_time = jax.jit(model.apply)(variables, images)
  resized = model.clone(img_size=96)
  target = jax.eval_shape(resized.init, jax.random.PRNGKey(0), images)["params"]
  fitted = pretrained.fit_params(variables["params"], target, "ckpt")
  np.testing.assert_allclose(jax.jit(resized.apply)({"params": fitted}, images), at_run_time,
                             rtol=1e-5, atol=1e-5)
