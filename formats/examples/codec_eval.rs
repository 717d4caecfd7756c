//! Measures the chunk codec on a raw video: size and single-thread speed for each predictor
//! mode, zstd level and chunk length, next to FFV1 as the reference to beat.
//!
//! ```text
//! ffmpeg -i bikes.mp4 -vf scale=-2:256 -pix_fmt yuv420p -f rawvideo bikes.yuv
//! ffmpeg -i bikes.mp4 -vf scale=-2:256 -pix_fmt yuv420p -c:v ffv1 -level 3 bikes.mkv
//! cargo run --release -p cvrl-formats --example codec_eval -- bikes.yuv 602 256 yuv420p \
//!     ffv1=bikes.mkv modes=raw,temporal,med,adaptive levels=1,3,5,9 chunks=8,16,32
//! ```
//!
//! Optional `key=value` arguments: `ffv1=FILE` (FFV1 encode of the same frames: its size and
//! the single-threaded `ffmpeg -benchmark` decode time are printed for comparison; needs the
//! ffmpeg CLI), `frames=N` (use the first N frames), `modes`, `levels`, `chunks` (lists), and
//! `candidates=0,2,3` (restrict the adaptive mode to these predictor codes, to measure what a
//! predictor is worth), `repeat=N` (decode N times, report the fastest after the first pass;
//! default 3; FFV1 is timed as often). Every decoded chunk is compared with the input. Times
//! are wall time, best of the passes, on one thread for both.

use cvrl_formats::codec::{ChunkDecoder, ChunkEncoder, Predictor, PredictorMode};
use cvrl_formats::{FrameLayout, PixelFormat};
use std::process::{Command, ExitCode};
use std::time::Instant;

struct Args {
    path: String,
    layout: FrameLayout,
    ffv1: Option<String>,
    frames: Option<usize>,
    modes: Vec<PredictorMode>,
    levels: Vec<i32>,
    chunks: Vec<usize>,
    candidates: Option<Vec<Predictor>>,
    repeat: usize,
}

fn list<T: std::str::FromStr>(s: &str) -> Result<Vec<T>, String> {
    s.split(',').map(|x| x.parse::<T>().map_err(|_| format!("bad list item {x:?}"))).collect()
}

fn parse_args() -> Result<Args, String> {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let [path, w, h, fmt, rest @ ..] = &argv[..] else {
        return Err("usage: codec_eval FILE WIDTH HEIGHT yuv420p|rgb24 [key=value ...]".into());
    };
    let w: u32 = w.parse().map_err(|_| format!("bad width {w:?}"))?;
    let h: u32 = h.parse().map_err(|_| format!("bad height {h:?}"))?;
    let fmt: PixelFormat = fmt.parse()?;
    let mut a = Args {
        path: path.clone(),
        layout: FrameLayout::new(w, h, fmt)?,
        ffv1: None,
        frames: None,
        modes: vec![
            PredictorMode::Raw,
            PredictorMode::Temporal,
            PredictorMode::Med,
            PredictorMode::Adaptive,
        ],
        levels: vec![1, 3, 5, 9],
        chunks: vec![8, 16, 32],
        candidates: None,
        repeat: 3,
    };
    for kv in rest {
        let (k, v) = kv.split_once('=').ok_or(format!("expected key=value, got {kv:?}"))?;
        match k {
            "ffv1" => a.ffv1 = Some(v.to_string()),
            "frames" => a.frames = Some(v.parse().map_err(|_| format!("bad frames {v:?}"))?),
            "modes" => a.modes = list(v)?,
            "levels" => a.levels = list(v)?,
            "chunks" => a.chunks = list(v)?,
            "repeat" => a.repeat = v.parse().map_err(|_| format!("bad repeat {v:?}"))?,
            "candidates" => {
                let codes: Vec<u8> = list(v)?;
                let c =
                    codes.iter().map(|&c| Predictor::from_code(c).ok_or(format!("bad code {c}")));
                a.candidates = Some(c.collect::<Result<_, _>>()?);
            }
            _ => return Err(format!("unknown option {k:?}")),
        }
    }
    Ok(a)
}

/// FFV1 bytes per frame, frame count, and the fastest of `repeat` single-threaded decodes
/// (wall seconds from `ffmpeg -benchmark`, measured like ours: the machine is shared, and the
/// fastest run is the one least disturbed).
fn ffv1_reference(path: &str, repeat: usize) -> Result<(f64, usize, f64), String> {
    let size = std::fs::metadata(path).map_err(|e| format!("{path}: {e}"))?.len();
    let mut best = (0, f64::MAX);
    for _ in 0..repeat.max(1) {
        let out = Command::new("ffmpeg")
            .args(["-hide_banner", "-threads", "1", "-benchmark", "-i", path, "-f", "null", "-"])
            .output()
            .map_err(|e| format!("running ffmpeg: {e}"))?;
        let text = String::from_utf8_lossy(&out.stderr);
        let rtime = text
            .split_whitespace()
            .find_map(|t| t.strip_prefix("rtime=")?.strip_suffix('s')?.parse::<f64>().ok())
            .ok_or("no rtime in ffmpeg -benchmark output")?;
        // The last progress line reads "frame=  250 fps=...".
        let frames = text
            .rsplit("frame=")
            .next()
            .and_then(|t| t.split_whitespace().next()?.parse::<usize>().ok())
            .ok_or("no frame count in ffmpeg output")?;
        if rtime < best.1 {
            best = (frames, rtime);
        }
    }
    Ok((size as f64 / best.0 as f64, best.0, best.1))
}

fn run() -> Result<(), String> {
    let a = parse_args()?;
    let data = std::fs::read(&a.path).map_err(|e| format!("{}: {e}", a.path))?;
    let fb = a.layout.frame_bytes();
    let n = (data.len() / fb).min(a.frames.unwrap_or(usize::MAX));
    let data = &data[..n * fb];
    let mb = data.len() as f64 / 1e6;
    println!(
        "{}: {n} frames {}x{} {}, {fb} B/frame raw",
        a.path,
        a.layout.width(),
        a.layout.height(),
        a.layout.format()
    );
    let mut ffv1_bpf = None;
    if let Some(p) = &a.ffv1 {
        let (bpf, frames, secs) = ffv1_reference(p, a.repeat)?;
        let mbs = (frames * fb) as f64 / 1e6 / secs;
        println!("FFV1 {p}: {bpf:.0} B/frame, decode {mbs:.1} MB/s (1 thread, {frames} frames in {secs:.2} s)");
        ffv1_bpf = Some(bpf);
    }
    println!(
        "{:>9} {:>5} {:>5} {:>9} {:>6} {:>9} {:>9}",
        "mode", "level", "chunk", "B/frame", "xFFV1", "enc MB/s", "dec MB/s"
    );
    let mut decoder = ChunkDecoder::new().map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    for &mode in &a.modes {
        for &level in &a.levels {
            for &chunk in &a.chunks {
                let mut enc = ChunkEncoder::new(level, mode).map_err(|e| e.to_string())?;
                if let Some(c) = &a.candidates {
                    enc = enc.with_candidates(c);
                }
                let t = Instant::now();
                let mut chunks = Vec::new();
                for frames in data.chunks(chunk * fb) {
                    chunks.push(enc.encode(&a.layout, frames).map_err(|e| e.to_string())?);
                }
                let enc_s = t.elapsed().as_secs_f64();
                let bytes: usize = chunks.iter().map(Vec::len).sum();
                let all: Vec<usize> = (0..chunk).collect();
                // Best of `repeat` passes: other processes share the machine.
                let mut dec_s = f64::MAX;
                for pass in 0..a.repeat {
                    let t0 = Instant::now();
                    for (i, c) in chunks.iter().enumerate() {
                        let frames = &data[i * chunk * fb..((i + 1) * chunk * fb).min(data.len())];
                        out.resize(frames.len(), 0);
                        let n = frames.len() / fb;
                        decoder
                            .decode_wanted(mode.codec(), &a.layout, n, c, &mut out, &all[..n])
                            .map_err(|e| format!("chunk {i}: {e}"))?;
                        if pass == 0 && out != frames {
                            return Err(format!(
                                "{mode} level {level} chunk {i}: round trip differs"
                            ));
                        }
                    }
                    // The comparison is outside the timed work only in passes after the first.
                    if pass > 0 || a.repeat == 1 {
                        dec_s = dec_s.min(t0.elapsed().as_secs_f64());
                    }
                }
                let bpf = bytes as f64 / n as f64;
                let ratio = ffv1_bpf.map_or("-".to_string(), |f| format!("{:.3}", bpf / f));
                println!(
                    "{:>9} {:>5} {:>5} {:>9.0} {:>6} {:>9.1} {:>9.1}",
                    mode.to_string(),
                    level,
                    chunk,
                    bpf,
                    ratio,
                    mb / enc_s,
                    mb / dec_s
                );
            }
        }
    }
    Ok(())
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("codec_eval: {e}");
            ExitCode::FAILURE
        }
    }
}
