//! Guest RAM: one contiguous block of host memory at a physical base address.
//!
//! Besides the bytes, RAM keeps two pieces of bookkeeping that every writer
//! (harts and device DMA alike) must update, which is why all writes go
//! through this type: dirty-page tracking (for incremental state hashes,
//! snapshots and live migration) and the decoded-instruction cache of each
//! page, dropped when the page is written.
//!
//! # Several dirty-page consumers
//!
//! Each consumer (the state hash, a pre-copy snapshot, ...) registers a
//! [`DirtyTracker`] and gets its own view: [`Ram::take_dirty`] reports the
//! pages written since *that* tracker last took them, so no consumer can
//! steal another's dirtiness. A guest store still sets one bit in one
//! shared bitmap (the hot path stays a single OR); that bitmap is folded
//! into every tracker's own bitmap when one of them takes its pages, which
//! costs one pass over the bitmap words (2 048 for 512 MiB).

use crate::decode::DecodedPage;
use memmap2::{MmapMut, MmapOptions};
use std::fs::File;
use std::sync::atomic::{AtomicU64, Ordering};

pub const PAGE_SHIFT: u32 = 12;
pub const PAGE_SIZE: u64 = 1 << PAGE_SHIFT;

#[derive(Debug, thiserror::Error)]
pub enum RamError {
    #[error("RAM size {0} bytes is not a non-zero multiple of 4 KiB")]
    BadSize(u64),
    #[error("cannot map {size} bytes of guest RAM: {source}")]
    Map {
        size: u64,
        #[source]
        source: std::io::Error,
    },
    #[error("RAM image at file offset {offset} is not aligned to a 4 KiB page")]
    Unaligned { offset: u64 },
    #[error("RAM image of {size} bytes at file offset {offset} lies beyond the end of the file ({file_len} bytes)")]
    BeyondFile {
        offset: u64,
        size: u64,
        file_len: u64,
    },
}

/// One consumer's registration for dirty pages of one [`Ram`] (see the
/// module docs). Not `Clone`: two consumers need two trackers.
#[derive(Debug)]
#[must_use = "a tracker is the only way to take its dirty pages"]
pub struct DirtyTracker {
    /// The [`Ram`] it belongs to (RAM replaced on reset is another one).
    ram: u64,
    slot: usize,
}

/// Tells [`Ram`]s apart for [`DirtyTracker`]s; never guest-visible.
static NEXT_RAM_ID: AtomicU64 = AtomicU64::new(0);

pub struct Ram {
    base: u64,
    mem: MmapMut,
    /// One bit per page written since the trackers last took their pages.
    dirty: Vec<u64>,
    /// Each tracker's own bitmap (`None`: a freed slot).
    trackers: Vec<Option<Vec<u64>>>,
    id: u64,
    /// Decoded instructions per page, built lazily by the harts.
    pub(crate) decoded: Vec<Option<Box<DecodedPage>>>,
    /// Bumped whenever a decoded page is dropped, so a hart holding a
    /// pointer to one can tell it is gone.
    code_epoch: u64,
    /// Per page: how many times its decoded code was dropped, so that
    /// translations of the page (`hart::jit`) can tell whether they are
    /// still current without knowing what happened to other pages.
    code_gen: Vec<u64>,
    /// Per page: 0 when a store to it needs nothing beyond writing the
    /// bytes (its dirty bit is set and it has no decoded code), else 1:
    /// the store must go through [`Ram::touch_page`]. Generated code
    /// checks this one byte instead of the bitmap and the decoded slot.
    store_check: Vec<u8>,
}

impl Ram {
    /// Anonymous zero-filled RAM; untouched pages cost no host memory.
    pub fn new(base: u64, size: u64) -> Result<Self, RamError> {
        if size == 0 || !size.is_multiple_of(PAGE_SIZE) || usize::try_from(size).is_err() {
            return Err(RamError::BadSize(size));
        }
        let mem =
            MmapMut::map_anon(size as usize).map_err(|source| RamError::Map { size, source })?;
        Ok(Self::from_mmap(base, mem))
    }

    /// RAM initialised from `size` bytes of `file` at `offset`, through a
    /// private (copy-on-write) mapping: pages are read in lazily when first
    /// touched, guest writes never reach the file, and file holes read as
    /// zero without costing memory until written. The file must not be
    /// truncated or changed while mapped (a snapshot file is written once,
    /// then only renamed or deleted); truncation would fault the host.
    pub fn from_file(base: u64, file: &File, offset: u64, size: u64) -> Result<Self, RamError> {
        if size == 0 || !size.is_multiple_of(PAGE_SIZE) || usize::try_from(size).is_err() {
            return Err(RamError::BadSize(size));
        }
        if !offset.is_multiple_of(PAGE_SIZE) {
            return Err(RamError::Unaligned { offset });
        }
        let map_err = |source| RamError::Map { size, source };
        let file_len = file.metadata().map_err(map_err)?.len();
        if offset.checked_add(size).is_none_or(|end| end > file_len) {
            return Err(RamError::BeyondFile {
                offset,
                size,
                file_len,
            });
        }
        // SAFETY: a private mapping of a regular file range that exists
        // (checked above). Guest bytes have no validity invariants, so
        // whatever the file holds is a valid `[u8]`; our own writes go to
        // private copies. The remaining hazard, another process truncating
        // the file under the mapping, is excluded by the snapshot files'
        // write-once contract (see the doc comment).
        let mem = unsafe {
            MmapOptions::new()
                .offset(offset)
                .len(size as usize)
                .map_copy(file)
        }
        .map_err(map_err)?;
        Ok(Self::from_mmap(base, mem))
    }

    /// RAM over an existing mapping (e.g. a private mapping of a snapshot
    /// file, so restore maps pages lazily). Its length must be page aligned.
    pub fn from_mmap(base: u64, mem: MmapMut) -> Self {
        let pages = mem.len() >> PAGE_SHIFT;
        Self {
            base,
            mem,
            dirty: vec![0; pages.div_ceil(64)],
            trackers: Vec::new(),
            id: NEXT_RAM_ID.fetch_add(1, Ordering::Relaxed),
            decoded: (0..pages).map(|_| None).collect(),
            code_epoch: 0,
            code_gen: vec![0; pages],
            store_check: vec![1; pages],
        }
    }

    pub fn base(&self) -> u64 {
        self.base
    }

    pub fn size(&self) -> u64 {
        self.mem.len() as u64
    }

    pub fn pages(&self) -> usize {
        self.decoded.len()
    }

    /// Offset of `[pa, pa+len)` inside RAM, if all of it is RAM.
    #[inline]
    pub fn offset(&self, pa: u64, len: u64) -> Option<usize> {
        let off = pa.checked_sub(self.base)?;
        let end = off.checked_add(len)?;
        (end <= self.mem.len() as u64).then_some(off as usize)
    }

    pub fn contains(&self, pa: u64, len: u64) -> bool {
        self.offset(pa, len).is_some()
    }

    /// All of RAM, read-only.
    pub fn as_slice(&self) -> &[u8] {
        &self.mem
    }

    /// `len` bytes at `pa`, read-only.
    pub fn slice(&self, pa: u64, len: usize) -> Option<&[u8]> {
        let off = self.offset(pa, len as u64)?;
        Some(&self.mem[off..off + len])
    }

    /// Copy out `buf.len()` bytes at `pa`; false if not all of it is RAM.
    pub fn read(&self, pa: u64, buf: &mut [u8]) -> bool {
        match self.slice(pa, buf.len()) {
            Some(s) => {
                buf.copy_from_slice(s);
                true
            }
            None => false,
        }
    }

    /// Copy `data` to `pa`, marking pages dirty and dropping their decoded
    /// code; false (and nothing written) if not all of it is RAM.
    pub fn write(&mut self, pa: u64, data: &[u8]) -> bool {
        let Some(off) = self.offset(pa, data.len() as u64) else {
            return false;
        };
        self.mem[off..off + data.len()].copy_from_slice(data);
        self.touch_range(off, data.len());
        true
    }

    /// Mutable access to `len` bytes at `pa` for a device that fills guest
    /// memory in place; the pages are marked written.
    pub fn slice_mut(&mut self, pa: u64, len: usize) -> Option<&mut [u8]> {
        let off = self.offset(pa, len as u64)?;
        self.touch_range(off, len);
        Some(&mut self.mem[off..off + len])
    }

    pub fn read_u32(&self, pa: u64) -> Option<u32> {
        let mut b = [0u8; 4];
        self.read(pa, &mut b).then(|| u32::from_le_bytes(b))
    }

    #[inline]
    pub fn read_u64(&self, pa: u64) -> Option<u64> {
        let off = self.offset(pa, 8)?;
        let b: [u8; 8] = self.mem.get(off..off + 8)?.try_into().ok()?;
        Some(u64::from_le_bytes(b))
    }

    pub fn write_u32(&mut self, pa: u64, v: u32) -> bool {
        self.write(pa, &v.to_le_bytes())
    }

    pub fn write_u64(&mut self, pa: u64, v: u64) -> bool {
        self.write(pa, &v.to_le_bytes())
    }

    /// Register a new dirty-page consumer. Its first [`Ram::take_dirty`]
    /// reports the pages written from now on (anything earlier it must
    /// read in full anyway).
    pub fn track_dirty(&mut self) -> DirtyTracker {
        self.fold_dirty(); // earlier writes belong to the existing trackers
        let bitmap = vec![0; self.dirty.len()];
        let slot = match self.trackers.iter().position(Option::is_none) {
            Some(free) => {
                self.trackers[free] = Some(bitmap);
                free
            }
            None => {
                self.trackers.push(Some(bitmap));
                self.trackers.len() - 1
            }
        };
        DirtyTracker { ram: self.id, slot }
    }

    /// Stop tracking for `tracker` (a tracker of other RAM is ignored).
    pub fn untrack_dirty(&mut self, tracker: DirtyTracker) {
        if tracker.ram == self.id {
            self.trackers[tracker.slot] = None;
        }
    }

    /// Page indices written since `tracker` last took them (or was
    /// registered), in ascending order. `None` if `tracker` belongs to
    /// other RAM (e.g. this RAM replaced it on reset): the consumer must
    /// then treat every page as written and register anew.
    pub fn take_dirty(&mut self, tracker: &DirtyTracker) -> Option<Vec<usize>> {
        if tracker.ram != self.id {
            return None;
        }
        self.fold_dirty();
        let bitmap = self.trackers.get_mut(tracker.slot)?.as_mut()?;
        let mut out = Vec::new();
        for (w, word) in bitmap.iter_mut().enumerate() {
            let mut bits = std::mem::take(word);
            while bits != 0 {
                out.push(w * 64 + bits.trailing_zeros() as usize);
                bits &= bits - 1;
            }
        }
        Some(out)
    }

    /// Move the shared bitmap's bits into every tracker's own.
    fn fold_dirty(&mut self) {
        for (w, word) in self.dirty.iter_mut().enumerate() {
            let bits = std::mem::take(word);
            if bits != 0 {
                for bitmap in self.trackers.iter_mut().flatten() {
                    bitmap[w] |= bits;
                }
                // Clean again: the next store must mark them.
                let mut b = bits;
                while b != 0 {
                    if let Some(c) = self
                        .store_check
                        .get_mut(w * 64 + b.trailing_zeros() as usize)
                    {
                        *c = 1;
                    }
                    b &= b - 1;
                }
            }
        }
    }

    /// Forget every decoded instruction (`fence.i`, or a bulk change).
    pub fn flush_decoded(&mut self) {
        self.decoded.iter_mut().for_each(|p| *p = None);
        self.code_gen.iter_mut().for_each(|g| *g += 1);
        self.code_epoch += 1;
        for (page, c) in self.store_check.iter_mut().enumerate() {
            let dirty = self.dirty[page >> 6] & (1 << (page & 63)) != 0;
            *c = u8::from(!dirty);
        }
    }

    /// The decoded instructions of page `index`, made (empty) if there are
    /// none yet; `None` for a page outside RAM.
    #[inline]
    pub(crate) fn decoded_page(&mut self, index: usize) -> Option<&mut DecodedPage> {
        let slot = self.decoded.get_mut(index)?;
        if slot.is_none() {
            // Stores to it must drop the code again.
            if let Some(c) = self.store_check.get_mut(index) {
                *c = 1;
            }
        }
        Some(&mut **slot.get_or_insert_with(crate::decode::new_page))
    }

    #[inline(always)]
    pub(crate) fn code_epoch(&self) -> u64 {
        self.code_epoch
    }

    fn touch_range(&mut self, off: usize, len: usize) {
        if len == 0 {
            return;
        }
        let first = off >> PAGE_SHIFT;
        let last = (off + len - 1) >> PAGE_SHIFT;
        for page in first..=last {
            self.touch_page(page);
        }
    }

    /// Hot path of every guest store: mark dirty, drop stale decoded code.
    #[inline(always)]
    pub(crate) fn touch_page(&mut self, page: usize) {
        self.dirty[page >> 6] |= 1 << (page & 63);
        if let Some(slot) = self.decoded.get_mut(page) {
            if slot.is_some() {
                *slot = None;
                self.code_epoch += 1;
                self.code_gen[page] += 1;
            }
            self.store_check[page] = 0;
        }
    }

    /// How many times page `page`'s decoded code was dropped (0 for a
    /// page outside RAM).
    #[inline(always)]
    pub(crate) fn code_gen(&self, page: usize) -> u64 {
        self.code_gen.get(page).copied().unwrap_or(0)
    }

    /// The per-page code generations, for generated code that checks a
    /// translation is current as [`Ram::code_gen`] does.
    pub(crate) fn code_gen_ptr(&self) -> *const u64 {
        self.code_gen.as_ptr()
    }

    /// Tells this RAM apart from others (e.g. RAM replaced on reset).
    pub(crate) fn id(&self) -> u64 {
        self.id
    }

    /// One byte per page, 0 when a store needs nothing but the write
    /// (see the field), for generated code that calls
    /// [`Ram::touch_page`] otherwise.
    pub(crate) fn store_check_ptr(&self) -> *const u8 {
        self.store_check.as_ptr()
    }

    #[inline(always)]
    pub(crate) fn bytes(&self) -> &[u8] {
        &self.mem
    }

    #[inline(always)]
    pub(crate) fn bytes_mut(&mut self) -> &mut [u8] {
        &mut self.mem
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn file_backed_ram_reads_the_file_and_writes_privately() {
        let mut file = tempfile::tempfile().unwrap();
        let mut image = vec![0u8; 3 * PAGE_SIZE as usize];
        image[PAGE_SIZE as usize + 5] = 0xab; // page 0 of the RAM region
        image[2 * PAGE_SIZE as usize] = 0xcd; // page 1
        file.write_all(&image).unwrap();

        let mut ram = Ram::from_file(0x8000_0000, &file, PAGE_SIZE, 2 * PAGE_SIZE).unwrap();
        let tracker = ram.track_dirty();
        assert_eq!(ram.size(), 2 * PAGE_SIZE);
        assert_eq!(ram.slice(0x8000_0005, 1).unwrap(), [0xab]);
        assert_eq!(ram.read_u32(0x8000_1000), Some(0xcd));
        assert_eq!(ram.take_dirty(&tracker), Some(vec![]), "reads are clean");

        assert!(ram.write_u32(0x8000_1000, 0x1234_5678));
        assert_eq!(ram.read_u32(0x8000_1000), Some(0x1234_5678));
        assert_eq!(ram.take_dirty(&tracker), Some(vec![1]));
        let mut on_disk = vec![0u8; image.len()];
        std::os::unix::fs::FileExt::read_exact_at(&file, &mut on_disk, 0).unwrap();
        assert_eq!(on_disk, image, "guest writes never reach the file");
    }

    #[test]
    fn file_backed_ram_rejects_bad_ranges() {
        let file = tempfile::tempfile().unwrap();
        file.set_len(2 * PAGE_SIZE).unwrap();
        let err = |offset, size| Ram::from_file(0, &file, offset, size).err().unwrap();
        assert!(matches!(
            err(100, PAGE_SIZE),
            RamError::Unaligned { offset: 100 }
        ));
        assert!(matches!(err(0, 100), RamError::BadSize(100)));
        assert!(matches!(
            err(PAGE_SIZE, 2 * PAGE_SIZE),
            RamError::BeyondFile { file_len, .. } if file_len == 2 * PAGE_SIZE
        ));
        assert!(matches!(
            err(!0xfff, PAGE_SIZE),
            RamError::BeyondFile { .. }
        ));
    }

    /// The store-check byte is 0 only while the page's dirty bit is set
    /// and it holds no decoded code, whatever happens in between.
    #[test]
    fn the_store_check_byte_follows_the_dirty_bit_and_the_code() {
        let mut ram = Ram::new(0x1000, 4 * PAGE_SIZE).unwrap();
        let tracker = ram.track_dirty();
        let check = |ram: &Ram, page: usize| ram.store_check[page];
        assert_eq!(check(&ram, 1), 1, "clean at first");
        ram.write_u32(0x1000 + PAGE_SIZE, 1);
        assert_eq!(check(&ram, 1), 0, "written: dirty, no code");
        assert_eq!(ram.take_dirty(&tracker), Some(vec![1]));
        assert_eq!(check(&ram, 1), 1, "taken: clean again");
        ram.write_u32(0x1000 + PAGE_SIZE, 2);
        assert_eq!(check(&ram, 1), 0);
        assert!(ram.decoded_page(1).is_some());
        assert_eq!(check(&ram, 1), 1, "code on it");
        ram.write_u32(0x1000 + PAGE_SIZE, 3);
        assert!(ram.decoded[1].is_none(), "the write dropped the code");
        assert_eq!(check(&ram, 1), 0);
        assert!(ram.decoded_page(1).is_some());
        assert!(ram.decoded_page(2).is_some());
        ram.flush_decoded();
        assert_eq!((check(&ram, 1), check(&ram, 2)), (0, 1), "by the dirty bit");
        assert!(ram.decoded_page(9).is_none(), "outside RAM");
    }

    #[test]
    fn each_tracker_sees_every_write_once() {
        let mut ram = Ram::new(0x1000, 200 * PAGE_SIZE).unwrap();
        ram.write_u32(0x1000, 1); // before any tracker: reported to none
        let hash = ram.track_dirty();
        assert!(ram.write(0x1000 + 3 * PAGE_SIZE - 2, &[1, 2, 3, 4])); // pages 2, 3
        let copy = ram.track_dirty();
        ram.slice_mut(0x1000 + 150 * PAGE_SIZE, 1).unwrap()[0] = 7; // page 150

        assert_eq!(ram.take_dirty(&hash), Some(vec![2, 3, 150]));
        assert_eq!(ram.take_dirty(&hash), Some(vec![]), "taken");
        ram.write_u64(0x1000 + 64 * PAGE_SIZE, 9); // page 64
        assert_eq!(
            ram.take_dirty(&copy),
            Some(vec![64, 150]),
            "the other tracker's take stole nothing"
        );
        assert_eq!(ram.take_dirty(&hash), Some(vec![64]));

        ram.untrack_dirty(copy);
        let again = ram.track_dirty(); // reuses the freed slot, clean
        assert_eq!(ram.take_dirty(&again), Some(vec![]));

        let mut other = Ram::new(0x1000, PAGE_SIZE).unwrap();
        assert_eq!(other.take_dirty(&hash), None, "a tracker of other RAM");
    }
}
