//! Writes the two augmented views of eight CVRL pairs as one PPM picture (rows: pairs;
//! columns: 4 frames of the first view, then 4 of the second), to look at what the model is
//! asked to match:
//! `cargo run --release -p cvrl-trainer --example augment_sheet SHARDS OUT.ppm [SIZE] [AUGMENTATION]`
//! (`ffmpeg -i OUT.ppm OUT.png` converts it). Both views are cut from the same frames, so
//! only the spatial augmentation differs.

use cvrl_formats::ShardSet;
use cvrl_trainer::augment::{AugmentTransform, Augmentation};
use cvrl_trainer::loader::ClipTransform;
use cvrl_trainer::loader::View;
use rand::rngs::Xoshiro256PlusPlus;
use rand::SeedableRng;
use std::io::Write;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 3 {
        anyhow::bail!("usage: augment_sheet SHARDS OUT.ppm [SIZE (64)] [AUGMENTATION (cvrl)]");
    }
    let set = ShardSet::open(std::path::Path::new(&args[1]))?;
    let size: usize = args.get(3).map_or(Ok(64), |s| s.parse())?;
    let augmentation: Augmentation =
        args.get(4).map_or(Ok(Augmentation::Cvrl), |s| s.parse()).map_err(anyhow::Error::msg)?;
    let t = 4usize;
    let transform = AugmentTransform::for_run(augmentation, size as u32);
    let mut reader = set.reader()?;
    let pairs = 8;
    // Rows: pairs; columns: t frames of view a, then t of view b.
    let (w, h) = (2 * t * size, pairs * size);
    let mut img = vec![0u8; w * h * 3];
    for p in 0..pairs {
        let video = p * set.len() / pairs;
        let layout = set.layout(video);
        let mut frames = Vec::new();
        reader.read_frames(video, 0, t as u32, 4, &mut frames)?;
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(p as u64);
        for (v, view) in [View::First, View::Second].into_iter().enumerate() {
            let mut out = vec![0u8; transform.output_len(t)];
            transform.apply(view, &mut rng, &layout, &frames, t, &mut out);
            for f in 0..t {
                for y in 0..size {
                    for x in 0..size {
                        for c in 0..3 {
                            let src = ((c * t + f) * size + y) * size + x;
                            let (ox, oy) = ((v * t + f) * size + x, p * size + y);
                            img[(oy * w + ox) * 3 + c] = out[src];
                        }
                    }
                }
            }
        }
    }
    let mut file = std::fs::File::create(&args[2])?;
    write!(file, "P6\n{w} {h}\n255\n")?;
    file.write_all(&img)?;
    Ok(())
}
