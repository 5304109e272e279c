//! Editing a copy of a BTF blob for negative tests: move one struct member to a wrong offset
//! while the file stays structurally valid. aya loads such a BTF without complaint, and the
//! programs then read the wrong field; the sidecar's canary must catch it.
//!
//! Only what that needs is parsed: the header, the type section's records (to walk them and
//! index type ids) and the string section (to match names). Little-endian BTF only.

use std::fmt;

const BTF_MAGIC: u16 = 0xEB9F;
const KIND_STRUCT: u32 = 4;
const KIND_UNION: u32 = 5;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EditError(pub String);

impl fmt::Display for EditError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for EditError {}

fn err<T>(msg: impl Into<String>) -> Result<T, EditError> {
    Err(EditError(msg.into()))
}

struct Btf<'a> {
    bytes: &'a [u8],
    strings: std::ops::Range<usize>,
    /// Byte offset of each type record; index = type id - 1.
    type_offsets: Vec<usize>,
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// Bytes that follow the 12-byte common record for each kind (linux/btf.h).
fn trailing_len(kind: u32, vlen: usize) -> Result<usize, EditError> {
    Ok(match kind {
        2 | 7 | 8 | 9 | 10 | 11 | 12 | 16 | 18 => 0, // PTR FWD TYPEDEF VOLATILE CONST RESTRICT FUNC FLOAT TYPE_TAG
        1 | 14 | 17 => 4,                            // INT VAR DECL_TAG
        3 => 12,                                     // ARRAY
        4 | 5 => 12 * vlen,                          // STRUCT UNION: members
        6 => 8 * vlen,                               // ENUM
        13 => 8 * vlen,                              // FUNC_PROTO: params
        15 => 12 * vlen,                             // DATASEC
        19 => 12 * vlen,                             // ENUM64
        other => return err(format!("unknown BTF kind {other}")),
    })
}

impl<'a> Btf<'a> {
    fn parse(bytes: &'a [u8]) -> Result<Self, EditError> {
        if bytes.len() < 24 || u16::from_le_bytes([bytes[0], bytes[1]]) != BTF_MAGIC {
            return err("not a little-endian BTF blob");
        }
        let hdr_len = u32_at(bytes, 4) as usize;
        let (type_off, type_len) = (u32_at(bytes, 8) as usize, u32_at(bytes, 12) as usize);
        let (str_off, str_len) = (u32_at(bytes, 16) as usize, u32_at(bytes, 20) as usize);
        let types_start = hdr_len + type_off;
        let types_end = types_start + type_len;
        let strings = hdr_len + str_off..hdr_len + str_off + str_len;
        if types_end > bytes.len() || strings.end > bytes.len() {
            return err("BTF sections run past the end of the blob");
        }
        let mut type_offsets = Vec::new();
        let mut at = types_start;
        while at < types_end {
            let info = u32_at(bytes, at + 4);
            let (kind, vlen) = ((info >> 24) & 0x1f, (info & 0xffff) as usize);
            type_offsets.push(at);
            at += 12 + trailing_len(kind, vlen)?;
        }
        Ok(Self {
            bytes,
            strings,
            type_offsets,
        })
    }

    fn name(&self, name_off: u32) -> &'a [u8] {
        let start = self.strings.start + name_off as usize;
        let rest = &self.bytes[start..self.strings.end];
        &rest[..rest.iter().position(|&c| c == 0).unwrap_or(rest.len())]
    }

    fn kind_vlen(&self, at: usize) -> (u32, usize) {
        let info = u32_at(self.bytes, at + 4);
        ((info >> 24) & 0x1f, (info & 0xffff) as usize)
    }

    /// Whether the struct/union record at `at` has `member`, directly or in anonymous members.
    fn has_member(&self, at: usize, member: &[u8], depth: usize) -> bool {
        let (kind, vlen) = self.kind_vlen(at);
        if depth > 8 || !(kind == KIND_STRUCT || kind == KIND_UNION) {
            return false;
        }
        (0..vlen).any(|i| {
            let m = at + 12 + 12 * i;
            let name_off = u32_at(self.bytes, m);
            if name_off != 0 {
                return self.name(name_off) == member;
            }
            let type_id = u32_at(self.bytes, m + 4) as usize;
            type_id > 0
                && type_id <= self.type_offsets.len()
                && self.has_member(self.type_offsets[type_id - 1], member, depth + 1)
        })
    }
}

/// Adds `delta_bits` to the offset of `member` in every `struct <struct_name>` of `btf`. When
/// the member sits in an anonymous union/struct, that anonymous member is moved instead.
/// Returns the old bit offsets.
pub fn shift_member(
    btf: &mut [u8],
    struct_name: &str,
    member: &str,
    delta_bits: i64,
) -> Result<Vec<u32>, EditError> {
    let patches: Vec<(usize, u32, bool)> = {
        let parsed = Btf::parse(btf)?;
        let mut patches = Vec::new();
        for &at in &parsed.type_offsets {
            let (kind, vlen) = parsed.kind_vlen(at);
            if kind != KIND_STRUCT || parsed.name(u32_at(btf, at)) != struct_name.as_bytes() {
                continue;
            }
            let kflag = u32_at(btf, at + 4) >> 31 == 1;
            for i in 0..vlen {
                let m = at + 12 + 12 * i;
                let name_off = u32_at(btf, m);
                let hit = if name_off != 0 {
                    parsed.name(name_off) == member.as_bytes()
                } else {
                    let type_id = u32_at(btf, m + 4) as usize;
                    type_id > 0
                        && type_id <= parsed.type_offsets.len()
                        && parsed.has_member(parsed.type_offsets[type_id - 1], member.as_bytes(), 0)
                };
                if hit {
                    patches.push((m + 8, u32_at(btf, m + 8), kflag));
                    break;
                }
            }
        }
        patches
    };
    if patches.is_empty() {
        return err(format!(
            "no struct {struct_name} with member {member} in the BTF"
        ));
    }
    let mut old = Vec::new();
    for (at, raw, kflag) in patches {
        // With kflag the low 24 bits are the bit offset and the top 8 the bitfield size.
        let (keep, bits) = if kflag {
            (raw & 0xff00_0000, raw & 0x00ff_ffff)
        } else {
            (0, raw)
        };
        let moved = i64::from(bits) + delta_bits;
        let limit = if kflag { 0x00ff_ffff } else { u32::MAX as i64 };
        if moved < 0 || moved > limit {
            return err(format!("offset {bits} + {delta_bits} is out of range"));
        }
        btf[at..at + 4].copy_from_slice(&(keep | moved as u32).to_le_bytes());
        old.push(bits);
    }
    Ok(old)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn moves_dentry_d_name_in_the_system_btf() {
        let original = crate::btf::system_btf();
        let mut copy = original.to_vec();
        let old = shift_member(&mut copy, "dentry", "d_name", 64).unwrap();
        assert_eq!(old.len(), 1, "one struct dentry");
        assert_ne!(copy, *original);
        // Still structurally valid: same length, header untouched, and the member moved back
        // restores the original bytes exactly.
        assert_eq!(
            diffkeeper_btf::validate::check_bytes(&copy).unwrap(),
            diffkeeper_btf::validate::check_bytes(&original).unwrap()
        );
        shift_member(&mut copy, "dentry", "d_name", -64).unwrap();
        assert_eq!(copy, *original);
        assert!(shift_member(&mut copy, "dentry", "no_such_member", 8).is_err());
    }
}
