# The two commands a newcomer needs: `make run` and `make test`.
PYTHON ?= python3.11
VENV ?= .venv

.PHONY: run test test-sqlite test-mariadb bench lint clean

run:
	@PYTHON=$(PYTHON) VENV=$(VENV) bash scripts/run.sh

test:
	@PYTHON=$(PYTHON) VENV=$(VENV) bash scripts/test.sh

# One database only (after `make test` installed everything once).
test-sqlite:
	@PYTHON=$(PYTHON) VENV=$(VENV) ONLY=sqlite bash scripts/test.sh

test-mariadb:
	@PYTHON=$(PYTHON) VENV=$(VENV) ONLY=mariadb bash scripts/test.sh

bench:
	@PYTHON=$(PYTHON) VENV=$(VENV) bash scripts/bench.sh

lint:
	@PYTHON=$(PYTHON) VENV=$(VENV) bash scripts/lint.sh

clean:
	rm -rf var .pytest_cache
