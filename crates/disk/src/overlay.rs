//! A copy-on-write layer in memory over a read-only disk: the guest sees a
//! writable disk, the image underneath never changes. Replays and other
//! throw-away runs use it so that re-executing a recording leaves the
//! recorded disks as they were.
//!
//! Memory is bounded by what the guest wrote, not by what it zeroed: a
//! discard or write-zeroes of whole blocks is a run in a [`Runs`] set (a
//! guest's `mkfs` discarding a 100 GiB disk is one map entry), and only the
//! partial blocks at its edges are copied.

use crate::{check_range, BlockDevice, Contents, DiskError, Runs};
use std::collections::BTreeMap;

/// Granularity of the overlay.
const BLOCK: u64 = 4096;

pub struct MemOverlay {
    base: Box<dyn BlockDevice>,
    /// Blocks written since the overlay was made, by block number. They
    /// take precedence over `zeroed`.
    blocks: BTreeMap<u64, Box<[u8]>>,
    /// Blocks zeroed whole since the overlay was made (and not in `blocks`
    /// unless written again after).
    zeroed: Runs,
}

impl MemOverlay {
    /// `base` is only ever read.
    pub fn new(base: Box<dyn BlockDevice>) -> Self {
        Self {
            base,
            blocks: BTreeMap::new(),
            zeroed: Runs::default(),
        }
    }

    /// Bytes of block data held in memory (zeroed runs take none).
    pub fn overlay_bytes(&self) -> u64 {
        self.blocks.len() as u64 * BLOCK
    }

    /// Runs of zeroed blocks held.
    pub fn zeroed_runs(&self) -> usize {
        self.zeroed.len()
    }

    /// The current contents of block `n`, from the overlay, a zeroed run or
    /// the base.
    fn block_mut(&mut self, n: u64) -> Result<&mut [u8], DiskError> {
        if !self.blocks.contains_key(&n) {
            let start = n * BLOCK;
            let len = BLOCK.min(self.base.capacity() - start) as usize;
            let mut data = vec![0u8; len].into_boxed_slice();
            if !self.zeroed.contains(n) {
                self.base.read_at(start, &mut data)?;
            }
            self.blocks.insert(n, data);
        }
        Ok(self
            .blocks
            .get_mut(&n)
            .map(|b| &mut b[..])
            .unwrap_or_default())
    }

    /// Apply `f(block bytes, range in block, range in the request)` to each
    /// block the request `[offset, offset+len)` touches.
    fn for_blocks(
        &mut self,
        offset: u64,
        len: u64,
        mut f: impl FnMut(&mut [u8], std::ops::Range<usize>, std::ops::Range<usize>),
    ) -> Result<(), DiskError> {
        check_range(offset, len, self.capacity())?;
        let mut pos = offset;
        let end = offset + len;
        while pos < end {
            let n = pos / BLOCK;
            let within = (pos % BLOCK) as usize;
            let take = (BLOCK - pos % BLOCK).min(end - pos) as usize;
            let block = self.block_mut(n)?;
            let done = (pos - offset) as usize;
            f(block, within..within + take, done..done + take);
            pos += take as u64;
        }
        Ok(())
    }
}

impl BlockDevice for MemOverlay {
    fn capacity(&self) -> u64 {
        self.base.capacity()
    }

    fn read_only(&self) -> bool {
        false
    }

    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<(), DiskError> {
        check_range(offset, buf.len() as u64, self.capacity())?;
        let mut pos = 0usize;
        while pos < buf.len() {
            let at = offset + pos as u64;
            let n = at / BLOCK;
            let within = (at % BLOCK) as usize;
            let take = (BLOCK as usize - within).min(buf.len() - pos);
            match self.blocks.get(&n) {
                Some(block) => buf[pos..pos + take].copy_from_slice(&block[within..within + take]),
                None if self.zeroed.contains(n) => buf[pos..pos + take].fill(0),
                None => self.base.read_at(at, &mut buf[pos..pos + take])?,
            }
            pos += take;
        }
        Ok(())
    }

    fn write_at(&mut self, offset: u64, data: &[u8]) -> Result<(), DiskError> {
        self.for_blocks(offset, data.len() as u64, |block, inner, outer| {
            block[inner].copy_from_slice(&data[outer]);
        })
    }

    fn flush(&mut self) -> Result<(), DiskError> {
        Ok(())
    }

    fn discard(&mut self, offset: u64, len: u64) -> Result<(), DiskError> {
        self.write_zeroes(offset, len)
    }

    fn write_zeroes(&mut self, offset: u64, len: u64) -> Result<(), DiskError> {
        check_range(offset, len, self.capacity())?;
        let end = offset + len;
        // Whole blocks inside the range (the last block of the disk may be
        // short: it is whole if the range reaches the end).
        let first = offset.div_ceil(BLOCK);
        let last = if end == self.capacity() {
            end.div_ceil(BLOCK)
        } else {
            end / BLOCK
        };
        if first >= last {
            return self.for_blocks(offset, len, |block, inner, _| block[inner].fill(0));
        }
        let blocks: Vec<u64> = self.blocks.range(first..last).map(|(&n, _)| n).collect();
        for n in blocks {
            self.blocks.remove(&n);
        }
        self.zeroed.insert(first, last);
        let head_end = (first * BLOCK).min(end);
        self.for_blocks(offset, head_end - offset, |block, inner, _| {
            block[inner].fill(0)
        })?;
        let tail_start = (last * BLOCK).min(end);
        self.for_blocks(tail_start, end - tail_start, |block, inner, _| {
            block[inner].fill(0)
        })
    }

    fn contents(&self) -> Contents<'_> {
        // The overlay's changes are not in any file; what it stands on is.
        self.base.contents()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MemDisk;

    #[test]
    fn writes_stay_in_the_overlay_and_read_back() {
        let base: Vec<u8> = (0..3 * BLOCK + 100).map(|i| i as u8).collect();
        let mut o = MemOverlay::new(Box::new(MemDisk::with_contents(base.clone(), true)));
        assert!(!o.read_only());
        let data = vec![0xab; 5000];
        o.write_at(4000, &data).unwrap();
        o.write_zeroes(3 * BLOCK + 10, 20).unwrap();
        let mut expect = base.clone();
        expect[4000..9000].fill(0xab);
        expect[(3 * BLOCK + 10) as usize..(3 * BLOCK + 30) as usize].fill(0);
        let mut got = vec![0u8; base.len()];
        o.read_at(0, &mut got).unwrap();
        assert_eq!(got, expect);
        assert_eq!(o.overlay_bytes(), 4 * BLOCK, "blocks 0-2 and the last one");
        // The base is untouched (it is read-only: a write would have failed).
        let Contents::Memory(b) = o.contents() else {
            panic!("memory base")
        };
        assert_eq!(b, &base[..]);
    }

    #[test]
    fn out_of_range_requests_fail() {
        let mut o = MemOverlay::new(Box::new(MemDisk::new(8192)));
        assert!(o.write_at(8000, &[0; 200]).is_err());
        assert!(o.read_at(u64::MAX, &mut [0; 2]).is_err());
    }

    #[test]
    fn zeroing_a_huge_range_takes_no_block_memory() {
        // 1 TiB base, read-only: the overlay must not read or copy it.
        struct Huge;
        impl BlockDevice for Huge {
            fn capacity(&self) -> u64 {
                1 << 40
            }
            fn read_only(&self) -> bool {
                true
            }
            fn read_at(&mut self, _: u64, buf: &mut [u8]) -> Result<(), DiskError> {
                buf.fill(0x5a);
                Ok(())
            }
            fn write_at(&mut self, _: u64, _: &[u8]) -> Result<(), DiskError> {
                Err(DiskError::ReadOnly)
            }
            fn flush(&mut self) -> Result<(), DiskError> {
                Ok(())
            }
            fn discard(&mut self, _: u64, _: u64) -> Result<(), DiskError> {
                Err(DiskError::ReadOnly)
            }
            fn write_zeroes(&mut self, _: u64, _: u64) -> Result<(), DiskError> {
                Err(DiskError::ReadOnly)
            }
            fn contents(&self) -> Contents<'_> {
                Contents::Memory(&[])
            }
        }
        let mut o = MemOverlay::new(Box::new(Huge));
        o.write_at(8192, &[1; 10]).unwrap();
        // Unaligned on both ends: two edge blocks copied, the rest a run.
        o.discard(100, (1 << 40) - 200).unwrap();
        assert_eq!(o.overlay_bytes(), 2 * BLOCK);
        assert_eq!(o.zeroed_runs(), 1);
        let mut b = [0u8; 4];
        o.read_at(98, &mut b).unwrap();
        assert_eq!(b, [0x5a, 0x5a, 0, 0]);
        o.read_at(8192, &mut b).unwrap();
        assert_eq!(b, [0; 4], "the earlier write was zeroed");
        o.read_at((1 << 40) - 102, &mut b).unwrap();
        assert_eq!(b, [0, 0, 0x5a, 0x5a]);
        // Writing into a zeroed run starts from zeroes, not the base.
        o.write_at(1 << 30, &[7]).unwrap();
        o.read_at((1 << 30) - 1, &mut b[..3]).unwrap();
        assert_eq!(&b[..3], &[0, 7, 0]);
        // A whole-disk discard, many times over: still one run.
        for _ in 0..1000 {
            o.write_zeroes(0, 1 << 40).unwrap();
        }
        assert_eq!((o.overlay_bytes(), o.zeroed_runs()), (0, 1));
    }
}
