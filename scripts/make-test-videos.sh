#!/usr/bin/env bash
# Generates the small real videos that cvrl's tests decode, with the ffmpeg CLI only:
#
#   OUT/videos/<class>/<name>.<ext>   good files, Kinetics class-folder layout (3 classes)
#   OUT/broken/<name>.mp4             files every decoder must reject without panicking
#   OUT/mixed/<class>/...             good and broken files together, for end-to-end runs
#   OUT/manifest.tsv                  what each file is and what a decoder must make of it
#
# Usage: scripts/make-test-videos.sh OUT_DIR
#
# Deterministic: single-threaded encoders, bitexact muxing, no wall-clock metadata, and the
# "random" corruption comes from a fixed LCG, so two runs give byte-identical files.
# Idempotent: OUT/.done holds this script's sha256; a rerun of an unchanged script only
# prints the summary. Concurrent runs (parallel test processes) serialise on OUT/.lock.
set -euo pipefail

if [ $# -ne 1 ]; then
  echo "usage: $0 OUT_DIR" >&2
  exit 64
fi
command -v ffmpeg >/dev/null || { echo "make-test-videos: ffmpeg not found on PATH" >&2; exit 1; }

OUT=$1
SCRIPT_SHA=$(sha256sum "$0" | cut -d' ' -f1)
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)

summary() { echo "make-test-videos: 9 good, 9 broken videos in $OUT${1:-}"; }

if command -v flock >/dev/null; then
  exec 9>"$OUT/.lock"
  flock 9
fi
if [ -f "$OUT/.done" ] && [ "$(cat "$OUT/.done")" = "$SCRIPT_SHA" ]; then
  summary " (cached)"
  exit 0
fi

BUILD=$(mktemp -d "$OUT/.build.XXXXXX")
trap 'rm -rf "$BUILD"' EXIT
V=$BUILD/videos
B=$BUILD/broken
mkdir -p "$V/archery" "$V/bowling" "$V/juggling" "$B"

# Quiet unless something fails; ffmpeg's own error text then explains why.
ff() {
  if ! ffmpeg -hide_banner -loglevel error -nostdin -y "$@"; then
    echo "make-test-videos: ffmpeg failed: ffmpeg $*" >&2
    exit 1
  fi
}
# Every encode is single-threaded (x264 and libvpx output depends on the thread count),
# bitexact (no encoder version strings) and without metadata, so bytes are reproducible.
DET=(-threads 1 -fflags +bitexact -flags:v +bitexact -map_metadata -1)
X264=(-c:v libx264 -preset veryfast -pix_fmt yuv420p "${DET[@]}")
# SOURCE with a red square crossing it at SPEED px/s, so that consecutive frames always
# differ, as a lavfi input graph. (drawbox in FFmpeg 5.1 evaluates x and y only once, so a
# drawbox square would stand still; overlay evaluates them per frame.)
moving() { # SOURCE SPEED RATE
  local square="color=c=red:s=20x20:r=$3[sq]"
  echo "$1[bg];$square;[bg][sq]overlay=x='mod(t*$2,W-w)':y='H/3':shortest=1[out0]"
}

# h264 mp4, 160x120, 25 fps, 2 s = 50 frames; moov first so truncation leaves the index.
ff -f lavfi -i "$(moving "testsrc2=s=160x120:r=25:d=2" 60 25)" "${X264[@]}" -movflags +faststart \
  "$V/archery/testsrc2_h264.mp4"
# vp9 webm, 160x120, 25 fps, 2 s.
ff -f lavfi -i "$(moving "mandelbrot=s=160x120:r=25,trim=duration=2" 50 25)" -c:v libvpx-vp9 \
  -deadline realtime -cpu-used 8 -b:v 300k -pix_fmt yuv420p "${DET[@]}" \
  "$V/archery/mandelbrot_vp9.webm"
# mpeg4 part 2 in avi, 160x120, 25 fps, 2 s.
ff -f lavfi -i "$(moving "smptebars=s=160x120:r=25:d=2" 70 25)" -c:v mpeg4 -q:v 3 "${DET[@]}" \
  "$V/bowling/smptebars_mpeg4.avi"
# Odd size: 161x97 yuv420p (chroma 81x49) in vp9, which, unlike x264, takes odd sizes.
# (testsrc2 itself would round a yuv420p picture down to 160x96, hence the rgb24 detour.)
ff -f lavfi -i "$(moving "testsrc2=s=161x97:r=25:d=2,format=rgb24" 40 25)" -c:v libvpx-vp9 \
  -deadline realtime -cpu-used 8 -b:v 300k -pix_fmt yuv420p "${DET[@]}" \
  "$V/bowling/odd_161x97.webm"
# Variable frame rate: 1 s at 15 fps then 1 s at 30 fps (45 frames, 2 s), timestamps kept
# (-vsync vfr) in a fine time base, so that the two frame intervals are told apart.
ff -f lavfi -i "$(moving "testsrc2=s=160x120:r=15:d=1" 60 15)" \
  -f lavfi -i "$(moving "testsrc2=s=160x120:r=30:d=1" 90 30)" \
  -filter_complex "[0:v]settb=1/30[a];[1:v]settb=1/30[b];[a][b]concat=n=2:v=1:a=0[v]" \
  -map "[v]" -vsync vfr "${X264[@]}" -video_track_timescale 90000 -movflags +faststart \
  "$V/juggling/vfr_15_30.mp4"
# Rotated: 160x120 h264 streams whose display matrix says "turn to show" (90, 180, 270).
# FFmpeg 5.1 has no -display_rotation; the mp4 muxer still turns the rotate tag into the
# tkhd matrix on a stream copy. ffprobe reports the matrix's (counter-clockwise) angle.
ff -f lavfi -i "$(moving "testsrc2=s=160x120:r=25:d=2" 60 25)" "${X264[@]}" "$BUILD/unrotated.mp4"
for deg in 90 180 270; do
  ff -i "$BUILD/unrotated.mp4" -c copy -metadata:s:v:0 rotate=$deg -fflags +bitexact \
    "$V/juggling/rotated_$deg.mp4"
  if ! ffprobe -v error -select_streams v:0 -show_entries stream_side_data=rotation \
    -of csv=p=0 "$V/juggling/rotated_$deg.mp4" | grep -Eq "^-?$deg(\.0+)?$|^-?$((360 - deg))$"; then
    echo "make-test-videos: rotated_$deg.mp4 has no $deg degree display matrix" >&2
    exit 1
  fi
done
# Larger, longer: 640x360, 25 fps, 4 s = 100 frames, for scaling, seeking and timing; a key
# frame every second so that a trimmed decode really seeks.
ff -f lavfi -i "$(moving "testsrc2=s=640x360:r=25:d=4" 160 25)" "${X264[@]}" -g 25 \
  -movflags +faststart "$V/juggling/long_640x360.mp4"

# Broken files.
GOOD=$V/archery/testsrc2_h264.mp4
: >"$B/empty.mp4"
size=$(stat -c %s "$GOOD")
# Index intact, 70% of the media data gone: opens fine, ends early.
head -c $((size * 3 / 10)) "$GOOD" >"$B/truncated.mp4"
# A webm cut at 30%: the demuxer stops cleanly at the last whole block, so only the
# duration in the header tells that 70% is missing.
WEBM=$V/archery/mandelbrot_vp9.webm
head -c $(($(stat -c %s "$WEBM") * 3 / 10)) "$WEBM" >"$B/truncated_vp9.webm"
# Index at the end (no faststart) and cut off: cannot even be opened.
ff -i "$GOOD" -c copy -fflags +bitexact "$BUILD/moov_last.mp4"
head -c $((size * 3 / 10)) "$BUILD/moov_last.mp4" >"$B/truncated_no_index.mp4"
# LCG noise over the middle of the media data: 4 KiB into the h264 mp4 (the demuxer still
# cuts packets, the decoder rejects them), 200 bytes into the mpeg4 avi (the decoder only
# conceals the damaged macroblocks and flags the picture).
noise=""
x=12345
for ((i = 0; i < 4096; i++)); do
  x=$(((x * 1103515245 + 12345) & 0x7fffffff))
  printf -v byte '\\x%02x' $(((x >> 16) & 255))
  noise+=$byte
done
printf "$noise" >"$BUILD/noise.bin"
cp "$GOOD" "$B/corrupt.mp4"
dd if="$BUILD/noise.bin" of="$B/corrupt.mp4" bs=1 seek=$((size / 2)) conv=notrunc status=none
AVI=$V/bowling/smptebars_mpeg4.avi
cp "$AVI" "$B/corrupt_mpeg4.avi"
dd if="$BUILD/noise.bin" of="$B/corrupt_mpeg4.avi" bs=1 count=200 \
  seek=$(($(stat -c %s "$AVI") / 2)) conv=notrunc status=none
# An mp4 with only an audio stream.
ff -f lavfi -i "sine=frequency=440:sample_rate=22050:duration=1" -c:a aac -b:a 32k \
  "${DET[@]}" "$B/audio_only.mp4"
# Plain text with a video extension.
printf 'this is not a video, only a text file named .mp4\n' >"$B/not_a_video.mp4"
# A valid mp4 header followed by junk instead of any box structure.
{ head -c 32 "$GOOD"; printf 'garbage%.0s' {1..64}; } >"$B/header_only.mp4"
rm -f "$BUILD/unrotated.mp4" "$BUILD/moov_last.mp4" "$BUILD/noise.bin"

# What a decoder must do with each file ("ok" or the failing stage).
{
  printf 'path\texpect\n'
  for f in "$V"/*/*; do printf 'videos/%s\tok\n' "${f#"$V"/}"; done
  printf 'broken/empty.mp4\topen\nbroken/truncated.mp4\tdecode\n'
  printf 'broken/truncated_no_index.mp4\topen\nbroken/corrupt.mp4\tdecode\n'
  printf 'broken/corrupt_mpeg4.avi\tdecode\nbroken/truncated_vp9.webm\tdecode\n'
  printf 'broken/audio_only.mp4\tprobe\nbroken/not_a_video.mp4\topen\n'
  printf 'broken/header_only.mp4\topen\n'
} >"$BUILD/manifest.tsv"

# mixed/<class>/: the good files of each class plus the broken ones dealt round-robin.
classes=(archery bowling juggling)
for c in "${classes[@]}"; do
  mkdir -p "$BUILD/mixed/$c"
  cp "$V/$c"/* "$BUILD/mixed/$c/"
done
i=0
for f in "$B"/*; do
  cp "$f" "$BUILD/mixed/${classes[i % 3]}/broken_$(basename "$f")"
  i=$((i + 1))
done

for d in videos broken mixed manifest.tsv; do
  rm -rf "${OUT:?}/$d"
  mv "$BUILD/$d" "$OUT/$d"
done
echo "$SCRIPT_SHA" >"$OUT/.done"
summary
