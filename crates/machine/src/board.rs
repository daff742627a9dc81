//! The bus: routes the harts' MMIO accesses to the devices, and drives the
//! interrupt lines from device state and guest time.

use crate::clock::Clock;
use crate::devices::clint::ClintState;
use crate::devices::plic::PlicState;
use crate::devices::rtc::RtcState;
use crate::devices::uart::UartState;
use crate::devices::vmgenid::VmGenIdState;
use crate::devices::{sifive_test, Clint, Finish, Plic, Rtc, Uart, VmGenId};
use crate::io::{Output, OutputEvent};
use crate::layout::*;
use crate::state::{BoardShape, Persist, StateError};
use crate::tracked_disk::TrackedDisk;
use crate::virtio::{DeviceIo, VirtioMmio, VirtioState};
use disk::BlockDevice;
use riscv::hart::Irq;
use riscv::{Bus, BusFault, Hart, Ram};
use serde::{Deserialize, Serialize};

/// All devices ([`DevicesState`] is their saved form, part of snapshots
/// and the state hash).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Devices {
    pub clint: Clint,
    pub plic: Plic,
    pub uart: Uart,
    pub rtc: Rtc,
    pub vmgenid: VmGenId,
    /// Populated virtio-mmio slots, from slot 0.
    pub virtio: Vec<VirtioMmio>,
}

/// Every device's saved state, in the order the snapshot stores them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DevicesState {
    pub clint: ClintState,
    pub plic: PlicState,
    pub uart: UartState,
    pub rtc: RtcState,
    pub vmgenid: VmGenIdState,
    /// Populated virtio-mmio slots, from slot 0.
    pub virtio: Vec<VirtioState>,
}

impl Persist for Devices {
    type State = DevicesState;

    fn save(&self) -> DevicesState {
        DevicesState {
            clint: self.clint.save(),
            plic: self.plic.save(),
            uart: self.uart.save(),
            rtc: self.rtc.save(),
            vmgenid: self.vmgenid.save(),
            virtio: self.virtio.iter().map(VirtioMmio::save).collect(),
        }
    }

    /// Each device fits the board; the virtio slots hold the devices the
    /// config puts there.
    fn restore(state: &DevicesState, board: &BoardShape<'_>) -> Result<Self, StateError> {
        if state.virtio.len() != board.virtio.len() {
            return Err(StateError::VirtioSlots {
                found: state.virtio.len(),
                config: board.virtio.len(),
            });
        }
        let virtio = state
            .virtio
            .iter()
            .zip(board.virtio)
            .enumerate()
            .map(|(slot, (v, fresh))| {
                VirtioMmio::restore(v, fresh)
                    .map_err(|mismatch| StateError::VirtioSlot { slot, mismatch })
            })
            .collect::<Result<_, _>>()?;
        Ok(Self {
            clint: Clint::restore(&state.clint, board)?,
            plic: Plic::restore(&state.plic, board)?,
            uart: Uart::restore(&state.uart, board)?,
            rtc: Rtc::restore(&state.rtc, board)?,
            vmgenid: VmGenId::restore(&state.vmgenid, board)?,
            virtio,
        })
    }
}

impl Devices {
    pub fn new(
        harts: usize,
        boot_wall_ns: u64,
        vmgenid: [u8; 16],
        virtio: Vec<VirtioMmio>,
    ) -> Self {
        Self {
            clint: Clint::new(harts),
            plic: Plic::new(harts),
            uart: Uart::new(),
            rtc: Rtc::new(boot_wall_ns),
            vmgenid: VmGenId::new(vmgenid),
            virtio,
        }
    }
}

/// What a hart sees beyond RAM during one slice.
pub struct Board {
    pub devices: Devices,
    pub clock: Clock,
    pub rom: Vec<u8>,
    pub output: Box<dyn Output>,
    /// Machine icount minus the running hart's instret: turns the `now` of
    /// a bus access into the machine icount.
    pub icount_base: u64,
    /// Poweroff or reset requested by the guest during the slice.
    pub finish: Option<Finish>,
    /// The disk behind each virtio slot (`None` for other devices). The
    /// contents are the disk image's; what the guest wrote is tracked for
    /// the state hash.
    pub disks: Vec<Option<TrackedDisk>>,
}

impl Board {
    fn icount(&self, now: u64) -> u64 {
        self.icount_base.wrapping_add(now)
    }

    /// Bring the interrupt lines up to date at `mtime`, then drive `hart`'s
    /// lines from them.
    pub fn sync_irqs(&mut self, hart_index: usize, hart: &mut Hart, mtime: u64) {
        let d = &mut self.devices;
        d.rtc.tick(mtime);
        d.plic.set_level(UART_IRQ, d.uart.irq_level());
        d.plic.set_level(RTC_IRQ, d.rtc.irq_level());
        for (n, v) in d.virtio.iter().enumerate() {
            d.plic.set_level(VIRTIO_IRQ_BASE + n as u32, v.irq_level());
        }
        hart.set_irq(Irq::MachineSoft, d.clint.msip(hart_index));
        hart.set_irq(Irq::MachineTimer, d.clint.timer_pending(hart_index, mtime));
        hart.set_irq(Irq::MachineExternal, d.plic.context_pending(2 * hart_index));
        hart.set_irq(
            Irq::SupervisorExternal,
            d.plic.context_pending(2 * hart_index + 1),
        );
    }

    /// Run the virtio work the guest asked for by notifying queues. Called
    /// right after the slice that notified (which ended at the notifying
    /// store), so completions appear at that instruction boundary.
    pub fn process_virtio(&mut self, ram: &mut Ram, icount: u64) {
        for (n, v) in self.devices.virtio.iter_mut().enumerate() {
            if v.has_work() {
                let disk = self
                    .disks
                    .get_mut(n)
                    .and_then(Option::as_mut)
                    .map(|d| d as &mut dyn BlockDevice);
                let io = DeviceIo {
                    disk,
                    output: &mut *self.output,
                    icount,
                };
                // A driver error leaves DEVICE_NEEDS_RESET for the guest to
                // see; the host has nothing to add.
                let _ = v.process(ram, io);
            }
        }
    }

    /// The virtio slot and offset in it of `pa`, if it is a populated slot.
    fn virtio_slot(&self, pa: u64) -> Option<(usize, u64)> {
        let slots = self.devices.virtio.len() as u64;
        let off = within(pa, VIRTIO_BASE, slots * VIRTIO_SLOT_SIZE)?;
        Some(((off / VIRTIO_SLOT_SIZE) as usize, off % VIRTIO_SLOT_SIZE))
    }

    fn rom_load(&self, offset: u64, size: u8) -> u64 {
        (0..u64::from(size))
            .map(|i| {
                let byte = usize::try_from(offset + i)
                    .ok()
                    .and_then(|o| self.rom.get(o));
                u64::from(byte.copied().unwrap_or(0)) << (8 * i)
            })
            .fold(0, |acc, b| acc | b)
    }
}

/// `pa` relative to a device window, if inside it.
fn within(pa: u64, base: u64, size: u64) -> Option<u64> {
    pa.checked_sub(base).filter(|&off| off < size)
}

impl Bus for Board {
    fn load(&mut self, pa: u64, size: u8, now: u64) -> Result<u64, BusFault> {
        let mtime = self.clock.mtime(self.icount(now));
        let virtio = self.virtio_slot(pa);
        let d = &mut self.devices;
        let value = if let Some((slot, off)) = virtio {
            d.virtio[slot].load(off, size)
        } else if let Some(off) = within(pa, UART_BASE, UART_SIZE) {
            Some(u64::from(d.uart.read(off)))
        } else if let Some(off) = within(pa, CLINT_BASE, CLINT_SIZE) {
            d.clint.load(off, size, mtime)
        } else if let Some(off) = within(pa, PLIC_BASE, PLIC_SIZE) {
            d.plic.load(off, size)
        } else if let Some(off) = within(pa, ROM_BASE, ROM_SIZE) {
            Some(self.rom_load(off, size))
        } else if let Some(off) = within(pa, RTC_BASE, RTC_SIZE) {
            d.rtc.load(off, size, mtime)
        } else if let Some(off) = within(pa, VMGENID_BASE, VMGENID_SIZE) {
            Some(d.vmgenid.load(off, size))
        } else if within(pa, TEST_BASE, TEST_SIZE).is_some() {
            matches!(size, 2 | 4).then_some(0)
        } else {
            None
        };
        value.ok_or(BusFault)
    }

    fn store(&mut self, pa: u64, size: u8, val: u64, now: u64) -> Result<(), BusFault> {
        let icount = self.icount(now);
        let mtime = self.clock.mtime(icount);
        let virtio = self.virtio_slot(pa);
        let d = &mut self.devices;
        let done = if let Some((slot, off)) = virtio {
            d.virtio[slot].store(off, size, val)
        } else if let Some(off) = within(pa, UART_BASE, UART_SIZE) {
            if let Some(byte) = d.uart.write(off, val as u8) {
                self.output.emit(icount, OutputEvent::Console(&[byte]));
            }
            Some(())
        } else if let Some(off) = within(pa, CLINT_BASE, CLINT_SIZE) {
            d.clint.store(off, size, val)
        } else if let Some(off) = within(pa, PLIC_BASE, PLIC_SIZE) {
            d.plic.store(off, size, val)
        } else if let Some(off) = within(pa, TEST_BASE, TEST_SIZE) {
            sifive_test::store(off, size, val).ok().map(|finish| {
                if finish.is_some() {
                    self.finish = finish;
                }
            })
        } else if let Some(off) = within(pa, RTC_BASE, RTC_SIZE) {
            d.rtc.store(off, size, val, mtime)
        } else if within(pa, VMGENID_BASE, VMGENID_SIZE).is_some()
            || within(pa, ROM_BASE, ROM_SIZE).is_some()
        {
            Some(()) // read-only: writes are ignored
        } else {
            None
        };
        done.ok_or(BusFault)
    }

    fn mtime(&mut self, now: u64) -> u64 {
        self.clock.mtime(self.icount(now))
    }
}
