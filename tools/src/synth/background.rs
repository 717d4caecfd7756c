//! The background: textures larger than the frame, procedural (value noise, stripes,
//! checker) or cut from photographs (`photo.rs`), each panning across it, and their
//! bilinear sampling at a frame's offset.

use std::f32::consts::TAU;

use super::raster::{hsv, lerp3, smoothstep, Rgb};
use super::rng::{lattice, mix, Rng};
use super::SynthConfig;

/// Salt of a photo background's random stream (drawn from the layer's procedural recipe).
const PHOTO_STREAM: u64 = 0x9407_0000_7E87;

#[derive(Clone, Copy, Debug, PartialEq)]
enum TextureKind {
    Noise,
    Stripes,
    Checker,
}

/// A texture, larger than the frame by the distance it pans.
#[derive(Clone, Debug)]
pub(super) struct Texture {
    w: usize,
    h: usize,
    rgb: Vec<f32>,
}

fn background_colour(rng: &mut Rng) -> Rgb {
    hsv(rng.unit(), rng.range(0.15, 0.7), rng.range(0.25, 0.9))
}

/// The random choices of a procedural texture, drawn whether or not it is rendered, so that
/// a photo background (which takes its own choices from `noise_seed`) leaves every later
/// random choice of the video as it was.
struct Recipe {
    kind: TextureKind,
    c1: Rgb,
    c2: Rgb,
    noise_seed: u64,
    cell: f32,
    sin: f32,
    cos: f32,
    period: f32,
    shift: f32,
    grain: f32,
}

impl Recipe {
    /// `contrast` (0-1) pulls the second colour and the grain towards the first.
    fn draw(kind: TextureKind, scale: f32, contrast: f32, rng: &mut Rng) -> Recipe {
        let (c1, c2) = (background_colour(rng), background_colour(rng));
        let c2 = lerp3(c1, c2, contrast);
        let noise_seed = rng.next_u64();
        let cell = scale * rng.range(0.2, 0.45);
        let (sin, cos) = rng.range(0.0, TAU).sin_cos();
        let period = scale * rng.range(0.06, 0.18);
        let shift = rng.range(0.0, TAU);
        // Every kind gets some fractal noise in its brightness, so no region is flat.
        let grain = contrast * if kind == TextureKind::Noise { 0.0 } else { rng.range(0.1, 0.25) };
        Recipe { kind, c1, c2, noise_seed, cell, sin, cos, period, shift, grain }
    }

    fn render(&self, w: usize, h: usize) -> Texture {
        let Recipe { kind, c1, c2, noise_seed, cell, sin, cos, period, shift, grain } = *self;
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
pub(super) struct Layer {
    pub(super) texture: Texture,
    start: (f32, f32),
    velocity: (f32, f32),
}

impl Layer {
    /// A texture panning at `speed` pixels per second in a random direction for `seconds`.
    pub(super) fn new(cfg: &SynthConfig, seconds: f32, speed: f32, rng: &mut Rng) -> Layer {
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
        let recipe = Recipe::draw(kind, w.min(h) as f32, cfg.clutter, rng);
        let texture = match &cfg.textures {
            None => recipe.render(tw, th),
            Some(photos) => {
                let mut own = Rng::new(mix(recipe.noise_seed ^ PHOTO_STREAM));
                Texture { w: tw, h: th, rgb: photos.crop(tw, th, &mut own) }
            }
        };
        Layer { texture, start, velocity }
    }

    pub(super) fn offset(&self, t: f32) -> (f32, f32) {
        (self.start.0 + self.velocity.0 * t, self.start.1 + self.velocity.1 * t)
    }
}

/// Bilinear sampling at one fractional offset shared by the whole frame: the four weights
/// are computed once.
pub(super) struct Sampler<'a> {
    tex: &'a Texture,
    x0: usize,
    y0: usize,
    w: [f32; 4],
}

impl<'a> Sampler<'a> {
    pub(super) fn new(tex: &'a Texture, (ox, oy): (f32, f32)) -> Sampler<'a> {
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

    pub(super) fn at(&self, x: usize, y: usize) -> Rgb {
        let (tw, th) = (self.tex.w, self.tex.h);
        let (x, y) = ((self.x0 + x).min(tw - 2), (self.y0 + y).min(th - 2));
        let i = (y * tw + x) * 3;
        let (r0, r1) = (&self.tex.rgb[i..i + 6], &self.tex.rgb[i + tw * 3..i + tw * 3 + 6]);
        let w = self.w;
        std::array::from_fn(|c| w[0] * r0[c] + w[1] * r0[c + 3] + w[2] * r1[c] + w[3] * r1[c + 3])
    }
}
