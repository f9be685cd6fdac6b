# make demo: the main job (the pipeline) on the embedded task-families benchmark.  make test: the whole test suite.
# Both create .venv when missing and reinstall only when pyproject.toml changed.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test venv clean-venv

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	$(PY) main.py --prepare mini_families
	if [ -f exp/demo/config.json ]; then $(PY) main.py -e demo --continue; \
	else $(PY) main.py -e demo --config exp.demo; fi

test: $(STAMP)
	$(PY) -m pytest -q --durations=10

clean-venv:
	rm -rf $(VENV)
