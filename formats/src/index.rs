//! The Parquet index of a shard set: one row per stored video (`index.parquet`) and one per
//! video that could not be stored (`failures.parquet`), with the columns and types of
//! `FORMAT.md#4-index-files-parquet`, so pyarrow, pandas and duckdb read them with no help
//! from cvrl. The optional `factor_<name>` columns are [`VideoRow::factors`] in Rust.

use crate::error::{FormatError, Result};
use crate::shard::{ChunkEntry, EncodedRecord, RecordHeader, RecordLocation};
use arrow::array::{
    Array, ArrayRef, AsArray, Float64Array, Int32Array, ListArray, RecordBatch, StringArray,
    StructArray, UInt32Array, UInt64Array,
};
use arrow::buffer::OffsetBuffer;
use arrow::datatypes::{
    DataType, Field, Fields, Float64Type, Int32Type, Schema, UInt32Type, UInt64Type,
};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;
use std::collections::BTreeMap;
use std::fs::File;
use std::io::Read;
use std::panic::AssertUnwindSafe;
use std::path::Path;
use std::sync::Arc;

/// One stored video: where its record is and what it holds.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct VideoRow {
    /// Unique id within the set (`FORMAT.md#4-index-files-parquet`).
    pub video_id: String,
    /// The source file, as given to `cvrl-shard build`.
    pub source_path: String,
    pub label: Option<String>,
    /// Position of `label` in the manifest's class list.
    pub label_index: Option<i32>,
    pub split: Option<String>,
    /// Shard file name, relative to the set directory.
    pub shard: String,
    /// Byte range of the record in the shard.
    pub offset: u64,
    pub length: u64,
    pub num_frames: u32,
    pub width: u32,
    pub height: u32,
    pub fps_num: u32,
    pub fps_den: u32,
    pub duration_s: f64,
    /// FFmpeg name of the stored pixel format.
    pub pixel_format: String,
    pub source_bytes: u64,
    pub source_codec: String,
    /// Trim window applied to the source (Kinetics CSV), seconds.
    pub time_start_s: Option<f64>,
    pub time_end_s: Option<f64>,
    pub chunks: Vec<ChunkEntry>,
    /// CRC-32C of the whole record.
    pub checksum: u32,
    /// Labelled factors of variation, name -> value (the `factor_<name>` columns); empty
    /// for datasets that have none, like Kinetics.
    pub factors: BTreeMap<String, String>,
}

impl VideoRow {
    /// The row of `record`, written at `loc` in `shard`: every field the record determines
    /// (size, frames, rate, chunk table, checksum) is filled; the source's metadata is
    /// `source_path` and otherwise empty, for the caller to set.
    pub fn for_record(
        record: &EncodedRecord,
        shard: &str,
        loc: RecordLocation,
        source_path: String,
    ) -> VideoRow {
        VideoRow::for_header(&record.header, record.checksum, shard, loc, source_path)
    }

    /// Like [`VideoRow::for_record`], from a record's parsed header and its checksum.
    pub fn for_header(
        h: &RecordHeader,
        checksum: u32,
        shard: &str,
        loc: RecordLocation,
        source_path: String,
    ) -> VideoRow {
        VideoRow {
            video_id: h.video_id.clone(),
            source_path,
            label: None,
            label_index: None,
            split: None,
            shard: shard.to_string(),
            offset: loc.offset,
            length: loc.length,
            num_frames: h.num_frames,
            width: h.layout.width(),
            height: h.layout.height(),
            fps_num: h.fps_num,
            fps_den: h.fps_den,
            duration_s: f64::from(h.num_frames) * f64::from(h.fps_den) / f64::from(h.fps_num),
            pixel_format: h.layout.format().to_string(),
            source_bytes: 0,
            source_codec: String::new(),
            time_start_s: None,
            time_end_s: None,
            chunks: h.chunks.clone(),
            checksum,
            factors: BTreeMap::new(),
        }
    }

    /// Frames per second as a float.
    pub fn fps(&self) -> f64 {
        f64::from(self.fps_num) / f64::from(self.fps_den.max(1))
    }
}

/// One input that could not be stored, and why.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct FailureRow {
    pub source_path: String,
    pub video_id: Option<String>,
    pub label: Option<String>,
    /// Where it failed: missing, open, probe, decode, scale or encode
    /// (`FORMAT.md#4-index-files-parquet`).
    pub stage: String,
    pub error: String,
}

fn chunk_fields() -> Fields {
    Fields::from(vec![
        Field::new("offset", DataType::UInt64, false),
        Field::new("length", DataType::UInt32, false),
        Field::new("first_frame", DataType::UInt32, false),
        Field::new("num_frames", DataType::UInt32, false),
        Field::new("crc32c", DataType::UInt32, false),
    ])
}

/// Prefix of the optional factor columns of `index.parquet`.
pub const FACTOR_PREFIX: &str = "factor_";

/// The Arrow schema of `index.parquet`: the columns every index has. Factor columns
/// (`factor_<name>`, utf8, nullable) follow them when the rows have factors.
pub fn index_schema() -> Arc<Schema> {
    let s = |n: &str, null| Field::new(n, DataType::Utf8, null);
    let u32f = |n: &str| Field::new(n, DataType::UInt32, false);
    let u64f = |n: &str| Field::new(n, DataType::UInt64, false);
    let f64f = |n: &str, null| Field::new(n, DataType::Float64, null);
    let chunk = Field::new("item", DataType::Struct(chunk_fields()), false);
    Arc::new(Schema::new(vec![
        s("video_id", false),
        s("source_path", false),
        s("label", true),
        Field::new("label_index", DataType::Int32, true),
        s("split", true),
        s("shard", false),
        u64f("offset"),
        u64f("length"),
        u32f("num_frames"),
        u32f("width"),
        u32f("height"),
        u32f("fps_num"),
        u32f("fps_den"),
        f64f("fps", false),
        f64f("duration_s", false),
        s("pixel_format", false),
        u64f("source_bytes"),
        s("source_codec", false),
        f64f("time_start_s", true),
        f64f("time_end_s", true),
        Field::new("chunks", DataType::List(Arc::new(chunk)), false),
        u32f("checksum"),
    ]))
}

/// The Arrow schema of `failures.parquet`.
pub fn failures_schema() -> Arc<Schema> {
    Arc::new(Schema::new(vec![
        Field::new("source_path", DataType::Utf8, false),
        Field::new("video_id", DataType::Utf8, true),
        Field::new("label", DataType::Utf8, true),
        Field::new("stage", DataType::Utf8, false),
        Field::new("error", DataType::Utf8, false),
    ]))
}

fn strings<'a>(v: impl Iterator<Item = &'a str>) -> ArrayRef {
    Arc::new(StringArray::from_iter_values(v))
}

fn opt_strings<'a>(v: impl Iterator<Item = Option<&'a str>>) -> ArrayRef {
    Arc::new(v.collect::<StringArray>())
}

fn chunks_array(rows: &[VideoRow]) -> ArrayRef {
    let all = || rows.iter().flat_map(|r| r.chunks.iter());
    let cols: Vec<ArrayRef> = vec![
        Arc::new(UInt64Array::from_iter_values(all().map(|c| c.offset))),
        Arc::new(UInt32Array::from_iter_values(all().map(|c| c.length))),
        Arc::new(UInt32Array::from_iter_values(all().map(|c| c.first_frame))),
        Arc::new(UInt32Array::from_iter_values(all().map(|c| c.num_frames))),
        Arc::new(UInt32Array::from_iter_values(all().map(|c| c.crc32c))),
    ];
    let values = StructArray::new(chunk_fields(), cols, None);
    let offsets = OffsetBuffer::from_lengths(rows.iter().map(|r| r.chunks.len()));
    let item = Arc::new(Field::new("item", DataType::Struct(chunk_fields()), false));
    Arc::new(ListArray::new(item, offsets, Arc::new(values), None))
}

/// Every factor name any row has, sorted.
fn factor_names(rows: &[VideoRow]) -> Vec<&str> {
    let names: std::collections::BTreeSet<&str> =
        rows.iter().flat_map(|r| r.factors.keys().map(String::as_str)).collect();
    names.into_iter().collect()
}

/// The rows as one Arrow record batch with the columns of `index.parquet` (factor columns
/// included): what [`write_index`] writes, and what the Python package hands to pyarrow.
pub fn index_batch(
    rows: &[VideoRow],
) -> std::result::Result<RecordBatch, arrow::error::ArrowError> {
    let u32s = |f: fn(&VideoRow) -> u32| -> ArrayRef {
        Arc::new(UInt32Array::from_iter_values(rows.iter().map(f)))
    };
    let u64s = |f: fn(&VideoRow) -> u64| -> ArrayRef {
        Arc::new(UInt64Array::from_iter_values(rows.iter().map(f)))
    };
    let cols: Vec<ArrayRef> = vec![
        strings(rows.iter().map(|r| r.video_id.as_str())),
        strings(rows.iter().map(|r| r.source_path.as_str())),
        opt_strings(rows.iter().map(|r| r.label.as_deref())),
        Arc::new(rows.iter().map(|r| r.label_index).collect::<Int32Array>()),
        opt_strings(rows.iter().map(|r| r.split.as_deref())),
        strings(rows.iter().map(|r| r.shard.as_str())),
        u64s(|r| r.offset),
        u64s(|r| r.length),
        u32s(|r| r.num_frames),
        u32s(|r| r.width),
        u32s(|r| r.height),
        u32s(|r| r.fps_num),
        u32s(|r| r.fps_den),
        Arc::new(Float64Array::from_iter_values(rows.iter().map(VideoRow::fps))),
        Arc::new(Float64Array::from_iter_values(rows.iter().map(|r| r.duration_s))),
        strings(rows.iter().map(|r| r.pixel_format.as_str())),
        u64s(|r| r.source_bytes),
        strings(rows.iter().map(|r| r.source_codec.as_str())),
        Arc::new(rows.iter().map(|r| r.time_start_s).collect::<Float64Array>()),
        Arc::new(rows.iter().map(|r| r.time_end_s).collect::<Float64Array>()),
        chunks_array(rows),
        u32s(|r| r.checksum),
    ];
    let mut fields: Vec<Field> = index_schema().fields().iter().map(|f| (**f).clone()).collect();
    let mut cols = cols;
    for name in factor_names(rows) {
        fields.push(Field::new(format!("{FACTOR_PREFIX}{name}"), DataType::Utf8, true));
        cols.push(opt_strings(rows.iter().map(|r| r.factors.get(name).map(String::as_str))));
    }
    RecordBatch::try_new(Arc::new(Schema::new(fields)), cols)
}

fn failures_batch(
    rows: &[FailureRow],
) -> std::result::Result<RecordBatch, arrow::error::ArrowError> {
    let cols: Vec<ArrayRef> = vec![
        strings(rows.iter().map(|r| r.source_path.as_str())),
        opt_strings(rows.iter().map(|r| r.video_id.as_deref())),
        opt_strings(rows.iter().map(|r| r.label.as_deref())),
        strings(rows.iter().map(|r| r.stage.as_str())),
        strings(rows.iter().map(|r| r.error.as_str())),
    ];
    RecordBatch::try_new(failures_schema(), cols)
}

fn write_batch(path: &Path, batch: RecordBatch) -> Result<()> {
    let props = WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::try_new(3).expect("valid level")))
        .build();
    let mut err = None;
    crate::atomic::atomic_write(path, |file| {
        let run = || -> std::result::Result<(), parquet::errors::ParquetError> {
            let mut w = ArrowWriter::try_new(file.try_clone()?, batch.schema(), Some(props))?;
            w.write(&batch)?;
            w.close()?;
            Ok(())
        };
        run().map_err(|e| {
            let msg = e.to_string();
            err = Some(e);
            std::io::Error::other(msg)
        })
    })
    .map_err(|e| match err {
        Some(error) => FormatError::Parquet { path: path.to_path_buf(), error },
        None => e,
    })
}

/// Writes `index.parquet` atomically.
pub fn write_index(path: &Path, rows: &[VideoRow]) -> Result<()> {
    let batch =
        index_batch(rows).map_err(|error| FormatError::Arrow { path: path.into(), error })?;
    write_batch(path, batch)
}

/// Writes `failures.parquet` atomically.
pub fn write_failures(path: &Path, rows: &[FailureRow]) -> Result<()> {
    let batch =
        failures_batch(rows).map_err(|error| FormatError::Arrow { path: path.into(), error })?;
    write_batch(path, batch)
}

/// Reads every batch of the Parquet file at `path` after checking its columns against
/// `expected`. Counts in the file that parquet would allocate by are checked first
/// ([`crate::parquet_guard`]), so no file makes it reserve gigabytes. The parquet and arrow crates panic on some malformed files instead of
/// returning an error (a negative column chunk offset, a thrift struct missing a required
/// field, an embedded Arrow schema naming a 6688-bit integer: FUZZING.md); such a panic is
/// caught here and becomes [`FormatError::BadIndex`], so no file can panic a reader. The
/// panic hook still prints the dependency's message to stderr.
fn read_batches(path: &Path, expected: &Schema) -> Result<Vec<RecordBatch>> {
    let read = AssertUnwindSafe(|| read_batches_unguarded(path, expected));
    std::panic::catch_unwind(read).unwrap_or_else(|panic| {
        let message = panic
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| panic.downcast_ref::<&str>().copied())
            .unwrap_or("no message");
        Err(bad_index(path, format!("malformed Parquet file (the reader panicked: {message})")))
    })
}

fn read_batches_unguarded(path: &Path, expected: &Schema) -> Result<Vec<RecordBatch>> {
    let io = |error| FormatError::Io { path: path.into(), error };
    let mut file = File::open(path).map_err(io)?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes).map_err(io)?;
    // Counts parquet would size allocations by, checked first (parquet_guard.rs).
    crate::parquet_guard::check(&bytes)
        .map_err(|e| bad_index(path, format!("malformed Parquet file ({e})")))?;
    drop(bytes);
    let unreadable =
        |e: &dyn std::fmt::Display| bad_index(path, format!("not a readable Parquet file ({e})"));
    let builder = ParquetRecordBatchReaderBuilder::try_new(file).map_err(|e| unreadable(&e))?;
    let schema = builder.schema().clone();
    for field in expected.fields() {
        let Ok(found) = schema.field_with_name(field.name()) else {
            return Err(bad_index(path, format!("missing column {:?}", field.name())));
        };
        if !same_type(found.data_type(), field.data_type()) {
            let (name, found, want) = (field.name(), found.data_type(), field.data_type());
            return Err(bad_index(
                path,
                format!("column {name:?} has type {found}, expected {want}"),
            ));
        }
    }
    builder
        .build()
        .map_err(|e| unreadable(&e))?
        .map(|batch| batch.map_err(|e| unreadable(&e)))
        .collect()
}

/// Whether a column of type `found` can be read as `want`: the same type up to what Parquet
/// writers differ in, the name of a list's item field (arrow-rs writes `item`, pyarrow
/// `element`) and the declared nullability of nested fields (their data is checked for
/// nulls instead, in [`read_index`]).
fn same_type(found: &DataType, want: &DataType) -> bool {
    match (found, want) {
        (DataType::List(f), DataType::List(w)) => same_type(f.data_type(), w.data_type()),
        (DataType::Struct(f), DataType::Struct(w)) => {
            f.len() == w.len()
                && w.iter().all(|wf| {
                    f.find(wf.name())
                        .is_some_and(|(_, ff)| same_type(ff.data_type(), wf.data_type()))
                })
        }
        _ => found == want,
    }
}

fn bad_index(path: &Path, reason: String) -> FormatError {
    FormatError::BadIndex { path: path.to_path_buf(), reason }
}

/// Typed column access; the schema was checked in `read_batches`, so these casts hold.
struct Cols<'a>(&'a RecordBatch);

impl<'a> Cols<'a> {
    fn col(&self, name: &str) -> &'a ArrayRef {
        self.0.column_by_name(name).expect("schema checked")
    }
    fn s(&self, name: &str, i: usize) -> Option<String> {
        let a = self.col(name).as_string::<i32>();
        a.is_valid(i).then(|| a.value(i).to_string())
    }
    fn u32(&self, name: &str, i: usize) -> u32 {
        self.col(name).as_primitive::<UInt32Type>().value(i)
    }
    fn u64(&self, name: &str, i: usize) -> u64 {
        self.col(name).as_primitive::<UInt64Type>().value(i)
    }
    fn f64(&self, name: &str, i: usize) -> Option<f64> {
        let a = self.col(name).as_primitive::<Float64Type>();
        a.is_valid(i).then(|| a.value(i))
    }
    fn i32(&self, name: &str, i: usize) -> Option<i32> {
        let a = self.col(name).as_primitive::<Int32Type>();
        a.is_valid(i).then(|| a.value(i))
    }
    fn chunks(&self, i: usize) -> Vec<ChunkEntry> {
        let list = self.col("chunks").as_list::<i32>();
        let v = list.value(i);
        let s = v.as_struct();
        let c = |n: &str| s.column_by_name(n).expect("schema checked").clone();
        let (off, len, first, num, crc) =
            (c("offset"), c("length"), c("first_frame"), c("num_frames"), c("crc32c"));
        (0..s.len())
            .map(|j| ChunkEntry {
                offset: off.as_primitive::<UInt64Type>().value(j),
                length: len.as_primitive::<UInt32Type>().value(j),
                first_frame: first.as_primitive::<UInt32Type>().value(j),
                num_frames: num.as_primitive::<UInt32Type>().value(j),
                crc32c: crc.as_primitive::<UInt32Type>().value(j),
            })
            .collect()
    }
}

/// Reads `index.parquet`. Rejects missing columns, wrong types and nulls where
/// `FORMAT.md#4-index-files-parquet` forbids them; `factor_<name>` columns become
/// [`VideoRow::factors`]; row contents are checked against the shards by
/// [`crate::set::ShardSet`].
pub fn read_index(path: &Path) -> Result<Vec<VideoRow>> {
    let schema = index_schema();
    let mut rows = Vec::new();
    for batch in read_batches(path, &schema)? {
        for field in schema.fields().iter().filter(|f| !f.is_nullable()) {
            if batch.column_by_name(field.name()).is_some_and(|c| c.null_count() > 0) {
                return Err(bad_index(path, format!("column {:?} has nulls", field.name())));
            }
        }
        if let Some(chunks) = batch.column_by_name("chunks") {
            let entries = chunks.as_list::<i32>().values();
            let inner = entries.as_struct().columns().iter().map(|c| c.null_count()).sum::<usize>();
            if entries.null_count() + inner > 0 {
                return Err(bad_index(path, "column \"chunks\" has nulls in its entries".into()));
            }
        }
        let c = Cols(&batch);
        let mut factor_cols: Vec<(&str, &str)> = Vec::new();
        for f in batch.schema_ref().fields() {
            let Some(name) = f.name().strip_prefix(FACTOR_PREFIX) else { continue };
            if f.data_type() != &DataType::Utf8 {
                let (col, found) = (f.name(), f.data_type());
                return Err(bad_index(
                    path,
                    format!("column {col:?} has type {found}, expected Utf8"),
                ));
            }
            factor_cols.push((f.name(), name));
        }
        for i in 0..batch.num_rows() {
            let req = |n: &str| c.s(n, i).unwrap_or_default();
            rows.push(VideoRow {
                video_id: req("video_id"),
                source_path: req("source_path"),
                label: c.s("label", i),
                label_index: c.i32("label_index", i),
                split: c.s("split", i),
                shard: req("shard"),
                offset: c.u64("offset", i),
                length: c.u64("length", i),
                num_frames: c.u32("num_frames", i),
                width: c.u32("width", i),
                height: c.u32("height", i),
                fps_num: c.u32("fps_num", i),
                fps_den: c.u32("fps_den", i),
                duration_s: c.f64("duration_s", i).unwrap_or_default(),
                pixel_format: req("pixel_format"),
                source_bytes: c.u64("source_bytes", i),
                source_codec: req("source_codec"),
                time_start_s: c.f64("time_start_s", i),
                time_end_s: c.f64("time_end_s", i),
                chunks: c.chunks(i),
                checksum: c.u32("checksum", i),
                factors: factor_cols
                    .iter()
                    .filter_map(|&(col, name)| Some((name.to_string(), c.s(col, i)?)))
                    .collect(),
            });
        }
    }
    Ok(rows)
}

/// Reads `failures.parquet`.
pub fn read_failures(path: &Path) -> Result<Vec<FailureRow>> {
    let mut rows = Vec::new();
    for batch in read_batches(path, &failures_schema())? {
        let c = Cols(&batch);
        for i in 0..batch.num_rows() {
            rows.push(FailureRow {
                source_path: c.s("source_path", i).unwrap_or_default(),
                video_id: c.s("video_id", i),
                label: c.s("label", i),
                stage: c.s("stage", i).unwrap_or_default(),
                error: c.s("error", i).unwrap_or_default(),
            });
        }
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(i: u32) -> VideoRow {
        VideoRow {
            video_id: format!("class{}/v{i}", i % 3),
            source_path: format!("videos/class{}/v{i}.mp4", i % 3),
            label: i.is_multiple_of(2).then(|| format!("class{}", i % 3)),
            label_index: i.is_multiple_of(2).then_some((i % 3) as i32),
            split: Some("train".into()),
            shard: "shard-00000.cvrs".into(),
            offset: 32 + u64::from(i) * 1000,
            length: 999,
            num_frames: 10 + i,
            width: 342,
            height: 256,
            fps_num: 30000,
            fps_den: 1001,
            duration_s: 1.5,
            pixel_format: "yuv420p".into(),
            source_bytes: 12345,
            source_codec: "h264".into(),
            time_start_s: None,
            time_end_s: Some(2.0),
            chunks: (0..i % 4 + 1)
                .map(|c| ChunkEntry {
                    offset: 100 + u64::from(c),
                    length: c,
                    first_frame: c * 16,
                    num_frames: 16,
                    crc32c: c ^ 0xdead,
                })
                .collect(),
            checksum: i * 7,
            factors: BTreeMap::new(),
        }
    }

    #[test]
    fn index_round_trips_through_parquet() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("index.parquet");
        let rows: Vec<_> = (0..7).map(row).collect();
        write_index(&path, &rows).unwrap();
        assert_eq!(read_index(&path).unwrap(), rows);
        assert!(!crate::atomic::tmp_path(&path).exists());
    }

    #[test]
    fn factors_round_trip_as_one_nullable_column_each() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("index.parquet");
        let mut rows: Vec<_> = (0..4).map(row).collect();
        rows[0].factors = [("object", "disc"), ("motion", "spin")]
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .into();
        rows[2].factors = [("motion".to_string(), "zoom".to_string())].into();
        write_index(&path, &rows).unwrap();
        assert_eq!(read_index(&path).unwrap(), rows);
        let file = File::open(&path).unwrap();
        let schema = ParquetRecordBatchReaderBuilder::try_new(file).unwrap().schema().clone();
        let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
        assert_eq!(names[names.len() - 2..], ["factor_motion", "factor_object"]);
    }

    #[test]
    fn an_index_without_factor_columns_reads_with_empty_factors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("index.parquet");
        // Exactly the columns of an index written before factors existed.
        let batch = index_batch(&[row(1)]).unwrap();
        assert_eq!(batch.schema(), index_schema());
        write_batch(&path, batch).unwrap();
        let back = read_index(&path).unwrap();
        assert_eq!(back, [row(1)]);
        assert!(back[0].factors.is_empty());
    }

    #[test]
    fn a_factor_column_that_is_not_utf8_is_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("index.parquet");
        let batch = index_batch(&[row(1)]).unwrap();
        let mut fields: Vec<Field> =
            batch.schema().fields().iter().map(|f| (**f).clone()).collect();
        fields.push(Field::new("factor_size", DataType::Int32, true));
        let mut cols = batch.columns().to_vec();
        cols.push(Arc::new(Int32Array::from(vec![Some(3)])));
        write_batch(&path, RecordBatch::try_new(Arc::new(Schema::new(fields)), cols).unwrap())
            .unwrap();
        let err = read_index(&path).unwrap_err().to_string();
        assert!(err.contains("\"factor_size\" has type Int32"), "{err}");
    }

    /// `index` with its `chunks` column rebuilt as pyarrow declares a list of structs by
    /// default (item field `element`, every field nullable), and entry 0's `length` made
    /// null when `null_inside` is set.
    fn pyarrow_style(index: &RecordBatch, null_inside: bool) -> RecordBatch {
        let list = index.column_by_name("chunks").unwrap().as_list::<i32>();
        let entries = list.values().as_struct();
        let fields: Fields = chunk_fields()
            .iter()
            .map(|f| Field::new(f.name(), f.data_type().clone(), true))
            .collect();
        let mut cols = entries.columns().to_vec();
        if null_inside {
            let lengths = cols[1].as_primitive::<UInt32Type>();
            let with_null: UInt32Array =
                (0..lengths.len()).map(|j| (j > 0).then(|| lengths.value(j))).collect();
            cols[1] = Arc::new(with_null);
        }
        let item = Arc::new(Field::new("element", DataType::Struct(fields.clone()), true));
        let values = Arc::new(StructArray::new(fields, cols, None));
        let chunks = ListArray::new(item.clone(), list.offsets().clone(), values, None);
        let schema: Vec<Field> = index
            .schema()
            .fields()
            .iter()
            .map(|f| match f.name().as_str() {
                "chunks" => Field::new("chunks", DataType::List(item.clone()), true),
                _ => f.as_ref().clone().with_nullable(true),
            })
            .collect();
        let mut columns = index.columns().to_vec();
        let at = index.schema().index_of("chunks").unwrap();
        columns[at] = Arc::new(chunks);
        RecordBatch::try_new(Arc::new(Schema::new(schema)), columns).unwrap()
    }

    fn write_with(path: &Path, batch: &RecordBatch, compression: Compression) {
        let props = WriterProperties::builder().set_compression(compression).build();
        let mut w =
            ArrowWriter::try_new(File::create(path).unwrap(), batch.schema(), Some(props)).unwrap();
        w.write(batch).unwrap();
        w.close().unwrap();
    }

    #[test]
    fn an_index_written_with_pyarrow_defaults_reads_with_any_codec_cvrl_lists() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("index.parquet");
        let rows: Vec<_> = (0..5).map(row).collect();
        let batch = pyarrow_style(&index_batch(&rows).unwrap(), false);
        let zstd = Compression::ZSTD(ZstdLevel::default());
        let gzip = Compression::GZIP(Default::default());
        for codec in [Compression::UNCOMPRESSED, Compression::SNAPPY, gzip, zstd] {
            write_with(&path, &batch, codec);
            assert_eq!(read_index(&path).unwrap(), rows, "{codec:?}");
        }
    }

    #[test]
    fn a_null_inside_the_chunk_table_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("index.parquet");
        let batch = pyarrow_style(&index_batch(&[row(1), row(2)]).unwrap(), true);
        write_with(&path, &batch, Compression::SNAPPY);
        let err = read_index(&path).unwrap_err().to_string();
        assert!(err.contains("\"chunks\" has nulls"), "{err}");
    }

    #[test]
    fn failures_round_trip_through_parquet() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("failures.parquet");
        let rows = vec![FailureRow {
            source_path: "a/b.mp4".into(),
            video_id: None,
            label: Some("a".into()),
            stage: "decode".into(),
            error: "truncated".into(),
        }];
        write_failures(&path, &rows).unwrap();
        assert_eq!(read_failures(&path).unwrap(), rows);
        write_failures(&path, &[]).unwrap();
        assert!(read_failures(&path).unwrap().is_empty());
    }

    #[test]
    fn a_failures_file_is_not_accepted_as_an_index() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("failures.parquet");
        write_failures(&path, &[]).unwrap();
        let err = read_index(&path).unwrap_err().to_string();
        assert!(err.contains("bad index: missing column \"label_index\""), "{err}");
    }

    #[test]
    fn garbage_is_a_bad_index_naming_the_file_and_what_to_do() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("index.parquet");
        std::fs::write(&path, b"not parquet at all").unwrap();
        let err = read_index(&path).unwrap_err();
        assert!(matches!(err, FormatError::BadIndex { .. }), "{err:?}");
        let err = err.to_string();
        assert!(
            err.contains("index.parquet: bad index: not a readable Parquet file")
                && err.contains("rebuild it with `cvrl-shard build`"),
            "{err}"
        );
    }
}
