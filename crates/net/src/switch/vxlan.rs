//! A VXLAN tunnel port (RFC 7348): Ethernet frames in UDP, an 8-byte
//! header carrying the 24-bit VNI. Interoperates with the Linux kernel's
//! `vxlan` devices: the same header, the same port (4789 unless
//! configured), any source port accepted.
//!
//! Broadcast, multicast and unknown-unicast frames go to every static
//! remote and every learned VTEP (head-end replication); a frame for a
//! MAC learned behind a VTEP goes to that VTEP only. Learned entries age
//! as the switch's MAC table does. A datagram that is not VXLAN for our
//! VNI, or whose inner frame is not Ethernet, is dropped and counted.

use std::collections::BTreeMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

use mio::net::UdpSocket;

use super::table::{well_formed, MAC_AGEING, MAX_MACS};
use crate::network::Vxlan;

/// The VXLAN header's length.
pub const HEADER_LEN: usize = 8;
/// The "I" flag: the VNI is valid.
const FLAG_I: u8 = 0x08;

/// Encapsulates `frame` for `vni`.
pub fn encapsulate(vni: u32, frame: &[u8]) -> Vec<u8> {
    let mut packet = Vec::with_capacity(HEADER_LEN + frame.len());
    let v = vni.to_be_bytes();
    packet.extend_from_slice(&[FLAG_I, 0, 0, 0, v[1], v[2], v[3], 0]);
    packet.extend_from_slice(frame);
    packet
}

/// The inner frame of `packet` if it is VXLAN for `vni` carrying an
/// Ethernet frame; reserved bits are ignored as the RFC says.
pub fn decapsulate(vni: u32, packet: &[u8]) -> Option<&[u8]> {
    if packet.len() < HEADER_LEN || packet[0] & FLAG_I == 0 {
        return None;
    }
    let got = u32::from_be_bytes([0, packet[4], packet[5], packet[6]]);
    let frame = &packet[HEADER_LEN..];
    (got == vni && well_formed(frame)).then_some(frame)
}

/// Ones-complement sum of `data` as 16-bit big-endian words.
fn sum16(data: &[u8]) -> u32 {
    let mut sum = 0u32;
    let mut chunks = data.chunks_exact(2);
    for c in &mut chunks {
        sum += u32::from(u16::from_be_bytes([c[0], c[1]]));
    }
    if let [last] = chunks.remainder() {
        sum += u32::from(*last) << 8;
    }
    sum
}

fn fold(mut sum: u32) -> u16 {
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum as u16
}

/// Completes the TCP or UDP checksum of an IPv4 frame whose sender left
/// it to offload. A kernel VXLAN device over a veth (two namespaces of one
/// host) hands the inner packet on with only the pseudo-header's sum in
/// the checksum field (`CHECKSUM_PARTIAL`), expecting a NIC to finish it;
/// a guest without checksum offload would drop every such segment. Only a
/// field holding exactly that partial sum is completed: a wrong checksum
/// of any other value is left for the guest to refuse.
pub fn complete_partial_checksum(frame: &mut [u8]) {
    if frame.len() < 14 + 20 || frame[12..14] != [0x08, 0x00] {
        return;
    }
    let ip = &frame[14..];
    let header_len = usize::from(ip[0] & 0x0f) * 4;
    let total = usize::from(u16::from_be_bytes([ip[2], ip[3]]));
    let fragment = u16::from_be_bytes([ip[6], ip[7]]) & 0x3fff;
    let protocol = ip[9];
    let field = match protocol {
        6 => 16,
        17 => 6,
        _ => return,
    };
    if ip[0] >> 4 != 4
        || header_len < 20
        || total > ip.len()
        || total < header_len + field + 2
        || fragment != 0
    {
        return;
    }
    let l4_len = total - header_len;
    let mut pseudo = sum16(&ip[12..20]) + u32::from(protocol);
    pseudo += l4_len as u32;
    let start = 14 + header_len;
    let at = start + field;
    let stored = u16::from_be_bytes([frame[at], frame[at + 1]]);
    if stored != fold(pseudo) {
        return;
    }
    frame[at] = 0;
    frame[at + 1] = 0;
    let mut sum = !fold(pseudo + sum16(&frame[start..start + l4_len]));
    if protocol == 17 && sum == 0 {
        sum = 0xffff;
    }
    frame[at..at + 2].copy_from_slice(&sum.to_be_bytes());
}

/// The tunnel's state.
pub struct Tunnel {
    config: Vxlan,
    socket: UdpSocket,
    vteps: BTreeMap<[u8; 6], (IpAddr, Instant)>,
}

impl Tunnel {
    /// A tunnel sending and receiving on `socket` (bound to the local
    /// endpoint).
    pub fn new(config: Vxlan, socket: UdpSocket) -> Tunnel {
        Tunnel {
            config,
            socket,
            vteps: BTreeMap::new(),
        }
    }

    fn targets(&self, frame: &[u8]) -> Vec<IpAddr> {
        let mut dst = [0u8; 6];
        dst.copy_from_slice(&frame[..6]);
        if dst[0] & 1 == 0 {
            if let Some((ip, seen)) = self.vteps.get(&dst) {
                if seen.elapsed() < MAC_AGEING {
                    return vec![*ip];
                }
            }
        }
        let mut all: Vec<IpAddr> = self.config.remotes.clone();
        for (ip, _) in self.vteps.values() {
            if !all.contains(ip) {
                all.push(*ip);
            }
        }
        all
    }

    /// Sends `frame` into the tunnel. Whether every copy left.
    pub fn send(&mut self, frame: &[u8]) -> bool {
        let packet = encapsulate(self.config.vni, frame);
        let mut all = true;
        for ip in self.targets(frame) {
            let to = SocketAddr::new(ip, self.config.port);
            match self.socket.send_to(&packet, to) {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => all = false,
                Err(_) => all = false,
            }
        }
        all
    }

    /// Reads up to `max` waiting datagrams; `deliver` gets each inner
    /// frame, or `None` for a datagram that was refused. Whether more may
    /// wait (`max` were read).
    pub fn receive(
        &mut self,
        buf: &mut [u8],
        now: Instant,
        max: usize,
        mut deliver: impl FnMut(Option<&[u8]>),
    ) -> bool {
        for _ in 0..max {
            let (len, from) = match self.socket.recv_from(buf) {
                Ok(x) => x,
                Err(_) => return false,
            };
            if decapsulate(self.config.vni, &buf[..len]).is_none() {
                deliver(None);
                continue;
            }
            let frame = &mut buf[HEADER_LEN..len];
            let mut src = [0u8; 6];
            src.copy_from_slice(&frame[6..12]);
            if self.vteps.len() < MAX_MACS || self.vteps.contains_key(&src) {
                self.vteps.insert(src, (from.ip(), now));
            }
            complete_partial_checksum(frame);
            deliver(Some(frame));
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_refusals() {
        let mut frame = vec![0xff; 6];
        frame.extend_from_slice(&[2, 0, 0, 0, 0, 1, 0x08, 0x06]);
        frame.extend_from_slice(&[0; 28]);
        let packet = encapsulate(4242, &frame);
        assert_eq!(&packet[..8], &[0x08, 0, 0, 0, 0, 0x10, 0x92, 0]);
        assert_eq!(decapsulate(4242, &packet), Some(&frame[..]));
        // Another VNI, no I flag, too short, a runt inside.
        assert_eq!(decapsulate(4243, &packet), None);
        let mut no_i = packet.clone();
        no_i[0] = 0;
        assert_eq!(decapsulate(4242, &no_i), None);
        assert_eq!(decapsulate(4242, &packet[..7]), None);
        assert_eq!(decapsulate(4242, &packet[..8 + 10]), None);
        // Reserved bits set by a peer are ignored.
        let mut reserved = packet.clone();
        reserved[1] = 0xff;
        reserved[7] = 0xff;
        assert_eq!(decapsulate(4242, &reserved), Some(&frame[..]));
    }

    /// An IPv4/UDP frame with a correct checksum.
    fn udp_frame() -> Vec<u8> {
        crate::switch::gateway::udp_frame(
            [2, 0, 0, 0, 0, 2],
            [2, 0, 0, 0, 0, 1],
            "10.0.0.1:1000".parse().unwrap(),
            "10.0.0.2:2000".parse().unwrap(),
            b"hello, checksum!",
        )
    }

    #[test]
    fn a_partial_checksum_is_completed_and_nothing_else_is_touched() {
        let good = udp_frame();
        let at = 14 + 20 + 6;
        // What the sender would have left: the pseudo-header's sum.
        let ip = &good[14..];
        let pseudo = fold(sum16(&ip[12..20]) + 17 + (good.len() - 34) as u32);
        let mut partial = good.clone();
        partial[at..at + 2].copy_from_slice(&pseudo.to_be_bytes());
        complete_partial_checksum(&mut partial);
        assert_eq!(partial, good);
        // A correct frame stays as it is; so does a corrupt one.
        let mut same = good.clone();
        complete_partial_checksum(&mut same);
        assert_eq!(same, good);
        let mut corrupt = good.clone();
        corrupt[at] ^= 0x55;
        let before = corrupt.clone();
        complete_partial_checksum(&mut corrupt);
        assert_eq!(corrupt, before);
        // Runts and other protocols are left alone.
        let mut runt = good[..30].to_vec();
        complete_partial_checksum(&mut runt);
        assert_eq!(runt, good[..30]);
    }
}
