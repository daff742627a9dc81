//! Targets whose parser reads a file: the input is written to a scratch
//! file first.

use std::path::PathBuf;

/// A file in this thread's scratch directory holding `bytes`.
pub(crate) fn scratch(name: &str, bytes: &[u8]) -> PathBuf {
    thread_local! {
        static DIR: tempfile::TempDir = tempfile::Builder::new()
            .prefix("lockstep-fuzz-")
            .tempdir()
            .expect("a scratch directory for the fuzz target");
    }
    let path = DIR.with(|d| d.path().join(name));
    std::fs::write(&path, bytes).expect("writing the fuzz input to a scratch file");
    path
}

/// `disk::probe`, `disk::info` and `disk::open` (as qcow2 and as raw,
/// read-only and writable, backing files contained) of the input as a
/// file, then reads (first, last and an odd sector) and, if writable, a
/// write, a discard and a flush.
pub fn disk_image(data: &[u8]) {
    let path = scratch("disk.img", data);
    let _ = disk::probe(&path);
    let _ = disk::info(&path);
    let formats = [disk::Format::Qcow2, disk::Format::Raw];
    for (format, read_only) in formats.into_iter().flat_map(|f| [(f, true), (f, false)]) {
        let options = disk::OpenOptions::new(format, read_only);
        let Ok(mut disk) = disk::open(&path, &options) else {
            continue;
        };
        let capacity = disk.capacity();
        let mut buf = vec![0u8; 4096];
        for offset in [
            0,
            capacity / 2 / 512 * 512 + 512,
            capacity.saturating_sub(4096),
        ] {
            let _ = disk.read_at(offset, &mut buf);
        }
        assert!(
            disk.read_at(capacity, &mut buf[..1]).is_err(),
            "read past the end of a {capacity}-byte disk"
        );
        if !read_only {
            let _ = disk.write_at(capacity / 3 / 512 * 512, &buf[..1024]);
            let _ = disk.discard(0, capacity.min(1 << 20));
            let _ = disk.flush();
        }
    }
}

/// A `.deb` package.
pub fn deb(data: &[u8]) {
    let path = scratch("package.deb", data);
    guest_image::fuzzing::deb(&path);
}
