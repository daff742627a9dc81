//! The guest writes qcow2 images made by `qemu-img`, and QEMU's tools read
//! back what it wrote.
//!
//! 1. A fresh `qemu-img create` qcow2: the guest formats it (busybox
//!    `mke2fs`), writes files whose content the host computes on its own
//!    (a seeded awk sequence, a multi-MiB `yes | dd` pattern, a file with a
//!    hole), syncs and powers off. `qemu-img check` must be clean, and
//!    after `qemu-img convert -O raw` debugfs must return exactly those
//!    bytes.
//! 2. A linked overlay on a base image populated on the host: the guest
//!    reads a base file, writes a new one, appends to and deletes base
//!    files. The base image's bytes must not change, both images must check
//!    clean, the overlay must show the new state and the base the old.
//!
//! Needs qemu-utils and e2fsprogs (`.ci/run` installs them). Run with
//! `--release`.

mod common;

use common::{Guest, PROMPT};
use sha2::{Digest, Sha256};
use std::path::Path;
use std::process::{Command, Output};

/// Run a host tool; a missing tool fails the test and names its package.
fn host(program: &str, args: &[&str]) -> Output {
    let package = match program {
        "qemu-img" => "qemu-utils",
        _ => "e2fsprogs",
    };
    Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program} ({e}): install {package} (.ci/run does)"))
}

/// Run a host tool that must succeed.
fn host_ok(program: &str, args: &[&str]) -> Output {
    let out = host(program, args);
    assert!(
        out.status.success(),
        "{program} {args:?} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn path_str(p: &Path) -> &str {
    p.to_str().expect("temporary paths are UTF-8")
}

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// `qemu-img check` reports no errors, leaks or corruptions.
fn assert_qcow2_clean(image: &Path) {
    let out = host_ok("qemu-img", &["check", path_str(image)]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("No errors were found"), "{text}");
}

/// The image flattened to raw, checked with `e2fsck -fn`.
fn flatten(image: &Path, raw: &Path) {
    host_ok(
        "qemu-img",
        &["convert", "-O", "raw", path_str(image), path_str(raw)],
    );
    host_ok("e2fsck", &["-fn", path_str(raw)]);
}

/// A file's bytes as debugfs reads them from a raw ext2/3/4 image.
fn debugfs_cat(raw: &Path, file: &str) -> Vec<u8> {
    host_ok("debugfs", &["-R", &format!("cat {file}"), path_str(raw)]).stdout
}

/// Whether debugfs finds `file` in the raw image.
fn debugfs_exists(raw: &Path, file: &str) -> bool {
    let out = host_ok("debugfs", &["-R", &format!("stat {file}"), path_str(raw)]);
    !String::from_utf8_lossy(&out.stderr).contains("File not found")
}

fn assert_file(raw: &Path, file: &str, expected: &[u8]) {
    let got = debugfs_cat(raw, file);
    assert_eq!(
        sha256_hex(&got),
        sha256_hex(expected),
        "{file} in {}: {} bytes read, {} expected",
        raw.display(),
        got.len(),
        expected.len()
    );
}

/// A guest on `disk`, at its shell prompt.
fn boot_with(disk: &Path) -> Guest {
    let spec = format!("path={},format=qcow2", path_str(disk));
    let mut g = Guest::boot(&["--disk", &spec]);
    g.expect("lockstep guest ready");
    g.expect(PROMPT);
    g
}

fn power_off(mut g: Guest) {
    g.send("poweroff -f");
    let status = g.child.wait().expect("wait for lockstep");
    assert!(
        status.success(),
        "lockstep run ended with {status}; console:\n{}",
        g.console
    );
}

/// The guest's SHA-256 of one of its files.
fn guest_sha256(g: &mut Guest, file: &str) -> String {
    g.run(&format!("sha256sum {file} | cut -d' ' -f1"))
}

const LCG_SEED: u64 = 12345;
const LCG_LINES: u64 = 8_000;
/// Park–Miller: every product stays below 2^53, so awk's doubles are exact.
const LCG_AWK: &str = "BEGIN{x=s;for(i=0;i<n;i++){x=x*16807%2147483647;print i,x}}";

/// What the guest's awk prints for `LCG_AWK`.
fn lcg_text(seed: u64, lines: u64) -> Vec<u8> {
    let mut x = seed;
    let mut out = String::new();
    for i in 0..lines {
        x = x * 16807 % 2_147_483_647;
        out.push_str(&format!("{i} {x}\n"));
    }
    out.into_bytes()
}

const PATTERN: &str = "lockstep-pattern";
const BIG_LEN: usize = 4 << 20;

/// `yes PATTERN | dd bs=64k count=64 iflag=fullblock`.
fn pattern_bytes() -> Vec<u8> {
    let line = format!("{PATTERN}\n");
    line.bytes().cycle().take(BIG_LEN).collect()
}

/// `dd if=lcg of=sparse bs=4k seek=1000 count=1`: a 4000 KiB hole, then
/// the first 4 KiB of `lcg`.
fn sparse_bytes(lcg: &[u8]) -> Vec<u8> {
    let mut v = vec![0u8; 1000 * 4096];
    v.extend_from_slice(&lcg[..4096]);
    v
}

#[test]
fn guest_formats_and_fills_a_fresh_qcow2() {
    let dir = tempfile::TempDir::new().unwrap();
    let image = dir.path().join("d.qcow2");
    host_ok(
        "qemu-img",
        &["create", "-q", "-f", "qcow2", path_str(&image), "64M"],
    );
    let lcg = lcg_text(LCG_SEED, LCG_LINES);
    let big = pattern_bytes();
    let sparse = sparse_bytes(&lcg);
    let hello = b"hello from the guest\n".to_vec();

    let mut g = boot_with(&image);
    // setup.sh's mount of the blank disk failed; nothing is on /mnt.
    assert_eq!(g.run("grep -c ' /mnt ' /proc/mounts"), "0");
    let mkfs = g.run("mke2fs -F /dev/vda >/dev/null && echo formatted");
    assert!(mkfs.ends_with("formatted"), "mke2fs: {mkfs}");
    assert_eq!(g.run("mount /dev/vda /mnt && echo mounted"), "mounted");
    g.run("echo hello from the guest > /mnt/hello");
    g.run(&format!("P='{LCG_AWK}'"));
    g.run(&format!(
        "awk -v s={LCG_SEED} -v n={LCG_LINES} \"$P\" > /mnt/lcg"
    ));
    g.run(&format!(
        "yes {PATTERN} | dd of=/mnt/big bs=64k count=64 iflag=fullblock"
    ));
    g.run("dd if=/mnt/lcg of=/mnt/sparse bs=4k seek=1000 count=1");
    assert_eq!(g.run("sync && umount /mnt && echo unmounted"), "unmounted");
    // Read back through the disk, not the page cache.
    g.run("echo 3 > /proc/sys/vm/drop_caches");
    assert_eq!(g.run("mount -r /dev/vda /mnt && echo mounted"), "mounted");
    for (file, bytes) in [
        ("/mnt/hello", &hello),
        ("/mnt/lcg", &lcg),
        ("/mnt/big", &big),
        ("/mnt/sparse", &sparse),
    ] {
        assert_eq!(guest_sha256(&mut g, file), sha256_hex(bytes), "{file}");
    }
    assert_eq!(g.run("umount /mnt && echo unmounted"), "unmounted");
    power_off(g);

    assert_qcow2_clean(&image);
    let raw = dir.path().join("d.raw");
    flatten(&image, &raw);
    assert_file(&raw, "/hello", &hello);
    assert_file(&raw, "/lcg", &lcg);
    assert_file(&raw, "/big", &big);
    assert_file(&raw, "/sparse", &sparse);
}

/// Files of the base image, made on the host.
const KEPT: &[u8] = b"base file, kept\n";
const DOOMED: &[u8] = b"base file, deleted in the overlay\n";

/// A qcow2 base with an ext4 file system holding `kept`, `doomed` and
/// `lcg`, built on the host (`mke2fs -d`, then `qemu-img convert`).
fn base_image(dir: &Path, lcg: &[u8]) -> std::path::PathBuf {
    let files = dir.join("base-files");
    std::fs::create_dir(&files).unwrap();
    std::fs::write(files.join("kept"), KEPT).unwrap();
    std::fs::write(files.join("doomed"), DOOMED).unwrap();
    std::fs::write(files.join("lcg"), lcg).unwrap();
    let raw = dir.join("base.raw");
    std::fs::File::create(&raw)
        .and_then(|f| f.set_len(32 << 20))
        .unwrap();
    host_ok(
        "mke2fs",
        &[
            "-q",
            "-F",
            "-t",
            "ext4",
            "-d",
            path_str(&files),
            path_str(&raw),
        ],
    );
    let base = dir.join("base.qcow2");
    host_ok(
        "qemu-img",
        &["convert", "-O", "qcow2", path_str(&raw), path_str(&base)],
    );
    base
}

#[test]
fn guest_changes_land_in_a_linked_overlay_only() {
    let dir = tempfile::TempDir::new().unwrap();
    let lcg = lcg_text(7, 5_000);
    let base = base_image(dir.path(), &lcg);
    let base_hash = sha256_hex(&std::fs::read(&base).unwrap());
    let overlay = dir.path().join("ov.qcow2");
    host_ok(
        "qemu-img",
        &[
            "create",
            "-q",
            "-f",
            "qcow2",
            "-b",
            // Relative to the overlay's directory: lockstep follows no
            // absolute backing name unless `backing=any` allows it.
            base.file_name().and_then(|n| n.to_str()).unwrap(),
            "-F",
            "qcow2",
            path_str(&overlay),
        ],
    );

    let mut g = boot_with(&overlay);
    // setup.sh mounted the base's file system through the overlay.
    let mounts = g.run("grep ' /mnt ' /proc/mounts");
    assert!(mounts.starts_with("/dev/vda /mnt ext4 rw"), "{mounts}");
    assert_eq!(guest_sha256(&mut g, "/mnt/lcg"), sha256_hex(&lcg));
    assert_eq!(g.run("cat /mnt/kept"), "base file, kept");
    g.run("echo written in the overlay > /mnt/new");
    g.run("echo appended in the overlay >> /mnt/kept");
    g.run("rm /mnt/doomed");
    assert_eq!(g.run("sync && umount /mnt && echo unmounted"), "unmounted");
    power_off(g);

    assert_eq!(
        sha256_hex(&std::fs::read(&base).unwrap()),
        base_hash,
        "the guest changed the base image"
    );
    assert_qcow2_clean(&base);
    assert_qcow2_clean(&overlay);

    let merged = dir.path().join("ov.raw");
    flatten(&overlay, &merged);
    assert_file(&merged, "/new", b"written in the overlay\n");
    assert_file(
        &merged,
        "/kept",
        b"base file, kept\nappended in the overlay\n",
    );
    assert_file(&merged, "/lcg", &lcg);
    assert!(debugfs_exists(&merged, "/kept"));
    assert!(!debugfs_exists(&merged, "/doomed"), "/doomed survived");

    let old = dir.path().join("base-again.raw");
    flatten(&base, &old);
    assert_file(&old, "/kept", KEPT);
    assert!(debugfs_exists(&old, "/doomed"), "/doomed left the base");
    assert_file(&old, "/doomed", DOOMED);
    assert_file(&old, "/lcg", &lcg);
    assert!(!debugfs_exists(&old, "/new"), "/new leaked into the base");
}
