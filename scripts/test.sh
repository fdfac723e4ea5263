#!/usr/bin/env bash
# One command: install, then lint (ruff), type-check (mypy) and run the test suite (pytest).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/bootstrap.sh"
ruff check wan_pipeline tests benchmarks
mypy
pytest -q "$@"
