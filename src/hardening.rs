//! What keeps a test command (or anything else running as phasegate's user) away from the
//! server's secrets: the process is marked non-dumpable, as ssh-agent does, so `/proc/<pid>/
//! environ`, `/proc/<pid>/mem`, `/proc/<pid>/fd`, `ptrace` and core dumps are refused to
//! processes without `CAP_SYS_PTRACE`, even of the same user; descriptors inherited from
//! whoever started phasegate are made close-on-exec (every descriptor Rust and tokio open
//! already is), so a test command gets only stdin, stdout and stderr; the cache directory is
//! private to that user. (The test command's clean environment is the command runner's.)

use std::path::Path;

/// Marks the process non-dumpable and every inherited descriptor above stderr close-on-exec.
/// Call once at start-up, before credentials are read.
pub fn protect_process() -> Result<(), String> {
    nix::sys::prctl::set_dumpable(false).map_err(|e| format!("prctl(PR_SET_DUMPABLE, 0): {e}"))?;
    let fds: Vec<i32> = std::fs::read_dir("/proc/self/fd")
        .map_err(|e| format!("/proc/self/fd: {e}"))?
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse().ok())
        .filter(|fd| *fd > 2)
        .collect();
    for fd in fds {
        // The directory's own descriptor is gone by now: EBADF is expected for it.
        use nix::fcntl::{FcntlArg, FdFlag, fcntl};
        let _ = fcntl(fd, FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC));
    }
    Ok(())
}

/// Creates `dir` (and its parents) with mode 0700 when missing: the bare clones and the run
/// history are the server user's alone.
pub fn private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

/// Refuses a directory (the cache, a clone) that is not this process's own: a symlink, owned by
/// another user, or writable by its group or others. Someone who can write there could plant a
/// clone whose configuration sends the credentials elsewhere.
pub fn owned_dir(dir: &Path) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    let meta = ours(dir)?;
    let mode = meta.permissions().mode() & 0o7777;
    if mode & 0o022 != 0 {
        return Err(format!(
            "{} is writable by its group or others (mode {mode:o})",
            dir.display()
        ));
    }
    Ok(())
}

/// Refuses a directory that is a symlink or another user's (its mode is not looked at: inside
/// the private cache directory, nobody else reaches it whatever its mode, and libgit2 makes
/// clones with the process's umask).
pub fn ours(dir: &Path) -> Result<std::fs::Metadata, String> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::symlink_metadata(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let me = nix::unistd::geteuid().as_raw();
    if !meta.is_dir() {
        return Err(format!("{} is not a directory (a symlink?)", dir.display()));
    }
    if meta.uid() != me {
        return Err(format!(
            "{} is owned by uid {}, not phasegate's ({me})",
            dir.display(),
            meta.uid()
        ));
    }
    Ok(meta)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cache_directory_is_private_to_the_server_user() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let cache = dir.path().join("a/cache");
        private_dir(&cache).expect("create");
        let mode = std::fs::metadata(&cache)
            .expect("stat")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o700);
        owned_dir(&cache).expect("ours");
    }

    #[test]
    fn a_directory_others_may_write_or_a_symlink_is_not_ours() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let open = dir.path().join("open");
        std::fs::create_dir(&open).expect("mkdir");
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).expect("chmod");
        let err = owned_dir(&open).expect_err("world-writable");
        assert!(err.contains("writable by its group or others"), "{err}");
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(dir.path(), &link).expect("symlink");
        assert!(owned_dir(&link).expect_err("symlink").contains("symlink"));
        let other = std::path::Path::new("/");
        if nix::unistd::geteuid().as_raw() != 0 {
            assert!(
                owned_dir(other)
                    .expect_err("root's")
                    .contains("owned by uid 0")
            );
        }
    }
}
