//! A network's switch: one process per network per host (`lockstep net
//! serve NAME`, started on demand by the first VM that names the network
//! and gone a few seconds after the last), an L2 learning switch whose
//! ports are
//!
//! * VMs: one `SOCK_SEQPACKET` connection each to `NAME.run/switch.sock`
//!   (a message is a frame; the first says which NIC, see
//!   [`crate::port::HELLO_MAGIC`]; a closed connection is a port gone);
//! * the gateway at `.2` ([`gateway`]): DHCP, and on `nat` the user-mode
//!   NAT with port forwards;
//! * a host TAP (`hostonly`: holding `.1`; `bridged`: enslaved to the
//!   bridge) — these need root;
//! * a VXLAN tunnel ([`vxlan`]).
//!
//! Queues are bounded everywhere: a port that cannot take a frame loses it
//! and its `tx_dropped` counts it. `NAME.run/control.sock` answers
//! `lockstep net show` (peers must be this user). The run directory is
//! 0700: only this user can join the network.
//!
//! The switch never touches a machine: a VM's NIC feeds the frames it
//! receives to its guest as input events, so determinism and FT are as
//! with any other backend.

pub mod dhcp;
pub mod gateway;
pub mod table;
pub mod vxlan;

use std::collections::{BTreeMap, VecDeque};
use std::fs::{self, File};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, UdpSocket as StdUdpSocket};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::DirBuilderExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use mio::net::{UdpSocket, UnixListener};
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};
use rustix::fs::FlockOperation;
use serde::{Deserialize, Serialize};

use crate::network::{Mode, NetworkConfig, NetworkError, Networks};
use crate::seqpacket;
use dhcp::LeaseEntry;
use gateway::{Gateway, GatewayCounters, GatewayError};
use table::{well_formed, Counters, MacEntry, PortId, Table, Verdict};

/// At most this many ports per switch.
pub const MAX_PORTS: usize = 256;
/// Largest frame the switch carries (a 64 KiB packet plus headers).
pub const MAX_FRAME: usize = 65550;
/// Frames waiting inside the switch at once.
const MAX_QUEUE: usize = 4096;
/// Socket buffers of the switch's datagram socket.
const SOCKET_BUFFER: usize = 4 << 20;

const LISTEN_TOKEN: Token = Token(0);
/// VM port `id` is `Token(PORT_TOKEN_BASE + id)`.
const PORT_TOKEN_BASE: usize = 1 << 16;
const CONTROL_TOKEN: Token = Token(1);
const TAP_TOKEN: Token = Token(2);
const VXLAN_TOKEN: Token = Token(3);

/// Why a switch could not run, or could not be asked.
#[derive(Debug, thiserror::Error)]
pub enum SwitchError {
    /// The network's definition.
    #[error(transparent)]
    Network(#[from] NetworkError),
    /// The gateway's port forwards.
    #[error("network {name}: {source}")]
    Gateway {
        /// The network.
        name: String,
        /// What failed.
        #[source]
        source: GatewayError,
    },
    /// Another switch serves this network.
    #[error("network {0}: a switch for it is already running on this host")]
    AlreadyServing(String),
    /// The host TAP failed.
    #[error("network {name}: {source}")]
    Tap {
        /// The network.
        name: String,
        /// What failed.
        #[source]
        source: crate::TapError,
    },
    /// Configuring the host interface failed.
    #[error("network {name}: {what}")]
    HostInterface {
        /// The network.
        name: String,
        /// What failed, with the command's words.
        what: String,
    },
    /// The VXLAN socket could not be bound.
    #[error("network {name}: VXLAN: cannot bind UDP {addr}: {source}")]
    Vxlan {
        /// The network.
        name: String,
        /// The local address.
        addr: SocketAddr,
        /// The system's error.
        #[source]
        source: io::Error,
    },
    /// No switch runs for the network.
    #[error("network {0}: no switch is running (no VM uses it)")]
    NotRunning(String),
    /// A switch answered nonsense.
    #[error("network {name}: the switch's answer does not read: {reason}")]
    BadAnswer {
        /// The network.
        name: String,
        /// What is wrong.
        reason: String,
    },
    /// Any other failure.
    #[error("network {name}: {what}: {source}")]
    Io {
        /// The network.
        name: String,
        /// What was being done.
        what: &'static str,
        /// The system's error.
        #[source]
        source: io::Error,
    },
}

fn io_err(name: &str, what: &'static str) -> impl FnOnce(io::Error) -> SwitchError {
    let name = name.to_string();
    move |source| SwitchError::Io { name, what, source }
}

/// A port as `net show` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortStatus {
    /// Its number.
    pub id: PortId,
    /// `vm`, `gateway`, `tap` or `vxlan`.
    pub kind: String,
    /// What it is: a VM NIC's MAC, the TAP's name, the VXLAN endpoint.
    pub name: String,
    /// Its counters.
    pub counters: Counters,
}

/// What a running switch reports.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SwitchStatus {
    /// The network.
    pub network: String,
    /// The switch process.
    pub pid: u32,
    /// Its ports.
    pub ports: Vec<PortStatus>,
    /// The MAC table.
    pub macs: Vec<MacEntry>,
    /// DHCP leases.
    pub leases: Vec<LeaseEntry>,
    /// Open NAT flows.
    pub nat_flows: usize,
    /// NAT counters.
    pub nat: GatewayCounters,
}

/// The paths of a network's run directory.
#[derive(Debug, Clone)]
pub struct RunDir {
    dir: PathBuf,
}

impl RunDir {
    /// The run directory of `name` in `networks`.
    pub fn of(networks: &Networks, name: &str) -> RunDir {
        RunDir {
            dir: networks.run_dir(name),
        }
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// The switch's datagram socket.
    pub fn switch_socket(&self) -> PathBuf {
        self.dir.join("switch.sock")
    }

    /// The control socket.
    pub fn control_socket(&self) -> PathBuf {
        self.dir.join("control.sock")
    }

    /// The on-demand switch's log.
    pub fn log(&self) -> PathBuf {
        self.dir.join("switch.log")
    }

    /// Creates the directories, private.
    pub fn ensure(&self, name: &str) -> Result<(), SwitchError> {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.dir)
            .map_err(io_err(name, "creating the run directory"))
    }

    /// Takes `lock` (a file in the directory), blocking. Held until the
    /// file is dropped.
    pub fn lock(&self, lock: &str, name: &str) -> Result<File, SwitchError> {
        let path = self.dir.join(lock);
        let file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(io_err(name, "opening a lock file"))?;
        rustix::fs::flock(&file, FlockOperation::LockExclusive)
            .map_err(|e| io_err(name, "locking")(e.into()))?;
        Ok(file)
    }
}

enum PortKind {
    /// A VM NIC; its MAC once it said hello.
    Vm {
        link: OwnedFd,
        mac: Option<[u8; 6]>,
    },
    Gateway,
    Tap {
        file: File,
        name: String,
    },
    Vxlan,
}

struct Port {
    kind: PortKind,
    counters: Counters,
}

/// How `serve` runs.
#[derive(Debug, Clone, Copy, Default)]
pub struct ServeOptions {
    /// Exit once no VM port has been connected for this long (the
    /// on-demand switch); `None` serves until stopped.
    pub idle_exit: Option<Duration>,
}

/// The switch's state.
struct Switch {
    name: String,
    registry: mio::Registry,
    config: NetworkConfig,
    run: RunDir,
    listener: OwnedFd,
    ports: BTreeMap<PortId, Port>,
    vm_ports: usize,
    next_port: PortId,
    table: Table,
    gateway: Option<(PortId, Gateway)>,
    vxlan: Option<(PortId, vxlan::Tunnel)>,
    queue: VecDeque<(PortId, Vec<u8>)>,
    stop: bool,
}

/// The TAP name a `hostonly` or `bridged` network's switch creates:
/// `ls-` and the network's name, or a hash of it when that is too long.
pub fn tap_name(network: &str) -> String {
    let direct = format!("ls-{network}");
    if direct.len() <= crate::spec::MAX_TAP_NAME_LEN {
        direct
    } else {
        let hash = blake3::hash(network.as_bytes()).to_hex();
        format!("ls-{}", &hash[..12])
    }
}

fn ip_command(name: &str, args: &[&str]) -> Result<(), SwitchError> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| SwitchError::HostInterface {
            name: name.to_string(),
            what: format!("cannot run ip {} (install iproute2): {e}", args.join(" ")),
        })?;
    if !out.status.success() {
        return Err(SwitchError::HostInterface {
            name: name.to_string(),
            what: format!(
                "ip {} failed: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        });
    }
    Ok(())
}

fn set_buffers(fd: &impl std::os::fd::AsFd) {
    let _ = rustix::net::sockopt::set_socket_send_buffer_size(fd, SOCKET_BUFFER);
    let _ = rustix::net::sockopt::set_socket_recv_buffer_size(fd, SOCKET_BUFFER);
}

/// The MAC of a network's gateway port: locally administered, from the
/// network's name.
fn gateway_mac(name: &str) -> [u8; 6] {
    let h = blake3::hash(format!("lockstep gateway {name}").as_bytes());
    let b = h.as_bytes();
    [0x52, 0x55, b[0], b[1], b[2], b[3]]
}

/// Runs the switch of network `name` until stopped (`net stop`, a
/// signal) or, with `idle_exit`, until no VM has used it for that long.
/// `ready` is called once it accepts ports.
pub fn serve(
    networks: &Networks,
    name: &str,
    options: ServeOptions,
    ready: impl FnOnce(),
) -> Result<(), SwitchError> {
    let config = networks.get(name)?;
    let run = RunDir::of(networks, name);
    run.ensure(name)?;
    // One switch per network: wait a little for a switch that is exiting.
    let serve_lock = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(run.path().join("serve.lock"))
        .map_err(io_err(name, "opening the serve lock"))?;
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match rustix::fs::flock(&serve_lock, FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => break,
            Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(50)),
            Err(_) => return Err(SwitchError::AlreadyServing(name.to_string())),
        }
    }
    let switch_path = run.switch_socket();
    let control_path = run.control_socket();
    let _ = fs::remove_file(&switch_path);
    let _ = fs::remove_file(&control_path);
    let mut poll = Poll::new().map_err(io_err(name, "creating the event loop"))?;
    let registry = poll.registry();
    let listener =
        seqpacket::listen(&switch_path).map_err(io_err(name, "binding the switch socket"))?;
    registry
        .register(
            &mut SourceFd(&listener.as_raw_fd()),
            LISTEN_TOKEN,
            Interest::READABLE,
        )
        .map_err(io_err(name, "registering"))?;
    let mut control =
        UnixListener::bind(&control_path).map_err(io_err(name, "binding the control socket"))?;
    registry
        .register(&mut control, CONTROL_TOKEN, Interest::READABLE)
        .map_err(io_err(name, "registering"))?;

    let now = Instant::now();
    let mut switch = Switch {
        name: name.to_string(),
        registry: registry
            .try_clone()
            .map_err(io_err(name, "creating the event loop"))?,
        config: config.clone(),
        run: run.clone(),
        listener,
        ports: BTreeMap::new(),
        vm_ports: 0,
        next_port: 1,
        table: Table::default(),
        gateway: None,
        vxlan: None,
        queue: VecDeque::new(),
        stop: false,
    };

    // The host TAP.
    if matches!(config.mode, Mode::Hostonly | Mode::Bridged) {
        let tap = tap_name(name);
        let file = crate::tap::open_file(&tap).map_err(|source| SwitchError::Tap {
            name: name.to_string(),
            source,
        })?;
        match (config.mode, config.subnet, &config.bridge) {
            (Mode::Hostonly, Some(subnet), _) => {
                let cidr = format!("{}/{}", subnet.host_address(), subnet.prefix());
                let _ = Command::new("ip")
                    .args(["addr", "flush", "dev", &tap])
                    .output();
                ip_command(name, &["addr", "add", &cidr, "dev", &tap])?;
                ip_command(name, &["link", "set", &tap, "up"])?;
            }
            (Mode::Bridged, _, Some(bridge)) => {
                ip_command(name, &["link", "set", &tap, "master", bridge])?;
                ip_command(name, &["link", "set", &tap, "up"])?;
            }
            _ => {}
        }
        let fd = file.as_raw_fd();
        registry
            .register(&mut SourceFd(&fd), TAP_TOKEN, Interest::READABLE)
            .map_err(io_err(name, "registering the TAP"))?;
        switch.add_port(PortKind::Tap { file, name: tap });
    }

    // The VXLAN tunnel.
    if let Some(v) = &config.vxlan {
        let addr = SocketAddr::new(v.local, v.port);
        let std_socket = StdUdpSocket::bind(addr).map_err(|source| SwitchError::Vxlan {
            name: name.to_string(),
            addr,
            source,
        })?;
        std_socket
            .set_nonblocking(true)
            .map_err(io_err(name, "configuring the VXLAN socket"))?;
        set_buffers(&std_socket);
        let mut sock = UdpSocket::from_std(std_socket);
        registry
            .register(&mut sock, VXLAN_TOKEN, Interest::READABLE)
            .map_err(io_err(name, "registering the VXLAN socket"))?;
        let id = switch.add_port(PortKind::Vxlan);
        switch.vxlan = Some((id, vxlan::Tunnel::new(v.clone(), sock)));
    }

    // The gateway.
    if let Some(gw) = Gateway::new(&config, gateway_mac(name), registry, now).map_err(|source| {
        SwitchError::Gateway {
            name: name.to_string(),
            source,
        }
    })? {
        let id = switch.add_port(PortKind::Gateway);
        switch.gateway = Some((id, gw));
    }

    tracing::info!(network = name, mode = %config.mode, "switch serving");
    ready();

    let mut events = Events::with_capacity(256);
    let mut buf = vec![0u8; MAX_FRAME];
    let mut last_vm = Instant::now();
    let mut last_housekeeping = Instant::now();
    loop {
        let now = Instant::now();
        let mut timeout = Duration::from_millis(500);
        if let Some((_, gw)) = &mut switch.gateway {
            if let Some(t) = gw.tick(poll.registry(), now) {
                timeout = timeout.min(t);
            }
        }
        switch.drain_gateway();
        switch.process();
        match poll.poll(&mut events, Some(timeout)) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(io_err(name, "waiting for events")(e)),
        }
        let now = Instant::now();
        for event in events.iter() {
            match event.token() {
                LISTEN_TOKEN => switch.accept_ports(),
                CONTROL_TOKEN => switch.answer_control(&control, now),
                TAP_TOKEN => switch.read_tap(&mut buf),
                VXLAN_TOKEN => switch.read_vxlan(&mut buf, now),
                Token(t) if (PORT_TOKEN_BASE..gateway::TOKEN_BASE).contains(&t) => {
                    switch.read_port(t - PORT_TOKEN_BASE, &mut buf)
                }
                token => {
                    if let Some((_, gw)) = &mut switch.gateway {
                        gw.ready(token, poll.registry(), now);
                    }
                }
            }
            switch.drain_gateway();
            switch.process();
        }
        if now.saturating_duration_since(last_housekeeping) >= Duration::from_secs(1) {
            last_housekeeping = now;
            switch.housekeeping(now);
        }
        if switch.vm_ports > 0 {
            last_vm = now;
        }
        if switch.stop {
            break;
        }
        if let Some(idle) = options.idle_exit {
            if now.saturating_duration_since(last_vm) >= idle && switch.try_exit()? {
                break;
            }
        }
    }
    let _ = fs::remove_file(&switch_path);
    let _ = fs::remove_file(&control_path);
    tracing::info!(network = name, "switch stopped");
    drop(serve_lock);
    Ok(())
}

impl Switch {
    fn add_port(&mut self, kind: PortKind) -> PortId {
        let id = self.next_port;
        self.next_port += 1;
        self.ports.insert(
            id,
            Port {
                kind,
                counters: Counters::default(),
            },
        );
        id
    }

    fn remove_port(&mut self, id: PortId) {
        if let Some(port) = self.ports.remove(&id) {
            if let PortKind::Vm { link, mac } = port.kind {
                let _ = self.registry.deregister(&mut SourceFd(&link.as_raw_fd()));
                self.vm_ports -= 1;
                let mac = mac.map_or("-".into(), table::format_mac);
                tracing::info!(network = %self.name, port = id, %mac, "VM port left");
            }
        }
        self.table.forget_port(id);
    }

    /// Takes every waiting connection as a VM port (this user's only).
    fn accept_ports(&mut self) {
        loop {
            let link = match seqpacket::accept(&self.listener) {
                Ok(Some(link)) => link,
                Ok(None) => return,
                Err(e) => {
                    tracing::warn!(network = %self.name, error = %e, "accepting a port");
                    return;
                }
            };
            let uid = rustix::process::geteuid().as_raw();
            if seqpacket::peer_uid(&link).ok() != Some(uid) || self.ports.len() >= MAX_PORTS {
                continue;
            }
            let id = self.next_port;
            let token = Token(PORT_TOKEN_BASE + id);
            if id >= gateway::TOKEN_BASE - PORT_TOKEN_BASE
                || self
                    .registry
                    .register(&mut SourceFd(&link.as_raw_fd()), token, Interest::READABLE)
                    .is_err()
            {
                continue;
            }
            self.add_port(PortKind::Vm { link, mac: None });
            self.vm_ports += 1;
        }
    }

    /// Takes a frame into the switch from port `from`.
    fn enqueue(&mut self, from: PortId, frame: Vec<u8>) {
        if self.queue.len() < MAX_QUEUE {
            self.queue.push_back((from, frame));
        } else if let Some(p) = self.ports.get_mut(&from) {
            p.counters.tx_dropped += 1;
        }
    }

    fn drain_gateway(&mut self) {
        let Some((id, gw)) = &mut self.gateway else {
            return;
        };
        let id = *id;
        let frames: Vec<Vec<u8>> = gw.take_output().collect();
        for f in frames {
            self.enqueue(id, f);
        }
    }

    /// Forwards every queued frame (the gateway's answers join the queue).
    fn process(&mut self) {
        let now = Instant::now();
        while let Some((from, frame)) = self.queue.pop_front() {
            let Some(port) = self.ports.get_mut(&from) else {
                continue;
            };
            if !well_formed(&frame) || frame.len() > MAX_FRAME {
                port.counters.rx_malformed += 1;
                continue;
            }
            port.counters.rx_frames += 1;
            port.counters.rx_bytes += frame.len() as u64;
            match self.table.forward(from, &frame, now) {
                Verdict::Drop => {}
                Verdict::Unicast(to) => self.deliver(to, &frame, now),
                Verdict::Flood => {
                    let targets: Vec<PortId> =
                        self.ports.keys().copied().filter(|p| *p != from).collect();
                    for to in targets {
                        self.deliver(to, &frame, now);
                    }
                }
            }
            self.drain_gateway();
        }
    }

    fn deliver(&mut self, to: PortId, frame: &[u8], now: Instant) {
        let Some(port) = self.ports.get_mut(&to) else {
            return;
        };
        let sent = match &port.kind {
            // Not yet introduced: nothing for it.
            PortKind::Vm { mac: None, .. } => Ok(false),
            PortKind::Vm { link, .. } => seqpacket::send(link, frame),
            PortKind::Tap { file, .. } => match (&*file).write(frame) {
                Ok(_) => Ok(true),
                // Down, or its queue is full: the frame is lost.
                Err(_) => Ok(false),
            },
            PortKind::Gateway => {
                if let Some((_, gw)) = &mut self.gateway {
                    gw.handle(frame, &self.registry, now);
                }
                Ok(true)
            }
            PortKind::Vxlan => {
                if let Some((_, tunnel)) = &mut self.vxlan {
                    Ok(tunnel.send(frame))
                } else {
                    Ok(false)
                }
            }
        };
        match sent {
            Ok(true) => {
                port.counters.tx_frames += 1;
                port.counters.tx_bytes += frame.len() as u64;
            }
            Ok(false) => port.counters.tx_dropped += 1,
            Err(_) => self.remove_port(to),
        }
    }

    /// Reads what VM port `id` sent: its hello first, then frames.
    fn read_port(&mut self, id: PortId, buf: &mut [u8]) {
        loop {
            let Some(Port {
                kind: PortKind::Vm { link, mac },
                counters,
            }) = self.ports.get_mut(&id)
            else {
                return;
            };
            let len = match seqpacket::recv(&*link, buf) {
                Ok(None) => break,
                Ok(Some(0)) | Err(_) => {
                    self.remove_port(id);
                    break;
                }
                Ok(Some(len)) => len,
            };
            let message = &buf[..len];
            if mac.is_none() {
                match message.strip_prefix(&crate::port::HELLO_MAGIC[..]) {
                    Some(m) if m.len() == 6 => {
                        let mut octets = [0u8; 6];
                        octets.copy_from_slice(m);
                        *mac = Some(octets);
                        tracing::info!(network = %self.name, port = id, mac = %table::format_mac(octets), "VM port joined");
                    }
                    _ => {
                        // Not a lockstep port.
                        counters.rx_malformed += 1;
                        self.remove_port(id);
                        break;
                    }
                }
                continue;
            }
            self.enqueue(id, message.to_vec());
            if self.queue.len() >= 64 {
                self.process();
            }
        }
        self.process();
    }

    /// Reads the TAP until it is empty, 64 frames at a time.
    fn read_tap(&mut self, buf: &mut [u8]) {
        loop {
            let Some((id, file)) = self.ports.iter().find_map(|(id, p)| match &p.kind {
                PortKind::Tap { file, .. } => Some((*id, file)),
                _ => None,
            }) else {
                return;
            };
            let mut frames = Vec::new();
            while frames.len() < 64 {
                match (&*file).read(buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => frames.push(buf[..n].to_vec()),
                }
            }
            let more = frames.len() == 64;
            for f in frames {
                self.enqueue(id, f);
            }
            self.process();
            if !more {
                return;
            }
        }
    }

    fn read_vxlan(&mut self, buf: &mut [u8], now: Instant) {
        let Some((id, _)) = &self.vxlan else {
            return;
        };
        let id = *id;
        loop {
            let Some((_, tunnel)) = &mut self.vxlan else {
                return;
            };
            let mut frames = Vec::new();
            let mut malformed = 0;
            let more = tunnel.receive(buf, now, 64, |frame| match frame {
                Some(f) => frames.push(f.to_vec()),
                None => malformed += 1,
            });
            if let Some(p) = self.ports.get_mut(&id) {
                p.counters.rx_malformed += malformed;
            }
            for f in frames {
                self.enqueue(id, f);
            }
            self.process();
            if !more {
                return;
            }
        }
    }

    fn housekeeping(&mut self, now: Instant) {
        self.table.expire(now);
    }

    fn status(&self, now: Instant) -> SwitchStatus {
        let ports = self
            .ports
            .iter()
            .map(|(id, p)| {
                let (kind, name) = match &p.kind {
                    PortKind::Vm { mac, .. } => ("vm", mac.map_or("-".into(), table::format_mac)),
                    PortKind::Gateway => (
                        "gateway",
                        self.config
                            .subnet
                            .map_or(String::new(), |s| s.gateway().to_string()),
                    ),
                    PortKind::Tap { name, .. } => ("tap", name.clone()),
                    PortKind::Vxlan => (
                        "vxlan",
                        self.config.vxlan.as_ref().map_or(String::new(), |v| {
                            format!("vni {} {}:{}", v.vni, v.local, v.port)
                        }),
                    ),
                };
                PortStatus {
                    id: *id,
                    kind: kind.into(),
                    name,
                    counters: p.counters,
                }
            })
            .collect();
        let (leases, nat_flows, nat) = match &self.gateway {
            Some((_, gw)) => (gw.leases(now), gw.flows(), gw.counters),
            None => (Vec::new(), 0, GatewayCounters::default()),
        };
        SwitchStatus {
            network: self.name.clone(),
            pid: std::process::id(),
            ports,
            macs: self.table.entries(now),
            leases,
            nat_flows,
            nat,
        }
    }

    fn answer_control(&mut self, listener: &UnixListener, now: Instant) {
        while let Ok((stream, _)) = listener.accept() {
            let stream = UnixStream::from(std::os::fd::OwnedFd::from(stream));
            // Only this user may ask (the directory is 0700 as well).
            let same_user = rustix::net::sockopt::socket_peercred(&stream)
                .is_ok_and(|c| c.uid == rustix::process::geteuid());
            if !same_user {
                continue;
            }
            let _ = stream.set_nonblocking(false);
            let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
            let _ = stream.set_write_timeout(Some(Duration::from_secs(2)));
            let mut line = String::new();
            let mut reader = BufReader::new((&stream).take(256));
            if reader.read_line(&mut line).is_err() {
                continue;
            }
            let answer = match line.trim() {
                "status" => serde_json::to_string(&self.status(now)).unwrap_or_default(),
                "stop" => {
                    self.stop = true;
                    "{}".to_string()
                }
                _ => "{\"error\":\"unknown request\"}".to_string(),
            };
            let _ = (&stream).write_all(answer.as_bytes());
            let _ = (&stream).write_all(b"\n");
        }
    }

    /// Exits if no VM port turned up meanwhile: under the spawn lock, so
    /// that a VM joining now either reached this switch or starts a new
    /// one after this one is gone.
    fn try_exit(&mut self) -> Result<bool, SwitchError> {
        let _lock = self.run.lock("spawn.lock", &self.name)?;
        self.accept_ports();
        if self.vm_ports > 0 {
            return Ok(false);
        }
        let _ = fs::remove_file(self.run.switch_socket());
        let _ = fs::remove_file(self.run.control_socket());
        Ok(true)
    }
}

/// Asks the running switch of `name` for its status.
pub fn status(networks: &Networks, name: &str) -> Result<SwitchStatus, SwitchError> {
    let answer = ask(networks, name, "status")?;
    serde_json::from_str(&answer).map_err(|e| SwitchError::BadAnswer {
        name: name.to_string(),
        reason: e.to_string(),
    })
}

/// Asks the running switch of `name` to stop.
pub fn stop(networks: &Networks, name: &str) -> Result<(), SwitchError> {
    ask(networks, name, "stop").map(|_| ())
}

fn ask(networks: &Networks, name: &str, request: &str) -> Result<String, SwitchError> {
    let path = RunDir::of(networks, name).control_socket();
    let stream = match UnixStream::connect(&path) {
        Ok(s) => s,
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused
            ) =>
        {
            return Err(SwitchError::NotRunning(name.to_string()))
        }
        Err(e) => return Err(io_err(name, "connecting to the switch")(e)),
    };
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .map_err(io_err(name, "configuring the control socket"))?;
    (&stream)
        .write_all(format!("{request}\n").as_bytes())
        .map_err(io_err(name, "asking the switch"))?;
    let mut answer = String::new();
    BufReader::new((&stream).take(16 << 20))
        .read_line(&mut answer)
        .map_err(io_err(name, "reading the switch's answer"))?;
    Ok(answer)
}
