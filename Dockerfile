# tinytracker training image. The CUDA runtime comes with the torch wheels (nvidia-* packages),
# so any Python 3.11 base works on a host with the NVIDIA container toolkit; pick another base
# (e.g. a cluster's own CUDA image with Python 3.11) with --build-arg BASE_IMAGE=...
ARG BASE_IMAGE=python:3.11-slim-bookworm
FROM ${BASE_IMAGE}

ENV PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_PROGRESS_BAR=off
WORKDIR /opt/tinytracker
COPY pyproject.toml README.md ./
COPY tinytracker ./tinytracker
COPY conf ./conf
COPY sweeps ./sweeps

# The README's install command.
RUN python3.11 -m venv .venv && .venv/bin/pip install -e '.[test]' && .venv/bin/pip install --no-deps sweeps==0.3.0 && python3.11 -m venv .venv-imx500 && .venv-imx500/bin/pip install 'imx500-converter[pt]==3.19.2'

ENV PATH=/opt/tinytracker/.venv/bin:$PATH \
    TINYTRACKER_CACHE_DIR=/cache \
    WANDB_MODE=offline
VOLUME ["/cache", "/opt/tinytracker/outputs"]
CMD ["python", "-m", "tinytracker.train"]
