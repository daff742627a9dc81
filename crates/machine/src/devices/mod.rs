//! The board's devices. Each is plain data (serde-serializable, part of the
//! machine state) driven by guest accesses and by the machine's clock.

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
