//! One observed file change: what every backend (eBPF or inotify) hands to the journal.

use std::time::SystemTime;

/// Which mechanism saw the change; printed as the journal's `backend` field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Backend {
    Fentry,
    Kprobe,
    Tracepoint,
    Inotify,
}

impl Backend {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Fentry => "fentry",
            Self::Kprobe => "kprobe",
            Self::Tracepoint => "tracepoint",
            Self::Inotify => "inotify",
        }
    }
}

/// The journal's `op` field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Op {
    Write,
    Create,
    Delete,
    Rename,
}

impl Op {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Write => "write",
            Self::Create => "create",
            Self::Delete => "delete",
            Self::Rename => "rename",
        }
    }
}

/// A change under a watched state directory. `path` (and `from` for renames) are absolute:
/// the watched root joined with the path below it. pid/comm/bytes are `None` where the
/// backend cannot know them (inotify).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub ts: SystemTime,
    pub backend: Backend,
    pub op: Op,
    pub path: String,
    pub from: Option<String>,
    pub pid: Option<u32>,
    pub comm: Option<String>,
    pub bytes: Option<u64>,
}
