//! Arbitrary bytes as a shard file: the file header, the first record, and every record
//! `records` walks to. Whatever a parser accepts must satisfy FORMAT.md §3 (checked by
//! `check_record`), and its chunks that pass their CRC must decode without a panic.
//! Input: one mode byte (`SHARD_AS_IS` or `SHARD_FIX_CRCS`), then the file.
#![no_main]

use cvrl_formats::codec::ChunkDecoder;
use cvrl_formats::shard::{parse_file_header, parse_record, records, FILE_HEADER_LEN};
use cvrl_formats_fuzz::{check_record, decode_record, fix_crcs, SHARD_FIX_CRCS};
use libfuzzer_sys::fuzz_target;
use std::cell::RefCell;
use std::path::Path;

thread_local! {
    static DECODER: RefCell<ChunkDecoder> = RefCell::new(ChunkDecoder::new().expect("zstd"));
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, file)) = data.split_first() else { return };
    let mut file = file.to_vec();
    if mode == SHARD_FIX_CRCS {
        fix_crcs(&mut file);
    }
    let path = Path::new("fuzz.cvrs");
    let header_ok = parse_file_header(path, &file).is_ok();
    if let Ok(h) = parse_record(path, &file, FILE_HEADER_LEN as u64) {
        check_record(file.len(), FILE_HEADER_LEN as u64, &h);
    }
    let Ok(iter) = records(path, &file) else {
        assert!(!header_ok, "records refused a file whose header parses");
        return;
    };
    let mut last_end = FILE_HEADER_LEN as u64;
    for r in iter {
        let Ok((at, h)) = r else { break };
        assert!(at % 8 == 0 && at >= last_end, "record {at} not 8-aligned after {last_end}");
        check_record(file.len(), at, &h);
        last_end = at + h.record_len;
        let record = &file[at as usize..last_end as usize];
        DECODER.with_borrow_mut(|d| decode_record(d, record, &h));
    }
});
