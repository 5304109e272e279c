//! Reopening a `--journal` file: the new lines continue the last line's `seq`. A crash can
//! leave a torn last line (no newline); it never was a whole line, so it is cut off (and said
//! so) before appending, and the line before it gives the sequence.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};

/// How much of the file's end is read to find its last whole line (lines are far shorter:
/// two paths of at most 4 KiB each plus a few fields).
const TAIL_BYTES: u64 = 64 * 1024;

/// Where a reopened journal stands: the `seq` its next line gets.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Resume {
    pub(super) next_seq: u64,
    /// Bytes of a torn last line that were cut off.
    pub(super) torn_bytes: u64,
}

/// Reads the end of `file` (open for reading and writing), cuts a torn last line off and
/// returns the `seq` that follows the last whole line (1 for an empty file).
pub(super) fn resume(file: &mut File) -> io::Result<Resume> {
    let len = file.metadata()?.len();
    let start = len.saturating_sub(TAIL_BYTES);
    file.seek(SeekFrom::Start(start))?;
    let mut tail = Vec::with_capacity((len - start) as usize);
    file.read_to_end(&mut tail)?;
    // The whole lines end at the last newline; anything after it is torn.
    let whole_end = tail.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    let torn_bytes = (tail.len() - whole_end) as u64;
    if torn_bytes > 0 {
        if start > 0 && whole_end == 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("its last {TAIL_BYTES} bytes hold no line end: not a diffkeeper journal"),
            ));
        }
        file.set_len(start + whole_end as u64)?;
    }
    let whole = &tail[..whole_end];
    let last_line = whole[..whole.len().saturating_sub(1)]
        .rsplit(|&b| b == b'\n')
        .next()
        .unwrap_or_default();
    let next_seq = if last_line.is_empty() {
        1
    } else {
        last_seq(last_line)? + 1
    };
    Ok(Resume {
        next_seq,
        torn_bytes,
    })
}

/// The `seq` of one journal line.
fn last_seq(line: &[u8]) -> io::Result<u64> {
    let value: serde_json::Value = serde_json::from_slice(line).map_err(|e| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("its last line is not JSON ({e}): not a diffkeeper journal"),
        )
    })?;
    value.get("seq").and_then(|s| s.as_u64()).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            "its last line has no \"seq\": written by an older diffkeeper (move it aside to \
             start a new journal)",
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn resumed(content: &[u8]) -> (io::Result<Resume>, Vec<u8>) {
        let path = std::env::temp_dir().join(format!(
            "dk-resume-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        std::fs::write(&path, content).unwrap();
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .append(true)
            .open(&path)
            .unwrap();
        let result = resume(&mut file);
        if result.is_ok() {
            file.write_all(b"next\n").unwrap();
        }
        let after = std::fs::read(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        (result, after)
    }

    #[test]
    fn an_empty_journal_starts_at_one() {
        let (r, after) = resumed(b"");
        assert_eq!(r.unwrap().next_seq, 1);
        assert_eq!(after, b"next\n");
    }

    #[test]
    fn a_whole_last_line_is_continued() {
        let (r, _) = resumed(b"{\"seq\":1,\"op\":\"create\"}\n{\"seq\":2,\"op\":\"write\"}\n");
        assert_eq!(
            r.unwrap(),
            Resume {
                next_seq: 3,
                torn_bytes: 0
            }
        );
    }

    #[test]
    fn a_torn_last_line_is_cut_and_the_one_before_continued() {
        let (r, after) = resumed(b"{\"seq\":7,\"op\":\"create\"}\n{\"seq\":8,\"op\":\"wr");
        assert_eq!(
            r.unwrap(),
            Resume {
                next_seq: 8,
                torn_bytes: 17
            }
        );
        assert_eq!(after, b"{\"seq\":7,\"op\":\"create\"}\nnext\n");
    }

    #[test]
    fn a_torn_only_line_leaves_an_empty_journal() {
        let (r, after) = resumed(b"{\"seq\":1,\"o");
        assert_eq!(r.unwrap().next_seq, 1);
        assert_eq!(after, b"next\n");
    }

    #[test]
    fn a_file_that_is_not_a_journal_is_refused_untouched() {
        let (r, after) = resumed(b"hello world\n");
        let e = r.unwrap_err().to_string();
        assert!(e.contains("not JSON"), "{e}");
        assert_eq!(after, b"hello world\n");
        let (r, _) = resumed(b"{\"ts\":\"x\"}\n");
        assert!(r.unwrap_err().to_string().contains("older diffkeeper"));
    }
}
