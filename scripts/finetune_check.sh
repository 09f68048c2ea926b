#!/usr/bin/env bash
# The README's fine-tune path end to end at full size: converts a random-weight state dict in the
# original's key layout (M, default vig_s), fine-tunes it at RES px (default 384) on a generated
# 3-class image folder, evaluates, and loads the features. Run from the repository root:
#   M=vig_s RES=384 bash scripts/finetune_check.sh      (GPU; on a CPU: M=vig_t RES=64 PY=.venv/bin/python)
# It writes /tmp/<M>.npz, /tmp/pets, /tmp/ft and /tmp/converted_<M> (all removed first).
set -euxo pipefail
rm -rf /tmp/pets /tmp/ft "/tmp/converted_${M:-vig_s}"
M=${M:-vig_s}
PY=${PY:-python3}
${PY} - <<PY
import json, numpy as np, os
from PIL import Image
entry = json.load(open("tests/fixtures/official_state_dicts.json"))["$M"]
rng = np.random.default_rng(0)
np.savez("/tmp/$M.npz", **{k: (rng.standard_normal(s) * 0.02).astype(np.float32) for k, s in entry["state_dict"].items()})
for c, color in enumerate([(200, 40, 40), (40, 200, 40), (40, 40, 200)]):
  os.makedirs(f"/tmp/pets/class{c}", exist_ok=True)
  for i in range(40):
    a = np.clip(rng.normal(color, 40, (320, 300, 3)), 0, 255).astype(np.uint8)
    Image.fromarray(a).save(f"/tmp/pets/class{c}/{i}.jpg", quality=90)
PY
${PY} -m vig_jax.convert --model $M --src /tmp/$M.npz --out /tmp/converted_$M
${PY} train.py --config=configs/finetune.py:model=$M,folder=/tmp/pets,res=${RES:-384},init=/tmp/converted_$M --workdir=/tmp/ft \
  --config.batch_size=16 --config.eval_batch_size=16 --config.num_epochs=3 --config.log_every_steps=3
${PY} train.py --config=configs/finetune.py:model=$M,folder=/tmp/pets,res=${RES:-384},init=/tmp/converted_$M --workdir=/tmp/ft --mode=eval
${PY} - <<PY
import jax, jax.numpy as jnp, os
from vig_jax import checkpointing, create_model
step = max(int(s) for s in os.listdir("/tmp/ft/checkpoints") if s.isdigit())
params = checkpointing.read_params("/tmp/ft", step, "ema_params")
model = create_model("$M", num_classes=3, img_size=${RES:-384})
grid = model.apply({"params": params}, jnp.zeros((2, ${RES:-384}, ${RES:-384}, 3)), method="features")
print("features", grid.shape, jax.devices()[0].device_kind)
PY
