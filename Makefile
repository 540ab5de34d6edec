# tcur — every target sets up its own environment from nothing.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip install -q -c constraints.txt
STAMP := $(VENV)/.installed

.PHONY: test lint typecheck pytest demo demo-quick bench docs clean finetune finetune-test

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip

$(STAMP): $(VENV)/bin/python pyproject.toml constraints.txt
	$(PIP) -e '.[test,examples,docs]'
	touch $(STAMP)

install: $(STAMP)

lint: $(STAMP)
	$(VENV)/bin/ruff check tcur tests benchmarks examples docs
	$(VENV)/bin/ruff format --check tcur tests benchmarks examples

typecheck: $(STAMP)
	$(VENV)/bin/mypy

pytest: $(STAMP)
	HYPOTHESIS_PROFILE=ci HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 $(PY) -m pytest -q

test: lint typecheck pytest finetune-test docs

demo: $(STAMP)
	HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 PYTHONPATH=examples $(PY) -m tcur_demo

demo-quick: $(STAMP)
	HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 PYTHONPATH=examples $(PY) -m tcur_demo --quick

bench: $(STAMP)
	$(FINETUNE_ENV) $(PY) benchmarks/run_all.py

docs: $(STAMP)
	PYTHONPATH=. $(VENV)/bin/sphinx-build -W --keep-going -q -b html docs docs/_build/html

# The fine-tuning experiments (benchmarks/finetune/): the one PYTHONPATH they need.
# make finetune FT=<entry point> FT_ARGS=<options>, e.g. FT=minilm_rt FT_ARGS=--resume;
# the entry points are listed in benchmarks/finetune/__init__.py.
FINETUNE_ENV := HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 PYTHONPATH=benchmarks:examples
FT ?= minilm_rt
FT_ARGS ?= --quick

finetune: $(STAMP)
	$(FINETUNE_ENV) $(PY) -m finetune.$(FT) $(FT_ARGS)

finetune-test: $(STAMP)
	$(FINETUNE_ENV) $(PY) -m pytest -q -p no:cacheprovider benchmarks/finetune

clean:
	rm -rf $(VENV) docs/_build .pytest_cache .mypy_cache .ruff_cache .hypothesis
