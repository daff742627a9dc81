//! The lockstep board (DESIGN §2): RAM, reset ROM, CLINT, PLIC, ns16550a
//! UART, SiFive test device, goldfish RTC, vmgenid, virtio-mmio (blk, rng)
//! and the device tree, plus image loading and the deterministic run loop.

//!
//! # What this crate owns, and what it must not know
//!
//! It owns a whole deterministic machine: the harts (from `riscv`), RAM,
//! every device and its snapshot state, guest time, the state hash, the
//! run loop that interleaves harts and host input events, and the
//! snapshot file format. It takes disks as `disk::BlockDevice`s and host
//! input as recorded events; it knows nothing of files beyond snapshots
//! and boot images, of sockets, terminals, threads other than the run
//! loop's callers', VM bundles, FT or replay logs (those crates build on
//! it).
//!
//! Its face: [`Machine`] and its configuration, the run loop ([`Runner`]
//! and its journals), [`layout`] (the board's addresses, for tests and
//! programs that target it) and [`snapshot`] (the file format, live and
//! assembled saves). The rest is private; the few other types others
//! need are re-exported here.

mod board;
mod clock;
mod devices;
mod fdt;
mod hash;
mod images;
mod io;
pub mod layout;
mod loader;
mod machine;
mod rom;
mod runner;
pub mod snapshot;
mod state;
mod tracked_disk;
mod virtio;

pub use clock::{
    BadRate, InstructionsPerTick, DEFAULT_INSTRUCTIONS_PER_TICK, LEGACY_INSTRUCTIONS_PER_TICK,
    MAX_INSTRUCTIONS_PER_TICK,
};
pub use devices::clint::Clint;
pub use hash::{ram_digest, RamHasher, CHUNK_PAGES};
pub use images::{CorruptImages, ImageBytes};
pub use io::{CaptureOutput, Input, NullOutput, Output, OutputEvent};
pub use loader::{place, Placement, Segment};
pub use machine::{BootImages, Machine, MachineConfig, MachineError, Step, MAX_MEMORY, QUANTUM};
pub use runner::{
    Credit, CreditPool, HostEvent, Journal, JournalError, Pacing, PacingStats, RunEnd, RunError,
    Runner, NS_PER_TICK,
};
pub use state::{BoardShape, Persist, SlotMismatch, StateError};
pub use tracked_disk::{ClusterRecord, RecordError, SwapError, TrackedDisk};
pub use virtio::{slot_base, DeviceIo, VirtioMmio, VirtioSpec};
