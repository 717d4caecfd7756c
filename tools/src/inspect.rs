//! `cvrl-inspect`: what is in a shard set, a shard file or a source video, as text or
//! JSON; checksum verification; frames and contact sheets as PNG for a person to look at.

use anyhow::{bail, Context, Result};
use cvrl_formats::pixel::yuv420p_to_rgb24;
use cvrl_formats::{
    FailureRow, FormatError, FrameLayout, PixelFormat, ShardFile, ShardSet, VideoRow,
};
use serde::Serialize;
use std::fmt::Write as _;
use std::path::Path;

/// Summary of a whole shard set.
#[derive(Serialize)]
pub struct SetReport {
    pub path: String,
    pub format_version: u32,
    pub tool: String,
    pub params: cvrl_formats::BuildParams,
    pub videos: usize,
    pub classes: usize,
    pub frames: u64,
    pub shards: usize,
    pub stored_bytes: u64,
    pub source_bytes: u64,
    /// Stored bytes / source bytes.
    pub size_vs_sources: f64,
    pub bytes_per_frame: f64,
    pub videos_per_class: Vec<(String, usize)>,
    pub failures: Vec<FailureRow>,
}

/// Builds the summary of an open set.
pub fn set_report(path: &Path, set: &ShardSet) -> SetReport {
    let m = set.manifest();
    let frames: u64 = set.videos().iter().map(|v| u64::from(v.num_frames)).sum();
    let stored: u64 = m.shards.iter().map(|s| s.bytes).sum();
    let source: u64 = set.videos().iter().map(|v| v.source_bytes).sum();
    let mut per_class: Vec<(String, usize)> =
        set.classes().iter().map(|c| (c.clone(), 0)).collect();
    for v in set.videos() {
        if let Some(i) = v.label_index {
            per_class[i as usize].1 += 1;
        }
    }
    SetReport {
        path: path.display().to_string(),
        format_version: m.format_version,
        tool: m.tool.clone(),
        params: m.params.clone(),
        videos: set.len(),
        classes: set.classes().len(),
        frames,
        shards: m.shards.len(),
        stored_bytes: stored,
        source_bytes: source,
        size_vs_sources: stored as f64 / source.max(1) as f64,
        bytes_per_frame: stored as f64 / frames.max(1) as f64,
        videos_per_class: per_class,
        failures: set.failures().to_vec(),
    }
}

impl std::fmt::Display for SetReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let p = &self.params;
        writeln!(f, "shard set {} (format v{}, {})", self.path, self.format_version, self.tool)?;
        writeln!(
            f,
            "  videos      {} in {} classes, {} frames",
            self.videos, self.classes, self.frames
        )?;
        writeln!(
            f,
            "  on disk     {:.1} MB in {} shards, {:.0} bytes/frame",
            self.stored_bytes as f64 / 1e6,
            self.shards,
            self.bytes_per_frame
        )?;
        writeln!(
            f,
            "  sources     {:.1} MB; shards are {:.2}x their size",
            self.source_bytes as f64 / 1e6,
            self.size_vs_sources
        )?;
        let side = p.short_side.map_or("source size".to_string(), |s| format!("short side {s}"));
        let fps = p.fps.map_or("source fps".to_string(), |f| format!("{f} fps"));
        writeln!(
            f,
            "  frames      {}, {side}, {fps}; chunks of {} frames, zstd {}, predictor {}",
            p.pixel_format, p.chunk_frames, p.zstd_level, p.predictor
        )?;
        for (c, n) in &self.videos_per_class {
            writeln!(f, "    {n:6}  {c}")?;
        }
        writeln!(f, "  failures    {}", self.failures.len())?;
        for x in &self.failures {
            writeln!(f, "    {}: {} failed: {}", x.source_path, x.stage, x.error)?;
        }
        Ok(())
    }
}

/// One video's metadata and chunk table; its shard is the row's `shard`, a file name in the
/// set's folder.
#[derive(Serialize)]
pub struct VideoReport<'a> {
    #[serde(flatten)]
    pub row: &'a VideoRow,
}

impl std::fmt::Display for VideoReport<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let r = self.row;
        writeln!(f, "video {}", r.video_id)?;
        writeln!(
            f,
            "  source      {} ({}, {} bytes)",
            r.source_path, r.source_codec, r.source_bytes
        )?;
        let index = r.label_index.map_or("-".to_string(), |i| i.to_string());
        let (label, split) = (r.label.as_deref().unwrap_or("-"), r.split.as_deref().unwrap_or("-"));
        writeln!(f, "  label       {label} (index {index}), split {split}")?;
        if !r.factors.is_empty() {
            let factors: Vec<String> = r.factors.iter().map(|(k, v)| format!("{k}={v}")).collect();
            writeln!(f, "  factors     {}", factors.join(", "))?;
        }
        writeln!(
            f,
            "  frames      {} x {}x{} {}, {}/{} fps, {:.2} s",
            r.num_frames, r.width, r.height, r.pixel_format, r.fps_num, r.fps_den, r.duration_s
        )?;
        writeln!(
            f,
            "  record      {} bytes {}..{}, crc32c {:#010x}",
            r.shard,
            r.offset,
            r.offset + r.length,
            r.checksum
        )?;
        writeln!(f, "  chunks      {}", r.chunks.len())?;
        writeln!(
            f,
            "    {:>5} {:>8} {:>10} {:>8} {:>10}",
            "chunk", "frames", "offset", "bytes", "crc32c"
        )?;
        for (i, c) in r.chunks.iter().enumerate() {
            let frames = format!("{}-{}", c.first_frame, c.first_frame + c.num_frames - 1);
            writeln!(
                f,
                "    {i:>5} {frames:>8} {:>10} {:>8} {:#010x}",
                c.offset, c.length, c.crc32c
            )?;
        }
        Ok(())
    }
}

/// One record of a shard file, as read from the file alone.
#[derive(Serialize)]
pub struct RecordSummary {
    pub video_id: String,
    pub offset: u64,
    pub bytes: u64,
    pub frames: u32,
    pub width: u32,
    pub height: u32,
    pub pixel_format: String,
    pub fps: f64,
    pub chunks: usize,
    /// Set when `--verify` decoded the record and something was wrong.
    pub error: Option<String>,
}

/// A shard file on its own.
#[derive(Serialize)]
pub struct ShardReport {
    pub path: String,
    pub bytes: u64,
    pub format_version: u32,
    pub records: Vec<RecordSummary>,
    /// The first damaged record stops the walk; this says why.
    pub error: Option<String>,
}

/// Walks the records of one shard file; with `verify`, decodes every chunk too (through
/// the formats crate's [`FrameReader`](cvrl_formats::FrameReader), as for a set).
pub fn shard_report(path: &Path, verify: bool) -> Result<ShardReport> {
    let shard = ShardFile::open(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut reader = shard.reader()?;
    let mut records = Vec::with_capacity(shard.videos().len());
    for (i, v) in shard.videos().iter().enumerate() {
        let error = if verify {
            shard.verify_video(i, &mut reader).err().map(|e| chunk_error(&e))
        } else {
            None
        };
        records.push(RecordSummary {
            video_id: v.video_id.clone(),
            offset: v.offset,
            bytes: v.length,
            frames: v.num_frames,
            width: v.width,
            height: v.height,
            pixel_format: v.pixel_format.clone(),
            fps: f64::from(v.fps_num) / f64::from(v.fps_den),
            chunks: v.chunks.len(),
            error,
        });
    }
    Ok(ShardReport {
        path: path.display().to_string(),
        bytes: shard.file_len(),
        format_version: cvrl_formats::shard::FORMAT_VERSION,
        records,
        error: shard.damage().map(|e| e.to_string()),
    })
}

/// A damaged chunk as the shard report names it (the record's line already names the
/// file and the video).
fn chunk_error(e: &FormatError) -> String {
    match e {
        FormatError::ChunkChecksum { chunk, .. } => format!("chunk {chunk}: checksum mismatch"),
        FormatError::ChunkDecode { chunk, error, .. } => format!("chunk {chunk}: {error}"),
        other => other.to_string(),
    }
}

impl std::fmt::Display for ShardReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "shard {} ({} bytes, format v{}), {} videos",
            self.path,
            self.bytes,
            self.format_version,
            self.records.len()
        )?;
        for r in &self.records {
            let status = r.error.as_deref().map_or(String::new(), |e| format!("  DAMAGED: {e}"));
            writeln!(
                f,
                "  {:>12} {:>10} B {:>5} frames {}x{} {} {:.2} fps  {}{status}",
                r.offset, r.bytes, r.frames, r.width, r.height, r.pixel_format, r.fps, r.video_id
            )?;
        }
        if let Some(e) = &self.error {
            writeln!(f, "  DAMAGED after the last record listed: {e}")?;
        }
        Ok(())
    }
}

/// Result of `--verify` on a set.
#[derive(Serialize)]
pub struct VerifyReport {
    pub videos: usize,
    pub ok: usize,
    /// What failed, and why: videos by id, shards (records that do not tile the file) by
    /// file name.
    pub damaged: Vec<(String, String)>,
}

/// Recomputes every checksum of every video of the set, and checks that each shard holds
/// its records and nothing else; a damaged shard is listed under its file name.
pub fn verify_set(set: &ShardSet) -> Result<VerifyReport> {
    let mut reader = set.reader()?;
    let mut damaged = Vec::new();
    for i in 0..set.len() {
        if let Err(e) = set.verify_video(i, &mut reader) {
            damaged.push((set.videos()[i].video_id.clone(), e.to_string()));
        }
    }
    let ok = set.len() - damaged.len();
    for s in 0..set.num_shards() {
        if let Err(e) = set.verify_shard(s) {
            damaged.push((set.shard_file_name(s), e.to_string()));
        }
    }
    Ok(VerifyReport { videos: set.len(), ok, damaged })
}

impl std::fmt::Display for VerifyReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "verified {} videos: {} ok, {} damaged",
            self.videos,
            self.ok,
            self.damaged.len()
        )?;
        for (id, e) in &self.damaged {
            writeln!(f, "  {id}: {e}")?;
        }
        Ok(())
    }
}

/// Frame `i` of video `video` as packed RGB.
fn frame_rgb(
    reader: &mut cvrl_formats::FrameReader<'_>,
    layout: &FrameLayout,
    video: usize,
    i: u32,
) -> Result<Vec<u8>> {
    let frame = reader.frame(video, i)?;
    Ok(match layout.format() {
        PixelFormat::Rgb24 => frame.to_vec(),
        PixelFormat::Yuv420p => {
            let mut rgb = vec![0u8; layout.width() as usize * layout.height() as usize * 3];
            yuv420p_to_rgb24(layout, frame, &mut rgb);
            rgb
        }
    })
}

/// Writes an RGB image as PNG.
pub fn write_png(path: &Path, width: u32, height: u32, rgb: &[u8]) -> Result<()> {
    let file =
        std::fs::File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
    let mut enc = png::Encoder::new(std::io::BufWriter::new(file), width, height);
    enc.set_color(png::ColorType::Rgb);
    enc.set_depth(png::BitDepth::Eight);
    let mut w = enc.write_header().with_context(|| format!("cannot write {}", path.display()))?;
    w.write_image_data(rgb).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

/// Writes frames `range` of a video as `frame-000123.png` files into `dir`. Returns the count.
pub fn export_frames(
    set: &ShardSet,
    video: usize,
    range: std::ops::Range<u32>,
    dir: &Path,
) -> Result<usize> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let layout = set.layout(video);
    let n = set.videos()[video].num_frames;
    if range.start >= range.end || range.end > n {
        bail!(
            "frames {}..{} outside 0..{n} of video {}",
            range.start,
            range.end,
            set.videos()[video].video_id
        );
    }
    let mut reader = set.reader()?;
    for i in range.clone() {
        let rgb = frame_rgb(&mut reader, &layout, video, i)?;
        write_png(&dir.join(format!("frame-{i:06}.png")), layout.width(), layout.height(), &rgb)?;
    }
    Ok(range.len())
}

/// A grid of `count` evenly spaced frames of a video, `cols` per row, as one PNG.
pub fn contact_sheet(
    set: &ShardSet,
    video: usize,
    count: u32,
    cols: u32,
    path: &Path,
) -> Result<()> {
    let layout = set.layout(video);
    let n = set.videos()[video].num_frames;
    let count = count.clamp(1, n);
    let cols = cols.clamp(1, count);
    let rows = count.div_ceil(cols);
    let (w, h) = (layout.width() as usize, layout.height() as usize);
    let sheet_w = w * cols as usize;
    let mut sheet = vec![0u8; sheet_w * h * rows as usize * 3];
    let mut reader = set.reader()?;
    for k in 0..count {
        let i = (u64::from(k) * u64::from(n - 1) / u64::from((count - 1).max(1))) as u32;
        let rgb = frame_rgb(&mut reader, &layout, video, i)?;
        let (cx, cy) = ((k % cols) as usize * w, (k / cols) as usize * h);
        for y in 0..h {
            let dst = ((cy + y) * sheet_w + cx) * 3;
            sheet[dst..dst + w * 3].copy_from_slice(&rgb[y * w * 3..(y + 1) * w * 3]);
        }
    }
    write_png(path, sheet_w as u32, (h * rows as usize) as u32, &sheet)
}

/// Renders any serialisable report as pretty JSON.
pub fn to_json<T: Serialize>(report: &T) -> String {
    let mut s = serde_json::to_string_pretty(report).expect("reports serialise");
    let _ = writeln!(s);
    s
}
