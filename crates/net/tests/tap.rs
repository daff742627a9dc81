//! The TAP backend against the real kernel, inside throwaway network
//! namespaces so that the host's own network is never touched. Needs root
//! (or CAP_NET_ADMIN + CAP_SYS_ADMIN), `ip` and /dev/net/tun.

use std::fs::File;
use std::net::{Ipv4Addr, UdpSocket};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use net::tap::{self, TapError};
use net::{FrameRx, FrameTx, MacAddr, NetError, NetSpec, MAX_FRAME_LEN};
use rustix::thread::{
    capabilities, move_into_link_name_space, set_capabilities, CapabilitySet, LinkNameSpaceType,
};

const HOST_IP: Ipv4Addr = Ipv4Addr::new(10, 99, 0, 1);
const GUEST_IP: Ipv4Addr = Ipv4Addr::new(10, 99, 0, 2);
const ETHERTYPE_IPV4: u16 = 0x0800;
const ETHERTYPE_ARP: u16 = 0x0806;

/// A network namespace that is deleted when dropped, also on panic.
struct NetNs(String);

impl NetNs {
    fn new() -> NetNs {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let name = format!("lockstep-net-test-{}-{n}", std::process::id());
        run(&["ip", "netns", "add", &name]);
        NetNs(name)
    }

    /// Runs `ip ARGS` inside the namespace; returns its stdout.
    fn ip(&self, args: &[&str]) -> String {
        let mut argv = vec!["ip", "-n", &self.0];
        argv.extend_from_slice(args);
        run(&argv)
    }

    /// Runs `f` on a thread that has moved into the namespace: sockets and
    /// TAPs it creates belong to the namespace.
    fn enter<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        let handle = File::open(format!("/run/netns/{}", self.0)).unwrap();
        std::thread::scope(|scope| {
            scope
                .spawn(|| {
                    move_into_link_name_space(
                        std::os::fd::AsFd::as_fd(&handle),
                        Some(LinkNameSpaceType::Network),
                    )
                    .unwrap();
                    f()
                })
                .join()
                .unwrap()
        })
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

fn run(argv: &[&str]) -> String {
    let out = Command::new(argv[0]).args(&argv[1..]).output().unwrap();
    assert!(
        out.status.success(),
        "{argv:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn ethertype(frame: &[u8]) -> Option<u16> {
    Some(u16::from_be_bytes(frame.get(12..14)?.try_into().ok()?))
}

/// Reads frames until one satisfies `wanted` (the kernel also sends IPv6
/// router solicitations and the like); panics after a few seconds.
fn recv_until(rx: &mut dyn FrameRx, mut wanted: impl FnMut(&[u8]) -> bool) -> Vec<u8> {
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut buf = vec![0; MAX_FRAME_LEN];
    while Instant::now() < deadline {
        if let Some(len) = rx.recv(&mut buf, Duration::from_millis(100)).unwrap() {
            if wanted(&buf[..len]) {
                return buf[..len].to_vec();
            }
        }
    }
    panic!("the awaited frame never arrived");
}

fn arp_reply(from_mac: MacAddr, from_ip: Ipv4Addr, to_mac: &[u8], to_ip: Ipv4Addr) -> Vec<u8> {
    let mut frame = Vec::with_capacity(42);
    frame.extend_from_slice(to_mac);
    frame.extend_from_slice(&from_mac.octets());
    frame.extend_from_slice(&ETHERTYPE_ARP.to_be_bytes());
    // Ethernet/IPv4, 6-byte and 4-byte addresses, op 2 (reply).
    frame.extend_from_slice(&[0, 1, 8, 0, 6, 4, 0, 2]);
    frame.extend_from_slice(&from_mac.octets());
    frame.extend_from_slice(&from_ip.octets());
    frame.extend_from_slice(to_mac);
    frame.extend_from_slice(&to_ip.octets());
    frame
}

#[test]
fn arp_and_ip_flow_both_ways_through_a_tap() {
    let ns = NetNs::new();
    let guest_mac = MacAddr::derive(b"tap test guest", 0);
    let spec: NetSpec = "tap=lstap0".parse().unwrap();
    let (mut tx, mut rx) = ns.enter(|| net::open(&spec, guest_mac, None)).unwrap();
    ns.ip(&["link", "set", "lstap0", "up"]);
    ns.ip(&["addr", "add", "10.99.0.1/24", "dev", "lstap0"]);

    // A datagram to the "guest" makes the kernel ask who has GUEST_IP.
    ns.enter(|| {
        let socket = UdpSocket::bind((HOST_IP, 0)).unwrap();
        socket.send_to(b"ping", (GUEST_IP, 9)).unwrap();
    });
    let request = recv_until(&mut *rx, |f| {
        ethertype(f) == Some(ETHERTYPE_ARP)
            && f.len() >= 42
            && f[20..22] == [0, 1]
            && f[38..42] == GUEST_IP.octets()
    });
    assert_eq!(request[0..6], [0xff; 6], "ARP request not broadcast");
    assert_eq!(request[28..32], HOST_IP.octets());
    let host_mac = request[22..28].to_vec();

    tx.send(&arp_reply(guest_mac, GUEST_IP, &host_mac, HOST_IP))
        .unwrap();

    // The kernel learned our address and releases the queued datagram to it.
    let datagram = recv_until(&mut *rx, |f| ethertype(f) == Some(ETHERTYPE_IPV4));
    assert_eq!(datagram[0..6], guest_mac.octets());
    assert_eq!(datagram[6..12], host_mac[..]);
    assert_eq!(datagram[30..34], GUEST_IP.octets(), "IPv4 destination");
    assert!(datagram.ends_with(b"ping"));
    let neigh = ns.ip(&["neigh", "show", "10.99.0.2", "dev", "lstap0"]);
    assert!(
        neigh.contains(&format!("lladdr {guest_mac}")),
        "ip neigh: {neigh}"
    );
}

#[test]
fn a_created_tap_goes_away_with_its_halves() {
    let ns = NetNs::new();
    let (tx, rx) = ns.enter(|| tap::open("lstap1")).unwrap();
    assert!(ns.ip(&["link", "show", "lstap1"]).contains("lstap1"));
    drop(tx);
    assert!(
        ns.ip(&["link", "show", "lstap1"]).contains("lstap1"),
        "rx alone keeps it"
    );
    drop(rx);
    // The kernel unregisters the device after the last close, not during
    // it (and a process another test thread forks may hold the fd until it
    // execs): wait for it to go.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while ns.ip(&["link", "show"]).contains("lstap1") {
        assert!(
            std::time::Instant::now() < deadline,
            "lstap1 still there 10 s after its last fd closed"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

#[test]
fn a_tap_that_is_down_drops_frames_quietly() {
    let ns = NetNs::new();
    let (mut tx, mut rx) = ns.enter(|| tap::open("lstap3")).unwrap();
    let mac = MacAddr::derive(b"down", 0);
    let frame = arp_reply(mac, GUEST_IP, &[0xff; 6], HOST_IP);
    tx.send(&frame).unwrap();
    // Too short for Ethernet: the kernel's refusal is passed on.
    ns.ip(&["link", "set", "lstap3", "up"]);
    assert!(tx.send(&frame[..10]).is_err());
    tx.send(&frame).unwrap();
    // Nothing a sender writes comes back on the receive side.
    let mut buf = vec![0; MAX_FRAME_LEN];
    while let Some(len) = rx.recv(&mut buf, Duration::from_millis(200)).unwrap() {
        assert_ne!(&buf[..len], &frame[..], "own frame echoed");
    }
}

#[test]
fn a_persistent_tap_is_attached_to_and_busy_while_attached() {
    let ns = NetNs::new();
    ns.ip(&["tuntap", "add", "dev", "lstap2", "mode", "tap"]);
    let first = ns.enter(|| tap::open("lstap2")).unwrap();
    let err = ns.enter(|| tap::open("lstap2")).unwrap_err();
    assert!(
        matches!(err, TapError::Busy(ref name) if name == "lstap2"),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        "TAP lstap2: device busy (another process has it open)"
    );
    drop(first);
    // Persistent: still there, and free again.
    assert!(ns.ip(&["link", "show", "lstap2"]).contains("lstap2"));
    assert!(ns.enter(|| tap::open("lstap2")).is_ok());
}

#[test]
fn an_interface_that_is_not_a_tap_is_refused() {
    let ns = NetNs::new();
    let err = ns.enter(|| tap::open("lo")).unwrap_err();
    assert!(
        matches!(err, TapError::NotTap(ref name) if name == "lo"),
        "{err:?}"
    );
    assert!(err.to_string().starts_with("TAP lo: "), "{err}");

    ns.ip(&["tuntap", "add", "dev", "lstun0", "mode", "tun"]);
    let spec: NetSpec = "tap=lstun0".parse().unwrap();
    let err = ns
        .enter(|| net::open(&spec, MacAddr::derive(b"x", 0), None))
        .map(|_| ())
        .unwrap_err();
    assert!(matches!(err, NetError::Tap(TapError::NotTap(_))), "{err:?}");
    assert_eq!(
        err.to_string(),
        "TAP lstun0: an interface of that name exists but is not a single-queue TAP device"
    );
}

#[test]
fn creating_a_tap_without_cap_net_admin_is_refused() {
    let ns = NetNs::new();
    let err = ns
        .enter(|| {
            // Capabilities are per thread: only this one loses CAP_NET_ADMIN.
            let mut caps = capabilities(None).unwrap();
            caps.effective.remove(CapabilitySet::NET_ADMIN);
            set_capabilities(None, caps).unwrap();
            tap::open("lstap4")
        })
        .unwrap_err();
    assert!(
        matches!(err, TapError::PermissionDenied(ref name) if name == "lstap4"),
        "{err:?}"
    );
    assert!(
        err.to_string().contains("needs root or CAP_NET_ADMIN"),
        "{err}"
    );
}

#[test]
fn a_bad_tap_spec_is_refused_before_any_syscall() {
    let err = "tap=much-too-long-name".parse::<NetSpec>().unwrap_err();
    assert!(err.to_string().contains("longer than 15 bytes"), "{err}");
}
