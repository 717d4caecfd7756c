#!/usr/bin/env bash
# Installs the on-the-fly decoding peers that `just bench-loader` compares the shard loader
# with, into the project venv (.venv, made by scripts/setup.sh): decord, PyAV (`av`) and
# torchcodec, pinned. Used only by the benchmark, never by CI or the tests, which is why
# these are not in scripts/setup.sh.
#
# Pins: torchcodec 0.11 is the release paired with torch 2.11 (its compatibility table) and
# loads the system FFmpeg 5.1 libraries; decord 0.6.0 and av 18.1.0 bring their own FFmpeg
# inside the wheel. A peer that does not install is reported and skipped: the benchmark
# prints it as a row with the reason instead of failing (exit status 0 either way).
# Idempotent: a second run checks the versions and returns in about a second.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
[ -x "$PY" ] || { echo "[setup-bench] $PY missing: run scripts/setup.sh first" >&2; exit 1; }

PEERS=("decord==0.6.0" "av==18.1.0" "torchcodec==0.11.1")
for spec in "${PEERS[@]}"; do
  name=${spec%%==*}
  want=${spec##*==}
  have=$("$PY" -c "from importlib.metadata import version; print(version('$name'))" 2>/dev/null || true)
  if [ "$have" = "$want" ]; then
    continue
  fi
  echo "[setup-bench] pip: installing $spec" >&2
  # --no-deps: each peer needs only numpy and torch, both already pinned by setup.sh, and
  # must not move them.
  if ! "$PY" -m pip install -q --disable-pip-version-check --no-deps "$spec" >&2; then
    echo "[setup-bench] warning: $spec did not install; the benchmark will report it as unavailable" >&2
  fi
done
echo "[setup-bench] ok" >&2
