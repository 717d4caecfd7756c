//! Predictor modes (what an encoder may choose from, `FORMAT.md#325-encoder-informative`),
//! the chunk codecs they store with (the record's codec byte, `FORMAT.md#3-video-record`)
//! and the block predictors with their on-disk codes (`FORMAT.md#322-predictors`).

use std::fmt;
use std::str::FromStr;

/// Which predictors the encoder may use. Stored in the manifest under its lowercase name.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum PredictorMode {
    /// Every block RAW (zstd alone; for comparison).
    Raw,
    /// TEMPORAL everywhere after frame 0, MED on frame 0.
    Temporal,
    /// MED everywhere (purely spatial: every frame is intra).
    Med,
    /// Per block, the cheapest of all predictors, with one motion vector per plane (codec 1,
    /// [`Codec::Predictive`]). The fewest bytes; a stride-2 clip reconstructs every frame
    /// up to its last one in each chunk.
    Adaptive,
    /// No prediction and no residual streams: each frame its own zstd frame (codec 2,
    /// [`Codec::Plain`]). About twice the disk; the fastest reads.
    Plain,
    /// Adaptive's predictors with frame `k` referring to frame `k - 2`, residuals as zero
    /// flags and non-zero bytes (codec 3, [`Codec::Interleaved`]): a stride-2 clip
    /// reconstructs only the frames it uses. The default: at or below FFV1's bytes on the
    /// calibration videos, and about 2.8x adaptive's reads per CPU second for 1.12x its
    /// bytes (BENCHMARKS.md, "Loader").
    #[default]
    Interleaved,
}

/// A record's chunk codec, the record header's codec byte.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Codec {
    /// `FORMAT.md#32-chunk-data-predictive-zstd`: one zstd frame of predicted frames.
    Predictive = 1,
    /// `FORMAT.md#33-chunk-data-plain-zstd-frames`: one zstd frame per frame.
    Plain = 2,
    /// `FORMAT.md#34-chunk-data-interleaved-predicted-frames`: predicted frames, each
    /// referring to the frame two before it, each a header and 13 streams as zstd frames.
    Interleaved = 3,
}

impl Codec {
    pub fn code(self) -> u8 {
        self as u8
    }

    pub fn from_code(code: u8) -> Option<Self> {
        match code {
            1 => Some(Codec::Predictive),
            2 => Some(Codec::Plain),
            3 => Some(Codec::Interleaved),
            _ => None,
        }
    }

    /// The frames (numbers within a chunk of `n`) that decoding the frames `wanted` of a
    /// chunk reconstructs ([`ChunkDecoder::decode_wanted`](super::ChunkDecoder::decode_wanted)),
    /// in increasing order.
    pub fn decodes(self, wanted: &[usize], n: usize) -> Vec<usize> {
        match self {
            Codec::Predictive => {
                let upto = wanted.iter().map(|&k| k + 1).max().unwrap_or(0).min(n);
                (0..upto).collect()
            }
            Codec::Plain => {
                let mut w: Vec<usize> = wanted.iter().copied().filter(|&k| k < n).collect();
                w.sort_unstable();
                w.dedup();
                w
            }
            Codec::Interleaved => super::interleaved::chains(wanted, n),
        }
    }
}

impl PredictorMode {
    /// The name used on the command line and in the manifest.
    pub fn as_str(self) -> &'static str {
        match self {
            PredictorMode::Raw => "raw",
            PredictorMode::Temporal => "temporal",
            PredictorMode::Med => "med",
            PredictorMode::Adaptive => "adaptive",
            PredictorMode::Plain => "plain",
            PredictorMode::Interleaved => "interleaved",
        }
    }

    /// The codec its chunks are stored with.
    pub fn codec(self) -> Codec {
        match self {
            PredictorMode::Plain => Codec::Plain,
            PredictorMode::Interleaved => Codec::Interleaved,
            _ => Codec::Predictive,
        }
    }
}

impl fmt::Display for PredictorMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for PredictorMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "raw" => Ok(PredictorMode::Raw),
            "temporal" => Ok(PredictorMode::Temporal),
            "med" => Ok(PredictorMode::Med),
            "adaptive" => Ok(PredictorMode::Adaptive),
            "plain" => Ok(PredictorMode::Plain),
            "interleaved" => Ok(PredictorMode::Interleaved),
            other => Err(format!(
                "unknown predictor mode {other:?} (expected raw, temporal, med, adaptive, plain \
                 or interleaved)"
            )),
        }
    }
}

/// A block predictor and its on-disk code (`FORMAT.md#322-predictors`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Predictor {
    Raw = 0,
    Temporal = 1,
    Med = 2,
    TemporalMed = 3,
    Motion = 4,
    MotionMed = 5,
}

impl Predictor {
    pub const ALL: [Predictor; 6] = [
        Predictor::Raw,
        Predictor::Temporal,
        Predictor::Med,
        Predictor::TemporalMed,
        Predictor::Motion,
        Predictor::MotionMed,
    ];

    pub fn code(self) -> u8 {
        self as u8
    }

    pub fn from_code(code: u8) -> Option<Self> {
        Predictor::ALL.get(usize::from(code)).copied()
    }

    /// Whether it reads the previous frame (forbidden in a chunk's first frame).
    pub fn is_temporal(self) -> bool {
        !matches!(self, Predictor::Raw | Predictor::Med)
    }

    /// Whether it reads the previous plane shifted by the motion vector.
    pub(super) fn uses_vector(self) -> bool {
        matches!(self, Predictor::Motion | Predictor::MotionMed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mode_names_and_codes_round_trip() {
        for m in [
            PredictorMode::Raw,
            PredictorMode::Temporal,
            PredictorMode::Med,
            PredictorMode::Adaptive,
            PredictorMode::Plain,
            PredictorMode::Interleaved,
        ] {
            assert_eq!(m.to_string().parse::<PredictorMode>().unwrap(), m);
            assert_eq!(Codec::from_code(m.codec().code()), Some(m.codec()));
        }
        assert_eq!(PredictorMode::Plain.codec(), Codec::Plain);
        assert_eq!(PredictorMode::Raw.codec(), Codec::Predictive);
        assert_eq!(PredictorMode::Interleaved.codec(), Codec::Interleaved);
        assert_eq!(Codec::from_code(4), None);
        assert_eq!(Codec::Predictive.decodes(&[5, 2], 8), vec![0, 1, 2, 3, 4, 5]);
        assert_eq!(Codec::Plain.decodes(&[5, 2, 5, 9], 8), vec![2, 5]);
        assert_eq!(Codec::Interleaved.decodes(&[5, 2], 8), vec![0, 1, 2, 3, 5]);
        assert_eq!(PredictorMode::default(), PredictorMode::Interleaved);
        assert!("fast".parse::<PredictorMode>().is_err());
        for p in Predictor::ALL {
            assert_eq!(Predictor::from_code(p.code()), Some(p));
        }
        assert_eq!(Predictor::from_code(6), None);
    }
}
