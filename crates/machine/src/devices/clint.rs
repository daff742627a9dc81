//! SiFive CLINT: per-hart software interrupt (`msip`) and timer compare
//! (`mtimecmp`) registers, and the shared `mtime` counter.
//!
//! `mtime` itself is not stored here: it is a function of the machine's
//! instruction count and clock warps (DESIGN §3.2), passed in on every access.
//! Guest writes to `mtime` are ignored, so guest time never runs backwards.

use crate::state::{BoardShape, Persist, StateError};
use serde::{Deserialize, Serialize};

const MSIP: u64 = 0x0000;
const MTIMECMP: u64 = 0x4000;
const MTIME: u64 = 0xbff8;
const MTIME_END: u64 = MTIME + 8;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Clint {
    msip: Vec<bool>,
    mtimecmp: Vec<u64>,
}

/// The CLINT's saved state: one `msip` and one `mtimecmp` per hart.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClintState {
    pub msip: Vec<bool>,
    pub mtimecmp: Vec<u64>,
}

impl Persist for Clint {
    type State = ClintState;

    fn save(&self) -> ClintState {
        ClintState {
            msip: self.msip.clone(),
            mtimecmp: self.mtimecmp.clone(),
        }
    }

    /// One register of each kind per hart of the board.
    fn restore(state: &ClintState, board: &BoardShape<'_>) -> Result<Self, StateError> {
        let harts = board.harts;
        if state.msip.len() != harts || state.mtimecmp.len() != harts {
            return Err(StateError::ClintHarts {
                msip: state.msip.len(),
                mtimecmp: state.mtimecmp.len(),
                harts,
            });
        }
        Ok(Self {
            msip: state.msip.clone(),
            mtimecmp: state.mtimecmp.clone(),
        })
    }
}

impl Clint {
    /// `mtimecmp` starts at its maximum so no timer interrupt is pending
    /// before the firmware programs one.
    pub fn new(harts: usize) -> Self {
        Self {
            msip: vec![false; harts],
            mtimecmp: vec![u64::MAX; harts],
        }
    }

    /// Machine software interrupt line of `hart` (an IPI).
    pub fn msip(&self, hart: usize) -> bool {
        self.msip.get(hart).copied().unwrap_or(false)
    }

    /// Machine timer interrupt line of `hart` at time `mtime`.
    pub fn timer_pending(&self, hart: usize, mtime: u64) -> bool {
        self.mtimecmp.get(hart).is_some_and(|&cmp| mtime >= cmp)
    }

    /// The `mtime` at which `hart`'s machine timer fires, if it is armed.
    pub fn deadline(&self, hart: usize) -> Option<u64> {
        self.mtimecmp
            .get(hart)
            .copied()
            .filter(|&cmp| cmp != u64::MAX)
    }

    /// A load of `size` bytes at `offset`; `None` is a bus error.
    pub fn load(&self, offset: u64, size: u8, mtime: u64) -> Option<u64> {
        match (offset, size) {
            (MSIP..MTIMECMP, 4) => Some(self.msip((offset / 4) as usize) as u64),
            (MSIP..MTIMECMP, _) => None,
            (MTIMECMP..MTIME, 4 | 8) => {
                let cmp = self
                    .mtimecmp
                    .get(((offset - MTIMECMP) / 8) as usize)
                    .copied();
                Some(half(cmp.unwrap_or(0), offset, size))
            }
            (MTIME..MTIME_END, 4 | 8) => Some(half(mtime, offset, size)),
            (_, 4 | 8) => Some(0),
            _ => None,
        }
    }

    /// A store of `size` bytes at `offset`; `None` is a bus error.
    pub fn store(&mut self, offset: u64, size: u8, val: u64) -> Option<()> {
        match (offset, size) {
            (MSIP..MTIMECMP, 4) => {
                if let Some(bit) = self.msip.get_mut((offset / 4) as usize) {
                    *bit = val & 1 != 0;
                }
                Some(())
            }
            (MSIP..MTIMECMP, _) => None,
            (MTIMECMP..MTIME, 4 | 8) => {
                if let Some(cmp) = self.mtimecmp.get_mut(((offset - MTIMECMP) / 8) as usize) {
                    *cmp = merge_half(*cmp, offset, size, val);
                }
                Some(())
            }
            (_, 4 | 8) => Some(()),
            _ => None,
        }
    }
}

/// The 4- or 8-byte window at `offset` of a 64-bit register.
fn half(reg: u64, offset: u64, size: u8) -> u64 {
    match (size, offset & 4) {
        (8, _) => reg,
        (_, 0) => reg & 0xffff_ffff,
        _ => reg >> 32,
    }
}

/// `reg` with the 4- or 8-byte window at `offset` replaced by `val`.
fn merge_half(reg: u64, offset: u64, size: u8, val: u64) -> u64 {
    match (size, offset & 4) {
        (8, _) => val,
        (_, 0) => (reg & !0xffff_ffff) | (val & 0xffff_ffff),
        _ => (reg & 0xffff_ffff) | (val << 32),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn msip_is_one_bit_per_hart() {
        let mut c = Clint::new(2);
        c.store(4, 4, 0xffff_ffff).unwrap();
        assert!(!c.msip(0));
        assert!(c.msip(1));
        assert_eq!(c.load(4, 4, 0), Some(1));
        c.store(4, 4, 2).unwrap();
        assert!(!c.msip(1));
        // A hart that does not exist reads as zero and ignores writes.
        c.store(12, 4, 1).unwrap();
        assert_eq!(c.load(12, 4, 0), Some(0));
    }

    #[test]
    fn mtimecmp_halves_and_timer_line() {
        let mut c = Clint::new(2);
        assert_eq!(c.deadline(1), None);
        assert!(!c.timer_pending(1, u64::MAX - 1));
        c.store(0x4008, 4, 0x1234).unwrap();
        c.store(0x400c, 4, 0).unwrap();
        assert_eq!(c.load(0x4008, 8, 0), Some(0x1234));
        assert_eq!(c.deadline(1), Some(0x1234));
        assert!(!c.timer_pending(1, 0x1233));
        assert!(c.timer_pending(1, 0x1234));
        assert!(!c.timer_pending(0, 0x1234));
        c.store(0x4000, 8, 0xaaaa_bbbb_cccc_dddd).unwrap();
        assert_eq!(c.load(0x4004, 4, 0), Some(0xaaaa_bbbb));
        assert_eq!(c.load(0x4000, 4, 0), Some(0xcccc_dddd));
    }

    #[test]
    fn mtime_reads_the_clock_and_ignores_writes() {
        let mut c = Clint::new(1);
        assert_eq!(c.load(MTIME, 8, 0x1_0000_0002), Some(0x1_0000_0002));
        assert_eq!(c.load(MTIME + 4, 4, 0x1_0000_0002), Some(1));
        c.store(MTIME, 8, 0).unwrap();
        assert_eq!(c.load(MTIME, 8, 77), Some(77));
    }

    #[test]
    fn bad_widths_fault() {
        let mut c = Clint::new(1);
        assert_eq!(c.load(0, 1, 0), None);
        assert_eq!(c.load(0, 8, 0), None);
        assert_eq!(c.store(0x4000, 2, 0), None);
    }
}
