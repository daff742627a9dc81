//! One RISC-V RV64GC hart (RV64IMAFDC + Zicsr + Zifencei + Zicntr + Sstc).
//!
//! The hart is deterministic: it advances only by retiring instructions and
//! reaches the outside world only through [`Bus`] (MMIO) and [`Ram`] (plain
//! memory, with a fast path), plus interrupt lines set by the board. It knows
//! nothing of devices, files, threads or host time.

pub mod bus;
pub mod csr;
pub mod decode;
pub mod encode;
pub mod engine;
pub mod fpu;
pub mod hart;
pub mod mmu;
pub mod ram;

pub use bus::{Bus, BusFault, NoDevices};
pub use engine::Engine;
pub use hart::{Exit, Hart, HartState, Irq, JitStats, Priv, Trap};
pub use ram::Ram;
