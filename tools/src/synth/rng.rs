//! Random numbers: SplitMix64, a stream fixed forever, so that a seed names the same
//! dataset in every version.

/// SplitMix64: tiny and fixed forever, so a seed names the same dataset in every version
/// (a crate's generator may change its stream between releases).
#[derive(Clone, Debug)]
pub(super) struct Rng(u64);

pub(super) fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl Rng {
    pub(super) fn new(state: u64) -> Rng {
        Rng(state)
    }

    pub(super) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        mix(self.0)
    }
    /// Uniform in [0, 1).
    pub(super) fn unit(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32
    }
    pub(super) fn range(&mut self, lo: f32, hi: f32) -> f32 {
        lo + (hi - lo) * self.unit()
    }
    pub(super) fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }
    pub(super) fn sign(&mut self) -> f32 {
        if self.next_u64() & 1 == 0 {
            1.0
        } else {
            -1.0
        }
    }
}

/// A value in [0, 1) for a lattice point of a noise octave.
pub(super) fn lattice(seed: u64, x: i32, y: i32) -> f32 {
    let h = mix(seed ^ mix((u64::from(x as u32) << 32) | u64::from(y as u32)));
    (h >> 40) as f32 / (1u64 << 24) as f32
}
