//! Static checks that an eBPF object can load on Linux 4.18, read from the ELF alone (no
//! kernel, no VM): the compat object's promise, kept honest by `cargo test`.
//!
//! * no backward jump (4.18's verifier rejects every loop; the check is stricter: a jump to
//!   an earlier instruction is refused even when it is not part of a loop);
//! * only helpers that exist in 4.18 ([`HELPERS_4_18`]) or that the loader replaces with one
//!   on a kernel without them ([`LOADER_DOWNGRADES`]), and no kfunc calls;
//! * no ring buffer (5.8) or other map type newer than 4.18, read from the `.maps` BTF;
//! * no global data (`.bss`, `.data*`, `.rodata*`: 5.2);
//! * no BTF-typed program (fentry, fexit, tp_btf, lsm, iter, …: 5.5+ and the kernel's BTF);
//! * at most [`MAX_INSNS_4_18`] instructions per program, subprograms included.
//!
//! The ELF and BTF readers here are minimal (little-endian ELF64 relocatable objects as
//! clang writes them) and fail with an error on anything they do not understand.

use std::collections::BTreeMap;
use std::fmt;

/// The largest program (instructions, not verifier steps) kernels before 5.2 accept.
pub const MAX_INSNS_4_18: usize = 4096;

/// Helpers in Linux 4.18 that the compat object may call, by id (`enum bpf_func_id`).
pub const HELPERS_4_18: [(u32, &str); 11] = [
    (1, "map_lookup_elem"),
    (2, "map_update_elem"),
    (3, "map_delete_elem"),
    (4, "probe_read"),
    (5, "ktime_get_ns"),
    (12, "tail_call"),
    (14, "get_current_pid_tgid"),
    (16, "get_current_comm"),
    (25, "perf_event_output"),
    (35, "get_current_task"),
    (45, "probe_read_str"),
];

/// Helpers newer than 4.18 that the loader (aya's `EbpfLoader`, before it loads anything)
/// rewrites into their 4.18 form when the kernel lacks them (the split probe reads, 5.5):
/// (id, its 4.18 replacement, name). Kernels that have them get the split ones, which skip the
/// user-or-kernel address test and exist on every architecture.
pub const LOADER_DOWNGRADES: [(u32, u32, &str); 4] = [
    (112, 4, "probe_read_user"),
    (113, 4, "probe_read_kernel"),
    (114, 45, "probe_read_user_str"),
    (115, 45, "probe_read_kernel_str"),
];

/// Whether a 4.18 kernel can run helper `id`, as it is or after the loader's rewrite.
fn runs_on_4_18(id: u32) -> bool {
    HELPERS_4_18.iter().any(|(h, _)| *h == id) || LOADER_DOWNGRADES.iter().any(|(h, _, _)| *h == id)
}

/// Map types that exist in 4.18 (`BPF_MAP_TYPE_HASH` = 1 … `BPF_MAP_TYPE_SOCKHASH` = 18).
pub const MAX_MAP_TYPE_4_18: u32 = 18;
/// `BPF_MAP_TYPE_RINGBUF` (5.8).
pub const MAP_TYPE_RINGBUF: u32 = 27;

/// Program section prefixes (up to the first `/` or `.`) whose programs are BTF-typed.
const BTF_TYPED_SECTIONS: [&str; 9] = [
    "fentry",
    "fexit",
    "fmod_ret",
    "tp_btf",
    "lsm",
    "iter",
    "struct_ops",
    "freplace",
    "syscall",
];

/// Something that keeps an object from loading on 4.18.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Violation {
    BackwardJump {
        section: String,
        insn: usize,
        off: i16,
    },
    Helper {
        section: String,
        insn: usize,
        id: u32,
    },
    Kfunc {
        section: String,
        insn: usize,
    },
    RingBuf {
        map: String,
    },
    NewMapType {
        map: String,
        map_type: u32,
    },
    GlobalData {
        section: String,
    },
    BtfTyped {
        section: String,
        program: String,
    },
    TooLarge {
        program: String,
        insns: usize,
    },
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::BackwardJump { section, insn, off } => {
                write!(f, "{section}: insn {insn} jumps backwards ({off:+})")
            }
            Self::Helper { section, insn, id } => {
                write!(f, "{section}: insn {insn} calls helper {id}, not in 4.18")
            }
            Self::Kfunc { section, insn } => write!(f, "{section}: insn {insn} calls a kfunc"),
            Self::RingBuf { map } => write!(f, "map {map} is a ring buffer (5.8)"),
            Self::NewMapType { map, map_type } => {
                write!(f, "map {map} has type {map_type}, newer than 4.18")
            }
            Self::GlobalData { section } => write!(f, "global data section {section} (5.2)"),
            Self::BtfTyped { section, program } => {
                write!(f, "program {program} in {section} is BTF-typed")
            }
            Self::TooLarge { program, insns } => write!(
                f,
                "program {program} has {insns} instructions (limit {MAX_INSNS_4_18})"
            ),
        }
    }
}

/// What the reader found, for reports and tests.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    /// Program name -> (section, instructions including the subprograms it may call).
    pub programs: BTreeMap<String, (String, usize)>,
    /// Map name -> BPF map type.
    pub maps: BTreeMap<String, u32>,
    /// Helper ids called anywhere.
    pub helpers: Vec<u32>,
}

/// The object is not an ELF/BTF this reader understands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError(pub String);

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "cannot read the eBPF object: {}", self.0)
    }
}

impl std::error::Error for ParseError {}

fn err<T>(msg: impl Into<String>) -> Result<T, ParseError> {
    Err(ParseError(msg.into()))
}

fn bytes_at(b: &[u8], at: usize, n: usize) -> Result<&[u8], ParseError> {
    b.get(at..at.saturating_add(n))
        .ok_or_else(|| ParseError(format!("{n} bytes at {at} are past the end ({})", b.len())))
}

fn u16_at(b: &[u8], at: usize) -> Result<u16, ParseError> {
    Ok(u16::from_le_bytes(
        bytes_at(b, at, 2)?
            .try_into()
            .expect("bytes_at gives exactly 2 bytes"),
    ))
}

fn u32_at(b: &[u8], at: usize) -> Result<u32, ParseError> {
    Ok(u32::from_le_bytes(
        bytes_at(b, at, 4)?
            .try_into()
            .expect("bytes_at gives exactly 4 bytes"),
    ))
}

fn u64_at(b: &[u8], at: usize) -> Result<u64, ParseError> {
    Ok(u64::from_le_bytes(
        bytes_at(b, at, 8)?
            .try_into()
            .expect("bytes_at gives exactly 8 bytes"),
    ))
}

fn cstr(b: &[u8], at: usize) -> Result<String, ParseError> {
    let rest = b
        .get(at..)
        .ok_or_else(|| ParseError(format!("string at {at}")))?;
    let end = rest.iter().position(|&c| c == 0).unwrap_or(rest.len());
    Ok(String::from_utf8_lossy(&rest[..end]).into_owned())
}

struct Section<'a> {
    name: String,
    kind: u32,
    flags: u64,
    data: &'a [u8],
}

const SHT_SYMTAB: u32 = 2;
const SHT_NOBITS: u32 = 8;
const SHF_EXECINSTR: u64 = 4;
const STT_FUNC: u8 = 2;

fn sections(elf: &[u8]) -> Result<Vec<Section<'_>>, ParseError> {
    if bytes_at(elf, 0, 4)? != b"\x7fELF" || elf[4] != 2 || elf[5] != 1 {
        return err("not a little-endian ELF64 file");
    }
    if u16_at(elf, 18)? != 247 {
        return err("e_machine is not EM_BPF (247)");
    }
    let shoff = u64_at(elf, 0x28)? as usize;
    let shentsize = usize::from(u16_at(elf, 0x3a)?);
    let shnum = usize::from(u16_at(elf, 0x3c)?);
    let shstrndx = usize::from(u16_at(elf, 0x3e)?);
    let header = |i: usize| -> Result<(u32, u32, u64, &[u8]), ParseError> {
        let h = shoff + i * shentsize;
        let kind = u32_at(elf, h + 4)?;
        let (off, size) = (u64_at(elf, h + 24)? as usize, u64_at(elf, h + 32)? as usize);
        let data = if kind == SHT_NOBITS {
            &[][..]
        } else {
            bytes_at(elf, off, size)?
        };
        Ok((u32_at(elf, h)?, kind, u64_at(elf, h + 8)?, data))
    };
    let names = header(shstrndx)?.3;
    (0..shnum)
        .map(|i| {
            let (name, kind, flags, data) = header(i)?;
            Ok(Section {
                name: cstr(names, name as usize)?,
                kind,
                flags,
                data,
            })
        })
        .collect()
}

/// (name, section index, value, size) of every function symbol.
fn functions(elf_sections: &[Section]) -> Result<Vec<(String, usize, usize, usize)>, ParseError> {
    let Some(symtab) = elf_sections.iter().position(|s| s.kind == SHT_SYMTAB) else {
        return err("no symbol table");
    };
    // sh_link of the symbol table names its string table; clang puts .strtab first.
    let strtab = elf_sections
        .iter()
        .find(|s| s.name == ".strtab")
        .ok_or_else(|| ParseError("no .strtab".into()))?
        .data;
    let data = elf_sections[symtab].data;
    let mut out = Vec::new();
    for sym in data.as_chunks::<24>().0 {
        if sym[4] & 0xf != STT_FUNC {
            continue;
        }
        out.push((
            cstr(strtab, u32_at(sym, 0)? as usize)?,
            usize::from(u16_at(sym, 6)?),
            u64_at(sym, 8)? as usize,
            u64_at(sym, 16)? as usize,
        ));
    }
    Ok(out)
}

/// Map name -> map type, from the `.maps` DATASEC of the object's BTF.
fn map_types(btf: &[u8]) -> Result<BTreeMap<String, u32>, ParseError> {
    if u16_at(btf, 0)? != 0xeb9f {
        return err("BTF magic is not 0xeb9f");
    }
    let hdr_len = u32_at(btf, 4)? as usize;
    let (type_off, type_len) = (u32_at(btf, 8)? as usize, u32_at(btf, 12)? as usize);
    let str_off = u32_at(btf, 16)? as usize;
    let strings = bytes_at(btf, hdr_len + str_off, u32_at(btf, 20)? as usize)?;
    let types = bytes_at(btf, hdr_len + type_off, type_len)?;

    // Every type as (kind, name, size_or_type, its trailing data); index = type id - 1.
    let mut all: Vec<(u32, String, u32, &[u8])> = Vec::new();
    let mut at = 0;
    while at < types.len() {
        let info = u32_at(types, at + 4)?;
        let (kind, vlen) = ((info >> 24) & 0x1f, (info & 0xffff) as usize);
        let extra = match kind {
            1 | 14 | 17 => 4,             // INT, VAR, DECL_TAG
            3 => 12,                      // ARRAY
            4 | 5 | 15 | 19 => 12 * vlen, // STRUCT, UNION, DATASEC, ENUM64
            6 | 13 => 8 * vlen,           // ENUM, FUNC_PROTO
            2 | 7..=12 | 16 | 18 => 0,
            other => return err(format!("unknown BTF kind {other}")),
        };
        all.push((
            kind,
            cstr(strings, u32_at(types, at)? as usize)?,
            u32_at(types, at + 8)?,
            bytes_at(types, at + 12, extra)?,
        ));
        at += 12 + extra;
    }
    let get = |id: u32| {
        all.get((id as usize).wrapping_sub(1))
            .ok_or_else(|| ParseError(format!("BTF type id {id} out of range")))
    };
    // Through typedefs and modifiers (TYPEDEF, VOLATILE, CONST, RESTRICT, TYPE_TAG).
    let resolve = |mut id: u32| loop {
        let t = get(id)?;
        if matches!(t.0, 8..=11 | 18) {
            id = t.2;
        } else {
            return Ok::<_, ParseError>(t);
        }
    };

    let mut maps = BTreeMap::new();
    for (_, name, _, data) in all.iter().filter(|t| t.0 == 15 && t.1 == ".maps") {
        let _ = name;
        for var in data.as_chunks::<12>().0 {
            let (vkind, vname, vtype, _) = get(u32_at(var, 0)?)?;
            if *vkind != 14 {
                return err(format!("{vname}: .maps holds a non-variable"));
            }
            let def = resolve(*vtype)?;
            if def.0 != 4 {
                return err(format!("map {vname} is not a struct"));
            }
            let mut map_type = None;
            for m in def.3.as_chunks::<12>().0 {
                if cstr(strings, u32_at(m, 0)? as usize)? != "type" {
                    continue;
                }
                // __uint(type, N) is `int (*type)[N]`.
                let ptr = resolve(u32_at(m, 4)?)?;
                let arr = resolve(ptr.2)?;
                if ptr.0 != 2 || arr.0 != 3 {
                    return err(format!("map {vname}: `type` is not __uint(type, N)"));
                }
                map_type = Some(u32_at(arr.3, 8)?);
            }
            let map_type =
                map_type.ok_or_else(|| ParseError(format!("map {vname} has no type")))?;
            maps.insert(vname.clone(), map_type);
        }
    }
    Ok(maps)
}

/// Reads the object and lists everything that would keep it from loading on Linux 4.18.
pub fn check_4_18(elf: &[u8]) -> Result<(Summary, Vec<Violation>), ParseError> {
    check_with_limit(elf, MAX_INSNS_4_18)
}

/// [`check_4_18`] with another program size limit.
pub fn check_with_limit(
    elf: &[u8],
    max_insns: usize,
) -> Result<(Summary, Vec<Violation>), ParseError> {
    let secs = sections(elf)?;
    let mut summary = Summary::default();
    let mut violations = Vec::new();

    for s in &secs {
        let global = [".bss", ".data", ".rodata"]
            .iter()
            .any(|p| s.name == *p || s.name.starts_with(&format!("{p}.")));
        if global {
            violations.push(Violation::GlobalData {
                section: s.name.clone(),
            });
        }
    }

    // Instructions of every executable section: jumps, helpers, subprogram calls.
    let mut calls_subprogs = BTreeMap::new();
    for s in secs.iter().filter(|s| s.flags & SHF_EXECINSTR != 0) {
        if s.data.len() % 8 != 0 {
            return err(format!("{}: size is not a multiple of 8", s.name));
        }
        let mut pseudo_calls = false;
        for (i, insn) in s.data.as_chunks::<8>().0.iter().enumerate() {
            let (code, src) = (insn[0], insn[1] >> 4);
            let (class, op) = (code & 7, code & 0xf0);
            if class != 5 && class != 6 {
                continue; // not BPF_JMP / BPF_JMP32
            }
            if op == 0x80 {
                // BPF_CALL: src 0 helper, 1 bpf-to-bpf call, 2 kfunc.
                match src {
                    0 => {
                        let id = u32_at(insn, 4)?;
                        summary.helpers.push(id);
                        if !runs_on_4_18(id) {
                            violations.push(Violation::Helper {
                                section: s.name.clone(),
                                insn: i,
                                id,
                            });
                        }
                    }
                    1 => pseudo_calls = true,
                    _ => violations.push(Violation::Kfunc {
                        section: s.name.clone(),
                        insn: i,
                    }),
                }
                continue;
            }
            if op == 0x90 {
                continue; // BPF_EXIT
            }
            let off = u16_at(insn, 2)? as i16;
            if off < 0 {
                violations.push(Violation::BackwardJump {
                    section: s.name.clone(),
                    insn: i,
                    off,
                });
            }
        }
        calls_subprogs.insert(s.name.clone(), pseudo_calls);
    }
    summary.helpers.sort_unstable();
    summary.helpers.dedup();

    // Programs: global functions outside .text. A program that calls subprograms gets the
    // whole .text added (an upper bound: loaders append only the ones it reaches).
    let text_insns = secs
        .iter()
        .find(|s| s.name == ".text")
        .map_or(0, |s| s.data.len() / 8);
    for (name, shndx, _value, size) in functions(&secs)? {
        let Some(sec) = secs.get(shndx) else { continue };
        if sec.name == ".text" || sec.flags & SHF_EXECINSTR == 0 {
            continue;
        }
        let mut insns = size / 8;
        if calls_subprogs.get(&sec.name) == Some(&true) {
            insns += text_insns;
        }
        let prefix = sec.name.split(['/', '.']).next().unwrap_or_default();
        if BTF_TYPED_SECTIONS.contains(&prefix) {
            violations.push(Violation::BtfTyped {
                section: sec.name.clone(),
                program: name.clone(),
            });
        }
        if insns > max_insns {
            violations.push(Violation::TooLarge {
                program: name.clone(),
                insns,
            });
        }
        summary.programs.insert(name, (sec.name.clone(), insns));
    }

    let btf = secs
        .iter()
        .find(|s| s.name == ".BTF")
        .ok_or_else(|| ParseError("no .BTF section (compile with -g)".into()))?;
    summary.maps = map_types(btf.data)?;
    for (map, &map_type) in &summary.maps {
        if map_type == MAP_TYPE_RINGBUF {
            violations.push(Violation::RingBuf { map: map.clone() });
        } else if map_type > MAX_MAP_TYPE_4_18 {
            violations.push(Violation::NewMapType {
                map: map.clone(),
                map_type,
            });
        }
    }
    Ok((summary, violations))
}

#[cfg(test)]
mod tests;
