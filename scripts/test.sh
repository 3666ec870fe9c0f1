#!/usr/bin/env bash
# The whole check, as CI runs it: install, lint, type-check, then every test.
# Backing services (PostgreSQL, Redis) are started by the test harness itself
# when none is running; this script only makes sure their binaries exist.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh test
scripts/ensure-system-deps.sh
echo "== ruff"
.venv/bin/ruff check dtpyfw tests benchmarks examples
.venv/bin/ruff format --check dtpyfw tests benchmarks examples
echo "== mypy --strict dtpyfw"
.venv/bin/mypy --strict dtpyfw
echo "== pytest"
# Coverage is off for now: under coverage's tracer the worker's hard-time-limit
# test spins without finishing (known issue, see CHANGELOG). Branch coverage is
# run by hand with: .venv/bin/python -m coverage run -m pytest; coverage report
.venv/bin/python -m pytest "$@"
