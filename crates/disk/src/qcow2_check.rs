//! The check a qcow2 image passes before it is opened for writing: its
//! metadata (header, refcount table and blocks, L1 and L2 tables) lies
//! inside the file, aligned, and every metadata cluster has a non-zero
//! refcount.
//!
//! imago allocates new clusters by their refcounts. When a metadata
//! cluster's refcount is zero, it hands that cluster out again: guest data
//! overwrites the refcount table or an L2 table, and the allocator, whose
//! refcount structures just vanished under it, recurses without bound (a
//! stack overflow that kills the VMM; found by fuzzing, see
//! `fuzz/README.md`). Reading needs no refcounts, so read-only opens skip
//! this. Data clusters with a zero refcount would only be shared by two
//! guest blocks (the guest's data, not the host, suffers); checking them
//! needs a walk of every L2 entry, which `qemu-img check` does.

use crate::DiskError;
use std::collections::BTreeMap;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;

/// Bits 9..56 of refcount table and L1 entries hold the offset.
const OFFSET_MASK: u64 = 0x00ff_ffff_ffff_fe00;
/// An image whose metadata tables exceed this is refused for writing
/// (real images keep them far smaller: a 1 TiB image with 64 KiB
/// clusters has a 16 KiB L1 table).
const MAX_TABLE: u64 = 64 << 20;

struct Image<'a> {
    path: &'a Path,
    file: &'a File,
    len: u64,
    cluster_bits: u32,
    refcount_order: u32,
    reftable: Vec<u64>,
    refblocks: BTreeMap<u64, Vec<u8>>,
}

fn be64(b: &[u8]) -> u64 {
    let mut v = [0; 8];
    v.copy_from_slice(&b[..8]);
    u64::from_be_bytes(v)
}

fn be32(b: &[u8]) -> u32 {
    let mut v = [0; 4];
    v.copy_from_slice(&b[..4]);
    u32::from_be_bytes(v)
}

/// Checks the image whose header is `head` (at least the v2 header).
pub(crate) fn check_for_writing(
    path: &Path,
    file: &File,
    head: &[u8],
    len: u64,
) -> Result<(), DiskError> {
    let version = be32(&head[4..]);
    let cluster_bits = be32(&head[20..]);
    if !(9..=21).contains(&cluster_bits) {
        return Ok(()); // imago refuses the cluster size itself
    }
    let refcount_order = match version {
        3 if head.len() >= 100 => be32(&head[96..]),
        _ => 4,
    };
    if refcount_order > 6 {
        return Ok(()); // imago refuses it
    }
    let mut image = Image {
        path,
        file,
        len,
        cluster_bits,
        refcount_order,
        reftable: Vec::new(),
        refblocks: BTreeMap::new(),
    };
    let cluster = image.cluster();
    let reftable_offset = be64(&head[48..]);
    let reftable_len = u64::from(be32(&head[56..])) * cluster;
    let table = image.table("refcount table", reftable_offset, reftable_len)?;
    image.reftable = table.chunks_exact(8).map(be64).collect();
    // Every refcount block in place before any refcount is looked up.
    let blocks: Vec<(usize, u64)> = (image.reftable.iter().map(|e| e & OFFSET_MASK))
        .enumerate()
        .filter(|&(_, block)| block != 0)
        .collect();
    for &(n, block) in &blocks {
        image.placed(&format!("refcount block {n}"), block, cluster)?;
    }
    image.needs_refcount("the header", 0)?;
    image.needs_refcounts("the refcount table", reftable_offset, reftable_len)?;
    for (n, block) in blocks {
        image.needs_refcount(&format!("refcount block {n}"), block)?;
    }
    let l1_len = u64::from(be32(&head[36..])) * 8;
    let l1_offset = be64(&head[40..]);
    let l1 = image.table("L1 table", l1_offset, l1_len)?;
    image.needs_refcounts("the L1 table", l1_offset, l1_len)?;
    for (n, entry) in l1.chunks_exact(8).enumerate() {
        let l2 = be64(entry) & OFFSET_MASK;
        if l2 != 0 {
            let what = format!("L2 table {n}");
            image.placed(&what, l2, cluster)?;
            image.needs_refcount(&what, l2)?;
        }
    }
    Ok(())
}

impl Image<'_> {
    fn cluster(&self) -> u64 {
        1 << self.cluster_bits
    }

    fn corrupt(&self, reason: String) -> DiskError {
        DiskError::Corrupt {
            path: self.path.to_path_buf(),
            reason: format!("{reason} (try `qemu-img check -r all`)"),
        }
    }

    /// `[offset, offset+len)` is cluster-aligned and inside the file.
    fn placed(&self, what: &str, offset: u64, len: u64) -> Result<(), DiskError> {
        if !offset.is_multiple_of(self.cluster())
            || offset.checked_add(len).is_none_or(|e| e > self.len)
        {
            return Err(self.corrupt(format!(
                "{what} at byte {offset} (+{len}) is outside the {}-byte file or unaligned",
                self.len
            )));
        }
        Ok(())
    }

    fn read(&self, offset: u64, len: u64) -> Result<Vec<u8>, DiskError> {
        // Callers checked the range lies inside the file.
        let mut bytes = vec![0u8; len as usize];
        self.file
            .read_exact_at(&mut bytes, offset)
            .map_err(|source| DiskError::Io {
                path: self.path.to_path_buf(),
                source,
            })?;
        Ok(bytes)
    }

    fn table(&self, what: &str, offset: u64, len: u64) -> Result<Vec<u8>, DiskError> {
        if len > MAX_TABLE {
            return Err(self.corrupt(format!("{what} of {len} bytes")));
        }
        self.placed(what, offset, len)?;
        self.read(offset, len)
    }

    /// The refcount of host cluster `index` (0 where no refcount block
    /// covers it).
    fn refcount(&mut self, index: u64) -> Result<u64, DiskError> {
        let bits = 1u64 << self.refcount_order;
        let per_block_bits = self.cluster_bits + 3 - self.refcount_order;
        let rt_index = index >> per_block_bits;
        let Some(&entry) = usize::try_from(rt_index)
            .ok()
            .and_then(|i| self.reftable.get(i))
        else {
            return Ok(0);
        };
        let block = entry & OFFSET_MASK;
        if block == 0 {
            return Ok(0);
        }
        if !self.refblocks.contains_key(&block) {
            let bytes = self.read(block, self.cluster())?;
            self.refblocks.insert(block, bytes);
        }
        let bytes = &self.refblocks[&block];
        let i = index & ((1 << per_block_bits) - 1);
        let bit = i * bits;
        let at = (bit / 8) as usize;
        Ok(if bits < 8 {
            u64::from(bytes[at] >> (bit % 8)) & ((1 << bits) - 1)
        } else {
            bytes[at..at + (bits / 8) as usize]
                .iter()
                .fold(0, |v, &b| (v << 8) | u64::from(b))
        })
    }

    fn needs_refcount(&mut self, what: &str, offset: u64) -> Result<(), DiskError> {
        let index = offset >> self.cluster_bits;
        if self.refcount(index)? == 0 {
            return Err(self.corrupt(format!(
                "{what} (cluster {index}) has a refcount of 0, so writing would overwrite it"
            )));
        }
        Ok(())
    }

    fn needs_refcounts(&mut self, what: &str, offset: u64, len: u64) -> Result<(), DiskError> {
        let mut at = offset;
        while at < offset + len {
            self.needs_refcount(what, at)?;
            at += self.cluster();
        }
        Ok(())
    }
}
