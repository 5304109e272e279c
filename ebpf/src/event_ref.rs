//! A decoded record whose paths stay in the record's bytes: the reader's hot path decodes every
//! event this way, without an allocation, and makes an owned [`Event`] only where it keeps one
//! (names to place, the canary's events).

use crate::comm::Comm;
use crate::event::{
    DkEvent, Event, EventError, Names, Op, DK_F_CONTENT, DK_F_EXCHANGE, DK_F_FROM, DK_F_NAME,
    DK_F_PATH, DK_F_RACED, DK_F_TRUNCATED, DK_OP_ATTRIB, DK_OP_CREATE, DK_OP_DELETE, DK_OP_MKDIR,
    DK_OP_RENAME, DK_OP_RMDIR, DK_OP_WRITE,
};

/// One record's fields; `path` and `from` as [`Event`] has them, but for a [`DK_F_NAME`]
/// record still in the kernel's form ("dir NUL name", split by [`EventRef::to_owned`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventRef<'a> {
    pub op: Op,
    pub bytes: u64,
    pub ts_ns: u64,
    pub pid: u32,
    pub tid: u32,
    pub comm: Comm,
    pub path: Option<(u32, &'a [u8])>,
    pub from: Option<(u32, &'a [u8])>,
    flags: u16,
}

impl<'a> EventRef<'a> {
    /// Decodes one ring buffer record.
    pub fn parse(record: &'a [u8]) -> Result<Self, EventError> {
        let head = DkEvent::from_bytes(record)?;
        let op = match head.op {
            DK_OP_WRITE => Op::Write,
            DK_OP_CREATE => Op::Create,
            DK_OP_DELETE => Op::Delete,
            DK_OP_RENAME => Op::Rename,
            DK_OP_MKDIR => Op::Mkdir,
            DK_OP_RMDIR => Op::Rmdir,
            DK_OP_ATTRIB => Op::Attrib,
            other => return Err(EventError::UnknownOp(other)),
        };
        let start = size_of::<DkEvent>();
        let path_end = start + usize::from(head.path_len);
        let from_end = path_end + usize::from(head.from_len);
        if record.len() < from_end {
            return Err(EventError::Short {
                len: record.len(),
                need: from_end,
            });
        }
        let flag = |bit: u16| head.flags & bit != 0;
        Ok(Self {
            op,
            bytes: head.bytes,
            ts_ns: head.ts_ns,
            pid: head.pid,
            tid: head.tid,
            comm: Comm::from_kernel(head.comm),
            path: flag(DK_F_PATH).then_some((head.root_id, &record[start..path_end])),
            from: flag(DK_F_FROM).then_some((head.from_root_id, &record[path_end..from_end])),
            flags: head.flags,
        })
    }

    /// Tracepoint mode's [`DK_F_NAME`]: the ends are directories and names to be placed.
    pub fn named(&self) -> bool {
        self.flags & DK_F_NAME != 0
    }

    pub fn truncated(&self) -> bool {
        self.flags & DK_F_TRUNCATED != 0
    }

    /// The owned event, names split from their directories ("dir NUL name"; no NUL when only
    /// the directory was sent). Names stay bytes: the journal decides how to print them.
    pub fn to_owned(&self) -> Event {
        let named = self.named();
        let split = |bytes: &[u8]| match bytes.iter().position(|&b| b == 0) {
            Some(nul) if named => (bytes[..nul].to_vec(), Some(bytes[nul + 1..].to_vec())),
            _ => (bytes.to_vec(), None),
        };
        let (path, path_name) = self.path.map_or((None, None), |(id, bytes)| {
            let (dir, name) = split(bytes);
            (Some((id, dir)), name)
        });
        let (from, from_name) = self.from.map_or((None, None), |(id, bytes)| {
            let (dir, name) = split(bytes);
            (Some((id, dir)), name)
        });
        Event {
            op: self.op,
            bytes: self.bytes,
            ts_ns: self.ts_ns,
            pid: self.pid,
            tid: self.tid,
            comm: self.comm,
            path,
            from,
            name: named.then_some(Names {
                path: path_name,
                from: from_name,
                content: self.flags & DK_F_CONTENT != 0,
                exchange: self.flags & DK_F_EXCHANGE != 0,
                raced: self.flags & DK_F_RACED != 0,
            }),
            truncated: self.truncated(),
        }
    }
}

impl Event {
    /// Decodes one ring buffer record.
    pub fn parse(record: &[u8]) -> Result<Self, EventError> {
        EventRef::parse(record).map(|event| event.to_owned())
    }

    /// This event's fields, paths borrowed. Its names, if any, are left out: call it on an
    /// event without them (one never named, or one whose names were placed).
    pub fn as_ref(&self) -> EventRef<'_> {
        let flag = |set: bool, bit: u16| if set { bit } else { 0 };
        let flags = flag(self.path.is_some(), DK_F_PATH)
            | flag(self.from.is_some(), DK_F_FROM)
            | flag(self.truncated, DK_F_TRUNCATED);
        EventRef {
            op: self.op,
            bytes: self.bytes,
            ts_ns: self.ts_ns,
            pid: self.pid,
            tid: self.tid,
            comm: self.comm,
            path: borrowed(&self.path),
            from: borrowed(&self.from),
            flags,
        }
    }
}

fn borrowed(end: &Option<(u32, Vec<u8>)>) -> Option<(u32, &[u8])> {
    end.as_ref().map(|(id, path)| (*id, path.as_slice()))
}
