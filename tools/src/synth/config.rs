//! What `synth` generates ([`SynthConfig`]) and the named sizes of dataset ([`Preset`]),
//! checked once by [`SynthConfig::validate`].

use anyhow::{ensure, Result};
use serde::Serialize;
use std::fmt;
use std::str::FromStr;

use super::{classes_from, ClassSpec, Photos};

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
    /// The classes start this many diagonals along the object x motion grid
    /// ([`classes_from`]): 2 gives ten classes that share no object x motion pair with the
    /// default ten (the transfer probe's target).
    #[serde(skip_serializing_if = "is_zero")]
    pub diagonal_offset: usize,
    /// Backgrounds cut from these photographs instead of procedural textures (`synth
    /// --textures DIR`); every other random choice stays as without them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub textures: Option<Photos>,
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
            diagonal_offset: 0,
            textures: None,
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

    /// The classes, in order ([`classes_from`]).
    pub fn class_specs(&self) -> Result<Vec<ClassSpec>> {
        classes_from(self.classes, self.diagonal_offset)
    }

    /// The number that keys a class's random stream in [`super::VideoPlan::new`]: its place
    /// in the grid, so the classes of another diagonal offset are other videos.
    pub fn class_stream(&self, class_index: usize) -> usize {
        class_index + self.diagonal_offset * super::MAX_CLASSES
    }

    /// Checks every field once; after this the generator trusts them.
    pub fn validate(&self) -> Result<()> {
        self.class_specs()?;
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

fn is_zero(n: &usize) -> bool {
    *n == 0
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
