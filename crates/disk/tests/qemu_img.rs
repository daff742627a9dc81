//! Images checked against QEMU's own tools (qemu-img, qemu-io from
//! qemu-utils): what we create QEMU accepts, what QEMU creates we read and
//! write correctly, and bad inputs fail with errors that name the file.

use disk::{info, BlockDevice, DiskError, Format, MemDisk};

mod common;
use common::{create, open};

/// One test at a time in this binary: a `qemu-img` forked by one test
/// thread holds, until it execs, every file lock the process holds, so a
/// parallel test's image open could see `Locked` (as in crates/vmm's tests).
fn serial() -> std::sync::MutexGuard<'static, ()> {
    static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());
    SERIAL
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}
mod qemu;
use qemu::*;

use std::path::{Path, PathBuf};
use tempfile::TempDir;

/// Apply the same mixed operations to `disk` and to an in-memory model:
/// writes (unaligned, crossing clusters), discards and write-zeroes.
fn exercise(disk: &mut dyn BlockDevice, model: &mut MemDisk) {
    let cap = disk.capacity();
    assert_eq!(cap, model.capacity());
    let mut x: u64 = 0x1234_5678;
    for i in 0..60u64 {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let len = 1 + (x >> 20) % (3 * CLUSTER);
        let offset = (x >> 40) % (cap - len);
        match i % 6 {
            4 => {
                disk.discard(offset, len).expect("discard");
                model.discard(offset, len).expect("model discard");
            }
            5 => {
                disk.write_zeroes(offset, len).expect("write_zeroes");
                model.write_zeroes(offset, len).expect("model write_zeroes");
            }
            _ => {
                let data = pattern(i, len as usize);
                disk.write_at(offset, &data).expect("write");
                model.write_at(offset, &data).expect("model write");
            }
        }
    }
}

fn model_of(data: Vec<u8>) -> MemDisk {
    MemDisk::with_contents(data, false)
}

#[test]
fn created_image_passes_qemu_check_and_info() {
    let _serial = serial();
    let dir = TempDir::new().unwrap();
    let img = dir.path().join("disk.qcow2");
    create(&img, 64 * MIB, None).unwrap();
    assert_check_clean(&img);
    let json = qemu_img(&["info", "--output=json", s(&img)]);
    assert_eq!(json_field(&json, "format"), "qcow2");
    assert_eq!(json_field(&json, "virtual-size"), (64 * MIB).to_string());
    assert_eq!(json_field(&json, "cluster-size"), CLUSTER.to_string());
    assert_eq!(json_field(&json, "compat"), "1.1", "qcow2 v3");
    assert!(!json.contains("backing-filename"), "{json}");

    // Nothing but the image itself is left in the directory.
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, vec![std::ffi::OsString::from("disk.qcow2")]);
}

#[test]
fn created_overlays_record_backing_name_and_format() {
    let _serial = serial();
    let dir = TempDir::new().unwrap();
    let base_raw = dir.path().join("base.raw");
    raw_file(&base_raw, 1, 4 * MIB);
    let base_q = dir.path().join("base.qcow2");
    create(&base_q, 8 * MIB, None).unwrap();
    std::fs::create_dir(dir.path().join("vm")).unwrap();

    for (base, fmt) in [(&base_raw, "raw"), (&base_q, "qcow2")] {
        let over = dir.path().join(format!("vm/over-{fmt}.qcow2"));
        create(&over, 8 * MIB, Some(base)).unwrap();
        assert_check_clean(&over);
        let json = qemu_img(&["info", "--output=json", s(&over)]);
        let name = base.file_name().unwrap().to_str().unwrap();
        // Stored relative to the overlay's directory.
        assert_eq!(json_field(&json, "backing-filename"), format!("../{name}"));
        assert_eq!(json_field(&json, "backing-filename-format"), fmt);
        assert_eq!(json_field(&json, "virtual-size"), (8 * MIB).to_string());
        // QEMU resolves it to the right file.
        let full = PathBuf::from(json_field(&json, "full-backing-filename"));
        assert_eq!(full.canonicalize().unwrap(), base.canonicalize().unwrap());
    }
}

#[test]
fn data_written_through_block_device_reads_back_in_qemu() {
    let _serial = serial();
    let dir = TempDir::new().unwrap();
    let img = dir.path().join("disk.qcow2");
    create(&img, 8 * MIB, None).unwrap();
    let mut model = MemDisk::new((8 * MIB) as usize);
    {
        let mut d = open(&img, false).unwrap();
        assert_eq!(d.capacity(), 8 * MIB);
        assert!(!d.read_only());
        exercise(d.as_mut(), &mut model);
        assert_eq!(read_all(d.as_mut()), model.contents(), "our own read-back");
        // Dropped without flush: imago writes its metadata on drop.
    }
    assert_check_clean(&img);
    assert!(qemu_contents(dir.path(), &img) == model.contents());
}

#[test]
fn flush_leaves_a_consistent_image_while_still_open() {
    let _serial = serial();
    let dir = TempDir::new().unwrap();
    let img = dir.path().join("disk.qcow2");
    create(&img, 4 * MIB, None).unwrap();
    let mut d = open(&img, false).unwrap();
    let data = pattern(7, 300_000);
    d.write_at(12_345, &data).unwrap();
    d.flush().unwrap();
    // Another process sees a clean image holding the data, as it would
    // after a crash right now.
    assert_check_clean(&img);
    let seen = qemu_contents(dir.path(), &img);
    assert!(seen[12_345..12_345 + data.len()] == data[..]);
    assert!(seen[..12_345].iter().all(|&b| b == 0));
    drop(d);
    assert_check_clean(&img);
}

#[test]
fn qemu_made_overlay_reads_backing_and_writes_only_the_overlay() {
    let _serial = serial();
    let dir = TempDir::new().unwrap();
    let base_raw = dir.path().join("base.raw");
    let base_data = raw_file(&base_raw, 3, 8 * MIB);
    let base = dir.path().join("base.qcow2");
    qemu_img(&[
        "convert",
        "-f",
        "raw",
        "-O",
        "qcow2",
        s(&base_raw),
        s(&base),
    ]);
    let over = dir.path().join("over.qcow2");
    qemu_img(&[
        "create",
        "-f",
        "qcow2",
        "-b",
        "base.qcow2",
        "-F",
        "qcow2",
        s(&over),
    ]);
    let base_file_before = std::fs::read(&base).unwrap();

    let mut model = model_of(base_data.clone());
    {
        let mut d = open(&over, false).unwrap();
        assert_eq!(d.capacity(), 8 * MIB);
        // Everything comes from the backing file at first.
        assert!(read_all(d.as_mut()) == base_data);
        exercise(d.as_mut(), &mut model);
        assert!(read_all(d.as_mut()) == model.contents());
        d.flush().unwrap();
    }
    assert_check_clean(&over);
    assert!(qemu_contents(dir.path(), &over) == model.contents());
    // The base file is byte-for-byte untouched.
    assert!(std::fs::read(&base).unwrap() == base_file_before);
    assert!(qemu_contents(dir.path(), &base) == base_data);
}

#[test]
fn qemu_made_images_of_other_shapes_work() {
    let _serial = serial();
    let dir = TempDir::new().unwrap();
    // qcow2 v2, small clusters, on a raw backing file.
    let base = dir.path().join("base.img");
    let base_data = raw_file(&base, 5, 2 * MIB);
    let over = dir.path().join("v2.qcow2");
    qemu_img(&[
        "create",
        "-f",
        "qcow2",
        "-o",
        "compat=0.10,cluster_size=4096",
        "-b",
        s(&base),
        "-F",
        "raw",
        s(&over),
    ]);
    let mut model = model_of(base_data);
    {
        let mut d = open(&over, false).unwrap();
        exercise(d.as_mut(), &mut model);
    }
    assert_check_clean(&over);
    assert!(qemu_contents(dir.path(), &over) == model.contents());

    // Data qemu-io wrote into a qcow2 image reads back through our code.
    let img = dir.path().join("qemu.qcow2");
    qemu_img(&["create", "-f", "qcow2", s(&img), "1M"]);
    run("qemu-io", &["-c", "write -P 0xa5 65000 70000", s(&img)]);
    let mut d = open(&img, true).unwrap();
    let all = read_all(d.as_mut());
    assert!(all[65_000..135_000].iter().all(|&b| b == 0xa5));
    assert!(all[..65_000].iter().chain(&all[135_000..]).all(|&b| b == 0));
}

#[test]
fn discard_and_write_zeroes_hide_backing_data() {
    let _serial = serial();
    let dir = TempDir::new().unwrap();
    let base = dir.path().join("base.raw");
    let base_data = raw_file(&base, 9, 2 * MIB);
    let over = dir.path().join("over.qcow2");
    create(&over, 2 * MIB, Some(&base)).unwrap();
    let mut expected = base_data.clone();
    {
        let mut d = open(&over, false).unwrap();
        // Whole clusters, an unaligned range, and a range we wrote first.
        d.discard(CLUSTER, 2 * CLUSTER).unwrap();
        d.write_zeroes(5 * CLUSTER + 100, 3000).unwrap();
        d.write_at(9 * CLUSTER, &[0xee; 70_000]).unwrap();
        d.discard(9 * CLUSTER + 10, 69_000).unwrap();
        for (start, len) in [
            (CLUSTER, 2 * CLUSTER),
            (5 * CLUSTER + 100, 3000),
            (9 * CLUSTER + 10, 69_000),
        ] {
            expected[start as usize..(start + len) as usize].fill(0);
        }
        expected[9 * CLUSTER as usize..9 * CLUSTER as usize + 10].fill(0xee);
        expected[9 * CLUSTER as usize + 69_010..9 * CLUSTER as usize + 70_000].fill(0xee);
        assert!(read_all(d.as_mut()) == expected);
    }
    assert_check_clean(&over);
    assert!(qemu_contents(dir.path(), &over) == expected);
    assert!(std::fs::read(&base).unwrap() == base_data);
}

#[test]
fn raw_images_are_read_and_written_in_place() {
    let _serial = serial();
    let dir = TempDir::new().unwrap();
    let img = dir.path().join("disk.img");
    let mut model = model_of(raw_file(&img, 11, 4 * MIB));
    {
        let mut d = open(&img, false).unwrap();
        assert_eq!(d.capacity(), 4 * MIB);
        exercise(d.as_mut(), &mut model);
        d.flush().unwrap();
    }
    assert!(std::fs::read(&img).unwrap() == model.contents());
    let i = info(&img).unwrap();
    assert_eq!(
        (i.format, i.virtual_size, i.cluster_size),
        (Format::Raw, 4 * MIB, None)
    );
}

#[test]
fn read_only_open_rejects_writes() {
    let _serial = serial();
    let dir = TempDir::new().unwrap();
    let img = dir.path().join("disk.qcow2");
    create(&img, MIB, None).unwrap();
    let before = std::fs::read(&img).unwrap();
    let mut d = open(&img, true).unwrap();
    assert!(d.read_only());
    assert!(matches!(d.write_at(0, b"x"), Err(DiskError::ReadOnly)));
    assert!(matches!(d.discard(0, 512), Err(DiskError::ReadOnly)));
    assert!(matches!(d.write_zeroes(0, 512), Err(DiskError::ReadOnly)));
    d.flush().unwrap();
    let mut buf = [1u8; 512];
    d.read_at(MIB - 512, &mut buf).unwrap();
    assert_eq!(buf, [0; 512]);
    assert!(matches!(
        d.read_at(MIB - 511, &mut buf),
        Err(DiskError::OutOfRange { .. })
    ));
    drop(d);
    assert!(std::fs::read(&img).unwrap() == before);
}

#[test]
fn a_writer_excludes_other_opens() {
    let _serial = serial();
    let dir = TempDir::new().unwrap();
    let base = dir.path().join("base.qcow2");
    create(&base, MIB, None).unwrap();
    let over = dir.path().join("over.qcow2");
    create(&over, MIB, Some(&base)).unwrap();

    let writer = open(&over, false).unwrap();
    let err = open(&over, true).err().expect("second open must fail");
    assert!(
        matches!(err, DiskError::Locked { ref path } if path == &over),
        "{err}"
    );
    // The base is only read, so others may read it too, but not write it.
    let reader = open(&base, true).unwrap();
    assert!(matches!(open(&base, false), Err(DiskError::Locked { .. })));
    drop((writer, reader));
    // Other tests in this process spawn qemu-img; a child holds a copy of
    // our descriptors (and so the lock) between fork and exec. Wait that out.
    let mut attempt = 0;
    while let Err(DiskError::Locked { .. }) = open(&base, false) {
        attempt += 1;
        assert!(
            attempt < 100,
            "base stays locked after every handle was dropped"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

#[test]
fn info_describes_the_chain() {
    let _serial = serial();
    let dir = TempDir::new().unwrap();
    let raw = dir.path().join("a.raw");
    raw_file(&raw, 2, MIB);
    let mid = dir.path().join("b.qcow2");
    create(&mid, 2 * MIB, Some(&raw)).unwrap();
    let top = dir.path().join("c.qcow2");
    create(&top, 3 * MIB, Some(&mid)).unwrap();
    {
        let mut d = open(&top, false).unwrap();
        d.write_at(0, &pattern(1, 200_000)).unwrap();
    }
    let i = info(&top).unwrap();
    assert_eq!(i.path, top);
    assert_eq!(i.format, Format::Qcow2);
    assert_eq!(i.virtual_size, 3 * MIB);
    assert_eq!(i.cluster_size, Some(CLUSTER));
    let chain: Vec<_> = i
        .backing_chain
        .iter()
        .map(|l| (l.path.canonicalize().unwrap(), l.format, l.virtual_size))
        .collect();
    assert_eq!(
        chain,
        vec![
            (mid.canonicalize().unwrap(), Format::Qcow2, 2 * MIB),
            (raw.canonicalize().unwrap(), Format::Raw, MIB),
        ]
    );
    let json = qemu_img(&["info", "--output=json", s(&top)]);
    assert_eq!(
        json_field(&json, "actual-size"),
        i.allocated_bytes.to_string()
    );
    assert!(i.allocated_bytes >= 200_000);
}

#[test]
fn create_refuses_to_overwrite() {
    let _serial = serial();
    let dir = TempDir::new().unwrap();
    let img = dir.path().join("taken.img");
    std::fs::write(&img, b"precious").unwrap();
    let err = create(&img, MIB, None).unwrap_err();
    assert!(matches!(err, DiskError::Exists { .. }), "{err}");
    assert!(err.to_string().contains("taken.img"), "{err}");
    assert_eq!(std::fs::read(&img).unwrap(), b"precious");
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        1,
        "no temp file left"
    );

    let err = create(&dir.path().join("x.qcow2"), 1000, None).unwrap_err();
    assert!(
        matches!(err, DiskError::InvalidSize { size: 1000, .. }),
        "{err}"
    );
    let missing = dir.path().join("nope.qcow2");
    let err = create(&dir.path().join("y.qcow2"), MIB, Some(&missing)).unwrap_err();
    assert!(err.to_string().contains("nope.qcow2"), "{err}");
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        1,
        "nothing created"
    );
}

/// The error for `path`, checked to be one line naming `name`.
fn open_err(path: &Path, name: &str) -> DiskError {
    let err = open(path, false).err().expect("open must fail");
    let msg = err.to_string();
    assert!(msg.contains(name), "{msg:?} does not name {name}");
    assert!(!msg.contains('\n'), "{msg:?} is not one line");
    err
}

#[test]
fn bad_inputs_give_errors_naming_the_file() {
    let _serial = serial();
    let dir = TempDir::new().unwrap();
    let d = dir.path();

    let err = open_err(&d.join("missing.qcow2"), "missing.qcow2");
    assert!(
        matches!(err, DiskError::Io { ref source, .. } if source.kind() == std::io::ErrorKind::NotFound),
        "{err}"
    );

    let garbage = d.join("garbage.bin");
    std::fs::write(&garbage, b"this is not a disk image\n".repeat(40)).unwrap();
    assert!(matches!(
        open_err(&garbage, "garbage.bin"),
        DiskError::NotAnImage { .. }
    ));
    let empty = d.join("empty.img");
    std::fs::write(&empty, b"").unwrap();
    assert!(matches!(
        open_err(&empty, "empty.img"),
        DiskError::NotAnImage { .. }
    ));

    let good = d.join("good.qcow2");
    create(&good, MIB, None).unwrap();
    let bytes = std::fs::read(&good).unwrap();
    let truncated = d.join("truncated.qcow2");
    std::fs::write(&truncated, &bytes[..50]).unwrap();
    assert!(matches!(
        open_err(&truncated, "truncated.qcow2"),
        DiskError::Corrupt { .. }
    ));

    let patched = |name: &str, at: usize, value: &[u8]| {
        let p = d.join(name);
        let mut b = bytes.clone();
        b[at..at + value.len()].copy_from_slice(value);
        std::fs::write(&p, b).unwrap();
        p
    };
    // Metadata that imago itself rejects.
    let l1 = patched("l1.qcow2", 40, &0x10001u64.to_be_bytes());
    assert!(matches!(
        open_err(&l1, "l1.qcow2"),
        DiskError::Corrupt { .. }
    ));
    let clusters = patched("clusters.qcow2", 20, &40u32.to_be_bytes());
    assert!(matches!(
        open_err(&clusters, "clusters.qcow2"),
        DiskError::Corrupt { .. }
    ));

    let v4 = patched("v4.qcow2", 4, &4u32.to_be_bytes());
    let err = open_err(&v4, "v4.qcow2");
    assert!(matches!(err, DiskError::Unsupported { .. }) && err.to_string().contains("version 4"));
    let enc = patched("enc.qcow2", 32, &1u32.to_be_bytes());
    assert!(matches!(
        open_err(&enc, "enc.qcow2"),
        DiskError::Unsupported { .. }
    ));
    let dirty = patched("dirty.qcow2", 72 + 7, &[1]);
    assert!(matches!(
        open_err(&dirty, "dirty.qcow2"),
        DiskError::Unsupported { .. }
    ));
    let corrupt = patched("corrupt.qcow2", 72 + 7, &[2]);
    assert!(matches!(
        open_err(&corrupt, "corrupt.qcow2"),
        DiskError::Corrupt { .. }
    ));
    let future = patched("future.qcow2", 72, &[0x80]);
    assert!(matches!(
        open_err(&future, "future.qcow2"),
        DiskError::Unsupported { .. }
    ));

    let vmdk = d.join("disk.vmdk");
    qemu_img(&["create", "-f", "vmdk", s(&vmdk), "1M"]);
    assert!(matches!(
        open_err(&vmdk, "disk.vmdk"),
        DiskError::Unsupported { .. }
    ));
    let zstd = d.join("zstd.qcow2");
    qemu_img(&[
        "create",
        "-f",
        "qcow2",
        "-o",
        "compression_type=zstd",
        s(&zstd),
        "1M",
    ]);
    assert!(matches!(
        open_err(&zstd, "zstd.qcow2"),
        DiskError::Unsupported { .. }
    ));
}

#[test]
fn missing_backing_file_is_named() {
    let _serial = serial();
    let dir = TempDir::new().unwrap();
    let base = dir.path().join("base.qcow2");
    create(&base, MIB, None).unwrap();
    let over = dir.path().join("over.qcow2");
    qemu_img(&[
        "create",
        "-f",
        "qcow2",
        "-b",
        "base.qcow2",
        "-F",
        "qcow2",
        s(&over),
    ]);
    std::fs::remove_file(&base).unwrap();
    let err = open_err(&over, "over.qcow2");
    assert!(err.to_string().contains("base.qcow2"), "{err}");
    assert!(matches!(err, DiskError::MissingBacking { .. }), "{err}");
    assert!(matches!(info(&over), Err(DiskError::MissingBacking { .. })));
}

#[test]
fn backing_loops_are_refused() {
    let _serial = serial();
    let dir = TempDir::new().unwrap();
    let a = dir.path().join("a.qcow2");
    let b = dir.path().join("b.qcow2");
    create(&a, MIB, None).unwrap();
    create(&b, MIB, Some(&a)).unwrap();
    // Point a at b behind our back: a -> b -> a.
    qemu_img(&[
        "rebase",
        "-u",
        "-f",
        "qcow2",
        "-b",
        "b.qcow2",
        "-F",
        "qcow2",
        s(&a),
    ]);
    for read_only in [true, false] {
        let err = open(&b, read_only).err().expect("loop must fail");
        assert!(matches!(err, DiskError::BackingLoop { .. }), "{err}");
        assert!(err.to_string().contains("b.qcow2"), "{err}");
    }
}

#[test]
fn replicas_given_the_same_requests_stay_byte_identical() {
    let _serial = serial();
    let dir = TempDir::new().unwrap();
    let base = dir.path().join("base.raw");
    raw_file(&base, 4, 4 * MIB);
    let files: Vec<PathBuf> = ["a.qcow2", "b.qcow2"]
        .iter()
        .map(|n| dir.path().join(n))
        .collect();
    for f in &files {
        create(f, 4 * MIB, Some(&base)).unwrap();
        let mut d = open(f, false).unwrap();
        let mut model = model_of(std::fs::read(&base).unwrap());
        exercise(d.as_mut(), &mut model);
        d.flush().unwrap();
    }
    // Same requests, same image files past the header: a replica's disk is
    // a pure function of the requests it executed (DESIGN §3.5). The header
    // cluster is left out: imago orders its feature-name table by hash-map
    // iteration, which differs between processes and runs.
    let a = std::fs::read(&files[0]).unwrap();
    let b = std::fs::read(&files[1]).unwrap();
    assert_eq!(a.len(), b.len());
    assert!(a[CLUSTER as usize..] == b[CLUSTER as usize..]);
    assert!(qemu_contents(dir.path(), &files[0]) == qemu_contents(dir.path(), &files[1]));
}

/// The review's attack at the disk layer: a guest writes a qcow2 header
/// naming a host file into its raw disk. Opened as the user pinned it
/// (raw), the disk shows the guest's bytes and nothing of the host file;
/// pinned qcow2 chains follow only contained, format-recorded backing
/// names unless the user allows any.
#[test]
fn pinned_formats_and_backing_names() {
    let _serial = serial();
    let dir = TempDir::new().unwrap();
    let d = dir.path();
    let secret = d.join("host-secret");
    std::fs::write(&secret, b"host secret bytes".repeat(4096)).unwrap();
    // What a guest can write into its raw disk: a qemu-made qcow2 header
    // whose backing file is the host's file.
    let forged = d.join("forged.qcow2");
    qemu_img(&[
        "create",
        "-f",
        "qcow2",
        "-b",
        s(&secret),
        "-F",
        "raw",
        s(&forged),
        "1M",
    ]);
    let header = std::fs::read(&forged).unwrap();
    let raw = d.join("guest.raw");
    let mut contents = header.clone();
    contents.resize(2 * MIB as usize, 0);
    std::fs::write(&raw, &contents).unwrap();

    let pinned = |format, backing| disk::OpenOptions {
        format,
        read_only: false,
        backing,
    };
    let mut disk_raw = disk::open(&raw, &pinned(Format::Raw, disk::BackingPolicy::Any)).unwrap();
    assert_eq!(disk_raw.capacity(), 2 * MIB);
    let seen = read_all(disk_raw.as_mut());
    assert!(seen == contents, "a raw disk shows its own bytes");
    assert!(!seen.windows(17).any(|w| w == b"host secret bytes"));
    drop(disk_raw);

    // Pinned qcow2 on the forged file: the absolute backing name is refused
    // (it would need backing=any), naming the file and the backing name.
    let err = disk::open(&raw, &pinned(Format::Qcow2, disk::BackingPolicy::Contained))
        .err()
        .expect("absolute backing must be refused");
    let msg = err.to_string();
    assert!(matches!(err, DiskError::Backing { .. }), "{msg}");
    assert!(
        msg.contains("guest.raw") && msg.contains("absolute") && !msg.contains('\n'),
        "{msg}"
    );

    // A `..` name is refused likewise; a contained one opens.
    std::fs::create_dir(d.join("vm")).unwrap();
    let base = d.join("base.qcow2");
    create(&base, MIB, None).unwrap();
    let up = d.join("vm/up.qcow2");
    qemu_img(&[
        "create",
        "-f",
        "qcow2",
        "-b",
        "../base.qcow2",
        "-F",
        "qcow2",
        s(&up),
    ]);
    let err = disk::open(&up, &pinned(Format::Qcow2, disk::BackingPolicy::Contained))
        .err()
        .expect("`..` must be refused");
    assert!(
        err.to_string().contains("leaves the image's directory"),
        "{err}"
    );
    assert!(disk::open(&up, &pinned(Format::Qcow2, disk::BackingPolicy::Any)).is_ok());
    let near = d.join("near.qcow2");
    qemu_img(&[
        "create",
        "-f",
        "qcow2",
        "-b",
        "base.qcow2",
        "-F",
        "qcow2",
        s(&near),
    ]);
    assert!(disk::open(
        &near,
        &pinned(Format::Qcow2, disk::BackingPolicy::Contained)
    )
    .is_ok());

    // An overlay that records no backing format is refused when pinned
    // (its backing file's header would decide), and still described.
    let unrecorded = d.join("unrecorded.qcow2");
    create(&unrecorded, MIB, None).unwrap();
    // (qemu-img insists on a format nowadays: strip the extension by hand.)
    qemu_img(&[
        "rebase",
        "-u",
        "-f",
        "qcow2",
        "-b",
        "base.qcow2",
        "-F",
        "qcow2",
        s(&unrecorded),
    ]);
    strip_backing_format(&unrecorded);
    let err = disk::open(
        &unrecorded,
        &pinned(Format::Qcow2, disk::BackingPolicy::Any),
    )
    .err()
    .expect("no backing format must be refused");
    assert!(
        err.to_string().contains("records no backing format"),
        "{err}"
    );
    assert_eq!(info(&unrecorded).unwrap().backing_chain.len(), 1);

    // A qcow2 pin on a file without a qcow2 header is refused.
    let plain = d.join("plain.raw");
    raw_file(&plain, 1, MIB);
    let err = disk::open(
        &plain,
        &pinned(Format::Qcow2, disk::BackingPolicy::Contained),
    )
    .err()
    .expect("format=qcow2 on a raw file must be refused");
    assert!(err.to_string().contains("format=qcow2"), "{err}");
    // Probing (for `disk info`) still says what the header suggests.
    assert_eq!(disk::probe(&raw).unwrap(), Format::Qcow2);
    assert_eq!(disk::probe(&plain).unwrap(), Format::Raw);
}

/// Overwrite a qcow2 image's backing-format header extension with an
/// unknown one (qemu-img no longer makes overlays without it).
fn strip_backing_format(path: &Path) {
    let mut bytes = std::fs::read(path).unwrap();
    let at = bytes
        .windows(4)
        .position(|w| w == [0xe2, 0x79, 0x2a, 0xca])
        .expect("a backing format extension");
    bytes[at..at + 4].copy_from_slice(&[0x12, 0x34, 0x56, 0x78]);
    std::fs::write(path, bytes).unwrap();
}
