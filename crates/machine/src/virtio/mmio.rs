//! The virtio-mmio transport, version 2 ("modern" only; virtio 1.2
//! §4.2.2): the register file a driver uses to discover the device,
//! negotiate features, set up queues, notify and acknowledge interrupts.
//!
//! Registers are 32 bits wide and only 32-bit accesses reach them (others
//! are bus errors); the device-specific configuration space from 0x100 may
//! be read with any width.

use super::queue::{Area, Queue, QueueError, QueueState, RingFeatures};
use serde::{Deserialize, Serialize};

pub const MAGIC: u32 = 0x7472_6976; // "virt"
pub const VERSION: u32 = 2;
/// "LKST" in memory order.
pub const VENDOR_ID: u32 = u32::from_le_bytes(*b"LKST");

pub const MAGIC_VALUE: u64 = 0x000;
pub const VERSION_REG: u64 = 0x004;
pub const DEVICE_ID_REG: u64 = 0x008;
pub const VENDOR_ID_REG: u64 = 0x00c;
pub const DEVICE_FEATURES: u64 = 0x010;
pub const DEVICE_FEATURES_SEL: u64 = 0x014;
pub const DRIVER_FEATURES: u64 = 0x020;
pub const DRIVER_FEATURES_SEL: u64 = 0x024;
pub const QUEUE_SEL: u64 = 0x030;
pub const QUEUE_NUM_MAX: u64 = 0x034;
pub const QUEUE_NUM: u64 = 0x038;
pub const QUEUE_READY: u64 = 0x044;
pub const QUEUE_NOTIFY: u64 = 0x050;
pub const INTERRUPT_STATUS: u64 = 0x060;
pub const INTERRUPT_ACK: u64 = 0x064;
pub const STATUS: u64 = 0x070;
pub const QUEUE_DESC_LOW: u64 = 0x080;
pub const QUEUE_DESC_HIGH: u64 = 0x084;
pub const QUEUE_DRIVER_LOW: u64 = 0x090;
pub const QUEUE_DRIVER_HIGH: u64 = 0x094;
pub const QUEUE_DEVICE_LOW: u64 = 0x0a0;
pub const QUEUE_DEVICE_HIGH: u64 = 0x0a4;
#[cfg_attr(not(test), allow(dead_code))] // the tests drive the device with it
pub const SHM_SEL: u64 = 0x0ac;
pub const SHM_LEN_LOW: u64 = 0x0b0;
pub const SHM_LEN_HIGH: u64 = 0x0b4;
pub const SHM_BASE_LOW: u64 = 0x0b8;
pub const SHM_BASE_HIGH: u64 = 0x0bc;
pub const CONFIG_GENERATION: u64 = 0x0fc;
/// Start of the device-specific configuration space.
pub const CONFIG: u64 = 0x100;

/// Device status bits (virtio 1.2 §2.1).
#[cfg_attr(not(test), allow(dead_code))] // the tests drive the device with it
pub const STATUS_ACKNOWLEDGE: u32 = 1;
#[cfg_attr(not(test), allow(dead_code))] // the tests drive the device with it
pub const STATUS_DRIVER: u32 = 2;
pub const STATUS_DRIVER_OK: u32 = 4;
pub const STATUS_FEATURES_OK: u32 = 8;
pub const STATUS_DEVICE_NEEDS_RESET: u32 = 64;
pub const STATUS_FAILED: u32 = 128;

/// Interrupt status bits.
pub const INT_USED_BUFFER: u32 = 1;
pub const INT_CONFIG_CHANGE: u32 = 2;

/// Transport feature bits (virtio 1.2 §6).
pub const VIRTIO_F_INDIRECT_DESC: u64 = 1 << 28;
pub const VIRTIO_F_EVENT_IDX: u64 = 1 << 29;
pub const VIRTIO_F_VERSION_1: u64 = 1 << 32;

/// The transport's registers and queues ([`TransportState`] is their
/// saved form).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transport {
    device_id: u32,
    device_features: u64,
    device_features_sel: u32,
    driver_features: u64,
    driver_features_sel: u32,
    queue_sel: u32,
    queues: Vec<Queue>,
    interrupt_status: u32,
    /// Status as the driver wrote it, plus DEVICE_NEEDS_RESET once set.
    status: u32,
    /// Queues notified but not yet processed, one bit per queue.
    notified: u64,
}

/// What a register write asks of the device behind the transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    None,
    /// The driver wrote 0 to the status register: the device resets too.
    Reset,
}

/// A transport's saved state (see [`Transport`] for the fields).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TransportState {
    pub device_id: u32,
    pub device_features: u64,
    pub device_features_sel: u32,
    pub driver_features: u64,
    pub driver_features_sel: u32,
    pub queue_sel: u32,
    pub queues: Vec<QueueState>,
    pub interrupt_status: u32,
    pub status: u32,
    pub notified: u64,
}

impl Transport {
    pub fn save(&self) -> TransportState {
        TransportState {
            device_id: self.device_id,
            device_features: self.device_features,
            device_features_sel: self.device_features_sel,
            driver_features: self.driver_features,
            driver_features_sel: self.driver_features_sel,
            queue_sel: self.queue_sel,
            queues: self.queues.iter().map(Queue::save).collect(),
            interrupt_status: self.interrupt_status,
            status: self.status,
            notified: self.notified,
        }
    }

    /// A transport in `state`, as it is ([`super::VirtioMmio::restore`]
    /// checks it against the device).
    pub fn from_state(state: &TransportState) -> Self {
        Self {
            device_id: state.device_id,
            device_features: state.device_features,
            device_features_sel: state.device_features_sel,
            driver_features: state.driver_features,
            driver_features_sel: state.driver_features_sel,
            queue_sel: state.queue_sel,
            queues: state.queues.iter().map(Queue::from_state).collect(),
            interrupt_status: state.interrupt_status,
            status: state.status,
            notified: state.notified,
        }
    }

    /// A transport for device `device_id` offering `features` (VERSION_1 is
    /// always added) with one queue per entry of `queue_sizes` (at most 64).
    pub fn new(device_id: u32, features: u64, queue_sizes: &[u16]) -> Self {
        debug_assert!(queue_sizes.len() <= 64);
        Self {
            device_id,
            device_features: features | VIRTIO_F_VERSION_1,
            device_features_sel: 0,
            driver_features: 0,
            driver_features_sel: 0,
            queue_sel: 0,
            queues: queue_sizes.iter().map(|&n| Queue::new(n)).collect(),
            interrupt_status: 0,
            status: 0,
            notified: 0,
        }
    }

    /// Back to the state after power-on (status 0).
    pub fn reset(&mut self) {
        let sizes: Vec<u16> = self.queues.iter().map(Queue::max_size).collect();
        *self = Self::new(self.device_id, self.device_features, &sizes);
    }

    pub fn device_id(&self) -> u32 {
        self.device_id
    }

    pub fn status(&self) -> u32 {
        self.status
    }

    pub fn interrupt_status(&self) -> u32 {
        self.interrupt_status
    }

    /// The features both sides agreed on (valid once FEATURES_OK is set).
    pub fn negotiated(&self) -> u64 {
        self.driver_features & self.device_features
    }

    /// What negotiating `driver` would give (for tests and diagnostics).
    pub fn negotiated_with(&self, driver: u64) -> u64 {
        driver & self.device_features
    }

    pub fn ring_features(&self) -> RingFeatures {
        let f = self.negotiated();
        RingFeatures {
            indirect: f & VIRTIO_F_INDIRECT_DESC != 0,
            event_idx: f & VIRTIO_F_EVENT_IDX != 0,
        }
    }

    pub fn queues(&self) -> &[Queue] {
        &self.queues
    }

    pub fn queue_mut(&mut self, index: usize) -> Option<&mut Queue> {
        self.queues.get_mut(index)
    }

    /// The device may use its queues: the driver finished initialisation
    /// and nothing went wrong since.
    pub fn live(&self) -> bool {
        let want = STATUS_FEATURES_OK | STATUS_DRIVER_OK;
        self.status & want == want && self.status & (STATUS_DEVICE_NEEDS_RESET | STATUS_FAILED) == 0
    }

    /// Notified queues still to process; clears the set.
    pub fn take_notified(&mut self) -> u64 {
        std::mem::take(&mut self.notified)
    }

    pub fn has_notified(&self) -> bool {
        self.notified != 0
    }

    /// Raise the used-buffer interrupt.
    pub fn signal_used(&mut self) {
        self.interrupt_status |= INT_USED_BUFFER;
    }

    /// The driver did something invalid: stop, and tell it (with a
    /// configuration-change interrupt if it is running) to reset us.
    pub fn set_needs_reset(&mut self) {
        self.status |= STATUS_DEVICE_NEEDS_RESET;
        self.notified = 0;
        if self.status & STATUS_DRIVER_OK != 0 {
            self.interrupt_status |= INT_CONFIG_CHANGE;
        }
    }

    /// The interrupt line to the PLIC.
    pub fn irq_level(&self) -> bool {
        self.interrupt_status != 0
    }

    fn selected_queue(&self) -> Option<&Queue> {
        self.queues.get(self.queue_sel as usize)
    }

    fn selected_queue_mut(&mut self) -> Option<&mut Queue> {
        self.queues.get_mut(self.queue_sel as usize)
    }

    /// A 32-bit register read below [`CONFIG`].
    pub fn read(&self, offset: u64) -> u32 {
        let half = |v: u64, sel: u32| match sel {
            0 => v as u32,
            1 => (v >> 32) as u32,
            _ => 0,
        };
        match offset {
            MAGIC_VALUE => MAGIC,
            VERSION_REG => VERSION,
            DEVICE_ID_REG => self.device_id,
            VENDOR_ID_REG => VENDOR_ID,
            DEVICE_FEATURES => half(self.device_features, self.device_features_sel),
            QUEUE_NUM_MAX => self.selected_queue().map_or(0, |q| u32::from(q.max_size())),
            QUEUE_READY => self.selected_queue().map_or(0, |q| u32::from(q.ready())),
            INTERRUPT_STATUS => self.interrupt_status,
            STATUS => self.status,
            // No shared memory regions: a length of all ones means "none".
            SHM_LEN_LOW | SHM_LEN_HIGH | SHM_BASE_LOW | SHM_BASE_HIGH => u32::MAX,
            // The configuration never changes, so its generation neither.
            CONFIG_GENERATION => 0,
            _ => 0,
        }
    }

    /// A 32-bit register write below [`CONFIG`]. Writes the spec forbids at
    /// this point are ignored, or make the device ask for a reset.
    pub fn write(&mut self, offset: u64, val: u32) -> Effect {
        match offset {
            DEVICE_FEATURES_SEL => self.device_features_sel = val,
            DRIVER_FEATURES_SEL => self.driver_features_sel = val,
            DRIVER_FEATURES => self.write_driver_features(val),
            QUEUE_SEL => self.queue_sel = val,
            QUEUE_NUM => {
                if let Some(q) = self.selected_queue_mut() {
                    q.set_size(val);
                }
            }
            QUEUE_READY => self.write_queue_ready(val),
            QUEUE_DESC_LOW | QUEUE_DESC_HIGH => self.write_area(Area::Desc, offset, val),
            QUEUE_DRIVER_LOW | QUEUE_DRIVER_HIGH => self.write_area(Area::Driver, offset, val),
            QUEUE_DEVICE_LOW | QUEUE_DEVICE_HIGH => self.write_area(Area::Device, offset, val),
            QUEUE_NOTIFY => self.notify(val),
            INTERRUPT_ACK => self.interrupt_status &= !val,
            STATUS => return self.write_status(val),
            _ => {}
        }
        Effect::None
    }

    fn write_driver_features(&mut self, val: u32) {
        if self.status & STATUS_FEATURES_OK != 0 {
            return; // features are fixed once accepted
        }
        let (shift, keep) = match self.driver_features_sel {
            0 => (0, 0xffff_ffff_0000_0000),
            1 => (32, 0x0000_0000_ffff_ffff),
            _ => return,
        };
        self.driver_features = (self.driver_features & keep) | u64::from(val) << shift;
    }

    fn write_queue_ready(&mut self, val: u32) {
        let Some(q) = self.selected_queue_mut() else {
            return;
        };
        if val & 1 == 0 {
            q.disable();
            return;
        }
        if q.ready() {
            return;
        }
        let result: Result<(), QueueError> = q.enable();
        if result.is_err() {
            self.set_needs_reset();
        }
    }

    fn write_area(&mut self, area: Area, offset: u64, val: u32) {
        let high = offset & 4 != 0;
        if let Some(q) = self.selected_queue_mut() {
            q.set_addr_half(area, high, val);
        }
    }

    fn notify(&mut self, val: u32) {
        // Without VIRTIO_F_NOTIFICATION_DATA the value is the queue index.
        if let Some(q) = self.queues.get(val as usize) {
            if q.ready() && self.status & STATUS_DEVICE_NEEDS_RESET == 0 {
                self.notified |= 1 << val;
            }
        }
    }

    fn write_status(&mut self, val: u32) -> Effect {
        let val = val & 0xff;
        if val == 0 {
            self.reset();
            return Effect::Reset;
        }
        let old = self.status;
        // DEVICE_NEEDS_RESET is the device's to set; it stays until reset.
        let mut new = (val & !STATUS_DEVICE_NEEDS_RESET) | (old & STATUS_DEVICE_NEEDS_RESET);
        if new & STATUS_FEATURES_OK != 0 && old & STATUS_FEATURES_OK == 0 {
            let offered_only = self.driver_features & !self.device_features == 0;
            let modern = self.driver_features & VIRTIO_F_VERSION_1 != 0;
            if !(offered_only && modern) {
                new &= !STATUS_FEATURES_OK; // the driver reads it back and gives up
            }
        }
        if new & STATUS_DRIVER_OK != 0 && old & STATUS_DRIVER_OK == 0 {
            // Buffers made available before DRIVER_OK are handled now.
            for (i, q) in self.queues.iter().enumerate() {
                if q.ready() {
                    self.notified |= 1 << i;
                }
            }
        }
        self.status = new;
        Effect::None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FEATURES: u64 = VIRTIO_F_EVENT_IDX | 1 << 5;

    fn transport() -> Transport {
        Transport::new(2, FEATURES, &[128, 16])
    }

    fn features_of(t: &mut Transport) -> u64 {
        t.write(DEVICE_FEATURES_SEL, 0);
        let lo = t.read(DEVICE_FEATURES);
        t.write(DEVICE_FEATURES_SEL, 1);
        let hi = t.read(DEVICE_FEATURES);
        t.write(DEVICE_FEATURES_SEL, 2);
        assert_eq!(t.read(DEVICE_FEATURES), 0);
        u64::from(hi) << 32 | u64::from(lo)
    }

    fn accept(t: &mut Transport, features: u64) -> u32 {
        t.write(STATUS, STATUS_ACKNOWLEDGE | STATUS_DRIVER);
        t.write(DRIVER_FEATURES_SEL, 0);
        t.write(DRIVER_FEATURES, features as u32);
        t.write(DRIVER_FEATURES_SEL, 1);
        t.write(DRIVER_FEATURES, (features >> 32) as u32);
        t.write(
            STATUS,
            STATUS_ACKNOWLEDGE | STATUS_DRIVER | STATUS_FEATURES_OK,
        );
        t.read(STATUS)
    }

    #[test]
    fn identifies_itself() {
        let t = transport();
        assert_eq!(t.read(MAGIC_VALUE), 0x7472_6976);
        assert_eq!(t.read(VERSION_REG), 2);
        assert_eq!(t.read(DEVICE_ID_REG), 2);
        assert_eq!(t.read(VENDOR_ID_REG), VENDOR_ID);
        assert_eq!(t.read(SHM_LEN_LOW), u32::MAX);
        assert_eq!(t.read(CONFIG_GENERATION), 0);
    }

    #[test]
    fn feature_negotiation() {
        let mut t = transport();
        assert_eq!(features_of(&mut t), FEATURES | VIRTIO_F_VERSION_1);
        // A subset with VERSION_1 is accepted.
        let status = accept(&mut t, VIRTIO_F_VERSION_1 | 1 << 5);
        assert_ne!(status & STATUS_FEATURES_OK, 0);
        assert_eq!(t.negotiated(), VIRTIO_F_VERSION_1 | 1 << 5);
        assert!(!t.ring_features().event_idx);
        // Once accepted, features cannot change.
        t.write(DRIVER_FEATURES_SEL, 0);
        t.write(DRIVER_FEATURES, 0);
        assert_eq!(t.negotiated(), VIRTIO_F_VERSION_1 | 1 << 5);

        // A feature the device does not offer is refused.
        let mut t = transport();
        assert_eq!(
            accept(&mut t, VIRTIO_F_VERSION_1 | 1 << 7) & STATUS_FEATURES_OK,
            0
        );
        // So is a legacy driver (no VERSION_1).
        let mut t = transport();
        assert_eq!(accept(&mut t, 1 << 5) & STATUS_FEATURES_OK, 0);
    }

    #[test]
    fn status_zero_resets_everything() {
        let mut t = transport();
        accept(&mut t, VIRTIO_F_VERSION_1 | VIRTIO_F_EVENT_IDX);
        t.write(QUEUE_SEL, 1);
        t.write(QUEUE_NUM, 8);
        t.write(QUEUE_DESC_LOW, 0x1000);
        t.write(QUEUE_READY, 1);
        assert_eq!(t.read(QUEUE_READY), 1);
        t.write(STATUS, t.read(STATUS) | STATUS_DRIVER_OK);
        assert!(t.live());
        assert_eq!(t.take_notified(), 0b10, "DRIVER_OK looks at ready queues");
        t.signal_used();
        assert!(t.irq_level());
        assert_eq!(t.write(STATUS, 0), Effect::Reset);
        assert_eq!(t, transport());
        assert!(!t.live() && !t.irq_level());
    }

    #[test]
    fn queue_registers_and_notify() {
        let mut t = transport();
        t.write(QUEUE_SEL, 0);
        assert_eq!(t.read(QUEUE_NUM_MAX), 128);
        t.write(QUEUE_SEL, 1);
        assert_eq!(t.read(QUEUE_NUM_MAX), 16);
        t.write(QUEUE_SEL, 2);
        assert_eq!(t.read(QUEUE_NUM_MAX), 0, "no such queue");
        t.write(QUEUE_READY, 1);
        assert_eq!(t.read(QUEUE_READY), 0);

        t.write(QUEUE_SEL, 0);
        t.write(QUEUE_NUM, 64);
        t.write(QUEUE_DESC_LOW, 0x8000_1000);
        t.write(QUEUE_DESC_HIGH, 0x1);
        t.write(QUEUE_DRIVER_LOW, 0x8000_2000);
        t.write(QUEUE_DEVICE_LOW, 0x8000_3000);
        t.write(QUEUE_NOTIFY, 0);
        assert!(!t.has_notified(), "notify of a queue that is not ready");
        t.write(QUEUE_READY, 1);
        let q = &t.queues()[0];
        assert_eq!(q.size(), 64);
        assert_eq!(q.addr(Area::Desc), 0x1_8000_1000);
        assert_eq!(q.addr(Area::Driver), 0x8000_2000);
        assert_eq!(q.addr(Area::Device), 0x8000_3000);
        t.write(QUEUE_NOTIFY, 0);
        t.write(QUEUE_NOTIFY, 7);
        assert_eq!(t.take_notified(), 1);
        assert_eq!(t.take_notified(), 0);
    }

    #[test]
    fn invalid_queue_size_needs_reset() {
        let mut t = transport();
        accept(&mut t, VIRTIO_F_VERSION_1);
        t.write(STATUS, t.read(STATUS) | STATUS_DRIVER_OK);
        t.write(QUEUE_NUM, 100); // not a power of two
        t.write(QUEUE_READY, 1);
        assert_eq!(t.read(QUEUE_READY), 0);
        assert_ne!(t.read(STATUS) & STATUS_DEVICE_NEEDS_RESET, 0);
        assert_eq!(t.read(INTERRUPT_STATUS), INT_CONFIG_CHANGE);
        assert!(!t.live());
        // The driver cannot clear it by writing the status...
        t.write(STATUS, STATUS_ACKNOWLEDGE);
        assert_ne!(t.read(STATUS) & STATUS_DEVICE_NEEDS_RESET, 0);
        // ...only a reset does, and the acknowledge clears the interrupt.
        t.write(INTERRUPT_ACK, INT_CONFIG_CHANGE);
        assert!(!t.irq_level());
        t.write(STATUS, 0);
        assert_eq!(t.read(STATUS), 0);
    }
}
