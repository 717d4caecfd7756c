//! A TensorBoard event-file writer for scalars, so that `tensorboard --logdir RUN_DIR/tb`
//! plots a run's loss, learning rate, throughput and data wait as it trains.
//!
//! No well-kept writer crate exists, and the format is small:
//!
//! - The file (`events.out.tfevents.<unix seconds>.<host>`) is a sequence of TFRecords:
//!   the payload length as a little-endian `u64`, the masked CRC32C of those 8 bytes
//!   (`u32` LE), the payload, and the masked CRC32C of the payload. The mask is
//!   `((crc >> 15) | (crc << 17)) + 0xa282ead8`, wrapping.
//! - Each payload is a `tensorflow.Event` protobuf, encoded here by hand: `wall_time`
//!   (double, field 1), `step` (int64, field 2) and one of `file_version` (string, field 3;
//!   `"brain.Event:2"` in the first record of every file), `summary` (field 5) or
//!   `session_log` (field 7). A `Summary` holds repeated `value` (field 1), each a `tag`
//!   (string, field 1) and a `simple_value` (float, field 2).
//!
//! A run resumed at step `s` opens a new file that starts with a `SessionLog` `START` at
//! step `s`: TensorBoard then drops the earlier file's points at steps `>= s` (those the
//! crashed run logged after its checkpoint), as it does for TensorFlow's own restarts.
//!
//! [`read_scalars`] reads such files back (checking every CRC) for tests and tools.
//!
//! ```no_run
//! let mut tb = cvrl_trainer::tensorboard::EventWriter::create("runs/demo/tb".as_ref(), 0)?;
//! tb.scalars(0, &[("train/loss", 5.3), ("train/lr", 0.0)])?;
//! # Ok::<(), cvrl_trainer::tensorboard::TensorBoardError>(())
//! ```

use std::fs;
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

/// The version string of the first record of an event file.
pub const FILE_VERSION: &str = "brain.Event:2";

/// Why an event file could not be written or read.
#[derive(Debug, thiserror::Error)]
pub enum TensorBoardError {
    #[error("{path}: {error}")]
    Io { path: PathBuf, error: std::io::Error },
    #[error("{path}: record at byte {offset}: {reason}")]
    Corrupt { path: PathBuf, offset: u64, reason: String },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> TensorBoardError + '_ {
    move |error| TensorBoardError::Io { path: path.to_path_buf(), error }
}

/// CRC32C as TFRecord stores it: rotated and offset, so that a CRC of data that itself
/// holds CRCs does not degenerate.
pub fn masked_crc32c(data: &[u8]) -> u32 {
    crc32c::crc32c(data).rotate_right(15).wrapping_add(0xa282_ead8)
}

/// One TFRecord around `payload`.
fn frame_record(payload: &[u8], out: &mut Vec<u8>) {
    let len = (payload.len() as u64).to_le_bytes();
    out.extend_from_slice(&len);
    out.extend_from_slice(&masked_crc32c(&len).to_le_bytes());
    out.extend_from_slice(payload);
    out.extend_from_slice(&masked_crc32c(payload).to_le_bytes());
}

/// Protobuf wire types.
const VARINT: u8 = 0;
const FIXED64: u8 = 1;
const LEN: u8 = 2;
const FIXED32: u8 = 5;

fn put_varint(mut v: u64, out: &mut Vec<u8>) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn put_key(field: u32, wire: u8, out: &mut Vec<u8>) {
    put_varint(u64::from(field) << 3 | u64::from(wire), out);
}

fn put_bytes(field: u32, bytes: &[u8], out: &mut Vec<u8>) {
    put_key(field, LEN, out);
    put_varint(bytes.len() as u64, out);
    out.extend_from_slice(bytes);
}

/// What an event carries besides its time and step.
enum What<'a> {
    FileVersion,
    Scalars(&'a [(&'a str, f32)]),
    /// `SessionLog { status: START }`.
    Start,
}

fn encode_event(wall_time: f64, step: i64, what: What<'_>) -> Vec<u8> {
    let mut out = Vec::with_capacity(64);
    put_key(1, FIXED64, &mut out);
    out.extend_from_slice(&wall_time.to_le_bytes());
    put_key(2, VARINT, &mut out);
    // int64: negative values are their two's complement as a 10-byte varint.
    put_varint(step as u64, &mut out);
    match what {
        What::FileVersion => put_bytes(3, FILE_VERSION.as_bytes(), &mut out),
        What::Scalars(values) => {
            let mut summary = Vec::new();
            let mut value = Vec::new();
            for (tag, v) in values {
                value.clear();
                put_bytes(1, tag.as_bytes(), &mut value);
                put_key(2, FIXED32, &mut value);
                value.extend_from_slice(&v.to_le_bytes());
                put_bytes(1, &value, &mut summary);
            }
            put_bytes(5, &summary, &mut out);
        }
        What::Start => {
            let mut log = Vec::new();
            put_key(1, VARINT, &mut log);
            put_varint(1, &mut log); // SessionLog.START
            put_bytes(7, &log, &mut out);
        }
    }
    out
}

fn now() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64())
}

/// This machine's name for the file name, with anything but `[A-Za-z0-9._-]` replaced.
fn host_name() -> String {
    let raw = fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| fs::read_to_string("/etc/hostname"))
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_default();
    let name: String = raw
        .trim()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || "._-".contains(c) { c } else { '_' })
        .collect();
    if name.is_empty() {
        "localhost".to_owned()
    } else {
        name
    }
}

/// An open event file. Each call writes and flushes whole records, so a crash loses at
/// most the record being written (TensorBoard stops reading at a truncated one).
pub struct EventWriter {
    path: PathBuf,
    file: BufWriter<fs::File>,
    buf: Vec<u8>,
}

impl EventWriter {
    /// Creates `dir` if needed and a new event file in it, which starts with the version
    /// record and, when `start_step > 0` (a resumed run), a `SessionLog` `START` at that step.
    /// An existing file is never overwritten: a name taken (two writers in one second) gets
    /// a `.1`, `.2`, ... suffix.
    pub fn create(dir: &Path, start_step: u64) -> Result<EventWriter, TensorBoardError> {
        fs::create_dir_all(dir).map_err(io(dir))?;
        let wall = now();
        let base = format!("events.out.tfevents.{}.{}", wall as u64, host_name());
        let mut n = 0u32;
        let (path, file) = loop {
            let name = if n == 0 { base.clone() } else { format!("{base}.{n}") };
            let path = dir.join(name);
            match fs::OpenOptions::new().write(true).create_new(true).open(&path) {
                Ok(file) => break (path, file),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && n < 1000 => n += 1,
                Err(e) => return Err(io(&path)(e)),
            }
        };
        let mut writer = EventWriter { path, file: BufWriter::new(file), buf: Vec::new() };
        writer.write(&encode_event(wall, start_step as i64, What::FileVersion))?;
        if start_step > 0 {
            writer.write(&encode_event(wall, start_step as i64, What::Start))?;
        }
        Ok(writer)
    }

    /// The file being written.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// One event at `step`, now, holding `values` (tag, value) as scalars.
    pub fn scalars(&mut self, step: u64, values: &[(&str, f64)]) -> Result<(), TensorBoardError> {
        let values: Vec<(&str, f32)> = values.iter().map(|&(t, v)| (t, v as f32)).collect();
        self.write(&encode_event(now(), step as i64, What::Scalars(&values)))
    }

    fn write(&mut self, event: &[u8]) -> Result<(), TensorBoardError> {
        self.buf.clear();
        frame_record(event, &mut self.buf);
        self.file.write_all(&self.buf).map_err(io(&self.path))?;
        self.file.flush().map_err(io(&self.path))
    }
}

/// One scalar point read back from an event file.
#[derive(Clone, Debug, PartialEq)]
pub struct ScalarPoint {
    pub wall_time: f64,
    pub step: i64,
    pub tag: String,
    pub value: f32,
}

/// The payloads of the TFRecords in `bytes`, every CRC checked.
fn records(path: &Path, bytes: &[u8]) -> Result<Vec<Vec<u8>>, TensorBoardError> {
    let corrupt = |offset: usize, reason: &str| TensorBoardError::Corrupt {
        path: path.to_path_buf(),
        offset: offset as u64,
        reason: reason.to_owned(),
    };
    let u32_at = |b: &[u8], at: usize| u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]]);
    let mut out = Vec::new();
    let mut at = 0usize;
    while at < bytes.len() {
        let head = bytes.get(at..at + 12).ok_or_else(|| corrupt(at, "truncated header"))?;
        if masked_crc32c(&head[..8]) != u32_at(head, 8) {
            return Err(corrupt(at, "length CRC mismatch"));
        }
        let len = u64::from_le_bytes(head[..8].try_into().expect("8 bytes"));
        let start = at + 12;
        let end = usize::try_from(len)
            .ok()
            .and_then(|l| start.checked_add(l))
            .filter(|&e| e.checked_add(4).is_some_and(|e4| e4 <= bytes.len()))
            .ok_or_else(|| corrupt(at, "truncated payload"))?;
        if masked_crc32c(&bytes[start..end]) != u32_at(bytes, end) {
            return Err(corrupt(at, "payload CRC mismatch"));
        }
        out.push(bytes[start..end].to_vec());
        at = end + 4;
    }
    Ok(out)
}

/// One protobuf field: number, wire type, varint or fixed value, bytes (length-delimited).
type Field<'a> = (u32, u8, u64, &'a [u8]);

/// A minimal protobuf field walker.
fn fields(mut b: &[u8]) -> Option<Vec<Field<'_>>> {
    fn varint(b: &mut &[u8]) -> Option<u64> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let (&byte, rest) = b.split_first()?;
            *b = rest;
            v |= u64::from(byte & 0x7f) << shift;
            if byte < 0x80 {
                return Some(v);
            }
        }
        None
    }
    let mut out = Vec::new();
    while !b.is_empty() {
        let key = varint(&mut b)?;
        let (field, wire) = (u32::try_from(key >> 3).ok()?, (key & 7) as u8);
        match wire {
            VARINT => out.push((field, wire, varint(&mut b)?, &[][..])),
            FIXED64 => {
                let (v, rest) = b.split_at_checked(8)?;
                out.push((field, wire, u64::from_le_bytes(v.try_into().ok()?), &[][..]));
                b = rest;
            }
            FIXED32 => {
                let (v, rest) = b.split_at_checked(4)?;
                out.push((field, wire, u64::from(u32::from_le_bytes(v.try_into().ok()?)), &[][..]));
                b = rest;
            }
            LEN => {
                let n = usize::try_from(varint(&mut b)?).ok()?;
                let (v, rest) = b.split_at_checked(n)?;
                out.push((field, wire, 0, v));
                b = rest;
            }
            _ => return None,
        }
    }
    Some(out)
}

/// Every `simple_value` scalar in the event file at `path`, in file order.
pub fn read_scalars(path: &Path) -> Result<Vec<ScalarPoint>, TensorBoardError> {
    let mut bytes = Vec::new();
    fs::File::open(path).and_then(|mut f| f.read_to_end(&mut bytes)).map_err(io(path))?;
    let bad = |reason: &str| TensorBoardError::Corrupt {
        path: path.to_path_buf(),
        offset: 0,
        reason: reason.to_owned(),
    };
    let mut points = Vec::new();
    for event in records(path, &bytes)? {
        let event = fields(&event).ok_or_else(|| bad("undecodable event"))?;
        let (mut wall_time, mut step) = (0.0, 0);
        for &(field, wire, v, data) in &event {
            match (field, wire) {
                (1, FIXED64) => wall_time = f64::from_bits(v),
                (2, VARINT) => step = v as i64,
                (5, LEN) => {
                    for (_, _, _, value) in
                        fields(data).ok_or_else(|| bad("undecodable summary"))?
                    {
                        let value = fields(value).ok_or_else(|| bad("undecodable value"))?;
                        let tag = value.iter().find(|f| f.0 == 1 && f.1 == LEN);
                        let simple = value.iter().find(|f| f.0 == 2 && f.1 == FIXED32);
                        if let (Some(tag), Some(simple)) = (tag, simple) {
                            points.push(ScalarPoint {
                                wall_time,
                                step,
                                tag: String::from_utf8_lossy(tag.3).into_owned(),
                                value: f32::from_bits(simple.2 as u32),
                            });
                        }
                    }
                }
                _ => {}
            }
        }
    }
    Ok(points)
}

/// The event files in `dir`, sorted by name (their creation order).
pub fn event_files(dir: &Path) -> Result<Vec<PathBuf>, TensorBoardError> {
    let mut files: Vec<PathBuf> = fs::read_dir(dir)
        .map_err(io(dir))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.contains("tfevents")))
        .collect();
    files.sort();
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32c_and_its_mask_match_known_values() {
        // The CRC32C check value; the masked values are what tensorboard's own
        // `masked_crc32c` gives for b"123456789" and for the 8-byte length of an empty record.
        assert_eq!(crc32c::crc32c(b"123456789"), 0xe306_9283);
        assert_eq!(masked_crc32c(b"123456789"), 0xc78a_b0e5);
        assert_eq!(masked_crc32c(&0u64.to_le_bytes()), 0x0798_0329);
    }

    #[test]
    fn varints_follow_protobuf() {
        let enc = |v| {
            let mut out = Vec::new();
            put_varint(v, &mut out);
            out
        };
        assert_eq!(enc(1), [1]);
        assert_eq!(enc(300), [0xac, 0x02]);
        assert_eq!(enc(u64::MAX).len(), 10);
    }

    #[test]
    fn the_first_event_is_the_version_record() {
        // wall_time 0.0, step 0, file_version: hand-checked bytes.
        let e = encode_event(0.0, 0, What::FileVersion);
        let mut want = vec![0x09, 0, 0, 0, 0, 0, 0, 0, 0, 0x10, 0x00, 0x1a, 13];
        want.extend_from_slice(b"brain.Event:2");
        assert_eq!(e, want);
    }

    #[test]
    fn scalars_round_trip_and_a_damaged_byte_is_caught() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = EventWriter::create(dir.path(), 0).unwrap();
        for step in 0..3u64 {
            w.scalars(step, &[("train/loss", 1.5 + step as f64), ("train/lr", 0.1)]).unwrap();
        }
        let path = w.path().to_path_buf();
        drop(w);
        assert_eq!(event_files(dir.path()).unwrap(), std::slice::from_ref(&path));
        let points = read_scalars(&path).unwrap();
        assert_eq!(points.len(), 6);
        assert_eq!(
            (points[4].step, points[4].tag.as_str(), points[4].value),
            (2, "train/loss", 3.5)
        );
        assert!(points.iter().all(|p| p.wall_time > 1.6e9));

        // A second writer in the same second gets its own file.
        let again = EventWriter::create(dir.path(), 2).unwrap();
        assert_ne!(again.path(), path);

        let mut bytes = fs::read(&path).unwrap();
        let n = bytes.len();
        bytes[n - 6] ^= 1;
        fs::write(&path, &bytes).unwrap();
        let err = read_scalars(&path).unwrap_err().to_string();
        assert!(err.contains("payload CRC mismatch"), "{err}");
    }
}
