//! libgit2's plain socket, with Nagle's algorithm off.
//!
//! libgit2 writes an HTTP request's headers and its body with separate writes and leaves
//! Nagle's algorithm on, so the body of every POST (each fetch negotiation round, each push)
//! waits for the server to acknowledge the headers: on Linux a delayed ACK, up to 40 ms per
//! request. This is libgit2's socket stream again, in Rust, registered in its place through
//! libgit2's public API for custom streams (`git_stream_register`), with `TCP_NODELAY` set.
//! TLS wraps it as it wrapped libgit2's own; like libgit2's, it tries every address of the
//! host, bounds the connect and every read and write, and keeps the connection alive. Its
//! layout begins as libgit2's `git_socket_stream` does, because the ssh transport takes the
//! socket's descriptor from there.

use std::{
    ffi::{CStr, CString, c_char, c_int, c_uint, c_void},
    io::{Read, Write},
    net::{Shutdown, TcpStream, ToSocketAddrs},
    os::fd::AsRawFd,
    time::Duration,
};

use socket2::{SockRef, TcpKeepalive};

use super::{CONNECT_TIMEOUT_MS, IO_TIMEOUT_MS};

/// libgit2's `git_stream` (include/git2/sys/stream.h).
#[repr(C)]
struct GitStream {
    version: c_int,
    /// The bit fields `encrypted : 1, proxy_support : 1`: both off.
    flags: c_uint,
    timeout: c_int,
    connect_timeout: c_int,
    connect: unsafe extern "C" fn(*mut GitStream) -> c_int,
    certificate: Option<unsafe extern "C" fn(*mut *mut c_void, *mut GitStream) -> c_int>,
    set_proxy: Option<unsafe extern "C" fn(*mut GitStream, *const c_void) -> c_int>,
    read: unsafe extern "C" fn(*mut GitStream, *mut c_void, usize) -> isize,
    write: unsafe extern "C" fn(*mut GitStream, *const c_char, usize, c_int) -> isize,
    close: unsafe extern "C" fn(*mut GitStream) -> c_int,
    free: unsafe extern "C" fn(*mut GitStream),
}

/// libgit2's `git_stream_registration`.
#[repr(C)]
struct Registration {
    version: c_int,
    init: Option<unsafe extern "C" fn(*mut *mut GitStream, *const c_char, *const c_char) -> c_int>,
    wrap: Option<unsafe extern "C" fn(*mut *mut GitStream, *mut GitStream, *const c_char) -> c_int>,
}

const GIT_STREAM_VERSION: c_int = 1;
/// `GIT_STREAM_STANDARD`: the plain socket, which TLS wraps.
const STANDARD: c_int = 1;

#[allow(unsafe_code)]
unsafe extern "C" {
    fn git_stream_register(kind: c_int, registration: *mut Registration) -> c_int;
}

/// libgit2's `git_socket_stream` (parent, host, port, descriptor), then the connection.
#[repr(C)]
struct Socket {
    parent: GitStream,
    host: *mut c_char,
    port: *mut c_char,
    fd: c_int,
    tcp: Option<TcpStream>,
}

/// Makes libgit2 open its connections with this socket (once per process; later calls
/// answer as the first). A connect is bounded by [`CONNECT_TIMEOUT_MS`], each read or write
/// by [`IO_TIMEOUT_MS`], as libgit2's server timeouts are.
pub(super) fn register() -> Result<(), String> {
    static REGISTERED: std::sync::OnceLock<Result<(), String>> = std::sync::OnceLock::new();
    REGISTERED
        .get_or_init(|| {
            let mut registration = Registration {
                version: GIT_STREAM_VERSION,
                init: Some(init),
                wrap: None,
            };
            // SAFETY: libgit2 copies the registration; the caller started libgit2.
            #[allow(unsafe_code)]
            let code = unsafe { git_stream_register(STANDARD, &mut registration) };
            match code {
                0 => Ok(()),
                _ => Err(format!("libgit2 refused the socket stream ({code})")),
            }
        })
        .clone()
}

#[allow(unsafe_code)]
unsafe extern "C" fn init(
    out: *mut *mut GitStream,
    host: *const c_char,
    port: *const c_char,
) -> c_int {
    // SAFETY: libgit2 passes NUL-terminated host and port.
    let (host, port) = unsafe {
        (
            CStr::from_ptr(host).to_owned(),
            CStr::from_ptr(port).to_owned(),
        )
    };
    let socket = Box::new(Socket {
        parent: GitStream {
            version: GIT_STREAM_VERSION,
            flags: 0,
            timeout: IO_TIMEOUT_MS,
            connect_timeout: CONNECT_TIMEOUT_MS,
            connect,
            certificate: None,
            set_proxy: None,
            read,
            write,
            close,
            free,
        },
        host: host.into_raw(),
        port: port.into_raw(),
        fd: -1,
        tcp: None,
    });
    // SAFETY: `out` is libgit2's slot for the new stream; `free` takes it back.
    unsafe { *out = Box::into_raw(socket).cast() };
    0
}

/// The socket behind libgit2's pointer to its first field.
///
/// # Safety
/// `stream` must come from [`init`] and not be freed.
#[allow(unsafe_code)]
unsafe fn socket<'a>(stream: *mut GitStream) -> &'a mut Socket {
    // SAFETY: the caller's promise; `parent` is the first field of a `repr(C)` struct.
    unsafe { &mut *stream.cast::<Socket>() }
}

impl Socket {
    fn host(&self) -> String {
        // SAFETY: set from a `CString` in `init`, freed only in `free`.
        #[allow(unsafe_code)]
        unsafe { CStr::from_ptr(self.host) }
            .to_string_lossy()
            .into_owned()
    }

    /// Connects to the first address of the host that answers, as libgit2 does.
    fn open(&self) -> Result<TcpStream, String> {
        let host = self.host();
        // SAFETY: as for `host`.
        #[allow(unsafe_code)]
        let port = unsafe { CStr::from_ptr(self.port) }.to_string_lossy();
        let port: u16 = port
            .parse()
            .map_err(|_| format!("invalid port {port:?} for {host}"))?;
        let addresses = (host.as_str(), port)
            .to_socket_addrs()
            .map_err(|e| format!("failed to resolve address for {host}: {e}"))?;
        let millis = |ms: c_int| Duration::from_millis(ms.unsigned_abs().into());
        let (connect_timeout, io_timeout) = (
            millis(self.parent.connect_timeout),
            millis(self.parent.timeout),
        );
        let mut last = format!("failed to resolve address for {host}: no address");
        for address in addresses {
            match TcpStream::connect_timeout(&address, connect_timeout) {
                Ok(tcp) => {
                    tcp.set_nodelay(true)
                        .and_then(|()| tcp.set_read_timeout(Some(io_timeout)))
                        .and_then(|()| tcp.set_write_timeout(Some(io_timeout)))
                        .and_then(|()| {
                            let alive = TcpKeepalive::new()
                                .with_time(Duration::from_secs(60))
                                .with_interval(Duration::from_secs(10))
                                .with_retries(3);
                            SockRef::from(&tcp).set_tcp_keepalive(&alive)
                        })
                        .map_err(|e| format!("failed to set up the connection to {host}: {e}"))?;
                    return Ok(tcp);
                }
                Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {
                    return Err(format!("failed to connect to {host}: Operation timed out"));
                }
                Err(e) => last = format!("failed to connect to {host}: {e}"),
            }
        }
        Err(last)
    }
}

/// Sets libgit2's last error (class `GIT_ERROR_NET`) and returns -1.
fn fail(message: &str) -> c_int {
    let message = CString::new(message.replace('\0', " ")).unwrap_or_default();
    // SAFETY: libgit2 copies the NUL-terminated message.
    #[allow(unsafe_code)]
    unsafe {
        libgit2_sys::git_error_set_str(libgit2_sys::GIT_ERROR_NET as c_int, message.as_ptr())
    };
    -1
}

/// `io` again while a signal interrupts it, as libgit2's socket does.
fn again(mut io: impl FnMut() -> std::io::Result<usize>) -> std::io::Result<usize> {
    loop {
        match io() {
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            done => return done,
        }
    }
}

fn io_failure(what: &str, e: &std::io::Error) -> isize {
    let message = match e.kind() {
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut => {
            format!("{what} timed out")
        }
        _ => format!("could not {what} the socket: {e}"),
    };
    fail(&message) as isize
}

#[allow(unsafe_code)]
unsafe extern "C" fn connect(stream: *mut GitStream) -> c_int {
    // SAFETY: libgit2 calls this with the stream `init` made.
    let socket = unsafe { socket(stream) };
    match socket.open() {
        Ok(tcp) => {
            socket.fd = tcp.as_raw_fd();
            socket.tcp = Some(tcp);
            0
        }
        Err(message) => fail(&message),
    }
}

#[allow(unsafe_code)]
unsafe extern "C" fn read(stream: *mut GitStream, data: *mut c_void, len: usize) -> isize {
    // SAFETY: libgit2 passes its stream and a buffer of `len` bytes it owns.
    let (socket, buf) = unsafe {
        (
            socket(stream),
            std::slice::from_raw_parts_mut(data.cast::<u8>(), len),
        )
    };
    match socket.tcp.as_mut().map(|tcp| again(|| tcp.read(buf))) {
        Some(Ok(n)) => n as isize,
        Some(Err(e)) => io_failure("read from", &e),
        None => fail("read from a socket that is not connected") as isize,
    }
}

#[allow(unsafe_code)]
unsafe extern "C" fn write(
    stream: *mut GitStream,
    data: *const c_char,
    len: usize,
    _flags: c_int,
) -> isize {
    // SAFETY: libgit2 passes its stream and `len` bytes to send.
    let (socket, buf) = unsafe {
        (
            socket(stream),
            std::slice::from_raw_parts(data.cast::<u8>(), len),
        )
    };
    match socket.tcp.as_mut().map(|tcp| again(|| tcp.write(buf))) {
        Some(Ok(n)) => n as isize,
        Some(Err(e)) => io_failure("write to", &e),
        None => fail("write to a socket that is not connected") as isize,
    }
}

#[allow(unsafe_code)]
unsafe extern "C" fn close(stream: *mut GitStream) -> c_int {
    // SAFETY: libgit2 calls this with the stream `init` made.
    let socket = unsafe { socket(stream) };
    if let Some(tcp) = socket.tcp.take() {
        let _ = tcp.shutdown(Shutdown::Both);
    }
    socket.fd = -1;
    0
}

#[allow(unsafe_code)]
unsafe extern "C" fn free(stream: *mut GitStream) {
    // SAFETY: libgit2 frees each stream once, with the pointer `init` gave it.
    let socket = unsafe { Box::from_raw(stream.cast::<Socket>()) };
    // SAFETY: made by `CString::into_raw` in `init`.
    drop(unsafe {
        (
            CString::from_raw(socket.host),
            CString::from_raw(socket.port),
        )
    });
}

#[cfg(test)]
mod tests {
    /// `Socket` mirrors the head of libgit2 1.9's private `git_socket_stream`: another libgit2
    /// must be read again before this file is trusted with it (Cargo.toml pins libgit2-sys).
    #[test]
    fn the_socket_layout_was_written_for_the_libgit2_in_use() {
        assert_eq!(git2::Version::get().libgit2_version(), (1, 9, 7));
    }
}
