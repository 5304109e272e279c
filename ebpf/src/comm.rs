//! A task's command name as the kernel keeps it: at most 15 bytes, not always UTF-8. Kept
//! inline because every event carries one (as a `String` it cost an allocation and a free per
//! event on the sidecar's hot path).

use std::borrow::Cow;
use std::fmt;

use crate::event::DK_COMM_LEN;

#[derive(Clone, Copy, Default)]
pub struct Comm {
    bytes: [u8; DK_COMM_LEN],
    len: u8,
}

impl Comm {
    /// The kernel's `comm` field: the name ends at its first NUL.
    pub fn from_kernel(bytes: [u8; DK_COMM_LEN]) -> Self {
        let len = bytes.iter().position(|&b| b == 0).unwrap_or(DK_COMM_LEN);
        Self {
            bytes,
            len: len as u8,
        }
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }

    /// As text; bytes that are not UTF-8 become U+FFFD (no allocation when it is UTF-8).
    pub fn to_str(&self) -> Cow<'_, str> {
        match std::str::from_utf8(self.as_bytes()) {
            Ok(text) => Cow::Borrowed(text),
            Err(_) => String::from_utf8_lossy(self.as_bytes()),
        }
    }
}

/// A name given as text (tests, the sidecar's own events): cut to what the kernel keeps.
impl From<&str> for Comm {
    fn from(name: &str) -> Self {
        let mut bytes = [0; DK_COMM_LEN];
        let kept = &name.as_bytes()[..name.len().min(DK_COMM_LEN - 1)];
        bytes[..kept.len()].copy_from_slice(kept);
        Self::from_kernel(bytes)
    }
}

/// Two names are equal by their bytes up to the NUL (what follows it in the field is not part).
impl PartialEq for Comm {
    fn eq(&self, other: &Self) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}

impl Eq for Comm {}

impl fmt::Debug for Comm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.to_str(), f)
    }
}

impl fmt::Display for Comm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_name_ends_at_its_nul_or_fills_the_field() {
        let mut raw = [0u8; DK_COMM_LEN];
        raw[..3].copy_from_slice(b"app");
        raw[5] = b'x';
        assert_eq!(Comm::from_kernel(raw).as_bytes(), b"app");
        let full = Comm::from_kernel([b'a'; DK_COMM_LEN]);
        assert_eq!(full.as_bytes().len(), DK_COMM_LEN);
        assert_eq!(Comm::from("app"), Comm::from_kernel(raw));
        assert_eq!(
            Comm::from("a-very-long-command").as_bytes(),
            b"a-very-long-com"
        );
    }

    #[test]
    fn bytes_that_are_not_utf8_are_replaced_in_text_only() {
        let mut raw = [0u8; DK_COMM_LEN];
        raw[..3].copy_from_slice(b"a\xffb");
        let comm = Comm::from_kernel(raw);
        assert_eq!(comm.as_bytes(), b"a\xffb");
        assert_eq!(comm.to_str(), "a\u{fffd}b");
        assert_eq!(format!("{comm:?}"), "\"a\u{fffd}b\"");
    }
}
