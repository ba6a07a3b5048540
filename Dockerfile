# syntax=docker/dockerfile:1
# reward-service images. Targets:
#   docker build --target cpu -t reward-service:cpu .
#   docker build --target gpu -t reward-service:gpu .      (CUDA torch: bf16 + SDPA; no onnxruntime-gpu)
# Builtin models are built at image build time (BUILD_MODELS="sentiment rm", the default;
# set BUILD_MODELS="" to mount them at /models instead).
# The environment is made by scripts/setup.sh: the same script CI runs.

ARG PYTHON_IMAGE=python:3.11-slim

FROM ${PYTHON_IMAGE} AS source
WORKDIR /src
COPY pyproject.toml README.md ./
COPY reward_service reward_service
COPY trainer_client trainer_client
COPY scripts scripts

FROM source AS build-cpu
ENV VENV=/opt/venv REWARD_SERVICE_EXTRAS=cpu,train EDITABLE=0 \
    TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu PIP_NO_CACHE_DIR=1
RUN bash scripts/setup.sh
ARG BUILD_MODELS="sentiment rm"
ENV REWARD_SERVICE_HOME=/models
RUN for m in $BUILD_MODELS; do /opt/venv/bin/reward-service models build "$m"; done; mkdir -p /models

FROM source AS build-gpu
ARG TORCH_CUDA_INDEX=https://download.pytorch.org/whl/cu128
ENV VENV=/opt/venv REWARD_SERVICE_EXTRAS=gpu,train EDITABLE=0 PIP_NO_CACHE_DIR=1 \
    TORCH_INDEX_URL=${TORCH_CUDA_INDEX}
RUN bash scripts/setup.sh
ARG BUILD_MODELS="sentiment rm"
ENV REWARD_SERVICE_HOME=/models
RUN for m in $BUILD_MODELS; do /opt/venv/bin/reward-service models build "$m"; done; mkdir -p /models

FROM ${PYTHON_IMAGE} AS runtime-base
RUN useradd --create-home --uid 10001 reward
ENV PATH=/opt/venv/bin:$PATH REWARD_SERVICE_HOME=/models PYTHONUNBUFFERED=1
EXPOSE 8000
HEALTHCHECK --interval=15s --timeout=3s --start-period=120s --retries=3 \
  CMD python -c "import urllib.request,sys; sys.exit(urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=2).status != 200)"
ENTRYPOINT ["reward-service"]
CMD ["serve", "--host", "0.0.0.0", "--port", "8000"]

FROM runtime-base AS cpu
COPY --from=build-cpu /opt/venv /opt/venv
COPY --from=build-cpu --chown=reward:reward /models /models
USER reward

FROM runtime-base AS gpu
COPY --from=build-gpu /opt/venv /opt/venv
COPY --from=build-gpu --chown=reward:reward /models /models
USER reward
