#!/usr/bin/env bash
# Installs everything cvrl needs on a Debian 12 machine that has only Rust, python3 and gcc:
# FFmpeg 5.1 dev packages and CLI, clang + pkg-config (bindgen), gloo's headers (the trainer's
# c10d shim), a project venv holding torch==2.11.0 (the libtorch that tch 0.24 links), `just`
# and the `cvrl` Python package.
# Idempotent: a second run checks and returns in about a second.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
TORCH_VERSION=2.11.0
JUST_VERSION=1.59.0

say() { printf '[setup] %s\n' "$*" >&2; }
sudo_if_needed() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

# libgloo-dev: the headers ProcessGroupGloo.hpp includes, which the torch wheel lacks (the
# trainer's build.rs compiles its c10d shim against them; libtorch carries gloo's code).
APT_PKGS=(pkg-config clang ffmpeg libavcodec-dev libavformat-dev libavutil-dev libswscale-dev
  libavfilter-dev libavdevice-dev libgloo-dev)
missing=()
for p in "${APT_PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  say "apt: installing ${missing[*]}"
  sudo_if_needed apt-get update -qq
  DEBIAN_FRONTEND=noninteractive sudo_if_needed apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

VENV=$ROOT/.venv
if [ ! -x "$VENV/bin/python" ]; then
  say "creating $VENV"
  python3 -m venv "$VENV"
fi
# torch==2.11.0 is the libtorch that tch 0.24 links; the rest are test and benchmark helpers:
# just, pyarrow and duckdb (the index must open in them), numpy + zstandard (the reader
# written from FORMAT.md alone), tensorboard (reads back the trainer's event files), the
# CUDA 13.0 headers that torch's wheels leave out but ProcessGroupNCCL.hpp needs (crt/, libcu++):
# with them the trainer's c10d shim gets its NCCL backend, maturin (builds the cvrl
# Python package, below) and scikit-image (its bundled sample photographs are the proxy's
# realistic backgrounds: scripts/export-textures.py).
PY_PKGS=("torch==$TORCH_VERSION" "rust-just==$JUST_VERSION" "pyarrow==26.0.1" "duckdb==2.0.0"
  "zstandard==0.25.0" "numpy==2.4.6" "tensorboard==2.21.0" "nvidia-cuda-crt==13.0.88"
  "nvidia-cuda-cccl==13.0.85" "maturin==1.16.0" "scikit-image==0.26.0")
mapfile -t need < <("$VENV/bin/python" - "${PY_PKGS[@]}" <<'PY'
import sys
from importlib.metadata import PackageNotFoundError, version
for spec in sys.argv[1:]:
    name, want = spec.split("==")
    try:
        ok = version(name).split("+")[0] == want
    except PackageNotFoundError:
        ok = False
    if not ok:
        print(spec)
PY
)
if [ ${#need[@]} -gt 0 ]; then
  say "pip: installing ${need[*]} (torch is 4.6 GB: 1-2 minutes)"
  # No wheel cache: it would hold a second copy of torch's 3 GB of wheels on disk.
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check --no-cache-dir "${need[@]}"
fi
# Put `just` on PATH for the README's commands.
for dir in /usr/local/bin "$HOME/.cargo/bin"; do
  if [ -w "$dir" ]; then
    [ "$(readlink "$dir/just" 2>/dev/null)" = "$VENV/bin/just" ] || ln -sf "$VENV/bin/just" "$dir/just"
    break
  fi
done
# The cvrl Python package (formats/python) into the venv, so `import cvrl` works; rebuilt
# only when its sources change (a cargo dev build: minutes the first time).
bash scripts/python-package.sh --if-stale
say "ok (libtorch: $VENV/lib/python3.11/site-packages/torch)"
