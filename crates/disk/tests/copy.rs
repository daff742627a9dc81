//! `allocated` and `copy` checked against QEMU's own tools: what a layer
//! holds matches `qemu-img map`, and copies (flattened, or merged onto a
//! base of the chain) compare identical with `qemu-img compare`, pass
//! `qemu-img check`, and hold what they should and no more.

use disk::{
    allocated, copy, BlockDevice, CopyStats, DiskError, Format, OpenOptions, Runs, COPY_CHUNK,
};

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

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use tempfile::TempDir;

const SIZE: u64 = 8 * MIB;

fn runs(ranges: &[(u64, u64)]) -> Runs {
    let mut r = Runs::default();
    for &(a, b) in ranges {
        r.insert(a, b);
    }
    r
}

fn union(sets: &[&Runs]) -> Runs {
    let mut u = Runs::default();
    for set in sets {
        for (a, b) in set.iter() {
            u.insert(a, b);
        }
    }
    u
}

/// `r` widened to whole 64 KiB clusters (the new image's), within `size`.
fn to_clusters(r: &Runs, size: u64) -> Runs {
    let mut out = Runs::default();
    for (a, b) in r.iter() {
        out.insert(
            a / CLUSTER * CLUSTER,
            b.div_ceil(CLUSTER).min(size / CLUSTER) * CLUSTER,
        );
    }
    out
}

/// The clusters of `data` that are not all zero.
fn nonzero_clusters(data: &[u8]) -> Runs {
    let mut r = Runs::default();
    for (i, c) in data.chunks(CLUSTER as usize).enumerate() {
        if c.iter().any(|&b| b != 0) {
            let a = i as u64 * CLUSTER;
            r.insert(a, a + c.len() as u64);
        }
    }
    r
}

/// What `qemu-img map` says the top file of `image`'s chain holds itself.
fn qemu_allocated(image: &Path) -> Runs {
    let json = qemu_img(&["map", "--output=json", s(image)]);
    let mut r = Runs::default();
    for line in json.lines().filter(|l| l.contains("\"start\"")) {
        let num = |key| json_field(line, key).parse::<u64>().unwrap();
        if num("depth") == 0 && json_field(line, "present") == "true" {
            r.insert(num("start"), num("start") + num("length"));
        }
    }
    r
}

/// `qemu-img compare` exits 0 only for identical guest-visible contents.
fn assert_identical(a: &Path, b: &Path) {
    let out = qemu_img(&["compare", s(a), s(b)]);
    assert!(out.contains("Images are identical"), "{out}");
}

fn names_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// Flush and close a writer, not while a process is being spawned (see
/// [`spawn_turn`]): the image is opened again right after.
fn close(mut writer: Box<dyn BlockDevice>) {
    writer.flush().unwrap();
    let _turn = spawn_turn();
    drop(writer);
}

fn qcow2() -> OpenOptions {
    OpenOptions::new(Format::Qcow2, true)
}

fn no_progress() -> impl FnMut(u64, u64) {
    |_, _| {}
}

/// child.qcow2 -> snap.qcow2 -> parent.qcow2, all 8 MiB, made by us.
struct Chain {
    parent: PathBuf,
    snap: PathBuf,
    child: PathBuf,
}

impl Chain {
    /// Each layer's own clusters, as written below.
    fn expected_parent() -> Runs {
        runs(&[(0, 6 * MIB)])
    }
    fn expected_snap() -> Runs {
        runs(&[
            (MIB, MIB + 4 * CLUSTER),
            (2 * MIB, 2 * MIB + 3 * CLUSTER),
            (7 * MIB, 7 * MIB + CLUSTER),
        ])
    }
    fn expected_child() -> Runs {
        runs(&[
            (MIB + CLUSTER, MIB + 7 * CLUSTER),
            (4 * MIB, 4 * MIB + CLUSTER),
            (5 * MIB, 5 * MIB + 2 * CLUSTER),
        ])
    }

    fn build(dir: &Path) -> Chain {
        let parent = dir.join("parent.qcow2");
        let snap = dir.join("snap.qcow2");
        let child = dir.join("child.qcow2");
        create(&parent, SIZE, None).unwrap();
        {
            let mut d = open(&parent, false).unwrap();
            d.write_at(0, &pattern(1, 6 * MIB as usize)).unwrap();
            close(d);
        }
        create(&snap, SIZE, Some(&parent)).unwrap();
        {
            let mut d = open(&snap, false).unwrap();
            d.write_at(MIB, &pattern(2, 200_000)).unwrap();
            // Zero clusters over the parent's data.
            d.write_zeroes(2 * MIB, 3 * CLUSTER).unwrap();
            // Data where the parent holds none.
            d.write_at(7 * MIB + 100, &pattern(3, 1000)).unwrap();
            close(d);
        }
        create(&child, SIZE, Some(&snap)).unwrap();
        {
            let mut d = open(&child, false).unwrap();
            // Overlapping the snapshot's data, unaligned.
            d.write_at(MIB + 100_000, &pattern(4, 300_000)).unwrap();
            d.write_at(4 * MIB + 5, &pattern(5, 50)).unwrap();
            // Zero clusters over the parent's data, two layers down.
            d.discard(5 * MIB, 2 * CLUSTER).unwrap();
            close(d);
        }
        Chain {
            parent,
            snap,
            child,
        }
    }
}

#[test]
fn allocated_is_what_each_layer_holds() {
    let _serial = serial();
    let dir = TempDir::new().unwrap();
    let c = Chain::build(dir.path());
    for (path, expected) in [
        (&c.parent, Chain::expected_parent()),
        (&c.snap, Chain::expected_snap()),
        (&c.child, Chain::expected_child()),
    ] {
        let got = allocated(path, Format::Qcow2).unwrap();
        assert_eq!(got, expected, "{}", path.display());
        assert_eq!(
            got,
            qemu_allocated(path),
            "{} per qemu-img map",
            path.display()
        );
    }

    // A raw file holds all of itself.
    let raw = dir.path().join("disk.raw");
    raw_file(&raw, 6, 3 * MIB);
    assert_eq!(allocated(&raw, Format::Raw).unwrap(), runs(&[(0, 3 * MIB)]));

    // An overlay QEMU wrote: data, a zero cluster and a compressed one.
    let over = dir.path().join("qemu.qcow2");
    qemu_img(&[
        "create",
        "-f",
        "qcow2",
        "-b",
        "parent.qcow2",
        "-F",
        "qcow2",
        s(&over),
    ]);
    run(
        "qemu-io",
        &[
            "-c",
            "write -P 0x11 0 100k",
            "-c",
            "write -z 1M 64k",
            "-c",
            "write -c -P 0x22 2M 64k",
            s(&over),
        ],
    );
    let expected = runs(&[
        (0, 2 * CLUSTER),
        (MIB, MIB + CLUSTER),
        (2 * MIB, 2 * MIB + CLUSTER),
    ]);
    assert_eq!(allocated(&over, Format::Qcow2).unwrap(), expected);
    assert_eq!(qemu_allocated(&over), expected);

    // The backing file is never opened: it need not exist.
    let orphan = dir.path().join("orphan.qcow2");
    qemu_img(&["create", "-f", "qcow2", s(&orphan), "1M"]);
    run("qemu-io", &["-c", "write -P 0x33 64k 64k", s(&orphan)]);
    let gone = ["-b", "gone.qcow2", "-F", "qcow2"];
    qemu_img(&[&["rebase", "-u"], &gone[..], &[s(&orphan)]].concat());
    assert_eq!(
        allocated(&orphan, Format::Qcow2).unwrap(),
        runs(&[(CLUSTER, 2 * CLUSTER)])
    );
}

#[test]
fn flattened_copy_is_identical_and_standalone() {
    let _serial = serial();
    let dir = TempDir::new().unwrap();
    let c = Chain::build(dir.path());
    let before: Vec<_> = [&c.parent, &c.snap, &c.child]
        .iter()
        .map(|p| std::fs::read(p).unwrap())
        .collect();
    let dst = dir.path().join("clone.qcow2");
    let mut calls = Vec::new();
    let stats = copy(&c.child, &qcow2(), &dst, None, &mut |done, total| {
        calls.push((done, total))
    })
    .unwrap();

    assert_identical(&c.child, &dst);
    assert_check_clean(&dst);
    let json = qemu_img(&["info", "--output=json", s(&dst)]);
    assert!(!json.contains("backing-filename"), "{json}");
    assert_eq!(json_field(&json, "virtual-size"), SIZE.to_string());

    // Only the clusters that read as nonzero were written.
    let nonzero = nonzero_clusters(&qemu_contents(dir.path(), &c.child));
    let held: u64 = nonzero.iter().map(|(a, b)| b - a).sum();
    assert_eq!(allocated(&dst, Format::Qcow2).unwrap(), nonzero);
    assert_eq!(
        stats,
        CopyStats {
            bytes_copied: held,
            virtual_size: SIZE
        }
    );
    let chunks: Vec<_> = (1..=SIZE / COPY_CHUNK)
        .map(|i| (i * COPY_CHUNK, SIZE))
        .collect();
    assert_eq!(calls, chunks);

    // The source is untouched, and nothing else is left behind.
    for (p, bytes) in [&c.parent, &c.snap, &c.child].iter().zip(&before) {
        assert!(std::fs::read(p).unwrap() == *bytes, "{}", p.display());
    }
    assert_eq!(
        names_in(dir.path()),
        ["child.qcow2", "clone.qcow2", "parent.qcow2", "snap.qcow2"]
    );
}

#[test]
fn merged_copy_holds_the_layers_above_its_base() {
    let _serial = serial();
    let dir = TempDir::new().unwrap();
    let c = Chain::build(dir.path());
    std::fs::create_dir(dir.path().join("vm")).unwrap();
    let dst = dir.path().join("vm/merged.qcow2");
    copy(
        &c.child,
        &qcow2(),
        &dst,
        Some((&c.parent, Format::Qcow2)),
        &mut no_progress(),
    )
    .unwrap();

    assert_check_clean(&dst);
    let json = qemu_img(&["info", "--output=json", s(&dst)]);
    assert_eq!(json_field(&json, "backing-filename"), "../parent.qcow2");
    assert_eq!(json_field(&json, "backing-filename-format"), "qcow2");
    assert_identical(&c.child, &dst);
    // The snapshot's and the child's clusters, no more.
    let above = union(&[&Chain::expected_child(), &Chain::expected_snap()]);
    assert_eq!(allocated(&dst, Format::Qcow2).unwrap(), above);
    assert_eq!(qemu_allocated(&dst), above);

    // Zero clusters above still hide the parent's data.
    let parent = qemu_contents(dir.path(), &c.parent);
    let merged = read_all(open(&dst, true).unwrap().as_mut());
    for (a, len) in [(2 * MIB, 3 * CLUSTER), (5 * MIB, 2 * CLUSTER)] {
        let r = a as usize..(a + len) as usize;
        assert!(parent[r.clone()].iter().any(|&b| b != 0));
        assert!(merged[r].iter().all(|&b| b == 0), "at {a}");
    }

    // Merging only the child onto the snapshot.
    let dst2 = dir.path().join("child-on-snap.qcow2");
    copy(
        &c.child,
        &qcow2(),
        &dst2,
        Some((&c.snap, Format::Qcow2)),
        &mut no_progress(),
    )
    .unwrap();
    assert_check_clean(&dst2);
    let json = qemu_img(&["info", "--output=json", s(&dst2)]);
    assert_eq!(json_field(&json, "backing-filename"), "snap.qcow2");
    assert_identical(&c.child, &dst2);
    assert_eq!(
        allocated(&dst2, Format::Qcow2).unwrap(),
        Chain::expected_child()
    );

    // The top itself as the base: an empty overlay on it.
    let dst3 = dir.path().join("on-child.qcow2");
    let stats = copy(
        &c.child,
        &qcow2(),
        &dst3,
        Some((&c.child, Format::Qcow2)),
        &mut no_progress(),
    )
    .unwrap();
    assert_eq!(stats.bytes_copied, 0);
    assert_identical(&c.child, &dst3);
    assert!(allocated(&dst3, Format::Qcow2).unwrap().is_empty());
}

#[test]
fn merge_over_a_shorter_middle_layer_keeps_its_zeroes() {
    let _serial = serial();
    // child (8 MiB) -> snap (4 MiB) -> parent (8 MiB, all data): past the
    // snapshot's end the child reads zeroes, not the parent's data.
    let dir = TempDir::new().unwrap();
    let parent = dir.path().join("parent.qcow2");
    let snap = dir.path().join("snap.qcow2");
    let child = dir.path().join("child.qcow2");
    create(&parent, SIZE, None).unwrap();
    let mut d = open(&parent, false).unwrap();
    d.write_at(0, &pattern(7, SIZE as usize)).unwrap();
    close(d);
    create(&snap, 4 * MIB, Some(&parent)).unwrap();
    create(&child, SIZE, Some(&snap)).unwrap();
    let mut d = open(&child, false).unwrap();
    d.write_at(6 * MIB, &pattern(8, CLUSTER as usize)).unwrap();
    close(d);
    let contents = qemu_contents(dir.path(), &child);
    assert!(contents[5 * MIB as usize..6 * MIB as usize]
        .iter()
        .all(|&b| b == 0));

    let merged = dir.path().join("merged.qcow2");
    copy(
        &child,
        &qcow2(),
        &merged,
        Some((&parent, Format::Qcow2)),
        &mut no_progress(),
    )
    .unwrap();
    assert_check_clean(&merged);
    assert_identical(&child, &merged);
    assert_eq!(
        allocated(&merged, Format::Qcow2).unwrap(),
        runs(&[(4 * MIB, SIZE)])
    );

    let flat = dir.path().join("flat.qcow2");
    copy(&child, &qcow2(), &flat, None, &mut no_progress()).unwrap();
    assert_identical(&child, &flat);
    assert_eq!(
        allocated(&flat, Format::Qcow2).unwrap(),
        runs(&[(0, 4 * MIB), (6 * MIB, 6 * MIB + CLUSTER)])
    );
}

#[test]
fn a_base_outside_the_chain_is_refused() {
    let _serial = serial();
    let dir = TempDir::new().unwrap();
    let c = Chain::build(dir.path());
    let other = dir.path().join("other.qcow2");
    create(&other, SIZE, None).unwrap();
    let dst = dir.path().join("merged.qcow2");
    let listing = names_in(dir.path());

    let err = copy(
        &c.child,
        &qcow2(),
        &dst,
        Some((&other, Format::Qcow2)),
        &mut no_progress(),
    )
    .unwrap_err();
    assert!(
        matches!(&err, DiskError::Backing { path, .. } if *path == c.child),
        "{err}"
    );
    assert!(
        err.to_string()
            .contains("not in this image's backing chain"),
        "{err}"
    );

    // In the chain, but not in the format given.
    let err = copy(
        &c.child,
        &qcow2(),
        &dst,
        Some((&c.parent, Format::Raw)),
        &mut no_progress(),
    )
    .unwrap_err();
    assert!(matches!(err, DiskError::Backing { .. }), "{err}");
    assert!(err.to_string().contains("is qcow2 in this chain"), "{err}");

    assert_eq!(names_in(dir.path()), listing);
}

#[test]
fn copy_refuses_an_existing_destination() {
    let _serial = serial();
    let dir = TempDir::new().unwrap();
    let c = Chain::build(dir.path());
    let dst = dir.path().join("taken.qcow2");
    std::fs::write(&dst, b"keep me").unwrap();
    let listing = names_in(dir.path());
    for base in [None, Some((c.parent.as_path(), Format::Qcow2))] {
        let err = copy(&c.child, &qcow2(), &dst, base, &mut no_progress()).unwrap_err();
        assert!(
            matches!(&err, DiskError::Exists { path } if *path == dst),
            "{err}"
        );
    }
    assert_eq!(std::fs::read(&dst).unwrap(), b"keep me");
    assert_eq!(names_in(dir.path()), listing);
}

#[test]
fn a_copy_that_fails_midway_leaves_no_file() {
    let _serial = serial();
    let dir = TempDir::new().unwrap();
    let c = Chain::build(dir.path());
    let dst = dir.path().join("clone.qcow2");
    let listing = names_in(dir.path());

    // The callback failing after the first chunk stands for a crash before
    // the image is complete: the temporary file goes, nothing is linked.
    let r = catch_unwind(AssertUnwindSafe(|| {
        copy(&c.child, &qcow2(), &dst, None, &mut |done, _| {
            assert!(done < 2 * COPY_CHUNK, "interrupted");
        })
    }));
    assert!(r.is_err());
    assert_eq!(names_in(dir.path()), listing);

    // A source a VM is writing is refused (its writer holds the lock).
    let writer = open(&c.child, false).unwrap();
    let err = copy(&c.child, &qcow2(), &dst, None, &mut no_progress()).unwrap_err();
    assert!(matches!(err, DiskError::Locked { .. }), "{err}");
    close(writer);
    assert_eq!(names_in(dir.path()), listing);
}

#[test]
fn qemu_made_chains_and_raw_files_copy_too() {
    let _serial = serial();
    let dir = TempDir::new().unwrap();
    // A raw disk with a hole of zeroes, compressed into a qcow2 base by
    // QEMU, under an overlay with 4 KiB clusters that QEMU wrote.
    let raw = dir.path().join("base.raw");
    let mut data = pattern(9, 4 * MIB as usize);
    data[MIB as usize..2 * MIB as usize].fill(0);
    std::fs::write(&raw, &data).unwrap();
    let base = dir.path().join("base.qcow2");
    qemu_img(&[
        "convert",
        "-c",
        "-f",
        "raw",
        "-O",
        "qcow2",
        s(&raw),
        s(&base),
    ]);
    let over = dir.path().join("over.qcow2");
    qemu_img(&[
        "create",
        "-f",
        "qcow2",
        "-o",
        "cluster_size=4096",
        "-b",
        "base.qcow2",
        "-F",
        "qcow2",
        s(&over),
    ]);
    run(
        "qemu-io",
        &[
            "-c",
            "write -P 0x44 100000 5000",
            "-c",
            "write -z 2M 256k",
            "-c",
            "write -P 0x55 1M 4k",
            s(&over),
        ],
    );

    let merged = dir.path().join("merged.qcow2");
    copy(
        &over,
        &qcow2(),
        &merged,
        Some((&base, Format::Qcow2)),
        &mut no_progress(),
    )
    .unwrap();
    assert_check_clean(&merged);
    assert_identical(&over, &merged);
    let own = allocated(&over, Format::Qcow2).unwrap();
    assert_eq!(
        allocated(&merged, Format::Qcow2).unwrap(),
        to_clusters(&own, 4 * MIB)
    );

    let flat = dir.path().join("flat.qcow2");
    copy(&over, &qcow2(), &flat, None, &mut no_progress()).unwrap();
    assert_check_clean(&flat);
    assert_identical(&over, &flat);
    assert_eq!(
        allocated(&flat, Format::Qcow2).unwrap(),
        nonzero_clusters(&qemu_contents(dir.path(), &over))
    );

    // A raw source: everything is data, but zeroes are not copied.
    let from_raw = dir.path().join("from-raw.qcow2");
    let raw_options = OpenOptions::new(Format::Raw, true);
    let stats = copy(&raw, &raw_options, &from_raw, None, &mut no_progress()).unwrap();
    assert_identical(&raw, &from_raw);
    assert_eq!(stats.bytes_copied, 3 * MIB);
    assert_eq!(
        allocated(&from_raw, Format::Qcow2).unwrap(),
        runs(&[(0, MIB), (2 * MIB, 4 * MIB)])
    );
}

#[test]
fn a_mostly_empty_large_disk_copies_only_its_data() {
    let _serial = serial();
    let dir = TempDir::new().unwrap();
    let size = 2048 * MIB;
    let img = dir.path().join("big.qcow2");
    create(&img, size, None).unwrap();
    {
        let mut d = open(&img, false).unwrap();
        for at in [0, 1000 * MIB + 7, size - CLUSTER] {
            d.write_at(at, &pattern(at, 1000)).unwrap();
        }
        close(d);
    }
    let dst = dir.path().join("clone.qcow2");
    let started = std::time::Instant::now();
    let mut calls = 0;
    let stats = copy(&img, &qcow2(), &dst, None, &mut |_, _| calls += 1).unwrap();
    eprintln!(
        "copied 2 GiB (3 clusters of data) in {:?}",
        started.elapsed()
    );
    assert_eq!(stats.bytes_copied, 3 * CLUSTER);
    assert_eq!(calls, size / COPY_CHUNK);
    assert!(std::fs::metadata(&dst).unwrap().len() < 2 * MIB);
    assert_check_clean(&dst);
    assert_identical(&img, &dst);
}
