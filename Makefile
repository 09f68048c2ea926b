# Set-up and entry points. Both targets create .venv from requirements.txt on first use.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: demo test venv

$(VENV)/.installed: requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt
	touch $@

venv: $(VENV)/.installed

DEMO_DIR := workdirs/digits

# Trains a small ViG on the embedded digits (resuming if $(DEMO_DIR) has a run), then evaluates
# the saved checkpoint.
demo: $(VENV)/.installed
	$(PY) train.py --config=configs/digits.py --workdir=$(DEMO_DIR)
	$(PY) train.py --config=configs/digits.py --workdir=$(DEMO_DIR) --mode=eval
	@$(PY) -c "import json; r = json.load(open('$(DEMO_DIR)/eval_results.json')); \
	  print(f\"digits demo: val top-1 {r['top1']:.2%} (EMA {r['ema_top1']:.2%}) on {r['num_examples']} images, checkpoint step {r['checkpoint_step']}\")"

# 8 fake CPU devices for the sharding tests. The suite is compile-bound on CPU, and XLA's LLVM
# backend at -O0 compiles its programs about a quarter faster (subprocess tests keep both flags).
test: $(VENV)/.installed
	XLA_FLAGS="--xla_force_host_platform_device_count=8 --xla_backend_optimization_level=0" \
	  $(PY) -m pytest -q -n 2 tests
