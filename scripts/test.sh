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
echo "== pytest, under branch coverage ([tool.coverage] in pyproject.toml)"
status=0
.venv/bin/python -m coverage run -m pytest "$@" || status=$?
echo "== coverage report"
# pytest's status is the verdict; a failing report only fails a passing run.
.venv/bin/python -m coverage report || [ "$status" -ne 0 ]
exit "$status"
