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
