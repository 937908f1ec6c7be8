# vaegan inference service.
#   GPU (default):  docker build -t vaegan:cuda .
#   CPU:            docker build --build-arg VARIANT=cpu -t vaegan:cpu .
ARG VARIANT=cuda

# ---- operating systems: one per variant ---------------------------------------------------------
FROM nvidia/cuda:12.6.3-cudnn-runtime-ubuntu24.04 AS os-cuda
# Distribution packages are not pinned: the base image tag already fixes the Ubuntu release, and
# pinned Ubuntu point versions vanish from the archive within weeks, breaking rebuilds.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-venv \
    && rm -rf /var/lib/apt/lists/*
ENV TORCH_INDEX_URL=https://download.pytorch.org/whl/cu126

FROM python:3.12-slim-bookworm AS os-cpu
ENV TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu

# ---- build: a virtual environment with the dependencies, then the package ----------------------
# os-${VARIANT} is one of the stages above, not an image from a registry, so it has no tag.
# hadolint ignore=DL3006
FROM os-${VARIANT} AS builder
ARG TORCH_VERSION=2.13.0
RUN python3 -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
# PyTorch from its own index, the build for this variant: PyPI's x86_64 Linux wheel is the CUDA
# build (several GB with its NVIDIA libraries), which the CPU image must not carry; the cuda image
# takes the build for CUDA 12.6, its base image's.
RUN pip install --index-url "${TORCH_INDEX_URL}" "torch==${TORCH_VERSION}"
# Dependencies first, from pyproject alone, so source edits do not re-download them.
COPY pyproject.toml README.md ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" > requirements.txt \
    && pip install -r requirements.txt
COPY model ./model
COPY training ./training
COPY service ./service
RUN pip install --no-deps .

# ---- runtime: serves the demo model bundled in the package unless VAEGAN_CHECKPOINT is set ---
# hadolint ignore=DL3006
FROM os-${VARIANT} AS runtime
COPY --from=builder /opt/venv /opt/venv
RUN useradd --create-home --uid 10001 --user-group vaegan
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    VAEGAN_HOST=0.0.0.0 \
    VAEGAN_PORT=8000
WORKDIR /opt/vaegan
COPY --chown=vaegan:vaegan checkpoints/ ./checkpoints/
USER 10001:10001
EXPOSE 8000
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:8000/health/ready', timeout=4).status != 200)"]
# Exec form: vaegan-serve is PID 1 and receives SIGTERM itself, so uvicorn drains gracefully.
CMD ["vaegan-serve", "--host", "0.0.0.0", "--port", "8000"]
