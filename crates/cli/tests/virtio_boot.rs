//! Boots the pulled Debian image under `lockstep run` with two virtio disks
//! (an ext4 image made on the host, and a read-only raw disk) and the
//! virtio-rng, and checks from the guest console that the initramfs
//! mounted /dev/vda on /mnt, that a file written and synced by the guest is
//! in the image afterwards (read back on the host with debugfs, after a
//! clean fsck), that vdb is read-only with its contents intact, and that
//! /dev/hwrng gives bytes. Needs e2fsprogs (mkfs.ext4, e2fsck, debugfs).
//! Run with `--release`.

mod common;

use common::{Guest, PROMPT};
use std::path::{Path, PathBuf};
use std::process::Command;
const MARKER: &str = "lockstep-vdb-marker";

fn tool(name: &str, args: &[&str]) -> std::process::Output {
    Command::new(name)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {name} (install e2fsprogs): {e}"))
}

/// A fresh directory for this test's disk images.
fn scratch_dir(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create the scratch directory");
    dir
}

/// A 64 MiB raw image with an empty ext4 file system.
fn ext4_image(path: &Path) {
    let file = std::fs::File::create(path).expect("create the disk image");
    file.set_len(64 << 20).expect("size the disk image");
    let out = tool("mkfs.ext4", &["-F", "-q", path.to_str().unwrap()]);
    assert!(out.status.success(), "mkfs.ext4 failed: {out:?}");
}

/// `seq 1 N` as the guest's busybox prints it.
fn seq_text(n: u32) -> String {
    (1..=n).map(|i| format!("{i}\n")).collect()
}

fn exercise_virtio(cpus: u32) {
    let dir = scratch_dir(&format!("virtio-boot-{cpus}"));
    let vda = dir.join("vda.img");
    let vdb = dir.join("vdb.img");
    ext4_image(&vda);
    let mut ro = vec![0u8; 1 << 20];
    ro[..MARKER.len()].copy_from_slice(MARKER.as_bytes());
    std::fs::write(&vdb, &ro).expect("write the read-only image");
    let seed = "42".repeat(32);
    let vda_arg = format!("path={}", vda.display());
    let vdb_arg = format!("path={},readonly=on", vdb.display());
    let cpus_arg = cpus.to_string();
    let mut g = Guest::boot(&[
        "--cpus",
        &cpus_arg,
        "--disk",
        &vda_arg,
        "--disk",
        &vdb_arg,
        "--rng-seed",
        &seed,
    ]);
    g.expect("lockstep guest ready");
    g.expect(PROMPT);

    assert_eq!(
        g.run("[ -b /dev/vda ] && [ -b /dev/vdb ] && echo both disks"),
        "both disks"
    );
    let mounts = g.run("grep ' /mnt ' /proc/mounts");
    assert!(mounts.starts_with("/dev/vda /mnt ext4 rw"), "{mounts}");
    assert_eq!(g.run("cat /sys/block/vda/serial; echo"), "lockstep-vda");
    assert_eq!(g.run("cat /sys/block/vda/size"), "131072");
    assert_eq!(g.run("cat /sys/block/vdb/ro"), "1");
    assert_eq!(g.run("head -c 19 /dev/vdb; echo"), MARKER);

    g.run("echo hello from the guest > /mnt/x; seq 1 100000 > /mnt/seq; sync");
    assert_eq!(g.run("cat /mnt/x"), "hello from the guest");
    // Read back from the disk, not the page cache.
    g.run("echo 3 > /proc/sys/vm/drop_caches");
    assert_eq!(g.run("tail -n 1 /mnt/seq"), "100000");
    let trimmed = g.run("fstrim -v /mnt");
    assert!(trimmed.contains("bytes trimmed"), "discard: {trimmed}");
    g.run("umount /mnt");

    assert_eq!(
        g.run("cat /sys/class/misc/hw_random/rng_current"),
        "virtio_rng.0"
    );
    assert_eq!(g.run("cat /dev/hwrng | head -c 16 | wc -c"), "16");
    // Many requests, each completing while the reader may sleep on
    // another hart.
    assert_eq!(g.run("head -c 65536 /dev/hwrng | wc -c"), "65536");

    g.send("poweroff -f");
    let status = g.child.wait().expect("wait for lockstep");
    assert!(
        status.success(),
        "lockstep run ended with {status}; console:\n{}",
        g.console
    );

    let fsck = tool("e2fsck", &["-fn", vda.to_str().unwrap()]);
    assert!(
        fsck.status.success(),
        "the guest left a damaged file system: {}",
        String::from_utf8_lossy(&fsck.stdout)
    );
    let cat = |file: &str| {
        let out = tool(
            "debugfs",
            &["-R", &format!("cat {file}"), vda.to_str().unwrap()],
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    assert_eq!(cat("/x"), "hello from the guest\n");
    assert!(cat("/seq") == seq_text(100_000), "/seq differs on the host");
    assert_eq!(
        std::fs::read(&vdb).unwrap(),
        ro,
        "the read-only disk changed"
    );
}

#[test]
fn debian_uses_virtio_disks_and_rng_on_one_hart() {
    exercise_virtio(1);
}

#[test]
fn debian_uses_virtio_disks_and_rng_on_two_harts() {
    exercise_virtio(2);
}

#[test]
fn bad_disk_and_seed_arguments_are_errors() {
    let dir = scratch_dir("virtio-bad-args");
    let missing = dir.join("missing.img");
    let out = Command::new(env!("CARGO_BIN_EXE_lockstep"))
        .args(["run", "--console", "none", "--disk"])
        .arg(format!("path={}", missing.display()))
        .output()
        .expect("run lockstep");
    assert_eq!(out.status.code(), Some(3));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("missing.img"), "{stderr}");

    // The PATH[,ro] form of earlier versions: a usage error naming the new one.
    let out = Command::new(env!("CARGO_BIN_EXE_lockstep"))
        .args(["run", "--console", "none", "--disk"])
        .arg(format!("{},ro", missing.display()))
        .output()
        .expect("run lockstep");
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let new = format!("write 'path={},readonly=on'", missing.display());
    assert!(stderr.contains(&new), "{stderr}");

    let out = Command::new(env!("CARGO_BIN_EXE_lockstep"))
        .args(["run", "--console", "none", "--rng-seed", "xyz"])
        .output()
        .expect("run lockstep");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("64 hex digits"), "{stderr}");
}
