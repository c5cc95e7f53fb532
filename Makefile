# make demo  - set up, build sample images, scan them, and open the findings in Datasette
# make test  - set up and run the test suite
# make bench - the committed benchmarks (need ../shared/corpus)

PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
DEMO_FLAGS ?=

.PHONY: install demo test bench clean

$(BIN)/.installed: pyproject.toml setup.py
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@

# Byte-compile the project's own modules, as pip does for an installed wheel: an editable install under
# PYTHONDONTWRITEBYTECODE=1 (set on CI machines) would otherwise compile ~100 modules from source in every
# stowaway process (~0.2 s CPU each: a third of a rescan). Up-to-date files are skipped; edited ones go stale
# and are compiled again at the next `make`.
install: $(BIN)/.installed
	$(BIN)/python -m compileall -q -j0 ingest analyzers datasette_plugin notebooks >/dev/null

demo: install
	$(BIN)/stowaway demo --dir demo $(DEMO_FLAGS)

test: install
	$(BIN)/python -m pytest

bench: install
	$(BIN)/python -m pip install --quiet -e '.[bench]'
	$(BIN)/python tests/bench/bench_scan_files.py

clean:
	rm -rf demo build *.egg-info .pytest_cache
