//! The history file: one JSON line per finished run, appended; rewritten (a temporary file
//! renamed over it) at start-up and whenever it holds twice the runs kept, so it stays near
//! its record limit while serving. It is read at start-up line by line, from at most its last
//! [`MAX_READ_BYTES`], and a line longer than [`MAX_LINE_BYTES`] is skipped, never held whole:
//! a damaged or foreign file cannot make the server load more than that.

use std::{
    fs::{File, OpenOptions},
    io::{BufRead, BufReader, Read, Seek, SeekFrom, Write},
    path::Path,
};

use super::RunRecord;

/// The longest line read: a record carries at most 4 KiB of test output, bounded spec fields
/// (a few KiB) and the promotion's changed lines; a longer line is no record of ours.
pub(super) const MAX_LINE_BYTES: usize = 256 * 1024;
/// How much of the file's end is read at start-up: twice the kept runs (the file's largest
/// size between compactions) of 16 KiB each, far more than real records weigh.
pub(super) const MAX_READ_BYTES: u64 = 2 * super::KEPT_RUNS as u64 * 16 * 1024;

pub(super) fn append(file: &Path, record: &RunRecord) -> std::io::Result<()> {
    if let Some(dir) = file.parent() {
        crate::hardening::private_dir(dir)?;
    }
    let mut line = serde_json::to_vec(record).map_err(std::io::Error::other)?;
    line.push(b'\n');
    // One write of one line: a crash leaves at most a truncated last line, which load skips.
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(file)?
        .write_all(&line)
}

/// Replaces the file with `records`, atomically: a crash leaves the old file or the new one.
pub(super) fn rewrite(file: &Path, records: &[&RunRecord]) -> std::io::Result<()> {
    let tmp = file.with_extension("jsonl.tmp");
    let mut out = Vec::new();
    for r in records {
        out.extend(serde_json::to_vec(r).map_err(std::io::Error::other)?);
        out.push(b'\n');
    }
    std::fs::write(&tmp, out)?;
    std::fs::rename(tmp, file)
}

/// What [`read`] found.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct Loaded {
    /// Lines that were not records: too long, not JSON, not UTF-8.
    pub(super) skipped: usize,
    /// Every non-empty line seen (records and skipped ones).
    pub(super) lines: usize,
    /// The file was not read whole (it was larger than [`MAX_READ_BYTES`]), or did not end
    /// in a newline: it should be rewritten.
    pub(super) partial: bool,
}

/// Reads the records of `file`, oldest first, handing each to `keep`; `None` when there is
/// no file to read.
pub(super) fn read(file: &Path, mut keep: impl FnMut(RunRecord)) -> Option<Loaded> {
    let mut f = File::open(file).ok()?;
    let len = f.metadata().ok()?.len();
    let mut found = Loaded::default();
    // The newest runs are at the end: beyond the bound, start there, after a line break.
    let start = len.saturating_sub(MAX_READ_BYTES);
    if start > 0 {
        f.seek(SeekFrom::Start(start)).ok()?;
        found.partial = true;
    }
    let mut reader = BufReader::new(f);
    if start > 0 {
        skip_line(&mut reader).ok()?;
    }
    let mut line = Vec::new();
    loop {
        line.clear();
        let fits = match read_line(&mut reader, &mut line) {
            Ok(Some(fits)) => fits,
            Ok(None) => break,
            Err(_) => {
                found.partial = true;
                break;
            }
        };
        if line.last() == Some(&b'\n') {
            line.pop();
        } else if fits {
            found.partial = true;
        }
        if line.iter().all(u8::is_ascii_whitespace) && fits {
            continue;
        }
        found.lines += 1;
        match serde_json::from_slice::<RunRecord>(&line) {
            Ok(record) if fits => keep(record),
            _ => found.skipped += 1,
        }
    }
    Some(found)
}

/// Reads one line into `line`, at most [`MAX_LINE_BYTES`] of it: `Some(false)` when it was
/// longer (the rest is skipped, not kept), `None` at the end of the file.
fn read_line(reader: &mut impl BufRead, line: &mut Vec<u8>) -> std::io::Result<Option<bool>> {
    let limit = MAX_LINE_BYTES as u64 + 1;
    let n = reader.by_ref().take(limit).read_until(b'\n', line)?;
    if n == 0 {
        return Ok(None);
    }
    if line.len() as u64 == limit && line.last() != Some(&b'\n') {
        skip_line(reader)?;
        return Ok(Some(false));
    }
    Ok(Some(true))
}

/// Skips to just after the next line break (or the end), holding at most one buffer.
fn skip_line(reader: &mut impl BufRead) -> std::io::Result<()> {
    loop {
        let buf = reader.fill_buf()?;
        if buf.is_empty() {
            return Ok(());
        }
        match buf.iter().position(|&b| b == b'\n') {
            Some(at) => {
                reader.consume(at + 1);
                return Ok(());
            }
            None => {
                let n = buf.len();
                reader.consume(n);
            }
        }
    }
}
