//! The trust boundaries an outside review attacked (issue 11), each tried
//! against the built binary: a raw disk whose guest wrote a qcow2 header
//! naming a host file, a replay log naming `/dev/zero` as its kernel, a
//! forged snapshot claiming an 8 GiB section, a symlinked console path, a
//! control directory someone else owns. Each must be refused with one
//! line, or (the disk) must show the guest nothing of the host.

mod common;

use common::{Guest, PROMPT};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn lockstep(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_lockstep"))
        .args(args)
        .output()
        .expect("run lockstep")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A failed run: exit 3 (a runtime error) and one line on stderr naming `needle`.
fn assert_refused(out: &Output, needle: &str) -> String {
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
    assert!(err.contains(needle), "{needle:?} not in {err}");
    err
}

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 temp path")
}

/// A host file the guest must never see, and a raw disk of `len` bytes
/// whose first bytes are a qcow2 header (made by qemu-img, as a guest
/// could write it) naming that file as its raw backing file.
fn forged_raw_disk(dir: &Path, len: usize) -> (PathBuf, PathBuf) {
    let secret = dir.join("host-secret");
    std::fs::write(&secret, b"HOST-SECRET-BYTES ".repeat(1 << 16)).unwrap();
    let header = dir.join("header.qcow2");
    let out = Command::new("qemu-img")
        .args(["create", "-q", "-f", "qcow2", "-b", s(&secret), "-F", "raw"])
        .arg(&header)
        .output()
        .expect("run qemu-img (install qemu-utils)");
    assert!(out.status.success(), "{}", text(&out.stderr));
    let mut bytes = std::fs::read(&header).unwrap();
    bytes.resize(len, 0);
    let disk = dir.join("guest.raw");
    std::fs::write(&disk, &bytes).unwrap();
    (disk, secret)
}

/// The review's disk attack on a primary: unpinned, the disk is refused
/// (one line saying how to pin it); pinned raw, the guest sees its own
/// bytes, the disk's real size, and nothing of the host file.
#[test]
fn a_qcow2_header_in_a_raw_disk_exposes_no_host_file() {
    let dir = tempfile::tempdir().unwrap();
    let (disk, _secret) = forged_raw_disk(dir.path(), 4 << 20);
    let unpinned_spec = format!("path={}", s(&disk));
    let unpinned = lockstep(&["run", "--console", "none", "--disk", &unpinned_spec]);
    let err = assert_refused(&unpinned, "format=");
    assert!(
        err.contains(s(&disk)) && err.contains("qcow2 header"),
        "{err}"
    );

    let spec = format!("path={},format=raw", s(&disk));
    let mut g = Guest::boot(&["--disk", &spec]);
    g.expect("lockstep guest ready");
    g.expect(PROMPT);
    // 4 MiB of raw disk, not the size the qcow2 header claims.
    assert_eq!(g.run("cat /sys/block/vda/size"), "8192");
    assert_eq!(g.run("head -c 3 /dev/vda; echo"), "QFI");
    assert_eq!(g.run("grep -c HOST-SECRET /dev/vda"), "0");
    g.send("poweroff -f");
    let _ = g.child.wait();
}

/// A replay log whose setup names `path` as its kernel (`digests`: with
/// the recorded lengths and hashes, or none as older logs had).
fn forged_log(dir: &Path, kernel: &str, digests: bool) -> PathBuf {
    let log = dir.join(format!("forged-{}.log", u8::from(digests)));
    let digest = serde_json::json!({ "len": 1u64 << 30, "blake3": vec![0u8; 32] });
    let setup = serde_json::json!({
        "name": "forged",
        "images": { "kernel": kernel, "initrd": "/dev/zero", "firmware": "/dev/zero" },
        "image_digests": if digests {
            serde_json::json!({ "firmware": digest, "kernel": digest, "initrd": digest })
        } else {
            serde_json::Value::Null
        },
        "append": "",
        "cpus": 1,
        "memory": 512u64 << 20,
        "disks": [],
        "disk_identities": [],
        "rng_seed": vec![0u8; 32],
        "boot_wall_ns": 0,
        "vmgenid": vec![0u8; 16],
        "macs": [],
        "instructions_per_tick": 64,
    });
    let header = replay::Header {
        vm_uuid: [7; 16],
        initial_state_hash: [0; 32],
    };
    let mut w = replay::LogWriter::create(&log, &header).unwrap();
    let bytes = serde_json::to_vec(&setup).unwrap();
    w.append_next(
        0,
        &replay::RecordKind::Control(replay::Control::ConfigChange(bytes)),
    )
    .unwrap();
    w.sync().unwrap();
    log
}

/// A log naming `/dev/zero` as its kernel is refused before anything is
/// read from it: it is not a regular file; a log without image digests
/// (as older versions wrote) is refused too. Memory stays bounded: the
/// replay runs under a 2 GiB address-space limit.
#[test]
fn a_log_naming_dev_zero_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    for (digests, needle) in [
        (true, "not a regular file"),
        (false, "no boot image digests"),
    ] {
        let log = forged_log(dir.path(), "/dev/zero", digests);
        let out = Command::new("sh")
            .arg("-c")
            .arg(format!(
                "ulimit -v 2097152; exec {} replay {}",
                env!("CARGO_BIN_EXE_lockstep"),
                s(&log)
            ))
            .output()
            .unwrap();
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(3), "{err}");
        let last = err.trim().lines().last().unwrap_or_default();
        assert!(last.contains(needle), "{needle:?} not in {err}");
        if digests {
            assert!(last.contains("/dev/zero"), "{err}");
        }
    }
}

/// The review's forged snapshot: a valid 80-byte preamble claiming an
/// 8 GiB index section, in an 8 GiB sparse file. Refused in one line,
/// without allocating (the restore runs under a 2 GiB address-space
/// limit), naming the section and the limit.
#[test]
fn a_forged_8_gib_snapshot_is_refused_without_allocating() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("forged.snap");
    let len: u64 = 8 << 30;
    let mut p = [0u8; 80];
    p[0..8].copy_from_slice(b"LSTPSNAP");
    p[8..12].copy_from_slice(&4u32.to_le_bytes());
    p[16..24].copy_from_slice(&80u64.to_le_bytes());
    p[24..32].copy_from_slice(&len.to_le_bytes());
    let h = *blake3::hash(&p[..64]).as_bytes();
    p[64..80].copy_from_slice(&h[..16]);
    let f = std::fs::File::create(&path).unwrap();
    std::os::unix::fs::FileExt::write_all_at(&f, &p, 0).unwrap();
    f.set_len(80 + len).unwrap();
    drop(f);
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "ulimit -v 2097152; exec {} run --console none --restore {}",
            env!("CARGO_BIN_EXE_lockstep"),
            s(&path)
        ))
        .output()
        .unwrap();
    let err = assert_refused(&out, "forged.snap");
    assert!(err.contains("index") && err.contains("at most"), "{err}");
}

/// A control directory another user owns, or that others may write, is
/// refused (the VM runs on without a control socket and says why).
#[test]
fn a_control_directory_of_another_user_or_mode_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let arbiter = dir.path().join("arbiter");
    for (name, owner, mode, needle) in [
        ("theirs", 65534, 0o700, "belongs to uid 65534"),
        (
            "open",
            rustix::process::getuid().as_raw(),
            0o777,
            "has mode 777",
        ),
    ] {
        let ctl = dir.path().join(name);
        std::fs::create_dir(&ctl).unwrap();
        std::os::unix::fs::chown(&ctl, Some(owner), None).unwrap();
        std::fs::set_permissions(&ctl, std::os::unix::fs::PermissionsExt::from_mode(mode)).unwrap();
        let sock = ctl.join("vm.sock");
        let mut g = Guest::launch(
            &[],
            &[
                "run",
                "--console",
                "stdio",
                "--ft-arbiter",
                s(&arbiter),
                "--ft-control",
                s(&sock),
            ],
        );
        let said = g.expect_stderr("no control socket");
        assert!(said.contains(needle) && said.contains(name), "{said}");
        assert!(!sock.exists(), "no socket was made in {}", ctl.display());
    }
}

/// A console path that is a symbolic link is refused (one line, before
/// the guest starts), and the file it points to is left alone; a new
/// console file is created 0600.
#[test]
fn a_symlinked_console_path_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("precious");
    std::fs::write(&target, b"keep me").unwrap();
    let link = dir.path().join("console.log");
    std::os::unix::fs::symlink(&target, &link).unwrap();
    let out = lockstep(&["run", "--console", &format!("file={}", s(&link))]);
    let err = assert_refused(&out, "console.log");
    assert!(err.contains("symbolic link"), "{err}");
    assert_eq!(std::fs::read(&target).unwrap(), b"keep me");

    // A fresh console file is the guest's data: 0600.
    let fresh = dir.path().join("fresh.log");
    let mut g = Guest::launch(
        &[],
        &[
            "run",
            "--console",
            &format!("file={}", s(&fresh)),
            "--memory",
            "64M",
        ],
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !fresh.exists() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let _ = g.child.kill();
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&fresh).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600);
}

/// The review's discard-heavy replay: a recorded guest discards the whole
/// of a 100 GiB disk (as mkfs does); the replay, whose disk sits
/// read-only behind an in-memory overlay, keeps discarded ranges as zero
/// runs and completes under a 2 GiB address-space limit (one 4 KiB
/// buffer per discarded block would need 100 GiB).
#[test]
fn a_discard_heavy_replay_stays_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let disk = dir.path().join("big.qcow2");
    let out = lockstep(&["disk", "create", s(&disk), "--size", "100G"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    // A replay needs the disk as the recording found it: keep a copy.
    let pristine = dir.path().join("pristine.qcow2");
    std::fs::copy(&disk, &pristine).unwrap();
    let log = dir.path().join("discard.log");
    let disk_arg = format!("path={},format=qcow2", s(&disk));
    let mut g = Guest::boot(&["--disk", &disk_arg, "--record", s(&log)]);
    g.expect(PROMPT);
    assert_eq!(g.run("blkdiscard /dev/vda && echo discarded"), "discarded");
    assert_eq!(g.run("head -c 4 /dev/vda | od -An -tx1"), "00 00 00 00");
    g.send("poweroff -f");
    assert!(g.child.wait().unwrap().success());
    std::fs::rename(&pristine, &disk).unwrap();
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "ulimit -v 2097152; exec {} replay --console none {}",
            env!("CARGO_BIN_EXE_lockstep"),
            s(&log)
        ))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "replay under 2 GiB: {}",
        text(&out.stderr)
    );
}
