//! The interleaved codec's decoder (`ChunkDecoder::decode_wanted` with `Codec::Interleaved`,
//! FORMAT.md §3.4) on arbitrary chunks of small layouts. Input: a `ChunkCase` header, then the
//! body. Flags: bit 0 set, the body is the chunk as stored; clear, the body is the contents of
//! its zstd frames, each as a `u16` LE length and that many bytes (the header, then the 13
//! streams of each frame; missing ones are empty), and the target compresses each, so
//! mutations reach the frame checks instead of dying in zstd.
//! A decode that succeeds must fill its frames from the input alone (`decode_twice`), and
//! the frames of a partial decode must equal those of the whole one.
#![no_main]

use cvrl_formats::codec::{ChunkDecoder, Codec};
use cvrl_formats_fuzz::{decode_twice, ChunkCase};
use libfuzzer_sys::fuzz_target;
use std::cell::RefCell;

thread_local! {
    static DECODER: RefCell<ChunkDecoder> = RefCell::new(ChunkDecoder::new().expect("zstd"));
}

/// zstd frames per video frame (FORMAT.md §3.4).
const PARTS: usize = 14;

fuzz_target!(|data: &[u8]| {
    let Some((case, body)) = ChunkCase::parse(data) else { return };
    let compressed = if case.flags & 1 == 1 { body.to_vec() } else { chunk_of_parts(&case, body) };
    DECODER.with_borrow_mut(|d| {
        let (layout, n) = (&case.layout, case.n_frames);
        let part = decode_twice(d, Codec::Interleaved, layout, n, &compressed, case.upto);
        let whole = decode_twice(d, Codec::Interleaved, layout, n, &compressed, n);
        assert!(n > 0 || whole.is_none(), "a chunk of no frames was accepted");
        if let (Some(part), Some(whole)) = (&part, &whole) {
            let k = case.upto * layout.frame_bytes();
            assert!(part[..k] == whole[..k], "a partial decode differs from the whole one");
        }
        assert!(whole.is_none() || part.is_some(), "a chunk that decodes whole fails in part");
    });
});

/// Compresses each length-prefixed part of `body` as one zstd frame, `PARTS` per frame.
fn chunk_of_parts(case: &ChunkCase, mut body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    for _ in 0..PARTS * case.n_frames {
        let part = match body.split_first_chunk::<2>() {
            Some((len, rest)) => {
                let len = usize::from(u16::from_le_bytes(*len)).min(rest.len());
                let (part, rest) = rest.split_at(len);
                body = rest;
                part
            }
            None => &[][..],
        };
        out.extend(zstd::bulk::compress(part, 1).expect("compress"));
    }
    out
}
