//! The state of every root at one moment: the log's records replayed in order.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use crate::record::{Change, ChunkRef, Meta, Record};

/// What a path is at one moment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Node {
    /// A regular file. `link` is the sequence number of the record that wrote its content;
    /// hard links share it.
    File {
        meta: Meta,
        chunks: Arc<[ChunkRef]>,
        link: u64,
    },
    /// A regular file whose content was pruned.
    PrunedFile {
        meta: Meta,
        link: u64,
    },
    Symlink {
        meta: Meta,
        target: Vec<u8>,
    },
    Dir {
        meta: Meta,
    },
}

impl Node {
    pub fn meta(&self) -> &Meta {
        match self {
            Self::File { meta, .. }
            | Self::PrunedFile { meta, .. }
            | Self::Symlink { meta, .. }
            | Self::Dir { meta } => meta,
        }
    }

    fn meta_mut(&mut self) -> &mut Meta {
        match self {
            Self::File { meta, .. }
            | Self::PrunedFile { meta, .. }
            | Self::Symlink { meta, .. }
            | Self::Dir { meta } => meta,
        }
    }

    /// The hard-link group of a regular file.
    pub fn link(&self) -> Option<u64> {
        match self {
            Self::File { link, .. } | Self::PrunedFile { link, .. } => Some(*link),
            _ => None,
        }
    }

    pub fn kind(&self) -> &'static str {
        match self {
            Self::File { .. } | Self::PrunedFile { .. } => "file",
            Self::Symlink { .. } => "symlink",
            Self::Dir { .. } => "dir",
        }
    }
}

/// A path's node and when it last changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub node: Node,
    pub ts_ns: u64,
}

/// (root, path) -> entry. Paths sort so that a directory's subtree is one range.
#[derive(Debug, Default, Clone)]
pub struct Tree {
    pub entries: BTreeMap<(String, Vec<u8>), Entry>,
    links: HashMap<u64, u32>,
}

impl Tree {
    /// Replays records `(seq, record)` whose time is at most `until_ns`.
    pub fn replay<'a>(records: impl IntoIterator<Item = (u64, &'a Record)>, until_ns: u64) -> Self {
        let mut tree = Self::default();
        for (seq, record) in records {
            if record.ts_ns <= until_ns {
                tree.apply(seq, record);
            }
        }
        tree
    }

    pub fn get(&self, root: &str, path: &[u8]) -> Option<&Entry> {
        self.entries.get(&(root.to_string(), path.to_vec()))
    }

    /// The roots that have entries.
    pub fn roots(&self) -> Vec<String> {
        let mut roots: Vec<String> = self.entries.keys().map(|(r, _)| r.clone()).collect();
        roots.dedup();
        roots
    }

    /// Applies one record. A record naming something absent (a hard link to a missing file, a
    /// rename of an unknown path) changes nothing.
    pub fn apply(&mut self, seq: u64, record: &Record) {
        let root = &record.root;
        let path = &record.path;
        let ts_ns = record.ts_ns;
        let node = match &record.change {
            Change::File { meta, chunks } => Node::File {
                meta: *meta,
                chunks: chunks.clone().into(),
                link: seq,
            },
            Change::PrunedFile { meta } => Node::PrunedFile {
                meta: *meta,
                link: seq,
            },
            Change::Symlink { meta, target } => Node::Symlink {
                meta: *meta,
                target: target.clone(),
            },
            Change::Dir { meta } => {
                if let Some(Entry {
                    node: Node::Dir { meta: old },
                    ts_ns: old_ts,
                }) = self.entries.get_mut(&(root.clone(), path.clone()))
                {
                    *old = *meta;
                    *old_ts = ts_ns;
                    return;
                }
                Node::Dir { meta: *meta }
            }
            Change::Hardlink { existing } => match self.get(root, existing).map(|e| &e.node) {
                Some(node @ (Node::File { .. } | Node::PrunedFile { .. })) => node.clone(),
                _ => return,
            },
            Change::Delete => {
                self.remove_subtree(root, path);
                return;
            }
            Change::Rename { to } => {
                self.rename(root, path, to, ts_ns);
                return;
            }
            Change::Attrib { meta } => {
                self.attrib(root, path, meta, ts_ns);
                return;
            }
        };
        self.remove_subtree(root, path);
        self.insert(root.clone(), path.clone(), Entry { node, ts_ns });
    }

    fn insert(&mut self, root: String, path: Vec<u8>, entry: Entry) {
        if let Some(link) = entry.node.link() {
            *self.links.entry(link).or_default() += 1;
        }
        if let Some(old) = self.entries.insert((root, path), entry) {
            self.forget_link(&old.node);
        }
    }

    fn forget_link(&mut self, node: &Node) {
        if let Some(link) = node.link() {
            if let Some(count) = self.links.get_mut(&link) {
                *count -= 1;
                if *count == 0 {
                    self.links.remove(&link);
                }
            }
        }
    }

    /// The keys of `path` and everything below it.
    fn subtree_keys(&self, root: &str, path: &[u8]) -> Vec<(String, Vec<u8>)> {
        let mut keys = Vec::new();
        let exact = (root.to_string(), path.to_vec());
        if self.entries.contains_key(&exact) {
            keys.push(exact);
        }
        let mut lo = path.to_vec();
        lo.push(b'/');
        let mut hi = path.to_vec();
        hi.push(b'/' + 1);
        keys.extend(
            self.entries
                .range((root.to_string(), lo)..(root.to_string(), hi))
                .map(|(k, _)| k.clone()),
        );
        keys
    }

    fn remove_subtree(&mut self, root: &str, path: &[u8]) -> Vec<(Vec<u8>, Entry)> {
        let mut removed = Vec::new();
        for key in self.subtree_keys(root, path) {
            if let Some(entry) = self.entries.remove(&key) {
                self.forget_link(&entry.node);
                removed.push((key.1, entry));
            }
        }
        removed
    }

    fn rename(&mut self, root: &str, from: &[u8], to: &[u8], ts_ns: u64) {
        if from == to || crate::path::is_within(to, from) {
            return;
        }
        let moved = self.remove_subtree(root, from);
        if moved.is_empty() {
            return;
        }
        self.remove_subtree(root, to);
        for (path, mut entry) in moved {
            let mut new_path = to.to_vec();
            new_path.extend_from_slice(&path[from.len()..]);
            if path == from {
                entry.ts_ns = ts_ns;
            }
            self.insert(root.to_string(), new_path, entry);
        }
    }

    /// Mode, owner and mtime change; a file's size stays its content's. Hard links share it.
    fn attrib(&mut self, root: &str, path: &[u8], meta: &Meta, ts_ns: u64) {
        let Some(entry) = self.entries.get(&(root.to_string(), path.to_vec())) else {
            return;
        };
        let link = entry.node.link();
        let shared = link.is_some_and(|l| self.links.get(&l).copied().unwrap_or(0) > 1);
        let set = |entry: &mut Entry| {
            let m = entry.node.meta_mut();
            let size = m.size;
            *m = *meta;
            if entry.node.link().is_some() || matches!(entry.node, Node::Symlink { .. }) {
                entry.node.meta_mut().size = size;
            }
            entry.ts_ns = ts_ns;
        };
        if shared {
            for entry in self.entries.values_mut() {
                if entry.node.link() == link {
                    set(entry);
                }
            }
        } else if let Some(entry) = self.entries.get_mut(&(root.to_string(), path.to_vec())) {
            set(entry);
        }
    }
}
