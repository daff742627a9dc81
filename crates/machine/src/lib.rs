//! The lockstep board (DESIGN §2): RAM, reset ROM, CLINT, PLIC, ns16550a
//! UART, SiFive test device, goldfish RTC, vmgenid, virtio-mmio (blk, rng)
//! and the device tree, plus image loading and the deterministic run loop.

pub mod board;
pub mod clock;
pub mod devices;
pub mod fdt;
pub mod hash;
pub mod images;
pub mod io;
pub mod layout;
pub mod loader;
pub mod machine;
pub mod rom;
pub mod runner;
pub mod snapshot;
pub mod tracked_disk;
pub mod virtio;

pub use clock::INSTRUCTIONS_PER_TICK;
pub use images::{CorruptImages, ImageBytes};
pub use io::{CaptureOutput, Input, NullOutput, Output, OutputEvent};
pub use machine::{BootImages, Machine, MachineConfig, MachineError, Step, QUANTUM};
pub use runner::{
    Credit, CreditPool, HostEvent, Journal, JournalError, Pacing, RunEnd, RunError, Runner,
    NS_PER_TICK,
};
pub use virtio::VirtioSpec;
