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
# Byte-compile once per lockfile: where PYTHONDONTWRITEBYTECODE is set (as on these machines) every
# `wan-pipeline` process would otherwise recompile Dagster from source, seconds per command and per test.
MARK=".venv/.bytecode-$(sha256sum uv.lock | cut -c1-16)"
if [ ! -f "$MARK" ]; then
  .venv/bin/python -m compileall -q -j0 .venv/lib/python*/site-packages wan_pipeline >/dev/null 2>&1 || true
  touch "$MARK"
fi
export PATH="$ROOT/.venv/bin:$PATH"
