//! Named networks (`lockstep net …`, `--net network=NAME`) end to end: real
//! Debian guests on lockstep's switch, its DHCP server and NAT gateway,
//! host TAPs and Linux bridges and kernel VXLAN devices inside network
//! namespaces this file creates and deletes (never the host's own).
//!
//! Needs root (namespaces, TAPs, and `setpriv` to run the NAT test as an
//! unprivileged user), `ip` (iproute2).

mod common;
#[path = "common/netns.rs"]
mod netns;

use common::Guest;
use std::net::{Ipv4Addr, TcpListener};
use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

const LOCKSTEP: &str = env!("CARGO_BIN_EXE_lockstep");

fn lockstep(home: &Path, args: &[&str]) -> Output {
    Command::new(LOCKSTEP)
        .env("LOCKSTEP_HOME", home)
        .args(args)
        .output()
        .expect("run lockstep")
}

fn ok(home: &Path, args: &[&str]) -> String {
    let out = lockstep(home, args);
    assert!(
        out.status.success(),
        "lockstep {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn boot_on(home: &Path, prefix: &[&str], append: &str, net: &str) -> Guest {
    let append = format!("console=ttyS0 quiet {append}");
    let args = [
        "run",
        "--memory",
        "512M",
        "--console",
        "stdio",
        "--append",
        &append,
        "--net",
        net,
    ];
    let mut g = Guest::launch_env(prefix, &args, &[("LOCKSTEP_HOME", home)]);
    g.expect(common::PROMPT);
    g
}

/// The IPv4 address the guest's eth0 holds.
fn guest_ip(g: &mut Guest) -> Ipv4Addr {
    let out = g.run("ip -4 -o addr show dev eth0");
    let cidr = out
        .split_whitespace()
        .skip_while(|w| *w != "inet")
        .nth(1)
        .unwrap_or_else(|| panic!("no address on eth0: {out}"));
    cidr.split('/').next().unwrap().parse().expect("an address")
}

fn poweroff(mut g: Guest) {
    g.send("poweroff -f");
    assert!(g.child.wait().expect("wait for lockstep").success());
}

fn status(home: &Path, name: &str) -> serde_json::Value {
    serde_json::from_str(&ok(home, &["net", "show", name, "--json"])).expect("json")
}

/// Waits for the on-demand switch of `name` to leave after its last VM.
fn wait_switch_gone(home: &Path, name: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while status(home, name)["switch"].is_object() {
        assert!(
            Instant::now() < deadline,
            "the switch of {name} did not exit"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn two_vms_on_an_internal_network_get_leases_ping_and_the_network_is_kept_while_used() {
    let home = tempfile::tempdir().unwrap();
    let h = home.path();
    ok(
        h,
        &[
            "net",
            "create",
            "lab",
            "--mode",
            "internal",
            "--subnet",
            "10.81.0.0/24",
        ],
    );
    let mut a = boot_on(h, &[], "", "network=lab");
    let mut b = boot_on(h, &[], "", "network=lab");
    let (ip_a, ip_b) = (guest_ip(&mut a), guest_ip(&mut b));
    for ip in [ip_a, ip_b] {
        assert!(
            ip.octets()[..3] == [10, 81, 0] && ip.octets()[3] >= 128,
            "{ip} is not a DHCP address of 10.81.0.0/24"
        );
    }
    assert_ne!(ip_a, ip_b);
    let out = a.run(&format!("ping -c 3 -W 5 {ip_b}"));
    assert!(out.contains("3 packets received"), "{out}");
    let out = b.run(&format!("ping -c 3 -W 5 {ip_a}"));
    assert!(out.contains("3 packets received"), "{out}");
    // No router on an internal network.
    let out = a.run("ip route");
    assert!(!out.contains("default"), "{out}");

    let s = status(h, "lab");
    let ports = s["switch"]["ports"].as_array().expect("ports");
    let vms: Vec<&serde_json::Value> = ports.iter().filter(|p| p["kind"] == "vm").collect();
    assert_eq!(vms.len(), 2, "{s}");
    assert!(
        vms.iter()
            .all(|p| p["counters"]["rx_frames"].as_u64() > Some(3)),
        "{s}"
    );
    let leases: Vec<String> = s["switch"]["leases"]
        .as_array()
        .expect("leases")
        .iter()
        .map(|l| l["ip"].as_str().unwrap().to_string())
        .collect();
    assert!(
        leases.contains(&ip_a.to_string()) && leases.contains(&ip_b.to_string()),
        "{s}"
    );
    assert!(s["switch"]["macs"].as_array().unwrap().len() >= 2, "{s}");
    let text = ok(h, &["net", "show", "lab"]);
    assert!(
        text.contains("RX FRAMES") && text.contains(&ip_a.to_string()),
        "{text}"
    );

    // In use: refused, nothing changed.
    let out = lockstep(h, &["net", "delete", "lab"]);
    assert_eq!(out.status.code(), Some(3));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("in use by 2 port(s)"), "{err}");
    assert!(ok(h, &["net", "list"]).contains("lab"));

    poweroff(a);
    poweroff(b);
    wait_switch_gone(h, "lab");
    ok(h, &["net", "delete", "lab"]);
    assert!(!ok(h, &["net", "list"]).contains("lab "));
}

#[test]
fn bad_network_definitions_are_refused_and_change_nothing() {
    let home = tempfile::tempdir().unwrap();
    let h = home.path();
    ok(
        h,
        &[
            "net",
            "create",
            "a",
            "--mode",
            "internal",
            "--subnet",
            "10.90.0.0/24",
        ],
    );
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let taken_port = taken.local_addr().unwrap().port().to_string();
    let forward = format!("tcp:{taken_port}:192.168.77.130:22");
    let cases: &[(&[&str], i32, &str)] = &[
        (
            &["--mode", "internal", "--subnet", "10.90.0.0/16"],
            3,
            "overlaps network a's 10.90.0.0/24",
        ),
        (
            &["--mode", "internal", "--subnet", "10.91.0.1/24"],
            2,
            "did you mean 10.91.0.0/24",
        ),
        (
            &["--mode", "internal", "--subnet", "10.91.0.0/33"],
            2,
            "prefix must be 8 to 29",
        ),
        (
            &["--mode", "internal", "--subnet", "nonsense"],
            2,
            "expected ADDRESS/PREFIX",
        ),
        (
            &[
                "--mode", "internal", "--vxlan", "16777216", "--local", "10.0.0.1",
            ],
            2,
            "VNI 16777216 is out of range",
        ),
        (
            &[
                "--mode",
                "nat",
                "--subnet",
                "192.168.77.0/24",
                "--forward",
                &forward,
            ],
            3,
            "cannot be used",
        ),
        (
            &[
                "--mode",
                "nat",
                "--subnet",
                "192.168.78.0/24",
                "--forward",
                "tcp:1:10.0.0.1:22",
            ],
            2,
            "not in the subnet",
        ),
        (&["--mode", "bridged"], 2, "needs --bridge"),
        (&["--mode", "wifi"], 2, "not a network mode"),
    ];
    for (args, code, message) in cases {
        let mut all = vec!["net", "create", "b"];
        all.extend_from_slice(args);
        let out = lockstep(h, &all);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(*code), "{args:?}: {err}");
        assert!(err.contains(message), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{err}");
        assert!(!h.join("networks/b.toml").exists(), "{args:?} left a file");
    }
    drop(taken);
    // A bad name, and deleting or showing what is not there.
    let out = lockstep(h, &["net", "create", "../x", "--mode", "internal"]);
    assert_eq!(out.status.code(), Some(2));
    let out = lockstep(h, &["net", "delete", "nope"]);
    assert_eq!(out.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no network named 'nope'"));
    // A NIC naming a network that does not exist fails before boot.
    let out = lockstep(h, &["run", "--console", "none", "--net", "network=nope"]);
    assert_eq!(out.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no network named 'nope'"));
}
