//! Split virtqueues (virtio 1.2 §2.7): the descriptor table, the available
//! (driver) ring and the used (device) ring, all in guest RAM.
//!
//! Everything the driver wrote is untrusted. Every ring access and every
//! buffer goes through [`Ram`] with its address and length checked, so a
//! bad queue can only produce a [`QueueError`] (the transport then sets
//! DEVICE_NEEDS_RESET), never a panic or a write outside RAM. Writes go
//! through `Ram` too, so dirty-page tracking and decoded-code invalidation
//! see device DMA like any guest store.

use riscv::Ram;
use serde::{Deserialize, Serialize};

/// The buffer continues in the descriptor named by `next`.
pub const VIRTQ_DESC_F_NEXT: u16 = 1;
/// The buffer is device-writable (otherwise device-readable).
pub const VIRTQ_DESC_F_WRITE: u16 = 2;
/// The buffer holds a table of descriptors (VIRTIO_F_INDIRECT_DESC).
pub const VIRTQ_DESC_F_INDIRECT: u16 = 4;
/// Driver to device: do not interrupt when a buffer is used (only without
/// VIRTIO_F_EVENT_IDX).
pub const VIRTQ_AVAIL_F_NO_INTERRUPT: u16 = 1;

/// The largest size a split queue may have.
pub const MAX_QUEUE_SIZE: u16 = 32768;
const DESC_SIZE: u64 = 16;
const USED_ELEM_SIZE: u64 = 8;

/// What the driver did wrong; the queue stops and the device asks for a
/// reset.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QueueError {
    #[error("queue size {size} is not a power of two from 1 to {max}")]
    BadSize { size: u32, max: u16 },
    #[error("the {ring} at {addr:#x} (+{len:#x} bytes) is misaligned or not in RAM")]
    BadRing {
        ring: &'static str,
        addr: u64,
        len: u64,
    },
    #[error("the driver made {count} buffers available at once, more than the queue size {size}")]
    TooManyAvailable { count: u16, size: u16 },
    #[error("descriptor index {index} is not below the table size {size}")]
    BadIndex { index: u32, size: u32 },
    #[error("descriptor {index}'s buffer at {addr:#x} (+{len:#x} bytes) is not in RAM")]
    BadBuffer { index: u32, addr: u64, len: u32 },
    #[error("the chain from head {head} has more than {limit} descriptors (a loop?)")]
    ChainTooLong { head: u16, limit: u32 },
    #[error("indirect descriptor {index}: {reason}")]
    BadIndirect { index: u32, reason: &'static str },
    #[error("descriptor {index} is device-readable but follows a device-writable one")]
    ReadableAfterWritable { index: u32 },
}

/// The ring features the driver negotiated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RingFeatures {
    /// VIRTIO_F_INDIRECT_DESC.
    pub indirect: bool,
    /// VIRTIO_F_EVENT_IDX.
    pub event_idx: bool,
}

/// One contiguous piece of a buffer, known to lie in RAM.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segment {
    pub addr: u64,
    pub len: u32,
}

/// The device-readable or device-writable half of a chain, as one byte
/// stream (devices must not assume anything about how the driver split a
/// request into descriptors).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Buffers {
    segments: Vec<Segment>,
}

impl Buffers {
    /// Total length in bytes.
    pub fn len(&self) -> u64 {
        self.segments.iter().map(|s| u64::from(s.len)).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn segments(&self) -> &[Segment] {
        &self.segments
    }

    /// The pieces of guest memory holding bytes `[start, start+len)` of the
    /// stream (fewer bytes if the stream is shorter).
    pub fn range(&self, start: u64, len: u64) -> Vec<Segment> {
        let end = start.saturating_add(len);
        let mut out = Vec::new();
        let mut pos = 0u64;
        for s in &self.segments {
            let (seg_start, seg_end) = (pos, pos + u64::from(s.len));
            pos = seg_end;
            let (from, to) = (start.max(seg_start), end.min(seg_end));
            if from < to {
                out.push(Segment {
                    addr: s.addr + (from - seg_start),
                    // `to - from` is at most `s.len`, a u32.
                    len: (to - from) as u32,
                });
            }
        }
        out
    }

    /// Copy bytes `[start, start+buf.len())` of the stream into `buf`; false
    /// if the stream is shorter.
    pub fn read(&self, ram: &Ram, start: u64, buf: &mut [u8]) -> bool {
        let mut done = 0usize;
        for s in self.range(start, buf.len() as u64) {
            let n = s.len as usize;
            if !ram.read(s.addr, &mut buf[done..done + n]) {
                return false;
            }
            done += n;
        }
        done == buf.len()
    }

    /// Copy `data` to bytes `[start, start+data.len())` of the stream; false
    /// (possibly after a partial copy) if the stream is shorter.
    pub fn write(&self, ram: &mut Ram, start: u64, data: &[u8]) -> bool {
        let mut done = 0usize;
        for s in self.range(start, data.len() as u64) {
            let n = s.len as usize;
            if !ram.write(s.addr, &data[done..done + n]) {
                return false;
            }
            done += n;
        }
        done == data.len()
    }
}

/// A request taken from the available ring: its head index (returned in
/// the used ring) and its buffers, readable ones first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chain {
    pub head: u16,
    pub readable: Buffers,
    pub writable: Buffers,
}

/// One split virtqueue's configuration and the device's position in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Queue {
    max_size: u16,
    /// As written by the driver; validated when the queue is enabled.
    size: u32,
    ready: bool,
    desc_addr: u64,
    driver_addr: u64,
    device_addr: u64,
    /// The next available-ring entry the device will take.
    next_avail: u16,
    /// The used-ring index the device will write next.
    next_used: u16,
    /// `next_used` when the device last decided whether to interrupt (event
    /// index suppression); `None` right after a reset.
    signalled_used: Option<u16>,
}

/// A queue's saved state (see [`Queue`] for the fields).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueState {
    pub max_size: u16,
    pub size: u32,
    pub ready: bool,
    pub desc_addr: u64,
    pub driver_addr: u64,
    pub device_addr: u64,
    pub next_avail: u16,
    pub next_used: u16,
    pub signalled_used: Option<u16>,
}

impl Queue {
    pub fn save(&self) -> QueueState {
        QueueState {
            max_size: self.max_size,
            size: self.size,
            ready: self.ready,
            desc_addr: self.desc_addr,
            driver_addr: self.driver_addr,
            device_addr: self.device_addr,
            next_avail: self.next_avail,
            next_used: self.next_used,
            signalled_used: self.signalled_used,
        }
    }

    /// A queue in `state`, as it is: the transport checks it against its
    /// device ([`super::VirtioMmio::restore`]).
    pub fn from_state(state: &QueueState) -> Self {
        Self {
            max_size: state.max_size,
            size: state.size,
            ready: state.ready,
            desc_addr: state.desc_addr,
            driver_addr: state.driver_addr,
            device_addr: state.device_addr,
            next_avail: state.next_avail,
            next_used: state.next_used,
            signalled_used: state.signalled_used,
        }
    }

    pub fn new(max_size: u16) -> Self {
        Self {
            max_size,
            size: u32::from(max_size),
            ready: false,
            desc_addr: 0,
            driver_addr: 0,
            device_addr: 0,
            next_avail: 0,
            next_used: 0,
            signalled_used: None,
        }
    }

    pub fn reset(&mut self) {
        *self = Self::new(self.max_size);
    }

    pub fn max_size(&self) -> u16 {
        self.max_size
    }

    pub fn size(&self) -> u32 {
        self.size
    }

    pub fn ready(&self) -> bool {
        self.ready
    }

    /// Driver writes to the configuration are ignored while the queue runs.
    pub fn set_size(&mut self, size: u32) {
        if !self.ready {
            self.size = size;
        }
    }

    /// Set one 32-bit half of the descriptor, driver or device area address.
    pub fn set_addr_half(&mut self, area: Area, high: bool, val: u32) {
        if self.ready {
            return;
        }
        let addr = match area {
            Area::Desc => &mut self.desc_addr,
            Area::Driver => &mut self.driver_addr,
            Area::Device => &mut self.device_addr,
        };
        let (shift, keep) = if high {
            (32, 0xffff_ffff)
        } else {
            (0, 0xffff_ffff_0000_0000)
        };
        *addr = (*addr & keep) | u64::from(val) << shift;
    }

    pub fn addr(&self, area: Area) -> u64 {
        match area {
            Area::Desc => self.desc_addr,
            Area::Driver => self.driver_addr,
            Area::Device => self.device_addr,
        }
    }

    /// Enable the queue; an invalid size is a driver error.
    pub fn enable(&mut self) -> Result<(), QueueError> {
        self.checked_size()?;
        self.ready = true;
        Ok(())
    }

    pub fn disable(&mut self) {
        self.ready = false;
    }

    /// Positions in the rings, for tests and diagnostics.
    pub fn next_avail(&self) -> u16 {
        self.next_avail
    }

    pub fn next_used(&self) -> u16 {
        self.next_used
    }

    fn checked_size(&self) -> Result<u16, QueueError> {
        let bad = QueueError::BadSize {
            size: self.size,
            max: self.max_size,
        };
        let size = u16::try_from(self.size).map_err(|_| bad.clone())?;
        if size == 0 || !size.is_power_of_two() || size > self.max_size {
            return Err(bad);
        }
        Ok(size)
    }

    /// Check the size and that the three areas are aligned and in RAM (with
    /// the event-index words, which the layout always reserves).
    pub fn check_layout(&self, ram: &Ram) -> Result<(), QueueError> {
        let n = u64::from(self.checked_size()?);
        let areas = [
            ("descriptor table", self.desc_addr, DESC_SIZE * n, 16),
            ("available ring", self.driver_addr, 6 + 2 * n, 2),
            ("used ring", self.device_addr, 6 + USED_ELEM_SIZE * n, 4),
        ];
        for (ring, addr, len, align) in areas {
            if !addr.is_multiple_of(align) || !ram.contains(addr, len) {
                return Err(QueueError::BadRing { ring, addr, len });
            }
        }
        Ok(())
    }

    /// Whether the driver has made a chain available that the device has not
    /// taken yet (false for a queue whose rings are not in RAM).
    pub fn has_available(&self, ram: &Ram) -> bool {
        self.ready
            && self.check_layout(ram).is_ok()
            && self
                .read_u16(ram, "available ring", self.driver_addr + 2)
                .is_ok_and(|idx| idx != self.next_avail)
    }

    /// Take the next available chain, if any. Call [`Queue::check_layout`]
    /// first; ring reads are checked again anyway.
    pub fn pop(&mut self, ram: &Ram, features: RingFeatures) -> Result<Option<Chain>, QueueError> {
        let size = self.checked_size()?;
        let avail_idx = self.read_u16(ram, "available ring", self.driver_addr + 2)?;
        let count = avail_idx.wrapping_sub(self.next_avail);
        if count == 0 {
            return Ok(None);
        }
        if count > size {
            return Err(QueueError::TooManyAvailable { count, size });
        }
        let slot = u64::from(self.next_avail % size);
        let head = self.read_u16(ram, "available ring", self.driver_addr + 4 + 2 * slot)?;
        let chain = self.walk(ram, head, size, features)?;
        self.next_avail = self.next_avail.wrapping_add(1);
        Ok(Some(chain))
    }

    /// Follow a chain from `head`, through at most one indirect table.
    fn walk(
        &self,
        ram: &Ram,
        head: u16,
        size: u16,
        features: RingFeatures,
    ) -> Result<Chain, QueueError> {
        let mut chain = Chain {
            head,
            readable: Buffers::default(),
            writable: Buffers::default(),
        };
        let mut table = (self.desc_addr, u32::from(size));
        let mut indirect = false;
        let mut index = u32::from(head);
        // Descriptors still allowed in this table: more means a loop.
        let mut budget = u32::from(size);
        loop {
            if index >= table.1 {
                return Err(QueueError::BadIndex {
                    index,
                    size: table.1,
                });
            }
            if budget == 0 {
                return Err(QueueError::ChainTooLong {
                    head,
                    limit: table.1,
                });
            }
            budget -= 1;
            let desc = read_desc(ram, table.0 + DESC_SIZE * u64::from(index))?;
            if desc.flags & VIRTQ_DESC_F_INDIRECT != 0 {
                let first =
                    chain.readable.segments.is_empty() && chain.writable.segments.is_empty();
                table = indirect_table(ram, index, &desc, features, indirect || !first)?;
                indirect = true;
                budget = table.1;
                index = 0;
                continue;
            }
            if !ram.contains(desc.addr, u64::from(desc.len)) {
                return Err(QueueError::BadBuffer {
                    index,
                    addr: desc.addr,
                    len: desc.len,
                });
            }
            let segment = Segment {
                addr: desc.addr,
                len: desc.len,
            };
            if desc.flags & VIRTQ_DESC_F_WRITE != 0 {
                chain.writable.segments.push(segment);
            } else if chain.writable.segments.is_empty() {
                chain.readable.segments.push(segment);
            } else {
                return Err(QueueError::ReadableAfterWritable { index });
            }
            if desc.flags & VIRTQ_DESC_F_NEXT == 0 {
                return Ok(chain);
            }
            index = u32::from(desc.next);
        }
    }

    /// Return a chain to the driver with `len` bytes written into it.
    pub fn push_used(&mut self, ram: &mut Ram, head: u16, len: u32) -> Result<(), QueueError> {
        let size = self.checked_size()?;
        let slot = u64::from(self.next_used % size);
        let elem = self.device_addr + 4 + USED_ELEM_SIZE * slot;
        let mut bytes = [0u8; 8];
        bytes[..4].copy_from_slice(&u32::from(head).to_le_bytes());
        bytes[4..].copy_from_slice(&len.to_le_bytes());
        self.write(ram, elem, &bytes)?;
        self.next_used = self.next_used.wrapping_add(1);
        self.write(ram, self.device_addr + 2, &self.next_used.to_le_bytes())
    }

    /// With event indices, ask to be notified of the very next available
    /// buffer (the device handles every notification at once).
    pub fn publish_avail_event(
        &mut self,
        ram: &mut Ram,
        features: RingFeatures,
    ) -> Result<(), QueueError> {
        if !features.event_idx {
            return Ok(());
        }
        let size = u64::from(self.checked_size()?);
        let at = self.device_addr + 4 + USED_ELEM_SIZE * size;
        self.write(ram, at, &self.next_avail.to_le_bytes())
    }

    /// Whether the driver wants an interrupt for the buffers used since the
    /// last decision (virtio 1.2 §2.7.7.2). Call after using some.
    pub fn needs_interrupt(
        &mut self,
        ram: &Ram,
        features: RingFeatures,
    ) -> Result<bool, QueueError> {
        let size = u64::from(self.checked_size()?);
        if !features.event_idx {
            let flags = self.read_u16(ram, "available ring", self.driver_addr)?;
            return Ok(flags & VIRTQ_AVAIL_F_NO_INTERRUPT == 0);
        }
        let used_event = self.read_u16(ram, "available ring", self.driver_addr + 4 + 2 * size)?;
        let new = self.next_used;
        let old = self.signalled_used.replace(new);
        Ok(match old {
            None => true,
            // Interrupt if `used_event` lies in the window of entries used
            // since the last decision: (new - event - 1) < (new - old).
            Some(old) => new.wrapping_sub(used_event).wrapping_sub(1) < new.wrapping_sub(old),
        })
    }

    fn read_u16(&self, ram: &Ram, ring: &'static str, addr: u64) -> Result<u16, QueueError> {
        let mut b = [0u8; 2];
        if ram.read(addr, &mut b) {
            Ok(u16::from_le_bytes(b))
        } else {
            Err(QueueError::BadRing { ring, addr, len: 2 })
        }
    }

    fn write(&self, ram: &mut Ram, addr: u64, data: &[u8]) -> Result<(), QueueError> {
        if ram.write(addr, data) {
            Ok(())
        } else {
            Err(QueueError::BadRing {
                ring: "used ring",
                addr,
                len: data.len() as u64,
            })
        }
    }
}

/// The three areas of a split queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Area {
    Desc,
    Driver,
    Device,
}

struct Desc {
    addr: u64,
    len: u32,
    flags: u16,
    next: u16,
}

fn read_desc(ram: &Ram, at: u64) -> Result<Desc, QueueError> {
    let mut b = [0u8; DESC_SIZE as usize];
    if !ram.read(at, &mut b) {
        return Err(QueueError::BadRing {
            ring: "descriptor table",
            addr: at,
            len: DESC_SIZE,
        });
    }
    let [a0, a1, a2, a3, a4, a5, a6, a7, l0, l1, l2, l3, f0, f1, n0, n1] = b;
    Ok(Desc {
        addr: u64::from_le_bytes([a0, a1, a2, a3, a4, a5, a6, a7]),
        len: u32::from_le_bytes([l0, l1, l2, l3]),
        flags: u16::from_le_bytes([f0, f1]),
        next: u16::from_le_bytes([n0, n1]),
    })
}

/// Validate an indirect descriptor; returns the table's address and number
/// of entries. `misplaced` if it is nested or not the chain's only entry.
fn indirect_table(
    ram: &Ram,
    index: u32,
    desc: &Desc,
    features: RingFeatures,
    misplaced: bool,
) -> Result<(u64, u32), QueueError> {
    let fail = |reason| Err(QueueError::BadIndirect { index, reason });
    if !features.indirect {
        return fail("VIRTIO_F_INDIRECT_DESC was not negotiated");
    }
    if misplaced {
        return fail("an indirect table must be the whole chain, not nested or chained");
    }
    if desc.flags & VIRTQ_DESC_F_NEXT != 0 {
        return fail("INDIRECT and NEXT are both set");
    }
    if desc.len == 0 || !u64::from(desc.len).is_multiple_of(DESC_SIZE) {
        return fail("the table length is not a non-zero multiple of 16");
    }
    let entries = desc.len / DESC_SIZE as u32;
    if entries > u32::from(MAX_QUEUE_SIZE) {
        return fail("the table has more than 32768 entries");
    }
    if !ram.contains(desc.addr, u64::from(desc.len)) {
        return fail("the table is not in RAM");
    }
    Ok((desc.addr, entries))
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: u64 = 0x8000_0000;
    const DESC: u64 = BASE + 0x1000;
    const AVAIL: u64 = BASE + 0x2000;
    const USED: u64 = BASE + 0x3000;
    const DATA: u64 = BASE + 0x10000;
    const ALL: RingFeatures = RingFeatures {
        indirect: true,
        event_idx: true,
    };

    fn setup(size: u16) -> (Ram, Queue) {
        let ram = Ram::new(BASE, 1 << 20).unwrap();
        let mut q = Queue::new(256);
        q.set_size(u32::from(size));
        q.set_addr_half(Area::Desc, false, DESC as u32);
        q.set_addr_half(Area::Driver, false, AVAIL as u32);
        q.set_addr_half(Area::Device, false, USED as u32);
        q.enable().unwrap();
        q.check_layout(&ram).unwrap();
        (ram, q)
    }

    fn desc(ram: &mut Ram, table: u64, i: u16, addr: u64, len: u32, flags: u16, next: u16) {
        let at = table + 16 * u64::from(i);
        let mut b = [0u8; 16];
        b[..8].copy_from_slice(&addr.to_le_bytes());
        b[8..12].copy_from_slice(&len.to_le_bytes());
        b[12..14].copy_from_slice(&flags.to_le_bytes());
        b[14..].copy_from_slice(&next.to_le_bytes());
        assert!(ram.write(at, &b));
    }

    /// Put `head` in the available ring at `idx` and publish idx+1.
    fn offer(ram: &mut Ram, size: u16, idx: u16, head: u16) {
        let slot = u64::from(idx % size);
        assert!(ram.write(AVAIL + 4 + 2 * slot, &head.to_le_bytes()));
        assert!(ram.write(AVAIL + 2, &idx.wrapping_add(1).to_le_bytes()));
    }

    fn u16_at(ram: &Ram, at: u64) -> u16 {
        let mut b = [0; 2];
        assert!(ram.read(at, &mut b));
        u16::from_le_bytes(b)
    }

    #[test]
    fn chain_splits_readable_and_writable() {
        let (mut ram, mut q) = setup(8);
        desc(&mut ram, DESC, 3, DATA, 16, VIRTQ_DESC_F_NEXT, 5);
        desc(&mut ram, DESC, 5, DATA + 100, 8, VIRTQ_DESC_F_NEXT, 1);
        desc(
            &mut ram,
            DESC,
            1,
            DATA + 200,
            512,
            VIRTQ_DESC_F_WRITE | VIRTQ_DESC_F_NEXT,
            0,
        );
        desc(&mut ram, DESC, 0, DATA + 900, 1, VIRTQ_DESC_F_WRITE, 0);
        offer(&mut ram, 8, 0, 3);
        let c = q.pop(&ram, ALL).unwrap().unwrap();
        assert_eq!(c.head, 3);
        assert_eq!(c.readable.len(), 24);
        assert_eq!(c.writable.len(), 513);
        assert_eq!(
            c.readable.range(10, 10),
            [
                Segment {
                    addr: DATA + 10,
                    len: 6
                },
                Segment {
                    addr: DATA + 100,
                    len: 4
                }
            ]
        );
        assert_eq!(q.pop(&ram, ALL).unwrap(), None, "nothing more available");
        q.push_used(&mut ram, c.head, 513).unwrap();
        assert_eq!(u16_at(&ram, USED + 2), 1);
        assert_eq!(ram.read_u32(USED + 4), Some(3));
        assert_eq!(ram.read_u32(USED + 8), Some(513));
    }

    #[test]
    fn buffers_read_and_write_across_segments() {
        let (mut ram, mut q) = setup(4);
        desc(
            &mut ram,
            DESC,
            0,
            DATA,
            3,
            VIRTQ_DESC_F_WRITE | VIRTQ_DESC_F_NEXT,
            1,
        );
        desc(&mut ram, DESC, 1, DATA + 50, 5, VIRTQ_DESC_F_WRITE, 0);
        offer(&mut ram, 4, 0, 0);
        let c = q.pop(&ram, ALL).unwrap().unwrap();
        assert!(c.writable.write(&mut ram, 1, b"abcdef"));
        assert_eq!(ram.slice(DATA, 3).unwrap(), b"\0ab");
        assert_eq!(ram.slice(DATA + 50, 5).unwrap(), b"cdef\0");
        let mut back = [0u8; 4];
        assert!(c.writable.read(&ram, 2, &mut back));
        assert_eq!(&back, b"bcde");
        assert!(!c.writable.write(&mut ram, 6, b"xyz"), "past the end");
    }

    #[test]
    fn indirect_table_is_followed() {
        let (mut ram, mut q) = setup(4);
        let table = DATA + 0x1000;
        desc(&mut ram, table, 0, DATA, 16, VIRTQ_DESC_F_NEXT, 2);
        desc(&mut ram, table, 2, DATA + 64, 1, VIRTQ_DESC_F_WRITE, 0);
        desc(&mut ram, DESC, 2, table, 48, VIRTQ_DESC_F_INDIRECT, 0);
        offer(&mut ram, 4, 0, 2);
        let c = q.pop(&ram, ALL).unwrap().unwrap();
        assert_eq!(c.head, 2);
        assert_eq!(
            c.readable.segments(),
            [Segment {
                addr: DATA,
                len: 16
            }]
        );
        assert_eq!(
            c.writable.segments(),
            [Segment {
                addr: DATA + 64,
                len: 1
            }]
        );
    }

    #[test]
    fn bad_indirect_tables_are_errors() {
        let table = DATA + 0x1000;
        let cases: [(&str, u64, u32, u16, RingFeatures); 5] = [
            ("not negotiated", table, 32, 0, RingFeatures::default()),
            ("with NEXT", table, 32, VIRTQ_DESC_F_NEXT, ALL),
            ("bad length", table, 20, 0, ALL),
            ("outside RAM", BASE + (1 << 20) - 16, 32, 0, ALL),
            ("empty", table, 0, 0, ALL),
        ];
        for (what, addr, len, extra, features) in cases {
            let (mut ram, mut q) = setup(4);
            desc(&mut ram, table, 0, DATA, 8, 0, 0);
            desc(
                &mut ram,
                DESC,
                0,
                addr,
                len,
                VIRTQ_DESC_F_INDIRECT | extra,
                1,
            );
            desc(&mut ram, DESC, 1, DATA, 8, 0, 0);
            offer(&mut ram, 4, 0, 0);
            assert!(
                matches!(q.pop(&ram, features), Err(QueueError::BadIndirect { .. })),
                "{what}"
            );
        }
        // Nested: an indirect entry inside the table.
        let (mut ram, mut q) = setup(4);
        desc(&mut ram, table, 0, table, 16, VIRTQ_DESC_F_INDIRECT, 0);
        desc(&mut ram, DESC, 0, table, 16, VIRTQ_DESC_F_INDIRECT, 0);
        offer(&mut ram, 4, 0, 0);
        assert!(matches!(
            q.pop(&ram, ALL),
            Err(QueueError::BadIndirect { .. })
        ));
    }

    #[test]
    fn loops_and_long_chains_are_errors() {
        let (mut ram, mut q) = setup(4);
        desc(&mut ram, DESC, 0, DATA, 8, VIRTQ_DESC_F_NEXT, 1);
        desc(&mut ram, DESC, 1, DATA, 8, VIRTQ_DESC_F_NEXT, 0);
        offer(&mut ram, 4, 0, 0);
        assert_eq!(
            q.pop(&ram, ALL),
            Err(QueueError::ChainTooLong { head: 0, limit: 4 })
        );
        // A loop inside an indirect table is bounded by the table size.
        let (mut ram, mut q) = setup(4);
        let table = DATA + 0x1000;
        desc(&mut ram, table, 0, DATA, 8, VIRTQ_DESC_F_NEXT, 1);
        desc(&mut ram, table, 1, DATA, 8, VIRTQ_DESC_F_NEXT, 0);
        desc(&mut ram, DESC, 0, table, 32, VIRTQ_DESC_F_INDIRECT, 0);
        offer(&mut ram, 4, 0, 0);
        assert_eq!(
            q.pop(&ram, ALL),
            Err(QueueError::ChainTooLong { head: 0, limit: 2 })
        );
    }

    #[test]
    fn bad_indices_buffers_and_order_are_errors() {
        let (mut ram, mut q) = setup(4);
        offer(&mut ram, 4, 0, 4);
        assert_eq!(
            q.pop(&ram, ALL),
            Err(QueueError::BadIndex { index: 4, size: 4 })
        );

        let (mut ram, mut q) = setup(4);
        desc(&mut ram, DESC, 0, DATA, 8, VIRTQ_DESC_F_NEXT, 9);
        offer(&mut ram, 4, 0, 0);
        assert_eq!(
            q.pop(&ram, ALL),
            Err(QueueError::BadIndex { index: 9, size: 4 })
        );

        let (mut ram, mut q) = setup(4);
        desc(&mut ram, DESC, 0, BASE + (1 << 20) - 4, 8, 0, 0);
        offer(&mut ram, 4, 0, 0);
        assert!(matches!(
            q.pop(&ram, ALL),
            Err(QueueError::BadBuffer { .. })
        ));

        let (mut ram, mut q) = setup(4);
        desc(&mut ram, DESC, 0, u64::MAX - 2, 8, 0, 0);
        offer(&mut ram, 4, 0, 0);
        assert!(matches!(
            q.pop(&ram, ALL),
            Err(QueueError::BadBuffer { .. })
        ));

        let (mut ram, mut q) = setup(4);
        desc(
            &mut ram,
            DESC,
            0,
            DATA,
            8,
            VIRTQ_DESC_F_WRITE | VIRTQ_DESC_F_NEXT,
            1,
        );
        desc(&mut ram, DESC, 1, DATA, 8, 0, 0);
        offer(&mut ram, 4, 0, 0);
        assert_eq!(
            q.pop(&ram, ALL),
            Err(QueueError::ReadableAfterWritable { index: 1 })
        );

        let (mut ram, mut q) = setup(4);
        assert!(ram.write(AVAIL + 2, &5u16.to_le_bytes()));
        assert_eq!(
            q.pop(&ram, ALL),
            Err(QueueError::TooManyAvailable { count: 5, size: 4 })
        );
    }

    #[test]
    fn layout_and_size_are_checked() {
        let ram = Ram::new(BASE, 1 << 20).unwrap();
        let mut q = Queue::new(256);
        for size in [0, 3, 512, 1 << 20] {
            q.set_size(size);
            assert!(
                matches!(q.enable(), Err(QueueError::BadSize { .. })),
                "{size}"
            );
        }
        q.set_size(8);
        q.set_addr_half(Area::Desc, false, DESC as u32 + 8);
        q.set_addr_half(Area::Driver, false, AVAIL as u32);
        q.set_addr_half(Area::Device, false, USED as u32);
        q.enable().unwrap();
        assert!(matches!(
            q.check_layout(&ram),
            Err(QueueError::BadRing {
                ring: "descriptor table",
                ..
            })
        ));
        // Configuration is frozen while the queue is enabled.
        q.set_addr_half(Area::Desc, false, DESC as u32);
        assert_eq!(q.addr(Area::Desc), DESC + 8);
        q.disable();
        q.set_addr_half(Area::Desc, false, DESC as u32);
        q.set_addr_half(Area::Device, true, 1);
        assert_eq!(q.addr(Area::Device), USED | 1 << 32);
        q.enable().unwrap();
        assert!(matches!(
            q.check_layout(&ram),
            Err(QueueError::BadRing {
                ring: "used ring",
                ..
            })
        ));
    }

    #[test]
    fn indices_wrap_around() {
        let (mut ram, mut q) = setup(4);
        // Start both rings just below the 16-bit wrap.
        q.next_avail = 0xfffe;
        q.next_used = 0xfffe;
        desc(&mut ram, DESC, 0, DATA, 8, VIRTQ_DESC_F_WRITE, 0);
        desc(&mut ram, DESC, 1, DATA, 8, VIRTQ_DESC_F_WRITE, 0);
        desc(&mut ram, DESC, 2, DATA, 8, VIRTQ_DESC_F_WRITE, 0);
        for (i, idx) in [0xfffeu16, 0xffff, 0].into_iter().enumerate() {
            offer(&mut ram, 4, idx, i as u16);
            let c = q.pop(&ram, ALL).unwrap().unwrap();
            assert_eq!(c.head, i as u16);
            q.push_used(&mut ram, c.head, 8).unwrap();
        }
        assert_eq!(q.next_avail(), 1);
        assert_eq!(u16_at(&ram, USED + 2), 1);
        // Slots 0xfffe % 4 = 2, 3, then 0.
        assert_eq!(ram.read_u32(USED + 4 + 8 * 2), Some(0));
        assert_eq!(ram.read_u32(USED + 4 + 8 * 3), Some(1));
        assert_eq!(ram.read_u32(USED + 4), Some(2));
    }

    #[test]
    fn event_index_suppresses_interrupts() {
        let (mut ram, mut q) = setup(4);
        let used_event_at = AVAIL + 4 + 2 * 4;
        let use_one = |ram: &mut Ram, q: &mut Queue| q.push_used(ram, 0, 0).unwrap();
        // The first decision after reset always interrupts.
        use_one(&mut ram, &mut q);
        assert!(q.needs_interrupt(&ram, ALL).unwrap());
        // The driver wants an interrupt only once entry 2 is used.
        assert!(ram.write(used_event_at, &2u16.to_le_bytes()));
        use_one(&mut ram, &mut q); // used idx 2: entry 1 used
        assert!(!q.needs_interrupt(&ram, ALL).unwrap());
        use_one(&mut ram, &mut q); // entry 2 used
        assert!(q.needs_interrupt(&ram, ALL).unwrap());
        // Several at once: interrupt if the event falls inside the batch.
        assert!(ram.write(used_event_at, &4u16.to_le_bytes()));
        use_one(&mut ram, &mut q);
        use_one(&mut ram, &mut q);
        use_one(&mut ram, &mut q);
        assert!(q.needs_interrupt(&ram, ALL).unwrap());
        // avail_event tells the driver to notify for the next buffer.
        q.next_avail = 0x1234;
        q.publish_avail_event(&mut ram, ALL).unwrap();
        assert_eq!(u16_at(&ram, USED + 4 + 8 * 4), 0x1234);
    }

    #[test]
    fn no_interrupt_flag_without_event_index() {
        let (mut ram, mut q) = setup(4);
        let plain = RingFeatures::default();
        q.push_used(&mut ram, 0, 0).unwrap();
        assert!(q.needs_interrupt(&ram, plain).unwrap());
        assert!(ram.write(AVAIL, &VIRTQ_AVAIL_F_NO_INTERRUPT.to_le_bytes()));
        assert!(!q.needs_interrupt(&ram, plain).unwrap());
        // Without event_idx nothing is written to the used ring's tail.
        q.publish_avail_event(&mut ram, plain).unwrap();
        assert_eq!(u16_at(&ram, USED + 4 + 8 * 4), 0);
    }
}
