//! What capture tells the journal: a path whose content was skipped, deferred or lost, and a
//! store that is full or back. Each becomes a journal line of its own, `"op":"capture"`, so
//! nothing the store lacks goes unsaid where the changes themselves are read.

use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, Sender};
use std::time::SystemTime;

/// The `content` field of a capture line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Content {
    /// Not recorded on purpose (too big, excluded, unreadable, special file).
    Skipped,
    /// Recorded later than the change: the file keeps changing (`--capture-interval-ms`).
    Deferred,
    /// Changes not recorded (capture queue full, store full, store write failed); a rescan
    /// records the state once capture can resume.
    Lost,
    /// Capture recorded the watched directories again after a loss.
    Resumed,
}

impl Content {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Skipped => "skipped",
            Self::Deferred => "deferred",
            Self::Lost => "lost",
            Self::Resumed => "resumed",
        }
    }
}

/// One capture line for the journal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note {
    pub ts: SystemTime,
    /// The path concerned; `None` when it concerns the whole store.
    pub path: Option<PathBuf>,
    pub content: Content,
    pub reason: String,
}

impl Note {
    pub fn new(path: Option<&Path>, content: Content, reason: impl Into<String>) -> Self {
        Self {
            ts: SystemTime::now(),
            path: path.map(Path::to_path_buf),
            content,
            reason: reason.into(),
        }
    }
}

pub type NoteSender = Sender<Note>;
pub type NoteReceiver = Receiver<Note>;

/// Sends `note` to the journal and logs it (the journal may already be gone at shutdown).
pub fn tell(notes: &NoteSender, note: Note) {
    let path = note
        .path
        .as_deref()
        .map_or("the store".into(), |p| p.to_string_lossy());
    match note.content {
        Content::Skipped | Content::Deferred => {
            log::info!(
                "capture: {path}: content {}: {}",
                note.content.as_str(),
                note.reason
            )
        }
        Content::Lost => log::warn!("capture: {path}: changes lost: {}", note.reason),
        Content::Resumed => log::info!("capture: resumed: {}", note.reason),
    }
    let _ = notes.send(note);
}
