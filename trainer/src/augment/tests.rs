//! Tests of the whole augmentation pipeline on small real frames: each op against TF's
//! definition, consistency across frames, crop geometry, and the AVX2 build against the
//! baseline.

use super::blur::*;
use super::params::*;
use super::*;
use rand::rngs::Xoshiro256PlusPlus;
use rand::SeedableRng;

fn rng(seed: u64) -> Xoshiro256PlusPlus {
    Xoshiro256PlusPlus::seed_from_u64(seed)
}

fn rgb_layout(w: u32, h: u32) -> FrameLayout {
    FrameLayout::new(w, h, PixelFormat::Rgb24).unwrap()
}

fn yuv_layout(w: u32, h: u32) -> FrameLayout {
    FrameLayout::new(w, h, PixelFormat::Yuv420p).unwrap()
}

/// An rgb24 frame with pixel (x, y) = f(x, y).
fn rgb_frame(w: u32, h: u32, f: impl Fn(u32, u32) -> [u8; 3]) -> Vec<u8> {
    (0..h).flat_map(|y| (0..w).map(move |x| (x, y))).flat_map(|(x, y)| f(x, y)).collect()
}

/// A yuv420p frame with luma f(x, y) and neutral chroma.
fn yuv_gray_frame(w: u32, h: u32, f: impl Fn(u32, u32) -> u8) -> Vec<u8> {
    let mut v: Vec<u8> =
        (0..h).flat_map(|y| (0..w).map(move |x| (x, y))).map(|(x, y)| f(x, y)).collect();
    v.resize(v.len() * 3 / 2, 128);
    v
}

/// A yuv420p frame with some texture and colour everywhere.
fn yuv_textured_frame(w: u32, h: u32, seed: u32) -> Vec<u8> {
    let hash = |x: u32, y: u32, c: u32| {
        let mut v = x.wrapping_mul(0x9E37_79B9)
            ^ y.wrapping_mul(0x85EB_CA6B)
            ^ c.wrapping_mul(0xC2B2_AE35)
            ^ seed;
        v ^= v >> 15;
        v = v.wrapping_mul(0x2C1B_3C6D);
        v ^= v >> 12;
        v
    };
    let mut out = Vec::with_capacity((w * h * 3 / 2) as usize);
    out.extend(
        (0..h)
            .flat_map(|y| (0..w).map(move |x| (x, y)))
            .map(|(x, y)| (16 + (x * 3 + y * 2) % 180 + hash(x, y, 0) % 40) as u8),
    );
    for c in 1..3 {
        out.extend(
            (0..h / 2)
                .flat_map(|y| (0..w / 2).map(move |x| (x, y)))
                .map(|(x, y)| (70 + (x + c * y) % 80 + hash(x, y, c) % 30) as u8),
        );
    }
    out
}

/// Pixel (x, y) of frame `t` of an output clip of `frames` frames of side `s`.
fn px(out: &[u8], frames: usize, s: usize, t: usize, x: usize, y: usize) -> [u8; 3] {
    std::array::from_fn(|c| out[((c * frames + t) * s + y) * s + x])
}

fn frame_of(out: &[u8], frames: usize, s: usize, t: usize) -> Vec<u8> {
    (0..3).flat_map(|c| out[(c * frames + t) * s * s..][..s * s].to_vec()).collect()
}

fn cfg_size(s: u32) -> AugmentConfig {
    AugmentConfig { out_size: s, ..AugmentConfig::first_view() }
}

fn jitter(order: [ColorOp; 4]) -> Jitter {
    Jitter { brightness: 1.0, contrast: 1.0, saturation: 1.0, hue: 0.0, order }
}

const BCSH: [ColorOp; 4] =
    [ColorOp::Brightness, ColorOp::Contrast, ColorOp::Saturation, ColorOp::Hue];

/// Runs `params` on an rgb24 clip of `t` frames of `w x w` at output size `w`: the
/// crop-resize is then the identity, so only the colour ops act.
fn run_rgb(w: u32, frames: &[u8], t: usize, params: &[ClipParams]) -> Vec<u8> {
    let mut out = Vec::new();
    augment_clip(&rgb_layout(w, w), frames, t, params, &cfg_size(w), &mut out).unwrap();
    out
}

fn with_jitter(w: u32, j: Jitter) -> ClipParams {
    ClipParams { jitter: Some(j), ..ClipParams::whole_frame(w, w) }
}

#[test]
fn consistent_mode_gives_every_identical_frame_the_same_output() {
    let layout = yuv_layout(64, 48);
    let frame = yuv_textured_frame(64, 48, 7);
    let t = 6;
    let frames = frame.repeat(t);
    // Every op on: jitter, grayscale off so colour shows, blur, solarize.
    let cfg = AugmentConfig {
        out_size: 40,
        jitter_p: 1.0,
        grayscale_p: 0.0,
        solarize_p: 1.0,
        ..AugmentConfig::first_view()
    };
    let mut out = Vec::new();
    let params = augment(&mut rng(3), &cfg, &layout, &frames, t, &mut out).unwrap();
    assert_eq!(params.len(), 1);
    let first = frame_of(&out, t, 40, 0);
    for ti in 1..t {
        assert_eq!(frame_of(&out, t, 40, ti), first, "frame {ti} differs");
    }

    let cfg = AugmentConfig { consistent: false, ..cfg };
    let params = augment(&mut rng(3), &cfg, &layout, &frames, t, &mut out).unwrap();
    assert_eq!(params.len(), t);
    let first = frame_of(&out, t, 40, 0);
    let differing = (1..t).filter(|&ti| frame_of(&out, t, 40, ti) != first).count();
    assert!(differing >= t - 2, "only {differing} of {} frames differ from the first", t - 1);
    assert!(params.windows(2).all(|w| w[0] != w[1]), "per-frame parameters repeat");
}

#[test]
fn flip_swaps_a_dark_left_half_with_a_bright_right_half() {
    for layout in [rgb_layout(32, 32), yuv_layout(32, 32)] {
        let frame = match layout.format() {
            PixelFormat::Rgb24 => rgb_frame(32, 32, |x, _| if x < 16 { [20; 3] } else { [220; 3] }),
            PixelFormat::Yuv420p => yuv_gray_frame(32, 32, |x, _| if x < 16 { 30 } else { 200 }),
        };
        let cfg = cfg_size(32);
        let mut out = Vec::new();
        let plain = ClipParams::whole_frame(32, 32);
        augment_clip(&layout, &frame, 1, &[plain], &cfg, &mut out).unwrap();
        let (left, right) = (px(&out, 1, 32, 0, 3, 10), px(&out, 1, 32, 0, 28, 10));
        assert!(
            left[0] < 40 && right[0] > 180,
            "{}: unflipped {left:?} {right:?}",
            layout.format()
        );
        augment_clip(&layout, &frame, 1, &[ClipParams { flip: true, ..plain }], &cfg, &mut out)
            .unwrap();
        let (l2, r2) = (px(&out, 1, 32, 0, 3, 10), px(&out, 1, 32, 0, 28, 10));
        assert_eq!((l2, r2), (right, left), "{}: flip must mirror", layout.format());
    }
}

#[test]
fn the_crop_box_maps_to_the_expected_source_region() {
    // R encodes the column and G the row, so each output pixel says where it came from.
    let layout = rgb_layout(64, 48);
    let frame = rgb_frame(64, 48, |x, y| [x as u8, y as u8, 0]);
    let crop = Crop { x: 10, y: 5, w: 32, h: 16 };
    let p = ClipParams { crop, ..ClipParams::whole_frame(64, 48) };
    let mut out = Vec::new();
    augment_clip(&layout, &frame, 1, &[p], &cfg_size(16), &mut out).unwrap();
    for o in 0..16 {
        // Half-pixel centres: output o samples source 10 + (o + 0.5) * 2 - 0.5.
        let want_x = 10.0 + (o as f64 + 0.5) * 2.0 - 0.5;
        let got = px(&out, 1, 16, 0, o, 0)[0];
        assert!((f64::from(got) - want_x).abs() <= 0.5, "column {o}: {got} vs {want_x}");
        let want_y = 5.0 + o as f64; // scale 1 vertically
        assert_eq!(f64::from(px(&out, 1, 16, 0, 0, o)[1]), want_y, "row {o}");
    }
    // Flipped, column o shows what column 15 - o showed.
    let flipped = ClipParams { flip: true, ..p };
    let mut out2 = Vec::new();
    augment_clip(&layout, &frame, 1, &[flipped], &cfg_size(16), &mut out2).unwrap();
    for o in 0..16 {
        assert_eq!(px(&out2, 1, 16, 0, o, 3), px(&out, 1, 16, 0, 15 - o, 3));
    }

    // The same from yuv420p: luma encodes the column, chroma is neutral.
    let layout = yuv_layout(64, 48);
    let frame = yuv_gray_frame(64, 48, |x, _| 16 + 3 * x as u8);
    augment_clip(&layout, &frame, 1, &[p], &cfg_size(16), &mut out).unwrap();
    for o in 0..16 {
        let want = 3.0 * (10.0 + (o as f64 + 0.5) * 2.0 - 0.5) * 255.0 / 219.0;
        let got = px(&out, 1, 16, 0, o, 7);
        assert!(
            got.iter().all(|&c| (f64::from(c) - want).abs() <= 1.0),
            "column {o}: {got:?} vs {want:.1}"
        );
    }
}

#[test]
fn brightness_multiplies_and_clips() {
    let frame = rgb_frame(2, 2, |_, _| [100, 50, 200]);
    let j = Jitter { brightness: 1.5, ..jitter(BCSH) };
    let out = run_rgb(2, &frame, 1, &[with_jitter(2, j)]);
    assert_eq!(px(&out, 1, 2, 0, 1, 1), [150, 75, 255]);
}

#[test]
fn contrast_scales_around_the_mean_of_the_whole_clip_in_consistent_mode() {
    // Two uniform frames: per-frame means would leave both unchanged.
    let frames =
        [rgb_frame(2, 2, |_, _| [50, 100, 150]), rgb_frame(2, 2, |_, _| [150, 200, 250])].concat();
    let j = Jitter { contrast: 0.5, ..jitter(BCSH) };
    let out = run_rgb(2, &frames, 2, &[with_jitter(2, j)]);
    // Clip means 100, 150, 200.
    assert_eq!(px(&out, 2, 2, 0, 0, 0), [75, 125, 175]);
    assert_eq!(px(&out, 2, 2, 1, 0, 0), [125, 175, 225]);
    // Inconsistent mode: each frame is its own image, so uniform frames stay put.
    let out = run_rgb(2, &frames, 2, &[with_jitter(2, j), with_jitter(2, j)]);
    assert_eq!(px(&out, 2, 2, 0, 0, 0), [50, 100, 150]);
    assert_eq!(px(&out, 2, 2, 1, 1, 1), [150, 200, 250]);
}

#[test]
fn ops_run_in_the_drawn_order_and_clip_after_each() {
    let frame = rgb_frame(2, 1, |x, _| if x == 0 { [100; 3] } else { [200; 3] });
    let frame = [frame.clone(), frame].concat(); // 2x2: rows repeat
    let j = Jitter { brightness: 2.0, contrast: 0.5, ..jitter(BCSH) };
    // Brightness first: 200, 255 (400 clipped); mean 227.5; contrast: 213.75, 241.25.
    let out = run_rgb(2, &frame, 1, &[with_jitter(2, j)]);
    assert_eq!((px(&out, 1, 2, 0, 0, 0)[0], px(&out, 1, 2, 0, 1, 0)[0]), (214, 241));
    // Contrast first: mean 150 gives 125, 175; doubled: 250, 255 (350 clipped).
    let order = [ColorOp::Contrast, ColorOp::Brightness, ColorOp::Saturation, ColorOp::Hue];
    let out = run_rgb(2, &frame, 1, &[with_jitter(2, Jitter { order, ..j })]);
    assert_eq!((px(&out, 1, 2, 0, 0, 0)[0], px(&out, 1, 2, 0, 1, 0)[0]), (250, 255));
}

#[test]
fn saturation_scales_hsv_saturation_as_tf_does() {
    // tf.image.adjust_saturation's documented example: [1, 2, 3] at 0.5 is [2, 2.5, 3].
    let cases = [
        ([40, 80, 120], 0.5, [80, 100, 120]),
        ([60, 90, 120], 2.0, [0, 60, 120]),
        ([60, 90, 120], 3.0, [0, 60, 120]),
        ([90, 90, 90], 1.8, [90, 90, 90]),
    ];
    for (rgb, f, want) in cases {
        let frame = rgb_frame(2, 2, |_, _| rgb);
        let j = Jitter { saturation: f, ..jitter(BCSH) };
        let out = run_rgb(2, &frame, 1, &[with_jitter(2, j)]);
        assert_eq!(px(&out, 1, 2, 0, 0, 1), want, "{rgb:?} x {f}");
    }
}

/// TF's rgb_to_hsv / adjust hue / hsv_to_rgb, written as TF writes them (six-sector
/// switch), in f64, on [0, 1].
fn tf_adjust_hue(rgb: [f64; 3], delta: f64) -> [f64; 3] {
    let [r, g, b] = rgb;
    let v = r.max(g).max(b);
    let range = v - r.min(g).min(b);
    let s = if v > 0.0 { range / v } else { 0.0 };
    let norm = 1.0 / (6.0 * range);
    let mut h = if r == v {
        norm * (g - b)
    } else if g == v {
        norm * (b - r) + 2.0 / 6.0
    } else {
        norm * (r - g) + 4.0 / 6.0
    };
    if range <= 0.0 {
        h = 0.0;
    }
    if h < 0.0 {
        h += 1.0;
    }
    h = (h + delta).rem_euclid(1.0);
    let c = s * v;
    let m = v - c;
    let dh = h * 6.0;
    let mut fmodu = dh;
    while fmodu <= 0.0 {
        fmodu += 2.0;
    }
    while fmodu >= 2.0 {
        fmodu -= 2.0;
    }
    let x = c * (1.0 - (fmodu - 1.0).abs());
    let (rr, gg, bb) = match dh as i32 {
        0 => (c, x, 0.0),
        1 => (x, c, 0.0),
        2 => (0.0, c, x),
        3 => (0.0, x, c),
        4 => (x, 0.0, c),
        5 => (c, 0.0, x),
        _ => (0.0, 0.0, 0.0),
    };
    [rr + m, gg + m, bb + m]
}

#[test]
fn hue_shift_matches_tf_and_a_third_turn_takes_red_to_green() {
    let red = rgb_frame(2, 2, |_, _| [255, 0, 0]);
    let j = Jitter { hue: 1.0 / 3.0, ..jitter(BCSH) };
    assert_eq!(px(&run_rgb(2, &red, 1, &[with_jitter(2, j)]), 1, 2, 0, 0, 0), [0, 255, 0]);
    let j = Jitter { hue: -1.0 / 3.0, ..jitter(BCSH) };
    assert_eq!(px(&run_rgb(2, &red, 1, &[with_jitter(2, j)]), 1, 2, 0, 0, 0), [0, 0, 255]);

    // Against TF's formulas on a spread of colours and shifts.
    let colours: Vec<[u8; 3]> = (0..64u32)
        .map(|i| [(i * 37 % 256) as u8, (i * 91 % 256) as u8, (i * 53 % 256) as u8])
        .chain([[0, 0, 0], [255, 255, 255], [10, 10, 200], [200, 10, 10]])
        .collect();
    let w = colours.len() as u32;
    // One row per colour is not square; use a w x w frame whose rows repeat.
    let frame = rgb_frame(w, w, |x, _| colours[x as usize]);
    for delta in [-0.2f32, -0.07, 0.0, 0.05, 0.13, 0.2, 0.5] {
        let out = run_rgb(w, &frame, 1, &[with_jitter(w, Jitter { hue: delta, ..jitter(BCSH) })]);
        for (x, c) in colours.iter().enumerate() {
            let want = tf_adjust_hue(c.map(|v| f64::from(v) / 255.0), f64::from(delta));
            let got = px(&out, 1, w as usize, 0, x, 2);
            for k in 0..3 {
                assert!(
                    (f64::from(got[k]) - want[k] * 255.0).abs() <= 0.51,
                    "{c:?} + {delta}: {got:?} vs {want:?}"
                );
            }
        }
    }
}

#[test]
fn grayscale_uses_tf_weights_on_all_three_channels() {
    let frame = rgb_frame(2, 2, |_, _| [100, 150, 200]);
    let p = ClipParams { grayscale: true, ..ClipParams::whole_frame(2, 2) };
    let out = run_rgb(2, &frame, 1, &[p]);
    // 0.2989 * 100 + 0.587 * 150 + 0.114 * 200 = 140.74
    assert_eq!(px(&out, 1, 2, 0, 1, 0), [141, 141, 141]);
}

#[test]
fn solarize_mirrors_the_upper_half() {
    let frame = rgb_frame(2, 2, |_, _| [100, 128, 200]);
    let p = ClipParams { solarize: true, ..ClipParams::whole_frame(2, 2) };
    assert_eq!(px(&run_rgb(2, &frame, 1, &[p]), 1, 2, 0, 0, 0), [100, 127, 55]);
}

#[test]
fn blur_spreads_an_impulse_by_the_gaussian_and_darkens_edges_as_zero_padding_does() {
    let s = 60u32; // kernel_size 6, radius 3
    let sigma = 1.0f32;
    let w: Vec<f64> = (-3i32..=3).map(|k| (-f64::from(k * k) / 2.0).exp()).collect();
    let total: f64 = w.iter().sum();
    let w: Vec<f64> = w.iter().map(|v| v / total).collect();
    let p = ClipParams { blur_sigma: Some(sigma), ..ClipParams::whole_frame(s, s) };

    let impulse = rgb_frame(s, s, |x, y| if (x, y) == (30, 30) { [255; 3] } else { [0; 3] });
    let out = run_rgb(s, &impulse, 1, &[p]);
    for (dx, dy) in [(0, 0), (1, 0), (0, 2), (1, 1), (3, 3)] {
        let want = 255.0 * w[3 + dx] * w[3 + dy];
        let got = px(&out, 1, s as usize, 0, 30 + dx, 30 + dy)[0];
        assert!((f64::from(got) - want).abs() <= 0.6, "offset ({dx}, {dy}): {got} vs {want:.2}");
    }
    assert_eq!(px(&out, 1, s as usize, 0, 34, 30)[0], 0, "nothing beyond the radius");

    let flat = rgb_frame(s, s, |_, _| [200; 3]);
    let out = run_rgb(s, &flat, 1, &[p]);
    assert_eq!(px(&out, 1, s as usize, 0, 30, 30), [200; 3], "the interior keeps its level");
    let corner = 200.0 * (w[3] + w[4] + w[5] + w[6]).powi(2);
    let got = px(&out, 1, s as usize, 0, 0, 0)[0];
    assert!((f64::from(got) - corner).abs() <= 0.6, "corner {got} vs {corner:.2}");
}

#[test]
fn the_blur_kernel_is_the_references() {
    let k = blur_kernel(1.5, 224);
    assert_eq!(k.len(), 23, "kernel_size 224 / 10 = 22, radius 11");
    assert!((k.iter().sum::<f32>() - 1.0).abs() < 1e-6);
    assert!((0..11).all(|i| k[i] == k[22 - i] && k[i] < k[i + 1]), "symmetric, peaked");
    let ratio = f64::from(k[12]) / f64::from(k[11]);
    assert!((ratio - (-1.0f64 / (2.0 * 1.5 * 1.5)).exp()).abs() < 1e-6);
    assert_eq!(blur_kernel(1.0, 112).len(), 11, "11 / 2 = 5");
}

/// The AVX2 build of the pipeline and the baseline one give the same bytes (no FMA
/// contraction, no reassociated sums), so results do not depend on the machine.
#[test]
fn the_avx2_build_gives_the_same_bytes_as_the_baseline() {
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx2") {
        let layout = yuv_layout(96, 64);
        let t = 3;
        let frames: Vec<u8> = (0..t as u32).flat_map(|i| yuv_textured_frame(96, 64, i)).collect();
        let s = 48;
        let cfg = AugmentConfig {
            jitter_p: 1.0,
            solarize_p: 0.5,
            grayscale_p: 0.3,
            ..cfg_size(s as u32)
        };
        let mut r = rng(8);
        let per_frame: Vec<ClipParams> =
            (0..t).map(|_| sample_params(&mut r, &cfg, 96, 64)).collect();
        let hsbc = [ColorOp::Hue, ColorOp::Saturation, ColorOp::Brightness, ColorOp::Contrast];
        let all = ClipParams {
            jitter: Some(Jitter {
                brightness: 1.3,
                contrast: 0.6,
                saturation: 1.7,
                hue: -0.15,
                order: hsbc,
            }),
            blur_sigma: Some(1.7),
            solarize: true,
            ..per_frame[0]
        };
        for params in [vec![all], per_frame] {
            let run_with = |avx2: bool| {
                let mut out = vec![0u8; 3 * t * s * s];
                let (r_all, rest) = out.split_at_mut(t * s * s);
                let (g_all, b_all) = rest.split_at_mut(t * s * s);
                let job = Job {
                    layout: &layout,
                    frames: &frames,
                    params: &params,
                    s,
                    planes: [r_all, g_all, b_all],
                };
                let mut sc = Scratch::default();
                if avx2 {
                    // SAFETY: AVX2 support was checked above.
                    unsafe { run_avx2(job, &mut sc) }
                } else {
                    run(job, &mut sc)
                }
                out
            };
            assert!(run_with(true) == run_with(false), "{} parameter sets", params.len());
        }
    }
}

#[test]
fn yuv_limited_range_colours_come_out_right() {
    // BT.601 limited-range pure red is Y=81, U=90, V=240; white is Y=235.
    let layout = yuv_layout(4, 4);
    let mut frame = vec![81u8; 16];
    frame.extend([90u8; 4]);
    frame.extend([240u8; 4]);
    let mut out = Vec::new();
    augment_clip(&layout, &frame, 1, &[ClipParams::whole_frame(4, 4)], &cfg_size(8), &mut out)
        .unwrap();
    let p = px(&out, 1, 8, 0, 5, 2);
    assert!(p[0] >= 253 && p[1] <= 2 && p[2] <= 2, "{p:?}");
    let white = [vec![235u8; 16], vec![128u8; 8]].concat();
    augment_clip(&layout, &white, 1, &[ClipParams::whole_frame(4, 4)], &cfg_size(8), &mut out)
        .unwrap();
    assert!(out.iter().all(|&v| v == 255));
}

/// The alternative to resampling yuv420p directly: convert the frame to RGB first.
fn via_rgb(
    layout: &FrameLayout,
    frames: &[u8],
    t: usize,
    p: &ClipParams,
    s: u32,
    out: &mut Vec<u8>,
    rgb: &mut Vec<u8>,
) {
    let (w, h) = (layout.width(), layout.height());
    let rgb_layout = rgb_layout(w, h);
    rgb.resize(t * rgb_layout.frame_bytes(), 0);
    for (src, dst) in frames
        .chunks_exact(layout.frame_bytes())
        .zip(rgb.chunks_exact_mut(rgb_layout.frame_bytes()))
    {
        cvrl_formats::pixel::yuv420p_to_rgb24(layout, src, dst);
    }
    augment_clip(&rgb_layout, rgb, t, std::slice::from_ref(p), &cfg_size(s), out).unwrap();
}

#[test]
fn resampling_yuv_directly_agrees_with_converting_to_rgb_first() {
    let layout = yuv_layout(96, 64);
    // Smooth content: chroma siting and interpolation order barely matter there.
    let mut frame = yuv_gray_frame(96, 64, |x, y| (40 + x + y) as u8);
    let luma = 96 * 64;
    for (i, v) in frame[luma..].iter_mut().enumerate() {
        let (x, y) = (i % 48, (i / 48) % 32);
        *v = (100 + x + y) as u8;
    }
    let p = ClipParams {
        crop: Crop { x: 7, y: 3, w: 70, h: 50 },
        flip: true,
        ..ClipParams::whole_frame(96, 64)
    };
    let (mut direct, mut converted, mut rgb) = (Vec::new(), Vec::new(), Vec::new());
    augment_clip(&layout, &frame, 1, &[p], &cfg_size(48), &mut direct).unwrap();
    via_rgb(&layout, &frame, 1, &p, 48, &mut converted, &mut rgb);
    let diffs: Vec<i32> =
        direct.iter().zip(&converted).map(|(&a, &b)| (i32::from(a) - i32::from(b)).abs()).collect();
    let max = diffs.iter().max().unwrap();
    let mean = diffs.iter().sum::<i32>() as f64 / diffs.len() as f64;
    assert!(*max <= 4 && mean < 1.5, "max {max}, mean {mean:.2}");
}

#[test]
fn crops_stay_within_the_area_and_aspect_ranges() {
    let mut r = rng(11);
    let (w, h) = (342u32, 256u32);
    let (mut min_area, mut max_area, mut min_ar, mut max_ar) = (1f64, 0f64, 10f64, 0f64);
    for _ in 0..5000 {
        let c = sample_crop(&mut r, w, h, (0.3, 1.0), (0.5, 2.0));
        assert!(c.w >= 1 && c.h >= 1 && c.x + c.w <= w && c.y + c.h <= h, "{c:?}");
        let area = f64::from(c.w * c.h) / f64::from(w * h);
        let ar = f64::from(c.w) / f64::from(c.h);
        // TF accepts a box only when its area is in range; width = round(h * ratio)
        // puts the ratio within half a pixel of the drawn one.
        assert!((0.3 - 1e-6..=1.0).contains(&area), "area {area} of {c:?}");
        let slack = 0.5 / f64::from(c.h);
        assert!(ar >= 0.5 - slack && ar <= 2.0 + slack, "aspect {ar} of {c:?}");
        min_area = min_area.min(area);
        max_area = max_area.max(area);
        min_ar = min_ar.min(ar);
        max_ar = max_ar.max(ar);
    }
    // And the draws cover the ranges (the test has power).
    assert!(min_area < 0.32 && max_area > 0.95, "areas {min_area}..{max_area}");
    assert!(min_ar < 0.55 && max_ar > 1.9, "aspects {min_ar}..{max_ar}");
}

#[test]
fn impossible_ranges_fall_back_to_the_whole_frame() {
    let mut r = rng(5);
    // w = 3h to 4h with 90% of a square frame cannot fit.
    for _ in 0..20 {
        assert_eq!(
            sample_crop(&mut r, 100, 100, (0.9, 1.0), (3.0, 4.0)),
            Crop { x: 0, y: 0, w: 100, h: 100 }
        );
    }
    // Area exactly 1 with aspect exactly the frame's is the whole frame too.
    assert_eq!(
        sample_crop(&mut r, 200, 100, (1.0, 1.0), (2.0, 2.0)),
        Crop { x: 0, y: 0, w: 200, h: 100 }
    );
}

#[test]
fn eval_is_a_deterministic_centre_crop() {
    let cfg = AugmentConfig::eval(224);
    let a = sample_params(&mut rng(1), &cfg, 342, 256);
    let b = sample_params(&mut rng(2), &cfg, 342, 256);
    assert_eq!(a, b);
    assert_eq!(a.crop, Crop { x: 59, y: 16, w: 224, h: 224 });
    assert!(!a.flip && a.jitter.is_none() && !a.grayscale && a.blur_sigma.is_none() && !a.solarize);
}

#[test]
fn output_has_the_right_length_and_is_deterministic_for_a_seed() {
    let layout = yuv_layout(48, 32);
    let t = 3;
    let frames: Vec<u8> = (0..t as u32).flat_map(|i| yuv_textured_frame(48, 32, i)).collect();
    for cfg in [
        AugmentConfig { out_size: 24, ..AugmentConfig::second_view() },
        AugmentConfig { out_size: 24, consistent: false, ..AugmentConfig::first_view() },
    ] {
        let (mut a, mut b) = (Vec::new(), Vec::new());
        let pa = augment(&mut rng(9), &cfg, &layout, &frames, t, &mut a).unwrap();
        let pb = augment(&mut rng(9), &cfg, &layout, &frames, t, &mut b).unwrap();
        assert_eq!(a.len(), 3 * t * 24 * 24);
        assert_eq!((pa, &a), (pb, &b));
        let pc = augment(&mut rng(10), &cfg, &layout, &frames, t, &mut b).unwrap();
        assert_ne!(pc, augment(&mut rng(9), &cfg, &layout, &frames, t, &mut a).unwrap());
    }
}

#[test]
fn sampled_factors_stay_in_their_ranges() {
    let cfg = AugmentConfig { jitter_p: 1.0, ..AugmentConfig::first_view() };
    let mut r = rng(4);
    let mut orders = std::collections::HashSet::new();
    for _ in 0..2000 {
        let j = sample_params(&mut r, &cfg, 342, 256).jitter.unwrap();
        assert!(
            (0.2..=1.8).contains(&j.brightness)
                && (0.2..=1.8).contains(&j.contrast)
                && (0.2..=1.8).contains(&j.saturation)
        );
        assert!((-0.2..=0.2).contains(&j.hue));
        let mut sorted = j.order;
        sorted.sort_by_key(|op| *op as u8);
        assert_eq!(sorted, BCSH, "the order is a permutation");
        orders.insert(j.order);
    }
    assert_eq!(orders.len(), 24, "every order is drawn");
}

#[test]
fn malformed_input_is_an_error() {
    let layout = yuv_layout(8, 8);
    let frames = vec![0u8; 2 * layout.frame_bytes()];
    let cfg = cfg_size(4);
    let p = ClipParams::whole_frame(8, 8);
    let mut out = Vec::new();
    assert!(matches!(
        augment_clip(&layout, &frames[1..], 2, &[p], &cfg, &mut out),
        Err(AugmentError::ClipBytes { .. })
    ));
    assert_eq!(
        augment_clip(&layout, &frames, 2, &[p, p, p], &cfg, &mut out),
        Err(AugmentError::ParamCount { frames: 2, got: 3 })
    );
    let outside = ClipParams { crop: Crop { x: 4, y: 0, w: 5, h: 8 }, ..p };
    assert!(matches!(
        augment_clip(&layout, &frames, 2, &[outside], &cfg, &mut out),
        Err(AugmentError::CropOutside { .. })
    ));
    let empty = ClipParams { crop: Crop { x: 0, y: 0, w: 0, h: 8 }, ..p };
    assert!(matches!(
        augment_clip(&layout, &frames, 2, &[empty], &cfg, &mut out),
        Err(AugmentError::CropOutside { .. })
    ));
    assert_eq!(
        augment_clip(&layout, &frames, 2, &[p], &cfg_size(0), &mut out),
        Err(AugmentError::ZeroOutSize)
    );
}

/// Timing, not a check: `cargo test -p cvrl-trainer --release --lib augment::tests::speed
/// -- --ignored --nocapture`. Minimum per clip on one core of the H200 machine's Xeon
/// (AVX2): crop+resize 2.3 ms (16 via an RGB frame), + jitter 5.5 to 7.8 ms (contrast
/// first or last), + blur σ 2 4.7 ms; `augment()` over random draws averages 11 ms for
/// the first view (always blurred) and 7.3 ms for the second.
#[test]
#[ignore]
fn speed() {
    use std::time::Instant;
    let (w, h, t) = (342u32, 256u32, 16usize);
    let layout = yuv_layout(w, h);
    let frames: Vec<u8> = (0..t as u32).flat_map(|i| yuv_textured_frame(w, h, i)).collect();
    let mut out = Vec::new();
    // A typical box: 60% of the frame, aspect 1.3, upscaled to 224.
    let crop = Crop { x: 40, y: 20, w: 260, h: 200 };
    let base = ClipParams { crop, ..ClipParams::whole_frame(w, h) };
    let hsbc = [ColorOp::Hue, ColorOp::Saturation, ColorOp::Brightness, ColorOp::Contrast];
    let cbsh = [ColorOp::Contrast, ColorOp::Brightness, ColorOp::Saturation, ColorOp::Hue];
    let jit =
        |order| Some(Jitter { brightness: 1.3, contrast: 0.7, saturation: 1.4, hue: 0.1, order });
    let cases = [
        ("crop+resize", base),
        ("crop+resize+flip", ClipParams { flip: true, ..base }),
        ("+ jitter, contrast first", ClipParams { jitter: jit(cbsh), ..base }),
        ("+ jitter, contrast last", ClipParams { jitter: jit(hsbc), ..base }),
        ("+ grayscale only", ClipParams { grayscale: true, ..base }),
        ("+ blur sigma 1 only", ClipParams { blur_sigma: Some(1.0), ..base }),
        ("+ blur sigma 2 only", ClipParams { blur_sigma: Some(2.0), ..base }),
        (
            "+ jitter + blur sigma 2",
            ClipParams { jitter: jit(hsbc), blur_sigma: Some(2.0), ..base },
        ),
        ("+ solarize only", ClipParams { solarize: true, ..base }),
    ];
    let cfg = cfg_size(224);
    let iters = 40;
    // Minimum, median and mean of per-clip wall times: the minimum is what the code
    // costs when nothing else competes for the core.
    let time = |f: &mut dyn FnMut()| {
        for _ in 0..5 {
            f();
        }
        let mut ms: Vec<f64> = (0..iters)
            .map(|_| {
                let start = Instant::now();
                f();
                start.elapsed().as_secs_f64() * 1e3
            })
            .collect();
        let mean = ms.iter().sum::<f64>() / ms.len() as f64;
        ms.sort_by(f64::total_cmp);
        format!("{:6.2} min {:6.2} median {:6.2} mean ms", ms[0], ms[ms.len() / 2], mean)
    };
    let avx2 = cfg!(target_arch = "x86_64") && std::is_x86_feature_detected!("avx2");
    println!("{t} x {w}x{h} yuv420p -> {t} x 224x224 RGB, box {crop:?}, one thread, AVX2 {avx2}:");
    for (name, p) in cases {
        let ms = time(&mut || augment_clip(&layout, &frames, t, &[p], &cfg, &mut out).unwrap());
        println!("  {name:<30} {ms}");
    }
    let baseline = [
        ("crop+resize, baseline (SSE2)", base),
        (
            "+ jitter + blur 2, baseline",
            ClipParams { jitter: jit(hsbc), blur_sigma: Some(2.0), ..base },
        ),
    ];
    for (name, p) in baseline {
        let mut planes = vec![0u8; 3 * t * 224 * 224];
        let mut sc = Scratch::default();
        let ms = time(&mut || {
            let (r_all, rest) = planes.split_at_mut(t * 224 * 224);
            let (g_all, b_all) = rest.split_at_mut(t * 224 * 224);
            let params = [p];
            let job = Job {
                layout: &layout,
                frames: &frames,
                params: &params,
                s: 224,
                planes: [r_all, g_all, b_all],
            };
            run(job, &mut sc);
        });
        println!("  {name:<30} {ms}");
    }
    let mut rgb = Vec::new();
    let ms = time(&mut || via_rgb(&layout, &frames, t, &base, 224, &mut out, &mut rgb));
    println!("  {:<30} {ms}", "crop+resize via RGB frame");
    for (name, cfg) in [
        ("augment(), first view", AugmentConfig::first_view()),
        ("augment(), second view", AugmentConfig::second_view()),
        (
            "augment(), inconsistent",
            AugmentConfig { consistent: false, ..AugmentConfig::second_view() },
        ),
    ] {
        let mut r = rng(1);
        let ms = time(&mut || {
            augment(&mut r, &cfg, &layout, &frames, t, &mut out).unwrap();
        });
        println!("  {name:<30} {ms} (random draws)");
    }
}
