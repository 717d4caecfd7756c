//! The encoder against the decoder on arbitrary frames: whatever `ChunkEncoder` writes,
//! `ChunkDecoder` must read back exactly, whole and in part. Input: a `ChunkCase` header,
//! then pixel bytes, repeated to fill `n_frames` frames. Flags: bits 0-1 pick the predictor
//! mode (raw, temporal, med, adaptive); bits 2-7 the predictors adaptive may use besides
//! RAW and MED (`Predictor::ALL`, one bit each from code 0). Every input also goes through
//! the interleaved codec with the same predictors.
#![no_main]

use cvrl_formats::codec::{ChunkDecoder, ChunkEncoder, Predictor, PredictorMode};
use cvrl_formats_fuzz::{decode_twice, ChunkCase};
use libfuzzer_sys::fuzz_target;
use std::cell::RefCell;

thread_local! {
    static DECODER: RefCell<ChunkDecoder> = RefCell::new(ChunkDecoder::new().expect("zstd"));
}

const MODES: [PredictorMode; 4] =
    [PredictorMode::Raw, PredictorMode::Temporal, PredictorMode::Med, PredictorMode::Adaptive];

fuzz_target!(|data: &[u8]| {
    let Some((case, body)) = ChunkCase::parse(data) else { return };
    if case.n_frames == 0 {
        return;
    }
    let frames: Vec<u8> = if body.is_empty() {
        vec![0; case.decoded_len()]
    } else {
        body.iter().copied().cycle().take(case.decoded_len()).collect()
    };
    let candidates: Vec<Predictor> = Predictor::ALL
        .iter()
        .enumerate()
        .filter(|(i, _)| case.flags >> (2 + i) & 1 == 1)
        .map(|(_, &p)| p)
        .collect();
    for mode in [MODES[usize::from(case.flags & 3)], PredictorMode::Interleaved] {
        round_trip(&case, &frames, mode, &candidates);
    }
});

fn round_trip(case: &ChunkCase, frames: &[u8], mode: PredictorMode, candidates: &[Predictor]) {
    let mut enc = ChunkEncoder::new(1, mode).expect("zstd").with_candidates(candidates);
    let compressed = enc.encode(&case.layout, frames).expect("encoding valid frames");
    DECODER.with_borrow_mut(|d| {
        let whole =
            decode_twice(d, mode.codec(), &case.layout, case.n_frames, &compressed, case.n_frames);
        assert!(whole.as_deref() == Some(&frames[..]), "{mode} chunk does not round-trip");
        let part =
            decode_twice(d, mode.codec(), &case.layout, case.n_frames, &compressed, case.upto)
                .expect("a partial decode of a valid chunk");
        let n = case.upto * case.layout.frame_bytes();
        assert!(part[..n] == frames[..n], "{mode} chunk: decode_first differs");
    });
}
