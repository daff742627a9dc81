//! What one layer file holds, and copying an image's chain into a new
//! qcow2 image: flattened (a full clone), or with the layers above some
//! file of the chain merged onto that file as the new backing (deleting a
//! snapshot whose disk layer has children).

use crate::create::{
    backing_entry, check_size, format_qcow2, parent_dir, refuse_existing, write_new, CLUSTER_SIZE,
};
use crate::image::{imago_err, open_alone, open_chain, BackingPolicy, Format, LayerInfo, Mode};
use crate::{DiskError, OpenOptions, Runs};
use imago::file::File as ImagoFile;
use imago::{FormatAccess, ShallowMapping};
use std::io;
use std::path::{Path, PathBuf};

/// Bytes [`copy`] reads and writes at once (a whole number of clusters of
/// the new image); its memory use is one buffer of this size.
pub const COPY_CHUNK: u64 = 1 << 20;

const CLUSTER: u64 = CLUSTER_SIZE as u64;

/// What [`copy`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CopyStats {
    /// Bytes written to the new image as data (ranges it records as zero
    /// clusters are not counted).
    pub bytes_copied: u64,
    /// The new image's virtual size (the source's).
    pub virtual_size: u64,
}

/// The byte ranges the layer file at `path` itself holds: for qcow2, its
/// clusters allocated as data (compressed or not) or as explicit zeroes,
/// not what shows through from its backing file (which is not opened);
/// for raw, the whole file. The file is opened read-only, with a shared
/// lock (a running VM writing it makes this fail with `Locked`).
pub fn allocated(path: &Path, format: Format) -> Result<Runs, DiskError> {
    held_runs(path, &open_alone(path, format)?)
}

/// [`allocated`] for a layer this process has open itself (so holds its
/// lock, which a second open would collide with): opened without a lock.
pub fn allocated_in_own(path: &Path, format: Format) -> Result<Runs, DiskError> {
    held_runs(path, &crate::image::open_alone_unlocked(path, format)?)
}

fn held_runs(path: &Path, layer: &crate::image::Chain) -> Result<Runs, DiskError> {
    let image = &layer.image;
    let size = image.size();
    let mut runs = Runs::default();
    let mut offset = 0;
    while offset < size {
        let (mapping, len) = image
            .get_shallow_mapping(offset, size - offset)
            .map_err(|e| imago_err(path, e))?;
        let held = match mapping {
            ShallowMapping::Eof { .. } => break,
            ShallowMapping::Zero { explicit, .. } => explicit,
            // No backing file is set, so nothing maps to one.
            ShallowMapping::Indirect { .. } => false,
            // Data, compressed data, and whatever else imago may add.
            _ => true,
        };
        if len == 0 {
            return Err(stuck(path, offset));
        }
        if held {
            runs.insert(offset, offset + len);
        }
        offset += len;
    }
    Ok(runs)
}

/// Build a new qcow2 image at `dst` whose guest-visible contents equal
/// those of `src`'s chain (opened read-only as `src_options` pin it; the
/// `read_only` flag is ignored).
///
/// Without `base`, the copy is flattened: it has no backing file and holds
/// only the clusters that read as nonzero in `src`, so a mostly-empty
/// disk copies quickly. With `base = Some((b, format))`, `b` must be a file
/// of `src`'s chain (the same file by canonical path, in the same format),
/// and the new image is backed by it (its name stored relative to `dst`,
/// as [`create`](crate::create) does) and holds exactly the ranges that
/// the layers of `src`'s chain above `b` hold, copied from `src`'s
/// contents (ranges reading as zero become zero clusters, so they still
/// hide `b`'s data). Allocation is rounded to the new image's clusters.
///
/// Like `create`, it refuses to replace an existing file and is
/// crash-safe: the image is built under a temporary name in `dst`'s
/// directory, synced, and linked into place only when complete; on error
/// the temporary file is removed. `progress(done, total)` is called after
/// each [`COPY_CHUNK`] of the virtual disk.
pub fn copy(
    src: &Path,
    src_options: &OpenOptions,
    dst: &Path,
    base: Option<(&Path, Format)>,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<CopyStats, DiskError> {
    refuse_existing(dst)?;
    let chain = open_chain(
        src,
        false,
        Mode::Pinned(src_options.format, src_options.backing),
    )?;
    let size = chain.image.size();
    check_size(size)?;
    let base_depth = base
        .map(|(b, format)| depth_of(src, &chain.layers, b, format))
        .transpose()?;
    let backing = base
        .map(|(b, format)| backing_entry(&parent_dir(dst), b, format, true))
        .transpose()?;

    write_new(dst, |file, tmp| {
        format_qcow2(file, tmp, size, backing.as_ref())?;
        // Opened with its backing chain: a write that covers part of a
        // cluster copies the rest from there.
        let out = open_chain(tmp, true, Mode::Pinned(Format::Qcow2, BackingPolicy::Any))?;
        let mut copier = Copier {
            src: &chain.image,
            src_path: src,
            dst: &out.image,
            dst_path: tmp,
            base_depth,
            buf: vec![0; COPY_CHUNK.min(size) as usize],
            stats: CopyStats {
                bytes_copied: 0,
                virtual_size: size,
            },
        };
        let mut start = 0;
        while start < size {
            let end = size.min(start + COPY_CHUNK);
            copier.chunk(start, end)?;
            progress(end, size);
            start = end;
        }
        // flush() writes imago's cached metadata; sync() makes it durable.
        let dst_err = |e| imago_err(tmp, e);
        out.image.flush().map_err(dst_err)?;
        out.image.sync().map_err(dst_err)?;
        Ok(copier.stats)
    })
}

/// Where `base` is in a chain's layers (0 is the top), checking its format.
fn depth_of(
    src: &Path,
    layers: &[LayerInfo],
    base: &Path,
    format: Format,
) -> Result<usize, DiskError> {
    let want = canonical(base)?;
    let refuse = |what: String| DiskError::Backing {
        path: src.to_path_buf(),
        backing: base.display().to_string(),
        what,
    };
    for (depth, layer) in layers.iter().enumerate() {
        if canonical(&layer.path)? == want {
            if layer.format != format {
                return Err(refuse(format!(
                    "is {} in this chain, not {format}",
                    layer.format
                )));
            }
            return Ok(depth);
        }
    }
    Err(refuse("is not in this image's backing chain".into()))
}

fn canonical(path: &Path) -> Result<PathBuf, DiskError> {
    std::fs::canonicalize(path).map_err(|source| DiskError::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// imago returned an empty mapping where it must not (a bug, not a
/// property of the file; refused rather than looping).
fn stuck(path: &Path, offset: u64) -> DiskError {
    DiskError::Corrupt {
        path: path.to_path_buf(),
        reason: format!("no mapping for byte {offset}"),
    }
}

/// Where the bytes a range of the source reads come from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Source {
    /// Data in a layer above the base (or in any layer, when flattening).
    Data,
    /// Zeroes from a layer above the base: an explicit zero range, an
    /// unallocated range of the bottom file, or the part of a backing
    /// file shorter than its overlay that lies past its end.
    Zero,
    /// The base (or below): the new image's backing file shows it.
    Base,
}

/// One copy in progress.
struct Copier<'a> {
    src: &'a FormatAccess<ImagoFile>,
    src_path: &'a Path,
    dst: &'a FormatAccess<ImagoFile>,
    dst_path: &'a Path,
    /// The base's place in the source's chain (`None`: flattening).
    base_depth: Option<usize>,
    buf: Vec<u8>,
    stats: CopyStats,
}

impl Copier<'_> {
    /// Copy what the new image must hold of `[start, end)` (whole clusters
    /// of it, `start` aligned).
    fn chunk(&mut self, start: u64, end: u64) -> Result<(), DiskError> {
        let size = self.stats.virtual_size;
        let mut wanted = Runs::default();
        let mut at = start;
        while at < end {
            let (source, len) = self
                .source(at, end - at)
                .map_err(|e| imago_err(self.src_path, e))?;
            if len == 0 {
                return Err(stuck(self.src_path, at));
            }
            let len = len.min(end - at);
            let take = match source {
                Source::Data => true,
                Source::Zero => self.base_depth.is_some(),
                Source::Base => false,
            };
            if take {
                let a = at / CLUSTER * CLUSTER;
                let b = (at + len).div_ceil(CLUSTER).saturating_mul(CLUSTER);
                wanted.insert(a, b.min(size));
            }
            at += len;
        }
        for (a, b) in wanted.iter() {
            self.copy_run(a, b)?;
        }
        Ok(())
    }

    /// Follow `offset` down the source's chain, layer by layer, until a
    /// layer maps it or the base is reached. Returns how many bytes from
    /// `offset` come from the same kind of source.
    fn source(&self, offset: u64, max_len: u64) -> io::Result<(Source, u64)> {
        let mut layer = self.src;
        let mut depth = 0;
        let mut at = offset;
        let mut len = max_len;
        loop {
            if Some(depth) == self.base_depth {
                return Ok((Source::Base, len));
            }
            let (mapping, n) = layer.get_shallow_mapping(at, len)?;
            match mapping {
                ShallowMapping::Zero { .. } => return Ok((Source::Zero, n)),
                // Past the end of a backing file (never of the top, which
                // is asked only within its size): it reads as zeroes.
                ShallowMapping::Eof { .. } => return Ok((Source::Zero, len)),
                ShallowMapping::Indirect {
                    layer: next,
                    offset: next_at,
                    ..
                } => {
                    depth += 1;
                    layer = next;
                    at = next_at;
                    len = n;
                }
                // Data, compressed data, and whatever else imago may add
                // (read through the chain like any data).
                _ => return Ok((Source::Data, n)),
            }
        }
    }

    /// Copy `[a, b)` (at most one chunk, whole clusters but for the disk's
    /// end) from the source: clusters of zeroes become zero clusters when
    /// they must hide the base, and are left out when flattening.
    fn copy_run(&mut self, a: u64, b: u64) -> Result<(), DiskError> {
        let buf = &mut self.buf[..(b - a) as usize];
        self.src
            .read(&mut *buf, a)
            .map_err(|e| imago_err(self.src_path, e))?;
        let dst_err = |e| imago_err(self.dst_path, e);
        // Runs of clusters that are all zero or all not.
        let mut clusters = buf.chunks(CLUSTER_SIZE).peekable();
        let mut at = a;
        while let Some(first) = clusters.next() {
            let zero = is_zero(first);
            let mut len = first.len() as u64;
            while let Some(next) = clusters.next_if(|c| is_zero(c) == zero) {
                len += next.len() as u64;
            }
            let from = (at - a) as usize;
            if !zero {
                let data = &buf[from..from + len as usize];
                self.dst.write(data, at).map_err(dst_err)?;
                self.stats.bytes_copied += len;
            } else if self.base_depth.is_some() {
                self.dst.write_zeroes(at, len).map_err(dst_err)?;
            }
            at += len;
        }
        Ok(())
    }
}

fn is_zero(data: &[u8]) -> bool {
    data.iter().all(|&b| b == 0)
}
