//! Host-side network backends for lockstep's virtio-net NICs.
//!
//! A NIC's frames leave the machine through a [`FrameTx`] and arrive
//! through a [`FrameRx`], both obtained from [`open`] for a [`NetSpec`]
//! (the `--net` command-line value):
//!
//! * `network=NAME` — a port on a named network's switch ([`port`],
//!   [`switch`], [`network`]);
//! * `tap=NAME` — a Linux TAP interface ([`tap`]);
//! * `socket=DIR` — a shared segment: every NIC naming the same directory
//!   is on one hub ([`segment`]); no privileges needed, meant for tests.
//!
//! Frames are plain Ethernet frames: no virtio-net header, no offloads.
//! Nothing here touches the machine: the caller feeds received frames to
//! the guest as input events (DESIGN §3), so host timing never reaches it.

pub mod mac;
pub mod network;
pub mod port;
pub mod segment;
mod seqpacket;
pub mod spec;
pub mod switch;
pub mod tap;

use std::io;
use std::os::fd::AsFd;
use std::time::Duration;

use rustix::event::{PollFd, PollFlags, Timespec};

pub use mac::{MacAddr, MacParseError};
pub use network::{Mode, NetworkConfig, NetworkError, Networks, Subnet, UnknownMode};
pub use port::{NetworkAccess, PortError};
pub use segment::SegmentError;
pub use spec::{Backend, NetSpec, SpecError};
pub use tap::TapError;

/// A receive buffer of this size holds any frame a backend can deliver
/// (a 64 KiB IP packet plus Ethernet and VLAN headers).
pub const MAX_FRAME_LEN: usize = 65550;

/// The transmit half of a backend.
pub trait FrameTx: Send {
    /// Sends one Ethernet frame. An error concerns this frame only: the
    /// caller may drop the frame and carry on.
    fn send(&mut self, frame: &[u8]) -> io::Result<()>;
}

/// The receive half of a backend.
pub trait FrameRx: Send {
    /// Waits up to `timeout` for one frame and copies it into `buf`,
    /// returning its length, or `None` if none arrived in time (so that a
    /// reader thread can check a stop flag). A frame longer than `buf` is
    /// truncated; a buffer of [`MAX_FRAME_LEN`] bytes avoids that.
    fn recv(&mut self, buf: &mut [u8], timeout: Duration) -> io::Result<Option<usize>>;
}

/// Why a backend could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    /// The TAP backend failed.
    #[error(transparent)]
    Tap(#[from] TapError),
    /// The socket segment backend failed.
    #[error(transparent)]
    Segment(#[from] SegmentError),
    /// Joining a named network failed.
    #[error(transparent)]
    Port(#[from] PortError),
}

/// The two halves of an opened backend.
pub type FramePair = (Box<dyn FrameTx>, Box<dyn FrameRx>);

/// Opens the backend `spec` names for a NIC whose address is `mac`.
///
/// `mac` is the guest NIC's address (the spec's, or a derived one); the
/// socket segment and the network switch name the NIC's port after it,
/// TAP does not need it. `networks` lets NICs join named networks; without
/// it `network=` is refused.
pub fn open(
    spec: &NetSpec,
    mac: MacAddr,
    networks: Option<&NetworkAccess>,
) -> Result<FramePair, NetError> {
    match &spec.backend {
        Backend::Network { name } => {
            let access = networks.ok_or_else(|| PortError::Unsupported(name.clone()))?;
            let (tx, rx) = port::open(access, name, mac)?;
            Ok((Box::new(tx), Box::new(rx)))
        }
        Backend::Tap { name } => {
            let (tx, rx) = tap::open(name)?;
            Ok((Box::new(tx), Box::new(rx)))
        }
        Backend::Socket { path } => {
            let (tx, rx) = segment::open(path, mac)?;
            Ok((Box::new(tx), Box::new(rx)))
        }
    }
}

/// Waits up to `timeout` for `fd` to become readable. An interrupted wait
/// counts as a timeout: the caller polls again anyway.
fn wait_readable(fd: impl AsFd, timeout: Duration) -> io::Result<bool> {
    // Durations beyond what a timespec holds are as good as forever.
    let timeout = Timespec::try_from(timeout).ok();
    let mut fds = [PollFd::new(&fd, PollFlags::IN)];
    match rustix::event::poll(&mut fds, timeout.as_ref()) {
        Ok(ready) => Ok(ready > 0),
        Err(rustix::io::Errno::INTR) => Ok(false),
        Err(errno) => Err(errno.into()),
    }
}
