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
//!
//! # Layout
//! `classes.rs` names the classes (object kinds x motions); `config.rs` holds what to
//! generate and the presets; `scene.rs` draws every random choice of one video from the
//! seeded `rng.rs` stream and moves its object, with `background.rs` (panning textures) and
//! `distractor.rs`; `raster.rs` paints a frame; `encode.rs` writes the H.264 file;
//! `dataset.rs` writes the whole dataset folder.

mod background;
mod classes;
mod config;
mod dataset;
mod distractor;
mod encode;
mod photo;
mod raster;
mod rng;
mod scene;

pub use classes::{classes, classes_from, ClassSpec, Motion, ObjectKind, MAX_CLASSES};
pub use config::{Preset, SynthConfig};
pub use dataset::{plan_dataset, synth, SynthSummary, SynthVideo};
pub use encode::write_video;
pub use photo::{Photos, TextureError};
pub use raster::Canvas;
pub use scene::{Pose, Rect, VideoPlan};

/// The factors CSV `synth` writes at the dataset root (what `cvrl-shard build` picks up).
pub const FACTORS_FILE: &str = crate::inputs::FACTORS_FILE;
/// The parameters of a finished dataset; written last, so its presence marks a complete one.
pub const PARAMS_FILE: &str = "synth.json";
