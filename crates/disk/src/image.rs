//! Opening image files (qcow2 with its backing chain, or raw) through
//! `imago`'s synchronous build, and describing them.

use crate::{check_range, BlockDevice, Contents, DiskError};
use imago::file::File as ImagoFile;
use imago::qcow2::Qcow2;
use imago::raw::Raw;
use imago::FormatAccess;
use rustix::fs::{flock, FlockOperation};
use std::collections::BTreeSet;
use std::fmt;
use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// Raw images must hold whole sectors.
pub const SECTOR_SIZE: u64 = 512;
/// Longest backing chain we follow (a longer one is almost surely a loop
/// that canonical paths did not reveal, or a mistake).
const MAX_CHAIN_DEPTH: usize = 256;

const QCOW2_MAGIC: [u8; 4] = *b"QFI\xfb";
/// qcow2 incompatible-feature bits (qcow2 spec, header bytes 72..80).
const INCOMPAT_DIRTY: u64 = 1 << 0;
const INCOMPAT_CORRUPT: u64 = 1 << 1;
const INCOMPAT_DATA_FILE: u64 = 1 << 2;
const INCOMPAT_COMPRESSION: u64 = 1 << 3;
const INCOMPAT_EXTENDED_L2: u64 = 1 << 4;

/// Magic numbers of image formats we do not read, for a better message than
/// "treated as raw".
const FOREIGN_MAGICS: &[(&[u8], &str)] = &[
    (b"KDMV", "VMDK"),
    (b"# Disk DescriptorFile", "VMDK descriptor"),
    (b"vhdxfile", "VHDX"),
    (b"conectix", "VHD"),
    (b"QED\0", "QED"),
];
/// VDI keeps its signature at byte 64.
const VDI_SIGNATURE: (usize, [u8; 4]) = (64, [0x7f, 0x10, 0xda, 0xbe]);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Qcow2,
    Raw,
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl Format {
    /// The name qcow2 headers and qemu-img use.
    pub fn name(self) -> &'static str {
        match self {
            Format::Qcow2 => "qcow2",
            Format::Raw => "raw",
        }
    }
}

/// One file of an image's chain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LayerInfo {
    pub path: PathBuf,
    pub format: Format,
    pub virtual_size: u64,
    /// qcow2 only.
    pub cluster_size: Option<u64>,
    /// Bytes the file occupies on the host filesystem.
    pub allocated_bytes: u64,
    /// The backing file name exactly as the header records it.
    pub backing_name: Option<String>,
}

/// What `lockstep disk info` shows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DiskInfo {
    pub path: PathBuf,
    pub format: Format,
    pub virtual_size: u64,
    pub cluster_size: Option<u64>,
    pub allocated_bytes: u64,
    /// The backing files, nearest first (empty without a backing file).
    pub backing_chain: Vec<LayerInfo>,
}

/// Open a disk image, detecting qcow2 by its magic and treating anything
/// else as raw. A qcow2 image's backing files are opened read-only.
pub fn open(path: &Path, read_only: bool) -> Result<Box<dyn BlockDevice>, DiskError> {
    let chain = open_chain(path, !read_only)?;
    let files = chain
        .layers
        .iter()
        .map(|l| {
            std::fs::canonicalize(&l.path).map_err(|source| DiskError::Io {
                path: l.path.clone(),
                source,
            })
        })
        .collect::<Result<_, _>>()?;
    Ok(Box::new(ImageDisk {
        capacity: chain.image.size(),
        image: chain.image,
        path: path.to_path_buf(),
        files,
        read_only,
    }))
}

/// Describe an image and its backing chain (opened read-only, fully
/// validated, nothing changed).
pub fn info(path: &Path) -> Result<DiskInfo, DiskError> {
    let chain = open_chain(path, false)?;
    let mut layers = chain.layers.into_iter();
    let top = layers
        .next()
        .ok_or_else(|| DiskError::Format(format!("{}: no image opened", path.display())))?;
    Ok(DiskInfo {
        path: top.path,
        format: top.format,
        virtual_size: top.virtual_size,
        cluster_size: top.cluster_size,
        allocated_bytes: top.allocated_bytes,
        backing_chain: layers.collect(),
    })
}

/// An opened image and the description of every file in its chain.
pub(crate) struct Chain {
    pub image: FormatAccess<ImagoFile>,
    /// The image itself first, then its backing files, nearest first.
    pub layers: Vec<LayerInfo>,
}

pub(crate) fn open_chain(path: &Path, writable: bool) -> Result<Chain, DiskError> {
    let mut seen = BTreeSet::new();
    let mut layers = Vec::new();
    let image = open_layer(path, writable, None, &mut seen, &mut layers)?;
    Ok(Chain { image, layers })
}

/// Open one file of a chain and, recursively, everything below it.
/// `expected` is the format the overlay above recorded for it, if any.
fn open_layer(
    path: &Path,
    writable: bool,
    expected: Option<Format>,
    seen: &mut BTreeSet<PathBuf>,
    layers: &mut Vec<LayerInfo>,
) -> Result<FormatAccess<ImagoFile>, DiskError> {
    let io_err = |source| DiskError::Io {
        path: path.to_path_buf(),
        source,
    };
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(writable)
        .open(path)
        .map_err(io_err)?;
    let meta = file.metadata().map_err(io_err)?;
    if !meta.is_file() {
        return Err(not_image(path, "not a regular file"));
    }
    // Before locking: a loop back to a writable top would look "locked".
    if !seen.insert(std::fs::canonicalize(path).map_err(io_err)?) {
        return Err(DiskError::BackingLoop {
            path: path.to_path_buf(),
        });
    }
    lock(&file, writable, path)?;
    if layers.len() >= MAX_CHAIN_DEPTH {
        return Err(DiskError::Unsupported {
            path: path.to_path_buf(),
            what: format!("backing chains deeper than {MAX_CHAIN_DEPTH} files"),
        });
    }

    let head = read_head(&file, path)?;
    let format = match expected {
        Some(Format::Raw) => Format::Raw,
        Some(Format::Qcow2) | None => detect(path, &head, meta.len())?,
    };
    if expected == Some(Format::Qcow2) && format != Format::Qcow2 {
        return Err(not_image(
            path,
            "the overlay records it as qcow2 but it has no qcow2 header",
        ));
    }
    if format == Format::Qcow2 && writable {
        Qcow2Header::parse(path, &head, meta.len())?;
        crate::qcow2_check::check_for_writing(path, &file, &head, meta.len())?;
    }
    let storage = ImagoFile::try_from(file).map_err(io_err)?;
    match format {
        Format::Raw => open_raw(path, storage, writable, &meta, layers),
        Format::Qcow2 => {
            let header = Qcow2Header::parse(path, &head, meta.len())?;
            header.check_supported(path, writable)?;
            open_qcow2(
                path,
                storage,
                writable,
                &header,
                meta.blocks(),
                seen,
                layers,
            )
        }
    }
}

fn open_raw(
    path: &Path,
    storage: ImagoFile,
    writable: bool,
    meta: &std::fs::Metadata,
    layers: &mut Vec<LayerInfo>,
) -> Result<FormatAccess<ImagoFile>, DiskError> {
    check_raw_size(path, meta.len())?;
    let raw = Raw::open_image(storage, writable).map_err(|e| imago_err(path, e))?;
    layers.push(LayerInfo {
        path: path.to_path_buf(),
        format: Format::Raw,
        virtual_size: meta.len(),
        cluster_size: None,
        allocated_bytes: meta.blocks() * 512,
        backing_name: None,
    });
    Ok(FormatAccess::new(raw))
}

fn open_qcow2(
    path: &Path,
    storage: ImagoFile,
    writable: bool,
    header: &Qcow2Header,
    blocks: u64,
    seen: &mut BTreeSet<PathBuf>,
    layers: &mut Vec<LayerInfo>,
) -> Result<FormatAccess<ImagoFile>, DiskError> {
    let mut qcow2: Qcow2<ImagoFile> =
        Qcow2::open_image(storage, writable).map_err(|e| imago_err(path, e))?;
    // External data files are refused in check_supported(); say so again
    // so imago never opens a file the header names.
    qcow2.set_data_file(None);
    let backing_name = qcow2.implicit_backing_file().cloned();
    let backing_format = qcow2.implicit_backing_format().cloned();
    layers.push(LayerInfo {
        path: path.to_path_buf(),
        format: Format::Qcow2,
        virtual_size: qcow2_size(&qcow2),
        cluster_size: Some(header.cluster_size()),
        allocated_bytes: blocks * 512,
        backing_name: backing_name.clone(),
    });
    let backing = match backing_name {
        None => None,
        Some(name) => {
            let expected = backing_format_of(path, backing_format.as_deref())?;
            let backing_path = resolve_backing(path, &name);
            if !backing_path.exists() {
                return Err(DiskError::MissingBacking {
                    path: path.to_path_buf(),
                    backing: backing_path,
                });
            }
            Some(open_layer(&backing_path, false, expected, seen, layers)?)
        }
    };
    qcow2.set_backing(backing);
    Ok(FormatAccess::new(qcow2))
}

fn qcow2_size(qcow2: &Qcow2<ImagoFile>) -> u64 {
    use imago::format::drivers::FormatDriverInstance;
    qcow2.size()
}

/// The backing format an overlay recorded; `None` means "probe it".
fn backing_format_of(path: &Path, recorded: Option<&str>) -> Result<Option<Format>, DiskError> {
    match recorded {
        None => Ok(None),
        Some("qcow2") => Ok(Some(Format::Qcow2)),
        Some("raw") | Some("file") => Ok(Some(Format::Raw)),
        Some(other) => Err(DiskError::Unsupported {
            path: path.to_path_buf(),
            what: format!("backing file format {other:?}"),
        }),
    }
}

/// Backing names are relative to the directory of the image naming them.
fn resolve_backing(image: &Path, name: &str) -> PathBuf {
    let name = Path::new(name);
    if name.is_absolute() {
        return name.to_path_buf();
    }
    match image.parent() {
        Some(dir) => dir.join(name),
        None => name.to_path_buf(),
    }
}

/// Writers hold an exclusive lock, readers a shared one, so two VMs (or a
/// VM and `lockstep disk`) cannot write one image at once, nor write a file
/// that another chain reads.
fn lock(file: &File, writable: bool, path: &Path) -> Result<(), DiskError> {
    let op = if writable {
        FlockOperation::NonBlockingLockExclusive
    } else {
        FlockOperation::NonBlockingLockShared
    };
    flock(file, op).map_err(|e| {
        if e == rustix::io::Errno::WOULDBLOCK {
            DiskError::Locked {
                path: path.to_path_buf(),
            }
        } else {
            DiskError::Io {
                path: path.to_path_buf(),
                source: e.into(),
            }
        }
    })
}

/// Bytes of the file's start that format detection looks at.
const HEAD_LEN: usize = 112;

fn read_head(file: &File, path: &Path) -> Result<Vec<u8>, DiskError> {
    let mut head = Vec::with_capacity(HEAD_LEN);
    file.take(HEAD_LEN as u64)
        .read_to_end(&mut head)
        .map_err(|source| DiskError::Io {
            path: path.to_path_buf(),
            source,
        })?;
    Ok(head)
}

fn detect(path: &Path, head: &[u8], len: u64) -> Result<Format, DiskError> {
    if head.starts_with(&QCOW2_MAGIC) {
        return Ok(Format::Qcow2);
    }
    if let Some((_, name)) = FOREIGN_MAGICS.iter().find(|(m, _)| head.starts_with(m)) {
        return Err(unsupported_format(path, name));
    }
    let (at, sig) = VDI_SIGNATURE;
    if head.get(at..at + sig.len()) == Some(&sig[..]) {
        return Err(unsupported_format(path, "VDI"));
    }
    check_raw_size(path, len)?;
    Ok(Format::Raw)
}

fn unsupported_format(path: &Path, name: &str) -> DiskError {
    DiskError::Unsupported {
        path: path.to_path_buf(),
        what: format!("image format {name} (convert it with `qemu-img convert -O qcow2`)"),
    }
}

fn check_raw_size(path: &Path, len: u64) -> Result<(), DiskError> {
    if len == 0 {
        return Err(not_image(path, "the file is empty"));
    }
    if !len.is_multiple_of(SECTOR_SIZE) {
        return Err(not_image(
            path,
            &format!("no qcow2 header, and its size ({len} bytes) is not a whole number of {SECTOR_SIZE}-byte sectors"),
        ));
    }
    Ok(())
}

fn not_image(path: &Path, reason: &str) -> DiskError {
    DiskError::NotAnImage {
        path: path.to_path_buf(),
        reason: reason.to_string(),
    }
}

/// imago reports malformed metadata as `InvalidData`; anything else is I/O.
pub(crate) fn imago_err(path: &Path, e: io::Error) -> DiskError {
    if e.kind() == io::ErrorKind::InvalidData {
        DiskError::Corrupt {
            path: path.to_path_buf(),
            reason: e.to_string(),
        }
    } else {
        DiskError::Io {
            path: path.to_path_buf(),
            source: e,
        }
    }
}

/// The qcow2 header fields we check before handing the file to imago, so
/// that what we cannot serve is refused with a clear reason (imago leaves
/// the encryption and snapshot fields alone).
struct Qcow2Header {
    cluster_bits: u32,
    crypt_method: u32,
    nb_snapshots: u32,
    incompatible: u64,
}

fn be32(b: &[u8], at: usize) -> u32 {
    let mut v = [0; 4];
    v.copy_from_slice(&b[at..at + 4]);
    u32::from_be_bytes(v)
}

fn be64(b: &[u8], at: usize) -> u64 {
    let mut v = [0; 8];
    v.copy_from_slice(&b[at..at + 8]);
    u64::from_be_bytes(v)
}

/// Header sizes: v2 ends at byte 72, v3 at 104 (at least).
const V2_HEADER_LEN: usize = 72;
const V3_HEADER_LEN: usize = 104;

impl Qcow2Header {
    fn parse(path: &Path, head: &[u8], len: u64) -> Result<Self, DiskError> {
        let truncated = || DiskError::Corrupt {
            path: path.to_path_buf(),
            reason: format!("qcow2 header truncated (the file is {len} bytes)"),
        };
        if head.len() < 8 {
            return Err(truncated());
        }
        let version = be32(head, 4);
        let needed = match version {
            2 => V2_HEADER_LEN,
            3 => V3_HEADER_LEN,
            v => {
                return Err(DiskError::Unsupported {
                    path: path.to_path_buf(),
                    what: format!("qcow2 version {v} (only 2 and 3 are)"),
                })
            }
        };
        if head.len() < needed {
            return Err(truncated());
        }
        Ok(Qcow2Header {
            cluster_bits: be32(head, 20),
            crypt_method: be32(head, 32),
            nb_snapshots: be32(head, 60),
            incompatible: if version >= 3 { be64(head, 72) } else { 0 },
        })
    }

    fn cluster_size(&self) -> u64 {
        1u64.checked_shl(self.cluster_bits).unwrap_or(0)
    }

    fn check_supported(&self, path: &Path, writable: bool) -> Result<(), DiskError> {
        let refuse = |what: &str| {
            Err(DiskError::Unsupported {
                path: path.to_path_buf(),
                what: what.to_string(),
            })
        };
        if self.crypt_method != 0 {
            return refuse("encrypted qcow2 images");
        }
        if self.incompatible & INCOMPAT_CORRUPT != 0 {
            return Err(DiskError::Corrupt {
                path: path.to_path_buf(),
                reason: "the image is marked corrupt (try `qemu-img check -r all`)".into(),
            });
        }
        if self.incompatible & INCOMPAT_DIRTY != 0 {
            return refuse(
                "qcow2 images left dirty by lazy refcounts (repair with `qemu-img check -r all`)",
            );
        }
        if self.incompatible & INCOMPAT_DATA_FILE != 0 {
            return refuse("qcow2 external data files");
        }
        if self.incompatible & INCOMPAT_COMPRESSION != 0 {
            return refuse("qcow2 compression types other than zlib");
        }
        if self.incompatible & INCOMPAT_EXTENDED_L2 != 0 {
            return refuse("qcow2 extended L2 entries (subclusters)");
        }
        let known = INCOMPAT_DIRTY
            | INCOMPAT_CORRUPT
            | INCOMPAT_DATA_FILE
            | INCOMPAT_COMPRESSION
            | INCOMPAT_EXTENDED_L2;
        if self.incompatible & !known != 0 {
            return refuse(&format!(
                "qcow2 incompatible features {:#x}",
                self.incompatible & !known
            ));
        }
        if writable && self.nb_snapshots != 0 {
            return refuse("writing qcow2 images with internal snapshots (open read-only, or delete them with `qemu-img snapshot -d`)");
        }
        Ok(())
    }
}

/// A [`BlockDevice`] over an imago image (qcow2 chain or raw file).
struct ImageDisk {
    image: FormatAccess<ImagoFile>,
    path: PathBuf,
    /// Canonical paths of the image and its backing files, nearest first.
    files: Vec<PathBuf>,
    capacity: u64,
    read_only: bool,
}

impl ImageDisk {
    fn io(&self, e: io::Error) -> DiskError {
        imago_err(&self.path, e)
    }

    /// qcow2 v2 has no zero clusters (imago refuses before changing
    /// anything), so zeroes are written as data.
    fn write_zero_data(&mut self, mut offset: u64, len: u64) -> Result<(), DiskError> {
        const CHUNK: u64 = 256 * 1024;
        let zeroes = vec![0u8; CHUNK.min(len) as usize];
        let end = offset + len; // in range: checked by the caller
        while offset < end {
            let n = (end - offset).min(CHUNK) as usize;
            self.image
                .write(&zeroes[..n], offset)
                .map_err(|e| self.io(e))?;
            offset += n as u64;
        }
        Ok(())
    }

    fn writable(&self, offset: u64, len: u64) -> Result<(), DiskError> {
        if self.read_only {
            return Err(DiskError::ReadOnly);
        }
        check_range(offset, len, self.capacity)
    }
}

impl BlockDevice for ImageDisk {
    fn capacity(&self) -> u64 {
        self.capacity
    }
    fn read_only(&self) -> bool {
        self.read_only
    }
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<(), DiskError> {
        check_range(offset, buf.len() as u64, self.capacity)?;
        self.image.read(buf, offset).map_err(|e| self.io(e))
    }
    fn write_at(&mut self, offset: u64, data: &[u8]) -> Result<(), DiskError> {
        self.writable(offset, data.len() as u64)?;
        self.image.write(data, offset).map_err(|e| self.io(e))
    }
    fn flush(&mut self) -> Result<(), DiskError> {
        if self.read_only {
            return Ok(());
        }
        // flush() writes imago's cached metadata; sync() makes it durable.
        self.image.flush().map_err(|e| self.io(e))?;
        self.image.sync().map_err(|e| self.io(e))
    }
    fn discard(&mut self, offset: u64, len: u64) -> Result<(), DiskError> {
        self.writable(offset, len)?;
        // Zero rather than "anything": what the guest reads back must not
        // depend on the host (e.g. whether the backing file shows through).
        match self.image.discard_to_zero(offset, len) {
            Err(e) if e.kind() == io::ErrorKind::Unsupported => self.write_zero_data(offset, len),
            r => r.map_err(|e| self.io(e)),
        }
    }
    fn write_zeroes(&mut self, offset: u64, len: u64) -> Result<(), DiskError> {
        self.writable(offset, len)?;
        match self.image.write_zeroes(offset, len) {
            Err(e) if e.kind() == io::ErrorKind::Unsupported => self.write_zero_data(offset, len),
            r => r.map_err(|e| self.io(e)),
        }
    }
    fn contents(&self) -> Contents<'_> {
        Contents::Files(&self.files)
    }
}
