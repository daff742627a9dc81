//! Forging snapshots: making every checksum in a file agree with its bytes.
//!
//! The checksums are not a MAC (see the module docs of [`super`]): anyone
//! can write a file whose sections carry valid hashes around hostile
//! contents, and restore must refuse it by its structural checks alone.
//! The fuzz target for the snapshot reader mutates files and reseals them
//! here, so its inputs reach the decoders behind the checksums; the tests
//! below forge specific hostile files. Not for product code.

use super::{is_zero, zero_chunk_hash, Index, RamLayout, SectionRecord, PREAMBLE_LEN, RAM_CHUNK};
use std::io;
use std::path::Path;

/// The blake3 of `file[offset..offset+len]`, if that range is inside it.
fn hash_of(file: &[u8], offset: u64, len: u64) -> Option<[u8; 32]> {
    let start = usize::try_from(offset).ok()?;
    let end = start.checked_add(usize::try_from(len).ok()?)?;
    file.get(start..end).map(|b| *blake3::hash(b).as_bytes())
}

fn reseal_section(file: &[u8], rec: &mut SectionRecord) {
    if let Some(hash) = hash_of(file, rec.offset, rec.len) {
        rec.hash = hash;
    }
}

/// Recompute, as far as the file's structure can be parsed, every
/// checksum of the snapshot at `path`: the sections', the RAM chunks', the
/// index's and the preamble's. Ranges outside the file keep their hashes;
/// an index that does not decode is left as it is (its hash in the
/// preamble is still recomputed).
#[doc(hidden)]
pub fn reseal(path: &Path) -> io::Result<()> {
    let mut file = std::fs::read(path)?;
    if file.len() < PREAMBLE_LEN {
        return Ok(());
    }
    let u64_at = |file: &[u8], at: usize| {
        let mut b = [0u8; 8];
        b.copy_from_slice(&file[at..at + 8]);
        u64::from_le_bytes(b)
    };
    let index_offset = u64_at(&file, 16);
    let index_len = u64_at(&file, 24);
    let index_range = usize::try_from(index_offset)
        .ok()
        .and_then(|start| Some(start..start.checked_add(usize::try_from(index_len).ok()?)?))
        .filter(|range| range.end <= file.len());
    if let Some(range) = index_range {
        if let Ok((mut index, _)) = postcard::take_from_bytes::<Index>(&file[range.clone()]) {
            reseal_section(&file, &mut index.images);
            reseal_section(&file, &mut index.state);
            reseal_section(&file, &mut index.disks);
            reseal_ram(&file, &mut index);
            if let Ok(bytes) = postcard::to_stdvec(&index) {
                // The index may change length: it stays the file's tail.
                file.truncate(range.start);
                file.extend_from_slice(&bytes);
                file[24..32].copy_from_slice(&(bytes.len() as u64).to_le_bytes());
            }
        }
        let end = usize::try_from(u64_at(&file, 24))
            .ok()
            .and_then(|len| range.start.checked_add(len))
            .filter(|&end| end <= file.len());
        if let Some(end) = end {
            let hash = blake3::hash(&file[range.start..end]);
            file[32..64].copy_from_slice(hash.as_bytes());
        }
    }
    let check = blake3::hash(&file[..64]);
    file[64..80].copy_from_slice(&check.as_bytes()[..16]);
    std::fs::write(path, &file)
}

fn reseal_ram(file: &[u8], index: &mut Index) {
    let ram = &mut index.ram;
    match &ram.layout {
        RamLayout::Sparse { offset } => {
            for (n, hash) in ram.chunk_hashes.iter_mut().enumerate() {
                let Some(at) = (n as u64)
                    .checked_mul(RAM_CHUNK)
                    .and_then(|at| at.checked_add(*offset))
                else {
                    break;
                };
                let start = usize::try_from(at).unwrap_or(usize::MAX);
                let Some(chunk) = file
                    .get(start..)
                    .map(|rest| &rest[..rest.len().min(RAM_CHUNK as usize)])
                else {
                    break;
                };
                if chunk.len() < RAM_CHUNK as usize {
                    break;
                }
                *hash = if is_zero(chunk) {
                    zero_chunk_hash()
                } else {
                    *blake3::hash(chunk).as_bytes()
                };
            }
        }
        RamLayout::Zstd { chunks, .. } => {
            for (hash, chunk) in ram.chunk_hashes.iter_mut().zip(chunks) {
                if let Some(h) = hash_of(file, chunk.offset, chunk.len) {
                    *hash = h;
                }
            }
        }
    }
}

/// Forged-but-checksum-valid snapshots: every section carries a valid
/// hash around hostile contents (huge lengths, counts and offsets). Each
/// must be refused with an error naming the section, before any machine
/// exists, without a panic and without an allocation the file only claims.
#[cfg(test)]
mod tests {
    use super::super::{
        RamEncoding, RestoreOptions, SaveOptions, Section, SnapshotError, State, ZstdChunk,
    };
    use super::*;
    use crate::io::NullOutput;
    use crate::layout::ROM_SIZE;
    use crate::machine::MAX_MEMORY;
    use crate::tracked_disk::ClusterRecord;
    use crate::{BootImages, Machine, MachineConfig, VirtioSpec};
    use std::alloc::{GlobalAlloc, Layout, System};
    use std::cell::Cell;
    use std::path::PathBuf;

    /// The system allocator, noting the largest single allocation each
    /// thread makes (tests run on threads of their own).
    struct Largest;

    thread_local! {
        static LARGEST: Cell<usize> = const { Cell::new(0) };
    }

    fn note(size: usize) {
        let _ = LARGEST.try_with(|l| l.set(l.get().max(size)));
    }

    // SAFETY: every call is passed on to `System` unchanged; `note` only
    // touches a const-initialised thread-local `Cell` (no allocation).
    unsafe impl GlobalAlloc for Largest {
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            note(layout.size());
            // SAFETY: the caller's contract is `System.alloc`'s.
            unsafe { System.alloc(layout) }
        }
        unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
            note(layout.size());
            // SAFETY: as above.
            unsafe { System.alloc_zeroed(layout) }
        }
        unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
            note(new_size);
            // SAFETY: as above.
            unsafe { System.realloc(ptr, layout, new_size) }
        }
        unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
            // SAFETY: as above.
            unsafe { System.dealloc(ptr, layout) }
        }
    }

    #[global_allocator]
    static ALLOCATOR: Largest = Largest;

    /// Fills RAM from 0x8001_0000 with counting doublewords, forever.
    fn firmware() -> Vec<u8> {
        [
            0x0001_0297u32, // auipc t0, 0x10
            0x2340_0313,    // addi t1, zero, 0x234
            0x0062_b023,    // sd t1, 0(t0)
            0x0082_8293,    // addi t0, t0, 8
            0x0013_0313,    // addi t1, t1, 1
            0xff5f_f06f,    // j -12
        ]
        .iter()
        .flat_map(|w| w.to_le_bytes())
        .collect()
    }

    fn stub_kernel() -> Vec<u8> {
        let mut k = vec![0u8; 64];
        k[16..24].copy_from_slice(&(1u64 << 20).to_le_bytes());
        k[0x38..0x3c].copy_from_slice(b"RSC\x05");
        k
    }

    /// A real snapshot of a small machine that ran for a while.
    fn saved(dir: &Path, ram: RamEncoding) -> PathBuf {
        let config = MachineConfig {
            cpus: 1,
            memory: 8 << 20,
            images: BootImages {
                firmware: firmware().into(),
                kernel: stub_kernel().into(),
                initrd: None,
            },
            bootargs: "console=ttyS0".into(),
            boot_wall_ns: 1_700_000_000_000_000_000,
            instructions_per_tick: crate::InstructionsPerTick::DEFAULT,
            vmgenid: [7; 16],
            virtio: vec![VirtioSpec::Rng { seed: [3; 32] }],
        };
        let mut m = Machine::new(config, Box::new(NullOutput)).unwrap();
        m.step_until(50_000).unwrap();
        let path = dir.join(format!("{ram:?}.snap"));
        let options = SaveOptions { ram, vm_uuid: None };
        m.save_snapshot_with(&path, &options).unwrap();
        path
    }

    /// The snapshot's index, state and disk layer, decoded.
    struct Parts {
        file: Vec<u8>,
        index: Index,
        state: Vec<u8>,
        disks: Vec<u8>,
    }

    fn section(file: &[u8], rec: &SectionRecord) -> Vec<u8> {
        file[rec.offset as usize..(rec.offset + rec.len) as usize].to_vec()
    }

    fn parts(path: &Path) -> Parts {
        let file = std::fs::read(path).unwrap();
        let at = u64::from_le_bytes(file[16..24].try_into().unwrap()) as usize;
        let index: Index = postcard::from_bytes(&file[at..]).unwrap();
        Parts {
            state: section(&file, &index.state),
            disks: section(&file, &index.disks),
            file,
            index,
        }
    }

    /// Writes `parts` as a snapshot (state, disk layer and index laid out
    /// again after the RAM, where the writer puts them) with every
    /// checksum valid, and returns its path.
    fn forge(path: &Path, mut p: Parts) -> PathBuf {
        let end = p.index.state.offset as usize;
        let mut file = p.file[..end].to_vec();
        p.index.state.offset = file.len() as u64;
        p.index.state.len = p.state.len() as u64;
        file.extend_from_slice(&p.state);
        p.index.disks.offset = file.len() as u64;
        p.index.disks.len = p.disks.len() as u64;
        file.extend_from_slice(&p.disks);
        let index = postcard::to_stdvec(&p.index).unwrap();
        let index_at = file.len() as u64;
        file[16..24].copy_from_slice(&index_at.to_le_bytes());
        file[24..32].copy_from_slice(&(index.len() as u64).to_le_bytes());
        file.extend_from_slice(&index);
        let forged = path.with_extension("forged");
        std::fs::write(&forged, &file).unwrap();
        reseal(&forged).unwrap();
        forged
    }

    /// A state section with `change` applied to the decoded state.
    fn restate(bytes: &[u8], change: impl FnOnce(&mut State)) -> Vec<u8> {
        let mut s: State = postcard::from_bytes(bytes).unwrap();
        change(&mut s);
        postcard::to_stdvec(&s).unwrap()
    }

    /// Restores `path` (plainly and verified) and reads its info: each
    /// must fail, the restores with `expect`, and no allocation may be
    /// larger than the 8 MiB machine needs.
    fn refused(path: &Path, expect: impl Fn(&SnapshotError) -> bool) -> String {
        let mut message = String::new();
        for verify in [false, true] {
            LARGEST.with(|l| l.set(0));
            let options = RestoreOptions {
                verify,
                ..Default::default()
            };
            let restored =
                Machine::restore_snapshot_with(path, Box::new(NullOutput), vec![], &options);
            let largest = LARGEST.with(Cell::get);
            let error = match restored {
                Ok(_) => panic!("forged snapshot restored (verify: {verify})"),
                Err(e) => e,
            };
            assert!(expect(&error), "unexpected error: {error}");
            assert!(largest <= 8 << 20, "{largest} bytes allocated at once");
            message = error.to_string();
        }
        // `read_info` checks fewer sections than restore: it may accept
        // the file, but must not panic.
        let _ = super::super::read_info(path);
        message
    }

    fn corrupt(section: Section) -> impl Fn(&SnapshotError) -> bool {
        move |e| matches!(e, SnapshotError::Corrupt { section: s, .. } if *s == section)
    }

    #[test]
    fn the_unforged_file_restores() {
        let dir = tempfile::tempdir().unwrap();
        for ram in [RamEncoding::Sparse, RamEncoding::Zstd { level: 1 }] {
            let path = saved(dir.path(), ram);
            let forged = forge(&path, parts(&path));
            for verify in [false, true] {
                let options = RestoreOptions {
                    verify,
                    ..Default::default()
                };
                Machine::restore_snapshot_with(&forged, Box::new(NullOutput), vec![], &options)
                    .unwrap();
            }
        }
    }

    #[test]
    fn hostile_config_sizes_and_counts() {
        let dir = tempfile::tempdir().unwrap();
        let path = saved(dir.path(), RamEncoding::Zstd { level: 1 });
        type Change = Box<dyn Fn(&mut State)>;
        let cases: Vec<(&str, Change, Section, &str)> = vec![
            (
                "cpus",
                Box::new(|s| s.config.cpus = u64::MAX),
                Section::State,
                "CPUs",
            ),
            (
                "memory",
                Box::new(|s| s.config.memory = 1 << 62),
                Section::State,
                "memory size",
            ),
            (
                "memory of the RAM record",
                Box::new(|s| s.config.memory = MAX_MEMORY),
                Section::Index,
                "RAM of",
            ),
            (
                "virtio slots",
                Box::new(|s| s.config.virtio = vec![s.config.virtio[0].clone(); 10_000]),
                Section::State,
                "virtio slots",
            ),
            (
                "images' sizes",
                Box::new(|s| s.config.firmware_len = u64::MAX),
                Section::Images,
                "length differs",
            ),
            (
                "hart count",
                Box::new(|s| s.config.cpus = 2),
                Section::State,
                "harts for 2 CPUs",
            ),
            (
                "current hart",
                Box::new(|s| s.current = u64::MAX),
                Section::State,
                "current hart",
            ),
            (
                "turn",
                Box::new(|s| s.turn_retired = u64::MAX),
                Section::State,
                "into a turn",
            ),
            (
                "reset ROM",
                Box::new(|s| s.rom = vec![0x13; ROM_SIZE as usize + 1]),
                Section::State,
                "reset ROM",
            ),
            (
                "written-cluster records",
                Box::new(|s| {
                    s.disk_clusters = vec![ClusterRecord {
                        zero_runs: vec![(0, u64::MAX)],
                        clusters: Vec::new(),
                    }]
                }),
                Section::State,
                "written clusters of 1 disks for 0",
            ),
        ];
        for (what, change, section, says) in cases {
            let mut p = parts(&path);
            p.state = restate(&p.state, change);
            let message = refused(&forge(&path, p), corrupt(section));
            assert!(message.contains(says), "{what}: {message}");
        }
    }

    #[test]
    fn hostile_lengths_and_offsets_in_the_index() {
        let dir = tempfile::tempdir().unwrap();
        let path = saved(dir.path(), RamEncoding::Zstd { level: 1 });
        let truncated = |e: &SnapshotError| matches!(e, SnapshotError::Truncated { .. });

        // A state section claimed to run to the end of the address space.
        let mut p = parts(&path);
        let mut file = p.file.clone();
        p.index.state.len = u64::MAX - p.index.state.offset;
        let index = postcard::to_stdvec(&p.index).unwrap();
        let at = u64::from_le_bytes(file[16..24].try_into().unwrap()) as usize;
        file.truncate(at);
        file.extend_from_slice(&index);
        file[24..32].copy_from_slice(&(index.len() as u64).to_le_bytes());
        let forged = dir.path().join("state-len.snap");
        std::fs::write(&forged, &file).unwrap();
        reseal(&forged).unwrap();
        refused(&forged, truncated);

        // RAM chunks far outside the file, or larger than any frame.
        let RamLayout::Zstd { chunks, .. } = &parts(&path).index.ram.layout else {
            unreachable!()
        };
        let nonzero = chunks.iter().position(|c| c.len > 0).unwrap();
        for (offset, len, expect) in [
            (u64::MAX - 4, 100, "truncated"),
            (0, 1 << 40, "compressed chunk"),
        ] {
            let mut p = parts(&path);
            if let RamLayout::Zstd { chunks, .. } = &mut p.index.ram.layout {
                chunks[nonzero] = ZstdChunk {
                    offset,
                    len,
                    pages: chunks[nonzero].pages,
                };
            }
            let message = refused(&forge(&path, p), |e| {
                truncated(e) || corrupt(Section::Index)(e)
            });
            assert!(message.contains(expect), "{message}");
        }

        // A chunk claiming every page of its 1 MiB while its frame holds fewer.
        let mut p = parts(&path);
        if let RamLayout::Zstd { chunks, .. } = &mut p.index.ram.layout {
            chunks[nonzero].pages = [u64::MAX; 4];
        }
        let message = refused(&forge(&path, p), corrupt(Section::RamChunk(nonzero)));
        assert!(message.contains("RAM section (chunk"), "{message}");

        // A sparse RAM region past the end of the file.
        let sparse = saved(dir.path(), RamEncoding::Sparse);
        let mut p = parts(&sparse);
        p.index.ram.layout = RamLayout::Sparse {
            offset: u64::MAX - (u64::MAX % RAM_ALIGN_FOR_TESTS),
        };
        refused(&forge(&sparse, p), truncated);
    }

    const RAM_ALIGN_FOR_TESTS: u64 = super::super::RAM_ALIGN;

    /// `read_info` describes the sections as the index claims them (it
    /// does not read RAM): RAM chunks at the end of the address space
    /// made its arithmetic overflow (a panic in `lockstep` for a forged
    /// file). Now the description saturates.
    #[test]
    fn info_of_chunks_at_the_end_of_the_address_space() {
        let dir = tempfile::tempdir().unwrap();
        let path = saved(dir.path(), RamEncoding::Zstd { level: 1 });
        let mut p = parts(&path);
        if let RamLayout::Zstd { chunks, .. } = &mut p.index.ram.layout {
            let last = chunks.len() - 1;
            chunks[0].offset = u64::MAX - 4;
            chunks[last].offset = 1;
            chunks[last].len = 1;
            chunks[0].len = 100;
        }
        let info = super::super::read_info(&forge(&path, p)).unwrap();
        let ram = info
            .sections
            .iter()
            .find(|s| s.section == Section::Ram)
            .unwrap();
        assert_eq!((ram.offset, ram.len), (u64::MAX - 4, 0));
    }

    #[test]
    fn huge_counts_in_postcard_sections() {
        let dir = tempfile::tempdir().unwrap();
        let path = saved(dir.path(), RamEncoding::Zstd { level: 1 });
        // A disk layer claiming 2^63 disks, and a state section whose
        // first vector (the bootargs) claims 2^63 bytes: postcard reads
        // the count, then runs out of input.
        let huge = [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f];
        let mut p = parts(&path);
        p.disks = huge.to_vec();
        refused(&forge(&path, p), corrupt(Section::DiskLayer));

        let mut p = parts(&path);
        let clean = restate(&p.state, |_| {});
        assert_eq!(clean, p.state, "the state section re-encodes as written");
        // vm_uuid: None (1 byte), state_hash (32), cpus, memory (varints),
        // then the bootargs' length.
        let mut at = 33;
        for _ in 0..2 {
            while p.state[at] & 0x80 != 0 {
                at += 1;
            }
            at += 1;
        }
        let mut state = p.state[..at].to_vec();
        state.extend_from_slice(&huge);
        state.extend_from_slice(&p.state[at + 1..]);
        p.state = state;
        refused(&forge(&path, p), corrupt(Section::State));

        // An index claiming 2^63 RAM chunk hashes.
        let p = parts(&path);
        let mut index = postcard::to_stdvec(&p.index).unwrap();
        let hashes = p.index.ram.chunk_hashes.len() as u8;
        let tail = 1 + 32 * usize::from(hashes);
        let count_at = index.len() - tail;
        assert_eq!(index[count_at], hashes);
        index.truncate(count_at);
        index.extend_from_slice(&huge);
        let mut file = p.file.clone();
        let at = u64::from_le_bytes(file[16..24].try_into().unwrap()) as usize;
        file.truncate(at);
        file.extend_from_slice(&index);
        file[24..32].copy_from_slice(&(index.len() as u64).to_le_bytes());
        let forged = dir.path().join("index.snap");
        std::fs::write(&forged, &file).unwrap();
        reseal(&forged).unwrap();
        refused(&forged, corrupt(Section::Index));
    }
}
