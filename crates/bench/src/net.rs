//! `lockstep bench net`: TCP throughput between the guest and the host over
//! a TAP, guest → host and host → guest, under lockstep and under QEMU TCG on
//! the same kernel, firmware and initramfs. `--via nat` measures the same
//! through user-mode NAT instead: lockstep's `nat` network (its switch's
//! gateway at .2, host sockets to loopback) against QEMU's `-netdev user`
//! (slirp, host at 10.0.2.2), the host end on 127.0.0.1 in the namespace.
//!
//! Each VM runs inside a network namespace created for it, with a TAP whose
//! host-side address exists only in that namespace. The host end is a
//! `TcpListener` per role in this process, bound inside the namespace, and
//! it does the timing for both hypervisors alike: guest → host runs from
//! accepting the connection to the last byte received; host → guest runs
//! from accepting the connection to the guest's acknowledgement, a further
//! connection it makes once it has read everything up to the host's FIN.

use crate::guest::{ratio, BenchError, BenchVm, GuestBenchArgs, RunResult, Scratch};
use crate::table::rate_table;
use clap::Args;
use std::ffi::OsString;
use std::fmt;
use std::fs::File;
use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::process::{Command, ExitCode};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// `/init` of the benchmark initramfs; the `@…@` placeholders are filled in.
const GUEST_SCRIPT: &str = include_str!("net.sh");

/// Addresses that exist only inside the benchmark's namespaces.
const HOST_IP: Ipv4Addr = Ipv4Addr::new(10, 79, 0, 1);
const GUEST_IP: Ipv4Addr = Ipv4Addr::new(10, 79, 0, 2);
const PREFIX_LEN: u8 = 24;
/// The guest NIC's address under both hypervisors (locally administered).
const GUEST_MAC: &str = "02:4c:53:00:00:02";
/// The TAP's name inside each namespace.
const TAP: &str = "lsbench0";
/// Host ports: the guest sends to SINK, reads from SOURCE, then connects to ACK.
const PORTS: Ports = Ports {
    sink: 5001,
    source: 5002,
    ack: 5003,
};
/// Bytes per `dd` block in the guest.
const GUEST_BLOCK: u32 = 64 << 10;
/// Host-side buffer per read or write.
const CHUNK: usize = 256 << 10;
/// A transfer that makes no progress for this long has failed.
const IDLE_LIMIT: Duration = Duration::from_secs(60);
/// How often blocked host-side calls look up to check for the VM's end.
const POLL: Duration = Duration::from_millis(1);
const SOCKET_TIMEOUT: Duration = Duration::from_millis(500);

#[derive(Args, Debug)]
pub struct NetBenchArgs {
    /// Sent in each direction (whole MiB, up to 4G).
    #[arg(long = "size", value_name = "SIZE", default_value = "64M", value_parser = vocab::size_in::<u32>(1 << 20, 1..=4096))]
    pub size_mib: u32,
    #[arg(long = "size-mib", hide = true, value_parser = vocab::renamed("--size 64M"))]
    old_size_mib: Option<String>,
    /// What joins the guest to the host: a TAP (root), or user-mode NAT —
    /// lockstep's `nat` network against QEMU's `-netdev user`.
    #[arg(long, value_enum, default_value_t = Via::Tap)]
    pub via: Via,
    #[command(flatten)]
    pub vm: GuestBenchArgs,
}

/// `--via`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Via {
    /// A TAP in a namespace.
    Tap,
    /// User-mode NAT (lockstep's `nat` network; QEMU's `-netdev user`).
    Nat,
}

/// The lockstep NAT network's subnet in the benchmark's own store.
const NAT_SUBNET: &str = "10.79.8.0/24";

#[derive(Debug, thiserror::Error)]
pub enum NetBenchError {
    #[error(
        "lockstep bench net needs root: it creates network namespaces with TAP devices \
         (try sudo)"
    )]
    NotRoot,
    #[error("`{command}` failed: {reason}")]
    Ip { command: String, reason: String },
    #[error("network namespace {name}: {source}")]
    Namespace { name: String, source: io::Error },
    #[error("cannot listen on {addr}: {source}")]
    Listen { addr: SocketAddr, source: io::Error },
    #[error("{what}: {source}")]
    Transfer { what: String, source: TransferError },
    #[error(transparent)]
    Bench(#[from] BenchError),
    #[error("the benchmark's {0} thread panicked")]
    Panicked(&'static str),
}

/// A transfer that did not complete.
#[derive(Debug, thiserror::Error)]
#[error("{direction}: {reason}")]
pub struct TransferError {
    direction: Direction,
    reason: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Direction {
    GuestToHost,
    HostToGuest,
}

impl Direction {
    const BOTH: [Direction; 2] = [Direction::GuestToHost, Direction::HostToGuest];

    /// The key in `--json` output.
    fn key(self) -> &'static str {
        match self {
            Direction::GuestToHost => "guest_to_host",
            Direction::HostToGuest => "host_to_guest",
        }
    }

    fn fail(self, reason: impl Into<String>) -> TransferError {
        TransferError {
            direction: self,
            reason: reason.into(),
        }
    }
}

impl fmt::Display for Direction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Direction::GuestToHost => "guest -> host",
            Direction::HostToGuest => "host -> guest",
        })
    }
}

#[derive(Debug, Clone, Copy)]
struct Ports {
    sink: u16,
    source: u16,
    ack: u16,
}

fn guest_script(size_mib: u32, host: &str, ports: Ports) -> String {
    let blocks = u64::from(size_mib) * (1 << 20) / u64::from(GUEST_BLOCK);
    GUEST_SCRIPT
        .replace("@MIB@", &size_mib.to_string())
        .replace("@BLOCKS@", &blocks.to_string())
        .replace("@HOST@", host)
        .replace("@SINK@", &ports.sink.to_string())
        .replace("@SOURCE@", &ports.source.to_string())
        .replace("@ACK@", &ports.ack.to_string())
}

fn kernel_ip_arg() -> String {
    format!("lockstep.ip={GUEST_IP}/{PREFIX_LEN}")
}

fn lockstep_net_flags(tap: &str, mac: &str) -> Vec<OsString> {
    vec!["--net".into(), format!("tap={tap},mac={mac}").into()]
}

fn qemu_net_flags(tap: &str, mac: &str) -> Vec<OsString> {
    vec![
        "-netdev".into(),
        format!("tap,id=n0,ifname={tap},script=no,downscript=no").into(),
        "-device".into(),
        format!("virtio-net-device,netdev=n0,mac={mac}").into(),
    ]
}

/// Bytes moved in one direction and the host's seconds for them.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Transfer {
    bytes: u64,
    seconds: f64,
}

impl Transfer {
    fn mib_per_s(self) -> f64 {
        if self.seconds > 0.0 {
            self.bytes as f64 / f64::from(1 << 20) / self.seconds
        } else {
            f64::NAN
        }
    }
}

/// What the host measured for one hypervisor.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Measured {
    guest_to_host: Transfer,
    host_to_guest: Transfer,
    wall: f64,
}

impl Measured {
    fn get(&self, direction: Direction) -> Transfer {
        match direction {
            Direction::GuestToHost => self.guest_to_host,
            Direction::HostToGuest => self.host_to_guest,
        }
    }
}

pub fn run(args: NetBenchArgs) -> Result<ExitCode, Box<dyn std::error::Error>> {
    if !rustix::process::geteuid().is_root() {
        return Err(NetBenchError::NotRoot.into());
    }
    let scratch = Scratch::new("bench-net")?;
    let bytes = u64::from(args.size_mib) << 20;
    let (ours, qemu) = match args.via {
        Via::Tap => {
            let script = guest_script(args.size_mib, &HOST_IP.to_string(), PORTS);
            let vm = BenchVm::prepare(&args.vm, &script, &scratch)?.with_append(&kernel_ip_arg());
            eprintln!("bench net: {} MiB each way under lockstep …", args.size_mib);
            let ours = measure("lockstep", Some(TAP), HOST_IP, bytes, || {
                vm.run_lockstep(&lockstep_net_flags(TAP, GUEST_MAC), &[])
            })?;
            let qemu = if vm.wants_qemu() {
                eprintln!("bench net: the same under QEMU TCG …");
                Some(measure("QEMU", Some(TAP), HOST_IP, bytes, || {
                    vm.run_qemu(&qemu_net_flags(TAP, GUEST_MAC), &[])
                })?)
            } else {
                None
            };
            (ours, qemu)
        }
        Via::Nat => {
            // The guest's DHCP lease gives it its gateway: the host end.
            let script = guest_script(
                args.size_mib,
                "$(ip route | awk '/^default/ {print $3}')",
                PORTS,
            );
            let home = scratch.path().join("home");
            let networks = ::net::Networks::at(home.join("networks"));
            let config =
                ::net::NetworkConfig::new("bench", ::net::Mode::Nat, NAT_SUBNET.parse().ok());
            networks.create(&config).map_err(|e| NetBenchError::Ip {
                command: "creating the benchmark's nat network".into(),
                reason: e.to_string(),
            })?;
            let vm =
                BenchVm::prepare(&args.vm, &script, &scratch)?.with_env("LOCKSTEP_HOME", &home);
            eprintln!(
                "bench net: {} MiB each way through lockstep's nat network …",
                args.size_mib
            );
            let flags: Vec<OsString> = vec![
                "--net".into(),
                format!("network=bench,mac={GUEST_MAC}").into(),
            ];
            let ours = measure("lockstep", None, Ipv4Addr::LOCALHOST, bytes, || {
                vm.run_lockstep(&flags, &[])
            })?;
            let qemu = if vm.wants_qemu() {
                eprintln!("bench net: the same through QEMU's -netdev user …");
                let flags: Vec<OsString> = vec![
                    "-netdev".into(),
                    "user,id=n0".into(),
                    "-device".into(),
                    format!("virtio-net-device,netdev=n0,mac={GUEST_MAC}").into(),
                ];
                Some(measure("QEMU", None, Ipv4Addr::LOCALHOST, bytes, || {
                    vm.run_qemu(&flags, &[])
                })?)
            } else {
                None
            };
            (ours, qemu)
        }
    };
    if args.vm.json {
        println!("{}", json(args.size_mib, args.via, &ours, qemu.as_ref()));
    } else {
        print!("{}", table(args.size_mib, args.via, &ours, qemu.as_ref()));
    }
    Ok(ExitCode::SUCCESS)
}

/// Boot one hypervisor (`boot` starts it and waits for it) in a fresh
/// namespace while this process serves the guest's connections; the
/// namespace is gone when this returns.
fn measure(
    what: &str,
    tap: Option<&str>,
    listen: Ipv4Addr,
    bytes: u64,
    boot: impl FnOnce() -> Result<RunResult, BenchError> + Send,
) -> Result<Measured, NetBenchError> {
    let ns = Namespace::with_tap(&what.to_ascii_lowercase(), tap)?;
    let listeners = ns.within(|| Listeners::bind(listen, PORTS))?;
    let vm_ended = AtomicBool::new(false);
    let (run, served) = std::thread::scope(|s| {
        let server = s.spawn(|| serve(listeners, bytes, &vm_ended));
        let run = ns.within(|| Ok(boot()?));
        vm_ended.store(true, Ordering::Relaxed);
        let served = server.join().map_err(|_| NetBenchError::Panicked("server"));
        (run, served)
    });
    let served = served?;
    match (run, served) {
        (Ok(run), Ok(served)) => Ok(served.with_wall(run.wall)),
        (Ok(_), Err(source)) => Err(NetBenchError::Transfer {
            what: what.into(),
            source,
        }),
        (Err(run), served) => {
            if let Err(source) = served {
                eprintln!("bench net: {what}: {source}");
            }
            Err(run)
        }
    }
}

/// Both directions, before the wall time is known.
struct Served {
    guest_to_host: Transfer,
    host_to_guest: Transfer,
}

impl Served {
    fn with_wall(self, wall: f64) -> Measured {
        Measured {
            guest_to_host: self.guest_to_host,
            host_to_guest: self.host_to_guest,
            wall,
        }
    }
}

/// The host's three listening sockets.
struct Listeners {
    sink: TcpListener,
    source: TcpListener,
    ack: TcpListener,
}

impl Listeners {
    fn bind(ip: Ipv4Addr, ports: Ports) -> Result<Listeners, NetBenchError> {
        let one = |port| -> Result<TcpListener, NetBenchError> {
            let addr = SocketAddr::from((ip, port));
            let listen = |source| NetBenchError::Listen { addr, source };
            let listener = TcpListener::bind(addr).map_err(listen)?;
            // Accepting polls, so the server notices when the VM has ended.
            listener.set_nonblocking(true).map_err(listen)?;
            Ok(listener)
        };
        Ok(Listeners {
            sink: one(ports.sink)?,
            source: one(ports.source)?,
            ack: one(ports.ack)?,
        })
    }
}

/// Serve the guest script's three connections in its order. Consumes the
/// listeners: once this returns, further connections are refused, so a
/// guest never waits on a host that gave up.
fn serve(l: Listeners, bytes: u64, vm_ended: &AtomicBool) -> Result<Served, TransferError> {
    let guest_to_host = receive(&l.sink, bytes, vm_ended)?;
    let host_to_guest = send(&l.source, &l.ack, bytes, vm_ended)?;
    Ok(Served {
        guest_to_host,
        host_to_guest,
    })
}

/// Accept one connection and count `bytes` from it; the time runs from
/// the accept to the last byte.
fn receive(
    listener: &TcpListener,
    bytes: u64,
    vm_ended: &AtomicBool,
) -> Result<Transfer, TransferError> {
    let dir = Direction::GuestToHost;
    let (mut conn, start) = accept(listener, vm_ended, dir)?;
    let mut buf = vec![0u8; CHUNK];
    let mut got = 0u64;
    let mut last = start;
    while got < bytes {
        let want = usize::try_from(bytes - got).map_or(CHUNK, |left| left.min(CHUNK));
        match conn.read(&mut buf[..want]) {
            Ok(0) => {
                return Err(dir.fail(format!(
                    "the guest closed the connection after {got} of {bytes} bytes"
                )))
            }
            Ok(n) => {
                got += n as u64;
                last = Instant::now();
            }
            Err(e) if is_timeout(&e) => stalled(dir, last, vm_ended, got, bytes)?,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(dir.fail(format!("reading after {got} of {bytes} bytes: {e}"))),
        }
    }
    Ok(Transfer {
        bytes: got,
        seconds: (last - start).as_secs_f64(),
    })
}

/// Accept one connection on `source`, send `bytes` and close it; the time
/// runs from that accept to the guest's connection on `ack`.
fn send(
    source: &TcpListener,
    ack: &TcpListener,
    bytes: u64,
    vm_ended: &AtomicBool,
) -> Result<Transfer, TransferError> {
    let dir = Direction::HostToGuest;
    let (mut conn, start) = accept(source, vm_ended, dir)?;
    let buf = vec![0u8; CHUNK];
    let mut sent = 0u64;
    let mut progress = start;
    while sent < bytes {
        let len = usize::try_from(bytes - sent).map_or(CHUNK, |left| left.min(CHUNK));
        match conn.write(&buf[..len]) {
            Ok(0) => {
                return Err(dir.fail(format!("the connection took no more after {sent} bytes")))
            }
            Ok(n) => {
                sent += n as u64;
                progress = Instant::now();
            }
            Err(e) if is_timeout(&e) => stalled(dir, progress, vm_ended, sent, bytes)?,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(dir.fail(format!("writing after {sent} of {bytes} bytes: {e}"))),
        }
    }
    // The FIN tells the guest it has everything; it acknowledges once it
    // has read up to it.
    drop(conn);
    let (_, end) = accept(ack, vm_ended, dir)?;
    Ok(Transfer {
        bytes: sent,
        seconds: (end - start).as_secs_f64(),
    })
}

fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

/// A read or write timed out: fine unless the VM is gone or nothing has
/// moved for too long.
fn stalled(
    dir: Direction,
    since: Instant,
    vm_ended: &AtomicBool,
    done: u64,
    bytes: u64,
) -> Result<(), TransferError> {
    if vm_ended.load(Ordering::Relaxed) {
        return Err(dir.fail(format!("the VM ended after {done} of {bytes} bytes")));
    }
    if since.elapsed() > IDLE_LIMIT {
        return Err(dir.fail(format!(
            "nothing moved for {} s after {done} of {bytes} bytes",
            IDLE_LIMIT.as_secs()
        )));
    }
    Ok(())
}

/// The next connection on `listener`, in blocking mode with timeouts, and
/// when it was accepted; an error once the VM has ended without connecting.
fn accept(
    listener: &TcpListener,
    vm_ended: &AtomicBool,
    dir: Direction,
) -> Result<(TcpStream, Instant), TransferError> {
    let port = listener.local_addr().map(|a| a.port()).unwrap_or_default();
    loop {
        match listener.accept() {
            Ok((conn, _)) => {
                let at = Instant::now();
                let setup = conn
                    .set_nonblocking(false)
                    .and_then(|()| conn.set_read_timeout(Some(SOCKET_TIMEOUT)))
                    .and_then(|()| conn.set_write_timeout(Some(SOCKET_TIMEOUT)));
                setup.map_err(|e| dir.fail(format!("configuring the connection: {e}")))?;
                return Ok((conn, at));
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                if vm_ended.load(Ordering::Relaxed) {
                    return Err(dir.fail(format!("the VM ended without connecting to port {port}")));
                }
                std::thread::sleep(POLL);
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(dir.fail(format!("accepting on port {port}: {e}"))),
        }
    }
}

/// A network namespace holding one TAP with the host address; deleted on drop.
struct Namespace {
    name: String,
}

impl Namespace {
    /// With `tap`, a TAP holding the host address; without, loopback only.
    fn with_tap(tag: &str, tap: Option<&str>) -> Result<Namespace, NetBenchError> {
        let name = format!("lockstep-bench-{tag}-{}", std::process::id());
        // A namespace left behind by an earlier process with our pid.
        let _ = Command::new("ip").args(["netns", "del", &name]).output();
        ip(&["netns", "add", &name])?;
        let ns = Namespace { name };
        let host = format!("{HOST_IP}/{PREFIX_LEN}");
        ip(&["-n", &ns.name, "link", "set", "lo", "up"])?;
        let Some(tap) = tap else {
            return Ok(ns);
        };
        ip(&["-n", &ns.name, "tuntap", "add", "dev", tap, "mode", "tap"])?;
        ip(&["-n", &ns.name, "addr", "add", &host, "dev", tap])?;
        ip(&["-n", &ns.name, "link", "set", tap, "up"])?;
        Ok(ns)
    }

    /// Run `f` on a thread that has entered the namespace: sockets it
    /// creates and processes it starts live there.
    fn within<T: Send>(
        &self,
        f: impl FnOnce() -> Result<T, NetBenchError> + Send,
    ) -> Result<T, NetBenchError> {
        let path = format!("/run/netns/{}", self.name);
        let fail = |source| NetBenchError::Namespace {
            name: self.name.clone(),
            source,
        };
        let handle = File::open(&path).map_err(fail)?;
        std::thread::scope(|s| {
            s.spawn(move || {
                rustix::thread::move_into_link_name_space(
                    std::os::fd::AsFd::as_fd(&handle),
                    Some(rustix::thread::LinkNameSpaceType::Network),
                )
                .map_err(|errno| fail(errno.into()))?;
                f()
            })
            .join()
            .map_err(|_| NetBenchError::Panicked("namespace"))?
        })
    }
}

impl Drop for Namespace {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
    }
}

fn ip(args: &[&str]) -> Result<(), NetBenchError> {
    let command = format!("ip {}", args.join(" "));
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| NetBenchError::Ip {
            command: command.clone(),
            reason: format!("{e} (is iproute2 installed?)"),
        })?;
    if out.status.success() {
        return Ok(());
    }
    Err(NetBenchError::Ip {
        command,
        reason: String::from_utf8_lossy(&out.stderr).trim().to_string(),
    })
}

fn table(size_mib: u32, via: Via, ours: &Measured, qemu: Option<&Measured>) -> String {
    let path = match via {
        Via::Tap => "through a TAP (virtio-net)",
        Via::Nat => "through user-mode NAT (lockstep's nat network; QEMU's -netdev user)",
    };
    let mut t = format!(
        "{size_mib} MiB each way over TCP {path}, timed on the host; \
         ratio = lockstep / qemu throughput\n"
    );
    t += &rate_table(
        "direction",
        Direction::BOTH.map(|d| (d.to_string(), ours.get(d).mib_per_s())),
        qemu.map(|q| Direction::BOTH.map(|d| q.get(d).mib_per_s()).to_vec()),
        ours.wall,
        qemu.map(|q| q.wall),
    )
    .to_string();
    t
}

fn json(size_mib: u32, via: Via, ours: &Measured, qemu: Option<&Measured>) -> serde_json::Value {
    let per_direction = |f: &dyn Fn(Direction) -> f64| {
        Direction::BOTH
            .iter()
            .map(|&d| (d.key().to_string(), f(d).into()))
            .collect::<serde_json::Map<String, serde_json::Value>>()
    };
    let obj = |m: &Measured| {
        serde_json::json!({
            "mib_per_s": per_direction(&|d| m.get(d).mib_per_s()),
            "seconds": per_direction(&|d| m.get(d).seconds),
            "wall": m.wall,
        })
    };
    let ratios =
        qemu.map(|q| per_direction(&|d| ratio(ours.get(d).mib_per_s(), q.get(d).mib_per_s())));
    serde_json::json!({
        "size_mib": size_mib,
        "via": match via { Via::Tap => "tap", Via::Nat => "nat" },
        "lockstep": obj(ours),
        "qemu": qemu.map(obj),
        "ratio": ratios,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Shutdown;

    const LOOPBACK: Ipv4Addr = Ipv4Addr::LOCALHOST;

    #[test]
    fn the_script_gets_the_size_host_and_ports() {
        let ports = Ports {
            sink: 7001,
            source: 7002,
            ack: 7003,
        };
        let script = guest_script(64, &HOST_IP.to_string(), ports);
        assert!(script.contains("bs=64k count=1024 "), "{script}");
        assert!(script.contains("| nc 10.79.0.1 7001"), "{script}");
        assert!(script.contains("nc 10.79.0.1 7002 </dev/null >/dev/null"));
        assert!(script.contains("nc 10.79.0.1 7003 </dev/null"));
        assert!(!script.contains('@'), "placeholder left in {script}");
        assert_eq!(kernel_ip_arg(), "lockstep.ip=10.79.0.2/24");
    }

    #[test]
    fn both_hypervisors_get_the_same_tap_and_mac() {
        let text = |flags: Vec<OsString>| -> Vec<String> {
            flags
                .iter()
                .map(|f| f.to_string_lossy().into_owned())
                .collect()
        };
        assert_eq!(
            text(lockstep_net_flags("t0", GUEST_MAC)),
            ["--net", "tap=t0,mac=02:4c:53:00:00:02"]
        );
        assert_eq!(
            text(qemu_net_flags("t0", GUEST_MAC)),
            [
                "-netdev",
                "tap,id=n0,ifname=t0,script=no,downscript=no",
                "-device",
                "virtio-net-device,netdev=n0,mac=02:4c:53:00:00:02"
            ]
        );
        let spec: net::NetSpec = format!("tap={TAP},mac={GUEST_MAC}").parse().expect("valid");
        assert_eq!(spec.mac.map(|m| m.octets()), Some([2, 0x4c, 0x53, 0, 0, 2]));
    }

    /// Listeners on ephemeral loopback ports, and the ports they got.
    fn loopback_listeners() -> (Listeners, Ports) {
        let l = Listeners::bind(
            LOOPBACK,
            Ports {
                sink: 0,
                source: 0,
                ack: 0,
            },
        )
        .expect("bind loopback");
        let port = |l: &TcpListener| l.local_addr().expect("bound").port();
        let ports = Ports {
            sink: port(&l.sink),
            source: port(&l.source),
            ack: port(&l.ack),
        };
        (l, ports)
    }

    /// What the guest script does, with `send` bytes instead of the full size;
    /// returns the bytes it read from the source connection.
    fn fake_guest(ports: Ports, send: usize) -> usize {
        let mut sink = TcpStream::connect((LOOPBACK, ports.sink)).expect("connect sink");
        sink.write_all(&vec![0u8; send]).expect("send");
        sink.shutdown(Shutdown::Write).expect("half-close");
        let _ = sink.read_to_end(&mut Vec::new());
        let Ok(mut source) = TcpStream::connect((LOOPBACK, ports.source)) else {
            return 0;
        };
        let mut got = Vec::new();
        // A connection the host's kernel queued before the host closed the
        // listener is reset, not refused: nothing served either way.
        if source.read_to_end(&mut got).is_err() {
            return 0;
        }
        TcpStream::connect((LOOPBACK, ports.ack)).expect("acknowledge");
        got.len()
    }

    #[test]
    fn the_host_counts_what_the_guest_sends_and_times_until_its_ack() {
        let (listeners, ports) = loopback_listeners();
        let bytes = 3 << 20 | 12345;
        let guest = std::thread::spawn(move || fake_guest(ports, bytes));
        let served = serve(listeners, bytes as u64, &AtomicBool::new(false)).expect("served");
        assert_eq!(guest.join().expect("guest thread"), bytes);
        for t in [served.guest_to_host, served.host_to_guest] {
            assert_eq!(t.bytes, bytes as u64);
            assert!(t.seconds > 0.0 && t.seconds < 30.0, "{t:?}");
        }
    }

    #[test]
    fn a_short_send_is_an_error_and_the_guest_is_then_refused() {
        let (listeners, ports) = loopback_listeners();
        let guest = std::thread::spawn(move || fake_guest(ports, 1000));
        let err = match serve(listeners, 4096, &AtomicBool::new(false)) {
            Err(e) => e.to_string(),
            Ok(_) => panic!("a short send was accepted"),
        };
        assert_eq!(
            err,
            "guest -> host: the guest closed the connection after 1000 of 4096 bytes"
        );
        assert_eq!(
            guest.join().expect("guest thread"),
            0,
            "source was still open"
        );
    }

    #[test]
    fn a_vm_that_never_connects_ends_the_server() {
        let (listeners, ports) = loopback_listeners();
        let err = match serve(listeners, 4096, &AtomicBool::new(true)) {
            Err(e) => e.to_string(),
            Ok(_) => panic!("served without a guest"),
        };
        assert_eq!(
            err,
            format!(
                "guest -> host: the VM ended without connecting to port {}",
                ports.sink
            )
        );
    }

    fn measured(g2h_seconds: f64, h2g_seconds: f64, wall: f64) -> Measured {
        Measured {
            guest_to_host: Transfer {
                bytes: 64 << 20,
                seconds: g2h_seconds,
            },
            host_to_guest: Transfer {
                bytes: 64 << 20,
                seconds: h2g_seconds,
            },
            wall,
        }
    }

    #[test]
    fn the_table_shows_rates_and_ratios_per_direction() {
        let ours = measured(8.0, 16.0, 70.25);
        let qemu = measured(2.0, 1.0, 20.0);
        let want = "\
64 MiB each way over TCP through a TAP (virtio-net), timed on the host; ratio = lockstep / qemu throughput
direction       lockstep (MiB/s)  qemu (MiB/s)    ratio
guest -> host                8.0          32.0     0.25
host -> guest                4.0          64.0     0.06
wall (s)                    70.2          20.0
";
        assert_eq!(table(64, Via::Tap, &ours, Some(&qemu)), want);
        let alone = table(64, Via::Tap, &ours, None);
        assert!(
            alone.contains("guest -> host                8.0             -        -\n"),
            "{alone}"
        );
        assert!(
            alone.ends_with("wall (s)                    70.2\n"),
            "{alone}"
        );
    }

    #[test]
    fn json_has_rates_seconds_and_ratios_by_direction() {
        let ours = measured(8.0, 0.0, 70.0);
        let qemu = measured(2.0, 1.0, 20.0);
        let doc = json(64, Via::Tap, &ours, Some(&qemu));
        assert_eq!(doc["size_mib"], 64);
        assert_eq!(doc["lockstep"]["mib_per_s"]["guest_to_host"], 8.0);
        assert_eq!(doc["lockstep"]["seconds"]["guest_to_host"], 8.0);
        // A zero time has no rate: null, not a made-up number.
        assert!(doc["lockstep"]["mib_per_s"]["host_to_guest"].is_null());
        assert_eq!(doc["qemu"]["mib_per_s"]["host_to_guest"], 64.0);
        assert_eq!(doc["qemu"]["wall"], 20.0);
        assert_eq!(doc["ratio"]["guest_to_host"], 0.25);
        let alone = json(64, Via::Tap, &ours, None);
        assert!(
            alone["qemu"].is_null() && alone["ratio"].is_null(),
            "{alone}"
        );
    }
}
