#!/usr/bin/env bash
# The project's test command: set up, lint, type-check, then run the whole suite
# against real peers (distribution, skopeo, umoci, pycrane's own registry).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/ruff check src tests bench
.venv/bin/ruff format --check src tests bench
.venv/bin/mypy
exec .venv/bin/python -m pytest -q -ra "$@"
