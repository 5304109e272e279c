//! Copying the short byte strings of the hot path (a root, a relative path, a line's numbers
//! and names) without calling the C library: `copy_from_slice` of a length the compiler cannot
//! see calls `memcpy`, and musl's (byte loops around `rep movsq`) cost ~35 ns for a few bytes,
//! more than the rest of the work on them. Up to 128 bytes take two fixed-size moves that
//! overlap in the middle, which compile to plain loads and stores.

/// Copies `src` into `dst` (the same length).
#[inline(always)]
pub fn copy_short(dst: &mut [u8], src: &[u8]) {
    let n = src.len();
    assert_eq!(dst.len(), n, "copy_short: lengths differ");
    match n {
        0 => {}
        1..=3 => {
            dst[0] = src[0];
            dst[n / 2] = src[n / 2];
            dst[n - 1] = src[n - 1];
        }
        4..=7 => {
            dst[..4].copy_from_slice(&src[..4]);
            dst[n - 4..].copy_from_slice(&src[n - 4..]);
        }
        8..=16 => {
            dst[..8].copy_from_slice(&src[..8]);
            dst[n - 8..].copy_from_slice(&src[n - 8..]);
        }
        17..=32 => {
            dst[..16].copy_from_slice(&src[..16]);
            dst[n - 16..].copy_from_slice(&src[n - 16..]);
        }
        33..=64 => {
            dst[..32].copy_from_slice(&src[..32]);
            dst[n - 32..].copy_from_slice(&src[n - 32..]);
        }
        65..=128 => {
            dst[..64].copy_from_slice(&src[..64]);
            dst[n - 64..].copy_from_slice(&src[n - 64..]);
        }
        _ => dst.copy_from_slice(src),
    }
}

/// `parts` one after another in `out`, in place of what it held (its allocation is reused).
pub fn join_into(out: &mut Vec<u8>, parts: &[&[u8]]) {
    out.clear();
    out.resize(parts.iter().map(|p| p.len()).sum(), 0);
    let mut at = 0;
    for part in parts {
        copy_short(&mut out[at..at + part.len()], part);
        at += part.len();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_length_is_copied_whole() {
        let src: Vec<u8> = (1..=200).collect();
        for n in 0..=200 {
            let mut dst = vec![0; n];
            copy_short(&mut dst, &src[..n]);
            assert_eq!(dst, &src[..n], "{n} bytes");
        }
        let mut out = b"old contents, longer".to_vec();
        join_into(&mut out, &[b"/state", b"/", b"a/b"]);
        assert_eq!(out, b"/state/a/b");
        join_into(&mut out, &[]);
        assert_eq!(out, b"");
    }
}
