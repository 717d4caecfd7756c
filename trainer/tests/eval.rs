//! The evaluation pieces on inputs whose answer is known: the linear probe and kNN separate
//! clustered features perfectly and do no better than chance on shuffled labels; accuracy
//! and confusion counts on a hand-made example; an exported encoder loads back into the
//! same features, a different architecture is refused, and random init is seeded.

use cvrl_trainer::checkpoint::export_encoder;
use cvrl_trainer::eval::features::Features;
use cvrl_trainer::eval::knn::{knn, KnnConfig};
use cvrl_trainer::eval::linear::{linear_probe, LinearConfig};
use cvrl_trainer::eval::{confusion, top_k_accuracy, Encoder, EvalError};
use cvrl_trainer::model::R3d;
use cvrl_trainer::train::{Preset, TrainConfig};
use tch::{nn, Device, Kind, Tensor};

const CLASSES: i64 = 6;

/// libtorch has one global generator: tests that seed it and draw from it take turns, or
/// one's draws land between another's seed and its draws.
static TORCH_RNG: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn torch_rng() -> std::sync::MutexGuard<'static, ()> {
    TORCH_RNG.lock().unwrap_or_else(|e| e.into_inner())
}
const DIM: i64 = 32;

/// `per_class` videos of each class with `views` views: a class centre (random, shared via
/// `centres`) plus Gaussian noise of standard deviation `noise`.
fn clustered(centres: &Tensor, per_class: i64, views: i64, noise: f64) -> Features {
    let labels = Tensor::arange(CLASSES, (Kind::Int64, Device::Cpu))
        .repeat_interleave_self_int(per_class, 0, None);
    let n = labels.size()[0];
    let data = centres.index_select(0, &labels).unsqueeze(1).expand([n, views, DIM], false)
        + Tensor::randn([n, views, DIM], (Kind::Float, Device::Cpu)) * noise;
    Features { data, labels, names: (0..CLASSES).map(|c| format!("c{c}")).collect() }
}

fn short_probe() -> LinearConfig {
    LinearConfig { epochs: 30.0, batch: 64, ..LinearConfig::default() }
}

#[test]
fn probes_separate_clusters_and_stay_near_chance_on_shuffled_labels() {
    let _rng = torch_rng();
    tch::manual_seed(1);
    let centres = Tensor::randn([CLASSES, DIM], (Kind::Float, Device::Cpu));
    let train = clustered(&centres, 20, 2, 0.3);
    let test = clustered(&centres, 10, 3, 0.3);

    let linear = linear_probe(&train, &test, &short_probe(), Device::Cpu).unwrap();
    assert_eq!(linear.top1, 100.0, "{linear:?}");
    assert_eq!(linear.train_top1, Some(100.0));
    assert_eq!(linear.confusion.iter().flatten().sum::<u32>(), 60);
    let nn = knn(&train, &test, &KnnConfig::default(), Device::Cpu).unwrap();
    assert_eq!(nn.top1, 100.0, "{nn:?}");

    // The same features with labels shuffled across videos carry no information about them.
    let perm = Tensor::randperm(train.labels.size()[0], (Kind::Int64, Device::Cpu));
    let shuffled = Features {
        data: train.data.shallow_clone(),
        labels: train.labels.index_select(0, &perm),
        names: train.names.clone(),
    };
    let chance = linear_probe(&shuffled, &test, &short_probe(), Device::Cpu).unwrap();
    assert!(chance.top1 < 45.0, "shuffled labels should give about 1/6: {}", chance.top1);
    let chance = knn(&shuffled, &test, &KnnConfig::default(), Device::Cpu).unwrap();
    assert!(chance.top1 < 45.0, "shuffled labels should give about 1/6: {}", chance.top1);
}

#[test]
fn accuracy_and_confusion_count_what_they_should() {
    let scores = Tensor::from_slice2(&[
        [0.9f32, 0.05, 0.05],
        [0.2, 0.3, 0.5],
        [0.6, 0.3, 0.1],
        [0.1, 0.2, 0.7],
    ]);
    let labels = Tensor::from_slice(&[0i64, 1, 1, 2]);
    let (top1, top5) = top_k_accuracy(&scores, &labels);
    assert_eq!((top1, top5), (50.0, 100.0));
    assert_eq!(confusion(&scores, &labels, 3), [[1, 0, 0], [1, 0, 1], [0, 0, 1]]);
}

/// A run directory holding `cfg`'s run.json and, if `weights`, an encoder exported from a
/// fresh model; returns the model's features for `input`.
fn fake_run(dir: &std::path::Path, cfg: &TrainConfig, input: &Tensor) -> Tensor {
    let json = serde_json::json!({ "config": cfg });
    std::fs::write(dir.join("run.json"), json.to_string()).unwrap();
    let vs = nn::VarStore::new(Device::Cpu);
    let backbone = R3d::new(&vs.root(), &cfg.backbone()).unwrap();
    // Move the BatchNorm statistics off their initial values, so the export must carry them.
    let _ = backbone.forward_features_t(input, true);
    export_encoder(&vs, &dir.join("encoder.safetensors")).unwrap();
    tch::no_grad(|| backbone.forward_features_t(input, false))
}

fn tiny_config(base_width: u32) -> TrainConfig {
    TrainConfig { base_width, ..TrainConfig::preset(Preset::Demo, vec![], "unused".into()) }
}

#[test]
fn an_exported_encoder_loads_back_and_another_architecture_is_refused() {
    let _rng = torch_rng();
    let dir = tempfile::tempdir().unwrap();
    let input = Tensor::rand([2, 3, 4, 32, 32], (Kind::Float, Device::Cpu));
    let expected = fake_run(dir.path(), &tiny_config(8), &input);
    let encoder = Encoder::load(dir.path(), None, Device::Cpu).unwrap();
    let got = tch::no_grad(|| encoder.backbone.forward_features_t(&input, false));
    assert!(got.allclose(&expected, 1e-5, 1e-6, false));
    assert!(encoder.source.ends_with("encoder.safetensors"));

    // Random init of the same architecture: a different digest, seeded weights.
    let a = Encoder::load(dir.path(), Some(3), Device::Cpu).unwrap();
    let b = Encoder::load(dir.path(), Some(3), Device::Cpu).unwrap();
    let c = Encoder::load(dir.path(), Some(4), Device::Cpu).unwrap();
    let feat = |e: &Encoder| tch::no_grad(|| e.backbone.forward_features_t(&input, false));
    assert!(feat(&a).equal(&feat(&b)));
    assert!(!feat(&a).equal(&feat(&c)));
    assert_ne!(a.digest, encoder.digest);
    assert_ne!(a.digest, c.digest);

    // run.json now describes a wider model than the encoder file holds.
    let json = serde_json::json!({ "config": tiny_config(16) });
    std::fs::write(dir.path().join("run.json"), json.to_string()).unwrap();
    match Encoder::load(dir.path(), None, Device::Cpu) {
        Err(EvalError::Run { what, .. }) => assert!(what.contains("does not match"), "{what}"),
        other => panic!("expected a mismatch error, got {:?}", other.map(|e| e.source)),
    }
    let missing = tempfile::tempdir().unwrap();
    let err = Encoder::load(missing.path(), None, Device::Cpu).err().unwrap().to_string();
    assert!(err.contains("run.json") && err.contains("cvrl-train run directory"), "{err}");
}
