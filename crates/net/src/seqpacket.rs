//! Unix `SOCK_SEQPACKET` sockets, the switch's links to its VM ports: one
//! connection per port, message boundaries kept (one message, one frame),
//! and unlike Unix datagrams no `net.unix.max_dgram_qlen` cap (10 on many
//! hosts) on what may wait: a connected pair is bounded by its socket
//! buffers in bytes. A closed connection says a port left.

use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;

use rustix::io::Errno;
use rustix::net::{AddressFamily, RecvFlags, SendFlags, SocketAddrUnix, SocketFlags, SocketType};

/// Socket buffers of each end.
const BUFFER: usize = 2 << 20;

fn socket() -> io::Result<OwnedFd> {
    let fd = rustix::net::socket_with(
        AddressFamily::UNIX,
        SocketType::SEQPACKET,
        SocketFlags::NONBLOCK | SocketFlags::CLOEXEC,
        None,
    )?;
    // Capped by net.core.[rw]mem_max; the defaults are kept if refused.
    let _ = rustix::net::sockopt::set_socket_send_buffer_size(&fd, BUFFER);
    let _ = rustix::net::sockopt::set_socket_recv_buffer_size(&fd, BUFFER);
    Ok(fd)
}

/// A listening socket bound at `path` (which must not exist).
pub fn listen(path: &Path) -> io::Result<OwnedFd> {
    let fd = socket()?;
    rustix::net::bind(&fd, &SocketAddrUnix::new(path)?)?;
    rustix::net::listen(&fd, 64)?;
    Ok(fd)
}

/// A connection to the listener at `path`.
pub fn connect(path: &Path) -> io::Result<OwnedFd> {
    let fd = socket()?;
    rustix::net::connect(&fd, &SocketAddrUnix::new(path)?)?;
    Ok(fd)
}

/// The next waiting connection, if any.
pub fn accept(listener: impl AsFd) -> io::Result<Option<OwnedFd>> {
    match rustix::net::accept_with(listener, SocketFlags::NONBLOCK | SocketFlags::CLOEXEC) {
        Ok(fd) => Ok(Some(fd)),
        Err(Errno::AGAIN) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Sends one message; `false` if the peer's queue is full (the message is
/// not sent).
pub fn send(fd: impl AsFd, message: &[u8]) -> io::Result<bool> {
    match rustix::net::send(fd, message, SendFlags::DONTWAIT | SendFlags::NOSIGNAL) {
        Ok(_) => Ok(true),
        Err(Errno::AGAIN) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// Receives one message into `buf`: `None` if none waits, `Some(0)` when
/// the peer closed (no empty messages are ever sent).
pub fn recv(fd: impl AsFd, buf: &mut [u8]) -> io::Result<Option<usize>> {
    match rustix::net::recv(fd, buf, RecvFlags::DONTWAIT) {
        Ok((len, _)) => Ok(Some(len)),
        Err(Errno::AGAIN) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// The uid of the peer process.
pub fn peer_uid(fd: impl AsFd) -> io::Result<u32> {
    Ok(rustix::net::sockopt::socket_peercred(fd)?.uid.as_raw())
}
