//! What a test command's process may do: nothing privileged. Between fork and exec the child
//! drops the capability bounding set (when phasegate may: it holds `CAP_SETPCAP` as root),
//! clears the ambient set, takes the configured user and group (`test.runAsUser`), empties its
//! effective, permitted and inheritable sets and sets `no_new_privs`, so neither a set-user-ID
//! program nor file capabilities give any back. A root-run server thus lends its tests no
//! `CAP_SYS_PTRACE` (to read `/proc/<server>/environ`), no `CAP_DAC_OVERRIDE`, nothing.

use std::{io, str::FromStr};

use nix::{
    errno::Errno,
    unistd::{Gid, Uid, setgid, setgroups, setuid},
};

/// The user and group a test command runs as (`test.runAsUser`: `UID[:GID]`, numeric; the
/// group is the uid's number when not given). Never root: parsed, it cannot be uid 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunAs {
    uid: u32,
    gid: u32,
}

impl FromStr for RunAs {
    type Err = String;

    fn from_str(text: &str) -> Result<RunAs, String> {
        let number = |part: &str| {
            part.parse::<u32>().map_err(|_| {
                format!("test.runAsUser {text:?} is not UID[:GID] (numbers, e.g. 65534:65534)")
            })
        };
        let (uid, gid) = match text.split_once(':') {
            Some((uid, gid)) => (number(uid)?, number(gid)?),
            None => (number(text)?, number(text)?),
        };
        if uid == 0 {
            return Err(format!(
                "test.runAsUser {text:?} is root: test commands may not run as uid 0"
            ));
        }
        Ok(RunAs { uid, gid })
    }
}

/// The file's `runAsUser: 65534` (a YAML number) or `runAsUser: "65534:65534"`.
impl<'de> serde::Deserialize<'de> for RunAs {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<RunAs, D::Error> {
        #[derive(serde::Deserialize)]
        #[serde(untagged)]
        enum Written {
            Number(u64),
            Text(String),
        }
        let text = match Written::deserialize(d)? {
            Written::Number(n) => n.to_string(),
            Written::Text(text) => text,
        };
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// Makes `command`'s child drop every privilege before it runs the test (see the module doc),
/// as `run_as` when given. A step that fails fails the spawn, naming the system error.
pub(super) fn unprivileged(command: &mut tokio::process::Command, run_as: Option<RunAs>) {
    // std sets its own uid/gid (`CommandExt::uid`) before running `pre_exec` closures, by when
    // the child no longer holds CAP_SETPCAP to drop the bounding set: the closure does both.
    #[allow(unsafe_code)]
    // SAFETY: the closure runs in the forked child, before exec, where only async-signal-safe
    // calls are allowed: it makes system calls (prctl, setgroups, setgid, setuid, capset) and
    // reads errno, and neither allocates nor takes a lock.
    unsafe {
        command.pre_exec(move || drop_privileges(run_as));
    }
}

/// The child's side of [`unprivileged`], in the order the kernel allows it.
fn drop_privileges(run_as: Option<RunAs>) -> io::Result<()> {
    // The bounding set first, while CAP_SETPCAP is still effective. EINVAL: past the kernel's
    // last capability; EPERM: phasegate itself does not hold CAP_SETPCAP (not root).
    for cap in 0..64 {
        match prctl(libc::PR_CAPBSET_DROP, cap, 0) {
            Ok(()) => {}
            Err(e) if matches!(e.raw_os_error(), Some(libc::EINVAL | libc::EPERM)) => break,
            Err(e) => return Err(e),
        }
    }
    // EINVAL: a kernel before 4.3, which has no ambient set.
    match prctl(
        libc::PR_CAP_AMBIENT,
        libc::PR_CAP_AMBIENT_CLEAR_ALL as libc::c_ulong,
        0,
    ) {
        Err(e) if e.raw_os_error() != Some(libc::EINVAL) => return Err(e),
        _ => {}
    }
    if let Some(RunAs { uid, gid }) = run_as {
        // As std does: a server that is not root may not drop supplementary groups (EPERM),
        // and then setgid and setuid say whether it may change user at all.
        match setgroups(&[]) {
            Err(e) if e != Errno::EPERM => return Err(e.into()),
            _ => {}
        }
        setgid(Gid::from_raw(gid))?;
        setuid(Uid::from_raw(uid))?;
    }
    clear_capabilities()?;
    prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0)
}

fn prctl(option: libc::c_int, arg2: libc::c_ulong, arg3: libc::c_ulong) -> io::Result<()> {
    #[allow(unsafe_code)]
    // SAFETY: prctl with integer arguments only; it reads and writes no memory of ours.
    let rc = unsafe { libc::prctl(option, arg2, arg3, 0 as libc::c_ulong, 0 as libc::c_ulong) };
    if rc == -1 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// `struct __user_cap_header_struct` of `<linux/capability.h>`.
#[repr(C)]
struct CapHeader {
    version: u32,
    pid: libc::c_int,
}

/// `struct __user_cap_data_struct`: one per 32 capabilities.
#[repr(C)]
#[derive(Clone, Copy)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

/// 64-bit capability sets, two [`CapData`].
const LINUX_CAPABILITY_VERSION_3: u32 = 0x2008_0522;

/// Empties the calling thread's effective, permitted and inheritable sets (always allowed:
/// it only lowers them). The libc crate declares no `capset`, hence the system call.
fn clear_capabilities() -> io::Result<()> {
    let header = CapHeader {
        version: LINUX_CAPABILITY_VERSION_3,
        pid: 0,
    };
    let none = [CapData {
        effective: 0,
        permitted: 0,
        inheritable: 0,
    }; 2];
    #[allow(unsafe_code)]
    // SAFETY: capset reads a header and two data structs laid out as the kernel's (repr(C)),
    // both alive for the call; it writes nothing of ours.
    let rc = unsafe { libc::syscall(libc::SYS_capset, &header as *const CapHeader, none.as_ptr()) };
    if rc == -1 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_numeric_user_and_group_and_refuses_root() {
        assert_eq!(
            "65534".parse(),
            Ok(RunAs {
                uid: 65534,
                gid: 65534
            })
        );
        assert_eq!(
            "1000:2000".parse(),
            Ok(RunAs {
                uid: 1000,
                gid: 2000
            })
        );
        assert_eq!("1000:0".parse(), Ok(RunAs { uid: 1000, gid: 0 }));
        let root = "0".parse::<RunAs>().expect_err("root");
        assert!(root.contains("uid 0"), "{root}");
        assert!("0:1000".parse::<RunAs>().is_err());
        for bad in [
            "nobody",
            "",
            "1000:",
            ":1000",
            "-1",
            "1000:staff",
            "1:2:3",
            "4294967296",
        ] {
            let err = bad.parse::<RunAs>().expect_err(bad);
            assert!(err.contains("is not UID[:GID]"), "{bad}: {err}");
        }
    }

    #[test]
    fn the_file_may_write_the_user_as_a_number_or_a_string() {
        let read = |yaml| serde_yaml_ng::from_str::<RunAs>(yaml).map_err(|e| e.to_string());
        assert_eq!(
            read("65534"),
            Ok(RunAs {
                uid: 65534,
                gid: 65534
            })
        );
        assert_eq!(
            read("\"1000:2000\""),
            Ok(RunAs {
                uid: 1000,
                gid: 2000
            })
        );
        assert_eq!(
            read("1000:2000"),
            Ok(RunAs {
                uid: 1000,
                gid: 2000
            })
        );
        let err = read("0").expect_err("root");
        assert!(err.contains("uid 0"), "{err}");
    }
}
