//! A cached clone left behind by a killed process heals on the next run: lock files removed, a
//! half-written pack removed, a clone with a damaged pack discarded (and cloned again).
//!
//! Only debris of dead processes is touched. Within this process, work on a clone is already
//! serialised (the promoter's per-remote lock); across processes (a server and a one-shot
//! `phasegate promote` sharing a cache directory), [`CloneLock`] — an exclusive `flock` on a
//! file beside the clone, released by the kernel when its holder dies — is held for the whole
//! batch. Whoever holds it is the only live user of the clone, so every lock file and temporary
//! pack inside was left by a process that no longer runs.

use std::{
    fs::File,
    io::{Read, Seek, SeekFrom},
    path::{Path, PathBuf},
};

use tracing::warn;

use super::GitError;

/// The clone is used by this process until this is dropped (or the process dies).
#[derive(Debug)]
pub(super) struct CloneLock {
    _file: File,
}

/// Waits until no other process uses the clone at `clone`, then holds it.
pub(super) fn lock(clone: &Path) -> Result<CloneLock, GitError> {
    let mut name = clone.as_os_str().to_owned();
    name.push(".flock");
    let file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(PathBuf::from(name))
        .map_err(|e| GitError::Other(format!("cannot open the cache's lock file: {e}")))?;
    file.lock()
        .map_err(|e| GitError::Other(format!("cannot lock the cached clone: {e}")))?;
    Ok(CloneLock { _file: file })
}

/// What healing found.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Healed {
    /// Nothing left, or only debris that was removed.
    Usable,
    /// A pack is damaged: the clone must be discarded.
    Damaged(String),
}

/// Removes a dead process's debris from the bare clone at `clone` (hold its [`CloneLock`]):
/// git's and libgit2's lock files (`*.lock` anywhere: `packed-refs.lock`, `shallow.lock`,
/// `refs/heads/main.lock`, …) and temporary pack files; reports a truncated pack or index.
pub(super) fn heal(clone: &Path) -> Result<Healed, GitError> {
    let mut removed = Vec::new();
    remove_locks(clone, &mut removed);
    let packs = clone.join("objects").join("pack");
    let mut damaged = None;
    for entry in std::fs::read_dir(&packs).into_iter().flatten().flatten() {
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        // git writes `tmp_pack_*`/`tmp_idx_*`/`tmp_rev_*`, libgit2 `pack_git2_*`, then
        // renames them into place: such a name is always a write that never finished.
        if name.starts_with("tmp_") || name.contains("_git2_") {
            if std::fs::remove_file(&path).is_ok() {
                removed.push(path);
            }
        } else if name.ends_with(".idx") && damaged.is_none() {
            damaged = check_pack(&path.with_extension("pack"), &path);
        }
    }
    if !removed.is_empty() {
        let files: Vec<String> = removed.iter().map(|p| p.display().to_string()).collect();
        warn!(
            ?files,
            "removed what a killed process left in the cached clone"
        );
    }
    Ok(damaged.map_or(Healed::Usable, Healed::Damaged))
}

/// Every `*.lock` file of the clone (git never names a ref or file so otherwise).
fn remove_locks(dir: &Path, removed: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        let Ok(kind) = entry.file_type() else {
            continue;
        };
        if kind.is_dir() {
            // Loose objects hold no locks; skip their 256 directories.
            if entry.file_name() != "objects" {
                remove_locks(&path, removed);
            }
        } else if entry.file_name().to_string_lossy().ends_with(".lock")
            && std::fs::remove_file(&path).is_ok()
        {
            removed.push(path);
        }
    }
}

/// A pack and its index end with the same checksum (the pack's last 20 bytes, the index's
/// 20 bytes before its own checksum): a truncated pack or index does not.
fn check_pack(pack: &Path, idx: &Path) -> Option<String> {
    let tail = |path: &Path, from_end: u64| -> Option<[u8; 20]> {
        let mut file = File::open(path).ok()?;
        if file.metadata().ok()?.len() < from_end {
            return None;
        }
        let from_end = i64::try_from(from_end).ok()?;
        file.seek(SeekFrom::End(-from_end)).ok()?;
        let mut sum = [0u8; 20];
        file.read_exact(&mut sum).ok()?;
        Some(sum)
    };
    match (tail(pack, 20), tail(idx, 40)) {
        (Some(p), Some(i)) if p == i => None,
        _ => Some(format!(
            "{} does not match its index",
            pack.file_name().unwrap_or_default().to_string_lossy()
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn removes_lock_files_and_temporary_packs_and_reports_a_truncated_pack() {
        let dir = tempfile::tempdir().expect("tempdir");
        let clone = dir.path().join("c.git");
        crate::git::local::commit_files(&clone, "main", &[("f", "x")], "one").expect("commit");
        let repo = git2::Repository::open_bare(&clone).expect("open");
        // Pack the history, as a fetch would leave it.
        let mut builder = repo.packbuilder().expect("packbuilder");
        builder
            .insert_commit(repo.refname_to_id("refs/heads/main").expect("main"))
            .expect("insert");
        builder
            .write(&clone.join("objects/pack"), 0o644)
            .expect("write pack");
        let pack_dir = clone.join("objects/pack");
        let debris = [
            clone.join("packed-refs.lock"),
            clone.join("shallow.lock"),
            clone.join("refs/heads/main.lock"),
            pack_dir.join("tmp_pack_Xy12"),
            pack_dir.join("pack_git2_abcdef"),
        ];
        for file in &debris {
            std::fs::write(file, "half").expect("debris");
        }
        let _held = lock(&clone).expect("lock");

        assert_eq!(heal(&clone).expect("heal"), Healed::Usable);
        for file in &debris {
            assert!(!file.exists(), "{} left", file.display());
        }
        assert!(clone.join("refs/heads/main").exists(), "refs are kept");

        let pack = std::fs::read_dir(&pack_dir)
            .expect("packs")
            .flatten()
            .map(|e| e.path())
            .find(|p| p.extension().is_some_and(|e| e == "pack"))
            .expect("a pack");
        let len = std::fs::metadata(&pack).expect("pack").len();
        File::options()
            .write(true)
            .open(&pack)
            .and_then(|f| f.set_len(len - 7))
            .expect("truncate");
        assert!(matches!(heal(&clone).expect("heal"), Healed::Damaged(_)));
    }
}
