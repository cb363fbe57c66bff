#!/usr/bin/env bash
# The project's test command: set up, lint, type-check, then run the whole suite
# against real peers (distribution, skopeo, umoci, Docker, pycrane's own registry).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/ruff check src tests bench
.venv/bin/ruff format --check src tests bench
.venv/bin/mypy
# The package runs on Windows and macOS too: type-check their code paths as well.
.venv/bin/mypy --platform win32 --cache-dir .mypy_cache/win32
.venv/bin/mypy --platform darwin --cache-dir .mypy_cache/darwin
exec .venv/bin/python -m pytest -q -ra "$@"
