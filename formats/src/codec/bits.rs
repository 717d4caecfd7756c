//! Bit and byte streams (`FORMAT.md#323-residual-streams`): the encoder's bit writer and the
//! decoder's readers. The readers note faults instead of returning errors, so the hot loops
//! stay branch-light; the decoder checks them once per plane.

use super::context::{NM, NO, NZ, N_BIT_STREAMS};

/// Writes bits least-significant first.
#[derive(Default)]
pub(super) struct BitWriter {
    pub(super) out: Vec<u8>,
    acc: u64,
    n: u32,
}

impl BitWriter {
    #[inline(always)]
    pub(super) fn put(&mut self, bits: u32, k: u32) {
        self.acc |= u64::from(bits) << self.n;
        self.n += k;
        if self.n >= 32 {
            self.out.extend_from_slice(&(self.acc as u32).to_le_bytes());
            self.acc >>= 32;
            self.n -= 32;
        }
    }
    pub(super) fn finish(&mut self) {
        while self.n > 0 {
            self.out.push(self.acc as u8);
            self.acc >>= 8;
            self.n = self.n.saturating_sub(8);
        }
    }
    pub(super) fn clear(&mut self) {
        self.out.clear();
        self.acc = 0;
        self.n = 0;
    }
}

/// What went wrong inside the hot loops; checked once per plane so they stay branch-light.
#[derive(Default)]
pub(super) struct Fault {
    pub(super) overrun: Option<usize>,
    pub(super) magnitude: Option<u32>,
}

impl Fault {
    pub(super) fn any(&self) -> bool {
        self.overrun.is_some() || self.magnitude.is_some()
    }
}

/// Reads bits least-significant first from `data[pos..end]`.
#[derive(Clone, Copy, Default)]
pub(super) struct BitReader {
    pos: usize,
    end: usize,
    /// Loaded, unread bits in the low `n` bits (bits above may hold a preview of the next
    /// byte, which the next refill ORs in again unchanged).
    buf: u64,
    n: u32,
    id: usize,
}

impl BitReader {
    /// A reader of `data[pos..end]`, stream number `id` in fault reports.
    pub(super) fn new(pos: usize, end: usize, id: usize) -> Self {
        BitReader { pos, end, buf: 0, n: 0, id }
    }

    #[inline(always)]
    pub(super) fn read(&mut self, data: &[u8], k: u32, fault: &mut Fault) -> u32 {
        if self.n < k {
            self.refill(data);
            if self.n < k {
                return self.overrun(k, fault);
            }
        }
        let v = (self.buf & ((1u64 << k) - 1)) as u32;
        self.buf >>= k;
        self.n -= k;
        v
    }

    #[inline(always)]
    fn refill(&mut self, data: &[u8]) {
        if let Some(word) = data.get(self.pos..self.pos + 8).filter(|_| self.end - self.pos >= 8) {
            let word = u64::from_le_bytes(word.try_into().unwrap_or([0; 8]));
            self.buf |= word << self.n;
            let take = (63 - self.n) / 8;
            self.pos += take as usize;
            self.n += take * 8;
        } else {
            while self.n <= 56 && self.pos < self.end {
                self.buf |= u64::from(data.get(self.pos).copied().unwrap_or(0)) << self.n;
                self.pos += 1;
                self.n += 8;
            }
        }
    }

    #[cold]
    fn overrun(&mut self, k: u32, fault: &mut Fault) -> u32 {
        fault.overrun.get_or_insert(self.id);
        let v = (self.buf & ((1u64 << k) - 1)) as u32;
        self.buf = 0;
        self.n = 0;
        v
    }

    /// Everything read, and the padding bits of the last byte are zero.
    pub(super) fn finished(&self) -> bool {
        self.pos == self.end && self.n < 8 && self.buf == 0
    }
}

/// Reads bytes from `data[pos..end]`.
#[derive(Clone, Copy, Default)]
pub(super) struct ByteReader {
    pos: usize,
    end: usize,
    id: usize,
}

impl ByteReader {
    /// A reader of `data[pos..end]`, stream number `id` in fault reports.
    pub(super) fn new(pos: usize, end: usize, id: usize) -> Self {
        ByteReader { pos, end, id }
    }

    /// Everything read.
    pub(super) fn finished(&self) -> bool {
        self.pos == self.end
    }

    /// Reads a byte if `take`, without a branch on `take`: whether a residual has a magnitude
    /// byte is a coin flip the branch predictor would lose. `data` extends past every `end`.
    #[inline(always)]
    pub(super) fn read_if(&mut self, data: &[u8], take: bool, fault: &mut Fault) -> u8 {
        let b = data.get(self.pos).copied().unwrap_or(0);
        if take & (self.pos >= self.end) {
            fault.overrun.get_or_insert(self.id);
        }
        self.pos += usize::from(take & (self.pos < self.end));
        b
    }

    /// The next `n <= 8` bytes, zero-filled to 8.
    #[inline(always)]
    pub(super) fn read8(&mut self, data: &[u8], n: usize, fault: &mut Fault) -> [u8; 8] {
        let mut v = match data.get(self.pos..self.pos + 8) {
            Some(b) => u64::from_le_bytes(b.try_into().unwrap_or([0; 8])),
            None => 0,
        };
        if self.end - self.pos < n {
            fault.overrun.get_or_insert(self.id);
            v = 0;
        } else {
            self.pos += n;
        }
        if n < 8 {
            v &= (1u64 << (8 * n)) - 1;
        }
        v.to_le_bytes()
    }
}

/// The stream readers, grouped by kind. Array lengths are powers of two so that masked
/// context indices need no bounds check.
#[derive(Default)]
pub(super) struct Readers {
    pub(super) z: [BitReader; 16],
    pub(super) o: [BitReader; 8],
    pub(super) s: [BitReader; 16],
    pub(super) m: [ByteReader; 4],
    pub(super) l: [ByteReader; 8],
}

impl Readers {
    /// Points stream `k` of the table (`FORMAT.md#321-payload-layout`, stream table order) at `data[pos..end]`.
    pub(super) fn init(&mut self, k: usize, pos: usize, end: usize) {
        let bit = BitReader::new(pos, end, k);
        let byte = ByteReader::new(pos, end, k);
        match k {
            _ if k < NZ => self.z[k] = bit,
            _ if k < NZ + NO => self.o[k - NZ] = bit,
            _ if k < N_BIT_STREAMS => self.s[k - NZ - NO] = bit,
            _ if k < N_BIT_STREAMS + NM => self.m[k - N_BIT_STREAMS] = byte,
            _ => self.l[(k - N_BIT_STREAMS - NM) & 7] = byte,
        }
    }

    /// The first stream not read exactly to its end, if any.
    pub(super) fn unfinished(&self) -> Option<usize> {
        let bits = self.z.iter().chain(&self.o).chain(&self.s);
        let bytes = self.m.iter().chain(&self.l);
        bits.filter(|r| !r.finished())
            .map(|r| r.id)
            .chain(bytes.filter(|r| !r.finished()).map(|r| r.id))
            .min()
    }
}
