//! The history file: one JSON line per finished run, appended; rewritten whole only at start-up.

use std::{fs::OpenOptions, io::Write, path::Path};

use super::RunRecord;

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
