#!/usr/bin/env bash
# Creates .venv with the locked dependencies (uv.lock). Sourced by demo.sh and test.sh; safe to re-run.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PY="${PYTHON:-python3}"
export UV_PYTHON_DOWNLOADS=never  # use the machine's Python 3.11/3.12; never fetch a toolchain
if ! command -v uv >/dev/null 2>&1 && ! "$PY" -m uv --version >/dev/null 2>&1; then
  echo "bootstrap: installing uv from PyPI" >&2
  "$PY" -m pip install --quiet --disable-pip-version-check uv >&2
fi
UV="uv"; command -v uv >/dev/null 2>&1 || UV="$PY -m uv"
$UV sync --locked --extra dev --python "$PY" --quiet >&2
export PATH="$ROOT/.venv/bin:$PATH"
