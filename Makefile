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
	@# media-server/ is the package media_server; mypy sees it through a symlinked path
	@mkdir -p build/typecheck && ln -sfn ../../media-server build/typecheck/media_server
	MYPYPATH=build/typecheck .venv/bin/mypy -p bot -p media_server

doctor:
	@.venv/bin/receptionist doctor
