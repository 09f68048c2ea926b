"""The converter reproduces the original's logits and rejects checkpoints that do not fit."""
import os
import subprocess
import sys
import types
from unittest import mock

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tests.conftest import fixture_meta, load_fixture, state_dict_of
from vig_jax import convert, create_model, pretrained, weight_files

FIXTURES = sorted(fixture_meta())
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module", params=FIXTURES)
def converted(request):
  arrays = load_fixture(request.param)
  meta = fixture_meta()[request.param]
  model, variables = convert.convert_official(state_dict_of(arrays), meta["kind"], **meta["kwargs"])
  return request.param, arrays, model, variables


@pytest.mark.parametrize("impl", ["reference", "associative_scan", "chunked"])
@pytest.mark.parametrize("inputs,logits", [("input_nchw", "logits"), ("input_nchw_alt", "logits_alt")])
def test_parity_with_the_original(converted, impl, inputs, logits):
  """max |Δlogit| / max |logit| <= 1e-4 in fp32, at the construction size and at another size."""
  name, arrays, model, variables = converted
  images = jnp.asarray(arrays[inputs].transpose(0, 2, 3, 1))
  out = np.asarray(jax.jit(model.clone(bigla_impl=impl).apply)(variables, images))
  ref = arrays[logits]
  rel = np.max(np.abs(out - ref)) / np.max(np.abs(ref))
  print(f"parity {name} {impl} {inputs}: {rel:.2e}")
  assert rel <= 1e-4


def _plain_fixture():
  arrays = load_fixture("tiny_plain_act")
  return state_dict_of(arrays), fixture_meta()["tiny_plain_act"]["kwargs"]


def test_missing_unexpected_and_misshaped_keys_are_named():
  sd, kwargs = _plain_fixture()
  del sd["blocks.1.attn.g_proj.bias"]
  sd["blocks.0.attn.extra.weight"] = np.zeros(3)
  sd["head.weight"] = np.zeros((11, 64), np.float32)
  with pytest.raises(ValueError) as err:
    convert.convert_official(sd, "plain", **kwargs)
  msg = str(err.value)
  assert "missing keys ['blocks.1.attn.g_proj.bias']" in msg
  assert "unexpected keys ['blocks.0.attn.extra.weight']" in msg
  assert "head.weight (11, 64) (expected (10, 64))" in msg


def test_unsupported_original_arguments_are_refused():
  sd, kwargs = _plain_fixture()
  with pytest.raises(ValueError, match="if_cls_token=True is not supported"):
    convert.convert_official(sd, "plain", **{**kwargs, "if_cls_token": True})
  with pytest.raises(ValueError, match="kind must be"):
    convert.convert_official(sd, "vit", **kwargs)


def test_every_official_key_maps_to_a_param(official_state_dicts):
  """The full-size models' key sets are exactly the original's (no conversion drift at scale)."""
  for name, entry in official_state_dicts.items():
    model = convert.model_from_original(entry["kind"], **entry["kwargs"])
    sd = {k: np.zeros(shape, np.float32) for k, shape in entry["state_dict"].items()}
    params = convert.convert_state_dict(sd, model)["params"]
    assert sum(np.size(x) for x in _leaves(params)) == entry["num_params"], name
    assert isinstance(model, type(create_model(name)))


def _leaves(tree):
  return [x for v in tree.values() for x in (_leaves(v) if isinstance(v, dict) else [v])]


def _run_cli(*args):
  return subprocess.run([sys.executable, "-m", "vig_jax.convert", *args], cwd=REPO,
                        capture_output=True, text=True)


@pytest.mark.parametrize("fmt", ["npz", "safetensors"])
def test_cli_writes_an_orbax_checkpoint_that_reproduces_logits(tmp_path, fmt):
  arrays = load_fixture("tiny_plain_act")
  sd = state_dict_of(arrays)
  # A small vig_t-shaped checkpoint: the CLI takes sizes from the registry, classes and grid
  # from the checkpoint. Reuse the fixture's weights for a 2-block, 64-wide vig_t variant.
  src = tmp_path / f"ckpt.{fmt}"
  if fmt == "npz":
    np.savez(src, **sd)
  else:
    from safetensors.numpy import save_file
    save_file({k: np.ascontiguousarray(v) for k, v in sd.items()}, str(src))
  out = tmp_path / "out"
  result = _run_cli("--model=vig_t", f"--src={src}", f"--out={out}")
  # vig_t has 12 blocks of width 192: this checkpoint does not fit, and the error names keys.
  assert result.returncode != 0
  assert "missing keys" in result.stderr and "blocks.11" in result.stderr
  assert not out.exists() or not os.listdir(out)


def test_cli_round_trip_full_size(tmp_path, official_state_dicts):
  entry = official_state_dicts["vig_t"]
  rng = np.random.default_rng(0)
  sd = {k: rng.standard_normal(shape).astype(np.float32) * 0.02
        for k, shape in entry["state_dict"].items()}
  src = tmp_path / "vig_t.npz"
  np.savez(src, **sd)
  out = tmp_path / "converted"
  result = _run_cli("--model=vig_t", f"--src={src}", f"--out={out}")
  assert result.returncode == 0, result.stderr
  params, meta = pretrained.restore(str(out))
  assert meta == {"model": "vig_t", "model_kwargs": {"num_classes": 1000, "img_size": 224}}
  np.testing.assert_array_equal(params["head"]["kernel"], sd["head.weight"].T)
  np.testing.assert_array_equal(params["blocks_3"]["mixer"]["in_proj"]["kernel"],
                                sd["blocks.3.attn.in_proj.0.weight"].transpose(2, 3, 1, 0))
  # A second conversion into the same directory must not touch what is there.
  again = _run_cli("--model=vig_t", f"--src={src}", f"--out={out}")
  assert again.returncode != 0 and "not empty" in again.stderr
  assert pretrained.load_meta(str(out))["model"] == "vig_t"


def test_cli_bad_inputs(tmp_path):
  missing = _run_cli("--model=vig_t", f"--src={tmp_path / 'nope.npz'}", f"--out={tmp_path / 'o'}")
  assert missing.returncode != 0 and "no checkpoint file" in missing.stderr
  (tmp_path / "w.ckpt").write_bytes(b"x")
  unknown = _run_cli("--model=vig_t", f"--src={tmp_path / 'w.ckpt'}", f"--out={tmp_path / 'o'}")
  assert unknown.returncode != 0 and "unknown checkpoint format" in unknown.stderr


@pytest.fixture
def torch():
  # In requirements.txt: the tests write the original's .pth files with it (reading needs no torch).
  return pytest.importorskip("torch")


def _random_state_dict(torch, entry, seed):
  rng = np.random.default_rng(seed)
  return {k: torch.from_numpy(rng.standard_normal(shape).astype(np.float32))
          for k, shape in entry["state_dict"].items()}


def _training_checkpoint(torch, path, model, model_ema):
  """What the original's training script saves: model, EMA, optimizer, scheduler, its config (a
  yacs CfgNode, a class this environment cannot import) and counters."""
  config_module = types.ModuleType("yacs.config")

  class CfgNode(dict):
    pass

  CfgNode.__module__, CfgNode.__qualname__ = "yacs.config", "CfgNode"
  config_module.CfgNode = CfgNode
  config = CfgNode(MODEL=CfgNode(NAME="vig_tiny"), TRAIN=CfgNode(EPOCHS=300))
  weight = torch.nn.Parameter(torch.zeros(3))
  optimizer = torch.optim.AdamW([weight])
  weight.grad = torch.ones(3)
  optimizer.step()
  scheduler = torch.optim.lr_scheduler.StepLR(optimizer, 10)
  with mock.patch.dict(sys.modules, {"yacs": types.ModuleType("yacs"), "yacs.config": config_module}):
    torch.save({"model": model, "model_ema": model_ema, "optimizer": optimizer.state_dict(),
                "lr_scheduler": scheduler.state_dict(), "max_accuracy": np.float64(77.2),
                "epoch": 299, "config": config}, path)
  assert "yacs" not in sys.modules  # nothing can import the config's class when reading it


def test_full_training_checkpoint_of_the_original(tmp_path, official_state_dicts, torch):
  """Read without torch or code: the `model` entry is converted, and the CLI says so; DataParallel's
  'module.' prefix is stripped (said too)."""
  entry = official_state_dicts["vig_t"]
  sd = _random_state_dict(torch, entry, 1)
  src = tmp_path / "vig_t.pth"
  _training_checkpoint(torch, src, {f"module.{k}": v for k, v in sd.items()},
                       _random_state_dict(torch, entry, 2))
  out = tmp_path / "converted"
  result = _run_cli("--model=vig_t", f"--src={src}", f"--out={out}")
  assert result.returncode == 0, result.stderr
  assert "converting 'model' (the file also holds 'model_ema'; --key picks another)" in result.stderr
  assert "stripped the 'module.' prefix" in result.stderr
  params, _ = pretrained.restore(str(out))
  np.testing.assert_array_equal(params["pos_embed"], sd["pos_embed"].numpy())


def test_key_picks_the_entry(tmp_path, official_state_dicts, torch):
  entry = official_state_dicts["vig_t"]
  model, ema = _random_state_dict(torch, entry, 1), _random_state_dict(torch, entry, 2)
  src = tmp_path / "vig_t.pth"
  _training_checkpoint(torch, src, model, ema)
  picked = weight_files.read_state_dict(str(src), key="model_ema")
  np.testing.assert_array_equal(picked["head.weight"], ema["head.weight"].numpy())
  with pytest.raises(ValueError, match=r"no state dict under key 'ema'; it has \['config', 'epoch'"):
    weight_files.read_state_dict(str(src), key="ema")
  np.savez(tmp_path / "w.npz", **{k: v.numpy() for k, v in model.items()})
  with pytest.raises(ValueError, match="--key picks an entry of a .pth training checkpoint"):
    weight_files.read_state_dict(str(tmp_path / "w.npz"), key="model")


def test_damaged_or_non_float_files_are_one_line_errors(tmp_path):
  sd = state_dict_of(load_fixture("tiny_plain_act"))
  np.savez(tmp_path / "full.npz", **sd)
  data = (tmp_path / "full.npz").read_bytes()
  (tmp_path / "cut.npz").write_bytes(data[:len(data) // 2])
  from safetensors.numpy import save_file
  save_file({"head.bias": np.arange(10, dtype=np.int32), "head.weight": sd["head.weight"]},
            str(tmp_path / "ints.safetensors"))
  (tmp_path / "cut.safetensors").write_bytes((tmp_path / "ints.safetensors").read_bytes()[:100])
  (tmp_path / "cut.pth").write_bytes(data[:len(data) // 2])
  for name, message in (("cut.npz", "truncated or not an .npz file"),
                        ("ints.safetensors", "weights must be floating point; got head.bias (int32)"),
                        ("cut.safetensors", "truncated or not a .safetensors file"),
                        ("cut.pth", "not a torch zip checkpoint")):
    result = _run_cli("--model=vig_t", f"--src={tmp_path / name}", f"--out={tmp_path / 'out'}")
    lines = result.stderr.strip().splitlines()
    assert result.returncode != 0 and "Traceback" not in result.stderr, name
    assert lines[-1].startswith("convert: error: cannot read" if "cut" in name
                                else "convert: error:") and message in lines[-1], lines[-1]
    assert not (tmp_path / "out").exists()


class _Exploit:
  """Unpickling this runs a shell command: what a malicious checkpoint does."""

  def __init__(self, marker):
    self.marker = marker

  def __reduce__(self):
    return (os.system, (f"touch {self.marker}",))


def test_pickle_that_would_execute_code_is_refused(tmp_path, torch):
  marker = tmp_path / "pwned"
  src = tmp_path / "evil.pth"
  torch.save({"model": {"head.weight": _Exploit(marker)}}, src)
  result = _run_cli("--model=vig_t", f"--src={src}", f"--out={tmp_path / 'out'}")
  assert result.returncode != 0
  assert "entries that are not tensors: head.weight (system)" in result.stderr.strip().splitlines()[-1]
  assert not marker.exists()
  assert not (tmp_path / "out").exists()
