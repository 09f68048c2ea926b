"""Model registry: `create_model(name, **overrides)` for the six ViG sizes of docs/model.md."""
import dataclasses

from vig_jax.models.hier_vig import HierViG
from vig_jax.models.vig import ViG

# Sizes of the original (docs/model.md).
MODELS = {
    "vig_t": (ViG, dict(embed_dim=192, depth=12, num_heads=3, act_in_conv=True, out_act=True,
                        drop_path_rate=0.0)),
    "vig_s": (ViG, dict(embed_dim=384, depth=12, num_heads=6, drop_path_rate=0.2)),
    "vig_b": (ViG, dict(embed_dim=768, depth=12, num_heads=12, drop_path_rate=0.5)),
    "vig_h_t": (HierViG, dict(dims=96, depths=(2, 2, 5, 2), num_heads=(3, 6, 12, 24),
                              drop_path_rate=0.2)),
    "vig_h_s": (HierViG, dict(dims=96, depths=(2, 2, 17, 2), num_heads=(3, 6, 12, 24),
                              drop_path_rate=0.3)),
    "vig_h_b": (HierViG, dict(dims=128, depths=(2, 2, 17, 2), num_heads=(4, 8, 16, 32),
                              drop_path_rate=0.6)),
}


def model_fields(name):
  """The size fields that `create_model(name, ...)` accepts."""
  cls, _ = _lookup(name)
  return tuple(f.name for f in dataclasses.fields(cls) if f.name not in ("parent", "name"))


def _lookup(name):
  if name not in MODELS:
    raise ValueError(f"unknown model {name!r}; choose one of {sorted(MODELS)}")
  return MODELS[name]


def create_model(name, **overrides):
  """A ViG module of size `name` with any size field overridden (e.g. num_classes=10)."""
  cls, defaults = _lookup(name)
  unknown = sorted(set(overrides) - set(model_fields(name)))
  if unknown:
    raise ValueError(f"model {name!r} has no field(s) {unknown}; fields: {list(model_fields(name))}")
  return cls(**{**defaults, **overrides})
