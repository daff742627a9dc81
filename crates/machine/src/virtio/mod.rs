//! virtio devices behind virtio-mmio transports (DESIGN §2): up to eight
//! slots at `VIRTIO_BASE + n × 0x1000`, PLIC source `1 + n`, as on QEMU
//! `virt`.
//!
//! Determinism (DESIGN §3.4): a queue notification is a store to the
//! transport; the hart ends its slice right after any MMIO access, and the
//! machine then calls [`VirtioMmio::process`] before anything else runs.
//! So every request made available before the notify completes (data, used
//! ring, interrupt status) at the instruction boundary right after the
//! notifying store, whatever the host does: no threads, no host time.
//!
//! Device state (transport registers, queue positions, the RNG's position)
//! is saved as a [`VirtioState`] (part of snapshots and of the machine
//! state hash) and restored with [`VirtioMmio::restore`], which checks it
//! against the device the config puts in the slot. A disk's contents are not: they live in a [`BlockDevice`] the
//! machine holds beside the state.

pub mod blk;
pub mod mmio;
pub mod net;
pub mod queue;
pub mod rng;

#[cfg(test)]
mod tests;

use crate::io::{Output, OutputEvent};
use crate::layout::{VIRTIO_BASE, VIRTIO_SLOT_SIZE};
use crate::state::SlotMismatch;
use blk::{Block, BlockState};
use disk::BlockDevice;
use mmio::{Transport, TransportState, CONFIG};
use net::{Net, NetState};
use queue::{QueueError, RingFeatures};
use riscv::Ram;
use rng::{Rng, RngState};
use serde::{Deserialize, Serialize};

/// A device to put in the next free slot (disks first, so that `vda`,
/// `vdb`, … follow the slot order).
#[derive(Clone, PartialEq, Eq)]
pub enum VirtioSpec {
    /// virtio-blk over the next disk handed to the machine; `serial` (at
    /// most 20 bytes) is what GET_ID returns.
    Block { serial: String },
    /// virtio-rng from a ChaCha20 stream with this seed (a VM secret; see
    /// [`rng`]).
    Rng { seed: [u8; 32] },
    /// virtio-net with this MAC address; the n-th `Net` is NIC n.
    Net { mac: [u8; 6] },
}

impl std::fmt::Debug for VirtioSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Block { serial } => f.debug_struct("Block").field("serial", serial).finish(),
            // The seed is a VM secret: keep it out of logs.
            Self::Rng { .. } => f.debug_struct("Rng").field("seed", &"<secret>").finish(),
            Self::Net { mac } => f.debug_struct("Net").field("mac", mac).finish(),
        }
    }
}

/// Why a device stopped and asked for a reset.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VirtioError {
    #[error("queue {queue}: {source}")]
    Queue { queue: usize, source: QueueError },
    #[error("queue {queue}, request with head {head}: {reason}")]
    BadRequest {
        queue: usize,
        head: u16,
        reason: &'static str,
    },
}

/// The device behind a transport.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Device {
    Block(Block),
    Rng(Rng),
    Net(Net),
}

/// A device's saved state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum DeviceState {
    Block(BlockState),
    Rng(RngState),
    Net(NetState),
}

/// What a device may reach on the host side while it processes requests.
pub struct DeviceIo<'a> {
    /// The disk behind a block device.
    pub disk: Option<&'a mut dyn BlockDevice>,
    /// Where transmitted frames go.
    pub output: &'a mut dyn Output,
    /// The machine icount at which the requests complete.
    pub icount: u64,
}

/// One populated virtio-mmio slot: transport and device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VirtioMmio {
    transport: Transport,
    device: Device,
}

/// A virtio slot's saved state: transport (with its queues) and device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VirtioState {
    pub transport: TransportState,
    pub device: DeviceState,
}

/// Device id of virtio-rng.
pub const RNG_DEVICE_ID: u32 = 4;
const RNG_QUEUE_SIZE: u16 = 64;

/// The physical address of slot `n`.
pub fn slot_base(n: usize) -> u64 {
    VIRTIO_BASE + n as u64 * VIRTIO_SLOT_SIZE
}

impl VirtioMmio {
    pub fn block(serial: &str, capacity_bytes: u64, read_only: bool) -> Self {
        let block = Block::new(serial, capacity_bytes, read_only);
        Self {
            transport: Transport::new(blk::DEVICE_ID, block.features(), &[blk::QUEUE_SIZE]),
            device: Device::Block(block),
        }
    }

    pub fn rng(seed: [u8; 32]) -> Self {
        let features = mmio::VIRTIO_F_INDIRECT_DESC | mmio::VIRTIO_F_EVENT_IDX;
        Self {
            transport: Transport::new(RNG_DEVICE_ID, features, &[RNG_QUEUE_SIZE]),
            device: Device::Rng(Rng::new(seed)),
        }
    }

    /// NIC number `nic` of the machine, with MAC address `mac`.
    pub fn net(nic: usize, mac: [u8; 6]) -> Self {
        let features = Net::features() | mmio::VIRTIO_F_INDIRECT_DESC | mmio::VIRTIO_F_EVENT_IDX;
        Self {
            transport: Transport::new(net::DEVICE_ID, features, &[net::QUEUE_SIZE; 2]),
            device: Device::Net(Net::new(nic, mac)),
        }
    }

    pub fn save(&self) -> VirtioState {
        VirtioState {
            transport: self.transport.save(),
            device: match &self.device {
                Device::Block(b) => DeviceState::Block(b.save()),
                Device::Rng(r) => DeviceState::Rng(r.save()),
                Device::Net(n) => DeviceState::Net(n.save()),
            },
        }
    }

    /// A slot in `state`, which must hold the device `fresh` (the config's
    /// device for the slot, at power-on) with the same queues, each in a
    /// state the guest could have set.
    pub fn restore(state: &VirtioState, fresh: &VirtioMmio) -> Result<Self, SlotMismatch> {
        let device = match (&state.device, &fresh.device) {
            (DeviceState::Block(b), Device::Block(_)) => Device::Block(Block::from_state(b)),
            (DeviceState::Rng(r), Device::Rng(_)) => Device::Rng(Rng::from_state(r)),
            (DeviceState::Net(n), Device::Net(f)) => {
                if n.nic != f.nic() as u64 {
                    return Err(SlotMismatch::Nic {
                        found: n.nic,
                        config: f.nic() as u64,
                    });
                }
                Device::Net(Net::from_state(n, f.nic()))
            }
            _ => return Err(SlotMismatch::DeviceType),
        };
        let t = &state.transport;
        if t.device_id != fresh.transport.device_id() {
            return Err(SlotMismatch::DeviceType);
        }
        let device_queues = fresh.transport.queues();
        if t.queues.len() != device_queues.len() {
            return Err(SlotMismatch::Queues {
                found: t.queues.len(),
                device: device_queues.len(),
            });
        }
        for (queue, (q, d)) in t.queues.iter().zip(device_queues).enumerate() {
            if q.max_size != d.max_size() {
                return Err(SlotMismatch::QueueMaxSize {
                    queue,
                    found: q.max_size,
                    device: d.max_size(),
                });
            }
            let size_ok = q.size.is_power_of_two() && q.size <= u32::from(q.max_size);
            if q.ready && !size_ok {
                return Err(SlotMismatch::QueueSize {
                    queue,
                    size: q.size,
                });
            }
        }
        Ok(Self {
            transport: Transport::from_state(t),
            device,
        })
    }

    pub fn transport(&self) -> &Transport {
        &self.transport
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Power-on state of the transport. The device keeps its identity, and
    /// the RNG its position (a rebooted guest never sees old bytes again).
    pub fn reset(&mut self) {
        self.transport.reset();
    }

    fn config(&self) -> Vec<u8> {
        match &self.device {
            Device::Block(b) => b.config().to_vec(),
            Device::Rng(_) => Vec::new(),
            Device::Net(n) => n.config().to_vec(),
        }
    }

    /// A load at `offset` in the slot; `None` is a bus error.
    pub fn load(&self, offset: u64, size: u8) -> Option<u64> {
        if offset < CONFIG {
            return (size == 4).then(|| u64::from(self.transport.read(offset)));
        }
        if !matches!(size, 1 | 2 | 4 | 8) {
            return None;
        }
        let config = self.config();
        let value = (0..u64::from(size))
            .map(|i| {
                let byte = usize::try_from(offset - CONFIG + i)
                    .ok()
                    .and_then(|o| config.get(o));
                u64::from(byte.copied().unwrap_or(0)) << (8 * i)
            })
            .fold(0, |acc, b| acc | b);
        Some(value)
    }

    /// A store at `offset` in the slot; `None` is a bus error. Queue work
    /// it asks for waits for [`VirtioMmio::process`].
    pub fn store(&mut self, offset: u64, size: u8, val: u64) -> Option<()> {
        if offset < CONFIG {
            if size != 4 {
                return None;
            }
            // Device reset has nothing to clear beyond the transport.
            let _effect = self.transport.write(offset, val as u32);
            return Some(());
        }
        // Nothing in our configuration spaces is writable.
        matches!(size, 1 | 2 | 4 | 8).then_some(())
    }

    /// The interrupt line to the PLIC.
    pub fn irq_level(&self) -> bool {
        self.transport.irq_level()
    }

    /// Whether a notified queue waits for [`VirtioMmio::process`].
    pub fn has_work(&self) -> bool {
        self.transport.has_notified()
    }

    /// Handle every request made available on the notified queues, put them
    /// in the used rings and raise the interrupt the driver asked for. A
    /// driver error sets DEVICE_NEEDS_RESET, stops the device and is
    /// returned (for diagnostics; the guest sees only the status).
    pub fn process(&mut self, ram: &mut Ram, mut io: DeviceIo<'_>) -> Result<(), VirtioError> {
        let notified = self.transport.take_notified();
        if notified == 0 || !self.transport.live() {
            return Ok(());
        }
        for queue in 0..self.transport.queues().len() {
            if notified >> queue & 1 == 0 {
                continue;
            }
            if let Err(e) = self.process_queue(queue, ram, &mut io) {
                self.transport.set_needs_reset();
                return Err(e);
            }
        }
        Ok(())
    }

    fn process_queue(
        &mut self,
        index: usize,
        ram: &mut Ram,
        io: &mut DeviceIo<'_>,
    ) -> Result<(), VirtioError> {
        if matches!(self.device, Device::Net(_)) && index == net::RX_QUEUE {
            // Receive buffers wait for frames; nothing to do on a notify.
            return Ok(());
        }
        let features = self.transport.ring_features();
        let negotiated = self.transport.negotiated();
        let queue_err = |source| VirtioError::Queue {
            queue: index,
            source,
        };
        let Some(queue) = self.transport.queue_mut(index) else {
            return Ok(());
        };
        queue.check_layout(ram).map_err(queue_err)?;
        let mut used = false;
        while let Some(chain) = queue.pop(ram, features).map_err(queue_err)? {
            let written = match &mut self.device {
                Device::Block(b) => {
                    let disk = io.disk.as_mut().map(|d| &mut **d as &mut dyn BlockDevice);
                    b.handle(&chain, ram, disk, negotiated)
                }
                Device::Rng(r) => Ok(r.fill(&chain, ram)),
                Device::Net(n) => {
                    if let Some(frame) = n.transmit(&chain, ram) {
                        let event = OutputEvent::Net {
                            nic: n.nic(),
                            frame: &frame,
                        };
                        io.output.emit(io.icount, event);
                    }
                    Ok(0)
                }
            }
            .map_err(|reason| VirtioError::BadRequest {
                queue: index,
                head: chain.head,
                reason,
            })?;
            queue
                .push_used(ram, chain.head, written)
                .map_err(queue_err)?;
            used = true;
        }
        queue
            .publish_avail_event(ram, features)
            .map_err(queue_err)?;
        if used && queue.needs_interrupt(ram, features).map_err(queue_err)? {
            self.transport.signal_used();
        }
        Ok(())
    }

    /// The NIC number if this is a network device.
    pub fn nic(&self) -> Option<usize> {
        match &self.device {
            Device::Net(n) => Some(n.nic()),
            _ => None,
        }
    }

    /// Whether a network device can take a received frame now: the driver
    /// is up and has a receive buffer posted.
    pub fn rx_ready(&self, ram: &Ram) -> bool {
        matches!(self.device, Device::Net(_))
            && self.transport.live()
            && self
                .transport
                .queues()
                .get(net::RX_QUEUE)
                .is_some_and(|q| q.has_available(ram))
    }

    /// Deliver a received frame into the next posted receive buffer and
    /// interrupt the driver if it asked for that. Returns whether the frame
    /// was delivered (false: no buffer, not a NIC, or it did not fit).
    pub fn receive(&mut self, ram: &mut Ram, frame: &[u8]) -> Result<bool, VirtioError> {
        if !self.rx_ready(ram) {
            return Ok(false);
        }
        let features = self.transport.ring_features();
        let result = self.receive_into_queue(ram, frame, features);
        if result.is_err() {
            self.transport.set_needs_reset();
        }
        result
    }

    fn receive_into_queue(
        &mut self,
        ram: &mut Ram,
        frame: &[u8],
        features: RingFeatures,
    ) -> Result<bool, VirtioError> {
        let queue_err = |source| VirtioError::Queue {
            queue: net::RX_QUEUE,
            source,
        };
        let Device::Net(net) = &mut self.device else {
            return Ok(false);
        };
        let Some(queue) = self.transport.queue_mut(net::RX_QUEUE) else {
            return Ok(false);
        };
        let Some(chain) = queue.pop(ram, features).map_err(queue_err)? else {
            return Ok(false);
        };
        let written = net.receive(&chain, ram, frame);
        queue
            .push_used(ram, chain.head, written)
            .map_err(queue_err)?;
        queue
            .publish_avail_event(ram, features)
            .map_err(queue_err)?;
        if queue.needs_interrupt(ram, features).map_err(queue_err)? {
            self.transport.signal_used();
        }
        Ok(written > 0)
    }
}
