#!/usr/bin/env bash
# The main job: set everything up, build the builtin models on first use (cached in
# ~/.cache/reward-service, reused after), and serve rewards on http://127.0.0.1:8000.
# Extra arguments go to `reward-service serve` (e.g. --config my.yaml --port 9000).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/reward-service serve "$@"
