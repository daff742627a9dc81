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
use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream, UdpSocket};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

const LOCKSTEP: &str = env!("CARGO_BIN_EXE_lockstep");

use common::{lockstep_in as lockstep, ok_in as ok};

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

/// The first port of `kind` in a `net show --json` document.
fn port_of_kind(status: &serde_json::Value, kind: &str) -> serde_json::Value {
    status["switch"]["ports"]
        .as_array()
        .expect("ports")
        .iter()
        .find(|p| p["kind"] == kind)
        .cloned()
        .unwrap_or_else(|| panic!("no {kind} port in {status}"))
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

/// The uid and gid the NAT test runs lockstep as.
const NOBODY: u32 = 65534;

/// The pulled guest image's kernel, initrd and firmware copied where an
/// unprivileged user can read them.
fn readable_image(dir: &Path) -> [String; 3] {
    let out = Command::new(LOCKSTEP)
        .args(["image", "pull", "--json", "--no-progress"])
        .output()
        .expect("run lockstep image pull");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    ["kernel", "initrd", "firmware"].map(|key| {
        let from = PathBuf::from(doc[key].as_str().expect("a path"));
        let to = dir.join(key);
        std::fs::copy(&from, &to).expect("copy an image file");
        std::fs::set_permissions(&to, std::fs::Permissions::from_mode(0o644)).unwrap();
        to.display().to_string()
    })
}

/// A tiny DNS server on loopback answering every A query with `answer`
/// (and any other query with no records). Returns its port.
fn serve_dns(answer: Ipv4Addr) -> u16 {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = socket.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let mut buf = [0u8; 512];
        while let Ok((len, from)) = socket.recv_from(&mut buf) {
            if len < 12 {
                continue;
            }
            // The question: labels up to the zero byte, then type and class.
            let mut end = 12;
            while end < len && buf[end] != 0 {
                end += usize::from(buf[end]) + 1;
            }
            if end + 5 > len {
                continue;
            }
            let qtype = u16::from_be_bytes([buf[end + 1], buf[end + 2]]);
            let mut reply = buf[..end + 5].to_vec();
            reply[2] = 0x81; // a response, recursion desired
            reply[3] = 0x80; // recursion available, no error
            reply[6..12].copy_from_slice(&[0, 0, 0, 0, 0, 0]);
            if qtype == 1 {
                reply[7] = 1;
                reply.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4]);
                reply.extend_from_slice(&answer.octets());
            }
            let _ = socket.send_to(&reply, from);
        }
    });
    port
}

/// Serves `body` over HTTP on loopback (each connection gets it once).
fn serve_http(body: Vec<u8>) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let body = std::sync::Arc::new(body);
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let body = std::sync::Arc::clone(&body);
            std::thread::spawn(move || {
                let mut request = [0u8; 4096];
                let _ = stream.read(&mut request);
                let head = format!(
                    "HTTP/1.0 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                );
                let _ = stream.write_all(head.as_bytes());
                let _ = stream.write_all(&body);
            });
        }
    });
    port
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn sha256_of(path: &Path) -> String {
    let out = Command::new("sha256sum")
        .arg(path)
        .output()
        .expect("sha256sum");
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .expect("a hash")
        .to_string()
}

#[test]
fn nat_as_an_unprivileged_user_dhcp_dns_http_through_dot2_and_a_port_forward() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let [kernel, initrd, firmware] = readable_image(dir.path());
    let home = dir.path().join("home");
    std::fs::create_dir(&home).unwrap();
    std::os::unix::fs::chown(&home, Some(NOBODY), Some(NOBODY)).unwrap();
    let as_nobody = |args: &[&str]| {
        let out = Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups", LOCKSTEP])
            .env("LOCKSTEP_HOME", &home)
            .args(args)
            .output()
            .expect("run setpriv (util-linux)");
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };

    let gateway = Ipv4Addr::new(192, 168, 231, 2);
    let dns_port = serve_dns(gateway);
    let blob: Vec<u8> = (0..10u32 << 20)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let blob_path = dir.path().join("blob");
    std::fs::write(&blob_path, &blob).unwrap();
    let blob_hash = sha256_of(&blob_path);
    let http_port = serve_http(blob);
    let forward_port = free_port();
    as_nobody(&[
        "net",
        "create",
        "natt",
        "--mode",
        "nat",
        "--subnet",
        "192.168.231.0/24",
        "--dns",
        &format!("127.0.0.1:{dns_port}"),
        "--forward",
        &format!("tcp:{forward_port}:192.168.231.200:8022"),
    ]);

    let append = "console=ttyS0 quiet";
    let args = [
        "run",
        "--memory",
        "512M",
        "--console",
        "stdio",
        "--append",
        append,
        "--kernel",
        &kernel,
        "--initrd",
        &initrd,
        "--firmware",
        &firmware,
        "--net",
        "network=natt",
    ];
    let prefix = [
        "setpriv",
        "--reuid=65534",
        "--regid=65534",
        "--clear-groups",
    ];
    let mut g = Guest::launch_env(&prefix, &args, &[("LOCKSTEP_HOME", &home)]);
    g.expect(common::PROMPT);

    // A lease in the subnet from .128, the gateway and DNS at .2.
    let ip = guest_ip(&mut g);
    assert!(
        ip.octets()[..3] == [192, 168, 231] && ip.octets()[3] >= 128,
        "{ip}"
    );
    let route = g.run("ip route");
    assert!(route.contains("default via 192.168.231.2"), "{route}");
    let resolv = g.run("cat /etc/resolv.conf");
    assert!(resolv.contains("nameserver 192.168.231.2"), "{resolv}");
    let ping = g.run("ping -c 2 -W 5 192.168.231.2");
    assert!(ping.contains("2 packets received"), "{ping}");

    // A name resolved through .2 by the test's DNS server on loopback.
    let lookup = g.run("nslookup files.lockstep.test");
    assert!(lookup.contains("192.168.231.2"), "{lookup}");
    // 10 MiB from the host's loopback through .2, by that name.
    // (Commands stay shorter than the console's 80 columns: a wrapped
    // echo would not match.)
    g.run(&format!(
        "wget -q -O /tmp/b http://files.lockstep.test:{http_port}/b"
    ));
    let fetched = g.run("sha256sum /tmp/b");
    assert!(fetched.contains(&blob_hash), "{fetched} (want {blob_hash})");

    // A host client reaches a guest server through the port forward.
    g.run("ip addr add 192.168.231.200/24 dev eth0");
    g.run("mkdir -p /www && echo forwarded-ok > /www/index.html");
    g.run("httpd -p 8022 -h /www");
    let mut client =
        TcpStream::connect(("127.0.0.1", forward_port)).expect("connect to the forward");
    client
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    client
        .write_all(b"GET /index.html HTTP/1.0\r\nHost: guest\r\n\r\n")
        .unwrap();
    let mut answer = String::new();
    client
        .read_to_string(&mut answer)
        .expect("the guest's answer");
    assert!(answer.contains("forwarded-ok"), "{answer}");

    // The switch runs as the unprivileged user, and counted all this.
    let s: serde_json::Value =
        serde_json::from_str(&as_nobody(&["net", "show", "natt", "--json"])).unwrap();
    let pid = s["switch"]["pid"].as_u64().expect("a switch pid");
    let proc_status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let uid_line = proc_status.lines().find(|l| l.starts_with("Uid:")).unwrap();
    assert!(
        uid_line.split_whitespace().nth(1) == Some("65534"),
        "{uid_line}"
    );
    assert!(s["switch"]["nat"]["tcp_out"].as_u64() >= Some(1), "{s}");
    assert!(s["switch"]["nat"]["tcp_in"].as_u64() >= Some(1), "{s}");
    assert!(s["switch"]["nat"]["udp_flows"].as_u64() >= Some(1), "{s}");
    poweroff(g);
}

fn prefix_of(ns: &netns::Netns) -> Vec<String> {
    ns.exec_prefix()
}

fn ns_run(ns: &netns::Netns, args: &[&str]) -> Output {
    Command::new("ip")
        .args(["netns", "exec", ns.name()])
        .args(args)
        .output()
        .expect("ip netns exec")
}

/// Serves `body` over HTTP at `addr` inside `ns`; returns once listening.
fn serve_http_in(ns: &netns::Netns, addr: &str, body: Vec<u8>) {
    let addr = addr.to_string();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    ns.spawn(move || {
        let listener = TcpListener::bind(&addr).expect("bind in the namespace");
        ready_tx.send(()).unwrap();
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut request = [0u8; 4096];
            let _ = stream.read(&mut request);
            let head = format!("HTTP/1.0 200 OK\r\nContent-Length: {}\r\n\r\n", body.len());
            let _ = stream.write_all(head.as_bytes());
            let _ = stream.write_all(&body);
        }
    });
    ready_rx.recv().expect("the server started");
}

#[test]
fn hostonly_reaches_the_hosts_dot1_and_nothing_beyond() {
    let ns = netns::Netns::create(&format!("ls-ho-{}", std::process::id()));
    // Something beyond .1 on the "host".
    ns.ip(&["addr", "add", "10.87.0.1/24", "dev", "lo"]);
    let home = tempfile::tempdir().unwrap();
    let h = home.path();
    ok(
        h,
        &[
            "net",
            "create",
            "ho",
            "--mode",
            "hostonly",
            "--subnet",
            "10.86.0.0/24",
        ],
    );
    let prefix = prefix_of(&ns);
    let prefix: Vec<&str> = prefix.iter().map(String::as_str).collect();
    let mut g = boot_on(h, &prefix, "", "network=ho");
    let ip = guest_ip(&mut g);
    assert!(
        ip.octets()[..3] == [10, 86, 0] && ip.octets()[3] >= 128,
        "{ip}"
    );
    let out = g.run("ping -c 3 -W 5 10.86.0.1");
    assert!(out.contains("3 packets received"), "{out}");
    let route = g.run("ip route");
    assert!(!route.contains("default"), "{route}");
    let out = g.run("ping -c 1 -W 3 10.87.0.1");
    assert!(!out.contains("1 packets received"), "{out}");
    // The host side reaches the guest.
    let out = ns_run(&ns, &["ping", "-c", "2", "-W", "5", &ip.to_string()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let text = ok(h, &["net", "show", "ho"]);
    assert!(text.contains("tap") && text.contains("ls-ho"), "{text}");
    poweroff(g);
    wait_switch_gone(h, "ho");
}

#[test]
fn bridged_puts_the_vm_on_the_bridges_lan() {
    let pid = std::process::id();
    let host = netns::Netns::create(&format!("ls-brh-{pid}"));
    let lan = netns::Netns::create(&format!("ls-brl-{pid}"));
    host.bridge("br0");
    host.veth("vhost", &lan, "vlan");
    host.attach("br0", "vhost");
    lan.address("vlan", "10.88.0.1/24");
    let home = tempfile::tempdir().unwrap();
    let h = home.path();
    ok(
        h,
        &[
            "net", "create", "lan", "--mode", "bridged", "--bridge", "br0",
        ],
    );
    let prefix = prefix_of(&host);
    let prefix: Vec<&str> = prefix.iter().map(String::as_str).collect();
    let mut g = boot_on(h, &prefix, "lockstep.ip=10.88.0.50/24", "network=lan");
    let out = g.run("ping -c 3 -W 5 10.88.0.1");
    assert!(out.contains("3 packets received"), "{out}");
    let out = ns_run(&lan, &["ping", "-c", "3", "-W", "5", "10.88.0.50"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    poweroff(g);
    wait_switch_gone(h, "lan");
}

#[test]
fn vxlan_interoperates_with_a_kernel_vxlan_device() {
    let pid = std::process::id();
    let ours = netns::Netns::create(&format!("ls-vxa-{pid}"));
    let kernel = netns::Netns::create(&format!("ls-vxk-{pid}"));
    ours.veth("u1", &kernel, "u2");
    ours.address("u1", "172.31.9.1/24");
    kernel.address("u2", "172.31.9.2/24");
    kernel.ip(&[
        "link",
        "add",
        "vx0",
        "type",
        "vxlan",
        "id",
        "4242",
        "remote",
        "172.31.9.1",
        "dstport",
        "4789",
        "dev",
        "u2",
    ]);
    kernel.address("vx0", "10.89.0.1/24");
    // A veth hands the tunnel's packets on unsegmented and with inner
    // checksums left to offload, which no physical wire does: make the
    // kernel finish them as it would for a NIC without offloads.
    let out = ns_run(
        &kernel,
        &[
            "ethtool", "-K", "u2", "tso", "off", "gso", "off", "tx", "off",
        ],
    );
    assert!(
        out.status.success(),
        "ethtool: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let body: Vec<u8> = (0..4u32 << 20)
        .map(|i| (i.wrapping_mul(2_246_822_519) >> 11) as u8)
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let blob = dir.path().join("blob");
    std::fs::write(&blob, &body).unwrap();
    let hash = sha256_of(&blob);
    serve_http_in(&kernel, "10.89.0.1:8080", body);

    let home = tempfile::tempdir().unwrap();
    let h = home.path();
    ok(
        h,
        &[
            "net",
            "create",
            "ov",
            "--mode",
            "internal",
            "--vxlan",
            "4242",
            "--local",
            "172.31.9.1",
            "--remote",
            "172.31.9.2",
        ],
    );
    let prefix = prefix_of(&ours);
    let prefix: Vec<&str> = prefix.iter().map(String::as_str).collect();
    let mut g = boot_on(h, &prefix, "lockstep.ip=10.89.0.50/24", "network=ov");
    // VXLAN's 50 bytes of headers come off the guest's MTU.
    g.run("ip link set eth0 mtu 1450");
    let out = g.run("ping -c 3 -W 5 10.89.0.1");
    assert!(out.contains("3 packets received"), "{out}");
    let out = ns_run(&kernel, &["ping", "-c", "3", "-W", "5", "10.89.0.50"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    g.run("wget -q -O /tmp/b http://10.89.0.1:8080/b");
    let out = g.run("sha256sum /tmp/b");
    assert!(out.contains(&hash), "{out} (want {hash})");
    let s = status(h, "ov");
    let vx = port_of_kind(&s, "vxlan");
    assert!(vx["counters"]["rx_frames"].as_u64() > Some(100), "{vx}");
    poweroff(g);
    wait_switch_gone(h, "ov");
}

#[test]
fn two_lockstep_hosts_share_a_vni_and_another_vni_is_isolated() {
    let pid = std::process::id();
    let h1 = netns::Netns::create(&format!("ls-vh1-{pid}"));
    let h2 = netns::Netns::create(&format!("ls-vh2-{pid}"));
    h1.veth("u1", &h2, "u2");
    h1.address("u1", "172.31.10.1/24");
    h2.address("u2", "172.31.10.2/24");
    h2.ip(&["addr", "add", "172.31.10.3/24", "dev", "u2"]);
    let (home1, home2, home3) = (
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    );
    let create = |home: &Path, vni: &str, local: &str, remote: &str| {
        ok(
            home,
            &[
                "net", "create", "ov", "--mode", "internal", "--vxlan", vni, "--local", local,
                "--remote", remote,
            ],
        );
    };
    create(home1.path(), "77", "172.31.10.1", "172.31.10.2");
    create(home2.path(), "77", "172.31.10.2", "172.31.10.1");
    // Another segment on host 2 (its own tunnel address) sends to host 1 too.
    create(home3.path(), "78", "172.31.10.3", "172.31.10.1");
    let p1 = prefix_of(&h1);
    let p1: Vec<&str> = p1.iter().map(String::as_str).collect();
    let p2 = prefix_of(&h2);
    let p2: Vec<&str> = p2.iter().map(String::as_str).collect();
    let mut a = boot_on(home1.path(), &p1, "lockstep.ip=10.90.0.1/24", "network=ov");
    let mut b = boot_on(home2.path(), &p2, "lockstep.ip=10.90.0.2/24", "network=ov");
    let mut c = boot_on(home3.path(), &p2, "lockstep.ip=10.90.0.3/24", "network=ov");
    for g in [&mut a, &mut b, &mut c] {
        g.run("ip link set eth0 mtu 1450");
    }
    let out = a.run("ping -c 3 -W 5 10.90.0.2");
    assert!(out.contains("3 packets received"), "{out}");
    let out = b.run("ping -c 3 -W 5 10.90.0.1");
    assert!(out.contains("3 packets received"), "{out}");
    // VNI 78 reaches neither.
    let out = c.run("ping -c 2 -W 3 10.90.0.1");
    assert!(out.contains("0 packets received"), "{out}");
    let out = a.run("ping -c 2 -W 3 10.90.0.3");
    assert!(out.contains("0 packets received"), "{out}");
    // Host 1 refused VNI 78's frames and counted them.
    let s = status(home1.path(), "ov");
    let vx = port_of_kind(&s, "vxlan");
    assert!(vx["counters"]["rx_malformed"].as_u64() > Some(0), "{vx}");
    for (g, home) in [(a, home1.path()), (b, home2.path()), (c, home3.path())] {
        poweroff(g);
        wait_switch_gone(home, "ov");
    }
}

#[test]
fn a_kept_vm_names_a_network_and_keeps_it_from_deletion() {
    let home = tempfile::tempdir().unwrap();
    let h = home.path();
    ok(h, &["net", "create", "lab", "--mode", "internal"]);
    ok(
        h,
        &[
            "vm",
            "create",
            "web",
            "--net",
            "network=lab",
            "--disk-size",
            "64M",
        ],
    );
    let shown = ok(h, &["vm", "show", "web"]);
    assert!(shown.contains("network=lab"), "{shown}");
    let out = lockstep(h, &["net", "delete", "lab"]);
    assert_eq!(out.status.code(), Some(3));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("named by kept VM(s) web"), "{err}");
    // A NIC naming a network is checked when the VM is made.
    let out = lockstep(h, &["vm", "create", "bad", "--net", "network=../x"]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    ok(h, &["vm", "delete", "web"]);
    ok(h, &["net", "delete", "lab"]);
}
