//! Painting a frame: an RGB float [`Canvas`], colour helpers, the object shapes as signed
//! distance functions (after Inigo Quilez's 2D distance functions), and the drawing of one
//! frame of a [`VideoPlan`]; then the conversion to 4:2:0 YUV for the encoder.

use ff::frame::Video as VideoFrame;
use ffmpeg_next as ff;

use super::background::Sampler;
use super::scene::OUTLINE;
use super::VideoPlan;

pub(super) type Rgb = [f32; 3];

pub(super) fn hsv(h: f32, s: f32, v: f32) -> Rgb {
    let h = h.rem_euclid(1.0) * 6.0;
    let f = |n: f32| {
        let k = (n + h) % 6.0;
        v - v * s * k.min(4.0 - k).clamp(0.0, 1.0)
    };
    [f(5.0), f(3.0), f(1.0)]
}

pub(super) fn luma(c: Rgb) -> f32 {
    0.299 * c[0] + 0.587 * c[1] + 0.114 * c[2]
}

pub(super) fn lerp3(a: Rgb, b: Rgb, t: f32) -> Rgb {
    [a[0] + (b[0] - a[0]) * t, a[1] + (b[1] - a[1]) * t, a[2] + (b[2] - a[2]) * t]
}

/// Rotation by `angle` radians about the grey axis of RGB space: a hue turn that keeps grey.
fn hue_matrix(angle: f32) -> [[f32; 3]; 3] {
    let (s, c) = angle.sin_cos();
    let (k, q) = ((1.0 - c) / 3.0, s * (1.0f32 / 3.0).sqrt());
    [[c + k, k - q, k + q], [k + q, c + k, k - q], [k - q, k + q, c + k]]
}

pub(super) fn smoothstep(e0: f32, e1: f32, x: f32) -> f32 {
    let t = ((x - e0) / (e1 - e0)).clamp(0.0, 1.0);
    t * t * (3.0 - 2.0 * t)
}

pub(super) fn sd_box(x: f32, y: f32, hx: f32, hy: f32) -> f32 {
    let (qx, qy) = (x.abs() - hx, y.abs() - hy);
    let outside = (qx.max(0.0).powi(2) + qy.max(0.0).powi(2)).sqrt();
    outside + qx.max(qy).min(0.0)
}

/// Equilateral triangle with circumradius 1, apex up (towards -y in the image).
pub(super) fn sd_triangle(x: f32, y: f32) -> f32 {
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
pub(super) fn sd_star5(x: f32, y: f32, r: f32, rf: f32) -> f32 {
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
pub(super) fn coverage(d: f32) -> f32 {
    (0.5 - d).clamp(0.0, 1.0)
}

impl VideoPlan {
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
    pub(super) fn paint(
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
    pub(super) fn to_yuv420(&self, frame: &mut VideoFrame) {
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
