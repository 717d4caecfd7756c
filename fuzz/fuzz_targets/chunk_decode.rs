//! `ChunkDecoder::decode_first` on arbitrary chunks of small layouts. Input: a `ChunkCase`
//! header, then the body. Flags: bit 0 set, the body is the compressed chunk as stored;
//! clear, the body is the decompressed payload (FORMAT.md §3.2) and the target compresses
//! it, so mutations reach the payload checks instead of dying in zstd. Bit 1 set: the
//! output buffer is one byte short, which must be refused.
//! A decode that succeeds must fill its frames from the input alone (`decode_twice`), and
//! a partial decode must equal the start of the whole one.
#![no_main]

use cvrl_formats::codec::{ChunkDecoder, Codec};
use cvrl_formats_fuzz::{decode_twice, ChunkCase};
use libfuzzer_sys::fuzz_target;
use std::cell::RefCell;

thread_local! {
    static DECODER: RefCell<ChunkDecoder> = RefCell::new(ChunkDecoder::new().expect("zstd"));
}

fuzz_target!(|data: &[u8]| {
    let Some((case, body)) = ChunkCase::parse(data) else { return };
    let compressed = if case.flags & 1 == 1 {
        body.to_vec()
    } else {
        let mut c = zstd::bulk::Compressor::new(1).expect("zstd");
        c.set_parameter(zstd::zstd_safe::CParameter::ChecksumFlag(true)).expect("zstd");
        c.compress(body).expect("compress")
    };
    DECODER.with_borrow_mut(|d| {
        if case.flags & 2 == 2 {
            let mut out = vec![0u8; case.decoded_len().saturating_sub(1)];
            let r = d.decode_first(&case.layout, case.n_frames, &compressed, &mut out, case.upto);
            assert!(r.is_err(), "a short output buffer was accepted");
            return;
        }
        let part =
            decode_twice(d, Codec::Predictive, &case.layout, case.n_frames, &compressed, case.upto);
        let whole = decode_twice(
            d,
            Codec::Predictive,
            &case.layout,
            case.n_frames,
            &compressed,
            case.n_frames,
        );
        assert!(case.n_frames > 0 || whole.is_none(), "a chunk of no frames was accepted");
        match (part, whole) {
            (Some(part), Some(whole)) => {
                let n = case.upto * case.layout.frame_bytes();
                assert!(part[..n] == whole[..n], "decode_first differs from decode");
            }
            (None, Some(_)) => panic!("decode_first refused a chunk that decodes whole"),
            _ => {}
        }
    });
});
