//! Shared by the journal's unit tests: an output the test can read back, and an inotify change.

use std::io::{self, Write};
use std::sync::{Arc, Mutex};
use std::time::UNIX_EPOCH;

use crate::change::{Backend, Change, Op};

/// A `Write` whose contents the test can read after the journal is done.
#[derive(Clone, Default)]
pub(super) struct Shared(Arc<Mutex<Vec<u8>>>);

impl Write for Shared {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(data);
        Ok(data.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Shared {
    pub(super) fn text(&self) -> String {
        String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
    }

    /// Each line parsed as JSON; a line that is not names itself.
    pub(super) fn lines(&self) -> Vec<serde_json::Value> {
        self.text()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}")))
            .collect()
    }
}

/// An inotify change at the epoch, with no process, size or truncation.
pub(super) fn inotify_change(op: Op, path: &str, from: Option<&str>) -> Change {
    Change {
        ts: UNIX_EPOCH,
        backend: Backend::Inotify,
        op,
        path: path.into(),
        from: from.map(Into::into),
        pid: None,
        comm: None,
        bytes: None,
        truncated: false,
    }
}
