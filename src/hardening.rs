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
    }
}
