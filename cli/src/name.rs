//! How every diffkeeper output prints a file name. Linux names are bytes and need not be UTF-8;
//! JSON text must be. A name that is UTF-8 is printed as it is. One that is not is printed
//! lossily (each invalid sequence becomes U+FFFD, for people) *and* as standard base64 of its
//! exact bytes in a field of the same name with `_b64` appended (for programs), so two names
//! that differ only in an invalid byte never print the same.

use std::borrow::Cow;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;

/// The suffix of the field that carries a name's exact bytes: `path` → `path_b64`.
pub const EXACT_SUFFIX: &str = "_b64";

/// A name as printed: `text` always, `exact_b64` only when the bytes are not UTF-8.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Printed<'a> {
    pub text: Cow<'a, str>,
    pub exact_b64: Option<String>,
}

/// Prints `bytes`; a UTF-8 name costs no allocation.
pub fn printed(bytes: &[u8]) -> Printed<'_> {
    let text = String::from_utf8_lossy(bytes);
    let exact_b64 = match text {
        Cow::Borrowed(_) => None,
        Cow::Owned(_) => Some(STANDARD.encode(bytes)),
    };
    Printed { text, exact_b64 }
}

/// The `_b64` text of `bytes` (for a list whose entries must line up, such as a gap's roots).
pub fn encode_exact(bytes: &[u8]) -> String {
    STANDARD.encode(bytes)
}

/// The bytes a `_b64` field carries.
pub fn decode_exact(b64: &str) -> Result<Vec<u8>, base64::DecodeError> {
    STANDARD.decode(b64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utf8_names_print_as_they_are() {
        let p = printed("dir/été".as_bytes());
        assert_eq!((p.text.as_ref(), p.exact_b64), ("dir/été", None));
        assert!(matches!(printed(b"a").text, Cow::Borrowed(_)));
    }

    #[test]
    fn names_differing_in_an_invalid_byte_differ_in_their_exact_bytes() {
        let (ff, fe) = (printed(b"/s/bad\xff"), printed(b"/s/bad\xfe"));
        assert_eq!(ff.text, fe.text);
        assert_eq!(ff.text, "/s/bad\u{fffd}");
        let (ff, fe) = (ff.exact_b64.unwrap(), fe.exact_b64.unwrap());
        assert_eq!(ff, "L3MvYmFk/w==");
        assert_eq!(decode_exact(&ff).unwrap(), b"/s/bad\xff");
        assert_eq!(decode_exact(&fe).unwrap(), b"/s/bad\xfe");
    }
}
