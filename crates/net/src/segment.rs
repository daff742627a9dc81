//! The `socket=DIR` backend: a shared Ethernet segment without a switch
//! process, for tests and for VMs on one host.
//!
//! PATH is a directory (created if missing). Each NIC's port is a Unix
//! datagram socket `PATH/<mac>.sock` named after the NIC's MAC address. A
//! sent frame goes to every other socket in the directory (a hub); a port
//! receives on its own socket. Naming ports after their MAC makes a second
//! NIC with the same MAC on one segment an error instead of silent ARP
//! chaos, and lets a VM restarted after a crash reclaim its stale port.
//!
//! Sends never block: a peer whose receive queue is full loses the frame,
//! as on a congested switch port. A peer that went away without removing
//! its socket file (nobody is bound there) has the file removed.
//! Anyone who can write to PATH can join the segment.

use std::fs::{self, File};
use std::io;
use std::os::unix::fs::FileTypeExt;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rustix::fs::FlockOperation;

use crate::{wait_readable, FrameRx, FrameTx, MacAddr};

/// How long a sender trusts its list of peers before rereading the
/// directory (so that ports that joined since are reached soon).
const PEER_LIST_MAX_AGE: Duration = Duration::from_millis(200);

const PORT_SUFFIX: &str = ".sock";

/// Why a segment port could not be opened. Every message names the segment.
#[derive(Debug, thiserror::Error)]
pub enum SegmentError {
    /// A live port with this MAC is already on the segment.
    #[error(
        "socket segment {dir}: a NIC with MAC {mac} is already on this segment ({port} is in use)"
    )]
    DuplicateMac {
        /// The segment directory.
        dir: PathBuf,
        /// The MAC in question.
        mac: MacAddr,
        /// The port's socket file.
        port: PathBuf,
    },
    /// A file that is not a socket sits where the port's socket belongs.
    #[error("socket segment {dir}: {port} exists and is not a socket")]
    NotASocket {
        /// The segment directory.
        dir: PathBuf,
        /// The offending file.
        port: PathBuf,
    },
    /// Any other failure.
    #[error("socket segment {dir}: {what} failed: {source}")]
    Io {
        /// The segment directory.
        dir: PathBuf,
        /// What was being done.
        what: &'static str,
        /// The system's error.
        #[source]
        source: io::Error,
    },
}

/// The transmit half of a segment port.
#[derive(Debug)]
pub struct SegmentTx {
    dir: PathBuf,
    own_file_name: String,
    /// Unbound and non-blocking: sending never waits for a slow peer.
    socket: UnixDatagram,
    peers: Vec<PathBuf>,
    peers_read_at: Option<Instant>,
}

/// The receive half of a segment port; its socket file is removed on drop.
#[derive(Debug)]
pub struct SegmentRx {
    socket: UnixDatagram,
    path: PathBuf,
}

/// Joins the segment in directory `dir` with a port for MAC `mac`.
pub fn open(dir: &Path, mac: MacAddr) -> Result<(SegmentTx, SegmentRx), SegmentError> {
    let io_err = |what| io_error(dir, what);
    fs::create_dir_all(dir).map_err(io_err("creating the directory"))?;
    let own_file_name = port_file_name(mac);
    let path = dir.join(&own_file_name);
    let socket = bind_port(dir, &path, mac)?;
    // From here on, dropping `rx` removes the socket file.
    let rx = SegmentRx { socket, path };
    rx.socket
        .set_nonblocking(true)
        .map_err(io_err("configuring the port socket"))?;

    let socket = UnixDatagram::unbound().map_err(io_err("creating the send socket"))?;
    socket
        .set_nonblocking(true)
        .map_err(io_err("configuring the send socket"))?;
    let tx = SegmentTx {
        dir: dir.to_path_buf(),
        own_file_name,
        socket,
        peers: Vec::new(),
        peers_read_at: None,
    };
    Ok((tx, rx))
}

fn io_error(dir: &Path, what: &'static str) -> impl FnOnce(io::Error) -> SegmentError {
    let dir = dir.to_path_buf();
    move |source| SegmentError::Io { dir, what, source }
}

/// Binds the port's socket at `path`, taking over a stale one.
pub(crate) fn bind_port(
    dir: &Path,
    path: &Path,
    mac: MacAddr,
) -> Result<UnixDatagram, SegmentError> {
    let _lock = lock_dir(dir).map_err(io_error(dir, "locking the directory"))?;
    match port_state(path).map_err(io_error(dir, "checking an existing port"))? {
        PortState::Absent => {}
        PortState::Stale => {
            fs::remove_file(path).map_err(io_error(dir, "removing a stale port"))?
        }
        PortState::Live => {
            return Err(SegmentError::DuplicateMac {
                dir: dir.to_path_buf(),
                mac,
                port: path.to_path_buf(),
            })
        }
        PortState::NotASocket => {
            return Err(SegmentError::NotASocket {
                dir: dir.to_path_buf(),
                port: path.to_path_buf(),
            })
        }
    }
    UnixDatagram::bind(path).map_err(io_error(dir, "binding the port socket"))
}

/// `52-54-00-12-34-56.sock`: no ':' in file names, which some tools mind.
fn port_file_name(mac: MacAddr) -> String {
    format!("{}{PORT_SUFFIX}", mac.to_string().replace(':', "-"))
}

/// Serialises stale-port removal against ports being bound, so that a
/// port bound a moment ago is never removed as stale. Held until dropped.
fn lock_dir(dir: &Path) -> io::Result<File> {
    let handle = File::open(dir)?;
    rustix::fs::flock(&handle, FlockOperation::LockExclusive)?;
    Ok(handle)
}

enum PortState {
    Absent,
    /// A socket file nobody is bound to.
    Stale,
    Live,
    NotASocket,
}

fn port_state(path: &Path) -> io::Result<PortState> {
    let metadata = match fs::symlink_metadata(path) {
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(PortState::Absent),
        other => other?,
    };
    if !metadata.file_type().is_socket() {
        return Ok(PortState::NotASocket);
    }
    match UnixDatagram::unbound()?.connect(path) {
        Ok(()) => Ok(PortState::Live),
        Err(err) if err.kind() == io::ErrorKind::ConnectionRefused => Ok(PortState::Stale),
        Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(PortState::Absent),
        Err(err) => Err(err),
    }
}

/// Removes `path` if it is still a socket nobody is bound to. Best effort:
/// another port may be doing the same.
fn remove_if_stale(dir: &Path, path: &Path) {
    let Ok(_lock) = lock_dir(dir) else { return };
    if let Ok(PortState::Stale) = port_state(path) {
        let _ = fs::remove_file(path);
    }
}

impl SegmentTx {
    fn peers_are_current(&self) -> bool {
        self.peers_read_at
            .is_some_and(|at| at.elapsed() < PEER_LIST_MAX_AGE)
    }

    fn read_peers(&mut self) -> io::Result<()> {
        let mut peers = Vec::new();
        for entry in fs::read_dir(&self.dir)? {
            let entry = entry?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            let is_socket = entry.file_type().is_ok_and(|kind| kind.is_socket());
            if is_socket && name.ends_with(PORT_SUFFIX) && name != self.own_file_name {
                peers.push(entry.path());
            }
        }
        peers.sort();
        self.peers = peers;
        self.peers_read_at = Some(Instant::now());
        Ok(())
    }
}

impl FrameTx for SegmentTx {
    /// Delivers `frame` to every other port. Peers that are full lose it;
    /// peers that are gone are dropped from the list (and their files
    /// removed); other errors are returned after all peers were tried.
    fn send(&mut self, frame: &[u8]) -> io::Result<()> {
        if !self.peers_are_current() {
            self.read_peers()?;
        }
        let mut first_error = None;
        let mut peers_changed = false;
        for peer in &self.peers {
            match self.socket.send_to(frame, peer) {
                Ok(_) => {}
                Err(err) => match err.kind() {
                    io::ErrorKind::WouldBlock => {}
                    io::ErrorKind::NotFound => peers_changed = true,
                    io::ErrorKind::ConnectionRefused => {
                        remove_if_stale(&self.dir, peer);
                        peers_changed = true;
                    }
                    _ => {
                        first_error.get_or_insert(err);
                    }
                },
            }
        }
        if peers_changed {
            self.peers_read_at = None;
        }
        first_error.map_or(Ok(()), Err)
    }
}

impl FrameRx for SegmentRx {
    fn recv(&mut self, buf: &mut [u8], timeout: Duration) -> io::Result<Option<usize>> {
        if !wait_readable(&self.socket, timeout)? {
            return Ok(None);
        }
        match self.socket.recv(buf) {
            Ok(len) => Ok(Some(len)),
            Err(err) if err.kind() == io::ErrorKind::WouldBlock => Ok(None),
            Err(err) => Err(err),
        }
    }
}

impl Drop for SegmentRx {
    fn drop(&mut self) {
        // Nothing to report to: a leftover file is cleaned up as stale.
        let _ = fs::remove_file(&self.path);
    }
}
