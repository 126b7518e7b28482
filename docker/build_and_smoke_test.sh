#!/usr/bin/env bash
# Build the tinytracker image from ./Dockerfile with buildah (no Docker engine needed), then run
# a fast training run inside it and print the build time and image size.
#
#   docker/build_and_smoke_test.sh [extra Hydra overrides for the smoke run ...]
#
# Needs root and Debian's buildah and debootstrap (apt-get install -y buildah debootstrap), and
# network access to PyPI (the Dockerfile's RUN step installs from it).
#
# Environment (all optional):
#   TINYTRACKER_BUILDAH_DIR  buildah storage, kept between runs    (/var/tmp/tinytracker-buildah)
#   TINYTRACKER_IMAGE        tag of the built image                (localhost/tinytracker:latest)
#   BASE_IMAGE               base image already in that storage; unset: a stand-in for
#                            python:3.11-slim-bookworm is made with debootstrap on first use
#   DEBIAN_MIRROR            mirror for debootstrap                (http://deb.debian.org/debian)
#   TINYTRACKER_BUILD_CA_BUNDLE  CA bundle pip should trust during the build (default: $PIP_CERT,
#                            else $SSL_CERT_FILE, when set), for a TLS-intercepting proxy; it
#                            is mounted for the RUN step only and never copied into the image
#
# Registry images cannot be pulled here, so the build never pulls (--pull=never). Storage is
# vfs (works without overlayfs or fuse; every layer is a full copy, so a build needs ~20 GB
# free) and RUN steps use chroot isolation (works inside an unprivileged container).
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
STORE=${TINYTRACKER_BUILDAH_DIR:-/var/tmp/tinytracker-buildah}
IMAGE=${TINYTRACKER_IMAGE:-localhost/tinytracker:latest}
STANDIN=localhost/tinytracker-base:python3.11-bookworm
BASE=${BASE_IMAGE:-$STANDIN}
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
SMOKE=(python -m tinytracker.train trainer.fast_dev_run=true "$@")

for tool in buildah debootstrap; do
  command -v "$tool" >/dev/null || { echo "error: $tool not found; install it with:" \
    "apt-get install -y buildah debootstrap" >&2; exit 1; }
done
[[ $(id -u) == 0 ]] || { echo "error: run as root (debootstrap and vfs storage need it)" >&2; exit 1; }

bh() { buildah --root "$STORE/root" --runroot "$STORE/runroot" --storage-driver vfs "$@"; }
export BUILDAH_ISOLATION=chroot
mkdir -p "$STORE"

# Working containers and the debootstrap tree go away however the script ends.
CONTAINERS=()
ROOTFS=""
cleanup() {
  for c in "${CONTAINERS[@]}"; do bh rm "$c" >/dev/null 2>&1 || true; done
  [[ -n $ROOTFS ]] && rm -rf "$ROOTFS"
  return 0
}
trap cleanup EXIT

# What python:3.11-slim-bookworm gives the Dockerfile: python3.11 (and python) with venv,
# pip and CA certificates. Debian bookworm's python3 is 3.11.
make_standin_base() {
  echo "== making the stand-in base $STANDIN with debootstrap (minbase bookworm)"
  ROOTFS=$(mktemp -d "$STORE/debootstrap.XXXXXX")
  debootstrap --variant=minbase \
    --include=python3.11,python3.11-venv,python3-pip,python-is-python3,ca-certificates \
    bookworm "$ROOTFS" "$MIRROR" >"$STORE/debootstrap.log" 2>&1 \
    || { tail -20 "$STORE/debootstrap.log" >&2; exit 1; }
  rm -rf "$ROOTFS"/var/cache/apt/archives/*.deb "$ROOTFS"/var/lib/apt/lists/*
  local ctr mnt
  ctr=$(bh from scratch); CONTAINERS+=("$ctr")
  mnt=$(bh mount "$ctr")
  tar -C "$ROOTFS" -cf - . | tar -C "$mnt" -xpf -
  bh umount "$ctr" >/dev/null
  bh config --env LANG=C.UTF-8 \
    --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    --cmd python3 "$ctr"
  bh commit --quiet --rm "$ctr" "$STANDIN" >/dev/null
  CONTAINERS=()
  rm -rf "$ROOTFS"; ROOTFS=""
}

if ! bh inspect --type image "$BASE" >/dev/null 2>&1; then
  if [[ $BASE == "$STANDIN" ]]; then
    make_standin_base
  else
    echo "error: BASE_IMAGE=$BASE is not in $STORE/root (this script never pulls)" >&2
    exit 1
  fi
fi

BUILD_ARGS=(--build-arg "BASE_IMAGE=$BASE")
CA_BUNDLE=${TINYTRACKER_BUILD_CA_BUNDLE:-${PIP_CERT:-${SSL_CERT_FILE:-}}}
if [[ -n $CA_BUNDLE ]]; then
  [[ -f $CA_BUNDLE ]] || { echo "error: CA bundle $CA_BUNDLE does not exist" >&2; exit 1; }
  BUILD_ARGS+=(--volume "$(realpath "$CA_BUNDLE"):/run/build-ca-bundle.crt:ro"
               --build-arg PIP_CERT=/run/build-ca-bundle.crt)
fi

echo "== building $IMAGE from $REPO/Dockerfile on $BASE"
start=$(date +%s)
bh build --pull=never "${BUILD_ARGS[@]}" -f "$REPO/Dockerfile" -t "$IMAGE" "$REPO"
build_s=$(( $(date +%s) - start ))
bh rmi --prune >/dev/null 2>&1 || true   # the previous build of this tag, now untagged

echo "== smoke test in a container of $IMAGE: ${SMOKE[*]}"
ctr=$(bh from --pull=never "$IMAGE"); CONTAINERS+=("$ctr")
bh run "$ctr" -- python -c "import torch; print('torch', torch.__version__, 'CUDA', torch.version.cuda, 'cuDNN', torch.backends.cudnn.version())"
bh run "$ctr" -- python -c "import cv2, onnxruntime, ai_edge_litert.interpreter, brevitas, model_compression_toolkit, wandb; print('imports ok: opencv', cv2.__version__, 'onnxruntime', onnxruntime.__version__)"
bh run "$ctr" -- .venv-imx500/bin/imxconv-pt --version
bh run "$ctr" -- .venv-litert/bin/python -c "import importlib.metadata as m; print('litert-torch', m.version('litert-torch'), 'tflite-micro', m.version('tflite-micro'))"
start=$(date +%s)
# One shell, so the run's directory (under the image's outputs volume) is still there to read.
bh run "$ctr" -- sh -c '"$@" && for m in outputs/train/*/metrics.json; do
  [ -f "$m" ] && echo "== $m" && cat "$m"; done; true' sh "${SMOKE[@]}"
smoke_s=$(( $(date +%s) - start ))
bh rm "$ctr" >/dev/null; CONTAINERS=()

size=$(bh images --format '{{.Size}}' "$IMAGE" | head -1)
echo "== passed: ${SMOKE[*]}"
echo "build wall time: ${build_s} s; smoke run: ${smoke_s} s"
echo "image $IMAGE: ${size} (uncompressed, as buildah reports it)"
echo "buildah storage $STORE: $(du -sh "$STORE" | cut -f1)"
