//! The state hash (DESIGN §3.7), computed incrementally.
//!
//! [`Machine::state_hash`] covers harts, devices, clock and scheduling
//! position (their state types, serialised as a snapshot stores them:
//! small), RAM and each disk's written clusters
//! ([`crate::tracked_disk`]). Rehashing all of RAM each time costs about
//! 0.2 s per 512 MiB, so RAM gets a tree of fixed shape instead:
//!
//! ```text
//! page hash   = blake3(4 KiB page)          (all-zero pages: one shared value)
//! chunk hash  = blake3(page hashes of a 2 MiB chunk, in order)
//! RAM digest  = blake3(RAM size (u64 LE) ‖ chunk hashes, in order)
//! ```
//!
//! The digest is a function of RAM contents alone ([`ram_digest`] computes
//! it from scratch). [`RamHasher`] keeps the page and chunk hashes and,
//! told by its own [`DirtyTracker`] which pages were written since its last
//! call, rehashes only those pages and their chunks: a call costs
//! O(dirty pages + chunks). The first call, and the first after the RAM
//! was replaced (reset, restore), hashes everything once.
//!
//! [`Machine::state_hash`]: crate::Machine::state_hash

use riscv::ram::{DirtyTracker, PAGE_SIZE};
use riscv::Ram;
use std::sync::OnceLock;

/// Pages per second-level chunk (2 MiB).
pub const CHUNK_PAGES: usize = 512;
const PAGE: usize = PAGE_SIZE as usize;
type Hash = [u8; 32];

/// The RAM digest of `bytes` (whole pages), computed from scratch.
pub fn ram_digest(bytes: &[u8]) -> Hash {
    let pages: Vec<Hash> = bytes.chunks(PAGE).map(page_hash).collect();
    let chunks: Vec<Hash> = pages.chunks(CHUNK_PAGES).map(chunk_hash).collect();
    top_hash(bytes.len() as u64, &chunks)
}

/// The RAM digest, kept up to date from one RAM's dirty pages.
#[derive(Default)]
pub struct RamHasher {
    /// `None` until the first call.
    tracker: Option<DirtyTracker>,
    pages: Vec<Hash>,
    chunks: Vec<Hash>,
    digest: Hash,
    /// A first hashing spread over [`RamHasher::prehash`] calls: the next
    /// page to hash (`chunks` and `digest` are stale until it ends).
    scan: Option<usize>,
    /// Dirty pages taken by `prehash` whose hashes are updated but whose
    /// chunks are not.
    stale_chunks: Vec<usize>,
}

impl RamHasher {
    pub fn new() -> Self {
        Self::default()
    }

    /// The digest of `ram` as it is now (equal to
    /// `ram_digest(ram.as_slice())`).
    pub fn digest(&mut self, ram: &mut Ram) -> Hash {
        let dirty = self.tracker.as_ref().and_then(|t| ram.take_dirty(t));
        match dirty {
            Some(pages) => {
                self.finish_scan(ram.as_slice());
                self.rehash_pages(ram.as_slice(), &pages);
            }
            None => self.rehash_all(ram),
        }
        self.digest
    }

    /// Do up to `budget` pages of the work the next [`RamHasher::digest`]
    /// would do, so that it is short: the first hashing of all pages, then
    /// the pages dirtied since. Returns true when nothing is left.
    pub fn prehash(&mut self, ram: &mut Ram, budget: usize) -> bool {
        let dirty = self.tracker.as_ref().and_then(|t| ram.take_dirty(t));
        let Some(dirty) = dirty else {
            // Never hashed (or the RAM was replaced): start a spread scan.
            self.tracker = Some(ram.track_dirty());
            self.pages = vec![[0; 32]; ram.pages()];
            self.scan = Some(0);
            self.stale_chunks.clear();
            return false;
        };
        let bytes = ram.as_slice();
        for &p in &dirty {
            self.pages[p] = page_hash(&bytes[p * PAGE..(p + 1) * PAGE]);
        }
        self.stale_chunks
            .extend(dirty.iter().map(|p| p / CHUNK_PAGES));
        if let Some(next) = self.scan {
            let end = (next + budget).min(self.pages.len());
            for p in next..end {
                self.pages[p] = page_hash(&bytes[p * PAGE..(p + 1) * PAGE]);
            }
            self.scan = Some(end);
            if end < self.pages.len() {
                return false;
            }
            self.finish_scan(bytes);
        }
        dirty.len() <= budget
    }

    /// Complete a spread scan (and chunks left stale by `prehash`).
    fn finish_scan(&mut self, bytes: &[u8]) {
        if let Some(next) = self.scan.take() {
            for p in next..self.pages.len() {
                self.pages[p] = page_hash(&bytes[p * PAGE..(p + 1) * PAGE]);
            }
            self.chunks = self.pages.chunks(CHUNK_PAGES).map(chunk_hash).collect();
            self.stale_chunks.clear();
        }
        let mut stale = std::mem::take(&mut self.stale_chunks);
        stale.sort_unstable();
        stale.dedup();
        for c in stale {
            let end = ((c + 1) * CHUNK_PAGES).min(self.pages.len());
            self.chunks[c] = chunk_hash(&self.pages[c * CHUNK_PAGES..end]);
        }
        self.digest = top_hash(bytes.len() as u64, &self.chunks);
    }

    fn rehash_all(&mut self, ram: &mut Ram) {
        // Registered first: pages written from here on are the next call's.
        self.tracker = Some(ram.track_dirty());
        self.scan = None;
        self.stale_chunks.clear();
        let bytes = ram.as_slice();
        self.pages = bytes.chunks(PAGE).map(page_hash).collect();
        self.chunks = self.pages.chunks(CHUNK_PAGES).map(chunk_hash).collect();
        self.digest = top_hash(bytes.len() as u64, &self.chunks);
    }

    /// Rehash `dirty` pages (ascending) and the chunks holding them.
    fn rehash_pages(&mut self, bytes: &[u8], dirty: &[usize]) {
        if dirty.is_empty() {
            return;
        }
        for &p in dirty {
            self.pages[p] = page_hash(&bytes[p * PAGE..(p + 1) * PAGE]);
        }
        let mut chunks: Vec<usize> = dirty.iter().map(|p| p / CHUNK_PAGES).collect();
        chunks.dedup(); // ascending, so duplicates are adjacent
        for c in chunks {
            let end = ((c + 1) * CHUNK_PAGES).min(self.pages.len());
            self.chunks[c] = chunk_hash(&self.pages[c * CHUNK_PAGES..end]);
        }
        self.digest = top_hash(bytes.len() as u64, &self.chunks);
    }
}

fn page_hash(page: &[u8]) -> Hash {
    static ZERO_PAGE: [u8; PAGE] = [0; PAGE];
    static ZERO_HASH: OnceLock<Hash> = OnceLock::new();
    if page == ZERO_PAGE {
        *ZERO_HASH.get_or_init(|| *blake3::hash(&ZERO_PAGE).as_bytes())
    } else {
        *blake3::hash(page).as_bytes()
    }
}

// Hashes are fed as one slice: blake3 then hashes its 1 KiB chunks in
// parallel lanes, where 32-byte updates would go one block at a time.

fn chunk_hash(pages: &[Hash]) -> Hash {
    *blake3::hash(pages.as_flattened()).as_bytes()
}

fn top_hash(size: u64, chunks: &[Hash]) -> Hash {
    let mut hasher = blake3::Hasher::new();
    hasher.update(&size.to_le_bytes());
    hasher.update(chunks.as_flattened());
    hasher.finalize().into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::Persist;
    use crate::Machine;
    use proptest::prelude::*;

    const BASE: u64 = 0x8000_0000;
    /// Three full chunks and a partial one.
    const PAGES: usize = 3 * CHUNK_PAGES + 7;

    fn new_ram() -> Ram {
        Ram::new(BASE, (PAGES * PAGE) as u64).unwrap()
    }

    /// A write: page, offset in it, length (may cross pages), byte value.
    fn write_strategy() -> impl Strategy<Value = (usize, usize, usize, u8)> {
        (0..PAGES, 0..PAGE, 1..3 * PAGE, any::<u8>())
    }

    fn apply(ram: &mut Ram, (page, off, len, byte): (usize, usize, usize, u8)) {
        let at = page * PAGE + off;
        let len = len.min(PAGES * PAGE - at);
        assert!(ram.write(BASE + at as u64, &vec![byte; len]));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]

        /// Whatever the writes (including zeroes over data) and whenever
        /// the digest is taken, it equals the from-scratch digest.
        #[test]
        fn incremental_digest_is_the_from_scratch_digest(
            rounds in prop::collection::vec(prop::collection::vec(write_strategy(), 0..12), 1..6),
        ) {
            let mut ram = new_ram();
            let mut every_round = RamHasher::new();
            let mut at_end = RamHasher::new();
            prop_assert_eq!(at_end.digest(&mut ram), ram_digest(ram.as_slice()));
            for writes in rounds {
                for w in writes {
                    apply(&mut ram, w);
                }
                prop_assert_eq!(every_round.digest(&mut ram), ram_digest(ram.as_slice()));
            }
            prop_assert_eq!(at_end.digest(&mut ram), every_round.digest(&mut ram));
        }

        /// Spreading the work over `prehash` calls of any budget, between
        /// writes, changes nothing about the digest.
        #[test]
        fn prehashed_digest_is_the_from_scratch_digest(
            rounds in prop::collection::vec(
                (prop::collection::vec(write_strategy(), 0..12), 1..PAGES, 0..4usize),
                1..8,
            ),
            end_with_digest in any::<bool>(),
        ) {
            let mut ram = new_ram();
            let mut hasher = RamHasher::new();
            for (writes, budget, calls) in rounds {
                for w in writes {
                    apply(&mut ram, w);
                }
                for _ in 0..calls {
                    hasher.prehash(&mut ram, budget);
                }
                if end_with_digest {
                    prop_assert_eq!(hasher.digest(&mut ram), ram_digest(ram.as_slice()));
                }
            }
            prop_assert_eq!(hasher.digest(&mut ram), ram_digest(ram.as_slice()));
        }
    }

    #[test]
    fn digest_tracks_contents_not_history() {
        let mut ram = new_ram();
        let mut hasher = RamHasher::new();
        let fresh = hasher.digest(&mut ram);
        assert_eq!(fresh, ram_digest(&vec![0; PAGES * PAGE]));

        assert!(ram.write_u64(BASE + (2 * CHUNK_PAGES * PAGE) as u64 + 8, 0x1234));
        let written = hasher.digest(&mut ram);
        assert_ne!(written, fresh);
        assert_eq!(hasher.digest(&mut ram), written, "nothing written since");

        assert!(ram.write_u64(BASE + (2 * CHUNK_PAGES * PAGE) as u64 + 8, 0));
        assert_eq!(hasher.digest(&mut ram), fresh, "zero again, same digest");
    }

    #[test]
    fn replaced_ram_is_hashed_from_scratch() {
        let mut ram = new_ram();
        let mut hasher = RamHasher::new();
        assert!(ram.write_u32(BASE + 5 * PAGE as u64, 7));
        hasher.digest(&mut ram);
        // New RAM (as after a reset) that differs in a page the old RAM's
        // tracker never saw written.
        let mut other = new_ram();
        assert!(other.write_u32(BASE + 9 * PAGE as u64, 7));
        assert_eq!(hasher.digest(&mut other), ram_digest(other.as_slice()));
    }

    /// `cargo test -p lockstep-machine --release --lib -- --ignored timing --nocapture`
    #[test]
    #[ignore = "timing report for a 512 MiB machine"]
    fn timing_512_mib_with_1_mib_dirty() {
        use crate::layout::RAM_BASE;
        use crate::{BootImages, MachineConfig, NullOutput};
        use std::time::Instant;

        let mut kernel = vec![0u8; 64]; // the smallest `Image` the loader takes
        kernel[16..24].copy_from_slice(&(1u64 << 20).to_le_bytes());
        kernel[0x38..0x3c].copy_from_slice(b"RSC\x05");
        let config = MachineConfig {
            cpus: 1,
            memory: 512 << 20,
            images: BootImages {
                firmware: 0x0000_006f_u32.to_le_bytes().to_vec().into(), // j .
                kernel: kernel.into(),
                initrd: None,
            },
            bootargs: String::new(),
            boot_wall_ns: 0,
            vmgenid: [0; 16],
            virtio: Vec::new(),
            instructions_per_tick: crate::clock::InstructionsPerTick::DEFAULT,
        };
        let mut m = Machine::new(config, Box::new(NullOutput)).unwrap();
        // 128 MiB of data, one page in four.
        for p in (1..m.ram.pages() as u64).step_by(4) {
            m.ram
                .write(RAM_BASE + p * PAGE as u64, &[p as u8 | 1; PAGE]);
        }
        let timed = |m: &mut Machine| {
            let start = Instant::now();
            let hash = m.state_hash().unwrap();
            (hash, start.elapsed())
        };
        let (_, first) = timed(&mut m);
        // 1 MiB dirty: one page in each of 256 chunks (the worst spread).
        for c in 0..256u64 {
            let at = RAM_BASE + c * (CHUNK_PAGES * PAGE) as u64 + 4096 + 8;
            m.ram.write(at, &c.to_le_bytes());
        }
        let (_, incremental) = timed(&mut m);
        let start = Instant::now();
        let mut old = blake3::Hasher::new(); // the former full hash
        let harts: Vec<_> = m.harts.iter().map(riscv::Hart::save).collect();
        let small = (
            harts,
            m.board.devices.save(),
            m.board.clock.save(),
            m.icount,
        );
        old.update(&postcard::to_stdvec(&small).unwrap());
        old.update(m.ram.as_slice());
        let full = start.elapsed();
        let _ = old.finalize();
        println!(
            "512 MiB: first state hash {:.1} ms, 1 MiB dirty {:.3} ms, \
             old full hash {:.1} ms",
            first.as_secs_f64() * 1e3,
            incremental.as_secs_f64() * 1e3,
            full.as_secs_f64() * 1e3
        );
    }

    #[test]
    fn another_consumer_does_not_steal_dirty_pages() {
        let mut ram = new_ram();
        let mut hasher = RamHasher::new();
        hasher.digest(&mut ram);
        let other = ram.track_dirty();
        assert!(ram.write_u32(BASE + 3 * PAGE as u64, 1));
        assert_eq!(ram.take_dirty(&other), Some(vec![3]));
        assert_eq!(hasher.digest(&mut ram), ram_digest(ram.as_slice()));
    }
}
