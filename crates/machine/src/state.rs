//! State types: what a snapshot holds of each part of the machine, apart
//! from the live objects that run it (Firecracker's `Persist`, Cloud
//! Hypervisor's `Snapshottable`, in our own words).
//!
//! Every snapshotted part (the harts, CLINT, PLIC, UART, RTC, vmgenid, the
//! clock, each virtio slot: transport, queues and device) has a plain
//! `…State` type next to it: architectural or device state only, no
//! caches, no host handles. [`Persist::save`] copies it out of the live
//! part; [`Persist::restore`] builds a live part from it after checking
//! the invariants the part's code relies on, which a file that passed its
//! checksums may still break (it may be forged, or come from a build
//! whose board differs): a typed [`StateError`] says which.
//!
//! The state types are what the snapshot file stores (postcard) and what
//! the state hash covers (DESIGN §3.7). Their encoding is versioned by
//! the snapshot format ([`crate::snapshot::FORMAT_VERSION`]): a change to
//! any of them needs a new version, and the state hash pinned by
//! `tests/snapshot.rs` catches one that forgot. The live types may change
//! freely: they no longer serialise at all.

#[cfg(test)]
use crate::board::Devices;
use crate::clock::InstructionsPerTick;
use crate::virtio::VirtioMmio;
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::fmt::Debug;

/// A part of the machine that a snapshot saves and restores through its
/// state type.
pub trait Persist: Sized {
    /// The part's saved form: plain data.
    type State: Clone + PartialEq + Debug + Serialize + DeserializeOwned;
    /// The part's state as it is now.
    fn save(&self) -> Self::State;
    /// A live part in `state`, if that state fits the board.
    fn restore(state: &Self::State, board: &BoardShape<'_>) -> Result<Self, StateError>;
}

/// What a restored state must fit: the machine the config describes.
pub struct BoardShape<'a> {
    pub harts: usize,
    /// The config's clock rate.
    pub rate: InstructionsPerTick,
    /// The virtio slots as the config builds them at power-on.
    pub virtio: &'a [VirtioMmio],
}

/// Why a saved state does not fit the board it is restored into.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StateError {
    #[error("CLINT: {msip} msip and {mtimecmp} mtimecmp registers for {harts} harts")]
    ClintHarts {
        msip: usize,
        mtimecmp: usize,
        harts: usize,
    },
    #[error("PLIC: source tables of {found:?} entries, not {expected}")]
    PlicSources { found: [usize; 4], expected: usize },
    #[error("PLIC: context tables of {found:?} entries for {harts} harts")]
    PlicContexts { found: [usize; 2], harts: usize },
    #[error("UART: {len} bytes in a {capacity}-byte receive FIFO")]
    UartFifo { len: usize, capacity: usize },
    #[error("clock: {found} instructions per tick, the config says {config}")]
    ClockRate {
        found: InstructionsPerTick,
        config: InstructionsPerTick,
    },
    #[error("virtio: {found} slots, the config has {config}")]
    VirtioSlots { found: usize, config: usize },
    #[error("virtio: slot {slot}: {mismatch}")]
    VirtioSlot { slot: usize, mismatch: SlotMismatch },
}

/// How a saved virtio slot differs from the device the config puts there.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SlotMismatch {
    #[error("device type differs from the config's")]
    DeviceType,
    #[error("NIC number {found}, the config's is {config}")]
    Nic { found: u64, config: u64 },
    #[error("{found} queues, the device has {device}")]
    Queues { found: usize, device: usize },
    #[error("queue {queue}: maximum size {found}, the device has {device}")]
    QueueMaxSize {
        queue: usize,
        found: u16,
        device: u16,
    },
    #[error("queue {queue}: ready with size {size}")]
    QueueSize { queue: usize, size: u32 },
}

/// Each part, saved, encoded as the snapshot stores it, decoded and
/// restored into a running machine, leaves the state hash as it was and
/// the machine running on exactly as its twin that was never touched.
#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::{Input, NullOutput};
    use crate::machine::{BootImages, Machine, MachineConfig, Step};
    use crate::virtio::VirtioSpec;
    use disk::MemDisk;
    use riscv::encode::{addi, jal};
    use riscv::Hart;

    /// Two harts counting in a loop, one device of each kind, each device
    /// moved away from its power-on state.
    fn busy_machine() -> Machine {
        let firmware: Vec<u8> = [addi(5, 5, 1), jal(0, -4)]
            .iter()
            .flat_map(|w| w.to_le_bytes())
            .collect();
        let mut kernel = vec![0u8; 64];
        kernel[16..24].copy_from_slice(&(1u64 << 20).to_le_bytes());
        kernel[0x38..0x3c].copy_from_slice(b"RSC\x05");
        let config = MachineConfig {
            cpus: 2,
            memory: 16 << 20,
            images: BootImages {
                firmware: firmware.into(),
                kernel: kernel.into(),
                initrd: None,
            },
            bootargs: String::new(),
            boot_wall_ns: 1_700_000_000_000_000_000,
            vmgenid: [7; 16],
            virtio: vec![
                VirtioSpec::Block {
                    serial: "vda".into(),
                },
                VirtioSpec::Rng { seed: [3; 32] },
                VirtioSpec::Net {
                    mac: [2, 0, 0, 0, 0, 1],
                },
            ],
            instructions_per_tick: InstructionsPerTick::DEFAULT,
        };
        let disks: Vec<Box<dyn disk::BlockDevice>> = vec![Box::new(MemDisk::new(1 << 20))];
        let mut m = Machine::with_disks(config, Box::new(NullOutput), disks).unwrap();
        run_to(&mut m, 5_000);
        m.input(Input::Console(b"hi".to_vec()));
        m.input(Input::ClockWarp(1_000));
        m.input(Input::VmGenId([9; 16]));
        let d = &mut m.board.devices;
        d.clint.store(0x4008, 8, 12_345).unwrap(); // hart 1's mtimecmp
        d.plic.store(4, 4, 7).unwrap(); // source 1's priority
        d.plic.store(0x2000, 4, 0b110).unwrap(); // context 0 enables
        d.rtc.store(0x10, 4, 1, 0).unwrap(); // IRQ_ENABLED
        for v in &mut d.virtio {
            for (offset, value) in [(0x70, 3), (0x30, 0), (0x38, 8), (0x80, 0x1000)] {
                v.store(offset, 4, value).unwrap();
            }
        }
        run_to(&mut m, 9_000);
        m
    }

    fn run_to(m: &mut Machine, icount: u64) {
        while m.icount() < icount {
            assert_eq!(m.step().unwrap(), Step::Ran);
        }
    }

    /// `state` through the bytes a snapshot holds.
    fn through_bytes<S: Serialize + DeserializeOwned + PartialEq + Debug>(state: &S) -> S {
        let bytes = postcard::to_stdvec(state).unwrap();
        let decoded: S = postcard::from_bytes(&bytes).unwrap();
        assert_eq!(&decoded, state);
        decoded
    }

    /// Replace a part of a busy machine by its restored copy (`swap`
    /// does it) and compare with an untouched twin, now and later.
    fn round_trips(what: &str, swap: impl FnOnce(&mut Machine, &BoardShape<'_>)) {
        let mut m = busy_machine();
        let mut twin = busy_machine();
        let want = twin.state_hash().unwrap();
        let virtio = m.board.devices.virtio.clone();
        let board = BoardShape {
            harts: m.harts.len(),
            rate: m.config.instructions_per_tick,
            virtio: &virtio,
        };
        swap(&mut m, &board);
        assert_eq!(m.state_hash().unwrap(), want, "{what}: state hash");
        run_to(&mut m, 20_000);
        run_to(&mut twin, 20_000);
        assert_eq!(m.icount(), twin.icount());
        assert_eq!(
            m.state_hash().unwrap(),
            twin.state_hash().unwrap(),
            "{what}: later"
        );
    }

    fn persist<T: Persist>(part: &mut T, board: &BoardShape<'_>) {
        let state = through_bytes(&part.save());
        let restored = T::restore(&state, board).unwrap();
        assert_eq!(restored.save(), state);
        *part = restored;
    }

    #[test]
    fn harts_round_trip() {
        round_trips("harts", |m, _| {
            for hart in &mut m.harts {
                let state = through_bytes(&hart.save());
                *hart = Hart::from_state(&state);
            }
        });
    }

    #[test]
    fn harts_round_trip_in_place() {
        round_trips("harts in place", |m, _| {
            for hart in &mut m.harts {
                let state = through_bytes(&hart.save());
                hart.restore(&state);
            }
        });
    }

    #[test]
    fn clint_round_trips() {
        round_trips("CLINT", |m, b| persist(&mut m.board.devices.clint, b));
    }

    #[test]
    fn plic_round_trips() {
        round_trips("PLIC", |m, b| persist(&mut m.board.devices.plic, b));
    }

    #[test]
    fn uart_round_trips() {
        round_trips("UART", |m, b| persist(&mut m.board.devices.uart, b));
    }

    #[test]
    fn rtc_round_trips() {
        round_trips("RTC", |m, b| persist(&mut m.board.devices.rtc, b));
    }

    #[test]
    fn vmgenid_round_trips() {
        round_trips("vmgenid", |m, b| persist(&mut m.board.devices.vmgenid, b));
    }

    #[test]
    fn clock_round_trips() {
        round_trips("clock", |m, b| persist(&mut m.board.clock, b));
    }

    #[test]
    fn each_virtio_slot_round_trips() {
        for slot in 0..3 {
            round_trips(&format!("virtio slot {slot}"), |m, b| {
                let v = &mut m.board.devices.virtio[slot];
                let state = through_bytes(&v.save());
                *v = VirtioMmio::restore(&state, &b.virtio[slot]).unwrap();
                assert_eq!(v.save(), state);
            });
        }
    }

    #[test]
    fn all_devices_round_trip() {
        round_trips("devices", |m, b| persist(&mut m.board.devices, b));
    }

    #[test]
    fn a_state_that_does_not_fit_the_board_is_refused_by_kind() {
        let m = busy_machine();
        let virtio = m.board.devices.virtio.clone();
        let one_hart = BoardShape {
            harts: 1,
            rate: m.config.instructions_per_tick,
            virtio: &virtio,
        };
        let d = m.board.devices.save();
        assert_eq!(
            crate::devices::Clint::restore(&d.clint, &one_hart),
            Err(StateError::ClintHarts {
                msip: 2,
                mtimecmp: 2,
                harts: 1
            })
        );
        assert!(matches!(
            crate::devices::Plic::restore(&d.plic, &one_hart),
            Err(StateError::PlicContexts { harts: 1, .. })
        ));
        let mut uart = d.uart.clone();
        uart.rx = vec![0; 17];
        assert!(matches!(
            crate::devices::Uart::restore(&uart, &one_hart),
            Err(StateError::UartFifo { len: 17, .. })
        ));
        // The RNG's state where the config has the disk.
        let swapped = VirtioMmio::restore(&d.virtio[1], &virtio[0]);
        assert_eq!(swapped, Err(SlotMismatch::DeviceType));
        let mut net = d.virtio[2].clone();
        if let crate::virtio::DeviceState::Net(n) = &mut net.device {
            n.nic = 4;
        }
        assert_eq!(
            VirtioMmio::restore(&net, &virtio[2]),
            Err(SlotMismatch::Nic {
                found: 4,
                config: 0
            })
        );
        let mut queue = d.virtio[0].clone();
        queue.transport.queues[0].ready = true;
        queue.transport.queues[0].size = 3;
        assert_eq!(
            VirtioMmio::restore(&queue, &virtio[0]),
            Err(SlotMismatch::QueueSize { queue: 0, size: 3 })
        );
        let fewer = BoardShape {
            virtio: &virtio[..2],
            ..one_hart
        };
        assert!(matches!(
            Devices::restore(&d, &fewer),
            Err(StateError::VirtioSlots {
                found: 3,
                config: 2
            })
        ));
    }
}
