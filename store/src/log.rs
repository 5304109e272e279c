//! The metadata log: `DIR/log`, one checksummed frame per [`Record`], append-only.

use std::fs::{File, OpenOptions};
use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use crate::error::{Result, StoreError};
use crate::frame::{self, Check, End, FileKind};
use crate::pack::{sync_dir, write_atomically};
use crate::record::Record;

pub const LOG_NAME: &str = "log";

/// Reads every record of the log at `path`. Returns the records and how the file ended.
pub fn read_all(file: &mut File, path: &Path) -> Result<(Vec<Record>, End)> {
    frame::check_header(file, path, FileKind::Log)?;
    let mut records = Vec::new();
    let end = frame::scan(file, path, FileKind::Log, Check::Strict, |f| {
        let at = |reason: &str| StoreError::corrupt(path, f.offset, reason);
        records.push(Record::decode(&f.payload, &at)?);
        Ok(())
    })?;
    Ok((records, end))
}

/// The log opened for appends.
pub struct LogWriter {
    path: PathBuf,
    file: File,
    len: u64,
}

impl LogWriter {
    /// Opens (or creates) the log in `dir`, truncating a torn tail; returns its records.
    pub fn open(dir: &Path) -> Result<(Self, Vec<Record>)> {
        let path = dir.join(LOG_NAME);
        if !path.exists() {
            // Created whole (header included) by a rename, so a log is never headerless.
            write_atomically(&dir.join("log.tmp"), &path, &frame::header(FileKind::Log))?;
        }
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .map_err(|e| StoreError::io(&path, e))?;
        let (records, end) = read_all(&mut file, &path)?;
        let len = match end {
            End::Clean => file.metadata().map_err(|e| StoreError::io(&path, e))?.len(),
            End::TornTail { at, bytes } => {
                log::warn!(
                    "store: {}: dropping a torn tail of {bytes} bytes at byte {at} (a record cut short by a crash)",
                    path.display()
                );
                file.set_len(at).map_err(|e| StoreError::io(&path, e))?;
                at
            }
        };
        file.seek(SeekFrom::Start(len))
            .map_err(|e| StoreError::io(&path, e))?;
        Ok((Self { path, file, len }, records))
    }

    pub fn len(&self) -> u64 {
        self.len
    }

    /// Appends one record; on failure the log is cut back so no partial frame remains.
    pub fn append(&mut self, record: &Record) -> Result<()> {
        let payload = record.encode();
        if payload.len() > FileKind::Log.max_payload() as usize {
            return Err(StoreError::TooLarge {
                what: format!("the record of {:?}", String::from_utf8_lossy(&record.path)),
                limit: u64::from(FileKind::Log.max_payload()),
            });
        }
        let bytes = frame::encode(&payload);
        if let Err(e) = self.file.write_all(&bytes) {
            let _ = self.file.set_len(self.len);
            let _ = self.file.seek(SeekFrom::Start(self.len));
            return Err(StoreError::io(&self.path, e));
        }
        self.len += bytes.len() as u64;
        Ok(())
    }

    pub fn sync(&mut self) -> Result<()> {
        self.file
            .sync_data()
            .map_err(|e| StoreError::io(&self.path, e))
    }

    /// Replaces the whole log by `records` (a prune), atomically.
    pub fn rewrite(&mut self, dir: &Path, records: &[Record]) -> Result<()> {
        let mut out = frame::header(FileKind::Log).to_vec();
        for record in records {
            out.extend_from_slice(&frame::encode(&record.encode()));
        }
        write_atomically(&dir.join("log.tmp"), &self.path, &out)?;
        sync_dir(dir)?;
        self.file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&self.path)
            .map_err(|e| StoreError::io(&self.path, e))?;
        self.len = out.len() as u64;
        self.file
            .seek(SeekFrom::Start(self.len))
            .map_err(|e| StoreError::io(&self.path, e))?;
        Ok(())
    }
}
