"""The original's released ImageNet-1k weights on the HuggingFace hub (repository hustvl/ViG).

Files are torch pickles of fp32 tensors (224x224, 1000 classes). Downloads go to huggingface_hub's
cache (HF_HUB_CACHE / HF_HOME); with HF_HUB_OFFLINE=1 only the cache is read.
"""
import huggingface_hub
from huggingface_hub import constants, errors

REPO_ID = "hustvl/ViG"
FILES = {
    "vig_t": "vig_t_77p2acc.pth",
    "vig_s": "vig_s_81p7acc.pth",
    "vig_b": "vig_b_82p6acc.pth",
    "vig_h_t": "vig_h_t_82p8acc.pth",
    "vig_h_s": "vig_h_s_83p8acc.pth",
    "vig_h_b": "vig_h_b_84p2acc.pth",
}


def download(model, revision=None):
  """Local path of `model`'s released weights, downloaded into the hub cache unless there.

  Raises ValueError (unknown model) or OSError, both with one-line messages.
  """
  if model not in FILES:
    raise ValueError(f"no released weights for {model!r}; the hub has {sorted(FILES)}")
  try:
    return huggingface_hub.hf_hub_download(REPO_ID, FILES[model], revision=revision)
  except (OSError, errors.EntryNotFoundError) as e:  # offline miss, no network, 404, bad revision
    detail = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    offline = " (HF_HUB_OFFLINE is set: only the cache was read)" if constants.is_offline_mode() else ""
    raise OSError(f"cannot get {FILES[model]} (revision {revision or 'main'}) from the hub "
                  f"repository {REPO_ID}{offline}: {type(e).__name__}: {detail}") from e
