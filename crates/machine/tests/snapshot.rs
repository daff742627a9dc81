//! Whole-machine snapshots: a machine saved at icount N and restored runs
//! on exactly like the machine that was never stopped; disks are checked
//! against the layer the snapshot names; bad files are refused with an
//! error that says what is wrong, and no machine.

mod common;

use common::*;
use disk::{BlockDevice, Contents, IdentityMismatch, MemDisk};
use machine::slot_base;
use machine::snapshot::{
    self, RamEncoding, RestoreOptions, SaveOptions, Section, SnapshotError, SnapshotInfo,
};
use machine::{Input, Machine, MachineConfig, MachineError, Step, VirtioSpec};
use std::os::unix::fs::{FileExt, PermissionsExt};
use std::path::{Path, PathBuf};

const A3: u32 = 13;
const A4: u32 = 14;
const A5: u32 = 15;
const RAM: u64 = 0x8000_0000;
const DESC: u64 = RAM + 0x1000;
const AVAIL: u64 = RAM + 0x2000;
const USED: u64 = RAM + 0x3000;
const BUF: u64 = RAM + 0x4000;
const HEADER: u64 = RAM + 0x5000;
const STATUS_BYTE: u64 = RAM + 0x5100;
const IMAGE_LEN: usize = 0x6000;
/// The sector the guest writes and the bytes it writes there.
const SECTOR: u64 = 2;
const DISK_BYTES: usize = 1 << 20;

const N: u64 = 200_000;
const M: u64 = 150_000;

fn sector_data() -> Vec<u8> {
    (0..512u32).map(|i| (i * 7 + 3) as u8).collect()
}

/// `pa` (a RAM address, bit 31 set) into `rd` without sign extension;
/// clobbers A2.
fn ram_addr(a: &mut Asm, rd: u32, pa: u64) {
    a.li(rd, 1)
        .slli(rd, rd, 31)
        .li(A2, (pa - RAM) as i32)
        .or(rd, rd, A2);
}

/// Hart 0 writes `sector_data()` to sector 2 of the virtio-blk disk at
/// `base` (one request, completed at the notify).
fn blk_write(a: &mut Asm, base: u64) {
    let reg = |a: &mut Asm, off: i32, val: i32| {
        a.li(T1, val).sw(T1, off, T0);
    };
    a.li(T0, base as i32);
    reg(a, 0x70, 3); // ACKNOWLEDGE | DRIVER
    reg(a, 0x24, 1); // DriverFeaturesSel = 1
    reg(a, 0x20, 1); // VIRTIO_F_VERSION_1
    reg(a, 0x70, 0xb); // FEATURES_OK
    reg(a, 0x30, 0); // QueueSel
    reg(a, 0x38, 4); // QueueNum
    reg(a, 0x80, DESC as i32);
    reg(a, 0x84, 0);
    reg(a, 0x90, AVAIL as i32);
    reg(a, 0x94, 0);
    reg(a, 0xa0, USED as i32);
    reg(a, 0xa4, 0);
    reg(a, 0x44, 1); // QueueReady
    reg(a, 0x70, 0xf); // DRIVER_OK
    a.sw(ZERO, 0x50, T0); // QueueNotify(0)
}

/// `RAM + offset` into `rd` without sign extension; clobbers `scratch`.
fn ram_addr_via(a: &mut Asm, rd: u32, scratch: u32, pa: u64) {
    a.li(rd, 1)
        .slli(rd, rd, 31)
        .li(scratch, (pa - RAM) as i32)
        .or(rd, rd, scratch);
}

/// In iteration `iteration` of its loop, hart 0 writes the sector again,
/// its first 8 bytes replaced by the iteration count (avail ring entry 1
/// reuses descriptor chain 0).
fn blk_rewrite(a: &mut Asm, base: u64, iteration: i32) {
    a.bne(A0, ZERO, "no_rewrite")
        .li(A4, iteration)
        .bne(A3, A4, "no_rewrite");
    ram_addr_via(a, A5, A4, BUF);
    a.sd(A3, 0, A5);
    ram_addr_via(a, A5, A4, AVAIL);
    a.li(A4, 2 << 16).sw(A4, 0, A5); // flags 0, idx 2
    a.li(A4, base as i32).sw(ZERO, 0x50, A4); // QueueNotify(0)
    a.label("no_rewrite");
}

/// Every hart: spin a while, store an iteration count into a new place
/// in RAM, print a letter, arm its timer a little ahead and wait for it.
/// With `disk_slot`, hart 0 first writes a sector of that disk.
fn program(disk_slot: Option<usize>) -> Vec<u8> {
    program_with_rewrite(disk_slot, None)
}

/// [`program`]; with `rewrite`, hart 0 also writes the sector again in
/// that iteration of its loop ([`blk_rewrite`]).
fn program_with_rewrite(disk_slot: Option<usize>, rewrite: Option<i32>) -> Vec<u8> {
    let mut a = Asm::new();
    a.csrr(A0, MHARTID).bne(A0, ZERO, "main");
    if let Some(slot) = disk_slot {
        blk_write(&mut a, slot_base(slot));
    }
    a.label("main")
        .slli(A1, A0, 3)
        .li(T0, 0x200_4000)
        .or(T0, T0, A1) // this hart's mtimecmp
        .li(T1, 0x80)
        .csrw(MIE, T1); // the timer wakes WFI (mstatus.MIE stays 0)
    ram_addr(&mut a, T2, RAM + 0x40_0000);
    a.slli(A1, A0, 20)
        .or(T2, T2, A1)
        .li(A2, 0)
        .li(A3, 0)
        .label("loop")
        .li(A1, 300)
        .label("inner")
        .addi(A1, A1, -1)
        .bne(A1, ZERO, "inner")
        .addi(A3, A3, 1);
    if let (Some(slot), Some(iteration)) = (disk_slot, rewrite) {
        blk_rewrite(&mut a, slot_base(slot), iteration);
    }
    a.sd(A3, 0, T2)
        .addi(T2, T2, 2040)
        .li(T1, 0x1000_0000)
        .addi(A1, A0, 'a' as i32)
        .sb(A1, 0, T1)
        .addi(A2, A2, 40)
        .sd(A2, 0, T0)
        .wfi()
        .j("loop");
    let mut image = a.finish();
    assert!(image.len() < 0x1000);
    image.resize(IMAGE_LEN, 0);
    let mut put = |at: u64, bytes: &[u8]| {
        let off = (at - RAM) as usize;
        image[off..off + bytes.len()].copy_from_slice(bytes);
    };
    let descs: [(u64, u32, u16, u16); 3] = [
        (HEADER, 16, 1, 1),     // NEXT
        (BUF, 512, 1, 2),       // NEXT (device reads it)
        (STATUS_BYTE, 1, 2, 0), // WRITE
    ];
    for (i, (addr, len, flags, next)) in descs.into_iter().enumerate() {
        let mut d = addr.to_le_bytes().to_vec();
        d.extend_from_slice(&len.to_le_bytes());
        d.extend_from_slice(&flags.to_le_bytes());
        d.extend_from_slice(&next.to_le_bytes());
        put(DESC + 16 * i as u64, &d);
    }
    put(AVAIL + 2, &1u16.to_le_bytes()); // ring[0] = head 0
    put(HEADER, &1u32.to_le_bytes()); // VIRTIO_BLK_T_OUT
    put(HEADER + 8, &SECTOR.to_le_bytes());
    put(BUF, &sector_data());
    put(STATUS_BYTE, &[0xee]);
    image
}

fn blk_config(cpus: usize) -> machine::MachineConfig {
    let mut cfg = config(program(Some(0)), cpus);
    cfg.virtio = vec![VirtioSpec::Block {
        serial: "vda".into(),
    }];
    cfg
}

/// Run until at least `until` instructions have retired, skipping idle
/// time to the next timer deadline as a fast-forward runner would.
fn drive(m: &mut Machine, until: u64) {
    while m.icount() < until {
        match m.step().unwrap() {
            Step::Ran => {}
            Step::Idle => {
                let deadline = m.next_deadline().expect("a timer is armed");
                m.input(Input::ClockWarp(deadline - m.mtime()));
            }
            other => panic!("unexpected {other:?} at icount {}", m.icount()),
        }
    }
}

/// The inputs both runs get at N: console bytes that sit in the UART FIFO
/// (device state the snapshot must carry).
fn input_at_n(m: &mut Machine) {
    m.input(Input::Console(b"hey".to_vec()));
}

fn console_after(out: &SharedOutput, icount: u64) -> (Vec<u8>, Vec<u64>) {
    let out = out.0.lock().unwrap();
    let from = out.stamps.partition_point(|&s| s <= icount);
    (out.console[from..].to_vec(), out.stamps[from..].to_vec())
}

fn save_with(m: &mut Machine, path: &Path, ram: RamEncoding) -> SnapshotInfo {
    let options = SaveOptions {
        ram,
        vm_uuid: Some([9; 16]),
    };
    m.save_snapshot_with(path, &options).unwrap()
}

fn restore(path: &Path, disks: Vec<Box<dyn BlockDevice>>) -> Result<Machine, SnapshotError> {
    Machine::restore_snapshot(path, Box::new(SharedOutput::default()), disks)
}

fn verified(path: &Path, disks: Vec<Box<dyn BlockDevice>>) -> Result<Machine, SnapshotError> {
    let options = RestoreOptions {
        verify: true,
        ..Default::default()
    };
    Machine::restore_snapshot_with(path, Box::new(SharedOutput::default()), disks, &options)
}

fn restored_run_matches_uninterrupted(cpus: usize, ram: RamEncoding) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.snapshot");

    let (mut reference, ref_out) = machine(program(None), cpus);
    drive(&mut reference, N);
    input_at_n(&mut reference);
    let at_save = reference.icount();
    drive(&mut reference, N + M);

    let (mut saved, saved_out) = machine(program(None), cpus);
    drive(&mut saved, N);
    input_at_n(&mut saved);
    let hash_at_save = saved.state_hash().unwrap();
    let info = save_with(&mut saved, &path, ram);
    assert_eq!(info.icount, at_save);
    assert_eq!(info.state_hash, hash_at_save);
    assert_eq!((info.cpus, info.memory), (cpus, 64 << 20));
    assert_eq!(info.vm_uuid, Some([9; 16]));
    assert_eq!(info.ram_encoding, ram);
    let pages = (64 << 20) / 4096;
    assert!(
        info.ram_pages_stored > 2 && info.ram_pages_stored < pages / 4,
        "zero pages elided: {} of {pages} stored",
        info.ram_pages_stored
    );
    assert!(
        info.allocated_bytes < 8 << 20,
        "a 64 MiB guest using little RAM makes a small file ({} bytes)",
        info.allocated_bytes
    );
    assert_eq!(snapshot::read_info(&path).unwrap().state_hash, hash_at_save);

    let out = SharedOutput::default();
    let mut restored = Machine::restore_snapshot(&path, Box::new(out.clone()), Vec::new()).unwrap();
    assert_eq!(restored.state_hash().unwrap(), hash_at_save);
    drive(&mut restored, N + M);
    drive(&mut saved, N + M);

    let want = reference.state_hash().unwrap();
    assert_eq!(restored.icount(), reference.icount());
    assert_eq!(restored.state_hash().unwrap(), want, "restored run");
    assert_eq!(saved.state_hash().unwrap(), want, "saving disturbs nothing");
    let want_console = console_after(&ref_out, at_save);
    assert!(want_console.0.len() > 10, "the guest kept printing");
    assert_eq!(console_after(&out, 0), want_console);
    assert_eq!(console_after(&saved_out, at_save), want_console);

    // A verified restore checks every RAM chunk and the state hash.
    let mut checked = verified(&path, Vec::new()).unwrap();
    assert_eq!(checked.state_hash().unwrap(), hash_at_save);
}

#[test]
fn one_hart_sparse_snapshot_continues_exactly() {
    restored_run_matches_uninterrupted(1, RamEncoding::Sparse);
}

#[test]
fn two_hart_sparse_snapshot_continues_exactly() {
    restored_run_matches_uninterrupted(2, RamEncoding::Sparse);
}

#[test]
fn two_hart_compressed_snapshot_continues_exactly() {
    restored_run_matches_uninterrupted(2, RamEncoding::Zstd { level: 3 });
}

fn open_raw(path: &Path) -> Box<dyn BlockDevice> {
    disk::open(path, &disk::OpenOptions::new(disk::Format::Raw, false)).unwrap()
}

fn raw_disk(path: &Path) {
    std::fs::write(path, vec![0u8; DISK_BYTES]).unwrap();
}

fn sector_of(path: &Path) -> Vec<u8> {
    let bytes = std::fs::read(path).unwrap();
    let at = SECTOR as usize * 512;
    bytes[at..at + 512].to_vec()
}

fn expect_disk_changed(r: Result<Machine, SnapshotError>) -> IdentityMismatch {
    match r {
        Err(SnapshotError::DiskChanged {
            slot: 0, reason, ..
        }) => reason,
        Err(e) => panic!("expected a changed disk, got: {e}"),
        Ok(_) => panic!("expected a changed disk, got a machine"),
    }
}

#[test]
fn raw_disk_layer_is_recorded_and_checked() {
    let dir = tempfile::tempdir().unwrap();
    let snap = dir.path().join("m.snapshot");
    let img = dir.path().join("vda.raw");
    let reference_img = dir.path().join("reference.raw");
    raw_disk(&img);
    raw_disk(&reference_img);

    let out = || Box::new(SharedOutput::default());
    let mut reference =
        Machine::with_disks(blk_config(1), out(), vec![open_raw(&reference_img)]).unwrap();
    drive(&mut reference, N + M);

    let mut saved = Machine::with_disks(blk_config(1), out(), vec![open_raw(&img)]).unwrap();
    drive(&mut saved, N);
    let info = saved.save_snapshot(&snap).unwrap();
    drop(saved); // releases the image's write lock
    assert_eq!(
        sector_of(&img),
        sector_data(),
        "the guest's write is on disk"
    );
    assert_eq!(info.disks.len(), 1);
    let record = &info.disks[0];
    assert_eq!((record.slot, record.read_only), (0, false));
    assert_eq!(record.identity.capacity(), DISK_BYTES as u64);
    let canonical = std::fs::canonicalize(&img).unwrap();
    assert_eq!(record.identity.path(), Some(canonical.as_path()));

    // The disks the snapshot names, unchanged: the run continues exactly.
    let mut restored = restore(&snap, snapshot::open_disks(&info).unwrap()).unwrap();
    drive(&mut restored, N + M);
    assert_eq!(
        restored.state_hash().unwrap(),
        reference.state_hash().unwrap()
    );
    drop(restored);
    drop(reference);
    assert_eq!(
        std::fs::read(&img).unwrap(),
        std::fs::read(&reference_img).unwrap()
    );

    // Missing or extra disks.
    assert!(matches!(
        restore(&snap, Vec::new()),
        Err(SnapshotError::DiskMissing { slot: 0, .. })
    ));
    let extra = vec![
        open_raw(&img),
        Box::new(MemDisk::new(512)) as Box<dyn BlockDevice>,
    ];
    assert!(matches!(
        restore(&snap, extra),
        Err(SnapshotError::DiskCount {
            given: 2,
            recorded: 1,
            ..
        })
    ));

    // Same bytes elsewhere (a copied bundle) or with new times: accepted
    // after re-hashing.
    let moved = dir.path().join("moved.raw");
    std::fs::copy(&img, &moved).unwrap();
    restore(&snap, vec![open_raw(&moved)]).unwrap();
    verified(&snap, vec![open_raw(&moved)]).unwrap();
    let f = std::fs::File::options().write(true).open(&img).unwrap();
    f.set_modified(std::time::SystemTime::UNIX_EPOCH).unwrap();
    drop(f);
    restore(&snap, vec![open_raw(&img)]).unwrap();

    // Other bytes: refused, whatever the path.
    std::fs::File::options()
        .write(true)
        .open(&img)
        .unwrap()
        .write_all_at(b"x", 100)
        .unwrap();
    let reason = expect_disk_changed(restore(&snap, vec![open_raw(&img)]));
    assert!(
        matches!(reason, IdentityMismatch::Contents { .. }),
        "{reason}"
    );
    std::fs::File::options()
        .write(true)
        .open(&img)
        .unwrap()
        .set_len(2 * DISK_BYTES as u64)
        .unwrap();
    let reason = expect_disk_changed(restore(&snap, vec![open_raw(&img)]));
    assert!(
        matches!(reason, IdentityMismatch::Capacity { .. }),
        "{reason}"
    );

    // The layer is gone.
    std::fs::remove_file(&img).unwrap();
    let err = snapshot::open_disks(&info).err().unwrap();
    assert!(
        matches!(err, SnapshotError::DiskMissing { slot: 0, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("vda.raw"), "{err}");
}

#[test]
fn memory_disk_identity_covers_the_guests_writes() {
    let dir = tempfile::tempdir().unwrap();
    let snap = dir.path().join("m.snapshot");
    let blank = || Box::new(MemDisk::new(DISK_BYTES)) as Box<dyn BlockDevice>;
    let mut m = Machine::with_disks(
        blk_config(2),
        Box::new(SharedOutput::default()),
        vec![blank()],
    )
    .unwrap();
    drive(&mut m, N);
    let info = m.save_snapshot(&snap).unwrap();
    assert_eq!(info.disks[0].identity.path(), None);
    assert!(snapshot::open_disks(&info).is_err(), "no file to open");

    let reason = expect_disk_changed(restore(&snap, vec![blank()]));
    assert!(
        matches!(reason, IdentityMismatch::MemoryContents),
        "{reason}"
    );

    let mut written = vec![0u8; DISK_BYTES];
    written[SECTOR as usize * 512..][..512].copy_from_slice(&sector_data());
    let disk = Box::new(MemDisk::with_contents(written, false));
    let mut restored = restore(&snap, vec![disk]).unwrap();
    drive(&mut restored, N + M);
    drive(&mut m, N + M);
    assert_eq!(restored.state_hash().unwrap(), m.state_hash().unwrap());
}

// ----- disks in the state hash ---------------------------------------------

/// The loop iteration in which hart 0 writes the disk again: after N,
/// before N + M (checked by the test).
const REWRITE_AT: i32 = 450;

fn rewrite_config() -> MachineConfig {
    let mut cfg = config(program_with_rewrite(Some(0), Some(REWRITE_AT)), 1);
    cfg.virtio = vec![VirtioSpec::Block {
        serial: "vda".into(),
    }];
    cfg
}

fn memory_disk(contents: Vec<u8>) -> Vec<Box<dyn BlockDevice>> {
    vec![Box::new(MemDisk::with_contents(contents, false))]
}

fn disk_bytes(m: &Machine) -> Vec<u8> {
    match m.disks().next().map(|d| d.contents()) {
        Some(Contents::Memory(bytes)) => bytes.to_vec(),
        _ => panic!("the machine has no memory disk"),
    }
}

fn sector_bytes(disk: &[u8]) -> &[u8] {
    &disk[SECTOR as usize * 512..][..512]
}

/// Run to `until` like [`drive`], taking the state hash after every step
/// or only at the end.
fn drive_hashing(m: &mut Machine, until: u64, every_step: bool) -> [u8; 32] {
    while m.icount() < until {
        drive(m, m.icount() + 1);
        if every_step {
            m.state_hash().unwrap();
        }
    }
    m.state_hash().unwrap()
}

#[test]
fn disk_written_before_and_after_a_snapshot_continues_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let snap = dir.path().join("m.snapshot");
    let out = || Box::new(SharedOutput::default());
    let blank = || memory_disk(vec![0; DISK_BYTES]);

    let mut reference = Machine::with_disks(rewrite_config(), out(), blank()).unwrap();
    drive(&mut reference, N + M);

    let mut saved = Machine::with_disks(rewrite_config(), out(), blank()).unwrap();
    drive(&mut saved, N);
    let at_n = disk_bytes(&saved);
    assert_eq!(sector_bytes(&at_n), sector_data(), "written once by N");
    let hash_at_save = saved.state_hash().unwrap();
    let info = saved.save_snapshot(&snap).unwrap();
    assert_eq!(info.state_hash, hash_at_save);

    // The written clusters come back with the snapshot: same hash at N,
    // and the same at N + M after the second write.
    let mut restored = restore(&snap, memory_disk(at_n.clone())).unwrap();
    assert_eq!(restored.state_hash().unwrap(), hash_at_save);
    drive(&mut restored, N + M);
    assert_eq!(restored.icount(), reference.icount());
    let end = disk_bytes(&restored);
    let rewritten = (REWRITE_AT as u64).to_le_bytes();
    assert_eq!(sector_bytes(&end)[..8], rewritten, "written again after N");
    assert_eq!(end, disk_bytes(&reference));
    let want = reference.state_hash().unwrap();
    assert_eq!(restored.state_hash().unwrap(), want, "restored run");
    drive(&mut saved, N + M);
    assert_eq!(saved.state_hash().unwrap(), want, "saving disturbs nothing");

    // A verified restore reads the written clusters back: same hash.
    let mut checked = verified(&snap, memory_disk(at_n)).unwrap();
    assert_eq!(checked.state_hash().unwrap(), hash_at_save);
}

#[test]
fn written_disk_contents_are_part_of_the_state_hash() {
    // Two disks that differ in sector 3, which the guest never writes, but
    // which shares a 64 KiB cluster with the sector it writes.
    let mut other = vec![0u8; DISK_BYTES];
    other[3 * 512] = 1;
    let out = || Box::new(SharedOutput::default());
    let blank = memory_disk(vec![0; DISK_BYTES]);
    let mut a = Machine::with_disks(blk_config(1), out(), blank).unwrap();
    let mut b = Machine::with_disks(blk_config(1), out(), memory_disk(other)).unwrap();
    assert_eq!(
        a.state_hash().unwrap(),
        b.state_hash().unwrap(),
        "clusters never written are not hashed (replicas start equal)"
    );
    drive(&mut a, N);
    drive(&mut b, N);
    assert_eq!(a.icount(), b.icount());
    assert_eq!(a.ram().as_slice(), b.ram().as_slice());
    assert_ne!(
        a.state_hash().unwrap(),
        b.state_hash().unwrap(),
        "the written cluster differs"
    );
}

#[test]
fn the_state_hash_does_not_depend_on_when_it_was_taken() {
    let out = || Box::new(SharedOutput::default());
    let blank = || memory_disk(vec![0; DISK_BYTES]);
    let mut often = Machine::with_disks(rewrite_config(), out(), blank()).unwrap();
    let mut once = Machine::with_disks(rewrite_config(), out(), blank()).unwrap();
    let hash = drive_hashing(&mut often, N + M, true);
    assert_eq!(drive_hashing(&mut once, N + M, false), hash);
    assert_eq!(once.icount(), often.icount());
    // And a machine hashed from scratch (restored: fresh RAM tracking,
    // recorded clusters re-read) agrees.
    let dir = tempfile::tempdir().unwrap();
    let snap = dir.path().join("m.snapshot");
    often.save_snapshot(&snap).unwrap();
    let mut fresh = verified(&snap, memory_disk(disk_bytes(&often))).unwrap();
    assert_eq!(fresh.state_hash().unwrap(), hash);
}

// ----- bad files -------------------------------------------------------------

/// A saved two-hart machine with a disk, and its file's sections.
fn saved_file(dir: &Path, ram: RamEncoding) -> (PathBuf, SnapshotInfo, Vec<u8>) {
    let path = dir.join("good.snapshot");
    let mut m = Machine::with_disks(
        blk_config(2),
        Box::new(SharedOutput::default()),
        vec![Box::new(MemDisk::new(DISK_BYTES))],
    )
    .unwrap();
    drive(&mut m, N);
    let info = save_with(&mut m, &path, ram);
    let mut disk = vec![0u8; DISK_BYTES];
    disk[SECTOR as usize * 512..][..512].copy_from_slice(&sector_data());
    (path, info, disk)
}

fn section(info: &SnapshotInfo, s: Section) -> (u64, u64) {
    let i = info.sections.iter().find(|i| i.section == s).unwrap();
    (i.offset, i.len)
}

/// A copy of `good` with the byte at `at` flipped.
fn flipped(good: &Path, at: u64) -> PathBuf {
    let mut bytes = std::fs::read(good).unwrap();
    bytes[at as usize] ^= 0x40;
    let path = good.with_file_name(format!("flipped-{at}.snapshot"));
    std::fs::write(&path, bytes).unwrap();
    path
}

fn disk_of(contents: &[u8]) -> Vec<Box<dyn BlockDevice>> {
    vec![Box::new(MemDisk::with_contents(contents.to_vec(), false))]
}

fn restore_err(path: &Path, disk: &[u8]) -> SnapshotError {
    match restore(path, disk_of(disk)) {
        Err(e) => e,
        Ok(_) => panic!("{} restored", path.display()),
    }
}

fn assert_checksum(e: SnapshotError, want: Section) {
    match &e {
        SnapshotError::Checksum { section, .. } if *section == want => {
            assert!(e.to_string().contains(&want.to_string()), "{e}");
        }
        _ => panic!("expected a checksum error in the {want}, got: {e}"),
    }
}

#[test]
fn a_flipped_byte_in_any_section_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (good, info, disk) = saved_file(dir.path(), RamEncoding::Sparse);
    restore(&good, disk_of(&disk)).unwrap();

    // The boot images are checked on first use instead (see
    // `corrupt_images_restore_lazily_but_never_load`).
    for s in [Section::Index, Section::State, Section::DiskLayer] {
        let (offset, len) = section(&info, s);
        assert!(len > 0, "{s} is empty");
        let bad = flipped(&good, offset + len / 2);
        assert_checksum(restore_err(&bad, &disk), s);
    }
    // The preamble's own check (a byte of the index offset).
    assert_checksum(restore_err(&flipped(&good, 20), &disk), Section::Preamble);

    // RAM: the firmware's first byte. Lazy restore does not read RAM, so
    // only a verified restore sees it.
    let (ram, _) = section(&info, Section::Ram);
    let bad = flipped(&good, ram);
    let lazy = restore(&bad, disk_of(&disk)).unwrap();
    let good_first = restore(&good, disk_of(&disk)).unwrap().ram().as_slice()[0];
    assert_eq!(lazy.ram().as_slice()[0], good_first ^ 0x40);
    match verified(&bad, disk_of(&disk)) {
        Err(e) => assert_checksum(e, Section::RamChunk(0)),
        Ok(_) => panic!("a verified restore took corrupt RAM"),
    }
}

/// Spin iterations of [`reset_program`].
const SPIN: i32 = 20_000;

/// Prints `letter`, spins a while, then asks the test device for a reset.
fn reset_program(letter: u8) -> Vec<u8> {
    let mut a = Asm::new();
    a.li(T0, 0x1000_0000)
        .li(T1, i32::from(letter))
        .sb(T1, 0, T0)
        .li(A0, 0)
        .li(A1, SPIN)
        .label("spin")
        .addi(A0, A0, 1)
        .bne(A0, A1, "spin")
        .li(T0, 0x10_0000)
        .li(T1, 0x7777)
        .sw(T1, 0, T0);
    a.finish()
}

fn run_to_reset(m: &mut Machine) -> Result<(), MachineError> {
    for _ in 0..100 {
        match m.step()? {
            Step::Ran => {}
            Step::Reset => return Ok(()),
            other => panic!("unexpected {other:?} at icount {}", m.icount()),
        }
    }
    panic!("no reset within 100 steps");
}

fn console(out: &SharedOutput) -> Vec<u8> {
    out.0.lock().unwrap().console.clone()
}

#[test]
fn corrupt_images_restore_lazily_but_never_load() {
    let dir = tempfile::tempdir().unwrap();
    let (good_fw, bad_fw) = (reset_program(b'R'), reset_program(b'X'));
    assert_eq!(good_fw.len(), bad_fw.len());
    let (mut m, out) = machine(good_fw.clone(), 1);
    while m.icount() < SPIN as u64 {
        assert_eq!(m.step_until(SPIN as u64).unwrap(), Step::Ran);
    }
    assert_eq!(console(&out), b"R"); // mid-spin: the reset is ahead
    let good = dir.path().join("good.snapshot");
    let info = m.save_snapshot(&good).unwrap();

    // The firmware leads the images section: put the 'X' program there.
    let (images, _) = section(&info, Section::Images);
    let mut bytes = std::fs::read(&good).unwrap();
    bytes[images as usize..][..bad_fw.len()].copy_from_slice(&bad_fw);
    let bad = dir.path().join("bad.snapshot");
    std::fs::write(&bad, bytes).unwrap();

    // Intact: the mapped images are the saved ones and a reset boots them.
    let out = SharedOutput::default();
    let mut restored = Machine::restore_snapshot(&good, Box::new(out.clone()), Vec::new()).unwrap();
    assert_eq!(&restored.config().images.firmware[..], &good_fw[..]);
    assert_eq!(&restored.config().images.kernel[..], &stub_kernel()[..]);
    run_to_reset(&mut restored).unwrap();
    run_to_reset(&mut restored).unwrap();
    assert_eq!(
        console(&out),
        b"R",
        "the firmware ran again after the reset"
    );

    // Corrupt: restore is lazy and succeeds; the guest's reset fails.
    let out = SharedOutput::default();
    let mut lazy = Machine::restore_snapshot(&bad, Box::new(out.clone()), Vec::new()).unwrap();
    let e = run_to_reset(&mut lazy).unwrap_err();
    match &e {
        MachineError::CorruptImages(c) => assert_eq!(c.path, bad),
        _ => panic!("expected corrupt images, got: {e}"),
    }
    assert!(e.to_string().contains("boot images section"), "{e}");
    assert_ne!(lazy.harts()[0].pc(), 0x1000, "the machine did not restart");
    // An explicit reset fails the same way and changes nothing.
    let before = (
        lazy.icount(),
        lazy.harts()[0].pc(),
        lazy.state_hash().unwrap(),
    );
    assert!(matches!(lazy.reset(), Err(MachineError::CorruptImages(_))));
    let after = (
        lazy.icount(),
        lazy.harts()[0].pc(),
        lazy.state_hash().unwrap(),
    );
    assert_eq!(before, after);
    assert!(console(&out).is_empty(), "the corrupt firmware never ran");

    // Saving would vouch for the bad bytes with a fresh checksum: refused.
    let copy = dir.path().join("copy.snapshot");
    let e = lazy.save_snapshot(&copy).err().unwrap();
    assert!(
        matches!(
            &e,
            SnapshotError::Save {
                source: MachineError::CorruptImages(_),
                ..
            }
        ),
        "{e}"
    );
    assert!(!copy.exists());

    // A verified restore checks the images up front.
    match verified(&bad, Vec::new()) {
        Err(e) => assert_checksum(e, Section::Images),
        Ok(_) => panic!("a verified restore took corrupt images"),
    }
}

#[test]
fn compressed_ram_is_always_checked() {
    let dir = tempfile::tempdir().unwrap();
    let (good, info, disk) = saved_file(dir.path(), RamEncoding::Zstd { level: 1 });
    restore(&good, disk_of(&disk)).unwrap();
    let (ram, _) = section(&info, Section::Ram);
    assert_checksum(
        restore_err(&flipped(&good, ram + 3), &disk),
        Section::RamChunk(0),
    );
}

#[test]
fn wrong_magic_wrong_version_and_truncation_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (good, info, disk) = saved_file(dir.path(), RamEncoding::Sparse);

    let e = restore_err(&flipped(&good, 0), &disk);
    assert!(matches!(e, SnapshotError::BadMagic { .. }), "{e}");
    let text = dir.path().join("notes.txt");
    std::fs::write(&text, "hello").unwrap();
    let e = restore_err(&text, &disk);
    assert!(matches!(e, SnapshotError::BadMagic { .. }), "{e}");

    let mut bytes = std::fs::read(&good).unwrap();
    let unknown = snapshot::FORMAT_VERSION + 1;
    bytes[8..12].copy_from_slice(&unknown.to_le_bytes());
    let newer = dir.path().join("newer.snapshot");
    std::fs::write(&newer, &bytes).unwrap();
    let e = restore_err(&newer, &disk);
    assert!(
        matches!(e, SnapshotError::UnsupportedVersion { found, .. } if found == unknown),
        "{e}"
    );
    let message = format!("version {unknown} is not supported");
    assert!(e.to_string().contains(&message), "{e}");
    let message = format!("this build reads version {}", snapshot::FORMAT_VERSION);
    assert!(e.to_string().contains(&message), "{e}");

    // Version 4 had version 5's bytes: it is read as it is.
    bytes[8..12].copy_from_slice(&4u32.to_le_bytes());
    let v4 = dir.path().join("v4.snapshot");
    std::fs::write(&v4, &bytes).unwrap();
    snapshot::forge::reseal(&v4).unwrap();
    snapshot::read_info(&v4).unwrap();
    restore(&v4, disk_of(&disk)).unwrap();

    // A file of every version older than that is refused, by version,
    // naming both.
    for older in 1..snapshot::OLDEST_READABLE_VERSION {
        bytes[8..12].copy_from_slice(&older.to_le_bytes());
        let old = dir.path().join(format!("v{older}.snapshot"));
        std::fs::write(&old, &bytes).unwrap();
        let e = restore_err(&old, &disk);
        assert!(
            matches!(
                e,
                SnapshotError::UnsupportedVersion { found, supported, .. }
                    if found == older && supported == snapshot::FORMAT_VERSION
            ),
            "{e}"
        );
        let message = format!(
            "snapshot format version {older} is not supported: it is older than this build's version {}",
            snapshot::FORMAT_VERSION
        );
        assert!(e.to_string().contains(&message), "{e}");
        let e = snapshot::read_info(&old).unwrap_err();
        assert!(e.to_string().contains(&message), "read_info: {e}");
    }

    for keep in [0, 40, info.file_bytes / 2, info.file_bytes - 1] {
        let cut = dir.path().join(format!("cut-{keep}.snapshot"));
        std::fs::write(&cut, &std::fs::read(&good).unwrap()[..keep as usize]).unwrap();
        let e = restore_err(&cut, &disk);
        match &e {
            SnapshotError::Truncated { len, .. } if *len == keep => {
                assert!(
                    e.to_string().contains(&format!("truncated at byte {keep}")),
                    "{e}"
                );
            }
            _ => panic!("cut at {keep}: expected truncation, got: {e}"),
        }
    }
}

#[test]
fn saving_replaces_a_snapshot_whole_and_leaves_no_temporary_files() {
    let dir = tempfile::tempdir().unwrap();
    let (good, info, _) = saved_file(dir.path(), RamEncoding::Sparse);
    let (mut m, _) = machine(program(None), 1);
    let missing_dir = dir.path().join("no-such-dir").join("m.snapshot");
    let e = m.save_snapshot(&missing_dir).err().unwrap();
    assert!(matches!(e, SnapshotError::Io { .. }), "{e}");
    assert_eq!(
        snapshot::read_info(&good).unwrap().state_hash,
        info.state_hash
    );

    drive(&mut m, 1000);
    let replaced = m.save_snapshot(&good).unwrap();
    assert_ne!(replaced.state_hash, info.state_hash);
    assert_eq!(
        snapshot::read_info(&good).unwrap().state_hash,
        replaced.state_hash
    );
    assert_eq!(restore(&good, Vec::new()).unwrap().icount(), m.icount());
    let mode = std::fs::metadata(&good).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "RAM and seeds are secrets");
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|n| n.to_string_lossy().starts_with(".snapshot-"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn measure_reports_save_and_restore_times() {
    let dir = tempfile::tempdir().unwrap();
    let spec = snapshot::MeasureSpec {
        memory: 64 << 20,
        touched: 8 << 20,
        ..Default::default()
    };
    let m = snapshot::measure(dir.path(), &spec).unwrap();
    println!("64 MiB, 8 MiB touched: {m}");
    assert!(m.file_bytes >= 64 << 20, "the RAM region spans all of RAM");
    assert!(m.allocated_bytes < 16 << 20, "but zero pages take no space");
}

/// `cargo test -p lockstep-machine --release --test snapshot -- --ignored --nocapture`
#[test]
#[ignore = "timing report for a 512 MiB guest"]
fn timing_512_mib() {
    let dir = tempfile::tempdir().unwrap();
    for (touched, image_bytes, ram) in [
        (0, 0, RamEncoding::Sparse),
        (128 << 20, 0, RamEncoding::Sparse),
        (128 << 20, 48 << 20, RamEncoding::Sparse),
        (128 << 20, 0, RamEncoding::Zstd { level: 3 }),
    ] {
        let spec = snapshot::MeasureSpec {
            touched,
            image_bytes,
            ram,
            ..Default::default()
        };
        let m = snapshot::measure(dir.path(), &spec).unwrap();
        println!(
            "512 MiB, {} MiB touched, {} MiB images, {ram:?}: {m}",
            touched >> 20,
            image_bytes >> 20
        );
    }
}

/// A live save (pre-copy rounds while the guest runs, then a paused last
/// round) assembled on the receiving side restores a machine that is the
/// sender's at the moment of the last round, disk replica included, and
/// runs on exactly like it.
#[test]
fn a_live_save_assembled_elsewhere_continues_exactly() {
    use machine::snapshot::{Assembler, Piece};
    let dir = tempfile::tempdir().unwrap();
    let out = || Box::new(SharedOutput::default());
    // The source disk has data the guest never writes (round 0 copies it).
    let mut contents = vec![0u8; DISK_BYTES];
    contents[700_000..700_010].copy_from_slice(b"preexisted");
    let mut source = Machine::with_disks(rewrite_config(), out(), memory_disk(contents)).unwrap();
    let mut reference = {
        let mut contents = vec![0u8; DISK_BYTES];
        contents[700_000..700_010].copy_from_slice(b"preexisted");
        Machine::with_disks(rewrite_config(), out(), memory_disk(contents)).unwrap()
    };
    drive(&mut source, N / 4);

    let images: Vec<u8> = source.boot_image_parts().unwrap().concat();
    let mut assembler = Assembler::new(dir.path(), images.len() as u64, 64 << 20).unwrap();
    assembler.images(0, &images).unwrap();
    let mut replica = MemDisk::new(DISK_BYTES);
    let mut receive = |piece: Piece<'_>| -> Result<(), String> {
        match piece {
            Piece::Page { index, bytes } => assembler.page(index as u64, bytes).unwrap(),
            Piece::Disk {
                disk,
                offset,
                bytes,
            } => {
                assert_eq!(disk, 0);
                replica.write_at(offset, bytes).unwrap();
            }
        }
        Ok(())
    };
    let mut save = source.live_save();
    // Round 0 a little at a time while the guest runs, then two more.
    while !save.copy(&mut source, 64 << 10, &mut receive).unwrap() {
        let next = source.icount() + 5_000;
        drive(&mut source, next);
    }
    for _ in 0..2 {
        let next = source.icount() + N / 4;
        drive(&mut source, next);
        save.next_round(&mut source);
        while !save.copy(&mut source, 64 << 10, &mut receive).unwrap() {
            let next = source.icount() + 5_000;
            drive(&mut source, next);
        }
    }
    drive(&mut source, N);
    let at = source.icount();
    let state = save
        .finish(&mut source, Some([7; 16]), &mut receive)
        .unwrap();
    let hash = source.state_hash().unwrap();

    let assembled = assembler.finish(&state, &[&replica]).unwrap();
    assert_eq!(assembled.state_hash, hash);
    let file = assembled.path;
    let restored_out = SharedOutput::default();
    let mut restored = Machine::restore_snapshot_with(
        &file,
        Box::new(restored_out.clone()),
        vec![Box::new(replica)],
        &RestoreOptions {
            verify: true,
            ..Default::default()
        },
    )
    .unwrap();
    drop(file); // the restored machine keeps its mappings
    assert_eq!(restored.icount(), at);
    assert_eq!(restored.state_hash().unwrap(), hash);

    drive(&mut restored, N + M);
    drive(&mut source, N + M);
    drive(&mut reference, N + M);
    let want = reference.state_hash().unwrap();
    assert_eq!(
        source.state_hash().unwrap(),
        want,
        "the live save disturbs nothing"
    );
    assert_eq!(
        restored.state_hash().unwrap(),
        want,
        "the assembled machine"
    );
    let end = disk_bytes(&restored);
    assert_eq!(end, disk_bytes(&reference));
    assert_eq!(&end[700_000..700_010], b"preexisted");
    assert_eq!(sector_bytes(&end)[..8], (REWRITE_AT as u64).to_le_bytes());
    assert!(!console_after(&restored_out, 0).0.is_empty());
}

#[test]
fn an_assembler_refuses_pieces_that_do_not_fit() {
    let dir = tempfile::tempdir().unwrap();
    let mut a = machine::snapshot::Assembler::new(dir.path(), 100, 64 << 20).unwrap();
    let err = a.images(90, &[0; 20]).unwrap_err().to_string();
    assert!(err.contains("20 bytes at offset 90 of 100"), "{err}");
    let err = a
        .page((64 << 20) / 4096, &[0; 4096])
        .unwrap_err()
        .to_string();
    assert!(err.contains("page 16384 of 16384"), "{err}");
    let err = a.page(0, &[0; 10]).unwrap_err().to_string();
    assert!(err.contains("with 10 bytes"), "{err}");
    let err = a.finish(b"garbage", &[]).unwrap_err().to_string();
    assert!(err.contains("state"), "{err}");
    let err = machine::snapshot::Assembler::new(dir.path(), 0, 3 << 20)
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(err.contains("memory size"), "{err}");
    let err = machine::snapshot::Assembler::new(dir.path(), u64::MAX - 10, 64 << 20)
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(err.contains("bytes of boot images"), "{err}");
}

/// A two-hart machine with every kind of device (disk, RNG, NIC), run to
/// N with console input waiting in the UART, hashed: the state hash is a
/// function of the saved state types' encoding, which replay logs
/// (checkpoints, initial state) and FT compare. A changed value means a
/// state type's encoding changed: bump the snapshot and log format
/// versions, then update the pin.
#[test]
fn the_state_hash_of_a_known_machine_is_pinned() {
    let mut cfg = config(program(Some(0)), 2);
    cfg.virtio = vec![
        VirtioSpec::Block {
            serial: "vda".into(),
        },
        VirtioSpec::Rng { seed: [5; 32] },
        VirtioSpec::Net {
            mac: [2, 0, 0, 0, 0, 1],
        },
    ];
    let out = Box::new(SharedOutput::default());
    let mut m = Machine::with_disks(cfg, out, memory_disk(vec![0; DISK_BYTES])).unwrap();
    drive(&mut m, N);
    input_at_n(&mut m);
    let hash: String = m
        .state_hash()
        .unwrap()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(
        hash,
        "b4428146f0018b4e4b31354fdcc5b8275c5cd646aa69e6e5bf87bc606a95bbc3"
    );
}
