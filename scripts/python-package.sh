#!/usr/bin/env bash
# Builds the `cvrl` Python package (formats/python: the pyo3 module over cvrl-formats and
# the cvrl / cvrl.torch Python code) as one abi3 wheel with maturin, and installs it into
# the project venv (.venv, made by scripts/setup.sh), so `import cvrl` works there.
#
#   bash scripts/python-package.sh [PROFILE] [--if-stale]
#
# PROFILE: a cargo profile, `dev` (default: what the tests use; the workspace's per-package
# opt-levels optimise the decoding crates, and the build reuses `cargo build`'s dev
# artifacts) or `release` (benchmarks). --if-stale: do nothing when the installed package
# was built from the same sources (formats/, the workspace manifest and lock file), which
# keeps scripts/setup.sh's second run about a second. The wheel lands in target/wheels/PROFILE.
set -euo pipefail
cd "$(dirname "$0")/.."
PROFILE=dev
IF_STALE=0
for arg in "$@"; do
  case "$arg" in
    --if-stale) IF_STALE=1 ;;
    -*) echo "python-package: unknown flag $arg" >&2; exit 2 ;;
    *) PROFILE=$arg ;;
  esac
done
PY=.venv/bin/python
[ -x "$PY" ] || { echo "python-package: $PY missing: run scripts/setup.sh first" >&2; exit 1; }
STAMP=.venv/cvrl-package.stamp
sources=$( (find formats -type f \( -name '*.rs' -o -name '*.toml' -o -name '*.py' \) | LC_ALL=C sort |
  xargs sha256sum; sha256sum Cargo.toml Cargo.lock) | sha256sum | cut -d' ' -f1)
if [ "$IF_STALE" = 1 ] && [ "$(cat "$STAMP" 2>/dev/null)" = "$sources" ] &&
  "$PY" -c "import cvrl" 2>/dev/null; then
  exit 0
fi
OUT=target/wheels/$PROFILE
rm -rf "$OUT"
echo "[python-package] building the cvrl wheel ($PROFILE profile)" >&2
.venv/bin/maturin build --quiet --manifest-path formats/python/Cargo.toml --profile "$PROFILE" \
  --interpreter "$PY" --out "$OUT"
wheel=$(ls "$OUT"/cvrl-*.whl)
"$PY" -m pip install -q --disable-pip-version-check --no-cache-dir --no-deps --force-reinstall "$wheel"
echo "$sources" >"$STAMP"
echo "[python-package] installed $wheel" >&2
