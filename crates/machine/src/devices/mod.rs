//! The board's devices, driven by guest accesses and by the machine's
//! clock. Each has a state type beside it (`ClintState`, …: part of
//! snapshots and of the machine state hash) and implements
//! [`crate::Persist`] to save and restore it.

pub mod clint;
pub mod plic;
pub mod rtc;
pub mod sifive_test;
pub mod uart;
pub mod vmgenid;

pub use clint::Clint;
pub use plic::Plic;
pub use rtc::Rtc;
pub use sifive_test::Finish;
pub use uart::Uart;
pub use vmgenid::VmGenId;
