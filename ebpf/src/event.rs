//! The event ABI of the eBPF object: the Rust mirror of `c/diffkeeper_event.h`.
//!
//! A ring buffer record (modern object) or perf sample (compat object) is a [`DkEvent`] header
//! followed by `path_len` bytes of path and then `from_len` bytes of `from`, both relative to
//! their watched root (a perf sample may carry up to 7 bytes of padding after them). With
//! [`DK_F_NAME`] (tracepoint mode), each end is a directory, a NUL, and a name relative to it
//! as its caller passed it ([`Event::name`]). The layouts here are
//! checked field by field against the C header by a test that compiles it with `offsetof()`.

use std::fmt;
use std::mem::{offset_of, size_of};

pub use crate::comm::Comm;
pub use crate::event_ref::EventRef;

pub const DK_COMM_LEN: usize = 16;
pub const DK_PATH_MAX: usize = 4096;
pub const DK_MAX_DEPTH: usize = 32;
/// dk_roots' max_entries, and the width of the kernel's learned-root bitmask (a `u64`).
pub const DK_MAX_ROOTS: usize = 64;
pub const DK_MAX_ROOTS_PER_DEV: usize = 8;

pub const DK_OP_WRITE: u16 = 1;
pub const DK_OP_CREATE: u16 = 2;
pub const DK_OP_DELETE: u16 = 3;
pub const DK_OP_RENAME: u16 = 4;
pub const DK_OP_MKDIR: u16 = 5;
pub const DK_OP_RMDIR: u16 = 6;
/// Mode or owner changed (chmod, chown and their fd/at forms).
pub const DK_OP_ATTRIB: u16 = 7;

pub const DK_F_PATH: u16 = 1;
pub const DK_F_FROM: u16 = 2;
pub const DK_F_TRUNCATED: u16 = 4;
pub const DK_F_NAME: u16 = 8;
/// Tracepoint mode's linkat of an unnamed (`O_TMPFILE`) file: `bytes` is its size, written
/// while it had no name.
pub const DK_F_CONTENT: u16 = 16;
/// A rename with `RENAME_EXCHANGE`: `path` and `from` swapped places.
pub const DK_F_EXCHANGE: u16 = 32;
/// With [`DK_F_NAME`]: a name read differently from the caller's memory at sys_exit than at
/// sys_enter (another thread changed it during the call): the kernel may have used either.
pub const DK_F_RACED: u16 = 64;
/// Root id of an end whose name is absolute ([`DK_F_NAME`]), from the sidecar's own root
/// (`0xffffffffu` in C; not in the layout test, which prints constants as `int`).
pub const DK_ROOT_ABS: u32 = u32::MAX;
/// Bytes of each [`DkAbsRoot::prefix`], and how many there are.
pub const DK_ABS_PREFIX: usize = 64;
pub const DK_ABS_PREFIXES: usize = 2;

/// `enum dk_stat`: the indices of the `dk_stats` counters.
pub const DK_STAT_TOO_DEEP: u32 = 0;
pub const DK_STAT_UNLINKED: u32 = 1;
pub const DK_STAT_MISSED_RETURN: u32 = 2;
pub const DK_STAT_COUNT: u32 = 3;

/// A `dk_stats` counter: changes the kernel side saw but did not report, because it could not
/// name them truly (or, for kprobe returns, could not see them complete).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Stat {
    /// A file more than `DK_MAX_DEPTH` links below anything the walk could decide.
    TooDeep,
    /// A change through a file with no name (`O_TMPFILE`, deleted while open).
    Unlinked,
    /// kprobe mode: a return whose kretprobe never ran (maxactive exhausted).
    MissedReturn,
}

impl Stat {
    pub const ALL: [Stat; DK_STAT_COUNT as usize] =
        [Self::TooDeep, Self::Unlinked, Self::MissedReturn];

    /// The index in `dk_stats`.
    pub fn index(self) -> u32 {
        match self {
            Self::TooDeep => DK_STAT_TOO_DEEP,
            Self::Unlinked => DK_STAT_UNLINKED,
            Self::MissedReturn => DK_STAT_MISSED_RETURN,
        }
    }

    /// The `reason` label in `/metrics`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::TooDeep => "too_deep",
            Self::Unlinked => "unlinked",
            Self::MissedReturn => "missed_return",
        }
    }
}

/// `struct dk_event`: the fixed header of every record.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DkEvent {
    pub bytes: u64,
    /// When the change was seen, in nanoseconds: `CLOCK_BOOTTIME` from the modern object,
    /// `CLOCK_MONOTONIC` from the compat one ([`crate::object::ObjectKind::clock`]).
    pub ts_ns: u64,
    pub pid: u32,
    pub tid: u32,
    pub root_id: u32,
    pub from_root_id: u32,
    pub op: u16,
    pub flags: u16,
    pub path_len: u16,
    pub from_len: u16,
    pub comm: [u8; DK_COMM_LEN],
}

/// `struct dk_root_key`: key of the `dk_roots` map.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DkRootKey {
    /// Kernel device encoding: `major << 20 | minor`.
    pub dev: u32,
    pub pad: u32,
    pub ino: u64,
}

/// `struct dk_dev_roots`: value of the `dk_devs` map.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DkDevRoots {
    pub count: u32,
    pub pad: u32,
    pub ino: [u64; DK_MAX_ROOTS_PER_DEV],
}

/// `struct dk_settings`: value (key 0) of the compat object's `dk_settings` ARRAY map.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DkSettings {
    /// Bit `id` set for every root id in `dk_roots` (the modern object's `dk_all_roots`).
    pub all_roots: u64,
}

impl DkSettings {
    /// The bytes as the map stores them.
    pub fn to_bytes(&self) -> [u8; size_of::<DkSettings>()] {
        self.all_roots.to_ne_bytes()
    }
}

/// `struct dk_abs_root`: value (key 0) of the `dk_abs` ARRAY map: the absolute names the
/// tracepoint programs send (a caller whose root directory is the sidecar's, names starting with
/// one of the prefixes). `ino` 0: none.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DkAbsRoot {
    /// The sidecar's root directory: kernel device encoding and inode.
    pub dev: u32,
    pub pad: u32,
    pub ino: u64,
    /// The prefixes' bytes in native-endian words, as the programs load them from the name:
    /// 0 the state directories' common leading directories, 1 the canary's directory.
    pub prefix: [[u64; DK_ABS_PREFIX / 8]; DK_ABS_PREFIXES],
    /// Bytes 0xff where the prefix has one, then 0.
    pub mask: [[u64; DK_ABS_PREFIX / 8]; DK_ABS_PREFIXES],
}

impl DkAbsRoot {
    /// The value for `prefixes` (each 1 to [`DK_ABS_PREFIX`] bytes, without NUL).
    pub fn new(dev: u32, ino: u64, prefixes: [&[u8]; DK_ABS_PREFIXES]) -> Self {
        let words = |b: &[u8; DK_ABS_PREFIX]| {
            std::array::from_fn(|k| {
                u64::from_ne_bytes(b[8 * k..8 * k + 8].try_into().expect("8 bytes"))
            })
        };
        let mut value = Self {
            dev,
            ino,
            ..Default::default()
        };
        for (i, prefix) in prefixes.iter().enumerate() {
            let (mut bytes, mut mask) = ([0u8; DK_ABS_PREFIX], [0u8; DK_ABS_PREFIX]);
            bytes[..prefix.len()].copy_from_slice(prefix);
            mask[..prefix.len()].fill(0xff);
            value.prefix[i] = words(&bytes);
            value.mask[i] = words(&mask);
        }
        value
    }

    /// The bytes as the map stores them.
    pub fn to_bytes(&self) -> [u8; size_of::<DkAbsRoot>()] {
        let mut b = [0u8; size_of::<DkAbsRoot>()];
        b[0..4].copy_from_slice(&self.dev.to_ne_bytes());
        b[4..8].copy_from_slice(&self.pad.to_ne_bytes());
        b[8..16].copy_from_slice(&self.ino.to_ne_bytes());
        let words = self.prefix.iter().chain(&self.mask).flatten();
        for (k, w) in words.enumerate() {
            b[16 + 8 * k..24 + 8 * k].copy_from_slice(&w.to_ne_bytes());
        }
        b
    }
}

/// The kernel's internal `dev_t` (`MKDEV`), which is what `super_block.s_dev` holds.
pub fn kernel_dev(major: u64, minor: u64) -> u32 {
    ((major << 20) | (minor & 0xf_ffff)) as u32
}

impl DkRootKey {
    /// The bytes as the map stores them.
    pub fn to_bytes(&self) -> [u8; size_of::<DkRootKey>()] {
        let mut b = [0u8; size_of::<DkRootKey>()];
        b[0..4].copy_from_slice(&self.dev.to_ne_bytes());
        b[4..8].copy_from_slice(&self.pad.to_ne_bytes());
        b[8..16].copy_from_slice(&self.ino.to_ne_bytes());
        b
    }
}

impl DkDevRoots {
    /// The bytes as the map stores them.
    pub fn to_bytes(&self) -> [u8; size_of::<DkDevRoots>()] {
        let mut b = [0u8; size_of::<DkDevRoots>()];
        b[0..4].copy_from_slice(&self.count.to_ne_bytes());
        b[4..8].copy_from_slice(&self.pad.to_ne_bytes());
        for (i, ino) in self.ino.iter().enumerate() {
            b[8 + 8 * i..16 + 8 * i].copy_from_slice(&ino.to_ne_bytes());
        }
        b
    }
}

/// What happened: `enum dk_op`. The sidecar's journal names changes with the same ops in every
/// backend (a rename with only one end watched becomes a create or a delete there; a hard link
/// or a symlink is a `create` of its new name).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Op {
    Write,
    Create,
    Delete,
    Rename,
    Mkdir,
    Rmdir,
    Attrib,
}

impl Op {
    /// Every op, in `enum dk_op` order.
    pub const ALL: [Op; 7] = [
        Self::Write,
        Self::Create,
        Self::Delete,
        Self::Rename,
        Self::Mkdir,
        Self::Rmdir,
        Self::Attrib,
    ];

    /// The journal's `op` field: the C name without `DK_OP_`, in lower case.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Write => "write",
            Self::Create => "create",
            Self::Delete => "delete",
            Self::Rename => "rename",
            Self::Mkdir => "mkdir",
            Self::Rmdir => "rmdir",
            Self::Attrib => "attrib",
        }
    }
}

/// One decoded record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub op: Op,
    pub bytes: u64,
    /// Kernel time of the change in nanoseconds, on the object's clock
    /// ([`crate::object::ObjectKind::clock`]).
    pub ts_ns: u64,
    pub pid: u32,
    pub tid: u32,
    pub comm: Comm,
    /// Root id and relative path of the file (a rename's target), if it is watched.
    /// Paths are the kernel's bytes: Linux names need not be UTF-8.
    pub path: Option<(u32, Vec<u8>)>,
    /// Root id and relative path of a rename's source, if it is watched.
    pub from: Option<(u32, Vec<u8>)>,
    /// Tracepoint mode ([`DK_F_NAME`]): `path` (and `from`) are the directories the names here
    /// are relative to, as the caller passed them (they may hold `..`; an absolute one has root
    /// id [`DK_ROOT_ABS`]). Placing them is the reader's job.
    pub name: Option<Names>,
    pub truncated: bool,
}

/// The user names of a [`DK_F_NAME`] record, one per end; `None` where the kernel side sent
/// the directory alone (not read, or too long: the event is `truncated`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Names {
    pub path: Option<Vec<u8>>,
    pub from: Option<Vec<u8>>,
    /// [`DK_F_CONTENT`]: the new name is of an unnamed file `bytes` long.
    pub content: bool,
    /// [`DK_F_EXCHANGE`]: a rename that swapped `path` and `from`.
    pub exchange: bool,
    /// [`DK_F_RACED`]: the names changed in memory during the call; not to be trusted.
    pub raced: bool,
}

/// A record that does not decode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventError {
    Short { len: usize, need: usize },
    UnknownOp(u16),
}

impl fmt::Display for EventError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Short { len, need } => {
                write!(f, "event record of {len} bytes is shorter than {need}")
            }
            Self::UnknownOp(op) => write!(f, "event record has unknown op {op}"),
        }
    }
}

impl std::error::Error for EventError {}

impl DkEvent {
    /// Reads the header from the start of a record.
    pub fn from_bytes(b: &[u8]) -> Result<Self, EventError> {
        let need = size_of::<DkEvent>();
        if b.len() < need {
            return Err(EventError::Short { len: b.len(), need });
        }
        let u16_at = |at: usize| u16::from_ne_bytes([b[at], b[at + 1]]);
        let u32_at = |at: usize| u32::from_ne_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]]);
        let u64_at = |at: usize| u64::from_ne_bytes(b[at..at + 8].try_into().expect("8 bytes"));
        let mut comm = [0u8; DK_COMM_LEN];
        let comm_at = offset_of!(DkEvent, comm);
        comm.copy_from_slice(&b[comm_at..comm_at + DK_COMM_LEN]);
        Ok(Self {
            bytes: u64_at(offset_of!(DkEvent, bytes)),
            ts_ns: u64_at(offset_of!(DkEvent, ts_ns)),
            pid: u32_at(offset_of!(DkEvent, pid)),
            tid: u32_at(offset_of!(DkEvent, tid)),
            root_id: u32_at(offset_of!(DkEvent, root_id)),
            from_root_id: u32_at(offset_of!(DkEvent, from_root_id)),
            op: u16_at(offset_of!(DkEvent, op)),
            flags: u16_at(offset_of!(DkEvent, flags)),
            path_len: u16_at(offset_of!(DkEvent, path_len)),
            from_len: u16_at(offset_of!(DkEvent, from_len)),
            comm,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;
    use std::mem::offset_of;
    use std::path::Path;
    use std::process::Command;

    /// Compiles a host program that prints the C side's sizes, offsets and constants.
    fn c_layout() -> BTreeMap<String, usize> {
        let dir = std::env::temp_dir().join(format!("dk-abi-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let src = dir.join("abi.c");
        let exe = dir.join("abi");
        let mut prog = String::from(
            "#include <stdio.h>\n#include <stddef.h>\n#include \"diffkeeper_event.h\"\n\
             #define F(s, m) printf(#s \".\" #m \" %zu %zu\\n\", offsetof(struct s, m), sizeof(((struct s *)0)->m));\n\
             #define S(s) printf(#s \" %zu 0\\n\", sizeof(struct s));\n\
             #define C(c) printf(#c \" %d 0\\n\", (int)(c));\nint main(void) {\n",
        );
        for m in [
            "bytes",
            "ts_ns",
            "pid",
            "tid",
            "root_id",
            "from_root_id",
            "op",
            "flags",
            "path_len",
            "from_len",
            "comm",
        ] {
            prog += &format!("F(dk_event, {m})\n");
        }
        for m in ["dev", "pad", "ino"] {
            prog += &format!("F(dk_root_key, {m})\n");
        }
        for m in ["count", "pad", "ino"] {
            prog += &format!("F(dk_dev_roots, {m})\n");
        }
        prog += "F(dk_settings, all_roots)\n";
        for m in ["dev", "pad", "ino", "prefix", "mask"] {
            prog += &format!("F(dk_abs_root, {m})\n");
        }
        for s in [
            "dk_event",
            "dk_root_key",
            "dk_dev_roots",
            "dk_settings",
            "dk_abs_root",
        ] {
            prog += &format!("S({s})\n");
        }
        for c in [
            "DK_COMM_LEN",
            "DK_PATH_MAX",
            "DK_MAX_DEPTH",
            "DK_MAX_ROOTS",
            "DK_MAX_ROOTS_PER_DEV",
            "DK_OP_WRITE",
            "DK_OP_CREATE",
            "DK_OP_DELETE",
            "DK_OP_RENAME",
            "DK_OP_MKDIR",
            "DK_OP_RMDIR",
            "DK_OP_ATTRIB",
            "DK_F_PATH",
            "DK_F_FROM",
            "DK_F_TRUNCATED",
            "DK_F_NAME",
            "DK_F_CONTENT",
            "DK_F_EXCHANGE",
            "DK_F_RACED",
            "DK_ABS_PREFIX",
            "DK_ABS_PREFIXES",
            "DK_STAT_TOO_DEEP",
            "DK_STAT_UNLINKED",
            "DK_STAT_MISSED_RETURN",
            "DK_STAT_COUNT",
        ] {
            prog += &format!("C({c})\n");
        }
        prog += "return 0; }\n";
        std::fs::write(&src, prog).unwrap();
        let include = Path::new(env!("CARGO_MANIFEST_DIR")).join("c");
        let out = Command::new("clang")
            .arg("-I")
            .arg(&include)
            .arg(&src)
            .arg("-o")
            .arg(&exe)
            .output()
            .expect("run clang to compile the ABI probe (install clang: scripts/setup.sh)");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let out = Command::new(&exe).output().expect("run the ABI probe");
        std::fs::remove_dir_all(&dir).ok();
        let mut map = BTreeMap::new();
        for line in String::from_utf8(out.stdout).unwrap().lines() {
            let mut it = line.split_whitespace();
            let (name, a, b) = (it.next().unwrap(), it.next().unwrap(), it.next().unwrap());
            map.insert(name.to_string(), a.parse().unwrap());
            if name.contains('.') {
                map.insert(format!("{name}#size"), b.parse().unwrap());
            }
        }
        map
    }

    macro_rules! field {
        ($t:ty, $c:literal, $f:ident) => {{
            let size = {
                let v = <$t>::default();
                std::mem::size_of_val(&v.$f)
            };
            [
                (
                    concat!($c, ".", stringify!($f)).to_string(),
                    offset_of!($t, $f),
                ),
                (concat!($c, ".", stringify!($f), "#size").to_string(), size),
            ]
        }};
    }

    #[test]
    fn rust_mirror_matches_c_header() {
        let c = c_layout();
        let mut rust: Vec<(String, usize)> = Vec::new();
        rust.extend(field!(DkEvent, "dk_event", bytes));
        rust.extend(field!(DkEvent, "dk_event", ts_ns));
        rust.extend(field!(DkEvent, "dk_event", pid));
        rust.extend(field!(DkEvent, "dk_event", tid));
        rust.extend(field!(DkEvent, "dk_event", root_id));
        rust.extend(field!(DkEvent, "dk_event", from_root_id));
        rust.extend(field!(DkEvent, "dk_event", op));
        rust.extend(field!(DkEvent, "dk_event", flags));
        rust.extend(field!(DkEvent, "dk_event", path_len));
        rust.extend(field!(DkEvent, "dk_event", from_len));
        rust.extend(field!(DkEvent, "dk_event", comm));
        rust.extend(field!(DkRootKey, "dk_root_key", dev));
        rust.extend(field!(DkRootKey, "dk_root_key", pad));
        rust.extend(field!(DkRootKey, "dk_root_key", ino));
        rust.extend(field!(DkDevRoots, "dk_dev_roots", count));
        rust.extend(field!(DkDevRoots, "dk_dev_roots", pad));
        rust.extend(field!(DkDevRoots, "dk_dev_roots", ino));
        rust.extend(field!(DkSettings, "dk_settings", all_roots));
        rust.push(("dk_event".into(), size_of::<DkEvent>()));
        rust.push(("dk_root_key".into(), size_of::<DkRootKey>()));
        rust.push(("dk_dev_roots".into(), size_of::<DkDevRoots>()));
        rust.extend(field!(DkAbsRoot, "dk_abs_root", dev));
        rust.extend(field!(DkAbsRoot, "dk_abs_root", pad));
        rust.extend(field!(DkAbsRoot, "dk_abs_root", ino));
        rust.extend(field!(DkAbsRoot, "dk_abs_root", prefix));
        rust.extend(field!(DkAbsRoot, "dk_abs_root", mask));
        rust.push(("dk_settings".into(), size_of::<DkSettings>()));
        rust.push(("dk_abs_root".into(), size_of::<DkAbsRoot>()));
        for (name, value) in [
            ("DK_COMM_LEN", DK_COMM_LEN),
            ("DK_PATH_MAX", DK_PATH_MAX),
            ("DK_MAX_DEPTH", DK_MAX_DEPTH),
            ("DK_MAX_ROOTS", DK_MAX_ROOTS),
            ("DK_MAX_ROOTS_PER_DEV", DK_MAX_ROOTS_PER_DEV),
            ("DK_OP_WRITE", DK_OP_WRITE.into()),
            ("DK_OP_CREATE", DK_OP_CREATE.into()),
            ("DK_OP_DELETE", DK_OP_DELETE.into()),
            ("DK_OP_RENAME", DK_OP_RENAME.into()),
            ("DK_OP_MKDIR", DK_OP_MKDIR.into()),
            ("DK_OP_RMDIR", DK_OP_RMDIR.into()),
            ("DK_OP_ATTRIB", DK_OP_ATTRIB.into()),
            ("DK_F_PATH", DK_F_PATH.into()),
            ("DK_F_FROM", DK_F_FROM.into()),
            ("DK_F_TRUNCATED", DK_F_TRUNCATED.into()),
            ("DK_F_NAME", DK_F_NAME.into()),
            ("DK_F_CONTENT", DK_F_CONTENT.into()),
            ("DK_F_EXCHANGE", DK_F_EXCHANGE.into()),
            ("DK_F_RACED", DK_F_RACED.into()),
            ("DK_ABS_PREFIX", DK_ABS_PREFIX),
            ("DK_ABS_PREFIXES", DK_ABS_PREFIXES),
            ("DK_STAT_TOO_DEEP", DK_STAT_TOO_DEEP as usize),
            ("DK_STAT_UNLINKED", DK_STAT_UNLINKED as usize),
            ("DK_STAT_MISSED_RETURN", DK_STAT_MISSED_RETURN as usize),
            ("DK_STAT_COUNT", DK_STAT_COUNT as usize),
        ] {
            rust.push((name.into(), value));
        }
        for (name, value) in &rust {
            assert_eq!(c.get(name), Some(value), "{name}: C side vs Rust mirror");
        }
        assert_eq!(
            c.len(),
            rust.len(),
            "the C probe printed entries the test does not check"
        );
    }

    /// The bytes of a record: `head` then `data` (path, then from).
    fn record(head: &DkEvent, data: &[u8]) -> Vec<u8> {
        let mut rec = Vec::new();
        rec.extend_from_slice(&head.bytes.to_ne_bytes());
        rec.extend_from_slice(&head.ts_ns.to_ne_bytes());
        for w in [head.pid, head.tid, head.root_id, head.from_root_id] {
            rec.extend_from_slice(&w.to_ne_bytes());
        }
        for h in [head.op, head.flags, head.path_len, head.from_len] {
            rec.extend_from_slice(&h.to_ne_bytes());
        }
        rec.extend_from_slice(&head.comm);
        rec.extend_from_slice(data);
        rec
    }

    #[test]
    fn parses_a_rename_record() {
        let head = DkEvent {
            ts_ns: 0x0102_0304_0506_0708,
            pid: 7,
            tid: 8,
            root_id: 1,
            from_root_id: 2,
            op: DK_OP_RENAME,
            flags: DK_F_PATH | DK_F_FROM,
            path_len: 5,
            from_len: 3,
            comm: *b"mv\0\0\0\0\0\0\0\0\0\0\0\0\0\0",
            ..Default::default()
        };
        assert_eq!(DkEvent::from_bytes(&record(&head, b"")).unwrap(), head);
        let rec = record(&head, b"a/newold");
        let ev = Event::parse(&rec).unwrap();
        assert_eq!(ev.op, Op::Rename);
        assert_eq!(ev.comm, Comm::from("mv"));
        assert_eq!(ev.ts_ns, 0x0102_0304_0506_0708);
        assert_eq!(ev.path, Some((1, "a/new".into())));
        assert_eq!(ev.from, Some((2, "old".into())));
        assert_eq!(ev.name, None);
        assert!(matches!(
            Event::parse(&rec[..rec.len() - 1]),
            Err(EventError::Short { .. })
        ));
    }

    #[test]
    fn parses_a_new_name_record() {
        let head = DkEvent {
            root_id: 3,
            op: DK_OP_CREATE,
            flags: DK_F_PATH | DK_F_NAME,
            path_len: 15,
            ..Default::default()
        };
        let ev = Event::parse(&record(&head, b"a/dir\0sub/x.txt")).unwrap();
        assert_eq!(ev.path, Some((3, "a/dir".into())));
        let name = ev.name.unwrap();
        assert_eq!(name.path.as_deref(), Some(&b"sub/x.txt"[..]));
        assert_eq!((name.from, ev.from, ev.truncated), (None, None, false));
        // Only the directory (its name was not read): no name, and flagged.
        let cut = DkEvent {
            flags: DK_F_PATH | DK_F_NAME | DK_F_TRUNCATED,
            path_len: 5,
            ..head
        };
        let ev = Event::parse(&record(&cut, b"a/dir")).unwrap();
        assert_eq!((ev.name.unwrap().path, ev.truncated), (None, true));
    }

    #[test]
    fn parses_a_named_rename_record() {
        let head = DkEvent {
            root_id: 1,
            from_root_id: DK_ROOT_ABS,
            op: DK_OP_RENAME,
            flags: DK_F_PATH | DK_F_FROM | DK_F_NAME | DK_F_EXCHANGE,
            path_len: 5,
            from_len: 7,
            ..Default::default()
        };
        let ev = Event::parse(&record(&head, b"d\0new\0/s/old")).unwrap();
        assert_eq!(ev.path, Some((1, "d".into())));
        assert_eq!(ev.from, Some((DK_ROOT_ABS, Vec::new())));
        let name = ev.name.unwrap();
        assert_eq!(
            (name.path.as_deref(), name.from.as_deref()),
            (Some(&b"new"[..]), Some(&b"/s/old"[..]))
        );
        assert!(name.exchange && !name.content);
    }

    #[test]
    fn keeps_the_bytes_of_a_name_that_is_not_utf8() {
        let head = DkEvent {
            root_id: 1,
            op: DK_OP_CREATE,
            flags: DK_F_PATH | DK_F_NAME,
            path_len: 6,
            ..Default::default()
        };
        let ev = Event::parse(&record(&head, b"d\0bad\xff")).unwrap();
        assert_eq!(ev.name.unwrap().path.as_deref(), Some(&b"bad\xff"[..]));
    }

    #[test]
    fn kernel_dev_encoding() {
        assert_eq!(kernel_dev(8, 1), (8 << 20) | 1);
        assert_eq!(kernel_dev(0, 0x12345), 0x12345);
    }
}
