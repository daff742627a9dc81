//! `lockstep disk create` / `info` end to end, checked with qemu-img.

use std::path::Path;
use std::process::{Command, Output};

fn lockstep(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_lockstep"))
        .args(args)
        .output()
        .expect("run lockstep")
}

fn stdout(out: &Output) -> String {
    assert!(
        out.status.success(),
        "lockstep failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn qemu_img_info(path: &Path) -> String {
    let out = Command::new("qemu-img")
        .args(["info", "--output=json"])
        .arg(path)
        .output()
        .expect("run qemu-img (install qemu-utils)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn create_and_info() {
    let dir = tempfile::TempDir::new().unwrap();
    let base = dir.path().join("base.qcow2");
    let over = dir.path().join("over.qcow2");
    let p = |p: &Path| p.to_str().unwrap().to_string();

    let out = stdout(&lockstep(&["disk", "create", &p(&base), "--size", "64M"]));
    assert!(out.contains("64 MiB"), "{out}");
    assert!(qemu_img_info(&base).contains("\"virtual-size\": 67108864"));

    // Without --size an overlay takes its backing image's size.
    stdout(&lockstep(&[
        "disk",
        "create",
        &p(&over),
        "--backing",
        &p(&base),
        "--backing-format",
        "qcow2",
    ]));
    let json = qemu_img_info(&over);
    assert!(json.contains("\"virtual-size\": 67108864"), "{json}");
    assert!(
        json.contains("\"backing-filename\": \"base.qcow2\""),
        "{json}"
    );

    let out = stdout(&lockstep(&["disk", "info", &p(&over)]));
    assert!(out.contains("format:       qcow2"), "{out}");
    assert!(out.contains("cluster size: 65536"), "{out}");
    assert!(
        out.contains("1. ") && out.contains("base.qcow2 (qcow2, 64 MiB"),
        "{out}"
    );

    // Refusals: an existing file, a bad size, a missing image.
    let again = lockstep(&["disk", "create", &p(&base), "--size", "1G"]);
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("already exists"));
    let bad = lockstep(&["disk", "create", &p(&dir.path().join("x")), "--size", "12Q"]);
    assert!(!bad.status.success());
    let missing = lockstep(&["disk", "info", &p(&dir.path().join("nope.qcow2"))]);
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("nope.qcow2"));
}

/// `lockstep run` with a bad `--disk` stops with one line naming the file,
/// before the guest starts (exit 2).
#[test]
fn run_refuses_bad_disks_before_the_guest_starts() {
    let dir = tempfile::TempDir::new().unwrap();
    let missing = dir.path().join("missing.qcow2");
    let corrupt = dir.path().join("corrupt.qcow2");
    // A qcow2 magic and version, then nonsense.
    let mut bytes = b"QFI\xfb\x00\x00\x00\x03".to_vec();
    bytes.extend(std::iter::repeat_n(0xee, 4096));
    std::fs::write(&corrupt, &bytes).unwrap();
    let base = dir.path().join("base.qcow2");
    let over = dir.path().join("over.qcow2");
    stdout(&lockstep(&[
        "disk",
        "create",
        base.to_str().unwrap(),
        "--size",
        "16M",
    ]));
    stdout(&lockstep(&[
        "disk",
        "create",
        over.to_str().unwrap(),
        "--size",
        "16M",
        "--backing",
        base.to_str().unwrap(),
        "--backing-format",
        "qcow2",
    ]));
    std::fs::remove_file(&base).unwrap();
    for (disk, named) in [(&missing, &missing), (&corrupt, &corrupt), (&over, &base)] {
        let spec = format!("path={},format=qcow2", disk.display());
        let out = lockstep(&["run", "--console", "none", "--disk", &spec]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(3), "{}: {err}", disk.display());
        assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
        assert!(
            err.contains(&named.display().to_string()),
            "names {}: {err}",
            named.display()
        );
    }
}
