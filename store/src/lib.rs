//! diffkeeper's content store: what every watched file contained, at every recorded moment.
//!
//! A store is a directory: `log` (an append-only, checksummed log of [`Record`]s: file versions
//! with their chunk lists, symlinks, directories, hard links, deletes, renames, attribute
//! changes) and `packs/*.pack` (append-only files of zstd-compressed, content-defined chunks
//! named by their BLAKE3 hash). One [`StoreWriter`] appends (an exclusive lock); any number of
//! [`StoreReader`]s read, even while it writes. docs/recorder.md describes the format.
//!
//! Paths are recorded relative to a *root*, the absolute path of the watched directory they
//! belong to; a store may hold several roots.

mod chunker;
mod error;
mod export;
mod frame;
mod log;
mod pack;
pub mod path;
mod prefetch;
mod prune;
mod reader;
mod record;
mod tree;
mod writer;

pub use error::{Result, StoreError};
pub use export::ExportReport;
pub use frame::FORMAT_VERSION;
pub use prune::PruneReport;
pub use reader::{DiffEntry, DiffKind, StoreReader, TimelineEntry, VerifyReport};
pub use record::{Change, ChunkRef, Hash, Meta, Record};
pub use tree::{Entry, Node, Tree};
pub use writer::{ts_ns, PutOutcome, Store, StoreOptions, StoreStats, StoreWriter};
