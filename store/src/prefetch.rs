//! An export's chunks read, decompressed and hash-checked on a second thread while the caller
//! writes them: decoding then overlaps the file system's work (creating each file, copying into
//! the page cache) instead of adding to it.

use std::io::Write;
use std::sync::mpsc::{channel, Receiver, Sender};

use crate::error::{Result, StoreError};
use crate::pack::{ChunkBuf, ChunkDecoder};
use crate::reader::StoreReader;
use crate::record::ChunkRef;

/// Chunks handed over at once: one hand-over per chunk woke a thread per chunk, which cost more
/// CPU than the copying and stalled the writer when the machine was busy.
const BATCH: usize = 4;
/// Batches in flight: how far the decoder may run ahead of the writer.
const BATCHES: usize = 4;

/// A file to decode: its chunks, and its name for errors.
pub struct FileChunks<'a> {
    pub chunks: &'a [ChunkRef],
    pub what: &'a str,
}

/// The writer's end: the chunks of the files given to [`run`], in that order.
pub struct Prefetched {
    ready: Receiver<Result<Vec<ChunkBuf>>>,
    spent: Sender<Vec<ChunkBuf>>,
    /// The batch being written, and how many of its chunks are written.
    batch: Vec<ChunkBuf>,
    used: usize,
}

impl Prefetched {
    /// Writes the next file's `n` chunks to `out`; returns the bytes written.
    pub fn write_file(&mut self, n: usize, out: &mut dyn Write, what: &str) -> Result<u64> {
        let mut total = 0u64;
        for _ in 0..n {
            if self.used == self.batch.len() {
                let next = self.ready.recv().map_err(|_| {
                    StoreError::io(
                        format!("reading {what}"),
                        std::io::Error::other("the chunk decoder stopped early"),
                    )
                })??;
                let done = std::mem::replace(&mut self.batch, next);
                self.used = 0;
                // (The first is no batch; a send fails only once the decoder has stopped.)
                if !done.is_empty() {
                    let _ = self.spent.send(done);
                }
            }
            let data = self.batch[self.used].content();
            self.used += 1;
            out.write_all(data)
                .map_err(|e| StoreError::io(format!("writing {what}"), e))?;
            total += data.len() as u64;
        }
        Ok(total)
    }
}

/// Runs `write` while a scoped thread decodes the chunks of `files` in order. The decoder stops
/// at its first error (handed to the writer in place of that chunk's batch) or when `write`
/// returns.
pub fn run<T>(
    reader: &StoreReader,
    files: Vec<FileChunks<'_>>,
    write: impl FnOnce(&mut Prefetched) -> Result<T>,
) -> Result<T> {
    let mut decoder = ChunkDecoder::new().map_err(|e| StoreError::io(reader.dir(), e))?;
    let (ready_tx, ready) = channel();
    let (spent, spent_rx) = channel::<Vec<ChunkBuf>>();
    for _ in 0..BATCHES {
        let _ = spent.send((0..BATCH).map(|_| ChunkBuf::default()).collect());
    }
    std::thread::scope(|scope| {
        scope.spawn(move || {
            let mut chunks = files
                .iter()
                .flat_map(|f| f.chunks.iter().map(move |c| (c, f.what)));
            // The pool bounds the decoder's lead; it closes when the writer is done.
            while let Ok(mut batch) = spent_rx.recv() {
                let mut filled = 0;
                for (buf, (chunk, what)) in batch.iter_mut().zip(chunks.by_ref()) {
                    if let Err(e) = reader.read_chunk(chunk, &mut decoder, buf, what) {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                    filled += 1;
                }
                if filled == 0 {
                    return;
                }
                batch.truncate(filled);
                if ready_tx.send(Ok(batch)).is_err() {
                    return;
                }
            }
        });
        // Dropped before the scope joins the decoder, which it unblocks.
        let mut prefetched = Prefetched {
            ready,
            spent,
            batch: Vec::new(),
            used: 0,
        };
        write(&mut prefetched)
    })
}
#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::time::SystemTime;

    use super::*;
    use crate::record::Meta;
    use crate::tree::Node;
    use crate::writer::{Store, StoreOptions};

    /// A store of `n` files of several chunks each (distinct, incompressible-ish content).
    fn store_with_files(dir: &std::path::Path, n: u32) -> StoreReader {
        let mut w = Store::create_or_open(dir, StoreOptions::default()).unwrap();
        for i in 0..n {
            let mut x = u64::from(i) + 1;
            let content: Vec<u8> = (0..300_000)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    x as u8
                })
                .collect();
            let path = format!("f{i:02}");
            w.put_file(
                SystemTime::now(),
                "/s",
                path.as_bytes(),
                &Meta::default(),
                &mut &content[..],
            )
            .unwrap();
        }
        drop(w);
        StoreReader::open(dir).unwrap()
    }

    #[test]
    fn chunks_arrive_in_file_order_and_an_early_stop_ends_the_decoder() {
        let tmp = tempfile::tempdir().unwrap();
        let reader = store_with_files(tmp.path(), 12);
        let tree = reader.tree_at(u64::MAX);
        let files: Vec<_> = tree.entries.iter().map(|(key, e)| (key, &e.node)).collect();
        let list = || {
            files
                .iter()
                .map(|(key, node)| match node {
                    Node::File { chunks, .. } => FileChunks {
                        chunks,
                        what: std::str::from_utf8(&key.1).unwrap(),
                    },
                    _ => unreachable!(),
                })
                .collect()
        };
        let got = run(&reader, list(), |content| {
            let mut all = Vec::new();
            for (_, node) in &files {
                let Node::File { chunks, .. } = node else {
                    unreachable!()
                };
                let mut one = Vec::new();
                content.write_file(chunks.len(), &mut one, "f").unwrap();
                all.push(one);
            }
            Ok(all)
        })
        .unwrap();
        for ((key, _), content) in files.iter().zip(&got) {
            let mut want = Vec::new();
            reader.cat(&key.1, u64::MAX, &mut want).unwrap();
            assert_eq!(content, &want, "{key:?}");
        }
        // The writer gives up after one file: run returns (the decoder, blocked on its full
        // pool, sees the writer gone) with the writer's error.
        let err = run(&reader, list(), |content| {
            let Node::File { chunks, .. } = files[0].1 else {
                unreachable!()
            };
            content.write_file(chunks.len(), &mut Vec::new(), "f")?;
            Err::<(), _>(StoreError::NotFound {
                what: "stop".into(),
            })
        })
        .unwrap_err();
        assert!(err.to_string().contains("stop"), "{err}");
    }
}
