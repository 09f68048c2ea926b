"""From original weights to a fine-tuned, evaluated model and its features (configs/finetune.py)."""
import json
import logging
import os

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from configs import finetune
from tests.conftest import fixture_meta, load_fixture, state_dict_of
from tests.data.images import write_image
from vig_jax import checkpointing, convert, create_model, optim, pretrained, trainer
from vig_jax.models import layers

CLASSES = ("cat", "dog", "owl")
# The fixture's architecture as overrides of vig_t (4x4 grid at 64 px, 10 classes).
FIXTURE_KWARGS = dict(embed_dim=64, depth=2, num_heads=2, patch_size=16)


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
  """The original's random-weight tiny_plain_act state dict, converted and saved."""
  meta = fixture_meta()["tiny_plain_act"]
  model, variables = convert.convert_official(state_dict_of(load_fixture("tiny_plain_act")),
                                              meta["kind"], **meta["kwargs"])
  directory = str(tmp_path_factory.mktemp("converted") / "vig_t")
  pretrained.save(directory, variables["params"], "vig_t",
                  dict(FIXTURE_KWARGS, num_classes=model.num_classes, img_size=model.img_size))
  return directory, variables["params"]


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
  root = tmp_path_factory.mktemp("images")
  for label, name in enumerate(CLASSES):
    for i in range(10):
      write_image(str(root / name / f"{i}.png"), 1 + label * 5 + i % 5)
  return str(root)


def _config(folder, init, res=48, **model_kwargs):
  c = finetune.get_config(f"model=vig_t,folder={folder},res={res},init={init}")
  c.model_kwargs.update(FIXTURE_KWARGS, **model_kwargs)
  c.dtype = "float32"
  c.augment.update(randaugment_layers=0, erase_prob=0.0)
  c.batch_size = c.eval_batch_size = 8
  c.total_steps = 3
  c.warmup_epochs = 0
  c.log_every_steps = c.checkpoint_every_steps = 3
  return c


def test_config_arguments():
  c = finetune.get_config("model=vig_h_t,folder=/data/pets,res=384")
  assert (c.model, c.image_size, c.init_from) == ("vig_h_t", 384, "converted/vig_h_t")
  assert c.data.folder == "/data/pets"
  for bad, message in (("model=vig_s", "folder=<image folder> is required"),
                       ("folder=/x,size=3", "bad argument 'size=3'"),
                       ("folder=/x,res=big", "res='big' is not a int")):
    with pytest.raises(ValueError, match=message):
      finetune.get_config(bad)


def test_init_from_gets_a_new_head_and_a_resized_pos_embed(converted, folder, caplog):
  directory, original = converted
  config = _config(folder, directory)
  s = trainer.setup(config)
  assert s.num_classes == 3
  with caplog.at_level(logging.INFO), jax.set_mesh(s.mesh):
    params = trainer.init_state(config, s).params
  assert "new head for 3 classes (the checkpoint's has 10), freshly initialised" in caplog.text
  assert "resized from a 4x4 to a 3x3 grid" in caplog.text
  assert params["head"]["kernel"].shape == (64, 3)
  np.testing.assert_allclose(params["pos_embed"],
                             layers.resize_pos_embed(original["pos_embed"], (4, 4), (3, 3)),
                             rtol=1e-6, atol=1e-7)
  for name in ("patch_embed", "blocks_0", "blocks_1", "norm"):
    jax.tree.map(np.testing.assert_array_equal, params[name], original[name])


def test_anything_else_that_differs_is_a_one_line_error(converted, folder):
  directory, _ = converted
  with pytest.raises(trainer.ConfigError, match=r"depth=2 \(checkpoint\) vs 3 \(model\)"):
    trainer.setup(_config(folder, directory, depth=3))
  with pytest.raises(trainer.ConfigError, match=r"out_act=True \(checkpoint\) vs False \(model\)"):
    trainer.setup(_config(folder, directory, out_act=False))
  evaluating = _config(folder, directory)
  evaluating.init_from, evaluating.eval_from = "", directory  # evaluation keeps the head: 10 classes stored, 3 in the data
  with pytest.raises(trainer.ConfigError, match=r"\['head'\]\['bias'\] has shape \(10,\), model "
                                                r"needs \(3,\)"):
    trainer.setup(evaluating)
  with pytest.raises(trainer.ConfigError, match="is not a converted checkpoint"):
    trainer.setup(_config(folder, os.path.dirname(directory)))


def test_convert_finetune_evaluate_and_get_features(converted, folder, tmp_path):
  directory, original = converted
  config = _config(folder, directory)
  workdir = str(tmp_path / "run")
  trained = trainer.train_and_evaluate(config, workdir)
  assert trained["num_examples"] == 3  # a tenth of each class held out
  assert 0.0 <= trained["top1"] <= trained["top5"] <= 1.0
  # Three small steps away from the converted weights (a fresh init would be ~0.1 away).
  kernel = lambda p: np.asarray(p["blocks_1"]["mixer"]["qkv_proj"]["kernel"])
  moved = np.max(np.abs(kernel(checkpointing.read_params(workdir, 3)) - kernel(original)))
  assert 0 < moved < 1e-3, moved

  config.eval_batch_size = 16
  results = trainer.evaluate(config, workdir)
  assert results["checkpoint_step"] == 3
  with open(os.path.join(workdir, "eval_results.json")) as f:
    assert json.load(f) == results
  assert results["top1"] == pytest.approx(trained["top1"])  # the final state, evaluated again

  # The fine-tuned weights as a user loads them for a dense task.
  model = create_model("vig_t", num_classes=3, img_size=48, **FIXTURE_KWARGS)
  params = checkpointing.read_params(workdir, 3, "ema_params")
  grid = jax.jit(lambda p, x: model.apply({"params": p}, x, method="features"))(
      params, jnp.zeros((2, 48, 48, 3)))
  assert grid.shape == (2, 3, 3, 64) and bool(jnp.all(jnp.isfinite(grid)))


def test_eval_from_a_converted_checkpoint_at_another_resolution(converted, folder, tmp_path):
  """--mode=eval on converted weights at 48 px (stored for 64): the position embedding is resized."""
  _, original = converted
  three_classes = dict(original, head={"kernel": original["head"]["kernel"][:, :3],
                                       "bias": original["head"]["bias"][:3]})
  directory = str(tmp_path / "converted")
  pretrained.save(directory, three_classes, "vig_t", dict(FIXTURE_KWARGS, num_classes=3, img_size=64))
  config = _config(folder, "")
  config.init_from, config.eval_from = "", directory
  results = trainer.evaluate(config, str(tmp_path / "eval"))
  assert results["num_examples"] == 3 and results["checkpoint_step"] is None


def test_layer_decay_scales_updates_by_depth():
  params = {"patch_embed": jnp.ones(2), "blocks_0": jnp.ones(2), "blocks_1": jnp.ones(2),
            "norm": jnp.ones(2), "head": jnp.ones(2)}
  grads = jax.tree.map(jnp.ones_like, params)
  sgd = lambda decay: optax.chain(optax.sgd(1.0), optim.scale_by_layer_decay(decay))
  updates, _ = sgd(0.5).update(grads, sgd(0.5).init(params), params)
  assert {k: float(v[0]) for k, v in updates.items()} == {
      "patch_embed": -0.125, "blocks_0": -0.25, "blocks_1": -0.5, "norm": -1.0, "head": -1.0}
  hier = ["stem_conv_0", "stages_0_blocks_0", "downsample_1_conv", "stages_1_blocks_0",
          "stages_1_blocks_1", "head_norm", "head"]
  assert optim.layer_ids(hier) == {"stem_conv_0": 0, "stages_0_blocks_0": 1,
                                   "downsample_1_conv": 2, "stages_1_blocks_0": 2,
                                   "stages_1_blocks_1": 3, "head_norm": 4, "head": 4}
