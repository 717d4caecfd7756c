//! A whole set directory from one input: `manifest.json`, `index.parquet` and
//! `shard-00000.cvrs` (`split_set`), beside an empty `failures.parquet`. `ShardSet::open`
//! must refuse what is inconsistent or accept a set whose every row can then be read and
//! verified without a panic: reads return exactly the bytes asked for, the same frames
//! whether read in order or by index, and a video that verifies also reads.
#![no_main]

use cvrl_formats::index::write_failures;
use cvrl_formats::ShardSet;
use cvrl_formats_fuzz::{let_the_library_catch_panics, scratch_dir, split_set, MAX_DECODE_BYTES};
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();

/// Videos read per execution at most (a fuzzed index may list thousands).
const MAX_VIDEOS: usize = 8;

fn init() -> tempfile::TempDir {
    let dir = scratch_dir();
    write_failures(&dir.path().join("failures.parquet"), &[]).expect("empty failures file");
    dir
}

fuzz_target!(init: let_the_library_catch_panics(), |data: &[u8]| {
    let dir = DIR.get_or_init(init).path();
    let [manifest, index, shard] = split_set(data);
    for (name, bytes) in
        [("manifest.json", manifest), ("index.parquet", index), ("shard-00000.cvrs", shard)]
    {
        std::fs::write(dir.join(name), bytes).expect("write an input file");
    }
    let Ok(set) = ShardSet::open(dir) else { return };
    let mut reader = set.reader().expect("a reader");
    for i in 0..set.len().min(MAX_VIDEOS) {
        let row = &set.videos()[i];
        let fb = set.layout(i).frame_bytes();
        let n = row.num_frames;
        if (n as usize).saturating_mul(fb) > MAX_DECODE_BYTES {
            continue;
        }
        let mut all = Vec::new();
        let read = reader.read_frames(i, 0, n, 1, &mut all);
        if read.is_ok() {
            assert_eq!(all.len(), n as usize * fb, "read_frames returned the wrong length");
            let mut two = Vec::new();
            reader.read_indices(i, &[n - 1, 0], &mut two).expect("frames just read");
            let last = &all[(n as usize - 1) * fb..];
            assert!(two[..fb] == *last && two[fb..] == all[..fb], "read_indices differs");
            assert!(reader.frame(i, n - 1).expect("a frame just read") == last);
        }
        if set.verify_video(i, &mut reader).is_ok() {
            assert!(read.is_ok(), "video {i} verifies but does not read");
        }
    }
});
