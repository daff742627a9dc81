//! virtio-net end to end: Debian guests on a TAP inside a network namespace
//! this test creates (never the host's own namespace), and two guests on
//! one `socket:` segment.
//!
//! Needs root (TAP devices and namespaces) and `ip` (iproute2).

mod common;

use common::Guest;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::process::Command;

/// Addresses used only inside the namespace created here.
const HOST_IP: &str = "10.77.0.1";
const GUEST_IP: &str = "10.77.0.2";
const HTTP_PORT: u16 = 8080;
/// Size of the file the guest fetches.
const BLOB_LEN: usize = 6 << 20;

fn sh(args: &[&str]) {
    let status = Command::new(args[0])
        .args(&args[1..])
        .status()
        .unwrap_or_else(|e| panic!("cannot run {args:?}: {e} (install iproute2)"));
    assert!(status.success(), "{args:?} failed: {status}");
}

/// A network namespace with a configured TAP; deleted when dropped.
struct Namespace(String);

impl Namespace {
    fn with_tap(tap: &str) -> Namespace {
        assert!(
            rustix::process::geteuid().is_root(),
            "the TAP tests need root (TAP devices and network namespaces)"
        );
        let name = format!("lockstep-nettest-{}", std::process::id());
        let _ = Command::new("ip").args(["netns", "del", &name]).status();
        sh(&["ip", "netns", "add", &name]);
        let ns = Namespace(name);
        ns.exec(&["ip", "link", "set", "lo", "up"]);
        ns.exec(&["ip", "tuntap", "add", "dev", tap, "mode", "tap"]);
        ns.exec(&["ip", "addr", "add", &format!("{HOST_IP}/24"), "dev", tap]);
        ns.exec(&["ip", "link", "set", tap, "up"]);
        ns
    }

    fn exec(&self, args: &[&str]) {
        let mut all = vec!["ip", "netns", "exec", &self.0];
        all.extend_from_slice(args);
        sh(&all);
    }

    /// Serve `body` over HTTP on HOST_IP from a thread inside the namespace.
    fn serve_http(&self, body: Vec<u8>) {
        let netns = std::fs::File::open(format!("/run/netns/{}", self.0)).expect("open netns");
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            rustix::thread::move_into_link_name_space(
                std::os::fd::AsFd::as_fd(&netns),
                Some(rustix::thread::LinkNameSpaceType::Network),
            )
            .expect("enter the test namespace");
            let listener = TcpListener::bind((HOST_IP, HTTP_PORT)).expect("bind the HTTP server");
            ready_tx.send(()).expect("report readiness");
            for conn in listener.incoming() {
                let Ok(mut conn) = conn else { continue };
                let mut request = Vec::new();
                let mut buf = [0u8; 1024];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    match conn.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => request.extend_from_slice(&buf[..n]),
                    }
                }
                let head = format!(
                    "HTTP/1.0 200 OK\r\nContent-Length: {}\r\nContent-Type: application/octet-stream\r\n\r\n",
                    body.len()
                );
                let _ = conn.write_all(head.as_bytes());
                let _ = conn.write_all(&body);
            }
        });
        ready_rx.recv().expect("HTTP server started");
    }
}

impl Drop for Namespace {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

/// Bytes that no compression or run-length trick can fake.
fn blob() -> Vec<u8> {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    (0..BLOB_LEN)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

fn sha256_hex(data: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[test]
fn guest_on_a_tap_pings_the_host_and_fetches_a_file_over_http() {
    let ns = Namespace::with_tap("lstap0");
    let body = blob();
    let want = sha256_hex(&body);
    ns.serve_http(body);
    let prefix = ["ip", "netns", "exec", &ns.0];
    let append = format!("lockstep.ip={GUEST_IP}/24");
    let mut g = Guest::boot_with(&prefix, &append, &["--net", "tap=lstap0"]);
    g.expect(common::PROMPT);

    let ping = g.run(&format!("ping -c 3 -W 5 {HOST_IP}"));
    assert!(ping.contains("3 packets received"), "{ping}");

    let url = format!("http://{HOST_IP}:{HTTP_PORT}/blob");
    let fetched = g.run(&format!(
        "wget -q -O /tmp/blob {url} && sha256sum /tmp/blob"
    ));
    assert!(
        fetched.contains(&format!("{want}  /tmp/blob")),
        "guest's checksum differs from {want}: {fetched}"
    );
    g.send("poweroff -f");
    let status = g.child.wait().expect("wait for lockstep");
    assert!(status.success(), "{status}");
}

/// Two runs without `--name`: each gets a name of its own (said at
/// start), so their derived MACs differ and they can share a segment.
#[test]
fn two_unnamed_guests_on_one_socket_segment_ping_each_other() {
    let dir = tempfile::tempdir().expect("temp dir");
    let segment = format!("socket={}", dir.path().join("seg").display());
    let mut a = Guest::boot_with(&[], "lockstep.ip=10.78.0.1/24", &["--net", &segment]);
    let mut b = Guest::boot_with(&[], "lockstep.ip=10.78.0.2/24", &["--net", &segment]);
    let name_a = a.expect_stderr("lockstep: VM name ");
    let name_b = b.expect_stderr("lockstep: VM name ");
    assert_ne!(name_a, name_b);
    a.expect(common::PROMPT);
    b.expect(common::PROMPT);
    // A third run taking a's name is refused, naming a's pid.
    let taken = name_a
        .split_whitespace()
        .nth(3)
        .expect("a name after 'VM name'")
        .to_string();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_lockstep"))
        .args(["run", "--console", "none", "--name", &taken])
        .output()
        .expect("run lockstep");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert!(
        err.contains("already running") && err.contains(&format!("pid {}", a.child.id())),
        "{err}"
    );
    let from_a = a.run("ping -c 3 -W 5 10.78.0.2");
    assert!(from_a.contains("3 packets received"), "{from_a}");
    let from_b = b.run("ping -c 3 -W 5 10.78.0.1");
    assert!(from_b.contains("3 packets received"), "{from_b}");
    // Different names, different (derived) MACs.
    let mac_a = a.run("cat /sys/class/net/eth0/address");
    let mac_b = b.run("cat /sys/class/net/eth0/address");
    assert_ne!(mac_a, mac_b);
    for mut g in [a, b] {
        g.send("poweroff -f");
        assert!(g.child.wait().expect("wait for lockstep").success());
    }
}

#[test]
fn a_tap_that_cannot_be_opened_is_a_clear_error_before_boot() {
    let out = Command::new(env!("CARGO_BIN_EXE_lockstep"))
        .args(["run", "--console", "none", "--net", "tap=lo"])
        .output()
        .expect("run lockstep");
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--net tap=lo") && err.contains("not a"),
        "{err}"
    );
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");

    let out = Command::new(env!("CARGO_BIN_EXE_lockstep"))
        .args(["run", "--console", "none", "--net", "bogus:x"])
        .output()
        .expect("run lockstep");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("invalid network 'bogus:x'"), "{err}");
}
