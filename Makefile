# Entry points; each target installs what it needs.
PYTHON ?= python3
VENV ?= .venv

.PHONY: demo test lint deb rpm bench clean

demo:
	bash tests/demo.sh

test:
	bash tests/run-all.sh

LINT_PATHS = ecr_agent tests $(wildcard benchmarks)

lint:
	[ -x $(VENV)/bin/ruff ] || { $(PYTHON) -m venv $(VENV) && $(VENV)/bin/pip install -q -r tests/requirements.txt; }
	$(VENV)/bin/ruff format --check $(LINT_PATHS)
	$(VENV)/bin/ruff check $(LINT_PATHS)

deb:
	bash packaging/build-deb.sh

rpm:
	bash packaging/build-rpm.sh

bench:
	bash benchmarks/run.sh

clean:
	rm -rf dist build .venv .venv-debian12 *.egg-info
