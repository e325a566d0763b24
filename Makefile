# Everything builds from nothing: `make test` creates .venv, installs the
# project and runs the tests. Override PYTHON to use another interpreter.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
# The CUDA-enabled torch build runs on CPU too; torchvision 0.29.1 needs exactly this torch.
TORCH_PINS := torch==2.14.1 torchvision==0.29.1

# Data root: the cached downloads beside the checkout when present (tests, CI),
# else whatever the user set, else ./data (see README).
ifeq ($(origin UE_DATA), undefined)
  ifneq ($(wildcard ../shared/data),)
    export UE_DATA := $(abspath ../shared/data)
  endif
endif

.PHONY: venv test test-slow demo profile bench lint structure clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip
	$(PY) -m pip install $(TORCH_PINS)
	$(PY) -m pip install -e '.[dev]' $(TORCH_PINS)
	$(PY) -m ipykernel install --sys-prefix --name python3 >/dev/null
	touch $@

venv: $(VENV)/.installed

test: venv
	$(PY) -m pytest

test-slow: venv
	$(PY) -m pytest -m slow

demo: venv
	$(VENV)/bin/ue run --profile mini --out runs/mini

# where each notebook's time goes, against its compute floor (a new run folder each time)
profile: venv
	rm -rf runs/profile
	$(VENV)/bin/ue profile --profile mini --out runs/profile

bench: venv
	$(PY) -m pip install -q -e '.[bench]' $(TORCH_PINS)
	$(PY) -m ue_lib.bench eval
	$(PY) -m ue_lib.bench train

lint: venv
	$(VENV)/bin/ruff check ue_lib tests tools

structure:
	$(PYTHON) tools/structure.py

clean:
	rm -rf $(VENV) runs .pytest_cache
