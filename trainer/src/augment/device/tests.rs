//! The device path against the host path ([`augment_clip`]) on CPU tensors: each operation
//! alone, then the whole chain for both views, both pixel formats, consistent and per-frame
//! parameters. Every test asserts the largest difference per value (at most one level) and
//! prints it with the number of values that differ (`--nocapture` shows them).

use super::*;
use crate::augment::{augment_clip, AugmentError, ColorOp, Crop, Jitter};
use cvrl_formats::PixelFormat;
use rand::rngs::Xoshiro256PlusPlus;
use rand::SeedableRng;

const BCSH: [ColorOp; 4] =
    [ColorOp::Brightness, ColorOp::Contrast, ColorOp::Saturation, ColorOp::Hue];

fn layout(w: u32, h: u32, format: PixelFormat) -> FrameLayout {
    FrameLayout::new(w, h, format).unwrap()
}

fn hash(x: u32, y: u32, c: u32, seed: u32) -> u32 {
    let mut v = x.wrapping_mul(0x9E37_79B9)
        ^ y.wrapping_mul(0x85EB_CA6B)
        ^ c.wrapping_mul(0xC2B2_AE35)
        ^ seed.wrapping_mul(0x27D4_EB2F);
    v ^= v >> 15;
    v = v.wrapping_mul(0x2C1B_3C6D);
    v ^= v >> 12;
    v
}

/// One channel of a textured picture: gratings at three scales and orientations, a moving
/// edge, a smooth gradient and fine noise, clipped to `[lo, hi]`, so that there are flat
/// areas, edges, clipped highlights and shadows, and every hue.
fn texture(x: u32, y: u32, c: u32, seed: u32, lo: f64, hi: f64) -> u8 {
    let (xf, yf, s, cf) = (f64::from(x), f64::from(y), f64::from(seed), f64::from(c));
    let g1 = (xf * 0.31 + yf * 0.07 + s + cf).sin();
    let g2 = (xf * 0.05 - yf * 0.11 + 2.0 * cf + 0.3 * s).sin();
    let g3 = ((xf + yf) * 0.9 + cf).sin() * 0.3;
    let edge = if xf + 0.5 * yf > 20.0 + 3.0 * s + 9.0 * cf { 60.0 } else { -40.0 };
    let noise = f64::from(hash(x, y, c, seed) % 25) - 12.0;
    let v = 128.0 + 70.0 * g1 + 45.0 * g2 + 20.0 * g3 + edge + noise + (xf - yf) * 0.4;
    v.clamp(lo, hi).round() as u8
}

/// Frame `seed` of a textured video in `layout`'s format.
fn frame(l: &FrameLayout, seed: u32) -> Vec<u8> {
    let (w, h) = (l.width(), l.height());
    let grid = |w: u32, h: u32| (0..h).flat_map(move |y| (0..w).map(move |x| (x, y)));
    match l.format() {
        PixelFormat::Rgb24 => grid(w, h)
            .flat_map(|(x, y)| (0..3).map(move |c| texture(x, y, c, seed, 0.0, 255.0)))
            .collect(),
        PixelFormat::Yuv420p => {
            let mut out: Vec<u8> =
                grid(w, h).map(|(x, y)| texture(x, y, 0, seed, 0.0, 255.0)).collect();
            for c in 1..3 {
                out.extend(grid(w / 2, h / 2).map(|(x, y)| texture(x, y, c, seed, 16.0, 240.0)));
            }
            out
        }
    }
}

/// A clip of `t` textured frames that change over time.
fn clip(l: &FrameLayout, t: usize, seed: u32) -> Vec<u8> {
    (0..t as u32).flat_map(|i| frame(l, seed * 100 + i)).collect()
}

/// One clip to augment: its layout, frames and parameters.
struct Case {
    layout: FrameLayout,
    frames: Vec<u8>,
    params: Vec<ClipParams>,
}

/// The host's bytes of every clip, `[C, T, S, S]` each, back to back.
fn host(cases: &[Case], t: usize, s: u32) -> Vec<u8> {
    let cfg = AugmentConfig { out_size: s, ..AugmentConfig::first_view() };
    let mut all = Vec::new();
    let mut out = Vec::new();
    for c in cases {
        augment_clip(&c.layout, &c.frames, t, &c.params, &cfg, &mut out).unwrap();
        all.extend_from_slice(&out);
    }
    all
}

/// The device path's bytes of the same clips, `[B, C, T, S, S]`, on CPU tensors.
fn device(cases: &[Case], t: usize, s: u32) -> Vec<u8> {
    let mut batch = PackedBatch::new(s);
    for c in cases {
        batch.push_clip(&c.layout, &c.frames, t, &c.params).unwrap();
    }
    batch.finish().unwrap();
    let clips = Stager::new(Device::Cpu).upload(&batch).augment();
    assert_eq!(clips.size(), [cases.len() as i64, 3, t as i64, i64::from(s), i64::from(s)]);
    Vec::<u8>::try_from(clips.view([-1])).unwrap()
}

/// Runs both paths, prints and returns the largest difference; asserts it is at most 1.
fn compare(name: &str, cases: &[Case], t: usize, s: u32) -> u8 {
    let (h, d) = (host(cases, t, s), device(cases, t, s));
    assert_eq!(h.len(), d.len());
    let diffs = h.iter().zip(&d).map(|(&a, &b)| a.abs_diff(b));
    let (max, differ) = diffs.fold((0u8, 0usize), |(m, n), v| (m.max(v), n + usize::from(v > 0)));
    println!("{name:<44} max |host - device| {max} ({differ} of {} values differ)", h.len());
    assert!(max <= 1, "{name}: the device path is {max} levels from the host");
    max
}

fn whole(l: &FrameLayout) -> ClipParams {
    ClipParams::whole_frame(l.width(), l.height())
}

/// An rgb24 clip resized to its own size: the resize is then exact on both paths and only
/// the given operation acts.
fn op_case(s: u32, t: usize, seed: u32, params: impl Fn(ClipParams) -> Vec<ClipParams>) -> Case {
    let l = layout(s, s, PixelFormat::Rgb24);
    Case { layout: l, frames: clip(&l, t, seed), params: params(whole(&l)) }
}

fn jitter_only(j: Jitter) -> impl Fn(ClipParams) -> Vec<ClipParams> {
    move |p| vec![ClipParams { jitter: Some(j), ..p }]
}

fn neutral(order: [ColorOp; 4]) -> Jitter {
    Jitter { brightness: 1.0, contrast: 1.0, saturation: 1.0, hue: 0.0, order }
}

#[test]
fn resize_matches_the_host_for_odd_boxes_up_and_down() {
    let boxes = [
        Crop { x: 3, y: 5, w: 61, h: 37 },
        Crop { x: 0, y: 0, w: 96, h: 72 },
        Crop { x: 17, y: 9, w: 11, h: 13 },
        Crop { x: 95, y: 1, w: 1, h: 70 },
        Crop { x: 40, y: 33, w: 55, h: 39 },
    ];
    for format in [PixelFormat::Yuv420p, PixelFormat::Rgb24] {
        let l = layout(96, 72, format);
        for s in [24, 37, 80] {
            let cases: Vec<Case> = boxes
                .iter()
                .enumerate()
                .map(|(i, &crop)| Case {
                    layout: l,
                    frames: clip(&l, 3, i as u32),
                    params: vec![ClipParams { crop, ..whole(&l) }],
                })
                .collect();
            compare(&format!("resize {format} to {s}"), &cases, 3, s);
        }
    }
}

#[test]
fn flip_matches_the_host() {
    for format in [PixelFormat::Yuv420p, PixelFormat::Rgb24] {
        let l = layout(64, 48, format);
        let crop = Crop { x: 7, y: 3, w: 45, h: 39 };
        let cases = [false, true].map(|flip| Case {
            layout: l,
            frames: clip(&l, 2, 5),
            params: vec![ClipParams { crop, flip, ..whole(&l) }],
        });
        compare(&format!("flip {format}"), &cases, 2, 40);
    }
}

#[test]
fn yuv_to_rgb_matches_the_host() {
    let l = layout(64, 48, PixelFormat::Yuv420p);
    let cases = [Case { layout: l, frames: clip(&l, 2, 3), params: vec![whole(&l)] }];
    compare("yuv420p to rgb (whole frame)", &cases, 2, 48);
}

#[test]
fn brightness_matches_the_host() {
    let cases: Vec<Case> = [0.2f32, 0.77, 1.0, 1.45, 1.8]
        .iter()
        .enumerate()
        .map(|(i, &f)| {
            op_case(40, 2, i as u32, jitter_only(Jitter { brightness: f, ..neutral(BCSH) }))
        })
        .collect();
    compare("brightness", &cases, 2, 40);
}

#[test]
fn contrast_matches_the_host_with_clip_and_frame_means() {
    let factors = [0.2f32, 0.61, 1.33, 1.8];
    let order = [ColorOp::Contrast, ColorOp::Hue, ColorOp::Saturation, ColorOp::Brightness];
    let cases: Vec<Case> = factors
        .iter()
        .enumerate()
        .map(|(i, &f)| {
            op_case(40, 3, i as u32, jitter_only(Jitter { contrast: f, ..neutral(order) }))
        })
        .collect();
    compare("contrast, whole-clip mean", &cases, 3, 40);
    let per_frame: Vec<Case> = factors
        .iter()
        .enumerate()
        .map(|(i, &f)| {
            op_case(40, 3, i as u32, |p| {
                vec![ClipParams { jitter: Some(Jitter { contrast: f, ..neutral(order) }), ..p }; 3]
            })
        })
        .collect();
    compare("contrast, per-frame mean", &per_frame, 3, 40);
}

#[test]
fn saturation_matches_the_host() {
    let cases: Vec<Case> = [0.0f32, 0.2, 0.9, 1.4, 1.8]
        .iter()
        .enumerate()
        .map(|(i, &f)| {
            op_case(40, 2, i as u32, jitter_only(Jitter { saturation: f, ..neutral(BCSH) }))
        })
        .collect();
    compare("saturation", &cases, 2, 40);
}

#[test]
fn hue_matches_the_host() {
    let cases: Vec<Case> = [-0.2f32, -0.13, 0.0, 0.07, 0.2, 0.5]
        .iter()
        .enumerate()
        .map(|(i, &h)| op_case(40, 2, i as u32, jitter_only(Jitter { hue: h, ..neutral(BCSH) })))
        .collect();
    compare("hue", &cases, 2, 40);
}

#[test]
fn jitter_runs_every_clip_in_its_own_order() {
    // All 24 orders in one batch, strong factors, so the order changes the result.
    let mut orders = vec![BCSH];
    let mut r = Xoshiro256PlusPlus::seed_from_u64(2);
    let cfg = AugmentConfig { jitter_p: 1.0, ..AugmentConfig::first_view() };
    while orders.len() < 24 {
        let o = sample_params(&mut r, &cfg, 8, 8).jitter.unwrap().order;
        if !orders.contains(&o) {
            orders.push(o);
        }
    }
    let j = Jitter { brightness: 1.6, contrast: 0.4, saturation: 1.7, hue: 0.15, order: BCSH };
    let cases: Vec<Case> = orders
        .iter()
        .enumerate()
        .map(|(i, &order)| op_case(32, 2, i as u32, jitter_only(Jitter { order, ..j })))
        .collect();
    compare("jitter, all 24 orders", &cases, 2, 32);
}

#[test]
fn grayscale_matches_the_host() {
    let cases =
        [false, true].map(|g| op_case(40, 2, 1, |p| vec![ClipParams { grayscale: g, ..p }]));
    compare("grayscale", &cases, 2, 40);
}

#[test]
fn blur_matches_the_host_for_every_width_of_kernel() {
    // At 64 the kernel has radius 3; at 224, 11 taps a side before dropping the small ones.
    for s in [64u32, 224] {
        let cases: Vec<Case> = [None, Some(0.1f32), Some(0.5), Some(1.0), Some(1.7), Some(2.0)]
            .iter()
            .enumerate()
            .map(|(i, &sigma)| {
                op_case(s, 2, i as u32, |p| vec![ClipParams { blur_sigma: sigma, ..p }])
            })
            .collect();
        compare(&format!("blur at {s}"), &cases, 2, s);
    }
    // Too small an output for a kernel: no blur on either path.
    let cases = [op_case(16, 2, 0, |p| vec![ClipParams { blur_sigma: Some(1.5), ..p }])];
    compare("blur at 16 (radius 0)", &cases, 2, 16);
}

#[test]
fn solarize_matches_the_host() {
    let cases =
        [false, true].map(|on| op_case(40, 2, 4, |p| vec![ClipParams { solarize: on, ..p }]));
    compare("solarize", &cases, 2, 40);
}

/// Clips of mixed sizes and formats with parameters drawn by `cfg`, one set per clip or per
/// frame as `cfg` says.
fn drawn_cases(cfg: &AugmentConfig, seed: u64, t: usize) -> Vec<Case> {
    let mut r = Xoshiro256PlusPlus::seed_from_u64(seed);
    let layouts = [
        layout(96, 72, PixelFormat::Yuv420p),
        layout(70, 90, PixelFormat::Yuv420p),
        layout(81, 57, PixelFormat::Rgb24),
        layout(128, 64, PixelFormat::Yuv420p),
    ];
    layouts
        .iter()
        .enumerate()
        .map(|(i, l)| {
            let mut params = Vec::new();
            draw_params(&mut r, cfg, l, t, &mut params);
            Case { layout: *l, frames: clip(l, t, seed as u32 * 10 + i as u32), params }
        })
        .collect()
}

#[test]
fn the_whole_chain_matches_the_host_for_both_views_and_the_per_frame_ablation() {
    let s = 48;
    let (first, second) = (AugmentConfig::first_view(), AugmentConfig::second_view());
    // The second view with its rare ops made common, so that every op shows up.
    let busy = AugmentConfig { blur_p: 0.5, solarize_p: 0.5, grayscale_p: 0.3, ..second };
    for (name, cfg) in [
        ("first view", first),
        ("second view", second),
        ("second view, blur and solarize p 0.5", busy),
        ("first view, per frame", AugmentConfig { consistent: false, ..first }),
        ("second view, per frame", AugmentConfig { consistent: false, ..busy }),
    ] {
        let cfg = AugmentConfig { out_size: s, ..cfg };
        for seed in 0..4 {
            compare(&format!("chain: {name}, seed {seed}"), &drawn_cases(&cfg, seed, 4), 4, s);
        }
    }
}

#[test]
fn the_chain_matches_the_host_at_the_papers_size() {
    let first = AugmentConfig { jitter_p: 1.0, ..AugmentConfig::first_view() };
    let second = AugmentConfig { jitter_p: 1.0, solarize_p: 0.5, ..AugmentConfig::second_view() };
    for (name, cfg, seed) in [
        ("first view", first, 7),
        ("second view", second, 8),
        ("first view, per frame", AugmentConfig { consistent: false, ..first }, 9),
    ] {
        compare(&format!("chain at 224: {name}, seed {seed}"), &drawn_cases(&cfg, seed, 2), 2, 224);
    }
}

#[test]
fn consistent_mode_gives_every_identical_frame_the_same_output_on_the_device() {
    let l = layout(64, 48, PixelFormat::Yuv420p);
    let t = 6;
    let frames = frame(&l, 7).repeat(t);
    let cfg = AugmentConfig {
        out_size: 40,
        jitter_p: 1.0,
        grayscale_p: 0.0,
        solarize_p: 1.0,
        ..AugmentConfig::first_view()
    };
    let run = |cfg: &AugmentConfig| {
        let mut params = Vec::new();
        draw_params(&mut Xoshiro256PlusPlus::seed_from_u64(3), cfg, &l, t, &mut params);
        let mut batch = PackedBatch::new(40);
        batch.push_clip(&l, &frames, t, &params).unwrap();
        batch.finish().unwrap();
        let out = Stager::new(Device::Cpu).upload(&batch).augment();
        let frames: Vec<Vec<u8>> = (0..t as i64)
            .map(|ti| Vec::<u8>::try_from(out.select(2, ti).reshape([-1])).unwrap())
            .collect();
        (params, frames)
    };
    let (params, out) = run(&cfg);
    assert_eq!(params.len(), 1);
    assert!(out.iter().all(|f| *f == out[0]), "consistent frames differ");

    let (params, out) = run(&AugmentConfig { consistent: false, ..cfg });
    assert_eq!(params.len(), t);
    let differing = (1..t).filter(|&ti| out[ti] != out[0]).count();
    assert!(differing >= t - 2, "only {differing} of {} frames differ from the first", t - 1);
}

#[test]
fn draw_params_draws_what_augment_draws() {
    let l = layout(96, 72, PixelFormat::Yuv420p);
    let frames = clip(&l, 3, 1);
    for consistent in [true, false] {
        let cfg = AugmentConfig { out_size: 24, consistent, ..AugmentConfig::second_view() };
        let mut out = Vec::new();
        let drawn = crate::augment::augment(
            &mut Xoshiro256PlusPlus::seed_from_u64(5),
            &cfg,
            &l,
            &frames,
            3,
            &mut out,
        )
        .unwrap();
        let mut params = Vec::new();
        draw_params(&mut Xoshiro256PlusPlus::seed_from_u64(5), &cfg, &l, 3, &mut params);
        assert_eq!(params, drawn);
    }
}

#[test]
fn a_batch_is_reusable_and_rejects_what_the_host_rejects() {
    let l = layout(16, 16, PixelFormat::Yuv420p);
    let frames = clip(&l, 2, 0);
    let p = whole(&l);
    let mut batch = PackedBatch::new(8);
    batch.push_clip(&l, &frames, 2, &[p]).unwrap();
    assert_eq!(
        batch.push_clip(&l, &frames[..l.frame_bytes()], 1, &[p]),
        Err(PackError::FrameCount { expected: 2, got: 1 })
    );
    assert!(matches!(
        batch.push_clip(&l, &frames[1..], 2, &[p]),
        Err(PackError::Augment(AugmentError::ClipBytes { .. }))
    ));
    assert_eq!(
        batch.push_clip(&l, &frames, 2, &[p, p, p]),
        Err(PackError::Augment(AugmentError::ParamCount { frames: 2, got: 3 }))
    );
    let outside = ClipParams { crop: Crop { x: 10, y: 0, w: 7, h: 4 }, ..p };
    assert!(matches!(
        batch.push_clip(&l, &frames, 2, &[outside]),
        Err(PackError::Augment(AugmentError::CropOutside { .. }))
    ));
    assert_eq!(
        PackedBatch::new(0).push_clip(&l, &frames, 2, &[p]),
        Err(PackError::Augment(AugmentError::ZeroOutSize))
    );
    // Finished, pushed to again, finished again: the same as one pass.
    let first = batch.finish().unwrap().clone();
    batch.push_clip(&l, &frames, 2, &[p]).unwrap();
    let two = batch.finish().unwrap().clone();
    assert_eq!((first.clips(), two.clips()), (1, 2));
    let bytes = batch.bytes().to_vec();
    batch.clear(8);
    for _ in 0..2 {
        batch.push_clip(&l, &frames, 2, &[p]).unwrap();
    }
    assert_eq!(batch.finish().unwrap(), &two);
    assert_eq!(batch.bytes(), bytes.as_slice());
}
