//! Whole-machine snapshots (DESIGN §6): harts, devices, clock, scheduling
//! position, boot images, RAM and the identity of the disk layer they
//! belong to, in one versioned, checksummed file.
//!
//! # File format (version 5)
//!
//! ```text
//! 0        preamble, 80 bytes: magic "LSTPSNAP", format version (u32 LE),
//!          flags (0), index offset and length (u64 LE), blake3 of the
//!          index, and the first 16 bytes of the blake3 of bytes 0..64
//! 4096     boot images section: firmware ‖ kernel ‖ initrd, raw
//! 64 KiB-  RAM section (see below)
//! aligned
//! ...      state section (postcard): config, harts, devices, clock,
//!          icount, scheduling position, reset ROM, VM uuid, state hash,
//!          the clusters written to each disk (`tracked_disk`)
//! ...      disk layer section (postcard): each disk's slot and identity
//! end      index (postcard): offset, length and blake3 of each section,
//!          the RAM layout and one blake3 per 1 MiB chunk of RAM
//! ```
//!
//! The index is written last, after the sections it describes, and the
//! preamble (which checksums it) after that; the file is written under a
//! temporary name (mode 0600: RAM and the RNG seed are secrets), fsynced,
//! renamed into place and its directory fsynced, so a crash leaves either
//! no snapshot or a complete one. Any change to a state type (a device's,
//! the hart's) needs a new format version: postcard is not
//! self-describing. Live structs are not in the file and change freely.
//!
//! Version 3 added the clock's rate (instructions per tick) to the config
//! and the clock, and with it to the state hash; version 2 files (all at
//! 16 instructions per tick) are refused with a message naming both
//! versions. Version 5 defines the state section by the state types
//! (below) instead of the live structs' serde derives; the bytes of its
//! parts are those version 4 wrote (the state hash, which covers them,
//! is the same), but a version 4 file is refused like every other older
//! one: this build promises to read what its own types define, nothing
//! else. Every refusal names the file's version and this build's.
//!
//! # RAM: lazy restore first, compression for archives
//!
//! [`RamEncoding::Sparse`] (the default) stores RAM as a page-aligned image
//! of guest memory in which zero pages are file holes: they are elided and
//! cost no disk space. Restore is then one private (copy-on-write) mapping
//! of that region ([`Ram::from_file`]): the kernel pages RAM in when the
//! guest first touches it, so restoring 512 MiB takes about as long as
//! restoring 64 MiB — microseconds for the mapping.
//! [`RamEncoding::Zstd`] compresses each 1 MiB chunk's non-zero pages with
//! zstd (a 256-bit map says which pages they are) for archives and
//! transfer; it restores eagerly (decompression into fresh RAM).
//!
//! # Checksums
//!
//! Preamble, index, state and disk layer are blake3-checked on every
//! restore before anything is built. The boot images (~50 MiB for a Debian
//! guest) are needed again only at a guest reset or the next save, so
//! restore maps their section read-only ([`crate::ImageBytes`]) and its
//! blake3 is checked on first use: a reset or save with corrupt images
//! fails with [`crate::CorruptImages`] before any of their bytes reach
//! guest RAM or a new file; [`RestoreOptions::verify`] checks them at
//! restore. RAM has one blake3 per 1 MiB
//! chunk, over the bytes stored for it (the raw chunk for `Sparse`, the
//! compressed frame for `Zstd`; an all-zero chunk has a precomputed hash,
//! so saving does not hash holes). Checking them means reading all of RAM,
//! which is exactly what lazy restore avoids, so for `Sparse` they are
//! checked only with [`RestoreOptions::verify`] (`--verify`), which also
//! recomputes the machine's state hash and compares it with the one
//! recorded at save. Without it, a RAM byte corrupted on disk reaches the
//! guest: truncation is still caught (the RAM region must lie inside the
//! file), flipped bits are not. `Zstd` chunks are always checked (they are
//! read anyway). The hashes are not a MAC: a deliberately forged file can
//! carry matching ones. Restore therefore also validates every structural
//! invariant the board relies on (hart count and ids, device table sizes,
//! virtio slots against the config, ROM size, RAM layout), so such a file
//! yields a guest-visible odd state, not a host crash.
//!
//! # Disk layer
//!
//! Disks are flushed before saving; the disk layer section records each
//! disk's [`DiskIdentity`] (paths, stat fingerprint, content digest; see
//! `disk::DiskIdentity` for why). Restore takes disks the caller opened
//! (from the paths the snapshot names: [`open_disks`]) and refuses any that
//! is missing or changed. The state section carries each disk's written
//! clusters and their hashes ([`ClusterRecord`]): they are the disks' part
//! of the state hash, which a restored run must continue exactly. A
//! verified restore reads the written non-zero clusters back instead of
//! trusting the recorded hashes.
//!
//! # Harts and devices: state types
//!
//! The state section holds no live object: each part (hart, CLINT, PLIC,
//! UART, RTC, vmgenid, clock, each virtio slot) is saved as its state
//! type ([`riscv::HartState`], `ClintState`, …), plain data encoded with
//! postcard, and restored from it with the check of its invariants
//! ([`crate::Persist`], refusals as [`crate::StateError`]): CLINT and PLIC tables
//! must match the hart count, the UART FIFO its size, each virtio slot
//! the device the config puts there (id, queue count and maximum sizes,
//! NIC number), the clock's rate the config's; RTC and vmgenid accept any
//! value. Live structs (and the hart's caches, the translator's code) can
//! change without touching the format; a change to a state type needs a
//! new format version.
//!
//! # Determinism
//!
//! A restored machine continues exactly as the saved one would: same
//! state, same instruction boundaries. Hart caches (TLB, fetch page, walk
//! and PMP caches, translated code) are not state; they start empty after
//! restore, and saving empties the TLB and its companions in the running
//! machine too (the TLB's contents are guest-visible), so both continue
//! from the same point. Restore
//! does not change the vmgenid: reverting or cloning is the caller's
//! decision and is applied as an input ([`crate::Input::VmGenId`]).
//!
//! # Saving while running (not built)
//!
//! The sparse layout takes page writes in any order, so a pre-copy save
//! (`--save` without a long pause, FT redundancy, migration) can write all
//! of RAM while the guest runs, then rewrite the pages the dirty bitmap
//! ([`Ram::take_dirty`], with a `DirtyTracker` of its own, so the state
//! hash's tracking is not disturbed) reports, round after round, and
//! finish with a short stop for the last dirty pages, the state and the
//! disk layer. A machine restored from a snapshot keeps its RAM in a
//! private mapping of that file, so copying its clean pages costs
//! page-cache reads, not guest time.

use crate::board::{Board, Devices, DevicesState};
use crate::clock::{Clock, ClockState, InstructionsPerTick};
use crate::hash::RamHasher;
use crate::images::{ImageBytes, MappedSection};
use crate::io::Output;
use crate::layout::{MAX_HARTS, RAM_BASE, ROM_SIZE, VIRTIO_SLOTS};
use crate::machine::{virtio_devices, BootImages, Machine, MachineConfig, MachineError, QUANTUM};
use crate::state::{BoardShape, Persist, StateError};
use crate::tracked_disk::{ClusterRecord, RecordError, TrackedDisk};
use crate::virtio::{VirtioMmio, VirtioSpec};
use disk::{BlockDevice, DiskError, DiskIdentity, IdentityMismatch};
use riscv::ram::{RamError, PAGE_SIZE};
use riscv::{Hart, HartState, Ram};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::fs::File;
use std::io;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

mod assemble;
#[doc(hidden)]
pub mod forge;
mod live;
mod measure;
pub use assemble::{Assembled, Assembler};
pub use live::{LiveSave, LiveSaveError, Piece};
pub use measure::{measure, MeasureSpec, Measurement};

pub const MAGIC: [u8; 8] = *b"LSTPSNAP";
/// The format version this build writes and reads.
pub const FORMAT_VERSION: u32 = 5;
/// The oldest version this build reads: version 4's bytes are version 5's
/// (5 moved the encoding onto plain state types without changing it), so
/// suspended VMs and snapshots of running VMs made before 5 resume.
pub const OLDEST_READABLE_VERSION: u32 = 4;
const PREAMBLE_LEN: usize = 80;
/// Where the boot images start (the preamble's page ends before).
const IMAGES_OFFSET: u64 = 4096;
/// The RAM region's alignment in the file: a multiple of every host page
/// size we may run on, so it can be mapped directly.
const RAM_ALIGN: u64 = 64 << 10;
/// RAM is hashed (and compressed) in chunks of this size.
pub const RAM_CHUNK: u64 = 1 << 20;
const PAGE: usize = PAGE_SIZE as usize;
const PAGES_PER_CHUNK: usize = (RAM_CHUNK / PAGE_SIZE) as usize;

/// The parts of a snapshot file, for error messages and [`SnapshotInfo`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Section {
    Preamble,
    Index,
    Images,
    Ram,
    /// One 1 MiB chunk of RAM.
    RamChunk(usize),
    State,
    DiskLayer,
}

impl fmt::Display for Section {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Section::Preamble => f.write_str("preamble"),
            Section::Index => f.write_str("index"),
            Section::Images => f.write_str("boot images section"),
            Section::Ram => f.write_str("RAM section"),
            Section::RamChunk(n) => write!(
                f,
                "RAM section (chunk {n}, guest address {:#x})",
                RAM_BASE + *n as u64 * RAM_CHUNK
            ),
            Section::State => f.write_str("state section"),
            Section::DiskLayer => f.write_str("disk layer section"),
        }
    }
}

/// Every message is one line and names the file.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: io::Error },
    #[error("{}: not a lockstep snapshot (magic {found:02x?})", path.display())]
    BadMagic { path: PathBuf, found: Vec<u8> },
    #[error("{}: snapshot format version {found} is not supported: {}", path.display(), version_gap(*found, *supported))]
    UnsupportedVersion {
        path: PathBuf,
        found: u32,
        /// The one version this build reads ([`FORMAT_VERSION`]).
        supported: u32,
    },
    #[error("{}: truncated at byte {len}: the {section} needs bytes up to {needed}", path.display())]
    Truncated {
        path: PathBuf,
        section: Section,
        len: u64,
        needed: u64,
    },
    #[error("{}: checksum mismatch in the {section}", path.display())]
    Checksum { path: PathBuf, section: Section },
    #[error("{}: the {section} claims {len} bytes; this build reads at most {max}", path.display())]
    TooLarge {
        path: PathBuf,
        section: Section,
        len: u64,
        max: u64,
    },
    #[error("{}: bad {section}: {reason}", path.display())]
    Corrupt {
        path: PathBuf,
        section: Section,
        reason: String,
    },
    #[error("{}: disk {slot} ({disk}) is missing: the snapshot's disk layer was not given", path.display())]
    DiskMissing {
        path: PathBuf,
        slot: usize,
        disk: String,
    },
    #[error("{}: {given} disks given but the snapshot's disk layer has {recorded}", path.display())]
    DiskCount {
        path: PathBuf,
        given: usize,
        recorded: usize,
    },
    #[error("{}: disk {slot} changed since the snapshot: {reason}", path.display())]
    DiskChanged {
        path: PathBuf,
        slot: usize,
        reason: IdentityMismatch,
    },
    #[error("{}: disk {slot}: {source}", path.display())]
    Disk {
        path: PathBuf,
        slot: usize,
        source: DiskError,
    },
    #[error("{}: bad state section: {source}", path.display())]
    StateMismatch { path: PathBuf, source: StateError },
    #[error("{}: bad state section: written clusters of disk {disk}: {source}", path.display())]
    ClusterRecord {
        path: PathBuf,
        disk: usize,
        source: RecordError,
    },
    #[error("{}: the restored machine's state hash differs from the one recorded at save", path.display())]
    StateHash { path: PathBuf },
    #[error("saving {}: {source}", path.display())]
    Save { path: PathBuf, source: MachineError },
    #[error("{}: guest RAM: {source}", path.display())]
    Ram { path: PathBuf, source: RamError },
}

/// Why a version other than this build's cannot be read.
fn version_gap(found: u32, supported: u32) -> String {
    if found < supported {
        format!(
            "it is older than this build's version {supported}, which no longer reads it \
             (restore it with the build that wrote it)"
        )
    } else {
        format!("this build reads version {supported}; the file is from a newer build")
    }
}

/// How RAM is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum RamEncoding {
    /// Page-aligned, zero pages as holes; restores lazily.
    #[default]
    Sparse,
    /// zstd per 1 MiB chunk, zero pages skipped; restores eagerly.
    Zstd { level: i32 },
}

#[derive(Debug, Clone, Default)]
pub struct SaveOptions {
    pub ram: RamEncoding,
    /// The VM this snapshot belongs to (the bundle's uuid), if known.
    pub vm_uuid: Option<[u8; 16]>,
}

#[derive(Debug, Clone, Default)]
pub struct RestoreOptions {
    /// Check the boot images and every RAM chunk hash, re-hash every disk
    /// file and compare the restored machine's state hash with the
    /// recorded one. Reads all of RAM and the images: restore is no longer
    /// lazy.
    pub verify: bool,
    /// Each disk given may also be the recorded one with a new, still
    /// empty layer on top (a VM bundle going back to a snapshot runs on
    /// a new overlay over the layers the snapshot froze).
    pub new_top_layers: bool,
}

/// One attached disk as the snapshot recorded it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiskRecord {
    /// Its virtio slot.
    pub slot: usize,
    pub read_only: bool,
    pub identity: DiskIdentity,
}

/// Where a section lies in the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SectionInfo {
    pub section: Section,
    pub offset: u64,
    pub len: u64,
}

/// What a snapshot holds, without its RAM.
#[derive(Debug, Clone)]
pub struct SnapshotInfo {
    pub path: PathBuf,
    pub version: u32,
    pub vm_uuid: Option<[u8; 16]>,
    pub vmgenid: [u8; 16],
    /// [`Machine::state_hash`] at save.
    pub state_hash: [u8; 32],
    pub icount: u64,
    pub cpus: usize,
    pub memory: u64,
    pub ram_encoding: RamEncoding,
    /// Non-zero pages stored; the rest are elided.
    pub ram_pages_stored: u64,
    /// The file's length and the bytes it occupies on disk.
    pub file_bytes: u64,
    pub allocated_bytes: u64,
    pub disks: Vec<DiskRecord>,
    /// Preamble, boot images, RAM, state, disk layer and index, in file
    /// order.
    pub sections: Vec<SectionInfo>,
}

// ----- on-disk records --------------------------------------------------

#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
struct SectionRecord {
    offset: u64,
    len: u64,
    hash: [u8; 32],
}

#[derive(Debug, Clone, Serialize, Deserialize)]
enum RamLayout {
    /// The RAM image at `offset`, `size` bytes, zero pages as holes.
    Sparse {
        offset: u64,
    },
    Zstd {
        level: i32,
        chunks: Vec<ZstdChunk>,
    },
}

impl Default for RamLayout {
    fn default() -> Self {
        RamLayout::Sparse { offset: 0 }
    }
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
struct ZstdChunk {
    offset: u64,
    /// Compressed length; 0 for an all-zero chunk.
    len: u64,
    /// Bit n: page n of the chunk is stored (non-zero).
    pages: [u64; 4],
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct RamRecord {
    base: u64,
    size: u64,
    stored_pages: u64,
    layout: RamLayout,
    /// blake3 of the bytes stored for each chunk.
    chunk_hashes: Vec<[u8; 32]>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Index {
    images: SectionRecord,
    state: SectionRecord,
    disks: SectionRecord,
    ram: RamRecord,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
enum SpecRecord {
    Block { serial: String },
    Rng { seed: [u8; 32] },
    Net { mac: [u8; 6] },
}

impl From<&VirtioSpec> for SpecRecord {
    fn from(spec: &VirtioSpec) -> Self {
        match spec {
            VirtioSpec::Block { serial } => SpecRecord::Block {
                serial: serial.clone(),
            },
            VirtioSpec::Rng { seed } => SpecRecord::Rng { seed: *seed },
            VirtioSpec::Net { mac } => SpecRecord::Net { mac: *mac },
        }
    }
}

impl From<SpecRecord> for VirtioSpec {
    fn from(spec: SpecRecord) -> Self {
        match spec {
            SpecRecord::Block { serial } => VirtioSpec::Block { serial },
            SpecRecord::Rng { seed } => VirtioSpec::Rng { seed },
            SpecRecord::Net { mac } => VirtioSpec::Net { mac },
        }
    }
}

/// [`MachineConfig`] without the images' bytes (they have their own
/// section), with their lengths.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct ConfigRecord {
    cpus: u64,
    memory: u64,
    bootargs: String,
    boot_wall_ns: u64,
    vmgenid: [u8; 16],
    virtio: Vec<SpecRecord>,
    firmware_len: u64,
    kernel_len: u64,
    initrd_len: Option<u64>,
    instructions_per_tick: InstructionsPerTick,
}

impl ConfigRecord {
    fn of(config: &MachineConfig) -> Self {
        let images = &config.images;
        ConfigRecord {
            cpus: config.cpus as u64,
            memory: config.memory,
            bootargs: config.bootargs.clone(),
            boot_wall_ns: config.boot_wall_ns,
            vmgenid: config.vmgenid,
            virtio: config.virtio.iter().map(SpecRecord::from).collect(),
            firmware_len: images.firmware.len() as u64,
            kernel_len: images.kernel.len() as u64,
            initrd_len: images.initrd.as_ref().map(|i| i.len() as u64),
            instructions_per_tick: config.instructions_per_tick,
        }
    }

    fn images_len(&self) -> Option<u64> {
        self.firmware_len
            .checked_add(self.kernel_len)?
            .checked_add(self.initrd_len.unwrap_or(0))
    }
}

/// The state section: the config and every part's state type.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct State {
    vm_uuid: Option<[u8; 16]>,
    state_hash: [u8; 32],
    config: ConfigRecord,
    harts: Vec<HartState>,
    devices: DevicesState,
    clock: ClockState,
    icount: u64,
    current: u64,
    turn_retired: u64,
    rom: Vec<u8>,
    /// One per disk, in slot order.
    disk_clusters: Vec<ClusterRecord>,
}

// ----- saving ------------------------------------------------------------

impl Machine {
    /// Save the whole machine to `path` (sparse RAM, no VM uuid).
    pub fn save_snapshot(&mut self, path: &Path) -> Result<SnapshotInfo, SnapshotError> {
        self.save_snapshot_with(path, &SaveOptions::default())
    }

    /// Save the whole machine to `path`: flushes the disks and records
    /// their identity, writes a new file and renames it into place. The
    /// machine goes on unchanged (only its hart caches are emptied).
    pub fn save_snapshot_with(
        &mut self,
        path: &Path,
        options: &SaveOptions,
    ) -> Result<SnapshotInfo, SnapshotError> {
        let save_err = |source| SnapshotError::Save {
            path: path.to_path_buf(),
            source,
        };
        // Images restored lazily are checked before they are copied into
        // a file whose new checksum would vouch for them.
        self.config
            .images
            .verify()
            .map_err(|e| save_err(e.into()))?;
        self.flush_disks().map_err(save_err)?;
        // The restored harts start with empty caches; so does this one.
        self.harts.iter_mut().for_each(Hart::drop_caches);
        let disks = self.disk_records(path)?;
        let state_hash = self.state_hash().map_err(save_err)?;
        let disk_clusters = self.disk_clusters(path)?;

        let io = |source| SnapshotError::Io {
            path: path.to_path_buf(),
            source,
        };
        let new_file = durable::Options {
            prefix: ".snapshot-",
            ..durable::Options::default()
        };
        durable::write_with(path, &new_file, |file, _| {
            let file: &File = file;
            let images = write_images(file, &self.config.images).map_err(io)?;
            let ram_offset = (images.offset + images.len).next_multiple_of(RAM_ALIGN);
            let (ram, ram_end) = write_ram(file, &self.ram, ram_offset, options.ram).map_err(io)?;
            let state = self.state_out(options.vm_uuid, state_hash, disk_clusters);
            let state = write_postcard(file, ram_end, &state, path)?;
            let disks = write_postcard(file, state.offset + state.len, &disks, path)?;
            let index = Index {
                images,
                state,
                disks,
                ram,
            };
            let index = write_postcard(file, disks.offset + disks.len, &index, path)?;
            file.write_all_at(&encode_preamble(&index), 0).map_err(io)
        })
        .map_err(|e| match e {
            durable::Error::Fill(e) => e,
            durable::Error::Create { source, .. } | durable::Error::Io { source, .. } => io(source),
            durable::Error::Exists { .. } => io(std::io::ErrorKind::AlreadyExists.into()),
        })?;
        read_info(path)
    }

    /// The state section's contents.
    fn state_out(
        &self,
        vm_uuid: Option<[u8; 16]>,
        state_hash: [u8; 32],
        disk_clusters: Vec<ClusterRecord>,
    ) -> State {
        State {
            vm_uuid,
            state_hash,
            config: ConfigRecord::of(&self.config),
            harts: self.harts.iter().map(Hart::save).collect(),
            devices: self.board.devices.save(),
            clock: self.board.clock.save(),
            icount: self.icount,
            current: self.current as u64,
            turn_retired: self.turn_retired,
            rom: self.board.rom.clone(),
            disk_clusters,
        }
    }

    fn disk_records(&self, path: &Path) -> Result<Vec<DiskRecord>, SnapshotError> {
        let mut records = Vec::new();
        for (slot, disk) in self.board.disks.iter().enumerate() {
            if let Some(disk) = disk {
                let identity = DiskIdentity::of(disk).map_err(|source| SnapshotError::Disk {
                    path: path.to_path_buf(),
                    slot,
                    source,
                })?;
                records.push(DiskRecord {
                    slot,
                    read_only: disk.read_only(),
                    identity,
                });
            }
        }
        Ok(records)
    }

    /// The clusters written to each disk, in slot order.
    fn disk_clusters(&mut self, path: &Path) -> Result<Vec<ClusterRecord>, SnapshotError> {
        let disks = self.board.disks.iter_mut().enumerate();
        let tracked = disks.filter_map(|(slot, d)| Some((slot, d.as_mut()?)));
        tracked
            .map(|(slot, disk)| {
                disk.record().map_err(|source| SnapshotError::Disk {
                    path: path.to_path_buf(),
                    slot,
                    source,
                })
            })
            .collect()
    }
}

fn encode_preamble(index: &SectionRecord) -> [u8; PREAMBLE_LEN] {
    let mut p = [0u8; PREAMBLE_LEN];
    p[0..8].copy_from_slice(&MAGIC);
    p[8..12].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    // 12..16: flags, none defined.
    p[16..24].copy_from_slice(&index.offset.to_le_bytes());
    p[24..32].copy_from_slice(&index.len.to_le_bytes());
    p[32..64].copy_from_slice(&index.hash);
    let check = blake3::hash(&p[..64]);
    p[64..80].copy_from_slice(&check.as_bytes()[..16]);
    p
}

fn write_images(file: &File, images: &BootImages) -> io::Result<SectionRecord> {
    let parts = [
        Some(&*images.firmware),
        Some(&*images.kernel),
        images.initrd.as_deref(),
    ];
    let mut hasher = blake3::Hasher::new();
    let mut at = IMAGES_OFFSET;
    for part in parts.into_iter().flatten() {
        file.write_all_at(part, at)?;
        hasher.update(part);
        at += part.len() as u64;
    }
    Ok(SectionRecord {
        offset: IMAGES_OFFSET,
        len: at - IMAGES_OFFSET,
        hash: *hasher.finalize().as_bytes(),
    })
}

fn write_postcard<T: Serialize>(
    file: &File,
    offset: u64,
    value: &T,
    path: &Path,
) -> Result<SectionRecord, SnapshotError> {
    let bytes = postcard::to_stdvec(value).map_err(|e| SnapshotError::Save {
        path: path.to_path_buf(),
        source: MachineError::Serialize(e),
    })?;
    write_section(file, offset, &bytes, path)
}

/// `bytes` at `offset`, and their record.
fn write_section(
    file: &File,
    offset: u64,
    bytes: &[u8],
    path: &Path,
) -> Result<SectionRecord, SnapshotError> {
    file.write_all_at(bytes, offset)
        .map_err(|source| SnapshotError::Io {
            path: path.to_path_buf(),
            source,
        })?;
    Ok(SectionRecord {
        offset,
        len: bytes.len() as u64,
        hash: *blake3::hash(bytes).as_bytes(),
    })
}

fn is_zero(bytes: &[u8]) -> bool {
    // A plain OR-fold vectorises; a short-circuiting `all` does not.
    bytes.iter().fold(0u8, |acc, &b| acc | b) == 0
}

fn zero_chunk_hash() -> [u8; 32] {
    static HASH: OnceLock<[u8; 32]> = OnceLock::new();
    *HASH.get_or_init(|| *blake3::hash(&vec![0u8; RAM_CHUNK as usize]).as_bytes())
}

/// Bitmap of the non-zero pages of a chunk.
fn nonzero_pages(chunk: &[u8]) -> [u64; 4] {
    let mut pages = [0u64; 4];
    for (p, page) in chunk.chunks(PAGE).enumerate() {
        if !is_zero(page) {
            pages[p / 64] |= 1 << (p % 64);
        }
    }
    pages
}

fn page_stored(pages: &[u64; 4], p: usize) -> bool {
    pages[p / 64] >> (p % 64) & 1 != 0
}

fn count_pages(pages: &[u64; 4]) -> u64 {
    pages.iter().map(|w| u64::from(w.count_ones())).sum()
}

/// Write RAM at `offset`; returns its record and where it ends.
fn write_ram(
    file: &File,
    ram: &Ram,
    offset: u64,
    encoding: RamEncoding,
) -> io::Result<(RamRecord, u64)> {
    let (layout, chunk_hashes, stored_pages, end) = match encoding {
        RamEncoding::Sparse => write_sparse(file, ram.as_slice(), offset)?,
        RamEncoding::Zstd { level } => write_zstd(file, ram.as_slice(), offset, level)?,
    };
    let record = RamRecord {
        base: ram.base(),
        size: ram.size(),
        stored_pages,
        layout,
        chunk_hashes,
    };
    Ok((record, end))
}

type WrittenRam = (RamLayout, Vec<[u8; 32]>, u64, u64);

fn write_sparse(file: &File, ram: &[u8], offset: u64) -> io::Result<WrittenRam> {
    let end = offset + ram.len() as u64;
    file.set_len(end)?; // everything not written below stays a hole
    let mut hashes = Vec::with_capacity(ram.len() / RAM_CHUNK as usize);
    let mut stored = 0;
    for (c, chunk) in ram.chunks(RAM_CHUNK as usize).enumerate() {
        let pages = nonzero_pages(chunk);
        stored += count_pages(&pages);
        let chunk_offset = offset + c as u64 * RAM_CHUNK;
        // Write each run of non-zero pages with one call.
        let mut p = 0;
        while p < PAGES_PER_CHUNK {
            if !page_stored(&pages, p) {
                p += 1;
                continue;
            }
            let start = p;
            while p < PAGES_PER_CHUNK && page_stored(&pages, p) {
                p += 1;
            }
            let bytes = &chunk[start * PAGE..p * PAGE];
            file.write_all_at(bytes, chunk_offset + (start * PAGE) as u64)?;
        }
        hashes.push(if pages == [0; 4] {
            zero_chunk_hash()
        } else {
            *blake3::hash(chunk).as_bytes()
        });
    }
    Ok((RamLayout::Sparse { offset }, hashes, stored, end))
}

fn write_zstd(file: &File, ram: &[u8], offset: u64, level: i32) -> io::Result<WrittenRam> {
    let mut compressor = zstd::bulk::Compressor::new(level)?;
    let mut chunks = Vec::with_capacity(ram.len() / RAM_CHUNK as usize);
    let mut hashes = Vec::with_capacity(chunks.capacity());
    let mut stored = 0;
    let mut at = offset;
    let mut pages_buf = Vec::with_capacity(RAM_CHUNK as usize);
    for chunk in ram.chunks(RAM_CHUNK as usize) {
        let pages = nonzero_pages(chunk);
        stored += count_pages(&pages);
        pages_buf.clear();
        for (p, page) in chunk.chunks(PAGE).enumerate() {
            if page_stored(&pages, p) {
                pages_buf.extend_from_slice(page);
            }
        }
        let frame = if pages_buf.is_empty() {
            Vec::new()
        } else {
            compressor.compress(&pages_buf)?
        };
        file.write_all_at(&frame, at)?;
        hashes.push(*blake3::hash(&frame).as_bytes());
        chunks.push(ZstdChunk {
            offset: at,
            len: frame.len() as u64,
            pages,
        });
        at += frame.len() as u64;
    }
    Ok((RamLayout::Zstd { level, chunks }, hashes, stored, at))
}

// ----- reading -------------------------------------------------------------

/// The largest metadata section a snapshot may hold. The index is a few
/// records; the disk layer a record per disk with its chain's paths; the
/// state the harts, devices and the written-cluster map (40 bytes per
/// written 64 KiB cluster, so 1 GiB covers 1.6 TiB of guest writes).
fn max_section_len(section: Section) -> u64 {
    match section {
        Section::Index => 64 << 10,
        Section::DiskLayer => 16 << 20,
        _ => 1 << 30,
    }
}

/// An open snapshot file whose preamble and index have been checked.
struct Reader {
    path: PathBuf,
    file: File,
    len: u64,
    index: Index,
}

impl Reader {
    fn open(path: &Path) -> Result<Self, SnapshotError> {
        let io = |source| SnapshotError::Io {
            path: path.to_path_buf(),
            source,
        };
        let file = File::open(path).map_err(io)?;
        let len = file.metadata().map_err(io)?.len();
        let mut r = Reader {
            path: path.to_path_buf(),
            file,
            len,
            index: Index::default(),
        };
        let index = r.read_preamble()?;
        r.index = r.decode(&index, Section::Index)?;
        Ok(r)
    }

    fn io(&self, source: io::Error) -> SnapshotError {
        SnapshotError::Io {
            path: self.path.clone(),
            source,
        }
    }

    fn corrupt(&self, section: Section, reason: impl Into<String>) -> SnapshotError {
        SnapshotError::Corrupt {
            path: self.path.clone(),
            section,
            reason: reason.into(),
        }
    }

    /// Check that `[offset, offset+len)` is inside the file.
    fn within(&self, section: Section, offset: u64, len: u64) -> Result<(), SnapshotError> {
        match offset.checked_add(len) {
            Some(end) if end <= self.len => Ok(()),
            end => Err(SnapshotError::Truncated {
                path: self.path.clone(),
                section,
                len: self.len,
                needed: end.unwrap_or(u64::MAX),
            }),
        }
    }

    fn read_preamble(&self) -> Result<SectionRecord, SnapshotError> {
        let mut p = [0u8; PREAMBLE_LEN];
        let have = self.len.min(PREAMBLE_LEN as u64) as usize;
        self.file
            .read_exact_at(&mut p[..have], 0)
            .map_err(|e| self.io(e))?;
        let magic_seen = have.min(MAGIC.len());
        if p[..magic_seen] != MAGIC[..magic_seen] {
            return Err(SnapshotError::BadMagic {
                path: self.path.clone(),
                found: p[..magic_seen].to_vec(),
            });
        }
        if have >= 12 {
            let version = u32::from_le_bytes([p[8], p[9], p[10], p[11]]);
            if !(OLDEST_READABLE_VERSION..=FORMAT_VERSION).contains(&version) {
                return Err(SnapshotError::UnsupportedVersion {
                    path: self.path.clone(),
                    found: version,
                    supported: FORMAT_VERSION,
                });
            }
        }
        self.within(Section::Preamble, 0, PREAMBLE_LEN as u64)?;
        if blake3::hash(&p[..64]).as_bytes()[..16] != p[64..80] {
            return Err(self.checksum(Section::Preamble));
        }
        if p[12..16] != [0; 4] {
            return Err(self.corrupt(Section::Preamble, "unknown flags"));
        }
        let u64_at = |at: usize| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&p[at..at + 8]);
            u64::from_le_bytes(b)
        };
        let mut hash = [0u8; 32];
        hash.copy_from_slice(&p[32..64]);
        Ok(SectionRecord {
            offset: u64_at(16),
            len: u64_at(24),
            hash,
        })
    }

    fn checksum(&self, section: Section) -> SnapshotError {
        SnapshotError::Checksum {
            path: self.path.clone(),
            section,
        }
    }

    /// The bytes of a section, checked against its hash. Its length comes
    /// from the file: it is bounded before anything is allocated (a forged
    /// preamble in a huge sparse file must not take the host's memory).
    fn read(&self, rec: &SectionRecord, section: Section) -> Result<Vec<u8>, SnapshotError> {
        self.within(section, rec.offset, rec.len)?;
        let max = max_section_len(section);
        if rec.len > max {
            return Err(SnapshotError::TooLarge {
                path: self.path.clone(),
                section,
                len: rec.len,
                max,
            });
        }
        let mut bytes = Vec::new();
        bytes
            .try_reserve_exact(rec.len as usize)
            .map_err(|e| self.io(io::Error::new(io::ErrorKind::OutOfMemory, e)))?;
        bytes.resize(rec.len as usize, 0);
        self.file
            .read_exact_at(&mut bytes, rec.offset)
            .map_err(|e| self.io(e))?;
        if blake3::hash(&bytes).as_bytes() != &rec.hash {
            return Err(self.checksum(section));
        }
        Ok(bytes)
    }

    fn decode<T: DeserializeOwned>(
        &self,
        rec: &SectionRecord,
        section: Section,
    ) -> Result<T, SnapshotError> {
        let bytes = self.read(rec, section)?;
        match postcard::take_from_bytes(&bytes) {
            Ok((value, [])) => Ok(value),
            Ok(_) => Err(self.corrupt(section, "trailing bytes")),
            Err(e) => Err(self.corrupt(section, e.to_string())),
        }
    }

    fn state(&self) -> Result<State, SnapshotError> {
        self.decode(&self.index.state, Section::State)
    }

    fn disks(&self) -> Result<Vec<DiskRecord>, SnapshotError> {
        self.decode(&self.index.disks, Section::DiskLayer)
    }

    /// The boot images: a read-only mapping of their section, checked
    /// against its hash on first use ([`BootImages::verify`]).
    fn images(&self, config: &ConfigRecord) -> Result<BootImages, SnapshotError> {
        let rec = &self.index.images;
        if config.images_len() != Some(rec.len) {
            return Err(self.corrupt(Section::Images, "length differs from the images' sizes"));
        }
        self.within(Section::Images, rec.offset, rec.len)?;
        let len = usize::try_from(rec.len)
            .map_err(|_| self.corrupt(Section::Images, format!("{} bytes", rec.len)))?;
        if len == 0 {
            // Nothing to map (and an empty mapping is an error).
            if blake3::hash(&[]).as_bytes() != &rec.hash {
                return Err(self.checksum(Section::Images));
            }
            let empty = || ImageBytes::from(Vec::new());
            return Ok(BootImages {
                firmware: empty(),
                kernel: empty(),
                initrd: config.initrd_len.map(|_| empty()),
            });
        }
        let section = MappedSection::map(&self.file, &self.path, rec.offset, len, rec.hash)
            .map_err(|e| self.io(e))?;
        // The lengths sum to `len` (checked above), so each fits in usize.
        let mut at = 0;
        let mut part = |part_len: u64| {
            let range = at..at + part_len as usize;
            at = range.end;
            ImageBytes::mapped(&section, range)
        };
        Ok(BootImages {
            firmware: part(config.firmware_len),
            kernel: part(config.kernel_len),
            initrd: config.initrd_len.map(part),
        })
    }

    fn sections(&self) -> Vec<SectionInfo> {
        let i = &self.index;
        let ram = match &i.ram.layout {
            RamLayout::Sparse { offset } => (*offset, i.ram.size),
            // Describes what the index claims, which `read_info` has not
            // checked against the file: no arithmetic may overflow.
            RamLayout::Zstd { chunks, .. } => {
                let start = chunks.first().map_or(0, |c| c.offset);
                let end = chunks
                    .last()
                    .map_or(start, |c| c.offset.saturating_add(c.len));
                (start, end.saturating_sub(start))
            }
        };
        let info = |section, rec: &SectionRecord| SectionInfo {
            section,
            offset: rec.offset,
            len: rec.len,
        };
        vec![
            SectionInfo {
                section: Section::Preamble,
                offset: 0,
                len: PREAMBLE_LEN as u64,
            },
            info(Section::Images, &i.images),
            SectionInfo {
                section: Section::Ram,
                offset: ram.0,
                len: ram.1,
            },
            info(Section::State, &i.state),
            info(Section::DiskLayer, &i.disks),
            SectionInfo {
                section: Section::Index,
                offset: i.disks.offset.saturating_add(i.disks.len),
                len: self
                    .len
                    .saturating_sub(i.disks.offset.saturating_add(i.disks.len)),
            },
        ]
    }

    fn info(&self, state: &State, disks: Vec<DiskRecord>) -> Result<SnapshotInfo, SnapshotError> {
        let meta = self.file.metadata().map_err(|e| self.io(e))?;
        Ok(SnapshotInfo {
            path: self.path.clone(),
            version: FORMAT_VERSION,
            vm_uuid: state.vm_uuid,
            vmgenid: state.devices.vmgenid.id,
            state_hash: state.state_hash,
            icount: state.icount,
            cpus: state.config.cpus as usize,
            memory: state.config.memory,
            ram_encoding: match self.index.ram.layout {
                RamLayout::Sparse { .. } => RamEncoding::Sparse,
                RamLayout::Zstd { level, .. } => RamEncoding::Zstd { level },
            },
            ram_pages_stored: self.index.ram.stored_pages,
            file_bytes: meta.len(),
            allocated_bytes: meta.blocks() * 512,
            disks,
            sections: self.sections(),
        })
    }
}

/// Read a snapshot's description (preamble, index, state and disk layer,
/// all checked; RAM is not read).
pub fn read_info(path: &Path) -> Result<SnapshotInfo, SnapshotError> {
    let r = Reader::open(path)?;
    let state = r.state()?;
    let disks = r.disks()?;
    r.info(&state, disks)
}

/// Open the disks a snapshot names, in slot order, as they were opened
/// when it was saved (writable or read-only). An in-memory disk has no
/// file and cannot be opened here: it counts as missing.
pub fn open_disks(info: &SnapshotInfo) -> Result<Vec<Box<dyn BlockDevice>>, SnapshotError> {
    info.disks
        .iter()
        .map(|d| {
            let missing = |disk: String| SnapshotError::DiskMissing {
                path: info.path.clone(),
                slot: d.slot,
                disk,
            };
            let file = d
                .identity
                .path()
                .ok_or_else(|| missing("an in-memory disk".into()))?;
            // The format and backing policy it was opened with: a restore
            // never probes a header the guest may have written.
            let options = d
                .identity
                .open_options(d.read_only)
                .ok_or_else(|| missing("an in-memory disk".into()))?;
            disk::open(file, &options).map_err(|source| match &source {
                DiskError::Io { source: e, .. } if e.kind() == io::ErrorKind::NotFound => {
                    missing(file.display().to_string())
                }
                _ => SnapshotError::Disk {
                    path: info.path.clone(),
                    slot: d.slot,
                    source,
                },
            })
        })
        .collect()
}

// ----- restoring -----------------------------------------------------------

impl Machine {
    /// Restore a machine saved by [`Machine::save_snapshot`], with RAM
    /// mapped lazily. `disks` are the snapshot's disks in slot order
    /// ([`open_disks`]); each must match the recorded identity.
    pub fn restore_snapshot(
        path: &Path,
        output: Box<dyn Output>,
        disks: Vec<Box<dyn BlockDevice>>,
    ) -> Result<Machine, SnapshotError> {
        Self::restore_snapshot_with(path, output, disks, &RestoreOptions::default())
    }

    /// [`Machine::restore_snapshot`] with options. Every check runs before
    /// the machine exists; on error there is no machine to run. Without
    /// `verify`, the boot images (and sparse RAM) are checked lazily: see
    /// the module documentation.
    pub fn restore_snapshot_with(
        path: &Path,
        output: Box<dyn Output>,
        disks: Vec<Box<dyn BlockDevice>>,
        options: &RestoreOptions,
    ) -> Result<Machine, SnapshotError> {
        let r = Reader::open(path)?;
        let state = r.state()?;
        let records = r.disks()?;
        let config = r.config(&state)?;
        r.check_ram_record(&config)?;
        let disks = r.check_disks(&records, disks, options)?;
        let (fresh_virtio, backends) = virtio_devices(&config.virtio, disks)
            .map_err(|e| r.corrupt(Section::State, e.to_string()))?;
        let (devices, clock) = r.check_state(&state, &config, &fresh_virtio)?;
        r.check_disk_slots(&records, &backends)?;
        let disks = r.tracked_disks(backends, &state.disk_clusters, options.verify)?;
        if options.verify {
            config
                .images
                .verify()
                .map_err(|_| r.checksum(Section::Images))?;
        }
        let ram = r.ram(options.verify)?;
        let mut machine = Machine {
            config,
            harts: state.harts.iter().map(Hart::from_state).collect(),
            ram,
            board: Board {
                devices,
                clock,
                rom: state.rom,
                output,
                icount_base: 0,
                finish: None,
                disks,
            },
            icount: state.icount,
            current: state.current as usize,
            turn_retired: state.turn_retired,
            ram_hasher: RamHasher::new(),
            fast_path: true,
            jit: false,
        };
        if options.verify {
            let hash = machine
                .state_hash()
                .map_err(|e| r.corrupt(Section::State, e.to_string()))?;
            if hash != state.state_hash {
                return Err(SnapshotError::StateHash { path: r.path });
            }
        }
        Ok(machine)
    }
}

impl Reader {
    /// The machine config, validated like [`Machine::with_disks`] does.
    fn config(&self, state: &State) -> Result<MachineConfig, SnapshotError> {
        let c = &state.config;
        let bad = |reason: String| Err(self.corrupt(Section::State, reason));
        let cpus = usize::try_from(c.cpus).unwrap_or(usize::MAX);
        if !(1..=MAX_HARTS).contains(&cpus) {
            return bad(format!("{} CPUs", c.cpus));
        }
        if c.memory == 0
            || !c.memory.is_multiple_of(2 << 20)
            || c.memory > crate::machine::MAX_MEMORY
        {
            return bad(format!("memory size {} bytes", c.memory));
        }
        if c.virtio.len() > VIRTIO_SLOTS {
            return bad(format!("{} virtio slots", c.virtio.len()));
        }
        Ok(MachineConfig {
            cpus,
            memory: c.memory,
            images: self.images(c)?,
            bootargs: c.bootargs.clone(),
            boot_wall_ns: c.boot_wall_ns,
            vmgenid: c.vmgenid,
            virtio: c.virtio.iter().cloned().map(VirtioSpec::from).collect(),
            instructions_per_tick: c.instructions_per_tick,
        })
    }

    /// Check the scheduling position and the harts against the config,
    /// and restore the devices and the clock from their states.
    fn check_state(
        &self,
        state: &State,
        config: &MachineConfig,
        fresh_virtio: &[VirtioMmio],
    ) -> Result<(Devices, Clock), SnapshotError> {
        let bad = |reason: String| Err(self.corrupt(Section::State, reason));
        if state.harts.len() != config.cpus {
            return bad(format!(
                "{} harts for {} CPUs",
                state.harts.len(),
                config.cpus
            ));
        }
        if let Some((i, h)) = state
            .harts
            .iter()
            .enumerate()
            .find(|(i, h)| h.hartid != *i as u64)
        {
            return bad(format!("hart {i} has id {}", h.hartid));
        }
        if state.current >= config.cpus as u64 {
            return bad(format!("current hart {} of {}", state.current, config.cpus));
        }
        if state.turn_retired > QUANTUM {
            return bad(format!(
                "{} instructions into a turn of {QUANTUM}",
                state.turn_retired
            ));
        }
        if state.rom.len() as u64 > ROM_SIZE {
            return bad(format!("reset ROM of {} bytes", state.rom.len()));
        }
        let shape = BoardShape {
            harts: config.cpus,
            rate: config.instructions_per_tick,
            virtio: fresh_virtio,
        };
        let mismatch = |source| SnapshotError::StateMismatch {
            path: self.path.clone(),
            source,
        };
        let devices = Devices::restore(&state.devices, &shape).map_err(mismatch)?;
        let clock = Clock::restore(&state.clock, &shape).map_err(mismatch)?;
        Ok((devices, clock))
    }

    fn check_ram_record(&self, config: &MachineConfig) -> Result<(), SnapshotError> {
        let ram = &self.index.ram;
        let bad = |reason: String| Err(self.corrupt(Section::Index, reason));
        if ram.base != RAM_BASE || ram.size != config.memory {
            return bad(format!("RAM of {} bytes at {:#x}", ram.size, ram.base));
        }
        let chunks = (ram.size / RAM_CHUNK) as usize;
        if ram.chunk_hashes.len() != chunks {
            return bad(format!(
                "{} RAM chunk hashes for {chunks} chunks",
                ram.chunk_hashes.len()
            ));
        }
        match &ram.layout {
            RamLayout::Sparse { offset } => {
                if !offset.is_multiple_of(RAM_ALIGN) {
                    return bad(format!("RAM at unaligned offset {offset}"));
                }
                self.within(Section::Ram, *offset, ram.size)
            }
            RamLayout::Zstd { chunks: z, .. } => {
                if z.len() != chunks {
                    return bad(format!("{} compressed chunks for {chunks}", z.len()));
                }
                let bound = zstd::zstd_safe::compress_bound(RAM_CHUNK as usize) as u64;
                for (n, c) in z.iter().enumerate() {
                    if c.len > bound || (c.len == 0) != (c.pages == [0; 4]) {
                        return bad(format!("compressed chunk {n} of {} bytes", c.len));
                    }
                    self.within(Section::RamChunk(n), c.offset, c.len)?;
                }
                Ok(())
            }
        }
    }

    /// Match the given disks with the recorded ones.
    fn check_disks(
        &self,
        records: &[DiskRecord],
        disks: Vec<Box<dyn BlockDevice>>,
        options: &RestoreOptions,
    ) -> Result<Vec<Box<dyn BlockDevice>>, SnapshotError> {
        let rehash = options.verify;
        if let Some(missing) = records.get(disks.len()) {
            return Err(SnapshotError::DiskMissing {
                path: self.path.clone(),
                slot: missing.slot,
                disk: missing
                    .identity
                    .path()
                    .map_or("an in-memory disk".into(), |p| p.display().to_string()),
            });
        }
        if disks.len() != records.len() {
            return Err(SnapshotError::DiskCount {
                path: self.path.clone(),
                given: disks.len(),
                recorded: records.len(),
            });
        }
        for (record, disk) in records.iter().zip(&disks) {
            let checked = if options.new_top_layers {
                record.identity.check_allowing_new_top(&**disk, rehash)
            } else {
                record.identity.check(&**disk, rehash)
            };
            checked.map_err(|reason| SnapshotError::DiskChanged {
                path: self.path.clone(),
                slot: record.slot,
                reason,
            })?;
        }
        Ok(disks)
    }

    /// The recorded disks must sit in the slots the config gives disks.
    fn check_disk_slots(
        &self,
        records: &[DiskRecord],
        backends: &[Option<Box<dyn BlockDevice>>],
    ) -> Result<(), SnapshotError> {
        let config_slots = backends
            .iter()
            .enumerate()
            .filter(|(_, b)| b.is_some())
            .map(|(slot, _)| slot);
        if records.iter().map(|d| d.slot).ne(config_slots) {
            return Err(self.corrupt(Section::DiskLayer, "disk slots differ from the config's"));
        }
        Ok(())
    }

    /// The disks, tracked with the written clusters the state recorded
    /// (`reread`: the non-zero ones are read back at the next state hash).
    fn tracked_disks(
        &self,
        backends: Vec<Option<Box<dyn BlockDevice>>>,
        clusters: &[ClusterRecord],
        reread: bool,
    ) -> Result<Vec<Option<TrackedDisk>>, SnapshotError> {
        let disks = backends.iter().filter(|b| b.is_some()).count();
        if clusters.len() != disks {
            return Err(self.corrupt(
                Section::State,
                format!("written clusters of {} disks for {disks}", clusters.len()),
            ));
        }
        let mut records = clusters.iter().enumerate();
        let mut track = |inner| {
            let (n, record) = records.next().ok_or_else(|| {
                self.corrupt(Section::State, "fewer written-cluster records than disks")
            })?;
            TrackedDisk::restored(inner, record, reread).map_err(|source| {
                SnapshotError::ClusterRecord {
                    path: self.path.clone(),
                    disk: n,
                    source,
                }
            })
        };
        backends
            .into_iter()
            .map(|backend| backend.map(&mut track).transpose())
            .collect()
    }

    /// Guest RAM: mapped lazily (sparse) or decompressed (zstd).
    fn ram(&self, verify: bool) -> Result<Ram, SnapshotError> {
        let rec = &self.index.ram;
        let ram_err = |source| SnapshotError::Ram {
            path: self.path.clone(),
            source,
        };
        match &rec.layout {
            RamLayout::Sparse { offset } => {
                let ram =
                    Ram::from_file(rec.base, &self.file, *offset, rec.size).map_err(ram_err)?;
                if verify {
                    self.verify_sparse(&ram)?;
                }
                Ok(ram)
            }
            RamLayout::Zstd { chunks, .. } => {
                let mut ram = Ram::new(rec.base, rec.size).map_err(ram_err)?;
                self.decompress(&mut ram, chunks)?;
                Ok(ram)
            }
        }
    }

    fn verify_sparse(&self, ram: &Ram) -> Result<(), SnapshotError> {
        let chunks = ram.as_slice().chunks(RAM_CHUNK as usize);
        for (n, (chunk, hash)) in chunks.zip(&self.index.ram.chunk_hashes).enumerate() {
            let actual = if is_zero(chunk) {
                zero_chunk_hash()
            } else {
                *blake3::hash(chunk).as_bytes()
            };
            if &actual != hash {
                return Err(self.checksum(Section::RamChunk(n)));
            }
        }
        Ok(())
    }

    fn decompress(&self, ram: &mut Ram, chunks: &[ZstdChunk]) -> Result<(), SnapshotError> {
        let mut decompressor = zstd::bulk::Decompressor::new().map_err(|e| self.io(e))?;
        let mut frame = Vec::new();
        let mut pages = vec![0u8; RAM_CHUNK as usize];
        for (n, (c, hash)) in chunks.iter().zip(&self.index.ram.chunk_hashes).enumerate() {
            let section = Section::RamChunk(n);
            frame.resize(c.len as usize, 0);
            self.file
                .read_exact_at(&mut frame, c.offset)
                .map_err(|e| self.io(e))?;
            if blake3::hash(&frame).as_bytes() != hash {
                return Err(self.checksum(section));
            }
            if c.len == 0 {
                continue;
            }
            let want = count_pages(&c.pages) as usize * PAGE;
            let got = decompressor
                .decompress_to_buffer(&frame, &mut pages[..want])
                .map_err(|e| self.corrupt(section, e.to_string()))?;
            if got != want {
                return Err(self.corrupt(section, format!("{got} bytes for {want}")));
            }
            let chunk_base = ram.base() + n as u64 * RAM_CHUNK;
            let stored = (0..PAGES_PER_CHUNK).filter(|&p| page_stored(&c.pages, p));
            for (data, p) in pages[..want].chunks(PAGE).zip(stored) {
                ram.write(chunk_base + (p * PAGE) as u64, data);
            }
        }
        Ok(())
    }
}
