# Two commands on a fresh Debian/Ubuntu machine:  make run  and  make test.
.PHONY: setup setup-test run test lint doctor

setup:
	@bash scripts/setup.sh

setup-test:
	@bash scripts/setup.sh --test

run: setup
	@exec .venv/bin/receptionist up

test: setup-test
	@.venv/bin/python -m pytest $(PYTEST_ARGS)

lint:
	.venv/bin/ruff check .
	.venv/bin/ruff format --check .
	.venv/bin/mypy

doctor:
	@.venv/bin/receptionist doctor
