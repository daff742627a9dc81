//! The switch's DHCP server: leases from the network's range (`.128` up),
//! stable per MAC address (the first free address from a hash of it), so
//! that a VM keeps its address across switch restarts.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use smoltcp::wire::{DhcpMessageType, DhcpOption, DhcpPacket, DhcpRepr, EthernetAddress};

use super::table::format_mac;
use crate::network::Subnet;

/// How long a lease lasts.
pub const LEASE: Duration = Duration::from_secs(3600);

/// One lease, for `net show`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseEntry {
    /// The client's MAC address.
    pub mac: String,
    /// Its address.
    pub ip: Ipv4Addr,
    /// Seconds until it expires (0: offered, not yet requested).
    pub expires_in_secs: u64,
}

#[derive(Debug, Clone, Copy)]
struct Lease {
    ip: Ipv4Addr,
    /// `None` while only offered.
    expires: Option<Instant>,
}

/// What the server hands out.
#[derive(Debug, Clone)]
pub struct DhcpConfig {
    /// The subnet.
    pub subnet: Subnet,
    /// The server's own address (the switch's `.2`).
    pub server: Ipv4Addr,
    /// The router guests are given, if any.
    pub router: Option<Ipv4Addr>,
    /// The DNS server guests are given, if any.
    pub dns: Option<Ipv4Addr>,
    /// The MTU (option 26), sent when not 1500.
    pub mtu: u16,
}

/// A reply to send: to `dst_ip` (broadcast for a client without an
/// address) at `dst_mac`.
#[derive(Debug)]
pub struct Reply {
    /// The DHCP message.
    pub payload: Vec<u8>,
    /// Destination IP.
    pub dst_ip: Ipv4Addr,
    /// Destination MAC.
    pub dst_mac: [u8; 6],
}

/// The server's state.
#[derive(Debug)]
pub struct Server {
    config: DhcpConfig,
    leases: BTreeMap<[u8; 6], Lease>,
}

impl Server {
    /// A server with no leases.
    pub fn new(config: DhcpConfig) -> Server {
        Server {
            config,
            leases: BTreeMap::new(),
        }
    }

    /// The leases, by MAC.
    pub fn leases(&self, now: Instant) -> Vec<LeaseEntry> {
        self.leases
            .iter()
            .map(|(mac, lease)| LeaseEntry {
                mac: format_mac(*mac),
                ip: lease.ip,
                expires_in_secs: lease
                    .expires
                    .map_or(0, |at| at.saturating_duration_since(now).as_secs()),
            })
            .collect()
    }

    /// The MAC an address is leased to.
    pub fn mac_of(&self, ip: Ipv4Addr) -> Option<[u8; 6]> {
        self.leases
            .iter()
            .find(|(_, l)| l.ip == ip)
            .map(|(mac, _)| *mac)
    }

    /// Answers one DHCP message (the UDP payload sent to port 67), or
    /// ignores it (`None`): malformed, not for us, or nothing to say.
    pub fn handle(&mut self, payload: &[u8], now: Instant) -> Option<Reply> {
        let packet = DhcpPacket::new_checked(payload).ok()?;
        let request = DhcpRepr::parse(&packet).ok()?;
        let mac = request.client_hardware_address.0;
        if mac[0] & 1 != 0 {
            return None;
        }
        self.expire(now);
        let (kind, ip) = match request.message_type {
            DhcpMessageType::Discover => (DhcpMessageType::Offer, self.allocate(mac, None)?),
            DhcpMessageType::Request => {
                if request
                    .server_identifier
                    .is_some_and(|s| s != self.config.server)
                {
                    // The client chose another server.
                    self.leases.remove(&mac);
                    return None;
                }
                let wanted = request.requested_ip.or_else(|| {
                    (!request.client_ip.is_unspecified()).then_some(request.client_ip)
                })?;
                match self.allocate(mac, Some(wanted)) {
                    Some(ip) if ip == wanted => {
                        if let Some(lease) = self.leases.get_mut(&mac) {
                            lease.expires = Some(now + LEASE);
                        }
                        (DhcpMessageType::Ack, ip)
                    }
                    _ => (DhcpMessageType::Nak, Ipv4Addr::UNSPECIFIED),
                }
            }
            DhcpMessageType::Release | DhcpMessageType::Decline => {
                self.leases.remove(&mac);
                return None;
            }
            _ => return None,
        };
        let mtu_bytes = self.config.mtu.to_be_bytes();
        let mtu_option = [DhcpOption {
            kind: 26,
            data: &mtu_bytes,
        }];
        let nak = kind == DhcpMessageType::Nak;
        let dns = match self.config.dns {
            Some(dns) if !nak => {
                let mut list = heapless::Vec::new();
                let _ = list.push(dns);
                Some(list)
            }
            _ => None,
        };
        let reply = DhcpRepr {
            message_type: kind,
            transaction_id: request.transaction_id,
            secs: 0,
            client_hardware_address: EthernetAddress(mac),
            client_ip: Ipv4Addr::UNSPECIFIED,
            your_ip: ip,
            server_ip: self.config.server,
            router: self.config.router.filter(|_| !nak),
            subnet_mask: (!nak).then(|| self.config.subnet.mask()),
            relay_agent_ip: Ipv4Addr::UNSPECIFIED,
            broadcast: request.broadcast,
            requested_ip: None,
            client_identifier: None,
            server_identifier: Some(self.config.server),
            parameter_request_list: None,
            dns_servers: dns,
            max_size: None,
            lease_duration: (!nak).then_some(LEASE.as_secs() as u32),
            renew_duration: (!nak).then_some(LEASE.as_secs() as u32 / 2),
            rebind_duration: (!nak).then_some(LEASE.as_secs() as u32 * 7 / 8),
            additional_options: if self.config.mtu != 1500 && !nak {
                &mtu_option
            } else {
                &[]
            },
        };
        let mut payload = vec![0u8; reply.buffer_len()];
        let mut packet = DhcpPacket::new_unchecked(&mut payload[..]);
        reply.emit(&mut packet).ok()?;
        // A client that has an address (renewing) hears back there; one
        // without hears a broadcast, which every client accepts.
        let (dst_ip, dst_mac) = if request.client_ip.is_unspecified() || nak {
            (Ipv4Addr::BROADCAST, [0xff; 6])
        } else {
            (request.client_ip, mac)
        };
        Some(Reply {
            payload,
            dst_ip,
            dst_mac,
        })
    }

    fn expire(&mut self, now: Instant) {
        self.leases
            .retain(|_, l| l.expires.is_none_or(|at| at > now));
    }

    /// The address for `mac`: its lease, else `wanted` if free and in the
    /// range, else the first free address from a hash of the MAC.
    fn allocate(&mut self, mac: [u8; 6], wanted: Option<Ipv4Addr>) -> Option<Ipv4Addr> {
        if let Some(lease) = self.leases.get(&mac) {
            return Some(lease.ip);
        }
        let (first, last) = self.config.subnet.dhcp_range();
        let (first, last) = (u32::from(first), u32::from(last));
        let taken = |ip: u32| self.leases.values().any(|l| u32::from(l.ip) == ip);
        let in_range = |ip: u32| (first..=last).contains(&ip);
        let pick = match wanted.map(u32::from) {
            Some(w) if in_range(w) && !taken(w) => Some(w),
            _ => {
                let span = last - first + 1;
                let hash = blake3::hash(&mac);
                let start = u32::from_le_bytes([
                    hash.as_bytes()[0],
                    hash.as_bytes()[1],
                    hash.as_bytes()[2],
                    hash.as_bytes()[3],
                ]) % span;
                (0..span)
                    .map(|i| first + (start + i) % span)
                    .find(|ip| !taken(*ip))
            }
        }?;
        let ip = Ipv4Addr::from(pick);
        self.leases.insert(mac, Lease { ip, expires: None });
        Some(ip)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server() -> Server {
        Server::new(DhcpConfig {
            subnet: "10.5.0.0/24".parse().unwrap(),
            server: Ipv4Addr::new(10, 5, 0, 2),
            router: Some(Ipv4Addr::new(10, 5, 0, 2)),
            dns: Some(Ipv4Addr::new(10, 5, 0, 2)),
            mtu: 1450,
        })
    }

    fn message(kind: DhcpMessageType, mac: [u8; 6], requested: Option<Ipv4Addr>) -> Vec<u8> {
        let repr = DhcpRepr {
            message_type: kind,
            transaction_id: 0x1234,
            secs: 0,
            client_hardware_address: EthernetAddress(mac),
            client_ip: Ipv4Addr::UNSPECIFIED,
            your_ip: Ipv4Addr::UNSPECIFIED,
            server_ip: Ipv4Addr::UNSPECIFIED,
            router: None,
            subnet_mask: None,
            relay_agent_ip: Ipv4Addr::UNSPECIFIED,
            broadcast: false,
            requested_ip: requested,
            client_identifier: None,
            server_identifier: None,
            parameter_request_list: None,
            dns_servers: None,
            max_size: None,
            lease_duration: None,
            renew_duration: None,
            rebind_duration: None,
            additional_options: &[],
        };
        let mut buf = vec![0; repr.buffer_len()];
        repr.emit(&mut DhcpPacket::new_unchecked(&mut buf[..]))
            .unwrap();
        buf
    }

    fn parse(reply: &Reply) -> (DhcpMessageType, Ipv4Addr, Option<Ipv4Addr>) {
        let packet = DhcpPacket::new_checked(&reply.payload[..]).unwrap();
        let repr = DhcpRepr::parse(&packet).unwrap();
        (repr.message_type, repr.your_ip, repr.router)
    }

    #[test]
    fn discover_offer_request_ack_is_stable() {
        let mut s = server();
        let now = Instant::now();
        let mac = [2, 0, 0, 0, 0, 1];
        let offer = s
            .handle(&message(DhcpMessageType::Discover, mac, None), now)
            .unwrap();
        let (kind, ip, router) = parse(&offer);
        assert_eq!(kind, DhcpMessageType::Offer);
        assert!(u32::from(ip) >= u32::from(Ipv4Addr::new(10, 5, 0, 128)));
        assert_eq!(router, Some(Ipv4Addr::new(10, 5, 0, 2)));
        let ack = s
            .handle(&message(DhcpMessageType::Request, mac, Some(ip)), now)
            .unwrap();
        assert_eq!(parse(&ack), (DhcpMessageType::Ack, ip, router));
        assert_eq!(s.leases(now)[0].ip, ip);
        // Another client asking for that address is refused.
        let other = [2, 0, 0, 0, 0, 2];
        let nak = s
            .handle(&message(DhcpMessageType::Request, other, Some(ip)), now)
            .unwrap();
        assert_eq!(parse(&nak).0, DhcpMessageType::Nak);
        // A new server (after a restart) hands the same MAC the same address.
        let mut again = server();
        let offer = again
            .handle(&message(DhcpMessageType::Discover, mac, None), now)
            .unwrap();
        assert_eq!(parse(&offer).1, ip);
    }

    #[test]
    fn garbage_is_ignored() {
        let mut s = server();
        let now = Instant::now();
        assert!(s.handle(&[], now).is_none());
        assert!(s.handle(&[1; 300], now).is_none());
        let mut m = message(DhcpMessageType::Discover, [2, 0, 0, 0, 0, 1], None);
        m.truncate(200);
        assert!(s.handle(&m, now).is_none());
    }

    #[test]
    fn the_range_runs_out_cleanly() {
        let mut s = Server::new(DhcpConfig {
            subnet: "10.6.0.0/29".parse().unwrap(),
            server: Ipv4Addr::new(10, 6, 0, 2),
            router: None,
            dns: None,
            mtu: 1500,
        });
        let now = Instant::now();
        let mut got = Vec::new();
        for i in 0..10u8 {
            if let Some(r) = s.handle(
                &message(DhcpMessageType::Discover, [2, 0, 0, 0, 0, i], None),
                now,
            ) {
                got.push(parse(&r).1);
            }
        }
        // .4 to .6 in a /29.
        assert_eq!(got.len(), 3, "{got:?}");
    }
}
