//! The R3D backbone and projection head: the reference R3D-50's exact layout and parameter
//! count (built on the CPU, one tiny forward), and R3D-18 forward/backward on tiny clips:
//! output shapes per layer, gradients reaching the stem, BatchNorm momenta, eval mode.
//!
//! Inputs are made from `sin` rather than the global RNG: tests run on parallel threads, and
//! nothing here depends on the (random) initial weights.

use std::collections::HashMap;

use cvrl_trainer::loss::info_nce;
use cvrl_trainer::model::{
    clips_to_input, Depth, HeadConfig, Model, ModelError, R3d, R3dConfig, Stem,
    BACKBONE_BN_MOMENTUM, HEAD_BN_MOMENTUM,
};
use tch::{nn, Device, Kind, Tensor};

/// Trainable parameters of the reference R3D-50 backbone, conv kernels plus BN scale and
/// shift (31,619,008 + 53,120 x 2).
const R3D50_PARAMS: i64 = 31_672_128;
/// The TFM README's figure for the reference model.
const R3D50_README_PARAMS: f64 = 31.7e6;
/// Trainable parameters of the reference head on a 2048-d feature.
const HEAD50_PARAMS: i64 = 12_863_616;
/// Trainable parameters of our R3D-18 backbone at width 1.
const R3D18_PARAMS: i64 = 20_061_504;
/// The same at width 2: every conv but the stem's (3 input channels) has 4x the weights.
const R3D18_2X_PARAMS: i64 = 80_132_736;
/// Trainable parameters of the reference head on a 512-d feature.
const HEAD18_PARAMS: i64 = 9_717_888;

/// Clip-like values in [0, 1], deterministic.
fn clips(shape: [i64; 5], phase: f64) -> Tensor {
    let n: i64 = shape.iter().product();
    ((Tensor::arange(n, (Kind::Float, Device::Cpu)) * 0.3719 + phase).sin() * 0.5 + 0.5).view(shape)
}

fn is_running_stat(name: &str) -> bool {
    name.ends_with(".running_mean") || name.ends_with(".running_var")
}

/// (trainable parameters, running-statistic entries) of the variables whose name passes `keep`.
fn counts(vars: &HashMap<String, Tensor>, keep: impl Fn(&str) -> bool) -> (i64, i64) {
    let mut trainable = 0;
    let mut stats = 0;
    for (name, t) in vars.iter().filter(|(name, _)| keep(name)) {
        let numel = t.numel() as i64;
        if is_running_stat(name) {
            stats += numel;
        } else {
            trainable += numel;
        }
    }
    (trainable, stats)
}

fn shape(vars: &HashMap<String, Tensor>, name: &str) -> Vec<i64> {
    vars.get(name).unwrap_or_else(|| panic!("no variable {name}")).size()
}

fn max_abs_diff(a: &Tensor, b: &Tensor) -> f64 {
    f64::try_from((a - b).abs().max()).expect("scalar")
}

#[test]
fn r3d50_layout_and_parameter_count_match_the_reference() {
    let vs = nn::VarStore::new(Device::Cpu);
    let model = Model::new(&vs.root(), &R3dConfig::r3d50(), &HeadConfig::reference()).unwrap();
    let vars = vs.variables();
    let is_head = |name: &str| name.starts_with("head.");

    let (backbone, backbone_stats) = counts(&vars, |n| !is_head(n));
    let (head, _) = counts(&vars, is_head);
    let (conv, _) = counts(&vars, |n| !is_head(n) && n.contains(".conv"));
    println!(
        "R3D-50 backbone: {backbone} trainable ({conv} conv kernels + {} BN scale/shift), \
         {backbone_stats} BN running statistics; head: {head}",
        backbone - conv
    );
    // Only conv kernels and BN scale/shift are trainable in the backbone (no conv bias).
    assert_eq!(backbone, R3D50_PARAMS);
    assert_eq!(backbone - conv, backbone_stats, "BN has as many scale/shift as statistics");
    assert_eq!(head, HEAD50_PARAMS);
    let total_trainable: i64 = vs.trainable_variables().iter().map(|t| t.numel() as i64).sum();
    assert_eq!(total_trainable, backbone + head);
    // Within 1% of the README's 31.7M. Conv kernels alone (31.62M) would be 31.6M, so the
    // README's figure counts BN's scale and shift; whether it also counts the 0.05M moving
    // statistics (31.73M, also "31.7M") cannot be told from the rounding.
    let relative = (backbone as f64 - R3D50_README_PARAMS).abs() / R3D50_README_PARAMS;
    assert!(relative < 0.01, "{backbone} is {:.2}% off 31.7M", relative * 100.0);

    // Layer names and kernel shapes as in the reference's table.
    let expected: [(&str, &[i64]); 12] = [
        ("stem.conv.weight", &[64, 3, 5, 7, 7]),
        ("stem.bn.weight", &[64]),
        ("res2.0.conv_a.weight", &[64, 64, 1, 1, 1]),
        ("res2.0.conv_b.weight", &[64, 64, 1, 3, 3]),
        ("res2.0.conv_c.weight", &[256, 64, 1, 1, 1]),
        ("res2.0.conv_shortcut.weight", &[256, 64, 1, 1, 1]),
        ("res3.3.conv_a.weight", &[128, 512, 1, 1, 1]),
        ("res4.0.conv_a.weight", &[256, 512, 3, 1, 1]),
        ("res4.5.conv_b.weight", &[256, 256, 1, 3, 3]),
        ("res5.2.conv_c.weight", &[2048, 512, 1, 1, 1]),
        ("head.0.linear.weight", &[2048, 2048]),
        ("head.3.linear.weight", &[128, 2048]),
    ];
    for (name, dims) in expected {
        assert_eq!(shape(&vars, name), dims, "{name}");
    }
    // 3/4/6/3 blocks; a projection shortcut only in each stage's first block.
    for (stage, blocks) in [(2, 3), (3, 4), (4, 6), (5, 3)] {
        assert!(vars.contains_key(&format!("res{stage}.{}.conv_a.weight", blocks - 1)));
        assert!(!vars.contains_key(&format!("res{stage}.{blocks}.conv_a.weight")));
    }
    assert_eq!(vars.keys().filter(|n| n.ends_with("conv_shortcut.weight")).count(), 4);
    assert!(!vars.contains_key("head.3.bn.weight"), "the output layer has no BN");
    // Convs are bias-free: every bias of the backbone belongs to a BatchNorm.
    for name in vars.keys().filter(|n| !is_head(n) && n.ends_with(".bias")) {
        assert!(name.contains(".bn"), "{name} is a conv bias");
    }

    // One tiny forward in eval mode (train mode would need more than one value per channel).
    let (features, embeddings) =
        tch::no_grad(|| model.forward_t(&clips([1, 3, 2, 32, 32], 0.0), false));
    assert_eq!(features.size(), [1, 2048]);
    assert_eq!(embeddings.size(), [1, 128]);
}

#[test]
fn r3d18_forward_backward_shapes_and_gradients() {
    let vs = nn::VarStore::new(Device::Cpu);
    let model = Model::new(&vs.root(), &R3dConfig::r3d18(), &HeadConfig::reference()).unwrap();
    let vars = vs.variables();
    let (backbone, _) = counts(&vars, |n| !n.starts_with("head."));
    let (head, _) = counts(&vars, |n| n.starts_with("head."));
    println!("R3D-18 backbone: {backbone} trainable; head on 512-d: {head}");
    assert_eq!(backbone, R3D18_PARAMS);
    assert_eq!(head, HEAD18_PARAMS);
    // Basic block: [t x3x3] then [1x3x3]; the temporal kernel is 3 from res4 on.
    assert_eq!(shape(&vars, "res3.0.conv_a.weight"), [128, 64, 1, 3, 3]);
    assert_eq!(shape(&vars, "res4.0.conv_a.weight"), [256, 128, 3, 3, 3]);
    assert_eq!(shape(&vars, "res4.1.conv_b.weight"), [256, 256, 1, 3, 3]);
    assert!(!vars.contains_key("res2.0.conv_shortcut.weight"), "64 -> 64, stride 1: identity");

    // Two videos, two views each, in one batch as the trainer runs them.
    let view_a = clips([2, 3, 4, 32, 32], 0.0);
    let view_b = clips([2, 3, 4, 32, 32], 0.5);
    let xs = Tensor::cat(&[&view_a, &view_b], 0);

    let stages = model.backbone.forward_stages_t(&xs, true);
    assert_eq!(stages.stem.size(), [4, 64, 2, 8, 8], "stem: T/2, H/4 after the pool");
    assert_eq!(stages.res2.size(), [4, 64, 2, 8, 8]);
    assert_eq!(stages.res3.size(), [4, 128, 2, 4, 4]);
    assert_eq!(stages.res4.size(), [4, 256, 2, 2, 2]);
    assert_eq!(stages.res5.size(), [4, 512, 2, 1, 1]);
    assert_eq!(stages.features.size(), [4, 512]);

    let (features, embeddings) = model.forward_t(&xs, true);
    assert_eq!(features.size(), [4, 512]);
    assert_eq!(embeddings.size(), [4, 128]);
    let z = embeddings.chunk(2, 0);
    let loss = info_nce(&z[0], &z[1], 0.1);
    assert!(f64::try_from(&loss).unwrap().is_finite());
    loss.backward();

    let stem_grad = vars["stem.conv.weight"].grad();
    assert!(stem_grad.defined(), "no gradient reached the stem");
    assert!(f64::try_from(stem_grad.abs().sum(Kind::Float)).unwrap() > 0.0);
    // Every weight gets a gradient. (The hidden Dense biases of the head get ~0: the BN after
    // them removes any constant shift, which is why the reference's bias there is redundant.)
    for (name, t) in vars.iter().filter(|(n, _)| n.ends_with(".weight")) {
        let g = t.grad();
        assert!(g.defined(), "{name} has no gradient");
        assert!(f64::try_from(g.abs().sum(Kind::Float)).unwrap() > 0.0, "{name}: zero gradient");
    }
}

#[test]
fn sixteen_frames_stay_eight_frames_after_the_stem() {
    let vs = nn::VarStore::new(Device::Cpu);
    let backbone = R3d::new(&vs.root(), &R3dConfig::r3d18()).unwrap();
    let stages = tch::no_grad(|| backbone.forward_stages_t(&clips([1, 3, 16, 32, 32], 0.0), false));
    assert_eq!(stages.stem.size()[2], 8);
    assert_eq!(stages.res5.size(), [1, 512, 8, 1, 1], "no temporal stride after the stem");
}

#[test]
fn batch_norm_momenta_follow_the_reference_in_pytorch_convention() {
    let vs = nn::VarStore::new(Device::Cpu);
    let model = Model::new(&vs.root(), &R3dConfig::r3d18(), &HeadConfig::reference()).unwrap();
    let vars = vs.variables();
    let xs = clips([2, 3, 4, 16, 16], 0.2);

    // Eval mode reads the running statistics and leaves them alone.
    let _ = tch::no_grad(|| model.forward_t(&xs, false));
    assert_eq!(f64::try_from(vars["stem.bn.running_mean"].abs().sum(Kind::Float)).unwrap(), 0.0);

    let (features, _) = tch::no_grad(|| model.forward_t(&xs, true));
    // Starting from 0, one train step leaves momentum x batch mean: TF's 0.9 is tch's 0.1.
    let stem_out =
        xs.conv3d(&vars["stem.conv.weight"], None::<Tensor>, [2, 2, 2], [2, 3, 3], [1, 1, 1], 1);
    let expected =
        stem_out.mean_dim([0i64, 2, 3, 4].as_slice(), false, None) * BACKBONE_BN_MOMENTUM;
    assert!(max_abs_diff(&vars["stem.bn.running_mean"], &expected) < 1e-6);
    // And TF's 0.997 is 0.003 in the head.
    let hidden = features.linear(&vars["head.0.linear.weight"], Some(&vars["head.0.linear.bias"]));
    let expected = hidden.mean_dim([0i64].as_slice(), false, None) * HEAD_BN_MOMENTUM;
    assert!(max_abs_diff(&vars["head.0.bn.running_mean"], &expected) < 1e-6);
}

#[test]
fn eval_mode_treats_each_clip_on_its_own() {
    let vs = nn::VarStore::new(Device::Cpu);
    let model = Model::new(&vs.root(), &R3dConfig::r3d18(), &HeadConfig::reference()).unwrap();
    let xs = clips([3, 3, 4, 32, 32], 0.7);
    let (batch_features, batch_embeddings) = tch::no_grad(|| model.forward_t(&xs, false));
    // Relative to the largest value: with fresh running statistics (0 and 1) eval-mode BN
    // does not normalise, so activations grow through the residual stages.
    let scale = |t: &Tensor| f64::try_from(t.abs().max()).unwrap();
    let (f_scale, e_scale) = (scale(&batch_features), scale(&batch_embeddings));
    for i in 0..3 {
        let (f, e) = tch::no_grad(|| model.forward_t(&xs.narrow(0, i, 1), false));
        let f_diff = max_abs_diff(&f, &batch_features.narrow(0, i, 1)) / f_scale;
        let e_diff = max_abs_diff(&e, &batch_embeddings.narrow(0, i, 1)) / e_scale;
        println!("clip {i}: relative diff features {f_diff:.1e} (max {f_scale:.3e}), embeddings {e_diff:.1e} (max {e_scale:.3e})");
        assert!(f_diff < 1e-5 && e_diff < 1e-5, "clip {i}: {f_diff} {e_diff}");
    }
}

#[test]
fn width_multiplier_scales_every_width() {
    let config = R3dConfig { width_multiplier: 2, ..R3dConfig::r3d18() };
    assert_eq!(config.feature_dim(), 1024);
    let vs = nn::VarStore::new(Device::Cpu);
    let backbone = R3d::new(&vs.root(), &config).unwrap();
    assert_eq!(backbone.feature_dim(), 1024);
    let vars = vs.variables();
    assert_eq!(shape(&vars, "stem.conv.weight"), [128, 3, 5, 7, 7]);
    assert_eq!(shape(&vars, "res5.1.conv_b.weight"), [1024, 1024, 1, 3, 3]);
    let (trainable, _) = counts(&vars, |_| true);
    println!("R3D-18 2x backbone: {trainable} trainable");
    assert_eq!(trainable, R3D18_2X_PARAMS);
    assert_eq!(R3dConfig { width_multiplier: 4, ..R3dConfig::r3d50() }.feature_dim(), 8192);
}

#[test]
fn base_width_sets_the_stem_and_doubles_per_stage() {
    let config = R3dConfig { base_width: 16, width_multiplier: 2, ..R3dConfig::r3d18() };
    assert_eq!(config.feature_dim(), 256);
    let vs = nn::VarStore::new(Device::Cpu);
    R3d::new(&vs.root(), &config).unwrap();
    let vars = vs.variables();
    assert_eq!(shape(&vars, "stem.conv.weight"), [32, 3, 5, 7, 7]);
    assert_eq!(shape(&vars, "res3.0.conv_b.weight"), [64, 64, 1, 3, 3]);
    assert_eq!(shape(&vars, "res5.1.conv_b.weight"), [256, 256, 1, 3, 3]);
}

#[test]
fn the_small_stem_keeps_the_first_layer_at_full_resolution() {
    let config = R3dConfig { base_width: 8, stem: Stem::Small, ..R3dConfig::r3d18() };
    let vs = nn::VarStore::new(Device::Cpu);
    let net = R3d::new(&vs.root(), &config).unwrap();
    assert_eq!(shape(&vs.variables(), "stem.conv.weight"), [8, 3, 5, 3, 3]);
    let stages = net.forward_stages_t(&clips([2, 3, 4, 32, 32], 0.0), true);
    assert_eq!(stages.stem.size(), [2, 8, 2, 16, 16], "stem: T/2, H/2 after the pool");
    assert_eq!(stages.res5.size(), [2, 64, 2, 2, 2]);
    assert_eq!(stages.features.size(), [2, 64]);
    assert_eq!("small".parse::<Stem>().unwrap(), Stem::Small);
    assert!("tiny".parse::<Stem>().unwrap_err().contains("reference or small"));
}

#[test]
fn configs_are_checked_and_depths_parse() {
    let vs = nn::VarStore::new(Device::Cpu);
    let bad = |config: R3dConfig| R3d::new(&vs.root(), &config).err();
    assert_eq!(
        bad(R3dConfig { width_multiplier: 0, ..R3dConfig::r3d18() }),
        Some(ModelError::ZeroWidthMultiplier)
    );
    assert_eq!(
        bad(R3dConfig { base_width: 0, ..R3dConfig::r3d18() }),
        Some(ModelError::ZeroBaseWidth)
    );
    assert_eq!(
        bad(R3dConfig { stem_temporal_kernel: 4, ..R3dConfig::r3d18() }),
        Some(ModelError::EvenStemTemporalKernel(4))
    );
    assert_eq!(
        bad(R3dConfig { stem_temporal_stride: 0, ..R3dConfig::r3d18() }),
        Some(ModelError::ZeroStemTemporalStride)
    );
    let empty_head = HeadConfig { out_dim: 0, ..HeadConfig::reference() };
    assert!(matches!(
        Model::new(&vs.root(), &R3dConfig::r3d18(), &empty_head),
        Err(ModelError::EmptyHead { .. })
    ));

    assert_eq!("50".parse::<Depth>(), Ok(Depth::R50));
    assert_eq!("R152".parse::<Depth>(), Ok(Depth::R152));
    assert_eq!("r18".parse::<Depth>(), Ok(Depth::R18));
    assert!("49".parse::<Depth>().is_err());
    assert_eq!(Depth::R101.to_string(), "101");
    assert_eq!(Depth::R101.blocks(), [3, 4, 23, 3]);
    assert_eq!(Depth::R152.blocks(), [3, 8, 36, 3]);
    assert!(!Depth::R34.bottleneck() && Depth::R50.bottleneck());
}

#[test]
fn clips_to_input_maps_u8_to_unit_range_floats() {
    let pixels = Tensor::from_slice(&[0u8, 51, 255, 128]).view([1, 1, 1, 2, 2]);
    let input = clips_to_input(&pixels, Device::Cpu).unwrap();
    assert_eq!(input.kind(), Kind::Float);
    assert_eq!(input.size(), [1, 1, 1, 2, 2]);
    let values = Vec::<f32>::try_from(input.flatten(0, -1)).unwrap();
    for (got, want) in values.iter().zip([0.0, 0.2, 1.0, 128.0 / 255.0]) {
        assert!((got - want).abs() < 1e-7, "{values:?}");
    }

    assert_eq!(
        clips_to_input(&pixels.to_kind(Kind::Float), Device::Cpu).err(),
        Some(ModelError::ClipKind(Kind::Float))
    );
    assert_eq!(
        clips_to_input(&pixels.view([1, 4]), Device::Cpu).err(),
        Some(ModelError::ClipShape(vec![1, 4]))
    );
}
