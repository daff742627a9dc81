//! The receiving end of a live save ([`super::LiveSave`]): boot images,
//! pages and finally the state section arrive in pieces and are put
//! together into a snapshot file, which is then restored like any other
//! (so everything it receives passes the same checks as a file would).
//! Pieces come from the network: each is checked against the sizes
//! announced up front, and an error names what was wrong.

use super::{
    encode_preamble, write_postcard, write_section, DiskRecord, Index, RamLayout, RamRecord,
    SectionRecord, SnapshotError, SpecRecord, State, IMAGES_OFFSET, PAGE, RAM_ALIGN, RAM_CHUNK,
};
use crate::layout::RAM_BASE;
use disk::{BlockDevice, DiskIdentity};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use tempfile::{NamedTempFile, TempPath};

/// A snapshot being put together; see the module docs.
pub struct Assembler {
    file: NamedTempFile,
    images_len: u64,
    memory: u64,
    ram_offset: u64,
    /// Per RAM chunk: some page of it arrived (the others are all zero).
    touched: Vec<bool>,
}

/// A completed snapshot file ([`Assembler::finish`]).
#[derive(Debug)]
pub struct Assembled {
    /// Deleted when dropped (a restored machine keeps its mappings).
    pub path: TempPath,
    /// The state hash the sender recorded in the state section: the
    /// restored machine's must equal it.
    pub state_hash: [u8; 32],
}

impl Assembler {
    /// A new (temporary) snapshot file in `dir` for a machine with
    /// `images_len` bytes of boot images and `memory` bytes of RAM.
    pub fn new(dir: &Path, images_len: u64, memory: u64) -> Result<Self, SnapshotError> {
        let io = |source| SnapshotError::Io {
            path: dir.to_path_buf(),
            source,
        };
        if memory == 0 || !memory.is_multiple_of(2 << 20) || memory > crate::machine::MAX_MEMORY {
            return Err(SnapshotError::Corrupt {
                path: dir.to_path_buf(),
                section: super::Section::Ram,
                reason: format!("memory size {memory} bytes"),
            });
        }
        let file = tempfile::Builder::new()
            .prefix(".transfer-")
            .tempfile_in(dir)
            .map_err(io)?;
        // The images are loaded into RAM, so they cannot be larger.
        let ram_offset = Some(images_len)
            .filter(|&len| len <= memory)
            .and_then(|len| IMAGES_OFFSET.checked_add(len))
            .and_then(|end| end.checked_next_multiple_of(RAM_ALIGN))
            .ok_or_else(|| SnapshotError::Corrupt {
                path: dir.to_path_buf(),
                section: super::Section::Images,
                reason: format!("{images_len} bytes of boot images for {memory} bytes of RAM"),
            })?;
        file.as_file().set_len(ram_offset + memory).map_err(io)?;
        Ok(Assembler {
            file,
            images_len,
            memory,
            ram_offset,
            touched: vec![false; (memory / RAM_CHUNK) as usize],
        })
    }

    pub fn path(&self) -> PathBuf {
        self.file.path().to_path_buf()
    }

    fn bad(&self, section: super::Section, reason: String) -> SnapshotError {
        SnapshotError::Corrupt {
            path: self.path(),
            section,
            reason,
        }
    }

    fn write(&self, bytes: &[u8], at: u64) -> Result<(), SnapshotError> {
        self.file
            .as_file()
            .write_all_at(bytes, at)
            .map_err(|source| SnapshotError::Io {
                path: self.path(),
                source,
            })
    }

    /// Bytes of the boot images at `offset` into them.
    pub fn images(&mut self, offset: u64, bytes: &[u8]) -> Result<(), SnapshotError> {
        match offset.checked_add(bytes.len() as u64) {
            Some(end) if end <= self.images_len => self.write(bytes, IMAGES_OFFSET + offset),
            _ => Err(self.bad(
                super::Section::Images,
                format!(
                    "{} bytes at offset {offset} of {} bytes of images",
                    bytes.len(),
                    self.images_len
                ),
            )),
        }
    }

    /// Page `index` of RAM.
    pub fn page(&mut self, index: u64, bytes: &[u8]) -> Result<(), SnapshotError> {
        let pages = self.memory / PAGE as u64;
        if index >= pages || bytes.len() != PAGE {
            return Err(self.bad(
                super::Section::Ram,
                format!("page {index} of {pages} with {} bytes", bytes.len()),
            ));
        }
        self.touched[(index * PAGE as u64 / RAM_CHUNK) as usize] = true;
        self.write(bytes, self.ram_offset + index * PAGE as u64)
    }

    /// Complete the file with `state` (the sender's state section) and
    /// the identities of `disks`, the replicas the machine will run on,
    /// in slot order.
    pub fn finish(
        self,
        state: &[u8],
        disks: &[&dyn BlockDevice],
    ) -> Result<Assembled, SnapshotError> {
        self.finish_as(state, disks, None)
    }

    /// [`Assembler::finish`] for disks opened only to be read (a bundle's
    /// frozen layers) that the machine ran on writable: the file records
    /// them as writable, as a save of the running machine would.
    pub fn finish_frozen(
        self,
        state: &[u8],
        disks: &[&dyn BlockDevice],
    ) -> Result<Assembled, SnapshotError> {
        self.finish_as(state, disks, Some(false))
    }

    fn finish_as(
        self,
        state: &[u8],
        disks: &[&dyn BlockDevice],
        read_only: Option<bool>,
    ) -> Result<Assembled, SnapshotError> {
        let parsed: State = match postcard::take_from_bytes(state) {
            Ok((value, [])) => value,
            Ok(_) => return Err(self.bad(super::Section::State, "trailing bytes".into())),
            Err(e) => return Err(self.bad(super::Section::State, e.to_string())),
        };
        if parsed.config.images_len() != Some(self.images_len)
            || parsed.config.memory != self.memory
        {
            return Err(self.bad(
                super::Section::State,
                "the images' or RAM's size differs from the one announced".into(),
            ));
        }
        let records = self.disk_records(&parsed, disks, read_only)?;
        let images = self.hash_region(IMAGES_OFFSET, self.images_len)?;
        let (ram, ram_end) = self.ram_record()?;
        let (file, path) = (self.file.as_file(), self.path());
        let state_rec = write_section(file, ram_end, state, &path)?;
        let disks_rec = write_postcard(file, state_rec.offset + state_rec.len, &records, &path)?;
        let index = Index {
            images,
            state: state_rec,
            disks: disks_rec,
            ram,
        };
        let index = write_postcard(file, disks_rec.offset + disks_rec.len, &index, &path)?;
        self.write(&encode_preamble(&index), 0)?;
        Ok(Assembled {
            path: self.file.into_temp_path(),
            state_hash: parsed.state_hash,
        })
    }

    fn disk_records(
        &self,
        state: &State,
        disks: &[&dyn BlockDevice],
        read_only: Option<bool>,
    ) -> Result<Vec<DiskRecord>, SnapshotError> {
        let slots: Vec<usize> = state
            .config
            .virtio
            .iter()
            .enumerate()
            .filter(|(_, spec)| matches!(spec, SpecRecord::Block { .. }))
            .map(|(slot, _)| slot)
            .collect();
        if slots.len() != disks.len() {
            return Err(SnapshotError::DiskCount {
                path: self.path(),
                given: disks.len(),
                recorded: slots.len(),
            });
        }
        slots
            .into_iter()
            .zip(disks)
            .map(|(slot, disk)| {
                let identity = DiskIdentity::of(*disk).map_err(|source| SnapshotError::Disk {
                    path: self.path(),
                    slot,
                    source,
                })?;
                Ok(DiskRecord {
                    slot,
                    read_only: read_only.unwrap_or(disk.read_only()),
                    identity,
                })
            })
            .collect()
    }

    /// The RAM record: one hash per chunk of the bytes stored (chunks no
    /// page arrived for are holes: zero, not read).
    fn ram_record(&self) -> Result<(RamRecord, u64), SnapshotError> {
        let mut chunk = vec![0u8; RAM_CHUNK as usize];
        let mut hashes = Vec::new();
        let mut stored = 0;
        for (n, at) in (0..self.memory).step_by(RAM_CHUNK as usize).enumerate() {
            if !self.touched[n] {
                hashes.push(super::zero_chunk_hash());
                continue;
            }
            self.file
                .as_file()
                .read_exact_at(&mut chunk, self.ram_offset + at)
                .map_err(|source| SnapshotError::Io {
                    path: self.path(),
                    source,
                })?;
            stored += chunk
                .chunks(PAGE)
                .filter(|page| !super::is_zero(page))
                .count() as u64;
            hashes.push(if super::is_zero(&chunk) {
                super::zero_chunk_hash()
            } else {
                *blake3::hash(&chunk).as_bytes()
            });
        }
        let record = RamRecord {
            base: RAM_BASE,
            size: self.memory,
            stored_pages: stored,
            layout: RamLayout::Sparse {
                offset: self.ram_offset,
            },
            chunk_hashes: hashes,
        };
        Ok((record, self.ram_offset + self.memory))
    }

    fn hash_region(&self, offset: u64, len: u64) -> Result<SectionRecord, SnapshotError> {
        let mut hasher = blake3::Hasher::new();
        let mut buf = vec![0u8; 1 << 20];
        let mut at = 0;
        while at < len {
            let n = (len - at).min(buf.len() as u64) as usize;
            self.file
                .as_file()
                .read_exact_at(&mut buf[..n], offset + at)
                .map_err(|source| SnapshotError::Io {
                    path: self.path(),
                    source,
                })?;
            hasher.update(&buf[..n]);
            at += n as u64;
        }
        Ok(SectionRecord {
            offset,
            len,
            hash: *hasher.finalize().as_bytes(),
        })
    }
}
