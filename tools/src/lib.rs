//! cvrl-tools: the FFmpeg side of cvrl. `cvrl-shard` decodes a video dataset once into the
//! shard format of `cvrl-formats`; `cvrl-inspect` shows what is in a shard set, a shard or
//! a video; `cvrl-shard synth` encodes a synthetic proxy dataset to shard like Kinetics.
//! The binaries only parse flags; the work lives in these modules.

pub mod build;
pub mod decode;
pub mod inputs;
pub mod inspect;
pub mod lock;
pub mod progress;
pub mod synth;
