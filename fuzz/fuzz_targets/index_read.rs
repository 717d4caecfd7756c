//! Arbitrary bytes as `index.parquet` (and as `failures.parquet`): `read_index` and
//! `read_failures` must return rows or an error, never panic, and rows they accept must
//! survive a write and a read back unchanged.
#![no_main]

use cvrl_formats::index::{read_failures, read_index, write_failures, write_index};
use cvrl_formats_fuzz::{let_the_library_catch_panics, scratch_dir};
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();

fuzz_target!(init: let_the_library_catch_panics(), |data: &[u8]| {
    let dir = DIR.get_or_init(scratch_dir).path();
    let (input, again) = (dir.join("input.parquet"), dir.join("again.parquet"));
    std::fs::write(&input, data).expect("write the input");
    if let Ok(rows) = read_index(&input) {
        write_index(&again, &rows).expect("write back an index that was read");
        let back = read_index(&again).expect("read back an index just written");
        // Debug text, not `==`: a NaN duration is the same row.
        assert_eq!(format!("{back:?}"), format!("{rows:?}"), "index rows changed on a round trip");
    }
    if let Ok(rows) = read_failures(&input) {
        write_failures(&again, &rows).expect("write back failures that were read");
        let back = read_failures(&again).expect("read back failures just written");
        assert_eq!(back, rows, "failure rows changed on a round trip");
    }
});
