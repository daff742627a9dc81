//! What a snapshot records about a disk, so that restore can tell whether
//! the disk offered to it is the one the snapshot froze, unchanged (disk
//! contents are machine state: DESIGN §3.5).
//!
//! An image disk is identified by every file of its chain (the image, then
//! its backing files), each by:
//! - its canonical path;
//! - a stat fingerprint: device, inode, length, mtime and ctime. Any write
//!   through the file system moves ctime, which (unlike mtime) no user can
//!   set back, and a replaced file has another inode;
//! - a blake3 digest of its bytes, taken at save.
//!
//! Checking trusts an unchanged path + fingerprint without reading the file
//! (microseconds: restore stays fast) and falls back to re-hashing a file
//! whose fingerprint moved, so a bundle copied or moved to another place
//! (new inode, new times, same bytes) still restores, while one whose bytes
//! differ is refused. Digesting the bytes rather than qcow2 metadata is what
//! makes that fallback sound: metadata does not change when a cluster is
//! rewritten in place. The cost is one read of each file per save; holes
//! (SEEK_HOLE) and all-zero chunks are not hashed byte by byte.
//!
//! An in-memory disk has no file: its digest of the contents is all there is.

use crate::{BackingPolicy, BlockDevice, DiskError, Format, OpenOptions};
use serde::{Deserialize, Serialize};
use std::fs::File;
use std::io;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// Files are digested in chunks of this size (the digest is the blake3 of
/// the chunk digests, so holes and zero chunks need no hashing).
pub const DIGEST_CHUNK: u64 = 1 << 20;

/// Where a disk's bytes live.
pub enum Contents<'a> {
    /// Image files, the image itself first, then its backing files, with
    /// the image's pinned format and the backing names it may follow
    /// (what it takes to open it again the same way).
    Files {
        files: &'a [PathBuf],
        format: Format,
        backing: BackingPolicy,
    },
    /// Guest-visible contents held in memory.
    Memory(&'a [u8]),
}

/// A disk as a snapshot recorded it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum DiskIdentity {
    Files {
        capacity: u64,
        /// The image's format as it was pinned when opened (a restore
        /// opens it the same way, never probing).
        format: Format,
        backing: BackingPolicy,
        /// The image first, then its backing files, nearest first.
        layers: Vec<FileIdentity>,
    },
    Memory {
        capacity: u64,
        digest: [u8; 32],
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileIdentity {
    pub path: PathBuf,
    pub stat: FileStat,
    pub digest: [u8; 32],
}

/// What the file system says about a file; equal fingerprints mean the
/// file was neither replaced nor written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileStat {
    pub len: u64,
    pub dev: u64,
    pub ino: u64,
    /// (seconds, nanoseconds) since the epoch.
    pub mtime: (i64, i64),
    pub ctime: (i64, i64),
}

/// Why a disk is not the one a snapshot recorded. One line each.
#[derive(Debug, thiserror::Error)]
pub enum IdentityMismatch {
    #[error("its capacity is {now} bytes, the snapshot recorded {recorded}")]
    Capacity { recorded: u64, now: u64 },
    #[error("it is {now}, the snapshot recorded {recorded}")]
    Kind {
        recorded: &'static str,
        now: &'static str,
    },
    #[error("it is opened as {now}, the snapshot recorded {recorded}")]
    Format { recorded: Format, now: Format },
    #[error("its chain has {now} files, the snapshot recorded {recorded}")]
    ChainLength { recorded: usize, now: usize },
    #[error("{path} is {now} bytes long, the snapshot recorded {recorded}")]
    Length {
        path: PathBuf,
        recorded: u64,
        now: u64,
    },
    #[error("{path} has other contents than {recorded} had when the snapshot was taken")]
    Contents { path: PathBuf, recorded: PathBuf },
    #[error("{path} is not an empty new layer over the snapshot's disk: it holds data")]
    NewTopNotEmpty { path: PathBuf },
    #[error("the in-memory contents differ from the snapshot's")]
    MemoryContents,
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
}

impl DiskIdentity {
    /// The identity of `disk` now, reading every byte. Flush it first.
    pub fn of(disk: &dyn BlockDevice) -> Result<Self, DiskError> {
        let capacity = disk.capacity();
        Ok(match disk.contents() {
            Contents::Memory(data) => DiskIdentity::Memory {
                capacity,
                digest: *blake3::hash(data).as_bytes(),
            },
            Contents::Files {
                files: paths,
                format,
                backing,
            } => DiskIdentity::Files {
                capacity,
                format,
                backing,
                layers: paths
                    .iter()
                    .map(|p| file_identity(p).map_err(|source| io_err(p, source)))
                    .collect::<Result<_, _>>()?,
            },
        })
    }

    /// Check that `disk` is the disk this identity describes, unchanged.
    /// A file with the recorded path and fingerprint is trusted without
    /// reading it unless `rehash`; any other is digested and compared.
    pub fn check(&self, disk: &dyn BlockDevice, rehash: bool) -> Result<(), IdentityMismatch> {
        self.check_with(disk, rehash, false)
    }

    /// Like [`DiskIdentity::check`], but `disk` may also be the recorded
    /// disk with one more layer on top that holds no data yet (the new
    /// overlay a VM bundle runs on after going back to a snapshot): it
    /// reads exactly like the recorded disk.
    pub fn check_allowing_new_top(
        &self,
        disk: &dyn BlockDevice,
        rehash: bool,
    ) -> Result<(), IdentityMismatch> {
        self.check_with(disk, rehash, true)
    }

    fn check_with(
        &self,
        disk: &dyn BlockDevice,
        rehash: bool,
        new_top: bool,
    ) -> Result<(), IdentityMismatch> {
        if disk.capacity() != self.capacity() {
            return Err(IdentityMismatch::Capacity {
                recorded: self.capacity(),
                now: disk.capacity(),
            });
        }
        match (self, disk.contents()) {
            (DiskIdentity::Memory { digest, .. }, Contents::Memory(data)) => {
                (blake3::hash(data).as_bytes() == digest)
                    .then_some(())
                    .ok_or(IdentityMismatch::MemoryContents)
            }
            (
                DiskIdentity::Files {
                    layers,
                    format: recorded,
                    ..
                },
                Contents::Files {
                    files: paths,
                    format,
                    ..
                },
            ) => {
                if *recorded != format {
                    return Err(IdentityMismatch::Format {
                        recorded: *recorded,
                        now: format,
                    });
                }
                let below = match paths.split_first() {
                    Some((top, rest)) if new_top && rest.len() == layers.len() => {
                        check_empty_layer(top, format)?;
                        rest
                    }
                    _ => paths,
                };
                if layers.len() != below.len() {
                    return Err(IdentityMismatch::ChainLength {
                        recorded: layers.len(),
                        now: paths.len(),
                    });
                }
                layers
                    .iter()
                    .zip(below)
                    .try_for_each(|(layer, path)| layer.check(path, rehash))
            }
            (recorded, now) => Err(IdentityMismatch::Kind {
                recorded: recorded.kind(),
                now: match now {
                    Contents::Files { .. } => "an image file",
                    Contents::Memory(_) => "an in-memory disk",
                },
            }),
        }
    }

    pub fn capacity(&self) -> u64 {
        match self {
            DiskIdentity::Files { capacity, .. } | DiskIdentity::Memory { capacity, .. } => {
                *capacity
            }
        }
    }

    /// How to open the image file again as it was, if the disk is one.
    pub fn open_options(&self, read_only: bool) -> Option<OpenOptions> {
        match self {
            DiskIdentity::Files {
                format, backing, ..
            } => Some(OpenOptions {
                format: *format,
                read_only,
                backing: *backing,
            }),
            DiskIdentity::Memory { .. } => None,
        }
    }

    /// The image file, if the disk is one.
    pub fn path(&self) -> Option<&Path> {
        match self {
            DiskIdentity::Files { layers, .. } => layers.first().map(|l| l.path.as_path()),
            DiskIdentity::Memory { .. } => None,
        }
    }

    fn kind(&self) -> &'static str {
        match self {
            DiskIdentity::Files { .. } => "an image file",
            DiskIdentity::Memory { .. } => "an in-memory disk",
        }
    }
}

impl FileIdentity {
    fn check(&self, path: &Path, rehash: bool) -> Result<(), IdentityMismatch> {
        let io = |source| IdentityMismatch::Io {
            path: path.to_path_buf(),
            source,
        };
        let file = File::open(path).map_err(io)?;
        let stat = FileStat::of(&file).map_err(io)?;
        if stat.len != self.stat.len {
            return Err(IdentityMismatch::Length {
                path: path.to_path_buf(),
                recorded: self.stat.len,
                now: stat.len,
            });
        }
        if !rehash && stat == self.stat && path == self.path {
            return Ok(());
        }
        if digest_file(&file, stat.len).map_err(io)? != self.digest {
            return Err(IdentityMismatch::Contents {
                path: path.to_path_buf(),
                recorded: self.path.clone(),
            });
        }
        Ok(())
    }
}

impl FileStat {
    pub fn of(file: &File) -> io::Result<Self> {
        let m = file.metadata()?;
        Ok(FileStat {
            len: m.len(),
            dev: m.dev(),
            ino: m.ino(),
            mtime: (m.mtime(), m.mtime_nsec()),
            ctime: (m.ctime(), m.ctime_nsec()),
        })
    }
}

/// A new top layer must hold nothing yet: it then reads as what it stands on.
fn check_empty_layer(top: &Path, format: Format) -> Result<(), IdentityMismatch> {
    let data = crate::allocated_in_own(top, format).map_err(|e| IdentityMismatch::Io {
        path: top.to_path_buf(),
        source: io::Error::other(e.to_string()),
    })?;
    if data.is_empty() {
        Ok(())
    } else {
        Err(IdentityMismatch::NewTopNotEmpty {
            path: top.to_path_buf(),
        })
    }
}

fn io_err(path: &Path, source: io::Error) -> DiskError {
    DiskError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn file_identity(path: &Path) -> io::Result<FileIdentity> {
    let file = File::open(path)?;
    let stat = FileStat::of(&file)?;
    let digest = digest_file(&file, stat.len)?;
    Ok(FileIdentity {
        path: path.to_path_buf(),
        stat,
        digest,
    })
}

/// blake3 over (length, digest of each chunk); a chunk that is a hole or
/// all zero has the precomputed zero-chunk digest, so the result does not
/// depend on how sparse the file is.
pub fn digest_file(file: &File, len: u64) -> io::Result<[u8; 32]> {
    let mut outer = blake3::Hasher::new();
    outer.update(&len.to_le_bytes());
    let mut buf = vec![0u8; DIGEST_CHUNK as usize];
    let mut offset = 0;
    while offset < len {
        let n = (len - offset).min(DIGEST_CHUNK);
        let chunk = &mut buf[..n as usize];
        let digest = if has_data(file, offset, n)? {
            file.read_exact_at(chunk, offset)?;
            chunk_digest(chunk)
        } else {
            zero_chunk_digest(n)
        };
        outer.update(&digest);
        offset += n;
    }
    Ok(*outer.finalize().as_bytes())
}

/// Whether `[offset, offset+len)` holds any data extent (SEEK_DATA). File
/// systems without hole support report everything as data.
fn has_data(file: &File, offset: u64, len: u64) -> io::Result<bool> {
    match rustix::fs::seek(file, rustix::fs::SeekFrom::Data(offset)) {
        Ok(next) => Ok(next < offset + len),
        Err(rustix::io::Errno::NXIO) => Ok(false), // no data from here on
        Err(e) => Err(e.into()),
    }
}

fn chunk_digest(chunk: &[u8]) -> [u8; 32] {
    if chunk.iter().fold(0u8, |acc, &b| acc | b) == 0 {
        zero_chunk_digest(chunk.len() as u64)
    } else {
        *blake3::hash(chunk).as_bytes()
    }
}

fn zero_chunk_digest(len: u64) -> [u8; 32] {
    static FULL: OnceLock<[u8; 32]> = OnceLock::new();
    let hash_zeroes = |n: u64| *blake3::hash(&vec![0u8; n as usize]).as_bytes();
    if len == DIGEST_CHUNK {
        *FULL.get_or_init(|| hash_zeroes(DIGEST_CHUNK))
    } else {
        hash_zeroes(len) // only the last chunk of a file is short
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MemDisk;
    use std::io::Write;

    fn digest_of(bytes: &[u8], sparse_tail: u64) -> [u8; 32] {
        let mut f = tempfile::tempfile().unwrap();
        f.write_all(bytes).unwrap();
        let len = bytes.len() as u64 + sparse_tail;
        f.set_len(len).unwrap();
        digest_file(&f, len).unwrap()
    }

    #[test]
    fn file_digest_ignores_sparseness_but_not_contents() {
        let mut data = vec![0u8; 3 * DIGEST_CHUNK as usize + 512];
        data[5] = 1;
        let dense = digest_of(&data, 0);
        // The same bytes with the zero tail as a hole.
        let sparse = digest_of(
            &data[..DIGEST_CHUNK as usize],
            data.len() as u64 - DIGEST_CHUNK,
        );
        assert_eq!(dense, sparse);
        data[3 * DIGEST_CHUNK as usize + 100] = 7;
        assert_ne!(digest_of(&data, 0), dense);
        data[3 * DIGEST_CHUNK as usize + 100] = 0;
        data.push(0);
        assert_ne!(digest_of(&data, 0), dense, "the length is digested");
    }

    #[test]
    fn memory_disk_identity_follows_its_contents() {
        let mut disk = MemDisk::new(4096);
        let id = DiskIdentity::of(&disk).unwrap();
        assert_eq!(id.path(), None);
        id.check(&disk, false).unwrap();
        disk.write_at(10, b"x").unwrap();
        assert!(matches!(
            id.check(&disk, false),
            Err(IdentityMismatch::MemoryContents)
        ));
        let bigger = MemDisk::new(8192);
        assert!(matches!(
            id.check(&bigger, false),
            Err(IdentityMismatch::Capacity {
                recorded: 4096,
                now: 8192
            })
        ));
    }
}
