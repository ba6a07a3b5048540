#!/usr/bin/env bash
# The main job, from a fresh clone:
#   1. set up .venv (scripts/setup.sh),
#   2. build the builtin models on first use (cached in ~/.cache/reward-service, reused after),
#   3. start the service on the embedded default config (http://127.0.0.1:$PORT),
#   4. run PPO (ppo-train) against its sentiment backend: SmolLM2-135M learns to write
#      positive movie-review continuations, one /score call per rollout batch,
#   5. keep serving until Ctrl-C.
# Environment: CONFIG (a config file; default: the embedded one), PORT (8000),
# PPO_STEPS (60), SKIP_PPO=1 to only serve.
set -euo pipefail
cd "$(dirname "$0")/.."
PORT=${PORT:-8000}
bash scripts/setup.sh
mkdir -p runs
config=(); [ -n "${CONFIG:-}" ] && config=(--config "$CONFIG")

.venv/bin/reward-service models prepare "${config[@]}"   # builds what the config needs, once
.venv/bin/reward-service serve --port "$PORT" "${config[@]}" > runs/service.log 2>&1 &
service=$!
trap 'kill $service 2>/dev/null || true' EXIT INT TERM
echo "reward-service starting on http://127.0.0.1:$PORT (log: runs/service.log)"

if [ "${SKIP_PPO:-0}" != 1 ]; then
  .venv/bin/ppo-train --service-url "http://127.0.0.1:$PORT" --backend sentiment \
    --steps "${PPO_STEPS:-60}" --output-dir runs/ppo --wait-for-service 3600
fi
echo "reward-service is serving on http://127.0.0.1:$PORT; Ctrl-C to stop"
wait "$service"
