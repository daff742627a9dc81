//! Inputs the fuzzer (`fuzz/`, target `disk_image`) found, each kept as a
//! test of the behaviour it broke.

use disk::{DiskError, Format, OpenOptions};
use std::path::PathBuf;

fn data(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name)
}

/// A copy of a fuzz input in a scratch directory (opening writable takes
/// a lock and may write).
fn scratch(name: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(name);
    std::fs::copy(data(name), &path).unwrap();
    (dir, path)
}

/// A qcow2 whose refcount table names refcount blocks past the end of the
/// file (qemu-img check: "refcount block 3 is outside image"). Writing to
/// it sent imago's cluster allocator into unbounded recursion — a stack
/// overflow that killed the process. A writable open now refuses it with
/// the reason; read-only it still opens and reads.
#[test]
fn refcount_block_outside_the_file_is_refused_for_writing() {
    let (_dir, path) = scratch("refblock-outside.qcow2");
    match disk::open(&path, &OpenOptions::new(Format::Qcow2, false)) {
        Err(DiskError::Corrupt { reason, .. }) => {
            assert!(reason.contains("refcount block 3"), "{reason}")
        }
        Err(e) => panic!("wrong error: {e}"),
        Ok(_) => panic!("a qcow2 with refcount blocks outside the file opened writable"),
    }
    let mut disk = disk::open(&path, &OpenOptions::new(Format::Qcow2, true)).unwrap();
    let mut buf = [1u8; 512];
    disk.read_at(0, &mut buf).unwrap();
    assert_eq!(buf, [0; 512]);
}

/// A qcow2 whose refcounts say its own header, refcount table and blocks
/// are free (qemu-img check: "cluster 0 refcount=0 reference=1"): imago
/// allocated them for guest data, overwrote the refcount table and
/// recursed without bound. Refused for writing, readable.
#[test]
fn metadata_with_refcount_zero_is_refused_for_writing() {
    let (_dir, path) = scratch("metadata-refcount-zero.qcow2");
    match disk::open(&path, &OpenOptions::new(Format::Qcow2, false)) {
        Err(DiskError::Corrupt { reason, .. }) => {
            assert!(reason.contains("refcount of 0"), "{reason}")
        }
        Err(e) => panic!("wrong error: {e}"),
        Ok(_) => panic!("a qcow2 with free metadata clusters opened writable"),
    }
    let mut disk = disk::open(&path, &OpenOptions::new(Format::Qcow2, true)).unwrap();
    let mut buf = [1u8; 512];
    disk.read_at(0, &mut buf).unwrap();
}

/// The same check passes every image qemu-img and we create.
#[test]
fn fresh_images_still_open_writable() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("fresh.qcow2");
    disk::create(&path, 1 << 20, None).unwrap();
    let mut disk = disk::open(&path, &OpenOptions::new(Format::Qcow2, false)).unwrap();
    disk.write_at(4096, &[7; 4096]).unwrap();
    disk.flush().unwrap();
}
