//! Inputs with which the fuzz targets of `fuzz/` made a reader panic or run out of memory
//! (FUZZING.md, Findings), each a test named after what it caught. The files are the crash
//! inputs, byte for byte; a reader must now refuse each with an error naming the file.

use cvrl_formats::index::read_index;
use cvrl_formats::{BuildParams, FormatError, Manifest, PixelFormat, ShardSet};
use std::path::{Path, PathBuf};

fn input(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/fuzz").join(name)
}

/// `read_index` on the input, and `ShardSet::open` on an otherwise valid empty set holding
/// it as `index.parquet`, both refuse it as a bad index naming the file and the reason.
fn refused_as_bad_index(name: &str, reason_has: &str) {
    let path = input(name);
    match read_index(&path) {
        Err(FormatError::BadIndex { path: p, reason }) => {
            assert_eq!(p, path);
            assert!(reason.contains(reason_has), "{name}: {reason}");
        }
        other => panic!("{name}: expected a bad-index error, got {other:?}"),
    }
    let dir = tempfile::tempdir().unwrap();
    let params = BuildParams {
        short_side: None,
        fps: None,
        pixel_format: PixelFormat::Yuv420p,
        chunk_frames: 8,
        zstd_level: 1,
        predictor: cvrl_formats::codec::PredictorMode::Adaptive,
        shard_bytes: 1,
    };
    let manifest = Manifest::new("test", params, vec![], None, vec![], &[], &[]);
    cvrl_formats::write_set(dir.path(), &manifest, &[], &[]).unwrap();
    ShardSet::open(dir.path()).expect("the empty set opens");
    std::fs::copy(&path, dir.path().join("index.parquet")).unwrap();
    let err = ShardSet::open(dir.path()).err().expect("a set with this index opened");
    assert!(matches!(err, FormatError::BadIndex { .. }), "{name}: {err}");
    assert!(err.to_string().contains("index.parquet"), "{err}");
}

#[test]
fn an_index_with_a_negative_column_chunk_offset_is_refused_not_a_panic() {
    refused_as_bad_index(
        "index-negative-column-start.parquet",
        // Refused by the page check (a header of another chunk declares a 6069-byte string)
        // before parquet reaches the negative offset it panicked on.
        "page header at byte 381: a string at byte 3 declares 6069 entries",
    );
}

#[test]
fn an_index_whose_footer_lacks_a_required_thrift_field_is_refused_not_a_panic() {
    refused_as_bad_index("index-thrift-missing-field.parquet", "unwrap");
}

#[test]
fn an_index_whose_arrow_schema_names_a_6688_bit_integer_is_refused_not_a_panic() {
    refused_as_bad_index("index-arrow-schema-int-width.parquet", "bit width of 6688");
}

#[test]
fn an_index_whose_footer_declares_a_thrift_list_of_67_gb_is_refused_before_parquet_allocates() {
    refused_as_bad_index("index-thrift-list-67gb.parquet", "footer: a list at byte");
}

#[test]
fn an_index_whose_dictionary_page_declares_3_gb_of_values_is_refused_before_parquet_fills_it() {
    refused_as_bad_index("index-dictionary-page-3gb.parquet", "dictionary page declares");
}
