//! Real pulls from Debian's archive into temporary caches, then offline reuse, corruption
//! recovery, and a boot of the result under QEMU.
//!
//! Needs the network (the mirror in `LOCKSTEP_MIRROR` or this host's apt sources), and for the boot test qemu-system-riscv64 and
//! mkfs.ext4 (Debian packages qemu-system-misc and e2fsprogs).

use guest_image::{build_initramfs, pull, GuestImage, ImageError, PullOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// Nothing listens on the discard port of loopback: any network access fails at once.
const UNREACHABLE_MIRROR: &str = "http://127.0.0.1:9/debian";

struct Pulled {
    cache: tempfile::TempDir,
    image: GuestImage,
}

/// One real pull, shared by the tests (they copy the cache before changing it).
fn pulled() -> &'static Pulled {
    static PULLED: OnceLock<Pulled> = OnceLock::new();
    PULLED.get_or_init(|| {
        let cache = tempfile::tempdir().expect("temp dir");
        let start = Instant::now();
        let image = pull(&options(cache.path(), None)).expect("first pull");
        eprintln!("first pull: {:.1?}, {}", start.elapsed(), du(cache.path()));
        Pulled { cache, image }
    })
}

fn options(cache: &Path, mirror: Option<&str>) -> PullOptions {
    PullOptions {
        cache_dir: Some(cache.to_path_buf()),
        mirror: mirror.map(str::to_string),
        ..PullOptions::default()
    }
}

fn du(dir: &Path) -> String {
    let out = Command::new("du").arg("-sh").arg(dir).output().expect("du");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A private copy of the shared cache; returns it and the image paths inside it.
fn copy_of_cache() -> (tempfile::TempDir, GuestImage) {
    let base = pulled();
    let copy = tempfile::tempdir().expect("temp dir");
    let status = Command::new("cp")
        .arg("-a")
        .arg(format!("{}/.", base.cache.path().display()))
        .arg(copy.path())
        .status()
        .expect("cp");
    assert!(status.success());
    let image = rebase(&base.image, base.cache.path(), copy.path());
    (copy, image)
}

fn rebase(image: &GuestImage, from: &Path, to: &Path) -> GuestImage {
    let re = |p: &PathBuf| to.join(p.strip_prefix(from).expect("path inside cache"));
    GuestImage {
        kernel: re(&image.kernel),
        initrd: re(&image.initrd),
        firmware: re(&image.firmware),
        fw_jump: re(&image.fw_jump),
        kernel_version: image.kernel_version.clone(),
    }
}

fn flip_byte(path: &Path, at: u64) {
    let mut bytes = std::fs::read(path).expect("read");
    let i = usize::try_from(at).expect("offset") % bytes.len();
    bytes[i] ^= 0x55;
    std::fs::write(path, bytes).expect("write");
}

fn find_deb(cache: &Path, prefix: &str) -> PathBuf {
    let pool = cache.join("debian/trixie/riscv64/pool");
    std::fs::read_dir(&pool)
        .expect("pool dir")
        .map(|e| e.expect("entry").path())
        .find(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with(prefix))
        })
        .unwrap_or_else(|| panic!("no {prefix}* in {}", pool.display()))
}

#[test]
fn first_pull_yields_a_bootable_set_of_files() {
    let image = &pulled().image;
    assert!(
        image.kernel_version.ends_with("-riscv64"),
        "{}",
        image.kernel_version
    );
    let kernel = std::fs::read(&image.kernel).expect("kernel");
    assert_eq!(&kernel[0x38..0x3c], b"RSC\x05", "RISC-V Image header magic");
    for fw in [&image.firmware, &image.fw_jump] {
        let len = std::fs::metadata(fw).expect("firmware").len();
        assert!(
            (64 << 10..4 << 20).contains(&len),
            "{}: {len} bytes",
            fw.display()
        );
    }
    let initrd = std::fs::read(&image.initrd).expect("initrd");
    assert_eq!(&initrd[..2], &[0x1f, 0x8b], "gzip magic");
    let listing = cpio_listing(&image.initrd);
    for want in [
        "init",
        "bin/busybox",
        "dev/console",
        "etc/lockstep/setup.sh",
        "usr/share/udhcpc/default.script",
    ] {
        assert!(
            listing.iter().any(|l| l == want),
            "{want} missing: {listing:?}"
        );
    }
    let kmod_dir = format!("lib/modules/{}/", image.kernel_version);
    for module in [
        "virtio_mmio",
        "virtio_blk",
        "virtio_net",
        "net_failover",
        "failover",
        "virtio_rng",
        "ext4",
        "jbd2",
        "mbcache",
        "crc16",
        "crc32c_generic",
    ] {
        let path = format!("{kmod_dir}{module}.ko");
        assert!(listing.contains(&path), "{path} missing: {listing:?}");
    }
}

fn cpio_listing(initrd: &Path) -> Vec<String> {
    let out = run_cpio(initrd, &["-t"]);
    String::from_utf8_lossy(&out)
        .lines()
        .map(str::to_string)
        .collect()
}

/// Runs GNU cpio on the decompressed initramfs and returns its stdout.
fn run_cpio(initrd: &Path, args: &[&str]) -> Vec<u8> {
    let gz = std::fs::read(initrd).expect("initrd");
    let mut cpio = Vec::new();
    flate2::read::GzDecoder::new(&gz[..])
        .read_to_end(&mut cpio)
        .expect("gunzip");
    let mut child = Command::new("cpio")
        .arg("--quiet")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("run cpio (Debian package cpio)");
    let mut stdin = child.stdin.take().expect("stdin");
    let writer = std::thread::spawn(move || stdin.write_all(&cpio));
    let out = child.wait_with_output().expect("cpio");
    writer.join().expect("writer").expect("write to cpio");
    assert!(out.status.success(), "cpio {args:?}");
    out.stdout
}

#[test]
fn second_pull_uses_the_cache_without_network() {
    let base = pulled();
    let start = Instant::now();
    let again = pull(&options(base.cache.path(), Some(UNREACHABLE_MIRROR))).expect("cached pull");
    eprintln!("second pull: {:.1?}", start.elapsed());
    assert_eq!(again, base.image);
}

#[test]
fn corrupt_output_is_rebuilt_identically_from_cached_packages_offline() {
    let (cache, image) = copy_of_cache();
    let before = std::fs::read(&image.initrd).expect("initrd");
    flip_byte(&image.initrd, 1000);
    std::fs::remove_file(&image.fw_jump).expect("remove fw_jump");
    let rebuilt = pull(&options(cache.path(), Some(UNREACHABLE_MIRROR))).expect("offline rebuild");
    assert_eq!(rebuilt, image);
    // The initramfs build is reproducible: the same bytes as the first time.
    assert_eq!(std::fs::read(&image.initrd).expect("initrd"), before);
    assert!(image.fw_jump.exists());
}

#[test]
fn corrupt_package_is_fetched_again() {
    let (cache, image) = copy_of_cache();
    let deb = find_deb(cache.path(), "opensbi_");
    let good = std::fs::read(&deb).expect("deb");
    flip_byte(&deb, 5000);
    flip_byte(&image.firmware, 100);

    // Offline the damaged package cannot be replaced: the error names what was tried.
    let err = pull(&options(cache.path(), Some(UNREACHABLE_MIRROR))).expect_err("offline pull");
    assert!(matches!(err, ImageError::Unreachable { .. }), "{err}");
    assert!(err.to_string().contains("127.0.0.1:9/debian/"), "{err}");

    let fixed = pull(&options(cache.path(), None)).expect("pull");
    assert_eq!(fixed, image);
    assert_eq!(std::fs::read(&deb).expect("deb"), good);
}

#[test]
fn custom_init_replaces_only_init() {
    let image = &pulled().image;
    let dir = tempfile::tempdir().expect("temp dir");
    let out = dir.path().join("bench.img");
    build_initramfs(image, b"#!/bin/sh\necho bench\n", &out).expect("build");
    let mut default = cpio_listing(&image.initrd);
    let mut custom = cpio_listing(&out);
    default.sort();
    custom.sort();
    assert_eq!(default, custom);
    let init = run_cpio(&out, &["-i", "--to-stdout", "init"]);
    assert_eq!(init, b"#!/bin/sh\necho bench\n");
    let default_init = run_cpio(&image.initrd, &["-i", "--to-stdout", "init"]);
    assert_eq!(default_init, guest_image::DEFAULT_INIT);
}

/// Boots the pulled kernel + initramfs under QEMU's `virt` board with a virtio disk and NIC,
/// and drives the console.
#[test]
fn initramfs_boots_under_qemu() {
    let image = &pulled().image;
    let dir = tempfile::tempdir().expect("temp dir");
    let disk = make_ext4_disk(dir.path());
    let mut qemu = Command::new("qemu-system-riscv64")
        .args([
            "-M",
            "virt",
            "-m",
            "512",
            "-smp",
            "1",
            "-nographic",
            "-no-reboot",
        ])
        .arg("-bios")
        .arg(&image.firmware)
        .arg("-kernel")
        .arg(&image.kernel)
        .arg("-initrd")
        .arg(&image.initrd)
        .args(["-append", "console=ttyS0"])
        .args([
            "-netdev",
            "user,id=n",
            "-device",
            "virtio-net-device,netdev=n",
        ])
        .arg("-drive")
        .arg(format!("file={},if=none,id=d,format=raw", disk.display()))
        .args(["-device", "virtio-blk-device,drive=d"])
        .args(["-device", "virtio-rng-device"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run qemu-system-riscv64 (Debian package qemu-system-misc)");
    let transcript = drive_console(&mut qemu);
    eprintln!("--- QEMU console ---\n{transcript}\n--- end ---");

    assert!(
        transcript.contains("lockstep guest ready: Linux "),
        "no banner"
    );
    assert!(
        !transcript.contains("lockstep-setup:"),
        "setup reported a failure"
    );
    assert!(
        transcript.contains("\nriscv64\r\n") || transcript.contains("\nriscv64\n"),
        "uname -m"
    );
    for module in [
        "virtio_net",
        "net_failover",
        "failover",
        "virtio_blk",
        "virtio_mmio",
        "ext4",
        "jbd2",
    ] {
        assert!(
            transcript
                .lines()
                .any(|l| l.starts_with(&format!("{module} "))),
            "lsmod lacks {module}"
        );
    }
    // QEMU's user-mode network hands out 10.0.2.15 with gateway and DNS in 10.0.2.0/24.
    assert!(transcript.contains("inet 10.0.2.15/24"), "eth0 address");
    assert!(
        transcript.contains("default via 10.0.2.2 dev eth0"),
        "default route"
    );
    assert!(transcript.contains("nameserver 10.0.2.3"), "DNS");
    assert!(
        transcript.contains("/dev/vda on /mnt type ext4"),
        "disk mounted"
    );
    assert!(transcript.contains("marker from the host"), "disk contents");
    assert!(transcript.contains("answer=42"), "shell arithmetic");
    assert!(transcript.contains("lockstep guest: shell exited, powering off"));
}

fn make_ext4_disk(dir: &Path) -> PathBuf {
    let content = dir.join("content");
    std::fs::create_dir(&content).expect("mkdir");
    std::fs::write(content.join("marker"), "marker from the host\n").expect("marker");
    let disk = dir.join("disk.raw");
    std::fs::File::create(&disk)
        .and_then(|f| f.set_len(32 << 20))
        .expect("disk file");
    let status = Command::new("mkfs.ext4")
        .args(["-F", "-q", "-d"])
        .arg(&content)
        .arg(&disk)
        .status()
        .expect("run mkfs.ext4 (Debian package e2fsprogs)");
    assert!(status.success());
    disk
}

/// Waits for the banner, types commands, and collects the console until QEMU exits.
fn drive_console(qemu: &mut std::process::Child) -> String {
    let mut stdout = qemu.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = stdout.read(&mut buf) {
            if n == 0 || tx.send(buf[..n].to_vec()).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(300);
    let mut transcript = Vec::new();
    let mut typed = false;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left.min(Duration::from_secs(1))) {
            Ok(chunk) => transcript.extend_from_slice(&chunk),
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
        }
        let text = String::from_utf8_lossy(&transcript);
        if !typed && text.contains("lockstep guest ready") {
            typed = true;
            let commands = "uname -m; lsmod; ip addr show eth0; ip route; cat /etc/resolv.conf; \
                 mount; cat /mnt/marker; echo answer=$((6 * 7)); exit\n";
            let stdin = qemu.stdin.as_mut().expect("stdin");
            stdin.write_all(commands.as_bytes()).expect("type");
            stdin.flush().expect("flush");
        }
        if Instant::now() >= deadline {
            let _ = qemu.kill();
            panic!("QEMU did not power off in time:\n{text}");
        }
    }
    let status = qemu.wait().expect("wait");
    let mut stderr = String::new();
    if let Some(mut e) = qemu.stderr.take() {
        let _ = e.read_to_string(&mut stderr);
    }
    assert!(status.success(), "qemu: {status}: {stderr}");
    String::from_utf8_lossy(&transcript).into_owned()
}
