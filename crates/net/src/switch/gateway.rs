//! The switch's own port at the subnet's `.2`: DHCP server, ARP and ICMP
//! echo for `.2`, and on a `nat` network the user-mode gateway — TCP
//! through `smoltcp` to ordinary host sockets, UDP datagram by datagram,
//! DNS to the host's resolver, `.2` itself standing for the host's
//! loopback (as QEMU's user networking's `10.0.2.2` does), and inbound
//! port forwards. No privileges needed: everything on the host side is
//! an unprivileged socket.
//!
//! ICMP leaves the subnet only as echo to `.2` (no raw sockets).

use std::collections::{BTreeMap, VecDeque};
use std::io::{self, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Shutdown, SocketAddr, SocketAddrV4};
use std::time::{Duration, Instant};

use mio::net::{TcpListener, TcpStream, UdpSocket};
use mio::{Interest, Registry, Token};
use smoltcp::iface::{Config, Interface, SocketHandle, SocketSet};
use smoltcp::phy::{self, ChecksumCapabilities, DeviceCapabilities, Medium};
use smoltcp::socket::tcp;
use smoltcp::wire::{
    ArpOperation, ArpPacket, ArpRepr, EthernetAddress, EthernetFrame, EthernetProtocol,
    EthernetRepr, HardwareAddress, Icmpv4Packet, Icmpv4Repr, IpAddress, IpCidr, IpListenEndpoint,
    IpProtocol, Ipv4Packet, Ipv4Repr, TcpPacket, UdpPacket, UdpRepr,
};

use super::dhcp::{DhcpConfig, LeaseEntry, Server};
use crate::network::{Forward, Mode, NetworkConfig, Proto, Subnet};

/// The first mio token the gateway's host sockets use.
pub const TOKEN_BASE: usize = 1 << 20;
/// At most this many NAT connections and UDP flows at once.
pub const MAX_FLOWS: usize = 1024;
/// Frames the gateway holds for the switch before dropping.
const MAX_OUTPUT: usize = 4096;
/// A UDP flow without traffic for this long is closed.
const UDP_IDLE: Duration = Duration::from_secs(60);
/// A TCP socket's buffers each way.
const TCP_BUFFER: usize = 256 << 10;
/// UDP datagrams are read into this.
const MAX_DATAGRAM: usize = 65507;

/// Why the gateway could not start.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    /// A port forward's host port could not be bound.
    #[error("port forward {forward}: cannot listen on {addr}: {source}")]
    Forward {
        /// The forward.
        forward: Forward,
        /// The host address.
        addr: SocketAddr,
        /// The system's error (e.g. address in use).
        #[source]
        source: io::Error,
    },
    /// Registering a socket with the event loop failed.
    #[error("registering a socket: {0}")]
    Register(#[source] io::Error),
}

/// Frames smoltcp reads from and writes to.
#[derive(Default)]
struct Queue {
    rx: VecDeque<Vec<u8>>,
    tx: VecDeque<Vec<u8>>,
    mtu: usize,
}

struct RxToken(Vec<u8>);
struct TxToken<'a>(&'a mut VecDeque<Vec<u8>>);

impl phy::RxToken for RxToken {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        f(&self.0)
    }
}

impl phy::TxToken for TxToken<'_> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        let mut frame = vec![0; len];
        let r = f(&mut frame);
        if self.0.len() < MAX_OUTPUT {
            self.0.push_back(frame);
        }
        r
    }
}

impl phy::Device for Queue {
    type RxToken<'a> = RxToken;
    type TxToken<'a> = TxToken<'a>;

    fn receive(
        &mut self,
        _: smoltcp::time::Instant,
    ) -> Option<(Self::RxToken<'_>, Self::TxToken<'_>)> {
        let frame = self.rx.pop_front()?;
        Some((RxToken(frame), TxToken(&mut self.tx)))
    }

    fn transmit(&mut self, _: smoltcp::time::Instant) -> Option<Self::TxToken<'_>> {
        Some(TxToken(&mut self.tx))
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut caps = DeviceCapabilities::default();
        caps.medium = Medium::Ethernet;
        caps.max_transmission_unit = self.mtu + 14;
        caps
    }
}

enum TcpState {
    /// The host connect is under way; the guest's SYN waits.
    Connecting {
        syn: Vec<u8>,
    },
    Open,
}

struct TcpFlow {
    handle: SocketHandle,
    stream: TcpStream,
    state: TcpState,
    key: FlowKey,
    host_eof: bool,
    host_shut: bool,
    host_failed: bool,
}

struct UdpFlow {
    socket: UdpSocket,
    guest_mac: [u8; 6],
    /// The guest's end.
    guest: SocketAddrV4,
    /// The address the guest sent to (replies come from it).
    remote: SocketAddrV4,
    key: FlowKey,
    last: Instant,
}

/// An inbound UDP forward's host peer, given a port on `.2`.
struct UdpPeer {
    forward: usize,
    peer: SocketAddr,
    last: Instant,
}

enum Flow {
    Tcp(Box<TcpFlow>),
    Udp(Box<UdpFlow>),
}

/// (proto, guest address, remote address as the guest sees it).
type FlowKey = (u8, SocketAddrV4, SocketAddrV4);

enum Listener {
    Tcp(TcpListener),
    Udp(UdpSocket),
}

/// Counters the gateway keeps, for `net show`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct GatewayCounters {
    /// TCP connections made out to the host.
    pub tcp_out: u64,
    /// TCP connections in through port forwards.
    pub tcp_in: u64,
    /// UDP flows opened.
    pub udp_flows: u64,
    /// Host connects that failed (the guest got a reset).
    pub connect_failed: u64,
    /// Frames refused as malformed.
    pub malformed: u64,
}

/// The NAT part.
struct Nat {
    iface: Interface,
    device: Queue,
    sockets: SocketSet<'static>,
    flows: BTreeMap<usize, Flow>,
    by_key: BTreeMap<FlowKey, usize>,
    next_id: usize,
    listeners: Vec<(Forward, Listener)>,
    udp_peers: BTreeMap<u16, UdpPeer>,
    next_port: u16,
    dns: Option<SocketAddr>,
}

/// The `.2` port.
pub struct Gateway {
    mac: [u8; 6],
    ip: Ipv4Addr,
    subnet: Subnet,
    dhcp: Option<Server>,
    nat: Option<Nat>,
    out: VecDeque<Vec<u8>>,
    epoch: Instant,
    /// Its counters.
    pub counters: GatewayCounters,
}

fn smol_now(epoch: Instant, now: Instant) -> smoltcp::time::Instant {
    smoltcp::time::Instant::from_micros(now.saturating_duration_since(epoch).as_micros() as i64)
}

impl Gateway {
    /// The gateway of `config` (which has a subnet), with MAC `mac`. On a
    /// `nat` network it binds the port forwards' host ports now, so that a
    /// taken port is an error before any VM relies on it.
    pub fn new(
        config: &NetworkConfig,
        mac: [u8; 6],
        registry: &Registry,
        now: Instant,
    ) -> Result<Option<Gateway>, GatewayError> {
        let Some(subnet) = config.subnet else {
            return Ok(None);
        };
        if config.mode != Mode::Nat && !config.dhcp {
            return Ok(None);
        }
        let ip = subnet.gateway();
        let nat_mode = config.mode == Mode::Nat;
        let dhcp = config.dhcp.then(|| {
            Server::new(DhcpConfig {
                subnet,
                server: ip,
                router: nat_mode.then_some(ip),
                dns: nat_mode.then_some(ip),
                mtu: config.mtu,
            })
        });
        let nat = if nat_mode {
            Some(Nat::new(config, subnet, mac, registry, now)?)
        } else {
            None
        };
        Ok(Some(Gateway {
            mac,
            ip,
            subnet,
            dhcp,
            nat,
            out: VecDeque::new(),
            epoch: now,
            counters: GatewayCounters::default(),
        }))
    }

    /// The leases handed out.
    pub fn leases(&self, now: Instant) -> Vec<LeaseEntry> {
        self.dhcp.as_ref().map_or(Vec::new(), |d| d.leases(now))
    }

    /// Open NAT flows.
    pub fn flows(&self) -> usize {
        self.nat.as_ref().map_or(0, |n| n.flows.len())
    }

    /// Frames for the switch.
    pub fn take_output(&mut self) -> impl Iterator<Item = Vec<u8>> + '_ {
        let nat = self.nat.as_mut().map(|n| n.device.tx.drain(..));
        self.out.drain(..).chain(nat.into_iter().flatten())
    }

    fn push(&mut self, frame: Vec<u8>) {
        if self.out.len() < MAX_OUTPUT {
            self.out.push_back(frame);
        }
    }

    /// A frame the switch delivered to this port.
    pub fn handle(&mut self, frame: &[u8], registry: &Registry, now: Instant) {
        let Ok(eth) = EthernetFrame::new_checked(frame) else {
            self.counters.malformed += 1;
            return;
        };
        let dst = eth.dst_addr().0;
        if dst != self.mac && dst != [0xff; 6] {
            return;
        }
        let src_mac = eth.src_addr().0;
        match eth.ethertype() {
            EthernetProtocol::Arp => {
                if let Some(nat) = &mut self.nat {
                    nat.device.rx.push_back(frame.to_vec());
                    nat.poll(registry, self.epoch, now, &mut self.counters);
                } else {
                    self.arp(eth.payload(), src_mac);
                }
            }
            EthernetProtocol::Ipv4 => self.ipv4(frame, eth.payload(), src_mac, registry, now),
            _ => {}
        }
    }

    fn arp(&mut self, payload: &[u8], src_mac: [u8; 6]) {
        let Ok(packet) = ArpPacket::new_checked(payload) else {
            self.counters.malformed += 1;
            return;
        };
        let Ok(ArpRepr::EthernetIpv4 {
            operation: ArpOperation::Request,
            source_hardware_addr,
            source_protocol_addr,
            target_protocol_addr,
            ..
        }) = ArpRepr::parse(&packet)
        else {
            return;
        };
        if target_protocol_addr != self.ip {
            return;
        }
        let reply = ArpRepr::EthernetIpv4 {
            operation: ArpOperation::Reply,
            source_hardware_addr: EthernetAddress(self.mac),
            source_protocol_addr: self.ip,
            target_hardware_addr: source_hardware_addr,
            target_protocol_addr: source_protocol_addr,
        };
        let mut frame = vec![0; 14 + reply.buffer_len()];
        let mut eth = EthernetFrame::new_unchecked(&mut frame[..]);
        EthernetRepr {
            src_addr: EthernetAddress(self.mac),
            dst_addr: EthernetAddress(src_mac),
            ethertype: EthernetProtocol::Arp,
        }
        .emit(&mut eth);
        reply.emit(&mut ArpPacket::new_unchecked(eth.payload_mut()));
        self.push(frame);
    }

    fn ipv4(
        &mut self,
        frame: &[u8],
        payload: &[u8],
        src_mac: [u8; 6],
        registry: &Registry,
        now: Instant,
    ) {
        let caps = ChecksumCapabilities::default();
        let Ok(packet) = Ipv4Packet::new_checked(payload) else {
            self.counters.malformed += 1;
            return;
        };
        let Ok(ip) = Ipv4Repr::parse(&packet, &caps) else {
            self.counters.malformed += 1;
            return;
        };
        let body = packet.payload();
        match ip.next_header {
            IpProtocol::Udp => {
                let Ok(udp) = UdpPacket::new_checked(body) else {
                    self.counters.malformed += 1;
                    return;
                };
                let (sport, dport) = (udp.src_port(), udp.dst_port());
                if dport == 67 {
                    if let Some(dhcp) = &mut self.dhcp {
                        if let Some(reply) = dhcp.handle(udp.payload(), now) {
                            let frame = udp_frame(
                                self.mac,
                                reply.dst_mac,
                                SocketAddrV4::new(self.ip, 67),
                                SocketAddrV4::new(reply.dst_ip, 68),
                                &reply.payload,
                            );
                            self.push(frame);
                        }
                    }
                    return;
                }
                if let Some(nat) = &mut self.nat {
                    nat.udp_out(
                        registry,
                        self.ip,
                        src_mac,
                        SocketAddrV4::new(ip.src_addr, sport),
                        SocketAddrV4::new(ip.dst_addr, dport),
                        udp.payload(),
                        now,
                        &mut self.counters,
                    );
                }
            }
            IpProtocol::Icmp => {
                if ip.dst_addr != self.ip {
                    return;
                }
                let Ok(icmp) = Icmpv4Packet::new_checked(body) else {
                    self.counters.malformed += 1;
                    return;
                };
                if let Ok(Icmpv4Repr::EchoRequest {
                    ident,
                    seq_no,
                    data,
                }) = Icmpv4Repr::parse(&icmp, &caps)
                {
                    let reply = Icmpv4Repr::EchoReply {
                        ident,
                        seq_no,
                        data,
                    };
                    let ip_out = Ipv4Repr {
                        src_addr: self.ip,
                        dst_addr: ip.src_addr,
                        next_header: IpProtocol::Icmp,
                        payload_len: reply.buffer_len(),
                        hop_limit: 64,
                    };
                    let mut frame = vec![0; 14 + ip_out.buffer_len() + reply.buffer_len()];
                    let mut eth = EthernetFrame::new_unchecked(&mut frame[..]);
                    EthernetRepr {
                        src_addr: EthernetAddress(self.mac),
                        dst_addr: EthernetAddress(src_mac),
                        ethertype: EthernetProtocol::Ipv4,
                    }
                    .emit(&mut eth);
                    let mut ipp = Ipv4Packet::new_unchecked(eth.payload_mut());
                    ip_out.emit(&mut ipp, &caps);
                    reply.emit(&mut Icmpv4Packet::new_unchecked(ipp.payload_mut()), &caps);
                    self.push(frame);
                }
            }
            IpProtocol::Tcp => {
                if let Some(nat) = &mut self.nat {
                    nat.tcp_in_frame(
                        frame,
                        &ip,
                        body,
                        registry,
                        self.ip,
                        self.subnet,
                        now,
                        self.epoch,
                        &mut self.counters,
                    );
                }
            }
            _ => {}
        }
    }

    /// A host socket of the gateway is ready.
    pub fn ready(&mut self, token: Token, registry: &Registry, now: Instant) {
        let Some(nat) = &mut self.nat else { return };
        let Some(id) = token.0.checked_sub(TOKEN_BASE) else {
            return;
        };
        if id < nat.listeners.len() {
            nat.accept(
                id,
                registry,
                self.ip,
                self.dhcp.as_ref(),
                now,
                &mut self.counters,
            );
        } else {
            nat.flow_ready(id, now, self.epoch, &mut self.counters);
        }
        nat.poll(registry, self.epoch, now, &mut self.counters);
    }

    /// Timers: smoltcp's retransmissions, idle UDP flows. Returns how soon
    /// it wants to be called again.
    pub fn tick(&mut self, registry: &Registry, now: Instant) -> Option<Duration> {
        let nat = self.nat.as_mut()?;
        nat.poll(registry, self.epoch, now, &mut self.counters);
        nat.expire_udp(registry, now);
        nat.iface
            .poll_delay(smol_now(self.epoch, now), &nat.sockets)
            .map(|d| Duration::from_micros(d.total_micros()))
    }
}

/// An Ethernet/IPv4/UDP frame.
pub fn udp_frame(
    src_mac: [u8; 6],
    dst_mac: [u8; 6],
    src: SocketAddrV4,
    dst: SocketAddrV4,
    payload: &[u8],
) -> Vec<u8> {
    let caps = ChecksumCapabilities::default();
    let udp = UdpRepr {
        src_port: src.port(),
        dst_port: dst.port(),
    };
    let ip = Ipv4Repr {
        src_addr: *src.ip(),
        dst_addr: *dst.ip(),
        next_header: IpProtocol::Udp,
        payload_len: udp.header_len() + payload.len(),
        hop_limit: 64,
    };
    let mut frame = vec![0; 14 + ip.buffer_len() + udp.header_len() + payload.len()];
    let mut eth = EthernetFrame::new_unchecked(&mut frame[..]);
    EthernetRepr {
        src_addr: EthernetAddress(src_mac),
        dst_addr: EthernetAddress(dst_mac),
        ethertype: EthernetProtocol::Ipv4,
    }
    .emit(&mut eth);
    let mut ipp = Ipv4Packet::new_unchecked(eth.payload_mut());
    ip.emit(&mut ipp, &caps);
    udp.emit(
        &mut UdpPacket::new_unchecked(ipp.payload_mut()),
        &IpAddress::Ipv4(*src.ip()),
        &IpAddress::Ipv4(*dst.ip()),
        payload.len(),
        |b| b.copy_from_slice(payload),
        &caps,
    );
    frame
}

/// An ARP reply from `mac`/`ip` to the gateway, fed to smoltcp so that it
/// knows a guest's MAC before it first sends to it.
fn arp_hint(gateway_mac: [u8; 6], gateway: Ipv4Addr, mac: [u8; 6], ip: Ipv4Addr) -> Vec<u8> {
    let repr = ArpRepr::EthernetIpv4 {
        operation: ArpOperation::Reply,
        source_hardware_addr: EthernetAddress(mac),
        source_protocol_addr: ip,
        target_hardware_addr: EthernetAddress(gateway_mac),
        target_protocol_addr: gateway,
    };
    let mut frame = vec![0; 14 + repr.buffer_len()];
    let mut eth = EthernetFrame::new_unchecked(&mut frame[..]);
    EthernetRepr {
        src_addr: EthernetAddress(mac),
        dst_addr: EthernetAddress(gateway_mac),
        ethertype: EthernetProtocol::Arp,
    }
    .emit(&mut eth);
    repr.emit(&mut ArpPacket::new_unchecked(eth.payload_mut()));
    frame
}

/// The host's first nameserver from `/etc/resolv.conf`.
fn host_resolver() -> Option<SocketAddr> {
    let text = std::fs::read_to_string("/etc/resolv.conf").ok()?;
    text.lines().find_map(|line| {
        let mut words = line.split_whitespace();
        (words.next() == Some("nameserver"))
            .then(|| words.next()?.parse::<IpAddr>().ok())
            .flatten()
            .map(|ip| SocketAddr::new(ip, 53))
    })
}

impl Nat {
    fn new(
        config: &NetworkConfig,
        subnet: Subnet,
        mac: [u8; 6],
        registry: &Registry,
        now: Instant,
    ) -> Result<Nat, GatewayError> {
        let mut device = Queue {
            mtu: usize::from(config.mtu),
            ..Queue::default()
        };
        let mut iface_config = Config::new(HardwareAddress::Ethernet(EthernetAddress(mac)));
        iface_config.random_seed =
            u64::from_le_bytes([mac[0], mac[1], mac[2], mac[3], mac[4], mac[5], 0, 1]);
        let mut iface = Interface::new(iface_config, &mut device, smol_now(now, now));
        let gateway = subnet.gateway();
        iface.update_ip_addrs(|addrs| {
            let _ = addrs.push(IpCidr::new(IpAddress::Ipv4(gateway), subnet.prefix()));
        });
        // AnyIP: the gateway answers for every address beyond the subnet.
        let _ = iface.routes_mut().add_default_ipv4_route(gateway);
        iface.set_any_ip(true);
        let mut listeners = Vec::new();
        for (i, f) in config.forwards.iter().enumerate() {
            let addr = SocketAddr::V4(SocketAddrV4::new(f.host_addr, f.host_port));
            let bind_err = |source| GatewayError::Forward {
                forward: *f,
                addr,
                source,
            };
            let mut listener = match f.proto {
                Proto::Tcp => Listener::Tcp(TcpListener::bind(addr).map_err(bind_err)?),
                Proto::Udp => Listener::Udp(UdpSocket::bind(addr).map_err(bind_err)?),
            };
            let token = Token(TOKEN_BASE + i);
            match &mut listener {
                Listener::Tcp(l) => registry.register(l, token, Interest::READABLE),
                Listener::Udp(s) => registry.register(s, token, Interest::READABLE),
            }
            .map_err(GatewayError::Register)?;
            listeners.push((*f, listener));
        }
        Ok(Nat {
            iface,
            device,
            sockets: SocketSet::new(Vec::new()),
            flows: BTreeMap::new(),
            by_key: BTreeMap::new(),
            next_id: listeners.len(),
            listeners,
            udp_peers: BTreeMap::new(),
            next_port: 49152,
            dns: config.dns.or_else(host_resolver),
        })
    }

    fn poll(
        &mut self,
        registry: &Registry,
        epoch: Instant,
        now: Instant,
        counters: &mut GatewayCounters,
    ) {
        for _ in 0..64 {
            self.iface
                .poll(smol_now(epoch, now), &mut self.device, &mut self.sockets);
            let moved = self.pump_all(registry, counters);
            if !moved && self.device.rx.is_empty() {
                break;
            }
        }
    }

    fn new_id(&mut self) -> usize {
        // Ids only grow (a token is never reused while a stale event for
        // it might still be queued); 2^64 flows do not happen.
        let id = self.next_id;
        self.next_id += 1;
        id
    }

    /// Registers `stream` and keeps it with `socket` as a new flow; its id,
    /// or `None` if the event loop refused the stream.
    fn add_tcp_flow(
        &mut self,
        registry: &Registry,
        mut stream: TcpStream,
        socket: tcp::Socket<'static>,
        state: TcpState,
        key: FlowKey,
    ) -> Option<usize> {
        let id = self.new_id();
        registry
            .register(
                &mut stream,
                Token(TOKEN_BASE + id),
                Interest::READABLE | Interest::WRITABLE,
            )
            .ok()?;
        let handle = self.sockets.add(socket);
        self.flows.insert(
            id,
            Flow::Tcp(Box::new(TcpFlow {
                handle,
                stream,
                state,
                key,
                host_eof: false,
                host_shut: false,
                host_failed: false,
            })),
        );
        self.by_key.insert(key, id);
        Some(id)
    }

    fn tcp_socket() -> tcp::Socket<'static> {
        let mut s = tcp::Socket::new(
            tcp::SocketBuffer::new(vec![0; TCP_BUFFER]),
            tcp::SocketBuffer::new(vec![0; TCP_BUFFER]),
        );
        s.set_nagle_enabled(false);
        // Slow start and backing off on loss, so that a burst does not
        // overrun the guest's NIC queue.
        s.set_congestion_control(tcp::CongestionControl::Cubic);
        s
    }

    #[allow(clippy::too_many_arguments)]
    fn tcp_in_frame(
        &mut self,
        frame: &[u8],
        ip: &Ipv4Repr,
        body: &[u8],
        registry: &Registry,
        gateway: Ipv4Addr,
        subnet: Subnet,
        now: Instant,
        epoch: Instant,
        counters: &mut GatewayCounters,
    ) {
        let Ok(tcp) = TcpPacket::new_checked(body) else {
            counters.malformed += 1;
            return;
        };
        let guest = SocketAddrV4::new(ip.src_addr, tcp.src_port());
        let remote = SocketAddrV4::new(ip.dst_addr, tcp.dst_port());
        let key = (6, guest, remote);
        if tcp.syn() && !tcp.ack() && !self.by_key.contains_key(&key) {
            if self.flows.len() >= MAX_FLOWS
                || !subnet.contains(ip.src_addr)
                || (subnet.contains(ip.dst_addr) && ip.dst_addr != gateway)
                || ip.dst_addr.is_broadcast()
                || ip.dst_addr.is_multicast()
            {
                return;
            }
            let target = if ip.dst_addr == gateway {
                SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, remote.port()))
            } else {
                SocketAddr::V4(remote)
            };
            let Ok(stream) = TcpStream::connect(target) else {
                counters.connect_failed += 1;
                return;
            };
            let state = TcpState::Connecting {
                syn: frame.to_vec(),
            };
            if self
                .add_tcp_flow(registry, stream, Self::tcp_socket(), state, key)
                .is_some()
            {
                counters.tcp_out += 1;
            }
            return;
        }
        if let Some(Flow::Tcp(f)) = self.by_key.get(&key).and_then(|id| self.flows.get(id)) {
            if matches!(f.state, TcpState::Connecting { .. }) {
                // A retransmitted SYN while the host connect runs.
                return;
            }
        }
        self.device.rx.push_back(frame.to_vec());
        self.poll(registry, epoch, now, counters);
    }

    #[allow(clippy::too_many_arguments)]
    fn udp_out(
        &mut self,
        registry: &Registry,
        gateway: Ipv4Addr,
        guest_mac: [u8; 6],
        guest: SocketAddrV4,
        remote: SocketAddrV4,
        payload: &[u8],
        now: Instant,
        counters: &mut GatewayCounters,
    ) {
        // A reply to a host peer of an inbound UDP forward.
        if *remote.ip() == gateway {
            if let Some(peer) = self.udp_peers.get_mut(&remote.port()) {
                if let Some((f, Listener::Udp(sock))) = self.listeners.get(peer.forward) {
                    if f.guest == *guest.ip() && f.guest_port == guest.port() {
                        peer.last = now;
                        let _ = sock.send_to(payload, peer.peer);
                        return;
                    }
                }
            }
        }
        if remote.ip().is_broadcast() || remote.ip().is_multicast() {
            return;
        }
        let key = (17, guest, remote);
        let id = match self.by_key.get(&key) {
            Some(id) => *id,
            None => {
                if self.flows.len() >= MAX_FLOWS {
                    return;
                }
                let target = if *remote.ip() == gateway {
                    if remote.port() == 53 {
                        match self.dns {
                            Some(dns) => dns,
                            None => return,
                        }
                    } else {
                        SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, remote.port()))
                    }
                } else {
                    SocketAddr::V4(remote)
                };
                let bind: SocketAddr = if target.is_ipv4() {
                    (Ipv4Addr::UNSPECIFIED, 0).into()
                } else {
                    (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
                };
                let Ok(mut socket) = UdpSocket::bind(bind) else {
                    return;
                };
                if socket.connect(target).is_err() {
                    return;
                }
                let id = self.new_id();
                if registry
                    .register(&mut socket, Token(TOKEN_BASE + id), Interest::READABLE)
                    .is_err()
                {
                    return;
                }
                self.flows.insert(
                    id,
                    Flow::Udp(Box::new(UdpFlow {
                        socket,
                        guest_mac,
                        guest,
                        remote,
                        key,
                        last: now,
                    })),
                );
                self.by_key.insert(key, id);
                counters.udp_flows += 1;
                id
            }
        };
        if let Some(Flow::Udp(flow)) = self.flows.get_mut(&id) {
            flow.last = now;
            let _ = flow.socket.send(payload);
        }
    }

    fn expire_udp(&mut self, registry: &Registry, now: Instant) {
        let stale: Vec<usize> = self
            .flows
            .iter()
            .filter_map(|(id, f)| match f {
                Flow::Udp(u) if now.saturating_duration_since(u.last) > UDP_IDLE => Some(*id),
                _ => None,
            })
            .collect();
        for id in stale {
            self.remove(id, registry);
        }
        self.udp_peers
            .retain(|_, p| now.saturating_duration_since(p.last) <= UDP_IDLE);
    }

    fn remove(&mut self, id: usize, registry: &Registry) {
        match self.flows.remove(&id) {
            Some(Flow::Tcp(mut f)) => {
                let _ = registry.deregister(&mut f.stream);
                self.sockets.remove(f.handle);
                self.by_key.remove(&f.key);
            }
            Some(Flow::Udp(mut f)) => {
                let _ = registry.deregister(&mut f.socket);
                self.by_key.remove(&f.key);
            }
            None => {}
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn accept(
        &mut self,
        index: usize,
        registry: &Registry,
        gateway: Ipv4Addr,
        dhcp: Option<&Server>,
        now: Instant,
        counters: &mut GatewayCounters,
    ) {
        let Some((forward, _)) = self.listeners.get(index) else {
            return;
        };
        let forward = *forward;
        let guest = SocketAddrV4::new(forward.guest, forward.guest_port);
        let gateway_mac = match self.iface.hardware_addr() {
            HardwareAddress::Ethernet(m) => m.0,
            #[allow(unreachable_patterns)]
            _ => return,
        };
        loop {
            match &mut self.listeners[index].1 {
                Listener::Tcp(listener) => {
                    let stream = match listener.accept() {
                        Ok((stream, _)) => stream,
                        Err(_) => return,
                    };
                    if self.flows.len() >= MAX_FLOWS {
                        continue;
                    }
                    if let Some(mac) = dhcp.and_then(|d| d.mac_of(forward.guest)) {
                        self.device.rx.push_back(arp_hint(
                            gateway_mac,
                            gateway,
                            mac,
                            forward.guest,
                        ));
                    }
                    let port = self.ephemeral_port();
                    let mut socket = Self::tcp_socket();
                    if socket
                        .connect(
                            self.iface.context(),
                            (IpAddress::Ipv4(forward.guest), forward.guest_port),
                            IpListenEndpoint {
                                addr: Some(IpAddress::Ipv4(gateway)),
                                port,
                            },
                        )
                        .is_err()
                    {
                        continue;
                    }
                    let key = (6, guest, SocketAddrV4::new(gateway, port));
                    if self
                        .add_tcp_flow(registry, stream, socket, TcpState::Open, key)
                        .is_some()
                    {
                        counters.tcp_in += 1;
                    }
                }
                Listener::Udp(socket) => {
                    let mut buf = vec![0; MAX_DATAGRAM];
                    let (len, peer) = match socket.recv_from(&mut buf) {
                        Ok(x) => x,
                        Err(_) => return,
                    };
                    let port = match self
                        .udp_peers
                        .iter()
                        .find(|(_, p)| p.peer == peer && p.forward == index)
                    {
                        Some((port, _)) => *port,
                        None if self.udp_peers.len() >= MAX_FLOWS => continue,
                        None => {
                            let port = self.ephemeral_port();
                            self.udp_peers.insert(
                                port,
                                UdpPeer {
                                    forward: index,
                                    peer,
                                    last: now,
                                },
                            );
                            port
                        }
                    };
                    let Some(mac) = dhcp.and_then(|d| d.mac_of(forward.guest)) else {
                        continue;
                    };
                    let frame = udp_frame(
                        gateway_mac,
                        mac,
                        SocketAddrV4::new(gateway, port),
                        guest,
                        &buf[..len],
                    );
                    self.device.tx.push_back(frame);
                }
            }
        }
    }

    fn ephemeral_port(&mut self) -> u16 {
        loop {
            let port = self.next_port;
            self.next_port = if port == u16::MAX { 49152 } else { port + 1 };
            let taken = self.udp_peers.contains_key(&port)
                || self.by_key.keys().any(|(_, _, r)| r.port() == port);
            if !taken {
                return port;
            }
        }
    }

    fn flow_ready(
        &mut self,
        id: usize,
        now: Instant,
        epoch: Instant,
        counters: &mut GatewayCounters,
    ) {
        match self.flows.get_mut(&id) {
            Some(Flow::Tcp(flow)) => {
                if let TcpState::Connecting { syn } = &flow.state {
                    // mio's recipe: on an event, take_error, then
                    // peer_addr; NotConnected means not yet.
                    let connected = match flow.stream.take_error() {
                        Ok(Some(_)) | Err(_) => false,
                        Ok(None) => match flow.stream.peer_addr() {
                            Ok(_) => true,
                            Err(e) if e.kind() == io::ErrorKind::NotConnected => return,
                            Err(_) => false,
                        },
                    };
                    let syn = syn.clone();
                    let (dst, port) = (*flow.key.2.ip(), flow.key.2.port());
                    let socket = self.sockets.get_mut::<tcp::Socket>(flow.handle);
                    let _ = socket.listen(IpListenEndpoint {
                        addr: Some(IpAddress::Ipv4(dst)),
                        port,
                    });
                    flow.state = TcpState::Open;
                    self.device.rx.push_back(syn);
                    self.iface
                        .poll(smol_now(epoch, now), &mut self.device, &mut self.sockets);
                    if !connected {
                        counters.connect_failed += 1;
                        self.sockets.get_mut::<tcp::Socket>(flow.handle).abort();
                        flow.host_failed = true;
                    }
                }
            }
            Some(Flow::Udp(flow)) => {
                let mut buf = vec![0; MAX_DATAGRAM];
                // Replies come from what the guest addressed (`.2` for the
                // host's loopback or DNS).
                while let Ok(len) = flow.socket.recv(&mut buf) {
                    flow.last = now;
                    let mac = match self.iface.hardware_addr() {
                        HardwareAddress::Ethernet(m) => m.0,
                        #[allow(unreachable_patterns)]
                        _ => return,
                    };
                    let frame =
                        udp_frame(mac, flow.guest_mac, flow.remote, flow.guest, &buf[..len]);
                    if self.device.tx.len() < MAX_OUTPUT {
                        self.device.tx.push_back(frame);
                    }
                }
            }
            None => {}
        }
    }

    /// Moves bytes between each open TCP flow's smoltcp socket and its
    /// host stream; removes finished flows. Whether anything moved.
    fn pump_all(&mut self, registry: &Registry, _counters: &mut GatewayCounters) -> bool {
        let mut moved = false;
        let mut done = Vec::new();
        for (id, flow) in &mut self.flows {
            let Flow::Tcp(flow) = flow else { continue };
            if matches!(flow.state, TcpState::Connecting { .. }) {
                continue;
            }
            let socket = self.sockets.get_mut::<tcp::Socket>(flow.handle);
            // Guest → host.
            while socket.can_recv() && !flow.host_failed {
                let stream = &mut flow.stream;
                let wrote = socket.recv(|buf| match stream.write(buf) {
                    Ok(n) => (n, Ok(n)),
                    Err(e) => (0, Err(e)),
                });
                match wrote {
                    Ok(Ok(n)) if n > 0 => moved = true,
                    Ok(Err(e)) if e.kind() != io::ErrorKind::WouldBlock => {
                        flow.host_failed = true;
                        socket.abort();
                    }
                    _ => break,
                }
            }
            if !socket.may_recv()
                && socket.recv_queue() == 0
                && !flow.host_shut
                && socket.state() != tcp::State::SynSent
                && socket.state() != tcp::State::SynReceived
                && socket.state() != tcp::State::Listen
            {
                let _ = flow.stream.shutdown(Shutdown::Write);
                flow.host_shut = true;
                moved = true;
            }
            // Host → guest.
            while !flow.host_eof && !flow.host_failed && socket.can_send() {
                let stream = &mut flow.stream;
                let read = socket.send(|buf| match stream.read(buf) {
                    Ok(n) => (n, Ok(n)),
                    Err(e) => (0, Err(e)),
                });
                match read {
                    Ok(Ok(0)) => {
                        flow.host_eof = true;
                        socket.close();
                        moved = true;
                    }
                    Ok(Ok(_)) => moved = true,
                    Ok(Err(e)) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Ok(Err(_)) => {
                        flow.host_failed = true;
                        socket.abort();
                        moved = true;
                    }
                    Err(_) => break,
                }
            }
            let closed = matches!(socket.state(), tcp::State::Closed | tcp::State::TimeWait);
            if closed && (flow.host_eof || flow.host_shut || flow.host_failed) {
                done.push(*id);
            } else if socket.state() == tcp::State::Closed && !socket.is_active() {
                // Reset by the guest, or never got going.
                done.push(*id);
            }
        }
        for id in done {
            self.remove(id, registry);
            moved = true;
        }
        moved
    }
}
