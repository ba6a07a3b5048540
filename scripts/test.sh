#!/usr/bin/env bash
# The test suite (fast: tiny random models). Slow end-to-end tests: scripts/test.sh -m slow
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python -m pytest "$@"
