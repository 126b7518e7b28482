# tinytracker training image: the pinned stack of pyproject.toml installed by the README's install
# command (.venv/ with the package, editable, .venv-imx500/ with Sony's IMX500 converter and
# .venv-litert/ with Google's LiteRT converter and TFLite Micro).
#
# CUDA: the torch and torchvision wheels from PyPI (x86_64) bring the CUDA runtime, cuDNN and NCCL
# as nvidia-* wheels (torch 2.14.1 from PyPI is built for CUDA 13.0: NVIDIA driver >= 580), so any
# Python 3.11 base works on a host with the NVIDIA Container Toolkit (docker run --gpus all).
#   --build-arg BASE_IMAGE=...           another Python 3.11 base, e.g. a cluster's own image
#   --build-arg PIP_EXTRA_INDEX_URL=https://download.pytorch.org/whl/cu126
#                                        torch/torchvision 2.14.1/0.29.1 built for another CUDA
#                                        (an older driver); the +cu126 builds win over PyPI's
ARG BASE_IMAGE=python:3.11-slim-bookworm
FROM ${BASE_IMAGE}

# pip settings for the install step only; unset unless given, and not kept in the image's
# environment (docker/build_and_smoke_test.sh uses PIP_CERT for a TLS-intercepting proxy).
ARG PIP_INDEX_URL
ARG PIP_EXTRA_INDEX_URL
ARG PIP_CERT

ENV PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_PROGRESS_BAR=off PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /opt/tinytracker
COPY pyproject.toml README.md ./
COPY tinytracker ./tinytracker
COPY sweeps ./sweeps

# The README's install command (tests/test_repo.py keeps the two equal).
RUN python3.11 -m venv .venv && .venv/bin/pip install -e '.[test]' && .venv/bin/pip install --no-deps sweeps==0.3.0 && python3.11 -m venv .venv-imx500 && .venv-imx500/bin/pip install 'imx500-converter[pt]==3.19.2' && python3.11 -m venv .venv-litert && .venv-litert/bin/pip install 'torch==2.13.0' 'litert-torch==0.10.0' 'tflite-micro==0.dev20261023182759'

# Runs write outputs/ (and multirun/ for -m sweeps) under the working directory; datasets are
# generated or prepared into $TINYTRACKER_CACHE_DIR. Mount volumes there to keep them.
# NO_ALBUMENTATIONS_UPDATE: albumentations otherwise asks PyPI for a newer version at every
# import, which waits on compute nodes without internet.
ENV PATH=/opt/tinytracker/.venv/bin:$PATH \
    TINYTRACKER_CACHE_DIR=/cache \
    WANDB_MODE=offline \
    NO_ALBUMENTATIONS_UPDATE=1
VOLUME ["/cache", "/opt/tinytracker/outputs"]
CMD ["python", "-m", "tinytracker.train"]
