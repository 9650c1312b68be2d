# latentstitch: `make run` and `make test` do all their set-up on a fresh machine.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
FASHION_MNIST := /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz
export HF_HUB_OFFLINE ?= 1
export WANDB_MODE ?= offline

.PHONY: run test test-slow install data clean-cache

install: $(STAMP)

# Reinstalls only when pyproject.toml changes. torch/torchvision are pinned together first so
# nothing else can pull another torch build.
$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet torch==2.14.1 torchvision==0.29.1
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

# Fashion-MNIST from Debian's dataset-fashion-mnist (IDX files), when apt-get is usable.
data: $(FASHION_MNIST)

$(FASHION_MNIST):
	@if command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist; \
	else \
		echo "apt-get unavailable: put the Fashion-MNIST IDX files in data/fashion_mnist/ (see README)"; \
	fi

run: install data
	$(PY) run.py

test: install data
	$(PY) -m pytest -m "not slow" -q

test-slow: install data
	$(PY) -m pytest -m slow -q

clean-cache:
	rm -rf .cache/latentstitch
