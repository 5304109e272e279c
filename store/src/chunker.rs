//! Content-defined chunking (FastCDC 2020): an edit moves only the chunk boundaries near it, so
//! a file changed in the middle shares every other chunk with its previous version.

use std::io::Read;

use fastcdc::v2020::{Error as CdcError, StreamCDC};

use crate::error::StoreError;

/// Chunk sizes: 16 KiB minimum, 64 KiB average, 256 KiB maximum (see docs/recorder.md).
pub const MIN_CHUNK: u32 = 16 << 10;
pub const AVG_CHUNK: u32 = 64 << 10;
pub const MAX_CHUNK: u32 = 256 << 10;

pub enum ChunkError {
    Read(std::io::Error),
    Store(StoreError),
}

/// Splits `content` into chunks, handing each to `sink` in order.
pub fn chunk(
    content: &mut dyn Read,
    mut sink: impl FnMut(&[u8]) -> Result<(), StoreError>,
) -> Result<(), ChunkError> {
    for item in StreamCDC::new(content, MIN_CHUNK, AVG_CHUNK, MAX_CHUNK) {
        let data = item.map_err(|e| match e {
            CdcError::IoError(e) => ChunkError::Read(e),
            other => ChunkError::Read(std::io::Error::other(other.to_string())),
        })?;
        sink(&data.data).map_err(ChunkError::Store)?;
    }
    Ok(())
}
