//! The journal's pending output: lines are built in place, one after another, and written out
//! in large blocks (no second copy through a `BufWriter`).
//!
//! Pieces are copied with [`copy_short`]: through musl's `memcpy`, the pieces of a line (numbers,
//! the backend, the op, a comm, most names) were a quarter of the journal's CPU at full rate.

use crate::short_copy::copy_short;

pub(super) struct LineBuf {
    /// Zeroed once, grown as needed; those past `len` are not part of it.
    bytes: Vec<u8>,
    len: usize,
}

impl LineBuf {
    pub(super) fn with_capacity(capacity: usize) -> Self {
        Self {
            bytes: vec![0; capacity],
            len: 0,
        }
    }

    pub(super) fn as_slice(&self) -> &[u8] {
        &self.bytes[..self.len]
    }

    pub(super) fn len(&self) -> usize {
        self.len
    }

    pub(super) fn clear(&mut self) {
        self.len = 0;
    }

    /// Makes room for `n` more bytes.
    #[inline]
    fn reserve(&mut self, n: usize) {
        let need = self.len + n;
        if need > self.bytes.len() {
            self.bytes.resize(need.max(self.bytes.len() * 2), 0);
        }
    }

    #[inline]
    pub(super) fn push_byte(&mut self, byte: u8) {
        self.reserve(1);
        self.bytes[self.len] = byte;
        self.len += 1;
    }

    /// Appends `piece` ([`copy_short`]); inlined, so that a constant piece's copy is fixed at
    /// compile time (a dozen calls per line).
    #[inline(always)]
    pub(super) fn push(&mut self, piece: &[u8]) {
        self.reserve(piece.len());
        copy_short(&mut self.bytes[self.len..self.len + piece.len()], piece);
        self.len += piece.len();
    }

    /// Appends `value` in decimal.
    #[inline]
    pub(super) fn push_decimal(&mut self, value: u64) {
        self.push(itoa::Buffer::new().format(value).as_bytes());
    }

    /// Appends `value` in decimal, zero-padded to 9 digits (a timestamp's nanoseconds).
    #[inline]
    pub(super) fn push_nanos(&mut self, nanos: u32) {
        let mut digits = itoa::Buffer::new();
        let digits = digits.format(nanos % 1_000_000_000).as_bytes();
        self.push(&b"000000000"[digits.len()..]);
        self.push(digits);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pieces_of_every_length_land_whole_and_in_order() {
        let source: Vec<u8> = (0..=255u8).cycle().take(300).collect();
        let mut buf = LineBuf::with_capacity(4);
        let mut expected = Vec::new();
        for n in 0..=70 {
            let piece = &source[n..2 * n];
            buf.push(piece);
            expected.extend_from_slice(piece);
            buf.push_byte(b'|');
            expected.push(b'|');
        }
        assert_eq!(buf.as_slice(), expected.as_slice());
        buf.clear();
        assert!(buf.as_slice().is_empty());
    }

    #[test]
    fn numbers_in_decimal_and_nanoseconds_padded() {
        let mut buf = LineBuf::with_capacity(0);
        for value in [0, 7, 10, 99, 1_000_000, u64::MAX] {
            buf.push_decimal(value);
            buf.push_byte(b' ');
        }
        for nanos in [42, 0, 999_999_999, 100_000_000] {
            buf.push_nanos(nanos);
            buf.push_byte(b' ');
        }
        assert_eq!(
            std::str::from_utf8(buf.as_slice()).unwrap(),
            "0 7 10 99 1000000 18446744073709551615 000000042 000000000 999999999 100000000 "
        );
    }
}
