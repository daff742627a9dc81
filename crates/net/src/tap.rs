//! The TAP backend: frames go to and come from a Linux TAP interface.
//!
//! Like QEMU, opening `NAME` attaches to an existing persistent TAP of that
//! name or creates a TAP that lives as long as the VM keeps it open.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::AsFd;
use std::sync::Arc;
use std::time::Duration;

use rustix::fs::{Mode, OFlags};
use rustix::io::Errno;
use rustix::ioctl::{ioctl, opcode, Opcode, Updater};

use crate::{wait_readable, FrameRx, FrameTx};

const TUN_PATH: &str = "/dev/net/tun";

/// Why a TAP could not be opened. Every message names the TAP.
#[derive(Debug, thiserror::Error)]
pub enum TapError {
    /// No `/dev/net/tun` (the `tun` module is not loaded, or a container
    /// without the device).
    #[error("TAP {0}: /dev/net/tun does not exist (is the tun module loaded?)")]
    NoTunDevice(String),
    /// EPERM/EACCES from `/dev/net/tun` or TUNSETIFF.
    #[error("TAP {0}: permission denied (needs root or CAP_NET_ADMIN, or a persistent TAP owned by this user)")]
    PermissionDenied(String),
    /// EBUSY from TUNSETIFF: another process has the TAP open.
    #[error("TAP {0}: device busy (another process has it open)")]
    Busy(String),
    /// EINVAL from TUNSETIFF for a valid name: an interface of that name
    /// exists and is not a TAP we can attach to.
    #[error("TAP {0}: an interface of that name exists but is not a single-queue TAP device")]
    NotTap(String),
    /// Any other failure.
    #[error("TAP {name}: {what} failed: {source}")]
    Io {
        /// The TAP's name.
        name: String,
        /// What was being done.
        what: &'static str,
        /// The system's error.
        #[source]
        source: io::Error,
    },
}

/// The transmit half of a TAP.
#[derive(Debug)]
pub struct TapTx(Arc<File>);

/// The receive half of a TAP.
#[derive(Debug)]
pub struct TapRx(Arc<File>);

/// Opens (or creates) the TAP interface `name`. Both halves share one
/// file descriptor; the interface is released when both are dropped.
pub fn open(name: &str) -> Result<(TapTx, TapRx), TapError> {
    let file = Arc::new(open_file(name)?);
    Ok((TapTx(Arc::clone(&file)), TapRx(file)))
}

/// Opens (or creates) the TAP interface `name` as one non-blocking file
/// (for an event loop such as the switch's).
pub fn open_file(name: &str) -> Result<File, TapError> {
    let flags = OFlags::RDWR | OFlags::CLOEXEC | OFlags::NONBLOCK;
    let fd = rustix::fs::open(TUN_PATH, flags, Mode::empty()).map_err(|errno| match errno {
        Errno::NOENT | Errno::NXIO | Errno::NODEV => TapError::NoTunDevice(name.to_string()),
        errno => permission_or(errno, name, "opening /dev/net/tun"),
    })?;
    let file = File::from(fd);
    set_tap_interface(&file, name).map_err(|errno| match errno {
        Errno::BUSY => TapError::Busy(name.to_string()),
        Errno::INVAL => TapError::NotTap(name.to_string()),
        errno => permission_or(errno, name, "TUNSETIFF"),
    })?;
    Ok(file)
}

fn permission_or(errno: Errno, name: &str, what: &'static str) -> TapError {
    match errno {
        Errno::PERM | Errno::ACCESS => TapError::PermissionDenied(name.to_string()),
        errno => TapError::Io {
            name: name.to_string(),
            what,
            source: errno.into(),
        },
    }
}

/// `struct ifreq` as TUNSETIFF reads it: the name, then the flags at the
/// start of a union that is 24 bytes on 64-bit targets, 16 on 32-bit.
#[repr(C)]
struct IfReq {
    name: [u8; 16],
    flags: u16,
    rest: [u8; IFR_UNION_LEN - 2],
}

#[cfg(target_pointer_width = "64")]
const IFR_UNION_LEN: usize = 24;
#[cfg(target_pointer_width = "32")]
const IFR_UNION_LEN: usize = 16;

// linux/if_tun.h
const IFF_TAP: u16 = 0x0002;
const IFF_NO_PI: u16 = 0x1000;
/// `_IOW('T', 202, int)`: the kernel declares an int but reads an ifreq.
const TUNSETIFF: Opcode = opcode::write::<rustix::ffi::c_int>(b'T', 202);

/// Binds the tun file to TAP `name` (plain frames, no packet info header).
/// The caller has checked `name` is a valid interface name (see
/// [`crate::spec`]); an over-long name is reported as EINVAL here.
fn set_tap_interface(tun: &File, name: &str) -> Result<(), Errno> {
    let mut req = IfReq {
        name: [0; 16],
        flags: IFF_TAP | IFF_NO_PI,
        rest: [0; IFR_UNION_LEN - 2],
    };
    // Keep the final NUL.
    if name.len() >= req.name.len() {
        return Err(Errno::INVAL);
    }
    req.name[..name.len()].copy_from_slice(name.as_bytes());
    // SAFETY: TUNSETIFF reads and writes back one `struct ifreq`; `IfReq`
    // has its layout and size, and `req` outlives the call.
    unsafe { ioctl(tun.as_fd(), Updater::<TUNSETIFF, IfReq>::new(&mut req)) }
}

impl FrameTx for TapTx {
    /// Writes `frame` to the TAP. While the interface is down the kernel
    /// refuses every write with EIO; the frame is then dropped without an
    /// error, as a NIC whose cable leads nowhere would lose it.
    fn send(&mut self, frame: &[u8]) -> io::Result<()> {
        let written = match (&*self.0).write(frame) {
            Err(err) if err.raw_os_error() == Some(Errno::IO.raw_os_error()) => return Ok(()),
            other => other?,
        };
        if written != frame.len() {
            return Err(io::Error::new(
                io::ErrorKind::WriteZero,
                format!("TAP took {written} of {} bytes", frame.len()),
            ));
        }
        Ok(())
    }
}

impl FrameRx for TapRx {
    fn recv(&mut self, buf: &mut [u8], timeout: Duration) -> io::Result<Option<usize>> {
        if !wait_readable(&*self.0, timeout)? {
            return Ok(None);
        }
        match (&*self.0).read(buf) {
            Ok(len) => Ok(Some(len)),
            Err(err) if err.kind() == io::ErrorKind::WouldBlock => Ok(None),
            Err(err) => Err(err),
        }
    }
}
