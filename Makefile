# Entry points; each target installs what it needs.
PYTHON ?= python3
VENV ?= .venv

.PHONY: demo test lint deb rpm bench clean

demo:
	bash tests/demo.sh

test:
	bash tests/run-all.sh

lint: $(VENV)/bin/ruff
	$(VENV)/bin/ruff format --check ecr_agent tests benchmarks
	$(VENV)/bin/ruff check ecr_agent tests benchmarks

deb:
	bash packaging/build-deb.sh

rpm:
	bash packaging/build-rpm.sh

bench:
	bash benchmarks/run.sh

clean:
	rm -rf dist build .venv .venv-debian12 *.egg-info
