#!/usr/bin/env python3
"""Checks FORMAT.md §6.2 (constant frame rate) and §6.3 (the CSV window) against a set that
`cvrl-shard build --short-side 0` made: from ffprobe's frame timestamps alone, following the
text of the specification, picks the source frame of every output frame, and compares it
with the frame cvrl stored.

    resample_rule.py SET_DIR VIDEO_ID SOURCE STORED_FRAMES

STORED_FRAMES holds the video's stored frames, raw (as any reader returns them). The video
must have been stored at its own size in yuv420p from a yuv420p source of even size, so
that a stored frame is a decoded frame byte for byte. The output rate is the record's
(`fps_num/fps_den` in the index); the window is the index's `time_start_s` and
`time_end_s` when set. Prints one line; exits with status 1 on a mismatch.

Needs the ffmpeg CLI (ffprobe, ffmpeg) and pyarrow.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import pyarrow.parquet as pq


def fraction(s: str) -> tuple[int, int]:
    n, d = s.split("/")
    return int(n), int(d)


def probe(source: str) -> tuple[dict, list[dict]]:
    out = subprocess.check_output([
        "ffprobe", "-v", "error", "-select_streams", "v:0",
        "-show_entries", "stream=time_base,avg_frame_rate,r_frame_rate,start_pts",
        "-show_frames", "-show_entries", "frame=best_effort_timestamp,pkt_duration,duration",
        "-of", "json", source])
    j = json.loads(out)
    return j["streams"][0], j["frames"]


def source_frames(stream: dict, frames: list[dict], fps_num: int, fps_den: int,
                  window: tuple[float, float] | None) -> list[int]:
    """The decoded frame each stored frame shows, by FORMAT.md §6.2 and §6.3."""
    tb_num, tb_den = fraction(stream["time_base"])
    src_num, src_den = fraction(stream["avg_frame_rate"])
    if src_num <= 0 or src_den <= 0:
        src_num, src_den = fraction(stream["r_frame_rate"])
    nominal = max(1, (src_den * tb_den) // (src_num * tb_num))
    origin = int(stream["start_pts"]) if stream.get("start_pts") not in (None, "N/A") else None
    times: list[int] = []
    last_interval = None
    for f in frames:
        ts = f.get("best_effort_timestamp")
        prev = times[-1] if times else None
        if ts is not None:
            if origin is None:
                origin = int(ts)
            r = max(int(ts) - origin, 0, prev if prev is not None else 0)
        else:
            r = 0 if prev is None else prev + nominal
        if prev is not None and r - prev > 0:
            last_interval = r - prev
        times.append(r)
    packet = int(frames[-1].get("pkt_duration") or frames[-1].get("duration") or 0)
    end = times[-1] + (packet if packet > 0 else (last_interval or nominal))

    def comes_before(k: int, r: int) -> bool:
        tolerance = min(4 * tb_num * fps_num, fps_den * tb_den)
        return 4 * k * fps_den * tb_den + tolerance < 4 * r * tb_num * fps_num

    shown = []
    k = 0
    while comes_before(k, end):
        i = 0
        for j, r in enumerate(times):
            if not comes_before(k, r):
                i = j
        shown.append(i)
        k += 1
    if window is not None:
        f = fps_num / fps_den
        first = max(0, math.ceil(window[0] * f - 1e-6))
        last = max(first, math.ceil(window[1] * f - 1e-6))
        shown = shown[first:last]
    return shown


def main(argv: list[str]) -> int:
    if len(argv) != 5:
        print(__doc__, file=sys.stderr)
        return 2
    set_dir, video_id, source, stored_frames = argv[1:]
    rows = [r for r in pq.read_table(os.path.join(set_dir, "index.parquet")).to_pylist()
            if r["video_id"] == video_id]
    if len(rows) != 1:
        print(f"resample_rule: {video_id!r} is not in {set_dir}", file=sys.stderr)
        return 1
    row = rows[0]
    window = None
    if row["time_start_s"] is not None:
        window = (row["time_start_s"], row["time_end_s"])
    stream, frames = probe(source)
    expected = source_frames(stream, frames, row["fps_num"], row["fps_den"], window)
    frame_bytes = row["width"] * row["height"] * 3 // 2
    decoded = subprocess.check_output([
        "ffmpeg", "-v", "error", "-nostdin", "-i", source, "-fps_mode", "passthrough",
        "-pix_fmt", "yuv420p", "-f", "rawvideo", "-"])
    with open(stored_frames, "rb") as f:
        stored = f.read()
    wrong = [k for k, i in enumerate(expected)
             if stored[k * frame_bytes:(k + 1) * frame_bytes]
             != decoded[i * frame_bytes:(i + 1) * frame_bytes]]
    line = (f"{video_id}: {len(expected)} frames by the rule, {row['num_frames']} stored, "
            f"{len(decoded) // frame_bytes} decoded; differing frames {wrong[:10]}")
    print(line)
    return 0 if len(expected) == row["num_frames"] and not wrong else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
