//! A reader of the Thrift compact protocol that trusts no length: the structures Parquet
//! stores (the footer's `FileMetaData`, each page's `PageHeader`) parsed into a small tree,
//! refusing any list, set, map or string whose declared length exceeds the bytes left.
//!
//! The parquet crate (57) reserves memory for a Thrift list's declared length before reading
//! its elements, so a footer that declares 2^32 row groups makes it allocate gigabytes
//! (FUZZING.md). Every element of a list takes at least one byte in this protocol (a struct
//! its stop byte, a boolean its byte, an integer one varint byte), every map entry two and
//! every string byte one, so any length above the bytes left is a lie. Parsing through here
//! first ([`crate::parquet_guard`]) bounds everything the tree holds by the input's size.
//!
//! Only what the guard needs: field values as [`Node`]s, ids as read, no schema. Types and
//! encodings follow the Thrift compact protocol specification
//! (`thrift/doc/specs/thrift-compact-protocol.md`).

/// One Thrift value.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Node {
    Bool(bool),
    /// Any integer: byte, i16, i32 or i64.
    Int(i64),
    Double(f64),
    /// A string or binary: its bytes' range in the input.
    Binary(std::ops::Range<usize>),
    /// A list or set.
    List(Vec<Node>),
    Map(Vec<(Node, Node)>),
    /// Fields by id, in the order read.
    Struct(Vec<(i16, Node)>),
}

impl Node {
    /// Field `id` of a struct.
    pub(crate) fn field(&self, id: i16) -> Option<&Node> {
        match self {
            Node::Struct(fields) => fields.iter().find(|(i, _)| *i == id).map(|(_, n)| n),
            _ => None,
        }
    }

    /// Field `id` of a struct, if it is an integer.
    pub(crate) fn int(&self, id: i16) -> Option<i64> {
        match self.field(id) {
            Some(Node::Int(v)) => Some(*v),
            _ => None,
        }
    }

    /// Field `id` of a struct as a list (empty if absent or not a list).
    pub(crate) fn list(&self, id: i16) -> &[Node] {
        match self.field(id) {
            Some(Node::List(items)) => items,
            _ => &[],
        }
    }
}

/// Nesting deeper than this is refused (Parquet's structures nest about 6 deep).
const MAX_DEPTH: u32 = 64;

/// Reads one struct from the start of `bytes`; returns it and the bytes it took. Any
/// error refuses the input.
#[cfg(test)]
pub(crate) fn read_struct(bytes: &[u8]) -> Result<(Node, usize), String> {
    let mut r = Reader { bytes, pos: 0, lenient: false, stopped: false };
    let node = r.value(STRUCT, 0).map_err(|e| e.replace(LIE, ""))?;
    Ok((node, r.pos))
}

/// Like [`read_struct`], but only a lie (a length beyond the bytes left, nesting too deep)
/// is an error: at bytes it cannot read (the input ends, an unknown type) it stops and
/// returns what it read so far. Parsers differ on such bytes (parquet reads some fields by
/// their id, not their declared type); what parquet would allocate by is read before them.
pub(crate) fn read_struct_lenient(bytes: &[u8]) -> Result<(Node, usize), String> {
    let mut r = Reader { bytes, pos: 0, lenient: true, stopped: false };
    let node = r.value(STRUCT, 0).map_err(|e| e.replace(LIE, ""))?;
    Ok((node, r.pos))
}

// Compact protocol type codes.
const TRUE: u8 = 1;
const FALSE: u8 = 2;
const BYTE: u8 = 3;
const I16: u8 = 4;
const I32: u8 = 5;
const I64: u8 = 6;
const DOUBLE: u8 = 7;
const BINARY: u8 = 8;
const LIST: u8 = 9;
const SET: u8 = 10;
const MAP: u8 = 11;
const STRUCT: u8 = 12;

struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
    /// Stop at unreadable bytes instead of failing ([`read_struct_lenient`]).
    lenient: bool,
    /// A lenient read stopped: every enclosing list, map and struct ends here.
    stopped: bool,
}

/// Errors that are lies about lengths start with this (the rest are unreadable bytes).
const LIE: &str = "lie: ";

impl Reader<'_> {
    fn left(&self) -> usize {
        self.bytes.len() - self.pos
    }

    fn byte(&mut self) -> Result<u8, String> {
        let b = *self.bytes.get(self.pos).ok_or_else(|| format!("ends at byte {}", self.pos))?;
        self.pos += 1;
        Ok(b)
    }

    fn varint(&mut self) -> Result<u64, String> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.byte()?;
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(format!("varint longer than 10 bytes at byte {}", self.pos))
    }

    fn zigzag(&mut self) -> Result<i64, String> {
        let v = self.varint()?;
        Ok((v >> 1) as i64 ^ -((v & 1) as i64))
    }

    /// A declared count of things taking at least `min_bytes` each.
    fn count(&mut self, n: u64, min_bytes: usize, what: &str) -> Result<usize, String> {
        let at = self.pos;
        match usize::try_from(n) {
            Ok(n) if n.saturating_mul(min_bytes) <= self.left() => Ok(n),
            _ => Err(format!(
                "{LIE}a {what} at byte {at} declares {n} entries, only {} bytes left",
                self.left()
            )),
        }
    }

    fn value(&mut self, ty: u8, depth: u32) -> Result<Node, String> {
        if depth > MAX_DEPTH {
            return Err(format!("{LIE}nested deeper than {MAX_DEPTH} at byte {}", self.pos));
        }
        Ok(match ty {
            // A boolean inside a list or map is a byte of its own (1 true, 2 or 0 false).
            TRUE | FALSE => Node::Bool(self.byte()? == TRUE),
            BYTE => Node::Int(i64::from(self.byte()? as i8)),
            I16 | I32 | I64 => Node::Int(self.zigzag()?),
            DOUBLE => {
                let end = self.pos + 8;
                let b = self.bytes.get(self.pos..end).ok_or("a double past the end")?;
                self.pos = end;
                Node::Double(f64::from_le_bytes(b.try_into().expect("8 bytes")))
            }
            BINARY => {
                let n = self.varint()?;
                let n = self.count(n, 1, "string")?;
                self.pos += n;
                Node::Binary(self.pos - n..self.pos)
            }
            LIST | SET => {
                let head = self.byte()?;
                let short = u64::from(head >> 4);
                let n = if short == 15 { self.varint()? } else { short };
                let n = self.count(n, 1, "list")?;
                let elem = head & 0x0f;
                let mut items = Vec::with_capacity(n);
                for _ in 0..n {
                    items.push(self.value(elem, depth + 1)?);
                    if self.stopped {
                        break;
                    }
                }
                Node::List(items)
            }
            MAP => {
                let n = self.varint()?;
                let n = self.count(n, 2, "map")?;
                let kinds = if n > 0 { self.byte()? } else { 0 };
                let mut entries = Vec::with_capacity(n);
                for _ in 0..n {
                    let k = self.value(kinds >> 4, depth + 1)?;
                    entries.push((k, self.value(kinds & 0x0f, depth + 1)?));
                    if self.stopped {
                        break;
                    }
                }
                Node::Map(entries)
            }
            STRUCT => self.fields(depth)?,
            other => return Err(format!("unknown Thrift type {other} at byte {}", self.pos)),
        })
    }

    fn fields(&mut self, depth: u32) -> Result<Node, String> {
        let mut fields = Vec::new();
        match self.fields_into(&mut fields, depth) {
            Err(e) if self.lenient && !e.starts_with(LIE) => self.stopped = true,
            Err(e) => return Err(e),
            Ok(()) => {}
        }
        Ok(Node::Struct(fields))
    }

    fn fields_into(&mut self, fields: &mut Vec<(i16, Node)>, depth: u32) -> Result<(), String> {
        let mut last = 0i16;
        loop {
            if self.stopped {
                return Ok(());
            }
            let head = self.byte()?;
            if head == 0 {
                return Ok(());
            }
            let ty = head & 0x0f;
            let id = match head >> 4 {
                0 => i16::try_from(self.zigzag()?).map_err(|_| "a field id out of range")?,
                delta => last.checked_add(i16::from(delta)).ok_or("a field id out of range")?,
            };
            last = id;
            // A boolean field carries its value in its type.
            let node = match ty {
                TRUE | FALSE => Node::Bool(ty == TRUE),
                _ => self.value(ty, depth + 1)?,
            };
            fields.push((id, node));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_struct_of_every_type_reads_back() {
        // Written by hand from the compact protocol spec.
        let bytes = [
            0x15, 0x54, // field 1, i32: zigzag(42) = 84
            0x11, // field 2, bool true
            0x16, 0x03, // field 3, i64: -2
            0x18, 0x02, b'h', b'i', // field 4, binary "hi"
            0x19, 0x25, 0x02, 0x04, // field 5, list<i32> of 2: 1, 2
            0x1c, 0x13, 0x0e, 0x00, // field 6, struct { 1: byte 14 }
            0x0b, 0x14, 0x01,
            0x35, // field 10 (long form, id zigzag 20), map of 1: byte -> i32
            0x01, 0x0a, // map entry: 1 -> 5 (zigzag 10)
            0x00, 0xff, // stop, then a byte that is not part of it
        ];
        let (node, used) = read_struct(&bytes).unwrap();
        assert_eq!(used, bytes.len() - 1);
        assert_eq!(node.int(1), Some(42));
        assert_eq!(node.field(2), Some(&Node::Bool(true)));
        assert_eq!(node.int(3), Some(-2));
        assert_eq!(node.field(4), Some(&Node::Binary(7..9)));
        assert_eq!(node.list(5), [Node::Int(1), Node::Int(2)]);
        assert_eq!(node.field(6).and_then(|s| s.int(1)), Some(14));
        assert_eq!(node.field(10), Some(&Node::Map(vec![(Node::Int(1), Node::Int(5))])));
    }

    #[test]
    fn lengths_beyond_the_bytes_left_are_refused_before_any_element_is_read() {
        // A list of i32 declaring 2^32 - 1 elements (long form), then 3 bytes.
        let list = [0x19, 0xf5, 0xff, 0xff, 0xff, 0xff, 0x0f, 0x02, 0x02, 0x02];
        let err = read_struct(&list).unwrap_err();
        assert!(err.contains("declares 4294967295 entries, only 3 bytes left"), "{err}");
        // Exactly as many elements as bytes is fine.
        let fits = [0x19, 0x35, 0x02, 0x04, 0x06, 0x00];
        assert_eq!(read_struct(&fits).unwrap().0.list(1).len(), 3);
        // A string one byte longer than what follows.
        let err = read_struct(&[0x18, 0x04, b'a', b'b', b'c']).unwrap_err();
        assert!(err.contains("string at byte 2 declares 4 entries, only 3 bytes left"), "{err}");
        // A map needs two bytes an entry.
        let err = read_struct(&[0x1b, 0x04, 0x55, 0x00, 0x00, 0x00, 0x00, 0x00]).unwrap_err();
        assert!(err.contains("map"), "{err}");
    }

    #[test]
    fn truncated_unknown_and_too_deep_inputs_are_errors() {
        for bad in [&[0x15][..], &[0x15, 0x80], &[0x1d, 0x00], &[0x15, 0x02]] {
            assert!(read_struct(bad).is_err(), "{bad:?}");
        }
        let mut nested = vec![0x1c; 100];
        nested.extend([0x00; 101]);
        assert!(read_struct(&nested).unwrap_err().contains("nested deeper"));
        // A varint of 11 bytes.
        assert!(read_struct(&[
            0x16, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01
        ])
        .unwrap_err()
        .contains("varint"));
    }
}
