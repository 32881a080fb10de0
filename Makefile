# The two commands of the README. Each one creates/updates .venv and installs the project first.
VENV   ?= .venv
PYTHON ?= python3
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.torchseq-installed

.PHONY: demo test install lint docs

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev,docs]'
	touch $(STAMP)

# One thread: the recurrent cells' small per-step operations gain nothing from a second one, and on a
# busy machine waiting threads make an epoch about three times slower (17 s vs 5 s measured).
demo: $(STAMP)
	OMP_NUM_THREADS=1 $(VENV)/bin/torchseq fit --config experiments/mnist5k_lstm.yaml

# A fixed hypothesis seed: this run draws the same shapes every time (plain pytest draws new ones).
test: $(STAMP)
	$(PY) -m pytest -q -n 2 --hypothesis-seed=0

lint: $(STAMP)
	$(VENV)/bin/ruff check .

# The documentation site (docs/, mkdocs.yml), built strictly into site/: any warning is an error.
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict --site-dir site
