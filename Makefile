# Two commands do everything on a fresh Debian/Ubuntu machine with Python 3.11+:
#   make run    install what the example needs and serve it on 127.0.0.1
#   make test   install everything, lint, type-check and run the whole suite
.PHONY: run test bench lint typecheck unit integration reliability

HOST ?= 127.0.0.1
PORT ?= 8000

run:
	scripts/bootstrap.sh run
	.venv/bin/python -m examples.notes_service --host $(HOST) --port $(PORT)

test:
	scripts/test.sh

bench:
	scripts/bootstrap.sh bench
	scripts/ensure-system-deps.sh
	@for b in benchmarks/bench_*.py; do echo "== $$b"; .venv/bin/python $$b || exit 1; done

lint:
	.venv/bin/ruff check dtpyfw tests benchmarks examples
	.venv/bin/ruff format --check dtpyfw tests benchmarks examples

typecheck:
	.venv/bin/mypy --strict dtpyfw

unit:
	.venv/bin/python -m pytest -m unit

integration:
	.venv/bin/python -m pytest -m integration

reliability:
	.venv/bin/python -m pytest -m reliability
