//! What the parquet crate would trust in an index file, checked before it reads the file.
//!
//! parquet 57 sizes two allocations by counts read from the file, before checking them
//! against the data (FUZZING.md): the length of each Thrift list in the footer (a 9 KB file
//! made it reserve 67 GB and abort) and a dictionary page's `num_values` (another made it
//! fill 3.6 GB). Upgrading parquet would change the zstd library the shard codec links, so
//! [`check`] bounds both here: the footer and every page header of every column chunk are
//! parsed with [`crate::thrift`], which refuses any length beyond the bytes left, and each
//! page must be possible: its uncompressed size at most [`MAX_PAGE_BYTES`], a dictionary's
//! values no more than its bytes can hold, no page with more values than its column chunk.
//! Valid files (written by cvrl or pyarrow) always pass; what parquet itself refuses
//! cleanly (a bad magic number, a footer length past the file, chunks outside the file) is
//! left to it, so its messages stay.

use crate::thrift::{read_struct_lenient as read_struct, Node};

/// Largest uncompressed page accepted. Writers cut pages at 1 MiB (arrow-rs and pyarrow's
/// default page size limits, for data and dictionary pages), overshooting by at most a
/// batch of rows; parquet reserves this much to decompress a page.
pub(crate) const MAX_PAGE_BYTES: i64 = 64 << 20;

const MAGIC: &[u8] = b"PAR1";

// Field ids of parquet.thrift (parquet-format 2.x).
const FILE_ROW_GROUPS: i16 = 4;
const ROW_GROUP_COLUMNS: i16 = 1;
const CHUNK_META: i16 = 3;
const META_TYPE: i16 = 1;
const META_NUM_VALUES: i16 = 5;
const META_COMPRESSED_SIZE: i16 = 7;
const META_DATA_PAGE_OFFSET: i16 = 9;
const META_DICTIONARY_PAGE_OFFSET: i16 = 11;
const PAGE_UNCOMPRESSED_SIZE: i16 = 2;
const PAGE_COMPRESSED_SIZE: i16 = 3;
const PAGE_DATA_V1: i16 = 5;
const PAGE_DICTIONARY: i16 = 7;
const PAGE_DATA_V2: i16 = 8;
/// `num_values` is field 1 of every page-type header.
const HEADER_NUM_VALUES: i16 = 1;

/// Checks the Parquet file `bytes` as the module documentation says; the error says what is
/// impossible and where.
pub(crate) fn check(bytes: &[u8]) -> Result<(), String> {
    let Some(footer) = footer(bytes) else { return Ok(()) };
    let (meta, _) = read_struct(&bytes[footer.clone()]).map_err(|e| format!("footer: {e}"))?;
    for row_group in meta.list(FILE_ROW_GROUPS) {
        for chunk in row_group.list(ROW_GROUP_COLUMNS) {
            if let Some(meta) = chunk.field(CHUNK_META) {
                check_chunk(&bytes[..footer.start], meta)?;
            }
        }
    }
    Ok(())
}

/// The footer's byte range, when the file has one parquet would read.
fn footer(bytes: &[u8]) -> Option<std::ops::Range<usize>> {
    let n = bytes.len();
    if n < 12 || !bytes.starts_with(MAGIC) || !bytes.ends_with(MAGIC) {
        return None;
    }
    let len = u32::from_le_bytes(bytes[n - 8..n - 4].try_into().expect("4 bytes")) as usize;
    let end = n - 8;
    (len <= end - 4).then(|| end - len..end)
}

/// Walks the pages of one column chunk (`data`: the file before its footer).
fn check_chunk(data: &[u8], meta: &Node) -> Result<(), String> {
    let start = meta.int(META_DICTIONARY_PAGE_OFFSET).or(meta.int(META_DATA_PAGE_OFFSET));
    let (Some(start), Some(len)) = (start, meta.int(META_COMPRESSED_SIZE)) else { return Ok(()) };
    let (Ok(start), Ok(len)) = (usize::try_from(start), usize::try_from(len)) else {
        return Ok(());
    };
    if start.checked_add(len).is_none_or(|end| end > data.len()) {
        return Ok(());
    }
    // parquet reads a page header from its offset on, not bounded by the chunk's end.
    let rest = &data[start..];
    let bits = value_bits(meta.int(META_TYPE));
    let chunk_values = meta.int(META_NUM_VALUES).unwrap_or(i64::MAX);
    let mut pos = 0;
    while pos < len {
        let at = start + pos;
        let (header, used) =
            read_struct(&rest[pos..]).map_err(|e| format!("page header at byte {at}: {e}"))?;
        check_page(&header, bits, chunk_values).map_err(|e| format!("page at byte {at}: {e}"))?;
        let compressed = header.int(PAGE_COMPRESSED_SIZE).unwrap_or(0);
        let Ok(compressed) = usize::try_from(compressed) else {
            return Err(format!("page at byte {at}: negative compressed size {compressed}"));
        };
        pos = pos.saturating_add(used).saturating_add(compressed);
    }
    Ok(())
}

/// The fewest bits one value of Parquet physical type `ty` takes in a PLAIN-encoded page
/// (how dictionary pages are written): booleans are bit-packed, byte arrays carry a 4-byte
/// length, fixed-length arrays may be empty (0 bits, counted as 1).
fn value_bits(ty: Option<i64>) -> i64 {
    match ty {
        Some(1 | 4 | 6) => 32, // INT32, FLOAT, BYTE_ARRAY
        Some(2 | 5) => 64,     // INT64, DOUBLE
        Some(3) => 96,         // INT96
        _ => 1,                // BOOLEAN, FIXED_LEN_BYTE_ARRAY, unknown
    }
}

fn check_page(header: &Node, bits: i64, chunk_values: i64) -> Result<(), String> {
    let size = header.int(PAGE_UNCOMPRESSED_SIZE).unwrap_or(0);
    if !(0..=MAX_PAGE_BYTES).contains(&size) {
        return Err(format!(
            "uncompressed size {size} bytes is outside 0..={MAX_PAGE_BYTES} (no writer makes such pages)"
        ));
    }
    for (id, what) in
        [(PAGE_DICTIONARY, "dictionary"), (PAGE_DATA_V1, "data"), (PAGE_DATA_V2, "data")]
    {
        let Some(values) = header.field(id).and_then(|h| h.int(HEADER_NUM_VALUES)) else {
            continue;
        };
        if values < 0 || values > chunk_values {
            return Err(format!(
                "{what} page declares {values} values, its column chunk {chunk_values}"
            ));
        }
        if id == PAGE_DICTIONARY && values.saturating_mul(bits) > size.saturating_mul(8) {
            return Err(format!(
                "dictionary page declares {values} values, more than its {size} bytes hold"
            ));
        }
    }
    Ok(())
}
