//! Disk images behind a VM's virtual disks. Guest devices see only the
//! [`BlockDevice`] trait: byte-addressed, synchronous (a request completes
//! before the call returns, so its effect on the guest never depends on
//! host timing — DESIGN §3.4).
//!
//! Image files go through the `imago` crate, built synchronous: [`open`]
//! serves qcow2 (v2/v3, with its backing chain opened read-only) and raw
//! files, [`create`] makes qcow2 v3 images and overlays crash-safely, and
//! [`info`] describes an image and its chain. Writers take an exclusive
//! `flock` on their file, readers a shared one.
//!
//! For snapshot trees and clones: [`allocated`] tells which ranges one
//! layer file holds itself, and [`copy`] builds a new image from a chain,
//! flattened (a full clone) or with its upper layers merged onto one of
//! its files as the new backing (deleting a snapshot's layer).

mod copy;
mod create;
mod identity;
mod image;
mod overlay;
mod qcow2_check;
mod runs;
mod size;

pub use copy::{allocated, allocated_in_own, copy, CopyStats, COPY_CHUNK};
pub use create::{create, create_over_own, CLUSTER_SIZE, MAX_VIRTUAL_SIZE};
pub use durable::crash_point;
pub use identity::{
    digest_file, Contents, DiskIdentity, FileIdentity, FileStat, IdentityMismatch, DIGEST_CHUNK,
};
pub use image::{
    info, open, probe, BackingPolicy, DiskInfo, Format, LayerInfo, OpenOptions, UnknownFormat,
    SECTOR_SIZE,
};
pub use overlay::MemOverlay;
pub use runs::Runs;
pub use size::{parse_size, SizeError};

use std::path::PathBuf;

/// Every message is one line; those about a file name it.
#[derive(Debug, thiserror::Error)]
pub enum DiskError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("request at byte {offset} (+{len}) is beyond the end of the disk ({capacity} bytes)")]
    OutOfRange {
        offset: u64,
        len: u64,
        capacity: u64,
    },
    #[error("the disk is read-only")]
    ReadOnly,
    #[error("{0}")]
    Format(String),
    #[error("{path}: not a disk image: {reason}")]
    NotAnImage { path: PathBuf, reason: String },
    #[error("{path}: corrupt image: {reason}")]
    Corrupt { path: PathBuf, reason: String },
    #[error("{path}: unsupported: {what}")]
    Unsupported { path: PathBuf, what: String },
    #[error("{path}: backing file {backing} does not exist")]
    MissingBacking { path: PathBuf, backing: PathBuf },
    #[error("{path}: backing file {backing:?} {what}")]
    Backing {
        path: PathBuf,
        backing: String,
        what: String,
    },
    #[error("{path}: the backing chain leads back to this file")]
    BackingLoop { path: PathBuf },
    #[error("{path}: in use (locked by another open of this image)")]
    Locked { path: PathBuf },
    #[error("{path} already exists; refusing to overwrite it")]
    Exists { path: PathBuf },
    #[error("invalid disk size {size} bytes: {reason}")]
    InvalidSize { size: u64, reason: String },
}

/// A virtual disk's contents.
pub trait BlockDevice: Send {
    /// Size in bytes.
    fn capacity(&self) -> u64;
    fn read_only(&self) -> bool;
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<(), DiskError>;
    fn write_at(&mut self, offset: u64, data: &[u8]) -> Result<(), DiskError>;
    /// Make every completed write durable.
    fn flush(&mut self) -> Result<(), DiskError>;
    /// The range may read back as anything afterwards (we zero it).
    fn discard(&mut self, offset: u64, len: u64) -> Result<(), DiskError>;
    /// The range reads back as zeroes afterwards.
    fn write_zeroes(&mut self, offset: u64, len: u64) -> Result<(), DiskError>;
    /// Where the bytes live, for snapshots' [`DiskIdentity`].
    fn contents(&self) -> Contents<'_>;
    /// Stop (`true`) or resume writing through this handle. A frozen
    /// image file lets other opens read it (its exclusive lock becomes a
    /// shared one): a VM bundle puts a new overlay over the image while
    /// this handle is still open, then drops it. Writes to a frozen disk
    /// fail with [`DiskError::ReadOnly`]. A disk that is read-only
    /// anyway, or has no file, has nothing to do.
    fn set_frozen(&mut self, frozen: bool) -> Result<(), DiskError> {
        let _ = frozen;
        Ok(())
    }
}

/// Check that `[offset, offset+len)` lies within `capacity`.
pub fn check_range(offset: u64, len: u64, capacity: u64) -> Result<(), DiskError> {
    match offset.checked_add(len) {
        Some(end) if end <= capacity => Ok(()),
        _ => Err(DiskError::OutOfRange {
            offset,
            len,
            capacity,
        }),
    }
}

/// An in-memory disk (tests, scratch disks).
pub struct MemDisk {
    data: Vec<u8>,
    read_only: bool,
}

impl MemDisk {
    pub fn new(capacity: usize) -> Self {
        MemDisk {
            data: vec![0; capacity],
            read_only: false,
        }
    }
    pub fn with_contents(data: Vec<u8>, read_only: bool) -> Self {
        MemDisk { data, read_only }
    }
    pub fn contents(&self) -> &[u8] {
        &self.data
    }

    fn range(&self, offset: u64, len: usize) -> Result<std::ops::Range<usize>, DiskError> {
        check_range(offset, len as u64, self.capacity())?;
        Ok(offset as usize..offset as usize + len)
    }

    fn writable(&self) -> Result<(), DiskError> {
        if self.read_only {
            Err(DiskError::ReadOnly)
        } else {
            Ok(())
        }
    }
}

impl BlockDevice for MemDisk {
    fn capacity(&self) -> u64 {
        self.data.len() as u64
    }
    fn read_only(&self) -> bool {
        self.read_only
    }
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<(), DiskError> {
        let r = self.range(offset, buf.len())?;
        buf.copy_from_slice(&self.data[r]);
        Ok(())
    }
    fn write_at(&mut self, offset: u64, data: &[u8]) -> Result<(), DiskError> {
        self.writable()?;
        let r = self.range(offset, data.len())?;
        self.data[r].copy_from_slice(data);
        Ok(())
    }
    fn flush(&mut self) -> Result<(), DiskError> {
        Ok(())
    }
    fn discard(&mut self, offset: u64, len: u64) -> Result<(), DiskError> {
        self.write_zeroes(offset, len)
    }
    fn write_zeroes(&mut self, offset: u64, len: u64) -> Result<(), DiskError> {
        self.writable()?;
        let len = usize::try_from(len).map_err(|_| DiskError::OutOfRange {
            offset,
            len,
            capacity: self.capacity(),
        })?;
        let r = self.range(offset, len)?;
        self.data[r].fill(0);
        Ok(())
    }
    fn contents(&self) -> Contents<'_> {
        Contents::Memory(&self.data)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mem_disk_reads_writes_and_rejects_out_of_range() {
        let mut d = MemDisk::new(4096);
        d.write_at(100, b"hello").unwrap();
        let mut buf = [0u8; 5];
        d.read_at(100, &mut buf).unwrap();
        assert_eq!(&buf, b"hello");
        assert!(matches!(
            d.write_at(4094, b"xyz"),
            Err(DiskError::OutOfRange { .. })
        ));
        d.write_zeroes(100, 5).unwrap();
        d.read_at(100, &mut buf).unwrap();
        assert_eq!(buf, [0; 5]);
        let mut ro = MemDisk::with_contents(vec![1; 512], true);
        assert!(matches!(ro.write_at(0, b"a"), Err(DiskError::ReadOnly)));
    }
}
