//! `cvrl-shard synth`: a synthetic proxy dataset on which self-supervised video learning can
//! be shown to work on a CPU, written as real H.264 mp4 files in the Kinetics class-folder
//! layout so the same commands later run on Kinetics.
//!
//! Each class is an (object kind, motion pattern) pair. The pairs are chosen so that no
//! factor alone names the class: with `n` kinds of each, class `i + n*d` is object `i` with
//! motion `(i + d) mod n` (diagonal `d` of the object x motion grid). Two diagonals of a 5x5
//! grid give the default ten classes: every object moves in two ways and every motion is
//! done by two objects, so a probe needs both appearance and motion. Objects are two-tone
//! (a lit and a shaded half) so that spinning is visible even for a disc.
//!
//! Everything else varies per video and is not the class: object colour (eight named hues),
//! size, speed, phase and start position; the background (procedural value noise, stripes
//! or checker in random colours); and the distractors. Content also drifts within a video,
//! as in real footage, so two clips far apart share less than two close ones (why CVRL's
//! decreasing interval distribution helps): the background pans, cross-fades to a second
//! texture and turns its hue over the video, and small distractors cross the frame. The
//! class's object and motion persist throughout, unless `presence` is below 1: then the
//! object is on screen for one stretch of the video only, and far clips may disagree on
//! the class.
//!
//! A video is a pure function of (seed, class index, video index): [`VideoPlan::new`] draws
//! every random choice from a SplitMix64 stream seeded by those three, so the same seed
//! gives the same pictures on any thread schedule, and x264 (one thread per video, bitexact
//! muxing, fresh allocations filled with a fixed byte: see `fill_fresh_memory`) the same
//! bytes.
//!
//! ```no_run
//! use cvrl_tools::synth::{classes, Canvas, SynthConfig, VideoPlan};
//! let cfg = SynthConfig::cpu();
//! let class = classes(cfg.classes)?[0];
//! let plan = VideoPlan::new(&cfg, class, 0, 0);
//! let mut canvas = Canvas::new(cfg.width, cfg.height);
//! plan.render(0, &mut canvas); // frame 0 as RGB floats
//! # Ok::<(), anyhow::Error>(())
//! ```

use crate::build::Reporter;
use anyhow::{bail, ensure, Context, Result};
use ff::format::Pixel;
use ff::frame::Video as VideoFrame;
use ff::{ffi, Rational};
use ffmpeg_next as ff;
use rayon::prelude::*;
use serde::Serialize;
use std::f32::consts::TAU;
use std::fmt;
use std::path::Path;
use std::str::FromStr;

/// The factors CSV `synth` writes at the dataset root (what `cvrl-shard build` picks up).
pub const FACTORS_FILE: &str = crate::inputs::FACTORS_FILE;
/// The parameters of a finished dataset; written last, so its presence marks a complete one.
pub const PARAMS_FILE: &str = "synth.json";

/// The shape of a class's object.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ObjectKind {
    Disc,
    Square,
    Triangle,
    Ring,
    Cross,
    Star,
}

impl ObjectKind {
    /// In grid order: the first `n` are used when `n` kinds are needed.
    pub const ALL: [ObjectKind; 6] = [
        ObjectKind::Disc,
        ObjectKind::Square,
        ObjectKind::Triangle,
        ObjectKind::Ring,
        ObjectKind::Cross,
        ObjectKind::Star,
    ];

    pub fn name(self) -> &'static str {
        match self {
            ObjectKind::Disc => "disc",
            ObjectKind::Square => "square",
            ObjectKind::Triangle => "triangle",
            ObjectKind::Ring => "ring",
            ObjectKind::Cross => "cross",
            ObjectKind::Star => "star",
        }
    }

    /// Signed distance from `(x, y)` to the shape's edge, in units of its circumradius
    /// (negative inside): every shape fits in the unit circle.
    fn sdf(self, x: f32, y: f32) -> f32 {
        match self {
            ObjectKind::Disc => (x * x + y * y).sqrt() - 1.0,
            ObjectKind::Square => sd_box(x, y, std::f32::consts::FRAC_1_SQRT_2, 0.70710677),
            ObjectKind::Triangle => sd_triangle(x, y),
            ObjectKind::Ring => ((x * x + y * y).sqrt() - 0.72).abs() - 0.28,
            ObjectKind::Cross => sd_box(x, y, 0.95, 0.3).min(sd_box(x, y, 0.3, 0.95)),
            ObjectKind::Star => sd_star5(x, y, 1.0, 0.45),
        }
    }
}

/// How a class's object moves.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Motion {
    /// Sinusoidal oscillation left and right.
    Horizontal,
    /// Sinusoidal oscillation up and down.
    Vertical,
    /// Turning in place.
    Spin,
    /// Circling a centre (without turning).
    Orbit,
    /// Growing and shrinking in place.
    Zoom,
    /// Straight diagonal lines, bouncing off the frame's edges.
    Bounce,
}

impl Motion {
    /// In grid order, like [`ObjectKind::ALL`].
    pub const ALL: [Motion; 6] = [
        Motion::Horizontal,
        Motion::Vertical,
        Motion::Spin,
        Motion::Orbit,
        Motion::Zoom,
        Motion::Bounce,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Motion::Horizontal => "horizontal",
            Motion::Vertical => "vertical",
            Motion::Spin => "spin",
            Motion::Orbit => "orbit",
            Motion::Zoom => "zoom",
            Motion::Bounce => "bounce",
        }
    }
}

/// One class: an object kind doing a motion; its name is `<object>_<motion>`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct ClassSpec {
    pub object: ObjectKind,
    pub motion: Motion,
}

impl fmt::Display for ClassSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}_{}", self.object.name(), self.motion.name())
    }
}

/// Most classes `synth` can make: every pair of the 6 object kinds and 6 motions.
pub const MAX_CLASSES: usize = 36;

/// The `count` classes, taken diagonal by diagonal from an `n x n` grid of the first `n`
/// object kinds and motions. `n` is the largest divisor of `count` in 2..=6 with
/// `count / n` between 2 and `n`, so each object and each motion is in `count / n` classes
/// and neither alone names a class (10 = 5 x 2, 20 = 5 x 4, 4 = 2 x 2, 12 = 6 x 2). Other
/// counts (7, 11...) take the smallest grid that holds them and fill the last diagonal
/// partly: balanced except for that diagonal.
pub fn classes(count: usize) -> Result<Vec<ClassSpec>> {
    ensure!(
        (2..=MAX_CLASSES).contains(&count),
        "{count} classes: synth makes 2 to {MAX_CLASSES} (6 object kinds x 6 motions)"
    );
    let balanced =
        (2..=6).rev().find(|&n| count.is_multiple_of(n) && (2..=n).contains(&(count / n)));
    let n = balanced
        .unwrap_or_else(|| (2..=6).find(|&n| n * n >= count).expect("count <= 36 fits 6 x 6"));
    Ok((0..count)
        .map(|c| {
            let (d, i) = (c / n, c % n);
            ClassSpec { object: ObjectKind::ALL[i], motion: Motion::ALL[(i + d) % n] }
        })
        .collect())
}

/// A named size of dataset.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Preset {
    /// 10 classes x 60 videos (48 train + 12 val) of 4-8 s at 128x128, 25 fps: trains on a CPU.
    Cpu,
    /// 20 classes x 200 videos (160 train + 40 val) of 4-8 s at 160x160, 25 fps.
    Gpu,
    /// 10 classes x 100 videos (80 train + 20 val) of 3-6 s at 64x64, 25 fps, objects 1.8x
    /// larger and no clutter: the proxy a 2-core CPU's experiments learn on in minutes
    /// (EXPERIMENTS.md). The drift and every nuisance but the clutter stay.
    Easy,
}

impl FromStr for Preset {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "cpu" => Ok(Preset::Cpu),
            "gpu" => Ok(Preset::Gpu),
            "easy" => Ok(Preset::Easy),
            other => Err(format!("unknown preset {other:?}: cpu, gpu or easy")),
        }
    }
}

impl fmt::Display for Preset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Preset::Cpu => "cpu",
            Preset::Gpu => "gpu",
            Preset::Easy => "easy",
        })
    }
}

/// What to generate.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SynthConfig {
    pub classes: usize,
    /// Videos per class, train and val together.
    pub videos_per_class: usize,
    /// Of those, how many go to `val/` (the last ones).
    pub val_per_class: usize,
    pub width: u32,
    pub height: u32,
    pub fps: u32,
    /// Each video's length is drawn uniformly from this range, in seconds.
    pub min_seconds: f64,
    pub max_seconds: f64,
    pub seed: u64,
    /// x264 constant rate factor (0-51; lower is better quality).
    pub crf: u32,
    /// Multiplies the object's radius (1 = 10-15 % of the short side).
    pub object_scale: f32,
    /// How busy the scene is, 0-1: scales the background textures' contrast and the
    /// number of distractors (1 = full; 0 = smooth backgrounds, no distractors). The
    /// drift (pan, cross-fade, hue turn) stays.
    pub clutter: f32,
    /// The fraction of each video in which the class's object is on screen, above 0 up
    /// to 1: one stretch of that length at a random place, background only before and
    /// after. Below 1, clips far apart are more likely to disagree on the class, as in
    /// real footage where the action fills only part of the video.
    pub presence: f32,
}

impl SynthConfig {
    pub fn cpu() -> SynthConfig {
        SynthConfig {
            classes: 10,
            videos_per_class: 60,
            val_per_class: 12,
            width: 128,
            height: 128,
            fps: 25,
            min_seconds: 4.0,
            max_seconds: 8.0,
            seed: 0,
            crf: 20,
            object_scale: 1.0,
            clutter: 1.0,
            presence: 1.0,
        }
    }

    pub fn gpu() -> SynthConfig {
        SynthConfig {
            classes: 20,
            videos_per_class: 200,
            val_per_class: 40,
            width: 160,
            height: 160,
            ..SynthConfig::cpu()
        }
    }

    pub fn easy() -> SynthConfig {
        SynthConfig {
            videos_per_class: 100,
            val_per_class: 20,
            width: 64,
            height: 64,
            min_seconds: 3.0,
            max_seconds: 6.0,
            object_scale: 1.8,
            clutter: 0.0,
            ..SynthConfig::cpu()
        }
    }

    pub fn preset(p: Preset) -> SynthConfig {
        match p {
            Preset::Cpu => SynthConfig::cpu(),
            Preset::Gpu => SynthConfig::gpu(),
            Preset::Easy => SynthConfig::easy(),
        }
    }

    /// Checks every field once; after this the generator trusts them.
    pub fn validate(&self) -> Result<()> {
        classes(self.classes)?;
        ensure!(self.videos_per_class >= 1, "--videos must be at least 1");
        ensure!(
            self.val_per_class <= self.videos_per_class,
            "--val {} is more than --videos {}",
            self.val_per_class,
            self.videos_per_class
        );
        for (name, v) in [("width", self.width), ("height", self.height)] {
            ensure!(
                (32..=2048).contains(&v) && v % 2 == 0,
                "--{name} {v}: must be even, 32 to 2048 (H.264 4:2:0)"
            );
        }
        ensure!((1..=120).contains(&self.fps), "--fps {}: must be 1 to 120", self.fps);
        ensure!(
            self.min_seconds.is_finite()
                && self.min_seconds > 0.0
                && self.max_seconds.is_finite()
                && self.max_seconds >= self.min_seconds
                && self.max_seconds <= 600.0,
            "--min-seconds {} --max-seconds {}: need 0 < min <= max <= 600",
            self.min_seconds,
            self.max_seconds
        );
        ensure!(self.crf <= 51, "--crf {}: must be 0 to 51", self.crf);
        ensure!(
            self.object_scale > 0.0 && self.object_scale <= 2.0,
            "--object-scale {}: must be above 0 and at most 2 (larger objects leave no room to move)",
            self.object_scale
        );
        ensure!((0.0..=1.0).contains(&self.clutter), "--clutter {}: must be 0 to 1", self.clutter);
        ensure!(
            self.presence > 0.0 && self.presence <= 1.0,
            "--presence {}: must be above 0 and at most 1",
            self.presence
        );
        Ok(())
    }
}

/// One video of the dataset: where it goes and how it looks.
#[derive(Clone, Debug)]
pub struct SynthVideo {
    /// Path relative to the dataset root: `<split>/<class>/<class>_<NNN>.mp4`.
    pub rel_path: String,
    pub split: &'static str,
    pub class: ClassSpec,
    pub plan: VideoPlan,
}

/// Every video of `cfg`, in a fixed order (class by class). Validates `cfg`.
pub fn plan_dataset(cfg: &SynthConfig) -> Result<Vec<SynthVideo>> {
    cfg.validate()?;
    let specs = classes(cfg.classes)?;
    let train = cfg.videos_per_class - cfg.val_per_class;
    let mut out = Vec::with_capacity(specs.len() * cfg.videos_per_class);
    for (c, &class) in specs.iter().enumerate() {
        for v in 0..cfg.videos_per_class {
            let split = if v < train { "train" } else { "val" };
            out.push(SynthVideo {
                rel_path: format!("{split}/{class}/{class}_{v:03}.mp4"),
                split,
                class,
                plan: VideoPlan::new(cfg, class, c, v),
            });
        }
    }
    Ok(out)
}

/// What [`synth`] made.
#[derive(Debug)]
pub struct SynthSummary {
    pub videos: usize,
    pub frames: u64,
    pub bytes: u64,
    pub classes: Vec<String>,
    pub seconds: f64,
}

/// The contents of `synth.json`.
#[derive(Serialize)]
struct ParamsFile<'a> {
    tool: String,
    config: &'a SynthConfig,
    classes: Vec<String>,
    videos: usize,
}

/// Writes the dataset of `cfg` into `out`: the videos (in parallel on rayon's pool), then
/// `factors.csv`, then `synth.json`. An `out` holding an earlier dataset is refused unless
/// `force`, which deletes only what `synth` writes (`train/`, `val/` and the two files).
pub fn synth(
    cfg: &SynthConfig,
    out: &Path,
    force: bool,
    progress: &dyn Reporter,
) -> Result<SynthSummary> {
    let started = std::time::Instant::now();
    let videos = plan_dataset(cfg)?;
    prepare_out(out, force)?;
    crate::decode::init();
    fill_fresh_memory();
    let specs = classes(cfg.classes)?;
    let train = cfg.videos_per_class - cfg.val_per_class;
    let splits = [("train", train), ("val", cfg.val_per_class)];
    for split in splits.iter().filter(|s| s.1 > 0).map(|s| s.0) {
        for class in &specs {
            let dir = out.join(split).join(class.to_string());
            std::fs::create_dir_all(&dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
        }
    }
    progress.start(videos.len(), 0);
    let sizes: Vec<u64> = videos
        .par_iter()
        .map_init(
            || Canvas::new(cfg.width, cfg.height),
            |canvas, v| {
                let path = out.join(&v.rel_path);
                write_video(&v.plan, cfg.crf, &path, canvas)
                    .with_context(|| format!("cannot write {}", path.display()))?;
                progress.video_done(u64::from(v.plan.frames), None);
                let meta = std::fs::metadata(&path)
                    .with_context(|| format!("cannot stat {}", path.display()))?;
                Ok(meta.len())
            },
        )
        .collect::<Result<_>>()?;
    progress.finish();

    // One factors file for the whole tree and one per split folder, each with paths
    // relative to its own folder: `cvrl-shard build` finds it whether it is given OUT or
    // OUT/train.
    write_factors(&out.join(FACTORS_FILE), videos.iter(), "")?;
    for (split, _) in splits.iter().filter(|s| s.1 > 0) {
        let prefix = format!("{split}/");
        let mine = videos.iter().filter(|v| v.split == *split);
        write_factors(&out.join(split).join(FACTORS_FILE), mine, &prefix)?;
    }
    let names: Vec<String> = specs.iter().map(ToString::to_string).collect();
    let params = ParamsFile {
        tool: format!("cvrl-shard {}", env!("CARGO_PKG_VERSION")),
        config: cfg,
        classes: names.clone(),
        videos: videos.len(),
    };
    let json = serde_json::to_vec_pretty(&params)?;
    let params_path = out.join(PARAMS_FILE);
    cvrl_formats::shard::atomic_write(&params_path, |f| std::io::Write::write_all(f, &json))
        .with_context(|| format!("cannot write {}", params_path.display()))?;
    Ok(SynthSummary {
        videos: videos.len(),
        frames: videos.iter().map(|v| u64::from(v.plan.frames)).sum(),
        bytes: sizes.iter().sum(),
        classes: names,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// Writes a factors CSV of `videos`, their paths with `strip` removed from the front.
fn write_factors<'a>(
    path: &Path,
    videos: impl Iterator<Item = &'a SynthVideo>,
    strip: &str,
) -> Result<()> {
    let mut csv = String::from("path,object,motion,colour\n");
    for v in videos {
        let rel = v.rel_path.strip_prefix(strip).unwrap_or(&v.rel_path);
        let [(_, object), (_, motion), (_, colour)] = v.plan.factors();
        csv.push_str(&format!("{rel},{object},{motion},{colour}\n"));
    }
    cvrl_formats::shard::atomic_write(path, |f| std::io::Write::write_all(f, csv.as_bytes()))
        .with_context(|| format!("cannot write {}", path.display()))
}

/// Refuses to mix datasets; with `force`, removes an earlier one (and nothing else).
fn prepare_out(out: &Path, force: bool) -> Result<()> {
    let ours = [out.join(PARAMS_FILE), out.join(FACTORS_FILE)];
    let dirs = [out.join("train"), out.join("val")];
    let earlier = ours.iter().any(|p| p.exists());
    if earlier && !force {
        bail!("{} already holds a synthetic dataset; pass --force to replace it", out.display());
    }
    if !earlier {
        if let Some(d) = dirs.iter().find(|d| d.exists()) {
            bail!(
                "{} exists and was not made by cvrl-shard synth; choose an empty output folder",
                d.display()
            );
        }
    }
    for p in ours.iter().filter(|p| p.exists()) {
        std::fs::remove_file(p).with_context(|| format!("cannot remove {}", p.display()))?;
    }
    for d in dirs.iter().filter(|d| d.exists()) {
        std::fs::remove_dir_all(d).with_context(|| format!("cannot remove {}", d.display()))?;
    }
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))
}

// ---------------------------------------------------------------------------------------
// Random numbers

/// SplitMix64: tiny and fixed forever, so a seed names the same dataset in every version
/// (a crate's generator may change its stream between releases).
#[derive(Clone, Debug)]
struct Rng(u64);

fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        mix(self.0)
    }
    /// Uniform in [0, 1).
    fn unit(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32
    }
    fn range(&mut self, lo: f32, hi: f32) -> f32 {
        lo + (hi - lo) * self.unit()
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }
    fn sign(&mut self) -> f32 {
        if self.next_u64() & 1 == 0 {
            1.0
        } else {
            -1.0
        }
    }
}

/// A value in [0, 1) for a lattice point of a noise octave.
fn lattice(seed: u64, x: i32, y: i32) -> f32 {
    let h = mix(seed ^ mix((u64::from(x as u32) << 32) | u64::from(y as u32)));
    (h >> 40) as f32 / (1u64 << 24) as f32
}

// ---------------------------------------------------------------------------------------
// Colours

type Rgb = [f32; 3];

/// The object colours: a named hue each (jittered a little per video), so colour is a clean
/// categorical factor that is independent of the class.
const PALETTE: [(&str, f32); 8] = [
    ("red", 0.0),
    ("orange", 0.08),
    ("yellow", 0.15),
    ("green", 0.33),
    ("cyan", 0.5),
    ("blue", 0.62),
    ("purple", 0.76),
    ("magenta", 0.87),
];

fn hsv(h: f32, s: f32, v: f32) -> Rgb {
    let h = h.rem_euclid(1.0) * 6.0;
    let f = |n: f32| {
        let k = (n + h) % 6.0;
        v - v * s * k.min(4.0 - k).clamp(0.0, 1.0)
    };
    [f(5.0), f(3.0), f(1.0)]
}

fn luma(c: Rgb) -> f32 {
    0.299 * c[0] + 0.587 * c[1] + 0.114 * c[2]
}

fn lerp3(a: Rgb, b: Rgb, t: f32) -> Rgb {
    [a[0] + (b[0] - a[0]) * t, a[1] + (b[1] - a[1]) * t, a[2] + (b[2] - a[2]) * t]
}

/// Rotation by `angle` radians about the grey axis of RGB space: a hue turn that keeps grey.
fn hue_matrix(angle: f32) -> [[f32; 3]; 3] {
    let (s, c) = angle.sin_cos();
    let (k, q) = ((1.0 - c) / 3.0, s * (1.0f32 / 3.0).sqrt());
    [[c + k, k - q, k + q], [k + q, c + k, k - q], [k - q, k + q, c + k]]
}

fn smoothstep(e0: f32, e1: f32, x: f32) -> f32 {
    let t = ((x - e0) / (e1 - e0)).clamp(0.0, 1.0);
    t * t * (3.0 - 2.0 * t)
}

// ---------------------------------------------------------------------------------------
// Shapes (signed distance functions after Inigo Quilez's 2D distance functions)

fn sd_box(x: f32, y: f32, hx: f32, hy: f32) -> f32 {
    let (qx, qy) = (x.abs() - hx, y.abs() - hy);
    let outside = (qx.max(0.0).powi(2) + qy.max(0.0).powi(2)).sqrt();
    outside + qx.max(qy).min(0.0)
}

/// Equilateral triangle with circumradius 1, apex up (towards -y in the image).
fn sd_triangle(x: f32, y: f32) -> f32 {
    let k = 3.0f32.sqrt();
    let r = k / 2.0; // half the side of a triangle with circumradius 1
    let (mut px, mut py) = (x.abs() - r, -y + r / k);
    if px + k * py > 0.0 {
        (px, py) = ((px - k * py) / 2.0, (-k * px - py) / 2.0);
    }
    px -= px.clamp(-2.0 * r, 0.0);
    -(px * px + py * py).sqrt() * py.signum()
}

/// Five-pointed star with outer radius `r` and inner radius `r * rf`.
fn sd_star5(x: f32, y: f32, r: f32, rf: f32) -> f32 {
    let (k1x, k1y) = (0.809_017_f32, -0.587_785_3_f32);
    let (k2x, k2y) = (-k1x, k1y);
    let (mut px, mut py) = (x.abs(), -y);
    let d1 = 2.0 * (k1x * px + k1y * py).max(0.0);
    px -= d1 * k1x;
    py -= d1 * k1y;
    let d2 = 2.0 * (k2x * px + k2y * py).max(0.0);
    px -= d2 * k2x;
    py -= d2 * k2y;
    px = px.abs();
    py -= r;
    let (bax, bay) = (rf * -k1y, rf * k1x - 1.0);
    let h = ((px * bax + py * bay) / (bax * bax + bay * bay)).clamp(0.0, r);
    let (dx, dy) = (px - bax * h, py - bay * h);
    (dx * dx + dy * dy).sqrt() * (py * bax - px * bay).signum()
}

/// Coverage of a pixel whose centre is `d` pixels from an edge (negative inside): a one
/// pixel wide ramp, which is enough anti-aliasing at these sizes.
fn coverage(d: f32) -> f32 {
    (0.5 - d).clamp(0.0, 1.0)
}

// ---------------------------------------------------------------------------------------
// Background textures

#[derive(Clone, Copy, Debug, PartialEq)]
enum TextureKind {
    Noise,
    Stripes,
    Checker,
}

/// A procedural texture, larger than the frame by the distance it pans.
#[derive(Clone, Debug)]
struct Texture {
    w: usize,
    h: usize,
    rgb: Vec<f32>,
}

fn background_colour(rng: &mut Rng) -> Rgb {
    hsv(rng.unit(), rng.range(0.15, 0.7), rng.range(0.25, 0.9))
}

impl Texture {
    /// `contrast` (0-1) pulls the second colour and the grain towards the first.
    fn new(
        kind: TextureKind,
        w: usize,
        h: usize,
        scale: f32,
        contrast: f32,
        rng: &mut Rng,
    ) -> Texture {
        let (c1, c2) = (background_colour(rng), background_colour(rng));
        let c2 = lerp3(c1, c2, contrast);
        let noise_seed = rng.next_u64();
        let cell = scale * rng.range(0.2, 0.45);
        let (sin, cos) = rng.range(0.0, TAU).sin_cos();
        let period = scale * rng.range(0.06, 0.18);
        let shift = rng.range(0.0, TAU);
        // Every kind gets some fractal noise in its brightness, so no region is flat.
        let grain = contrast * if kind == TextureKind::Noise { 0.0 } else { rng.range(0.1, 0.25) };
        let mut rgb = Vec::with_capacity(w * h * 3);
        for y in 0..h {
            for x in 0..w {
                let (fx, fy) = (x as f32, y as f32);
                let n = fbm(noise_seed, fx / cell, fy / cell);
                let t = match kind {
                    TextureKind::Noise => smoothstep(0.2, 0.8, n),
                    TextureKind::Stripes => {
                        let u = (fx * cos + fy * sin) / period * TAU + shift;
                        smoothstep(-0.4, 0.4, u.sin())
                    }
                    TextureKind::Checker => {
                        let (u, v) =
                            ((fx * cos + fy * sin) / period, (fy * cos - fx * sin) / period);
                        ((u.floor() as i64 + v.floor() as i64) & 1) as f32
                    }
                };
                let c = lerp3(c1, c2, t);
                let g = 1.0 + grain * (2.0 * n - 1.0);
                rgb.extend(c.map(|v| (v * g).clamp(0.0, 1.0)));
            }
        }
        Texture { w, h, rgb }
    }
}

/// Three octaves of value noise with smooth interpolation, in about [0, 1].
fn fbm(seed: u64, x: f32, y: f32) -> f32 {
    let (mut sum, mut amp, mut freq, mut norm) = (0.0, 1.0, 1.0, 0.0);
    for octave in 0..3u64 {
        sum += amp * value_noise(seed.wrapping_add(octave), x * freq, y * freq);
        norm += amp;
        amp *= 0.5;
        freq *= 2.0;
    }
    sum / norm
}

fn value_noise(seed: u64, x: f32, y: f32) -> f32 {
    let (ix, iy) = (x.floor(), y.floor());
    let (fx, fy) = (x - ix, y - iy);
    let (sx, sy) = (fx * fx * (3.0 - 2.0 * fx), fy * fy * (3.0 - 2.0 * fy));
    let (ix, iy) = (ix as i32, iy as i32);
    let a = lattice(seed, ix, iy);
    let b = lattice(seed, ix + 1, iy);
    let c = lattice(seed, ix, iy + 1);
    let d = lattice(seed, ix + 1, iy + 1);
    let top = a + (b - a) * sx;
    let bottom = c + (d - c) * sx;
    top + (bottom - top) * sy
}

/// A texture seen through the frame: an offset that moves linearly with time.
#[derive(Clone, Debug)]
struct Layer {
    texture: Texture,
    start: (f32, f32),
    velocity: (f32, f32),
}

impl Layer {
    /// A texture panning at `speed` pixels per second in a random direction for `seconds`.
    fn new(cfg: &SynthConfig, seconds: f32, speed: f32, rng: &mut Rng) -> Layer {
        let (w, h) = (cfg.width, cfg.height);
        let kind = [TextureKind::Noise, TextureKind::Stripes, TextureKind::Checker][rng.below(3)];
        let (sin, cos) = rng.range(0.0, TAU).sin_cos();
        let velocity = (speed * cos, speed * sin);
        let travel = (velocity.0.abs() * seconds, velocity.1.abs() * seconds);
        let (tw, th) =
            (w as usize + travel.0.ceil() as usize + 2, h as usize + travel.1.ceil() as usize + 2);
        let start = (
            if velocity.0 < 0.0 { travel.0 } else { 0.0 },
            if velocity.1 < 0.0 { travel.1 } else { 0.0 },
        );
        let texture = Texture::new(kind, tw, th, w.min(h) as f32, cfg.clutter, rng);
        Layer { texture, start, velocity }
    }

    fn offset(&self, t: f32) -> (f32, f32) {
        (self.start.0 + self.velocity.0 * t, self.start.1 + self.velocity.1 * t)
    }
}

// ---------------------------------------------------------------------------------------
// Distractors

/// A small shape crossing the frame in a straight line: it enters at one edge and leaves
/// at another while the video runs.
#[derive(Clone, Debug)]
struct Distractor {
    /// Half length and half width in pixels (an elongated blob or bar, never a class shape).
    half: (f32, f32),
    bar: bool,
    angle: f32,
    colour: Rgb,
    from: (f32, f32),
    velocity: (f32, f32),
    t0: f32,
    t1: f32,
}

impl Distractor {
    fn new(w: f32, h: f32, seconds: f32, rng: &mut Rng) -> Distractor {
        let s = w.min(h);
        let len = s * rng.range(0.04, 0.08);
        let half = (len, len * rng.range(0.3, 0.5));
        let pad = len + 2.0;
        // Entry on one edge, exit on the opposite one.
        let (a, b) = (rng.unit(), rng.unit());
        let (from, to) = match rng.below(4) {
            0 => ((-pad, a * h), (w + pad, b * h)),
            1 => ((w + pad, a * h), (-pad, b * h)),
            2 => ((a * w, -pad), (b * w, h + pad)),
            _ => ((a * w, h + pad), (b * w, -pad)),
        };
        let dist = ((to.0 - from.0).powi(2) + (to.1 - from.1).powi(2)).sqrt();
        let duration = dist / (s * rng.range(0.25, 0.6));
        let t0 = rng.range(-0.5 * duration, seconds - 0.5 * duration);
        Distractor {
            half,
            bar: rng.below(2) == 0,
            angle: rng.range(0.0, TAU),
            colour: hsv(rng.unit(), rng.range(0.0, 0.6), rng.range(0.2, 1.0)),
            from,
            velocity: ((to.0 - from.0) / duration, (to.1 - from.1) / duration),
            t0,
            t1: t0 + duration,
        }
    }

    fn centre(&self, t: f32) -> Option<(f32, f32)> {
        (self.t0..self.t1).contains(&t).then(|| {
            let dt = t - self.t0;
            (self.from.0 + self.velocity.0 * dt, self.from.1 + self.velocity.1 * dt)
        })
    }

    fn draw(&self, t: f32, canvas: &mut Canvas) {
        let Some((cx, cy)) = self.centre(t) else { return };
        let (sin, cos) = self.angle.sin_cos();
        let (hx, hy) = self.half;
        let (bar, colour) = (self.bar, self.colour);
        canvas.paint(cx, cy, hx + 1.0, |dx, dy| {
            let (u, v) = (dx * cos + dy * sin, dy * cos - dx * sin);
            let d = if bar {
                sd_box(u, v, hx - 1.0, hy - 1.0) - 1.0
            } else {
                // An ellipse's distance, scaled from the unit circle: close enough for edges.
                ((u / hx).powi(2) + (v / hy).powi(2)).sqrt().mul_add(hy, -hy)
            };
            Some((coverage(d), colour))
        });
    }
}

// ---------------------------------------------------------------------------------------
// The plan of one video

/// Where the object is in a frame: centre in pixels, scale (1 = its drawn radius) and angle.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Pose {
    pub x: f32,
    pub y: f32,
    pub scale: f32,
    pub angle: f32,
}

/// A pixel rectangle, `x0..x1` by `y0..y1`, clipped to the frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rect {
    pub x0: u32,
    pub y0: u32,
    pub x1: u32,
    pub y1: u32,
}

/// Every random choice of one video; rendering a frame is then a pure function of the
/// frame number.
#[derive(Clone, Debug)]
pub struct VideoPlan {
    pub width: u32,
    pub height: u32,
    pub fps: u32,
    pub frames: u32,
    pub class: ClassSpec,
    /// Index into the colour palette.
    colour_index: usize,
    colour: Rgb,
    outline: Rgb,
    /// Circumradius of the object in pixels at scale 1.
    radius: f32,
    centre: (f32, f32),
    /// Oscillation or orbit amplitude in pixels, or bounce speed in pixels per second.
    amplitude: f32,
    /// Cycles (or turns) per second.
    frequency: f32,
    phase: f32,
    direction: f32,
    angle: f32,
    /// Unit direction of a bounce.
    heading: (f32, f32),
    layers: [Layer; 2],
    /// Hue turn of the background, radians per second.
    hue_rate: f32,
    distractors: Vec<Distractor>,
    /// The object is drawn from `on_screen.0` up to (not including) `on_screen.1`, seconds.
    on_screen: (f32, f32),
}

impl VideoPlan {
    /// The plan of video `video` of class number `class_index`: a pure function of
    /// `cfg.seed`, the two indices and the sizes in `cfg`.
    pub fn new(cfg: &SynthConfig, class: ClassSpec, class_index: usize, video: usize) -> VideoPlan {
        let key = ((class_index as u64) << 32) | video as u64;
        let mut rng = Rng(mix(cfg.seed ^ mix(key.wrapping_add(0x5EED))));
        let (w, h) = (cfg.width as f32, cfg.height as f32);
        let s = w.min(h);
        let seconds = rng.range(cfg.min_seconds as f32, cfg.max_seconds as f32);
        let frames = ((seconds * cfg.fps as f32).round() as u32).max(1);
        let seconds = frames as f32 / cfg.fps as f32;

        let colour_index = rng.below(PALETTE.len());
        let hue = PALETTE[colour_index].1 + rng.range(-0.02, 0.02);
        let colour = hsv(hue, rng.range(0.65, 1.0), rng.range(0.7, 1.0));
        let outline = if luma(colour) > 0.45 { [0.05; 3] } else { [0.95; 3] };
        let radius = s * rng.range(0.1, 0.15) * cfg.object_scale;

        // The motion's extent decides where the centre may start so the object stays in view.
        let margin = |extra: f32| radius + extra + 2.0;
        let (mut amplitude, frequency) = match class.motion {
            Motion::Horizontal | Motion::Vertical => {
                (s * rng.range(0.16, 0.26), rng.range(0.4, 0.9))
            }
            Motion::Orbit => (s * rng.range(0.14, 0.22), rng.range(0.3, 0.6)),
            Motion::Zoom => (0.0, rng.range(0.4, 0.8)),
            Motion::Spin => (0.0, rng.range(0.25, 0.6)),
            Motion::Bounce => (s * rng.range(0.35, 0.7), 0.0),
        };
        let (ex, ey) = match class.motion {
            Motion::Horizontal => {
                amplitude = amplitude.min(w / 2.0 - margin(0.0));
                (margin(amplitude), margin(0.0))
            }
            Motion::Vertical => {
                amplitude = amplitude.min(h / 2.0 - margin(0.0));
                (margin(0.0), margin(amplitude))
            }
            Motion::Orbit => {
                amplitude = amplitude.min(s / 2.0 - margin(0.0));
                (margin(amplitude), margin(amplitude))
            }
            Motion::Zoom => (margin(radius * ZOOM), margin(radius * ZOOM)),
            Motion::Spin | Motion::Bounce => (margin(0.0), margin(0.0)),
        };
        let centre = (pick(&mut rng, ex, w - ex), pick(&mut rng, ey, h - ey));
        let phase = rng.range(0.0, TAU);
        let direction = rng.sign();
        let angle = rng.range(0.0, TAU);
        // Bounces run diagonally: 25 to 65 degrees off the axes, in any quadrant.
        let tilt = rng.range(25.0f32.to_radians(), 65.0f32.to_radians());
        let heading = (tilt.cos() * rng.sign(), tilt.sin() * rng.sign());

        let pan = |rng: &mut Rng| s * rng.range(0.02, 0.06);
        let layers = [
            Layer::new(cfg, seconds, pan(&mut rng), &mut rng),
            Layer::new(cfg, seconds, pan(&mut rng), &mut rng),
        ];
        let hue_rate = rng.sign() * rng.range(0.6, 1.4) / seconds;
        let count = 1 + rng.below(2 + (seconds / 2.0) as usize);
        let mut distractors: Vec<_> =
            (0..count).map(|_| Distractor::new(w, h, seconds, &mut rng)).collect();
        // All are drawn, then some dropped, so clutter changes no other random choice.
        distractors.truncate((count as f32 * cfg.clutter).round() as usize);
        // Drawn last, so presence changes no other random choice.
        let shown = seconds * cfg.presence;
        let enter = rng.range(0.0, seconds - shown);
        VideoPlan {
            width: cfg.width,
            height: cfg.height,
            fps: cfg.fps,
            frames,
            class,
            colour_index,
            colour,
            outline,
            radius,
            centre,
            amplitude,
            frequency,
            phase,
            direction,
            angle,
            heading,
            layers,
            hue_rate,
            distractors,
            on_screen: (enter, enter + shown),
        }
    }

    /// Seconds from the start to frame `k`.
    pub fn time(&self, k: u32) -> f32 {
        k as f32 / self.fps as f32
    }

    /// Length of the video in seconds.
    pub fn seconds(&self) -> f32 {
        self.time(self.frames)
    }

    /// The factors of variation: `[("object", _), ("motion", _), ("colour", _)]`.
    pub fn factors(&self) -> [(&'static str, &'static str); 3] {
        [
            ("object", self.class.object.name()),
            ("motion", self.class.motion.name()),
            ("colour", PALETTE[self.colour_index].0),
        ]
    }

    /// The object's pose in frame `k`.
    pub fn pose(&self, k: u32) -> Pose {
        let t = self.time(k);
        let wave = (TAU * self.frequency * t + self.phase).sin();
        let (cx, cy) = self.centre;
        let still = Pose { x: cx, y: cy, scale: 1.0, angle: self.angle };
        match self.class.motion {
            Motion::Horizontal => Pose { x: cx + self.amplitude * wave, ..still },
            Motion::Vertical => Pose { y: cy + self.amplitude * wave, ..still },
            Motion::Orbit => {
                let a = self.direction * TAU * self.frequency * t + self.phase;
                Pose { x: cx + self.amplitude * a.cos(), y: cy + self.amplitude * a.sin(), ..still }
            }
            Motion::Zoom => Pose { scale: 1.0 + ZOOM * wave, ..still },
            Motion::Spin => {
                Pose { angle: self.angle + self.direction * TAU * self.frequency * t, ..still }
            }
            Motion::Bounce => {
                let lo = self.radius + 2.0;
                let (w, h) = (self.width as f32, self.height as f32);
                let d = self.amplitude * t;
                Pose {
                    x: reflect(cx + self.heading.0 * d, lo, w - lo),
                    y: reflect(cy + self.heading.1 * d, lo, h - lo),
                    ..still
                }
            }
        }
    }

    /// The pixels the object may touch in frame `k` (its outline included).
    pub fn object_box(&self, k: u32) -> Rect {
        let p = self.pose(k);
        let reach = self.radius * p.scale + OUTLINE + 1.0;
        let clip = |v: f32, max: u32| (v.max(0.0) as u32).min(max);
        Rect {
            x0: clip((p.x - reach).floor(), self.width),
            y0: clip((p.y - reach).floor(), self.height),
            x1: clip((p.x + reach).ceil() + 1.0, self.width),
            y1: clip((p.y + reach).ceil() + 1.0, self.height),
        }
    }

    /// Whether the class's object is on screen in frame `k` (always, at presence 1).
    pub fn shows_object(&self, k: u32) -> bool {
        let t = self.time(k);
        (self.on_screen.0..self.on_screen.1).contains(&t)
    }

    /// Draws frame `k` into `canvas` (which must be `width x height`).
    pub fn render(&self, k: u32, canvas: &mut Canvas) {
        let t = self.time(k);
        self.background(t, canvas);
        for d in &self.distractors {
            d.draw(t, canvas);
        }
        if self.shows_object(k) {
            self.draw_object(k, canvas);
        }
    }

    /// The two textures, cross-faded over the whole video and turned in hue.
    fn background(&self, t: f32, canvas: &mut Canvas) {
        let fade = smoothstep(0.0, self.seconds(), t);
        let hue = hue_matrix(self.hue_rate * t);
        // One matrix per layer: hue turn times its fade weight.
        let weighted = |w: f32| hue.map(|row| row.map(|v| v * w));
        let (ma, mb) = (weighted(1.0 - fade), weighted(fade));
        let (a, b) = (&self.layers[0], &self.layers[1]);
        let sa = Sampler::new(&a.texture, a.offset(t));
        let sb = Sampler::new(&b.texture, b.offset(t));
        let w = self.width as usize;
        for (y, row) in canvas.rgb.chunks_exact_mut(w * 3).enumerate() {
            for (x, px) in row.chunks_exact_mut(3).enumerate() {
                let (ca, cb) = (sa.at(x, y), sb.at(x, y));
                for (i, out) in px.iter_mut().enumerate() {
                    let v = ma[i][0] * ca[0]
                        + ma[i][1] * ca[1]
                        + ma[i][2] * ca[2]
                        + mb[i][0] * cb[0]
                        + mb[i][1] * cb[1]
                        + mb[i][2] * cb[2];
                    *out = v.clamp(0.0, 1.0);
                }
            }
        }
    }

    fn draw_object(&self, k: u32, canvas: &mut Canvas) {
        let p = self.pose(k);
        let r = self.radius * p.scale;
        let (sin, cos) = p.angle.sin_cos();
        let (object, colour, outline) = (self.class.object, self.colour, self.outline);
        let shaded = colour.map(|v| v * 0.62);
        canvas.paint(p.x, p.y, r + OUTLINE + 1.0, |dx, dy| {
            // Into the object's frame: unrotated, in units of its radius.
            let (u, v) = ((dx * cos + dy * sin) / r, (dy * cos - dx * sin) / r);
            let d = object.sdf(u, v) * r;
            let edge = coverage(d - OUTLINE);
            if edge == 0.0 {
                return None;
            }
            // Lit and shaded halves, split across the object's own axis, so turning shows.
            let lit = (0.5 + v * r).clamp(0.0, 1.0);
            let fill = lerp3(shaded, colour, lit);
            Some((edge, lerp3(outline, fill, coverage(d))))
        });
    }
}

/// Zoom amplitude: the object's scale swings between 1 - ZOOM and 1 + ZOOM.
const ZOOM: f32 = 0.4;
/// Width of the object's outline in pixels (keeps it visible on any background).
const OUTLINE: f32 = 1.2;

/// A point in `[lo, hi]`, or the middle when the range is empty (a tiny frame).
fn pick(rng: &mut Rng, lo: f32, hi: f32) -> f32 {
    let u = rng.unit();
    if hi > lo {
        lo + (hi - lo) * u
    } else {
        (lo + hi) / 2.0
    }
}

/// `x` folded into `[lo, hi]` as a ball bouncing between two walls.
fn reflect(x: f32, lo: f32, hi: f32) -> f32 {
    let span = hi - lo;
    if span <= 0.0 {
        return (lo + hi) / 2.0;
    }
    let u = (x - lo).rem_euclid(2.0 * span);
    lo + if u > span { 2.0 * span - u } else { u }
}

/// Bilinear sampling at one fractional offset shared by the whole frame: the four weights
/// are computed once.
struct Sampler<'a> {
    tex: &'a Texture,
    x0: usize,
    y0: usize,
    w: [f32; 4],
}

impl<'a> Sampler<'a> {
    fn new(tex: &'a Texture, (ox, oy): (f32, f32)) -> Sampler<'a> {
        let (fx, fy) = (ox.max(0.0), oy.max(0.0));
        let (x0, y0) = (fx.floor() as usize, fy.floor() as usize);
        let (ax, ay) = (fx - x0 as f32, fy - y0 as f32);
        Sampler {
            tex,
            x0: x0.min(tex.w.saturating_sub(2)),
            y0: y0.min(tex.h.saturating_sub(2)),
            w: [(1.0 - ax) * (1.0 - ay), ax * (1.0 - ay), (1.0 - ax) * ay, ax * ay],
        }
    }

    fn at(&self, x: usize, y: usize) -> Rgb {
        let (tw, th) = (self.tex.w, self.tex.h);
        let (x, y) = ((self.x0 + x).min(tw - 2), (self.y0 + y).min(th - 2));
        let i = (y * tw + x) * 3;
        let (r0, r1) = (&self.tex.rgb[i..i + 6], &self.tex.rgb[i + tw * 3..i + tw * 3 + 6]);
        let w = self.w;
        std::array::from_fn(|c| w[0] * r0[c] + w[1] * r0[c + 3] + w[2] * r1[c] + w[3] * r1[c + 3])
    }
}

/// An RGB frame of floats in [0, 1], reused from frame to frame.
pub struct Canvas {
    pub width: u32,
    pub height: u32,
    /// Row-major, interleaved RGB.
    pub rgb: Vec<f32>,
}

impl Canvas {
    pub fn new(width: u32, height: u32) -> Canvas {
        Canvas { width, height, rgb: vec![0.0; width as usize * height as usize * 3] }
    }

    /// Blends `shade(dx, dy) = (alpha, colour)` over the pixels within `reach` of `(cx, cy)`;
    /// `dx, dy` are the pixel centre's offsets from `(cx, cy)`.
    fn paint(
        &mut self,
        cx: f32,
        cy: f32,
        reach: f32,
        shade: impl Fn(f32, f32) -> Option<(f32, Rgb)>,
    ) {
        let (w, h) = (self.width as i64, self.height as i64);
        let x0 = ((cx - reach).floor() as i64).clamp(0, w);
        let x1 = ((cx + reach).ceil() as i64 + 1).clamp(0, w);
        let y0 = ((cy - reach).floor() as i64).clamp(0, h);
        let y1 = ((cy + reach).ceil() as i64 + 1).clamp(0, h);
        for y in y0..y1 {
            for x in x0..x1 {
                let (dx, dy) = (x as f32 + 0.5 - cx, y as f32 + 0.5 - cy);
                let Some((alpha, c)) = shade(dx, dy) else { continue };
                if alpha <= 0.0 {
                    continue;
                }
                let i = ((y * w + x) * 3) as usize;
                for (p, v) in self.rgb[i..i + 3].iter_mut().zip(c) {
                    *p += (v - *p) * alpha;
                }
            }
        }
    }

    /// Converts to 4:2:0 BT.601 limited-range YUV (what H.264 in the wild holds) into the
    /// planes of `frame`, averaging each 2x2 block for chroma.
    fn to_yuv420(&self, frame: &mut VideoFrame) {
        let (w, h) = (self.width as usize, self.height as usize);
        let px = |x: usize, y: usize| -> Rgb {
            let i = (y * w + x) * 3;
            [self.rgb[i], self.rgb[i + 1], self.rgb[i + 2]]
        };
        let stride = frame.stride(0);
        let luma_plane = frame.data_mut(0);
        for y in 0..h {
            for x in 0..w {
                let [r, g, b] = px(x, y);
                let v = 16.0 + 65.481 * r + 128.553 * g + 24.966 * b;
                luma_plane[y * stride + x] = v.round() as u8;
            }
        }
        for plane in [1, 2] {
            let stride = frame.stride(plane);
            let data = frame.data_mut(plane);
            for y in 0..h / 2 {
                for x in 0..w / 2 {
                    let mut acc = [0.0f32; 3];
                    for (dx, dy) in [(0, 0), (1, 0), (0, 1), (1, 1)] {
                        let c = px(2 * x + dx, 2 * y + dy);
                        for i in 0..3 {
                            acc[i] += c[i] / 4.0;
                        }
                    }
                    let [r, g, b] = acc;
                    let v = if plane == 1 {
                        128.0 - 37.797 * r - 74.203 * g + 112.0 * b
                    } else {
                        128.0 + 112.0 * r - 93.786 * g - 18.214 * b
                    };
                    data[y * stride + x] = v.round().clamp(0.0, 255.0) as u8;
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// Encoding

/// Makes glibc fill every allocation with a fixed byte. libx264 reads some bytes of its
/// own buffers before it writes them: with whatever an earlier video left in the thread's
/// heap arena there, the same video came out a few bytes different in about one run of ten
/// on 4 threads (`MALLOC_PERTURB_` made 30 runs of 30 identical). Only `synth` pays for it.
/// Elsewhere than glibc this does nothing.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn fill_fresh_memory() {
    extern "C" {
        /// glibc's `int mallopt(int param, int value)`.
        fn mallopt(param: i32, value: i32) -> i32;
    }
    /// glibc's `M_PERTURB`: allocations are filled with `value ^ 0xff`, frees with `value`.
    const M_PERTURB: i32 = -6;
    // SAFETY: sets one global of the allocator; no pointer passes, and any value is valid.
    unsafe { mallopt(M_PERTURB, 0xa5) };
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn fill_fresh_memory() {}

/// Encodes all frames of `plan` as H.264 (libx264, yuv420p, preset veryfast, `crf`) into an mp4
/// at `path`, through `path.tmp` and a rename so a killed run leaves no half file under a
/// video name. One encoder thread: the caller runs one video per core.
pub fn write_video(plan: &VideoPlan, crf: u32, path: &Path, canvas: &mut Canvas) -> Result<()> {
    let tmp = cvrl_formats::shard::tmp_path(path);
    encode(plan, crf, &tmp, canvas).inspect_err(|_| {
        let _ = std::fs::remove_file(&tmp);
    })?;
    std::fs::rename(&tmp, path)
        .with_context(|| format!("cannot rename {} to {}", tmp.display(), path.display()))
}

fn encode(plan: &VideoPlan, crf: u32, path: &Path, canvas: &mut Canvas) -> Result<()> {
    let codec = ff::encoder::find_by_name("libx264")
        .context("FFmpeg has no libx264 encoder (Debian's libavcodec has one)")?;
    let mut octx = ff::format::output_as(path, "mp4").context("cannot create the mp4")?;
    // Bitexact: no library version strings in the file, so it is the same bytes everywhere.
    unsafe { (*octx.as_mut_ptr()).flags |= ffi::AVFMT_FLAG_BITEXACT };
    let global_header = octx.format().flags().contains(ff::format::Flags::GLOBAL_HEADER);
    let time_base = Rational(1, plan.fps as i32);
    let mut enc = ff::codec::context::Context::new_with_codec(codec).encoder().video()?;
    enc.set_width(plan.width);
    enc.set_height(plan.height);
    enc.set_format(Pixel::YUV420P);
    enc.set_time_base(time_base);
    enc.set_frame_rate(Some(Rational(plan.fps as i32, 1)));
    enc.set_colorspace(ff::color::Space::SMPTE170M);
    enc.set_color_primaries(ff::color::Primaries::SMPTE170M);
    enc.set_color_transfer_characteristic(ff::color::TransferCharacteristic::SMPTE170M);
    enc.set_color_range(ff::color::Range::MPEG);
    let mut flags = ff::codec::Flags::BITEXACT;
    if global_header {
        flags |= ff::codec::Flags::GLOBAL_HEADER;
    }
    enc.set_flags(flags);
    let mut opts = ff::Dictionary::new();
    opts.set("preset", "veryfast");
    opts.set("crf", &crf.to_string());
    opts.set("threads", "1");
    let mut enc = enc.open_as_with(codec, opts).context("cannot open libx264")?;
    let mut stream = octx.add_stream(codec)?;
    stream.set_parameters(&enc);
    stream.set_time_base(time_base);
    stream.set_avg_frame_rate(Rational(plan.fps as i32, 1));
    octx.write_header().context("cannot write the mp4 header")?;
    let stream_tb = octx.stream(0).context("the mp4 lost its stream")?.time_base();

    let mut frame = VideoFrame::new(Pixel::YUV420P, plan.width, plan.height);
    for k in 0..plan.frames {
        plan.render(k, canvas);
        // The encoder may still hold the previous picture's buffer; never draw over it.
        let ret = unsafe { ffi::av_frame_make_writable(frame.as_mut_ptr()) };
        ensure!(ret >= 0, "cannot allocate a frame: {}", ff::Error::from(ret));
        canvas.to_yuv420(&mut frame);
        frame.set_pts(Some(i64::from(k)));
        enc.send_frame(&frame).with_context(|| format!("encoding frame {k}"))?;
        drain(&mut enc, &mut octx, time_base, stream_tb)?;
    }
    enc.send_eof()?;
    drain(&mut enc, &mut octx, time_base, stream_tb)?;
    octx.write_trailer().context("cannot finish the mp4")?;
    Ok(())
}

fn drain(
    enc: &mut ff::encoder::Video,
    octx: &mut ff::format::context::Output,
    from: Rational,
    to: Rational,
) -> Result<()> {
    let mut packet = ff::Packet::empty();
    loop {
        match enc.receive_packet(&mut packet) {
            Ok(()) => {
                packet.set_stream(0);
                packet.rescale_ts(from, to);
                packet.write_interleaved(octx).context("cannot write a packet")?;
            }
            Err(ff::Error::Eof) => return Ok(()),
            Err(ff::Error::Other { errno }) if errno == ff::error::EAGAIN => return Ok(()),
            Err(e) => return Err(e).context("encoding"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small() -> SynthConfig {
        SynthConfig {
            classes: 4,
            videos_per_class: 3,
            val_per_class: 1,
            width: 64,
            height: 64,
            min_seconds: 2.0,
            max_seconds: 2.0,
            ..SynthConfig::cpu()
        }
    }

    fn frame(plan: &VideoPlan, k: u32) -> Vec<f32> {
        let mut c = Canvas::new(plan.width, plan.height);
        plan.render(k, &mut c);
        c.rgb
    }

    fn mean_abs_diff(a: &[f32], b: &[f32]) -> f32 {
        a.iter().zip(b).map(|(x, y)| (x - y).abs()).sum::<f32>() / a.len() as f32
    }

    /// Summed |a - b| over the RGB of the pixels in `r`, per pixel, of two 64-wide frames.
    fn box_diff(a: &[f32], b: &[f32], r: Rect) -> f32 {
        let mut diff = 0.0f32;
        for y in r.y0..r.y1 {
            for x in r.x0..r.x1 {
                let i = ((y * 64 + x) * 3) as usize;
                diff += (0..3).map(|j| (a[i + j] - b[i + j]).abs()).sum::<f32>();
            }
        }
        diff / ((r.x1 - r.x0) * (r.y1 - r.y0)) as f32
    }

    #[test]
    fn ten_classes_use_each_object_and_each_motion_twice() {
        let c = classes(10).unwrap();
        let names: Vec<String> = c.iter().map(ToString::to_string).collect();
        assert_eq!(
            names,
            [
                "disc_horizontal",
                "square_vertical",
                "triangle_spin",
                "ring_orbit",
                "cross_zoom",
                "disc_vertical",
                "square_spin",
                "triangle_orbit",
                "ring_zoom",
                "cross_horizontal"
            ]
        );
        for n in [4, 10, 12, 20, 25, 36] {
            let c = classes(n).unwrap();
            let mut pairs: Vec<_> = c.iter().map(|s| (s.object.name(), s.motion.name())).collect();
            pairs.sort();
            pairs.dedup();
            assert_eq!(pairs.len(), n, "{n} classes must be distinct pairs");
            for o in c.iter().map(|s| s.object) {
                let k = c.iter().filter(|s| s.object == o).count();
                assert!(k >= 2, "{n} classes: {} in {k} class(es)", o.name());
            }
            for m in c.iter().map(|s| s.motion) {
                let k = c.iter().filter(|s| s.motion == m).count();
                assert!(k >= 2, "{n} classes: {} in {k} class(es)", m.name());
            }
        }
        assert!(classes(1).is_err() && classes(37).is_err());
        assert_eq!(classes(7).unwrap().len(), 7);
    }

    #[test]
    fn presets_parse_by_name_and_are_valid() {
        for p in [Preset::Cpu, Preset::Gpu, Preset::Easy] {
            assert_eq!(p.to_string().parse::<Preset>(), Ok(p));
            SynthConfig::preset(p).validate().unwrap();
        }
        assert!("huge".parse::<Preset>().is_err());
        let easy = SynthConfig::easy();
        assert_eq!((easy.width, easy.object_scale, easy.clutter), (64, 1.8, 0.0));
    }

    #[test]
    fn a_seed_gives_the_same_pictures_and_another_seed_others() {
        let cfg = small();
        let class = classes(4).unwrap()[1];
        let a = VideoPlan::new(&cfg, class, 1, 2);
        let b = VideoPlan::new(&cfg, class, 1, 2);
        assert_eq!(frame(&a, 7), frame(&b, 7));
        let other = VideoPlan::new(&SynthConfig { seed: 1, ..cfg.clone() }, class, 1, 2);
        assert!(mean_abs_diff(&frame(&a, 7), &frame(&other, 7)) > 0.02);
        let sibling = VideoPlan::new(&cfg, class, 1, 1);
        assert!(mean_abs_diff(&frame(&a, 7), &frame(&sibling, 7)) > 0.02);
    }

    #[test]
    fn every_motion_keeps_the_object_in_the_frame_and_moves_it() {
        for object_scale in [1.0, 2.0] {
            let cfg = SynthConfig {
                classes: 36,
                min_seconds: 4.0,
                max_seconds: 4.0,
                object_scale,
                ..small()
            };
            object_stays_in_view_and_moves(&cfg);
        }
    }

    fn object_stays_in_view_and_moves(cfg: &SynthConfig) {
        for (c, class) in classes(36).unwrap().into_iter().enumerate() {
            for v in 0..4 {
                let plan = VideoPlan::new(cfg, class, c, v);
                let r = plan.radius;
                for k in 0..plan.frames {
                    let p = plan.pose(k);
                    let reach = r * p.scale;
                    assert!(
                        p.x - reach >= 0.0
                            && p.x + reach <= 64.0
                            && p.y - reach >= 0.0
                            && p.y + reach <= 64.0,
                        "{class} video {v} frame {k}: {p:?} radius {r} leaves the frame"
                    );
                }
                // Within one second its rim travels (moves, turns or grows) by a good part
                // of its radius, summed frame to frame; a still object scores 0.
                let path: f32 = (0..25)
                    .map(|k| {
                        let (a, b) = (plan.pose(k), plan.pose(k + 1));
                        (a.x - b.x).hypot(a.y - b.y)
                            + (a.scale - b.scale).abs() * r
                            + (a.angle - b.angle).abs() * r
                    })
                    .sum();
                assert!(path > 0.3 * r, "{class} video {v}: moves {path} px in 1 s, radius {r}");
            }
        }
    }

    #[test]
    fn clutter_flattens_the_background_and_drops_distractors_but_not_the_object() {
        let busy = SynthConfig { min_seconds: 6.0, max_seconds: 6.0, ..small() };
        let calm = SynthConfig { clutter: 0.0, ..busy.clone() };
        // Spread of the background around its mean, away from the object.
        let spread = |plan: &VideoPlan, k: u32| {
            let (f, r) = (frame(plan, k), plan.object_box(k));
            let outside: Vec<f32> = (0..64 * 64)
                .filter(|i| {
                    let (x, y) = (i % 64, i / 64);
                    !(r.x0..r.x1).contains(&x) || !(r.y0..r.y1).contains(&y)
                })
                .map(|i| f[i as usize * 3..i as usize * 3 + 3].iter().sum::<f32>() / 3.0)
                .collect();
            let mean = outside.iter().sum::<f32>() / outside.len() as f32;
            outside.iter().map(|v| (v - mean).abs()).sum::<f32>() / outside.len() as f32
        };
        for (c, class) in classes(4).unwrap().into_iter().enumerate() {
            let (b, q) = (VideoPlan::new(&busy, class, c, 0), VideoPlan::new(&calm, class, c, 0));
            assert!(!b.distractors.is_empty() && q.distractors.is_empty(), "{class}");
            for k in [0, 40, 80] {
                assert_eq!(b.pose(k), q.pose(k), "{class} frame {k}: clutter moved the object");
                let (sb, sq) = (spread(&b, k), spread(&q, k));
                assert!(sq < 0.5 * sb, "{class} frame {k}: spread {sq} calm, {sb} busy");
            }
        }
        let bad = |clutter, object_scale| {
            SynthConfig { clutter, object_scale, ..small() }.validate().is_err()
        };
        assert!(bad(1.5, 1.0) && bad(-0.1, 1.0) && bad(1.0, 0.0) && bad(1.0, 2.5));
    }

    #[test]
    fn presence_shows_the_object_for_one_stretch_of_that_fraction_and_changes_nothing_else() {
        let full = SynthConfig { min_seconds: 4.0, max_seconds: 4.0, ..small() };
        let half = SynthConfig { presence: 0.5, ..full.clone() };
        for (c, class) in classes(4).unwrap().into_iter().enumerate() {
            let (f, h) = (VideoPlan::new(&full, class, c, 0), VideoPlan::new(&half, class, c, 0));
            assert!((0..f.frames).all(|k| f.shows_object(k)), "{class}: presence 1 hides it");
            let shown: Vec<u32> = (0..h.frames).filter(|&k| h.shows_object(k)).collect();
            let (first, last) = (shown[0], shown[shown.len() - 1]);
            assert_eq!(shown.len() as u32, last - first + 1, "{class}: {shown:?} has gaps");
            assert!(shown.len().abs_diff(50) <= 1, "{class}: {} of 100 frames", shown.len());
            for k in [first, (first + last) / 2, last] {
                assert_eq!(frame(&h, k), frame(&f, k), "{class} frame {k}: the rest changed");
            }
            // Hidden: the object's pixels show the background instead.
            let k = if first > 0 { 0 } else { h.frames - 1 };
            let per_px = box_diff(&frame(&h, k), &frame(&f, k), f.object_box(k));
            assert!(per_px > 0.05, "{class} frame {k}: object region differs by {per_px}");
        }
        for bad in [0.0, -0.5, 1.5] {
            assert!(SynthConfig { presence: bad, ..small() }.validate().is_err(), "{bad}");
        }
    }

    #[test]
    fn the_object_region_changes_between_nearby_frames_for_every_motion() {
        let cfg = SynthConfig { classes: 36, ..small() };
        for (c, class) in classes(36).unwrap().into_iter().enumerate() {
            let plan = VideoPlan::new(&cfg, class, c, 0);
            // The largest change over three pairs 0.2 s apart (one pair can straddle the turn
            // of an oscillation and show the object where it was).
            let per_px = [10, 20, 30]
                .map(|k| box_diff(&frame(&plan, k), &frame(&plan, k + 5), plan.object_box(k)))
                .into_iter()
                .fold(0.0, f32::max);
            assert!(per_px > 0.05, "{class}: object region changes by {per_px} per pixel");
        }
    }

    #[test]
    fn the_ends_of_a_video_differ_more_than_neighbouring_frames() {
        let cfg = SynthConfig { min_seconds: 6.0, max_seconds: 6.0, ..small() };
        for (c, class) in classes(4).unwrap().into_iter().enumerate() {
            let plan = VideoPlan::new(&cfg, class, c, 0);
            let last = plan.frames - 1;
            let near = mean_abs_diff(&frame(&plan, 0), &frame(&plan, 1));
            let far = mean_abs_diff(&frame(&plan, 0), &frame(&plan, last));
            assert!(far > 4.0 * near && far > 0.05, "{class}: far {far}, near {near}");
        }
    }

    #[test]
    fn shapes_fit_the_unit_circle_and_fill_their_centre() {
        for o in ObjectKind::ALL {
            assert!(o.sdf(0.0, 0.0) < 0.0 || o == ObjectKind::Ring, "{o:?} centre");
            for i in 0..64 {
                let (s, c) = (i as f32 / 64.0 * TAU).sin_cos();
                assert!(o.sdf(1.02 * c, 1.02 * s) > 0.0, "{o:?} reaches past radius 1");
            }
        }
        assert!(ObjectKind::Ring.sdf(0.0, 0.0) > 0.0 && ObjectKind::Ring.sdf(0.72, 0.0) < 0.0);
    }

    #[test]
    fn a_folder_with_other_data_is_refused() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("train/x")).unwrap();
        let err = format!("{:#}", prepare_out(d.path(), true).unwrap_err());
        assert!(err.contains("not made by cvrl-shard synth"), "{err}");
        assert!(d.path().join("train/x").exists());
    }
}
