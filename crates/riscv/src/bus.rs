//! The hart's window on everything that is not plain RAM.

/// A physical access outside RAM that no device answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BusFault;

/// Memory-mapped I/O as seen by a hart.
///
/// `now` is the hart's retired-instruction count at the access (its
/// `instret`), so the board can tell the exact instruction boundary an access
/// happens at (e.g. to compute `mtime`) without the hart knowing about time.
/// `size` is 1, 2, 4 or 8 bytes; accesses are naturally aligned.
///
/// After any MMIO access the hart ends its current run slice (returns
/// [`crate::Exit::Mmio`]) so the board can re-evaluate interrupt lines.
pub trait Bus {
    fn load(&mut self, pa: u64, size: u8, now: u64) -> Result<u64, BusFault>;
    fn store(&mut self, pa: u64, size: u8, val: u64, now: u64) -> Result<(), BusFault>;
    /// The current value of the platform timer (`mtime`) at `now`; read by
    /// the `time` CSR and Sstc.
    fn mtime(&mut self, now: u64) -> u64;
}

/// A bus with nothing on it: every access outside RAM faults, and
/// `mtime` is the retired-instruction count. For running a hart alone
/// (tests, differential checks, benchmarks of the hart by itself).
#[derive(Debug, Default, Clone, Copy)]
pub struct NoDevices;

impl Bus for NoDevices {
    fn load(&mut self, _: u64, _: u8, _: u64) -> Result<u64, BusFault> {
        Err(BusFault)
    }
    fn store(&mut self, _: u64, _: u8, _: u64, _: u64) -> Result<(), BusFault> {
        Err(BusFault)
    }
    fn mtime(&mut self, now: u64) -> u64 {
        now
    }
}
