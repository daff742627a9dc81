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

    /// Reads every waiting datagram; `deliver` gets each inner frame, or
    /// `None` for a datagram that was refused.
    pub fn receive(
        &mut self,
        buf: &mut [u8],
        now: Instant,
        mut deliver: impl FnMut(Option<&[u8]>),
    ) {
        loop {
            let (len, from) = match self.socket.recv_from(buf) {
                Ok(x) => x,
                Err(_) => return,
            };
            match decapsulate(self.config.vni, &buf[..len]) {
                Some(frame) => {
                    let mut src = [0u8; 6];
                    src.copy_from_slice(&frame[6..12]);
                    if self.vteps.len() < MAX_MACS || self.vteps.contains_key(&src) {
                        self.vteps.insert(src, (from.ip(), now));
                    }
                    deliver(Some(frame));
                }
                None => deliver(None),
            }
        }
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
}
