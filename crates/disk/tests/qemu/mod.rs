//! Shared by the tests that check images against QEMU's own tools
//! (qemu-img, qemu-io from qemu-utils), and their data patterns.

use disk::BlockDevice;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Mutex, MutexGuard};

pub const MIB: u64 = 1 << 20;
pub const CLUSTER: u64 = 64 * 1024;

/// A spawned process holds copies of this process's descriptors until it
/// execs, and with them their `flock`s: an image a test thread has just
/// closed can still look locked to its next open while another thread
/// spawns qemu-img. Spawning and closing writers that are opened again
/// therefore take turns (`spawn` returns once the child has exec'd).
pub fn spawn_turn() -> MutexGuard<'static, ()> {
    static TURN: Mutex<()> = Mutex::new(());
    TURN.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

pub fn run(tool: &str, args: &[&str]) -> String {
    let child = {
        let _turn = spawn_turn();
        Command::new(tool)
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
    };
    let out = child
        .and_then(|c| c.wait_with_output())
        .unwrap_or_else(|e| panic!("cannot run {tool} (install qemu-utils): {e}"));
    assert!(
        out.status.success(),
        "{tool} {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn qemu_img(args: &[&str]) -> String {
    run("qemu-img", args)
}

pub fn s(p: &Path) -> &str {
    p.to_str().expect("test paths are UTF-8")
}

/// `qemu-img check` passes (exit 0: no errors, no leaks).
pub fn assert_check_clean(p: &Path) {
    let out = qemu_img(&["check", s(p)]);
    assert!(out.contains("No errors were found"), "{out}");
}

/// The field `"key": value` of qemu-img's JSON output.
pub fn json_field<'a>(json: &'a str, key: &str) -> &'a str {
    let pat = format!("\"{key}\": ");
    let at = json
        .find(&pat)
        .unwrap_or_else(|| panic!("no {key} in {json}"))
        + pat.len();
    let rest = &json[at..];
    let end = rest.find([',', '\n']).unwrap_or(rest.len());
    rest[..end].trim().trim_matches('"')
}

/// The guest-visible contents of an image, as QEMU sees them.
pub fn qemu_contents(dir: &Path, image: &Path) -> Vec<u8> {
    let out = dir.join("converted.raw");
    let _ = std::fs::remove_file(&out);
    qemu_img(&["convert", "-O", "raw", s(image), s(&out)]);
    let data = std::fs::read(&out).expect("read converted image");
    std::fs::remove_file(&out).expect("remove converted image");
    data
}

pub fn read_all(d: &mut dyn BlockDevice) -> Vec<u8> {
    let mut buf = vec![0; d.capacity() as usize];
    d.read_at(0, &mut buf).expect("read whole disk");
    buf
}

/// A deterministic byte pattern (differs per seed and offset).
pub fn pattern(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// A file of `len` bytes of `pattern(seed)`.
pub fn raw_file(path: &Path, seed: u64, len: u64) -> Vec<u8> {
    let data = pattern(seed, len as usize);
    std::fs::write(path, &data).expect("write raw file");
    data
}
