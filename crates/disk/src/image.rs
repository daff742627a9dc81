//! Opening image files (qcow2 with its backing chain, or raw) through
//! `imago`'s synchronous build, and describing them.

use crate::{check_range, BlockDevice, Contents, DiskError};
use imago::file::File as ImagoFile;
use imago::qcow2::Qcow2;
use imago::raw::Raw;
use imago::FormatAccess;
use rustix::fs::{flock, FlockOperation};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::fmt;
use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::MetadataExt;
use std::path::{Component, Path, PathBuf};

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

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    Qcow2,
    Raw,
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A disk format name this build does not know.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown disk format '{name}': expected raw or qcow2")]
pub struct UnknownFormat {
    pub name: String,
}

impl std::str::FromStr for Format {
    type Err = UnknownFormat;
    fn from_str(s: &str) -> Result<Self, UnknownFormat> {
        match s {
            "qcow2" => Ok(Format::Qcow2),
            "raw" => Ok(Format::Raw),
            other => Err(UnknownFormat { name: other.into() }),
        }
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
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
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
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiskInfo {
    pub path: PathBuf,
    pub format: Format,
    pub virtual_size: u64,
    pub cluster_size: Option<u64>,
    pub allocated_bytes: u64,
    /// The backing files, nearest first (empty without a backing file).
    pub backing_chain: Vec<LayerInfo>,
}

/// How an image's format is known: pinned by the user (and recorded in
/// snapshots, logs and bundles from then on), or probed from its header.
/// Probing is for describing an image only: the header of a raw disk is
/// the guest's to write, and a guest that wrote a qcow2 header naming a
/// backing file must not make the next open read that host file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Mode {
    Pinned(Format, BackingPolicy),
    Probe,
}

/// Which backing file names a qcow2 chain may follow.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BackingPolicy {
    /// Names relative to the naming image's directory, without `..`
    /// (the default: an image file cannot reach outside its directory).
    #[default]
    Contained,
    /// Any name, absolute or with `..` (the user allowed it explicitly).
    Any,
}

impl fmt::Display for BackingPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            BackingPolicy::Contained => "contained",
            BackingPolicy::Any => "any",
        })
    }
}

/// How to open a disk image.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OpenOptions {
    /// The image's format, as the user gave it: never guessed.
    pub format: Format,
    pub read_only: bool,
    pub backing: BackingPolicy,
}

impl OpenOptions {
    pub fn new(format: Format, read_only: bool) -> Self {
        OpenOptions {
            format,
            read_only,
            backing: BackingPolicy::Contained,
        }
    }
}

/// Open a disk image in the format `options` pins. A qcow2 image's
/// backing files are opened read-only, each in the format its overlay
/// records (an overlay that records none is refused), and only where
/// `options.backing` allows.
pub fn open(path: &Path, options: &OpenOptions) -> Result<Box<dyn BlockDevice>, DiskError> {
    let mode = Mode::Pinned(options.format, options.backing);
    let (chain, top_lock) = open_walk(path, !options.read_only, mode, true, true)?;
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
        format: options.format,
        backing: options.backing,
        read_only: options.read_only,
        top_lock,
        frozen: false,
    }))
}

/// The format an image's header suggests (qcow2 by its magic, else raw),
/// for describing it and for telling a user who did not pin a format what
/// to pin. Never use the answer to open a disk a guest has written.
pub fn probe(path: &Path) -> Result<Format, DiskError> {
    let io_err = |source| DiskError::Io {
        path: path.to_path_buf(),
        source,
    };
    let file = File::open(path).map_err(io_err)?;
    let meta = file.metadata().map_err(io_err)?;
    if !meta.is_file() {
        return Err(not_image(path, "not a regular file"));
    }
    detect(path, &read_head(&file, path)?, meta.len())
}

/// Describe an image and its backing chain (opened read-only, fully
/// validated, nothing changed). The formats are probed from the headers
/// and any backing name is followed: this is for a user inspecting an
/// image, never for a disk a guest runs on.
pub fn info(path: &Path) -> Result<DiskInfo, DiskError> {
    let chain = open_chain(path, false, Mode::Probe)?;
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

pub(crate) fn open_chain(path: &Path, writable: bool, mode: Mode) -> Result<Chain, DiskError> {
    open_walk(path, writable, mode, true, true).map(|(chain, _)| chain)
}

/// Open one file read-only, as a chain of itself alone: a qcow2 image's
/// unallocated ranges then map to nothing rather than to its backing
/// file (whose name is not followed, nor checked).
pub(crate) fn open_alone(path: &Path, format: Format) -> Result<Chain, DiskError> {
    let mode = Mode::Pinned(format, BackingPolicy::Contained);
    open_walk(path, false, mode, false, true).map(|(chain, _)| chain)
}

/// [`open_alone`] without taking the file's lock: for a caller that has
/// the image open itself (and so holds the lock) and only inspects it.
pub(crate) fn open_alone_unlocked(path: &Path, format: Format) -> Result<Chain, DiskError> {
    let mode = Mode::Pinned(format, BackingPolicy::Contained);
    open_walk(path, false, mode, false, false).map(|(chain, _)| chain)
}

fn open_walk(
    path: &Path,
    writable: bool,
    mode: Mode,
    follow: bool,
    lock: bool,
) -> Result<(Chain, Option<File>), DiskError> {
    let mut walk = Walk {
        mode,
        follow,
        lock,
        top_lock: None,
        seen: BTreeSet::new(),
        layers: Vec::new(),
    };
    let top = match mode {
        Mode::Pinned(format, _) => Some(format),
        Mode::Probe => None,
    };
    let image = open_layer(path, writable, top, &mut walk)?;
    Ok((
        Chain {
            image,
            layers: walk.layers,
        },
        walk.top_lock,
    ))
}

/// A chain being opened: how, the files seen (loops), what was opened.
struct Walk {
    mode: Mode,
    /// Whether backing files are opened too.
    follow: bool,
    /// Whether each file is locked (shared to read, exclusive to write).
    lock: bool,
    /// A writable top's lock, kept to freeze it ([`BlockDevice::set_frozen`]).
    top_lock: Option<File>,
    seen: BTreeSet<PathBuf>,
    layers: Vec<LayerInfo>,
}

/// Open one file of a chain and, recursively, everything below it.
/// `expected` is its format: pinned by the user for the top, recorded by
/// the overlay above for a backing file; `None` (probing) only when
/// describing an image.
fn open_layer(
    path: &Path,
    writable: bool,
    expected: Option<Format>,
    walk: &mut Walk,
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
    if !walk
        .seen
        .insert(std::fs::canonicalize(path).map_err(io_err)?)
    {
        return Err(DiskError::BackingLoop {
            path: path.to_path_buf(),
        });
    }
    if walk.lock {
        lock(&file, writable, path)?;
        if writable && walk.layers.is_empty() {
            walk.top_lock = Some(file.try_clone().map_err(io_err)?);
        }
    }
    if walk.layers.len() >= MAX_CHAIN_DEPTH {
        return Err(DiskError::Unsupported {
            path: path.to_path_buf(),
            what: format!("backing chains deeper than {MAX_CHAIN_DEPTH} files"),
        });
    }

    let head = read_head(&file, path)?;
    let format = match expected {
        Some(Format::Raw) => Format::Raw,
        Some(Format::Qcow2) if head.starts_with(&QCOW2_MAGIC) => Format::Qcow2,
        Some(Format::Qcow2) => {
            let reason = if walk.layers.is_empty() {
                "format=qcow2 was given but it has no qcow2 header"
            } else {
                "the overlay records it as qcow2 but it has no qcow2 header"
            };
            return Err(not_image(path, reason));
        }
        None => detect(path, &head, meta.len())?,
    };
    let header = match format {
        Format::Qcow2 => {
            let mut header = Qcow2Header::parse(path, &head, meta.len())?;
            header.check_supported(path, writable)?;
            if writable {
                crate::qcow2_check::check_for_writing(path, &file, &head, meta.len())?;
            }
            header.backing_format = header.backing_format_extension(&file);
            Some(header)
        }
        Format::Raw => None,
    };
    let storage = ImagoFile::try_from(file).map_err(io_err)?;
    match header {
        None => open_raw(path, storage, writable, &meta, &mut walk.layers),
        Some(header) => open_qcow2(path, storage, writable, &header, meta.blocks(), walk),
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
    walk: &mut Walk,
) -> Result<FormatAccess<ImagoFile>, DiskError> {
    let mut qcow2: Qcow2<ImagoFile> =
        Qcow2::open_image(storage, writable).map_err(|e| imago_err(path, e))?;
    // External data files are refused in check_supported(); say so again
    // so imago never opens a file the header names.
    qcow2.set_data_file(None);
    let backing_name = qcow2.implicit_backing_file().cloned();
    let backing_format = qcow2
        .implicit_backing_format()
        .cloned()
        .or_else(|| header.backing_format.clone());
    walk.layers.push(LayerInfo {
        path: path.to_path_buf(),
        format: Format::Qcow2,
        virtual_size: qcow2_size(&qcow2),
        cluster_size: Some(header.cluster_size()),
        allocated_bytes: blocks * 512,
        backing_name: backing_name.clone(),
    });
    let backing = match backing_name {
        Some(name) if walk.follow => {
            let expected = backing_format_of(path, backing_format.as_deref())?;
            if let Mode::Pinned(_, policy) = walk.mode {
                check_backing(path, &name, expected, policy)?;
            }
            let backing_path = resolve_backing(path, &name);
            if !backing_path.exists() {
                return Err(DiskError::MissingBacking {
                    path: path.to_path_buf(),
                    backing: backing_path,
                });
            }
            Some(open_layer(&backing_path, false, expected, walk)?)
        }
        _ => None,
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

/// A pinned chain follows a backing name only if its overlay records the
/// backing file's format (else the backing file's header, once a guest's
/// raw disk, would decide it) and, unless the user allowed any path, the
/// name stays inside the overlay's directory.
fn check_backing(
    path: &Path,
    name: &str,
    format: Option<Format>,
    policy: BackingPolicy,
) -> Result<(), DiskError> {
    let refuse = |what: String| {
        Err(DiskError::Backing {
            path: path.to_path_buf(),
            backing: name.to_string(),
            what,
        })
    };
    if format.is_none() {
        return refuse(format!(
            "records no backing format (set one with `qemu-img rebase -u -b {name} -F raw|qcow2`)"
        ));
    }
    if policy == BackingPolicy::Contained {
        let p = Path::new(name);
        if p.is_absolute() {
            return refuse(
                "is an absolute path; allow it with backing=any on --disk if you trust the image"
                    .into(),
            );
        }
        if p.components()
            .any(|c| !matches!(c, Component::Normal(_) | Component::CurDir))
        {
            return refuse(
                "leaves the image's directory (`..`); allow it with backing=any on --disk if you trust the image"
                    .into(),
            );
        }
    }
    Ok(())
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
            &format!("as raw, its size ({len} bytes) is not a whole number of {SECTOR_SIZE}-byte sectors"),
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
    /// Where the header extensions start.
    header_length: u32,
    /// The backing format extension, read by [`Self::backing_format_extension`].
    backing_format: Option<String>,
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
            backing_format: None,
            header_length: if version >= 3 {
                be32(head, 100)
            } else {
                V2_HEADER_LEN as u32
            },
            cluster_bits: be32(head, 20),
            crypt_method: be32(head, 32),
            nb_snapshots: be32(head, 60),
            incompatible: if version >= 3 { be64(head, 72) } else { 0 },
        })
    }

    fn cluster_size(&self) -> u64 {
        1u64.checked_shl(self.cluster_bits).unwrap_or(0)
    }

    /// The backing format header extension (qcow2 spec: type 0xe2792aca),
    /// which imago reads from v3 headers only; QEMU writes it in v2
    /// headers too. Extensions lie within the first cluster.
    fn backing_format_extension(&self, file: &File) -> Option<String> {
        use std::os::unix::fs::FileExt;
        const BACKING_FORMAT: u32 = 0xe279_2aca;
        let end = self.cluster_size().min(64 << 10) as usize;
        let start = self.header_length as usize;
        if start >= end {
            return None;
        }
        let mut area = vec![0u8; end - start];
        let n = file.read_at(&mut area, start as u64).ok()?;
        let area = &area[..n];
        let mut at = 0usize;
        while at + 8 <= area.len() {
            let kind = be32(area, at);
            let len = be32(area, at + 4) as usize;
            let data = area.get(at + 8..at.checked_add(8)?.checked_add(len)?)?;
            match kind {
                0 => return None,
                BACKING_FORMAT => return std::str::from_utf8(data).ok().map(str::to_string),
                _ => at = at + 8 + len.div_ceil(8) * 8,
            }
        }
        None
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
    format: Format,
    backing: BackingPolicy,
    capacity: u64,
    read_only: bool,
    /// The writable top's file, sharing its lock (to freeze it).
    top_lock: Option<File>,
    frozen: bool,
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
        if self.read_only || self.frozen {
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
        if self.read_only || self.frozen {
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
    fn set_frozen(&mut self, frozen: bool) -> Result<(), DiskError> {
        if self.top_lock.is_none() || frozen == self.frozen {
            return Ok(());
        }
        if frozen {
            self.flush()?;
        }
        let Some(file) = &self.top_lock else {
            return Ok(());
        };
        // flock on the shared open file description converts its lock.
        let op = if frozen {
            FlockOperation::NonBlockingLockShared
        } else {
            FlockOperation::NonBlockingLockExclusive
        };
        flock(file, op).map_err(|e| match e {
            rustix::io::Errno::WOULDBLOCK => DiskError::Locked {
                path: self.path.clone(),
            },
            e => DiskError::Io {
                path: self.path.clone(),
                source: e.into(),
            },
        })?;
        self.frozen = frozen;
        Ok(())
    }
    fn contents(&self) -> Contents<'_> {
        Contents::Files {
            files: &self.files,
            format: self.format,
            backing: self.backing,
        }
    }
}
