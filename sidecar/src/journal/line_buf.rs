//! The journal's pending output: lines are built in place, one after another, and written out
//! in large blocks (no second copy through a `BufWriter`).
//!
//! Short pieces (numbers, the backend, the op, a comm, most names) are copied with fixed-size
//! moves that may write past the piece into scratch room kept at the end. The C library's
//! `memcpy` is called for every copy whose length the compiler cannot see, and musl's (byte
//! loops around `rep movsq`) costs more per call than such a piece: it was a quarter of the
//! journal's CPU at full rate.

/// Scratch bytes kept past the end: a short copy writes whole blocks of up to 16 bytes.
const SLACK: usize = 32;

pub(super) struct LineBuf {
    /// Always at least `len + SLACK` bytes; those past `len` are scratch.
    bytes: Vec<u8>,
    len: usize,
}

impl LineBuf {
    pub(super) fn with_capacity(capacity: usize) -> Self {
        Self {
            bytes: vec![0; capacity + SLACK],
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

    /// Makes room for `n` more bytes and the scratch after them.
    #[inline]
    fn reserve(&mut self, n: usize) {
        let need = self.len + n + SLACK;
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

    /// Appends `piece`. Up to 32 bytes take two fixed-size moves that overlap in the middle.
    #[inline]
    pub(super) fn push(&mut self, piece: &[u8]) {
        let n = piece.len();
        self.reserve(n);
        let dst = &mut self.bytes[self.len..self.len + n.max(SLACK)];
        match n {
            0 => {}
            1..=3 => {
                dst[0] = piece[0];
                dst[n / 2] = piece[n / 2];
                dst[n - 1] = piece[n - 1];
            }
            4..=7 => {
                dst[..4].copy_from_slice(&piece[..4]);
                dst[n - 4..n].copy_from_slice(&piece[n - 4..]);
            }
            8..=16 => {
                dst[..8].copy_from_slice(&piece[..8]);
                dst[n - 8..n].copy_from_slice(&piece[n - 8..]);
            }
            17..=32 => {
                dst[..16].copy_from_slice(&piece[..16]);
                dst[n - 16..n].copy_from_slice(&piece[n - 16..]);
            }
            _ => dst[..n].copy_from_slice(piece),
        }
        self.len += n;
    }

    /// Appends `value` in decimal.
    #[inline]
    pub(super) fn push_decimal(&mut self, value: u64) {
        let digits = value.checked_ilog10().map_or(1, |log| log as usize + 1);
        self.push_padded(value, digits);
    }

    /// Appends the last `width` decimal digits of `value`, zero-padded.
    #[inline]
    pub(super) fn push_padded(&mut self, value: u64, width: usize) {
        self.reserve(width);
        diffkeeper_cli::time::put_padded(&mut self.bytes[self.len..self.len + width], value);
        self.len += width;
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
    fn numbers_in_decimal_and_padded() {
        let mut buf = LineBuf::with_capacity(0);
        for value in [0, 7, 10, 99, 1_000_000, u64::MAX] {
            buf.push_decimal(value);
            buf.push_byte(b' ');
        }
        buf.push_padded(42, 9);
        assert_eq!(
            std::str::from_utf8(buf.as_slice()).unwrap(),
            "0 7 10 99 1000000 18446744073709551615 000000042"
        );
    }
}
