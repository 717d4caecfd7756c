//! The training loader's clip transform: CVRL's pair of augmented views
//! ([`AugmentTransform`]), the ablations `--augmentation` names ([`Augmentation`]) and
//! where the per-pixel work runs (`--augment-on`, [`AugmentOn`]).

use std::cell::RefCell;
use std::fmt;
use std::str::FromStr;

use cvrl_formats::FrameLayout;
use rand::rngs::Xoshiro256PlusPlus;

use super::{augment, AugmentConfig, CropMode};
use crate::loader::{ClipTransform, View};

/// Which spatial augmentation the clips get: CVRL's, or one of the paper's ablations.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Augmentation {
    /// The reference's two views, every random parameter drawn once per clip.
    #[default]
    Cvrl,
    /// The same views with parameters drawn for every frame (temporally inconsistent).
    PerFrame,
    /// CVRL's views at half the colour strength (jitter 0.4, 0.4, 0.4, 0.1) and without blur
    /// or solarization, drawn once per clip: for small crops and short CPU runs, where the
    /// full strength keeps the loss at chance level (see EXPERIMENTS.md). Not the reference.
    Light,
    /// `Light` with parameters drawn for every frame: the temporally inconsistent ablation
    /// at the strength CPU runs learn with.
    LightPerFrame,
    /// None: every frame resized whole (the centred square of its short side), so the two
    /// clips differ only in time (the temporal-only ablation).
    None,
}

impl FromStr for Augmentation {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "cvrl" => Ok(Augmentation::Cvrl),
            "per-frame" => Ok(Augmentation::PerFrame),
            "light" => Ok(Augmentation::Light),
            "light-per-frame" => Ok(Augmentation::LightPerFrame),
            "none" => Ok(Augmentation::None),
            other => {
                Err(format!("{other:?}: expected cvrl, per-frame, light, light-per-frame or none"))
            }
        }
    }
}

impl fmt::Display for Augmentation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Augmentation::Cvrl => "cvrl",
            Augmentation::PerFrame => "per-frame",
            Augmentation::Light => "light",
            Augmentation::LightPerFrame => "light-per-frame",
            Augmentation::None => "none",
        })
    }
}

/// Where the per-pixel augmentation runs: in the loader's workers on the host, or batched
/// on the training device ([`crate::augment::device`]), the workers then only cutting the
/// crop boxes. The same parameters are drawn either way; the pixels agree within one level.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum AugmentOn {
    /// The device when it is a GPU, else the host.
    #[default]
    Auto,
    Host,
    Device,
}

impl AugmentOn {
    /// Whether a run on `device` augments there.
    pub fn on_device(self, device: tch::Device) -> bool {
        match self {
            AugmentOn::Auto => device.is_cuda(),
            AugmentOn::Host => false,
            AugmentOn::Device => true,
        }
    }
}

impl FromStr for AugmentOn {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "auto" => Ok(AugmentOn::Auto),
            "host" => Ok(AugmentOn::Host),
            "device" => Ok(AugmentOn::Device),
            other => Err(format!("{other:?}: expected auto, host or device")),
        }
    }
}

impl fmt::Display for AugmentOn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AugmentOn::Auto => "auto",
            AugmentOn::Host => "host",
            AugmentOn::Device => "device",
        })
    }
}

/// `views` with every random parameter drawn for each frame instead of once per clip.
fn per_frame(views: [AugmentConfig; 2]) -> AugmentTransform {
    AugmentTransform::with_views(views.map(|v| AugmentConfig { consistent: false, ..v }))
}

/// [`Augmentation::Light`]'s two (identical) views, built from the reference's first one.
fn light(first: AugmentConfig) -> [AugmentConfig; 2] {
    let light = AugmentConfig {
        brightness: 0.4,
        contrast: 0.4,
        saturation: 0.4,
        hue: 0.1,
        blur_p: 0.0,
        solarize_p: 0.0,
        ..first
    };
    [light, light]
}

/// CVRL's two augmented views as a [`ClipTransform`]: the stored frames of one clip become
/// `u8` RGB `[3, T, S, S]` by [`augment`], with the reference's asymmetric pair of configs
/// ([`AugmentConfig::first_view`] for the first clip of a pair, blur always;
/// [`AugmentConfig::second_view`] for the second, blur p = 0.1 and solarization p = 0.2).
pub struct AugmentTransform {
    views: [AugmentConfig; 2],
}

thread_local! {
    /// Each loader thread's scratch buffer, reused from clip to clip.
    static SCRATCH: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

impl AugmentTransform {
    /// The reference's two views at `out_size²` pixels.
    pub fn new(out_size: u32) -> Self {
        let [a, b] = AugmentConfig::pair();
        AugmentTransform::with_views([
            AugmentConfig { out_size, ..a },
            AugmentConfig { out_size, ..b },
        ])
    }

    /// The views `augmentation` names, at `out_size²` pixels.
    pub fn for_run(augmentation: Augmentation, out_size: u32) -> Self {
        let [a, b] = AugmentTransform::new(out_size).views;
        match augmentation {
            Augmentation::Cvrl => AugmentTransform::with_views([a, b]),
            Augmentation::PerFrame => per_frame([a, b]),
            Augmentation::Light => AugmentTransform::with_views(light(a)),
            Augmentation::LightPerFrame => per_frame(light(a)),
            Augmentation::None => {
                let whole = AugmentConfig {
                    crop: CropMode::Center { fraction: 1.0 },
                    ..AugmentConfig::eval(out_size)
                };
                AugmentTransform::with_views([whole, whole])
            }
        }
    }

    /// Random crops of at least `min` of the frame's area (the reference: 0.3), for data
    /// whose subject is small in the frame.
    pub fn with_min_area(mut self, min: f64) -> Self {
        for view in &mut self.views {
            view.area.0 = min.min(view.area.1);
        }
        self
    }

    /// Every view turns its clips grey with probability `p` (the reference: 0.2); `None`
    /// keeps each view's own. Flat-coloured data needs more, or colour stays the easiest
    /// cue to match clips by.
    pub fn with_grayscale(mut self, p: Option<f64>) -> Self {
        if let Some(p) = p {
            for view in &mut self.views {
                view.grayscale_p = p;
            }
        }
        self
    }

    /// Other augmentations (both must have the same `out_size`).
    ///
    /// # Panics
    ///
    /// If the two output sizes differ.
    pub fn with_views(views: [AugmentConfig; 2]) -> Self {
        assert_eq!(views[0].out_size, views[1].out_size, "both views must have one output size");
        AugmentTransform { views }
    }
}

impl ClipTransform for AugmentTransform {
    fn output_len(&self, t: usize) -> usize {
        let s = self.views[0].out_size as usize;
        3 * t * s * s
    }

    fn views(&self) -> Option<&[AugmentConfig; 2]> {
        Some(&self.views)
    }

    fn apply(
        &self,
        view: View,
        rng: &mut Xoshiro256PlusPlus,
        layout: &FrameLayout,
        frames: &[u8],
        t: usize,
        out: &mut [u8],
    ) {
        SCRATCH.with(|scratch| {
            let scratch = &mut *scratch.borrow_mut();
            match augment(rng, &self.views[view.index()], layout, frames, t, scratch) {
                Ok(_) if scratch.len() == out.len() => out.copy_from_slice(scratch),
                Ok(_) => {
                    eprintln!(
                        "warning: augmented clip has {} bytes, expected {}",
                        scratch.len(),
                        out.len()
                    );
                    out.fill(0);
                }
                Err(e) => {
                    // The frames come from a validated shard set, so this is a bug; a black
                    // clip keeps the run going and the warning says what happened.
                    eprintln!("warning: cannot augment a clip: {e}");
                    out.fill(0);
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cvrl_formats::PixelFormat;
    use rand::SeedableRng;

    #[test]
    fn augmentation_ablations_set_the_views_they_name() {
        for a in [
            Augmentation::Cvrl,
            Augmentation::PerFrame,
            Augmentation::Light,
            Augmentation::LightPerFrame,
            Augmentation::None,
        ] {
            assert_eq!(a.to_string().parse::<Augmentation>(), Ok(a));
        }
        assert!("sideways".parse::<Augmentation>().is_err());
        let cvrl = AugmentTransform::for_run(Augmentation::Cvrl, 32).views;
        assert_eq!(cvrl, AugmentTransform::new(32).views);
        assert!(cvrl.iter().all(|v| v.consistent));
        let per_frame = AugmentTransform::for_run(Augmentation::PerFrame, 32).views;
        assert!(per_frame.iter().all(|v| !v.consistent));
        assert_eq!(per_frame[0], AugmentConfig { consistent: false, ..cvrl[0] });
        let wide = AugmentTransform::for_run(Augmentation::Cvrl, 32).with_min_area(0.6).views;
        assert!(wide.iter().all(|v| v.area == (0.6, 1.0)));
        let grey = AugmentTransform::for_run(Augmentation::Cvrl, 32).with_grayscale(Some(0.8));
        assert!(grey.views.iter().all(|v| v.grayscale_p == 0.8));
        let own = AugmentTransform::for_run(Augmentation::Cvrl, 32).with_grayscale(None);
        assert_eq!(own.views, cvrl);
        let light = AugmentTransform::for_run(Augmentation::Light, 32).views;
        assert_eq!(light[0], light[1]);
        assert_eq!((light[0].blur_p, light[0].solarize_p, light[0].hue), (0.0, 0.0, 0.1));
        assert_eq!(
            (light[0].area, light[0].flip_p, light[0].grayscale_p),
            (cvrl[0].area, 0.5, 0.2)
        );
        let light_per_frame = AugmentTransform::for_run(Augmentation::LightPerFrame, 32).views;
        assert_eq!(light_per_frame, light.map(|v| AugmentConfig { consistent: false, ..v }));
        let none = AugmentTransform::for_run(Augmentation::None, 32).views;
        for v in none {
            assert_eq!(v.crop, CropMode::Center { fraction: 1.0 });
            assert_eq!(
                (v.flip_p, v.jitter_p, v.grayscale_p, v.blur_p, v.solarize_p),
                (0.0, 0.0, 0.0, 0.0, 0.0)
            );
            assert_eq!(v.out_size, 32);
        }
    }

    #[test]
    fn each_clip_of_a_pair_gets_the_view_the_loader_names() {
        // First view grayscale, second in colour: the output tells which view was used.
        let gray = AugmentConfig { grayscale_p: 1.0, ..AugmentConfig::eval(4) };
        let transform = AugmentTransform::with_views([gray, AugmentConfig::eval(4)]);
        let layout = FrameLayout::new(4, 4, PixelFormat::Rgb24).unwrap();
        let frames: Vec<u8> = [200u8, 40, 90].repeat(16);
        let mut out = vec![0u8; transform.output_len(1)];
        let mut is_gray = |view: View, seed: u64| {
            let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
            transform.apply(view, &mut rng, &layout, &frames, 1, &mut out);
            out[..16] == out[16..32] && out[16..32] == out[32..]
        };
        // Whatever the generator's state and whatever came before.
        for seed in 0..4 {
            assert!(is_gray(View::First, seed));
            assert!(!is_gray(View::Second, seed));
            assert!(!is_gray(View::Second, seed));
            assert!(is_gray(View::First, seed));
        }
    }
}
