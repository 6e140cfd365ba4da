# syntax=docker/dockerfile:1
# gradserve: the HTTP (8000) and gRPC (50051) servers in one process.
#
#   docker build -t gradserve .                                # CPU (NumPy)
#   docker build --build-arg VARIANT=gpu -t gradserve:gpu .    # GPU (CuPy on CUDA 12)
#
# Dependencies are installed from the lock files that scripts/lock.sh writes from pyproject.toml,
# every file checked against its hash. Configure the container with GRADSERVE_* variables
# (service/config.py); tests/deploy/ checks this file against the CLI and the settings.

ARG VARIANT=cpu
ARG PYTHON_IMAGE=python:3.11-slim-bookworm
ARG CUDA_IMAGE=nvidia/cuda:12.6.3-runtime-ubuntu22.04

# ---- the interpreter of each variant: python3.11 on PATH ----
FROM ${PYTHON_IMAGE} AS python-cpu

FROM ${CUDA_IMAGE} AS python-gpu
ARG DEBIAN_FRONTEND=noninteractive
# Ubuntu's python3.11 follows its security updates; a pinned Debian version would stop doing so.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3.11 python3.11-venv \
    && rm -rf /var/lib/apt/lists/*

# A stage of this file, picked by VARIANT (cpu or gpu); its images are tagged above.
# hadolint ignore=DL3006
FROM python-${VARIANT} AS base
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1

# ---- build: locked dependencies into /opt/venv, then gradserve's own wheel ----
FROM base AS builder
ARG VARIANT
ARG DEBIAN_FRONTEND=noninteractive
WORKDIR /src
# A C compiler for the engine's optional module (engine/_spin.c: the thread team's waits);
# the wheel carries it built, the runtime image needs no compiler.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends gcc libc6-dev \
    && if [ "${VARIANT}" = gpu ]; then apt-get install -y --no-install-recommends python3.11-dev; fi \
    && rm -rf /var/lib/apt/lists/*
COPY requirements.lock requirements-gpu.lock requirements-build.lock ./
RUN python3.11 -m venv /opt/venv \
    && lock=requirements.lock \
    && if [ "${VARIANT}" = gpu ]; then lock=requirements-gpu.lock; fi \
    && /opt/venv/bin/pip install --require-hashes --only-binary=:all: -r "${lock}"
RUN python3.11 -m venv /opt/build \
    && /opt/build/bin/pip install --require-hashes --only-binary=:all: -r requirements-build.lock
COPY pyproject.toml README.md ./
COPY engine/ engine/
COPY service/ service/
COPY client/ client/
RUN /opt/build/bin/pip wheel --no-deps --no-build-isolation --wheel-dir /wheels . \
    && /opt/venv/bin/pip install --no-deps /wheels/gradserve-*.whl

# ---- runtime: the virtual environment and nothing else, run as a non-root user ----
FROM base AS runtime
ARG VARIANT
LABEL org.opencontainers.image.title="gradserve" \
      org.opencontainers.image.description="Automatic differentiation as a service (${VARIANT})"
RUN useradd --uid 10001 --user-group --create-home --shell /usr/sbin/nologin gradserve
COPY --from=builder /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:${PATH} \
    GRADSERVE_HOST=0.0.0.0
USER 10001:10001
WORKDIR /home/gradserve
EXPOSE 8000 50051
HEALTHCHECK --interval=10s --timeout=3s --start-period=15s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('GRADSERVE_HTTP_PORT', '8000'), timeout=2)"]
STOPSIGNAL SIGTERM
CMD ["gradserve", "serve"]
