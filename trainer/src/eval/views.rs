//! The clips evaluation looks at, cut from stored frames without randomness that depends on
//! anything but the seed and the video's position, so features are reproducible and cacheable.
//!
//! - Training a classifier: `clips` clips per video, each at a uniform random start, with the
//!   reference's linear-evaluation augmentation: the pretraining crop (area 0.3-1, aspect
//!   0.5-2) and flip, no colour.
//! - Testing: `temporal` evenly spaced clips x `spatial` square crops, each the full short
//!   side, placed from one end of the long side to the other (the reference: 10 x 3 crops of
//!   256 x 256 after resizing the short side to 256), resized to `size`.

use std::fmt;

use cvrl_formats::{FrameReader, ShardSet};
use rand::rngs::Xoshiro256PlusPlus;
use rand::SeedableRng;

use crate::augment::{augment, augment_clip, AugmentConfig, ClipParams, Crop, CropMode};
use crate::loader::mix;
use crate::sampler::{linspace_starts, sample_single, ClipSpec};

use super::EvalError;

/// Which clips, and how they are cropped.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Views {
    /// Random clips with crop and flip, for training a classifier.
    Train { clips: u32, seed: u64 },
    /// Evenly spaced clips x full-short-side crops along the long side, for testing.
    Test { temporal: u32, spatial: u32 },
}

/// The clips cut from every video: their shape, their output size and their placement.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ViewSpec {
    pub clip: ClipSpec,
    /// Side of the square output frames.
    pub size: u32,
    pub views: Views,
}

impl fmt::Display for ViewSpec {
    /// A stable description, part of the feature cache's key.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = &self.clip;
        write!(f, "{}x{}@{}fps {}px ", c.frames, c.stride, c.base_fps, self.size)?;
        match self.views {
            Views::Train { clips, seed } => write!(f, "train {clips} clips seed {seed}"),
            Views::Test { temporal, spatial } => write!(f, "test {temporal}x{spatial} views"),
        }
    }
}

impl ViewSpec {
    /// Views per video.
    pub fn count(&self) -> usize {
        match self.views {
            Views::Train { clips, .. } => clips as usize,
            Views::Test { temporal, spatial } => (temporal * spatial) as usize,
        }
    }

    /// Bytes of one view, `u8` `[C, T, H, W]`.
    pub fn clip_bytes(&self) -> usize {
        3 * self.clip.frames as usize * (self.size as usize).pow(2)
    }

    /// Checks the counts and sizes before any work.
    pub fn validate(&self) -> Result<(), EvalError> {
        let bad = |m: &str| Err(EvalError::Config(m.to_owned()));
        if self.size == 0 || self.clip.frames == 0 {
            return bad("clip frames and size must be at least 1");
        }
        if self.count() == 0 {
            return bad("at least one view per video is needed");
        }
        Ok(())
    }

    /// Writes every view of `video` into `out` (`count() * clip_bytes()` bytes), view after
    /// view; `frames` is scratch space.
    pub fn render(
        &self,
        set: &ShardSet,
        reader: &mut FrameReader<'_>,
        video: usize,
        frames: &mut Vec<u8>,
        out: &mut [u8],
    ) -> Result<(), EvalError> {
        let row = &set.videos()[video];
        let layout = set.layout(video);
        let (len, fps) = (row.num_frames, row.fps());
        let mut indices = Vec::new();
        let mut view = Vec::new();
        let mut gather = |start: u32, frames: &mut Vec<u8>| -> Result<(), EvalError> {
            self.clip.indices(start, len, fps, &mut indices);
            frames.clear();
            for &i in &indices {
                frames.extend_from_slice(reader.frame(video, i)?);
            }
            Ok(())
        };
        let t = self.clip.frames as usize;
        let mut outs = out.chunks_exact_mut(self.clip_bytes());
        match self.views {
            Views::Train { clips, seed } => {
                let cfg = train_augmentation(self.size);
                for c in 0..clips {
                    let mut rng = Xoshiro256PlusPlus::seed_from_u64(mix(
                        seed ^ mix((video as u64) << 16 | u64::from(c))
                    ));
                    gather(sample_single(&mut rng, &self.clip, len, fps), frames)?;
                    augment(&mut rng, &cfg, &layout, frames, t, &mut view)
                        .map_err(augment_error)?;
                    copy_view(&view, outs.next())?;
                }
            }
            Views::Test { temporal, spatial } => {
                let cfg = AugmentConfig {
                    crop: CropMode::Center { fraction: 1.0 },
                    ..AugmentConfig::eval(self.size)
                };
                let boxes = spatial_crops(layout.width(), layout.height(), spatial);
                for start in linspace_starts(&self.clip, len, fps, temporal) {
                    gather(start, frames)?;
                    for &crop in &boxes {
                        let params = ClipParams { crop, ..ClipParams::whole_frame(1, 1) };
                        augment_clip(&layout, frames, t, &[params], &cfg, &mut view)
                            .map_err(augment_error)?;
                        copy_view(&view, outs.next())?;
                    }
                }
            }
        }
        Ok(())
    }
}

/// The reference's linear-evaluation training augmentation: pretraining crop and flip, no
/// colour, no blur.
pub fn train_augmentation(size: u32) -> AugmentConfig {
    AugmentConfig { crop: CropMode::Random, flip_p: 0.5, ..AugmentConfig::eval(size) }
}

/// `n` square crops with the side of the frame's short side, spread evenly from one end of
/// the long side to the other (one crop: the centre).
pub fn spatial_crops(width: u32, height: u32, n: u32) -> Vec<Crop> {
    let side = width.min(height);
    let slack = width.max(height) - side;
    let at = |i: u32| match n {
        0 | 1 => slack / 2,
        _ => ((u64::from(i) * u64::from(slack)) / u64::from(n - 1)) as u32,
    };
    (0..n)
        .map(|i| {
            let (x, y) = if width >= height { (at(i), 0) } else { (0, at(i)) };
            Crop { x, y, w: side, h: side }
        })
        .collect()
}

fn copy_view(view: &[u8], out: Option<&mut [u8]>) -> Result<(), EvalError> {
    match out {
        Some(out) if out.len() == view.len() => {
            out.copy_from_slice(view);
            Ok(())
        }
        _ => Err(EvalError::Config("view buffer has the wrong size".into())),
    }
}

fn augment_error(e: crate::augment::AugmentError) -> EvalError {
    EvalError::Config(format!("cutting a view: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn three_crops_span_the_long_side_and_one_is_centred() {
        let c = spatial_crops(340, 256, 3);
        assert_eq!(c.iter().map(|c| c.x).collect::<Vec<_>>(), [0, 42, 84]);
        assert!(c.iter().all(|c| c.y == 0 && c.w == 256 && c.h == 256));
        let portrait = spatial_crops(100, 160, 2);
        assert_eq!(portrait.iter().map(|c| c.y).collect::<Vec<_>>(), [0, 60]);
        assert_eq!(spatial_crops(160, 100, 1)[0].x, 30);
    }
}
