//! Guest time (DESIGN §3.2): `mtime` is a function of the machine's retired
//! instruction count plus clock warps decided by the host and applied as
//! inputs. It never runs backwards.

use serde::{Deserialize, Serialize};

/// Retired instructions per `mtime` tick (a 10 MHz timebase, so guest time
/// runs in real time at 160 MIPS).
pub const INSTRUCTIONS_PER_TICK: u64 = 16;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Clock {
    /// The icount at which `mtime` was 0 (the last reset).
    epoch: u64,
    /// Sum of all warps since the epoch, in ticks.
    warp: u64,
}

impl Clock {
    pub fn new(epoch: u64) -> Self {
        Self { epoch, warp: 0 }
    }

    pub fn mtime(&self, icount: u64) -> u64 {
        (icount.saturating_sub(self.epoch) / INSTRUCTIONS_PER_TICK).saturating_add(self.warp)
    }

    /// Move guest time forward by `ticks`.
    pub fn warp(&mut self, ticks: u64) {
        self.warp = self.warp.saturating_add(ticks);
    }

    /// Total warp since the epoch.
    pub fn total_warp(&self) -> u64 {
        self.warp
    }

    /// The first icount at which `mtime` reaches `deadline` (no warps
    /// assumed); `None` if it is out of reach.
    pub fn icount_at(&self, deadline: u64) -> Option<u64> {
        let ticks = deadline.saturating_sub(self.warp);
        ticks
            .checked_mul(INSTRUCTIONS_PER_TICK)?
            .checked_add(self.epoch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mtime_follows_icount_and_warps() {
        let mut c = Clock::new(1000);
        assert_eq!(c.mtime(1000), 0);
        assert_eq!(c.mtime(1015), 0);
        assert_eq!(c.mtime(1016), 1);
        c.warp(50);
        assert_eq!(c.mtime(1016), 51);
        assert_eq!(c.total_warp(), 50);
    }

    #[test]
    fn icount_at_is_the_first_instruction_reaching_the_deadline() {
        let mut c = Clock::new(0);
        c.warp(10);
        let at = c.icount_at(25).unwrap();
        assert_eq!(c.mtime(at), 25);
        assert_eq!(c.mtime(at - 1), 24);
        assert_eq!(c.icount_at(5), Some(0), "already past");
        assert_eq!(c.icount_at(u64::MAX), None);
    }
}
