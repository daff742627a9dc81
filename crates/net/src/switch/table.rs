//! The switch's forwarding logic: a MAC table with ageing, flooding of
//! broadcast, multicast and unknown destinations, and per-port counters.
//! No I/O here: the serving loop asks where a frame goes and sends it.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// How long a learned address stays in the table without traffic from
/// it (the 802.1D default).
pub const MAC_AGEING: Duration = Duration::from_secs(300);
/// At most this many learned addresses; beyond, the oldest is dropped.
pub const MAX_MACS: usize = 4096;
/// An Ethernet header.
pub const ETHERNET_HEADER: usize = 14;

/// A port's number on its switch.
pub type PortId = usize;

/// Frame and byte counts of one port, as `net show` prints them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counters {
    /// Frames the port sent into the switch.
    pub rx_frames: u64,
    /// Their bytes.
    pub rx_bytes: u64,
    /// Frames the switch delivered to the port.
    pub tx_frames: u64,
    /// Their bytes.
    pub tx_bytes: u64,
    /// Frames for the port that were lost (its queue was full).
    pub tx_dropped: u64,
    /// Frames from the port that were refused as malformed.
    pub rx_malformed: u64,
}

/// Where a frame goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// To one port.
    Unicast(PortId),
    /// To every port but the one it came from.
    Flood,
    /// Nowhere: malformed, or its destination is the port it came from.
    Drop,
}

/// The MAC table.
#[derive(Debug, Default)]
pub struct Table {
    macs: BTreeMap<[u8; 6], (PortId, Instant)>,
}

/// One MAC table entry, for `net show`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MacEntry {
    /// The address.
    pub mac: String,
    /// The port it was last seen on.
    pub port: PortId,
    /// Seconds since.
    pub age_secs: u64,
}

/// Whether a frame is long enough to be Ethernet and its source is a
/// unicast address (a multicast source is never legitimate).
pub fn well_formed(frame: &[u8]) -> bool {
    frame.len() >= ETHERNET_HEADER && frame[6] & 1 == 0
}

impl Table {
    /// Learns the source of `frame` (from `port`) and says where it goes.
    /// The caller checked [`well_formed`].
    pub fn forward(&mut self, port: PortId, frame: &[u8], now: Instant) -> Verdict {
        let mut dst = [0u8; 6];
        dst.copy_from_slice(&frame[..6]);
        let mut src = [0u8; 6];
        src.copy_from_slice(&frame[6..12]);
        self.learn(src, port, now);
        if dst[0] & 1 != 0 {
            return Verdict::Flood;
        }
        match self.macs.get(&dst) {
            Some(&(out, seen)) if now.saturating_duration_since(seen) < MAC_AGEING => {
                if out == port {
                    Verdict::Drop
                } else {
                    Verdict::Unicast(out)
                }
            }
            _ => Verdict::Flood,
        }
    }

    fn learn(&mut self, src: [u8; 6], port: PortId, now: Instant) {
        if self.macs.len() >= MAX_MACS && !self.macs.contains_key(&src) {
            self.expire(now);
            if self.macs.len() >= MAX_MACS {
                if let Some(oldest) = self
                    .macs
                    .iter()
                    .min_by_key(|(_, (_, seen))| *seen)
                    .map(|(mac, _)| *mac)
                {
                    self.macs.remove(&oldest);
                }
            }
        }
        self.macs.insert(src, (port, now));
    }

    /// Drops entries older than [`MAC_AGEING`].
    pub fn expire(&mut self, now: Instant) {
        self.macs
            .retain(|_, (_, seen)| now.saturating_duration_since(*seen) < MAC_AGEING);
    }

    /// Forgets every address learned on `port` (it went away).
    pub fn forget_port(&mut self, port: PortId) {
        self.macs.retain(|_, (p, _)| *p != port);
    }

    /// The port `mac` was last seen on.
    pub fn port_of(&self, mac: [u8; 6]) -> Option<PortId> {
        self.macs.get(&mac).map(|(p, _)| *p)
    }

    /// The table, by address.
    pub fn entries(&self, now: Instant) -> Vec<MacEntry> {
        self.macs
            .iter()
            .map(|(mac, (port, seen))| MacEntry {
                mac: format_mac(*mac),
                port: *port,
                age_secs: now.saturating_duration_since(*seen).as_secs(),
            })
            .collect()
    }
}

/// `52:54:00:12:34:56`.
pub fn format_mac(mac: [u8; 6]) -> String {
    let [a, b, c, d, e, f] = mac;
    format!("{a:02x}:{b:02x}:{c:02x}:{d:02x}:{e:02x}:{f:02x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(dst: [u8; 6], src: [u8; 6]) -> Vec<u8> {
        let mut f = Vec::new();
        f.extend_from_slice(&dst);
        f.extend_from_slice(&src);
        f.extend_from_slice(&[0x08, 0x00]);
        f.extend_from_slice(&[0; 46]);
        f
    }

    const A: [u8; 6] = [2, 0, 0, 0, 0, 0xa];
    const B: [u8; 6] = [2, 0, 0, 0, 0, 0xb];
    const BCAST: [u8; 6] = [0xff; 6];

    #[test]
    fn learns_floods_unknown_and_forwards_known() {
        let mut t = Table::default();
        let now = Instant::now();
        assert_eq!(t.forward(1, &frame(B, A), now), Verdict::Flood);
        assert_eq!(t.forward(2, &frame(A, B), now), Verdict::Unicast(1));
        assert_eq!(t.forward(1, &frame(B, A), now), Verdict::Unicast(2));
        assert_eq!(t.forward(1, &frame(BCAST, A), now), Verdict::Flood);
        // A frame for a station on its own port goes nowhere.
        assert_eq!(t.forward(1, &frame(A, A), now), Verdict::Drop);
        // A station that moved is found on its new port.
        assert_eq!(t.forward(3, &frame(BCAST, B), now), Verdict::Flood);
        assert_eq!(t.port_of(B), Some(3));
        // Aged out: unknown again.
        let later = now + MAC_AGEING + Duration::from_secs(1);
        assert_eq!(t.forward(1, &frame(B, A), later), Verdict::Flood);
        t.forget_port(1);
        assert_eq!(t.port_of(A), None);
    }

    #[test]
    fn malformed_frames_are_recognised() {
        assert!(!well_formed(&[0; 13]));
        assert!(!well_formed(&frame(A, BCAST)));
        assert!(well_formed(&frame(BCAST, A)));
    }

    #[test]
    fn the_table_is_bounded() {
        let mut t = Table::default();
        let now = Instant::now();
        for i in 0..(MAX_MACS as u32 + 10) {
            let b = i.to_be_bytes();
            let src = [2, 0, b[0], b[1], b[2], b[3]];
            t.forward(
                1,
                &frame(BCAST, src),
                now + Duration::from_millis(u64::from(i)),
            );
        }
        assert_eq!(t.entries(now).len(), MAX_MACS);
    }
}
