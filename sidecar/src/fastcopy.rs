//! `memcpy` and `memmove` for the static x86_64 musl binary.
//!
//! musl's x86_64 `memcpy` aligns and finishes with byte-wise `movsb` loops around a `rep movsq`,
//! which is slow for the short, unaligned copies the sidecar makes per event (path and comm
//! strings, journal line fields, queue slots): a profile of the sidecar journaling a write flood
//! put 25 % of its CPU in musl's `memcpy`. These versions copy up to 64 bytes with overlapping
//! unaligned loads and stores (all loads before any store, so they serve `memmove` too) and
//! leave longer copies to `rep movsb`. They replace musl's only in the x86_64 musl build (both
//! symbols: musl's `memmove` would otherwise pull its `memcpy` back in); elsewhere the C
//! library's are used and these are only tested (x86_64 only: `rep movsb`). aarch64 musl's C
//! `memcpy` copies words and is left alone.

use std::arch::asm;
use std::ptr::{read_unaligned as load, write_unaligned as store};

/// Copies `n` bytes from `src` to `dest`; the ranges may overlap.
///
/// # Safety
/// `src` must be readable and `dest` writable for `n` bytes.
#[inline]
pub unsafe fn copy(dest: *mut u8, src: *const u8, n: usize) {
    if n <= 64 {
        copy_short(dest, src, n);
    } else if (dest as usize).wrapping_sub(src as usize) >= n {
        // dest is below src or past its end: a forward copy never reads what it wrote.
        asm!("rep movsb", inout("rcx") n => _, inout("rdi") dest => _, inout("rsi") src => _,
             options(nostack, preserves_flags));
    } else {
        // dest overlaps src from above: copy backwards.
        asm!("std", "rep movsb", "cld",
             inout("rcx") n => _, inout("rdi") dest.add(n - 1) => _,
             inout("rsi") src.add(n - 1) => _, options(nostack));
    }
}

/// `n <= 64`: both ends of the range with the widest loads that fit, loaded before stored.
#[inline(always)]
unsafe fn copy_short(dest: *mut u8, src: *const u8, n: usize) {
    // Only integer loads and stores: a copy of an array type could itself become a memcpy call.
    type W16 = u128;
    if n >= 32 {
        let (a, b) = (load(src as *const W16), load(src.add(16) as *const W16));
        let (y, z) = (
            load(src.add(n - 32) as *const W16),
            load(src.add(n - 16) as *const W16),
        );
        store(dest as *mut W16, a);
        store(dest.add(16) as *mut W16, b);
        store(dest.add(n - 32) as *mut W16, y);
        store(dest.add(n - 16) as *mut W16, z);
    } else if n >= 16 {
        let (a, b) = (load(src as *const W16), load(src.add(n - 16) as *const W16));
        store(dest as *mut W16, a);
        store(dest.add(n - 16) as *mut W16, b);
    } else if n >= 8 {
        let (a, b) = (load(src as *const u64), load(src.add(n - 8) as *const u64));
        store(dest as *mut u64, a);
        store(dest.add(n - 8) as *mut u64, b);
    } else if n >= 4 {
        let (a, b) = (load(src as *const u32), load(src.add(n - 4) as *const u32));
        store(dest as *mut u32, a);
        store(dest.add(n - 4) as *mut u32, b);
    } else if n > 0 {
        let (a, m, z) = (*src, *src.add(n / 2), *src.add(n - 1));
        *dest = a;
        *dest.add(n / 2) = m;
        *dest.add(n - 1) = z;
    }
}

#[cfg(all(target_arch = "x86_64", target_env = "musl"))]
mod exported {
    /// The C `memcpy`.
    ///
    /// # Safety
    /// As C's: `src` readable and `dest` writable for `n` bytes.
    #[no_mangle]
    pub unsafe extern "C" fn memcpy(dest: *mut u8, src: *const u8, n: usize) -> *mut u8 {
        super::copy(dest, src, n);
        dest
    }

    /// The C `memmove`.
    ///
    /// # Safety
    /// As C's: `src` readable and `dest` writable for `n` bytes.
    #[no_mangle]
    pub unsafe extern "C" fn memmove(dest: *mut u8, src: *const u8, n: usize) -> *mut u8 {
        super::copy(dest, src, n);
        dest
    }
}

#[cfg(test)]
mod tests {
    use super::copy;

    fn pattern(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 7 + 3) as u8).collect()
    }

    #[test]
    fn copies_every_length_at_every_alignment() {
        for n in 0..300 {
            for offset in 0..8 {
                let src = pattern(n + 16);
                let mut dest = vec![0xAAu8; n + 16];
                unsafe { copy(dest.as_mut_ptr().add(offset), src.as_ptr().add(3), n) };
                assert_eq!(
                    &dest[offset..offset + n],
                    &src[3..3 + n],
                    "n {n} offset {offset}"
                );
                assert!(
                    dest[..offset].iter().all(|&b| b == 0xAA),
                    "n {n}: wrote before"
                );
                assert!(
                    dest[offset + n..].iter().all(|&b| b == 0xAA),
                    "n {n}: wrote after"
                );
            }
        }
    }

    #[test]
    fn overlapping_copies_match_a_safe_copy_within() {
        for n in 0..300 {
            for shift in [1usize, 2, 7, 8, 15, 16, 31, 33, 64, 65, 100] {
                let base = pattern(n + shift);
                // Forward (dest below src) and backward (dest above src).
                let mut fwd = base.clone();
                unsafe { copy(fwd.as_mut_ptr(), fwd.as_ptr().add(shift), n) };
                let mut want = base.clone();
                want.copy_within(shift..shift + n, 0);
                assert_eq!(fwd, want, "forward n {n} shift {shift}");
                let mut back = base.clone();
                unsafe { copy(back.as_mut_ptr().add(shift), back.as_ptr(), n) };
                let mut want = base.clone();
                want.copy_within(0..n, shift);
                assert_eq!(back, want, "backward n {n} shift {shift}");
            }
        }
    }
}
