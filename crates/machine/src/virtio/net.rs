//! virtio-net (device id 1; virtio 1.2 §5.1): one receive and one transmit
//! queue, a MAC address, link status and an MTU. No offloads: frames are
//! whole Ethernet frames with correct checksums both ways, so any backend
//! (TAP, a socket segment, a virtual switch) can carry them as they are.
//!
//! Determinism (DESIGN §3.3, §3.6):
//! - A received frame is a machine input. The host applies it only when the
//!   guest has a receive buffer posted (`VirtioMmio::rx_ready`), at an
//!   instruction boundary; [`Net::receive`] writes it into that buffer and
//!   raises the interrupt at once. Whether a frame fits is decided from
//!   guest memory alone, so a replay delivers it identically.
//! - A transmitted frame completes when the guest notifies the transmit
//!   queue, and leaves the machine through the `Output` sink stamped with
//!   that icount.

use super::queue::Chain;
use riscv::Ram;
use serde::{Deserialize, Serialize};

pub const DEVICE_ID: u32 = 1;
pub const QUEUE_SIZE: u16 = 256;
/// Queue indices.
pub const RX_QUEUE: usize = 0;
#[cfg_attr(not(test), allow(dead_code))] // the tests drive the device with it
pub const TX_QUEUE: usize = 1;

pub const VIRTIO_NET_F_MTU: u64 = 1 << 3;
pub const VIRTIO_NET_F_MAC: u64 = 1 << 5;
pub const VIRTIO_NET_F_STATUS: u64 = 1 << 16;
pub const VIRTIO_NET_S_LINK_UP: u16 = 1;

/// The MTU we offer: frames are at most this plus the Ethernet header.
pub const MTU: u16 = 1500;
/// Largest frame either way: MTU, Ethernet header and an 802.1Q tag.
pub const MAX_FRAME: usize = MTU as usize + 18;
/// `struct virtio_net_hdr` as modern devices use it (with `num_buffers`).
pub const HEADER_LEN: usize = 12;
/// Offset of `num_buffers` in the header.
const NUM_BUFFERS: usize = 10;
/// Size of the configuration space: mac, status, max_virtqueue_pairs, mtu.
pub const CONFIG_LEN: usize = 12;

/// The device's state: its identity and counters (all guest-independent of
/// host timing, so they may be part of the state hash).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Net {
    /// Which NIC of the machine this is (0 for the first net device): names
    /// the NIC in inputs and outputs.
    nic: usize,
    mac: [u8; 6],
    rx_frames: u64,
    /// Frames that did not fit the posted buffer (longer than the guest
    /// allowed for).
    rx_dropped: u64,
    tx_frames: u64,
    /// Transmitted chains that were not a plausible frame (too short or too
    /// long); they are completed and dropped.
    tx_dropped: u64,
}

/// What the host side may want to know about a NIC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NetCounters {
    pub rx_frames: u64,
    pub rx_dropped: u64,
    pub tx_frames: u64,
    pub tx_dropped: u64,
}

/// A NIC's saved state: its number, MAC and counters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetState {
    pub nic: u64,
    pub mac: [u8; 6],
    pub rx_frames: u64,
    pub rx_dropped: u64,
    pub tx_frames: u64,
    pub tx_dropped: u64,
}

impl Net {
    pub fn new(nic: usize, mac: [u8; 6]) -> Self {
        Self {
            nic,
            mac,
            rx_frames: 0,
            rx_dropped: 0,
            tx_frames: 0,
            tx_dropped: 0,
        }
    }

    pub fn save(&self) -> NetState {
        NetState {
            nic: self.nic as u64,
            mac: self.mac,
            rx_frames: self.rx_frames,
            rx_dropped: self.rx_dropped,
            tx_frames: self.tx_frames,
            tx_dropped: self.tx_dropped,
        }
    }

    /// NIC `nic` in `state` (the restorer checks that the state's number
    /// is `nic`).
    pub fn from_state(state: &NetState, nic: usize) -> Self {
        Self {
            nic,
            mac: state.mac,
            rx_frames: state.rx_frames,
            rx_dropped: state.rx_dropped,
            tx_frames: state.tx_frames,
            tx_dropped: state.tx_dropped,
        }
    }

    pub fn features() -> u64 {
        VIRTIO_NET_F_MAC | VIRTIO_NET_F_STATUS | VIRTIO_NET_F_MTU
    }

    pub fn nic(&self) -> usize {
        self.nic
    }

    pub fn mac(&self) -> [u8; 6] {
        self.mac
    }

    pub fn counters(&self) -> NetCounters {
        NetCounters {
            rx_frames: self.rx_frames,
            rx_dropped: self.rx_dropped,
            tx_frames: self.tx_frames,
            tx_dropped: self.tx_dropped,
        }
    }

    pub fn config(&self) -> [u8; CONFIG_LEN] {
        let mut c = [0u8; CONFIG_LEN];
        c[..6].copy_from_slice(&self.mac);
        c[6..8].copy_from_slice(&VIRTIO_NET_S_LINK_UP.to_le_bytes());
        c[8..10].copy_from_slice(&1u16.to_le_bytes()); // max_virtqueue_pairs
        c[10..12].copy_from_slice(&MTU.to_le_bytes());
        c
    }

    /// Put `frame` into the posted receive buffer `chain`; returns the used
    /// length (0 if the frame was dropped because it does not fit).
    pub fn receive(&mut self, chain: &Chain, ram: &mut Ram, frame: &[u8]) -> u32 {
        let capacity = chain.writable.len();
        let total = (HEADER_LEN + frame.len()) as u64;
        if frame.len() > MAX_FRAME || total > capacity {
            self.rx_dropped += 1;
            return 0;
        }
        let mut header = [0u8; HEADER_LEN];
        header[NUM_BUFFERS..].copy_from_slice(&1u16.to_le_bytes());
        // The queue checked that every buffer is RAM.
        if !chain.writable.write(ram, 0, &header)
            || !chain.writable.write(ram, HEADER_LEN as u64, frame)
        {
            self.rx_dropped += 1;
            return 0;
        }
        self.rx_frames += 1;
        total as u32
    }

    /// The frame in a transmitted chain (header stripped), or `None` if the
    /// chain holds no plausible frame (counted and dropped).
    pub fn transmit(&mut self, chain: &Chain, ram: &Ram) -> Option<Vec<u8>> {
        let len = chain.readable.len();
        let header = HEADER_LEN as u64;
        // An Ethernet header at least; at most the largest frame.
        if len < header + 14 || len > header + MAX_FRAME as u64 {
            self.tx_dropped += 1;
            return None;
        }
        let mut frame = vec![0u8; (len - header) as usize];
        if !chain.readable.read(ram, header, &mut frame) {
            self.tx_dropped += 1;
            return None;
        }
        self.tx_frames += 1;
        Some(frame)
    }
}
