//! Guest time (DESIGN §3.2): `mtime` is a function of the machine's retired
//! instruction count plus clock warps decided by the host and applied as
//! inputs. It never runs backwards.
//!
//! # The rate: instructions per tick
//!
//! `mtime` counts ticks of a 10 MHz timebase (the device tree's
//! `timebase-frequency`); one tick passes every
//! [`InstructionsPerTick`] retired instructions. The rate is a per-VM
//! setting fixed when the VM is created (`lockstep run
//! --instructions-per-tick N`), and it is part of the machine: snapshots,
//! replay logs and FT Hellos carry it, and the state hash covers it, because
//! the same instructions at another rate see other times and take timer
//! interrupts elsewhere.
//!
//! The rate is also a speed limit. At N instructions per tick, guest time
//! keeps up with real time at N × 10 MIPS; a hart that runs faster makes
//! guest time run ahead of real time, and the runner then waits for real
//! time (it never lets a busy guest's clock race ahead). A hart that runs
//! slower is caught up by logged clock warps. So the rate must be at least
//! the hart's speed for that speed to show in wall time.
//!
//! **Default: 256** (2,560 MIPS nominal). The first lockstep used 16 (160
//! MIPS), which the interpreter reached; then 64 (640 MIPS), which the
//! translator (now the default engine on x86-64, 500 to 2,500 MIPS) passes
//! on Linux workloads: `lockstep bench` waited 5.8 of its 17.6 s for real
//! time at 64, 0.01 s at 256. A guest that runs slower than its rate (the
//! interpreter, ~250 MIPS) is kept on real time by catch-up warps of 10 ms
//! or more: logged inputs of a few bytes each, at most about a hundred a
//! second. A VM whose hart is faster than its rate shows it as waits in
//! `lockstep bench`. The default is fixed, not measured on the host, so
//! the same command line builds the same machine on every host.

use crate::layout::TIMEBASE_HZ;
use crate::state::{BoardShape, Persist, StateError};
use serde::{Deserialize, Serialize};
use std::fmt;

/// The rate a VM gets unless it asks for another (see the module docs).
pub const DEFAULT_INSTRUCTIONS_PER_TICK: u64 = 256;
/// The rate of VMs created before the rate was a setting.
pub const LEGACY_INSTRUCTIONS_PER_TICK: u64 = 16;
/// Largest rate accepted: 10 GIPS of guest time per real second, far above
/// any hart we run, and small enough that `ticks × rate` stays exact.
pub const MAX_INSTRUCTIONS_PER_TICK: u64 = 1000;

/// Retired instructions per `mtime` tick: 1 to
/// [`MAX_INSTRUCTIONS_PER_TICK`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "u64", into = "u64")]
pub struct InstructionsPerTick(u64);

/// A rate outside 1 to [`MAX_INSTRUCTIONS_PER_TICK`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{value} instructions per tick is not a supported clock rate (1 to {MAX_INSTRUCTIONS_PER_TICK})")]
pub struct BadRate {
    pub value: u64,
}

impl InstructionsPerTick {
    pub const DEFAULT: Self = Self(DEFAULT_INSTRUCTIONS_PER_TICK);
    pub const LEGACY: Self = Self(LEGACY_INSTRUCTIONS_PER_TICK);

    pub fn new(value: u64) -> Result<Self, BadRate> {
        if (1..=MAX_INSTRUCTIONS_PER_TICK).contains(&value) {
            Ok(Self(value))
        } else {
            Err(BadRate { value })
        }
    }

    pub fn get(self) -> u64 {
        self.0
    }

    /// Instructions per millisecond of guest time at this rate.
    pub fn per_ms(self) -> u64 {
        self.0 * (TIMEBASE_HZ / 1000)
    }

    /// The speed in MIPS at which guest time keeps up with real time.
    pub fn nominal_mips(self) -> u64 {
        self.0 * (TIMEBASE_HZ / 1_000_000)
    }
}

impl Default for InstructionsPerTick {
    fn default() -> Self {
        Self::DEFAULT
    }
}

impl TryFrom<u64> for InstructionsPerTick {
    type Error = BadRate;
    fn try_from(value: u64) -> Result<Self, BadRate> {
        Self::new(value)
    }
}

impl From<InstructionsPerTick> for u64 {
    fn from(rate: InstructionsPerTick) -> u64 {
        rate.0
    }
}

impl fmt::Display for InstructionsPerTick {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Clock {
    /// The icount at which `mtime` was 0 (the last reset).
    epoch: u64,
    /// Sum of all warps since the epoch, in ticks.
    warp: u64,
    /// Retired instructions per tick.
    rate: InstructionsPerTick,
}

/// The clock's saved state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClockState {
    /// The icount at which `mtime` was 0.
    pub epoch: u64,
    /// Sum of all warps since the epoch, in ticks.
    pub warp: u64,
    pub rate: InstructionsPerTick,
}

impl Persist for Clock {
    type State = ClockState;

    fn save(&self) -> ClockState {
        ClockState {
            epoch: self.epoch,
            warp: self.warp,
            rate: self.rate,
        }
    }

    /// Epoch and warps may be anything; the rate is the config's.
    fn restore(state: &ClockState, board: &BoardShape<'_>) -> Result<Self, StateError> {
        if state.rate != board.rate {
            return Err(StateError::ClockRate {
                found: state.rate,
                config: board.rate,
            });
        }
        Ok(Self {
            epoch: state.epoch,
            warp: state.warp,
            rate: state.rate,
        })
    }
}

impl Clock {
    pub fn new(epoch: u64, rate: InstructionsPerTick) -> Self {
        Self {
            epoch,
            warp: 0,
            rate,
        }
    }

    pub fn rate(&self) -> InstructionsPerTick {
        self.rate
    }

    pub fn mtime(&self, icount: u64) -> u64 {
        (icount.saturating_sub(self.epoch) / self.rate.0).saturating_add(self.warp)
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
        ticks.checked_mul(self.rate.0)?.checked_add(self.epoch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rate(n: u64) -> InstructionsPerTick {
        InstructionsPerTick::new(n).unwrap()
    }

    #[test]
    fn mtime_follows_icount_and_warps() {
        let mut c = Clock::new(1000, rate(16));
        assert_eq!(c.mtime(1000), 0);
        assert_eq!(c.mtime(1015), 0);
        assert_eq!(c.mtime(1016), 1);
        c.warp(50);
        assert_eq!(c.mtime(1016), 51);
        assert_eq!(c.total_warp(), 50);
    }

    #[test]
    fn the_rate_sets_instructions_per_tick() {
        for n in [1, 16, 64, 1000] {
            let c = Clock::new(0, rate(n));
            assert_eq!(c.mtime(n - 1), 0);
            assert_eq!(c.mtime(n), 1);
            assert_eq!(c.mtime(11 * n - 1), 10);
            assert_eq!(c.icount_at(7), Some(7 * n));
        }
    }

    #[test]
    fn icount_at_is_the_first_instruction_reaching_the_deadline() {
        for n in [1, 16, 64] {
            let mut c = Clock::new(0, rate(n));
            c.warp(10);
            let at = c.icount_at(25).unwrap();
            assert_eq!(c.mtime(at), 25);
            assert_eq!(c.mtime(at - 1), 24);
            assert_eq!(c.icount_at(5), Some(0), "already past");
            let out_of_reach = if n == 1 { Some(u64::MAX - 10) } else { None };
            assert_eq!(c.icount_at(u64::MAX), out_of_reach);
        }
    }

    #[test]
    fn rates_outside_the_range_are_refused() {
        assert_eq!(InstructionsPerTick::new(0), Err(BadRate { value: 0 }));
        assert!(InstructionsPerTick::new(MAX_INSTRUCTIONS_PER_TICK + 1).is_err());
        let e = InstructionsPerTick::new(0).unwrap_err().to_string();
        assert!(e.contains("0 instructions per tick"), "{e}");
        // A file or message with a bad rate fails to decode.
        let bytes = postcard::to_stdvec(&0u64).unwrap();
        assert!(postcard::from_bytes::<InstructionsPerTick>(&bytes).is_err());
        let bytes = postcard::to_stdvec(&64u64).unwrap();
        assert_eq!(
            postcard::from_bytes::<InstructionsPerTick>(&bytes).unwrap(),
            rate(64)
        );
        assert_eq!(InstructionsPerTick::DEFAULT.nominal_mips(), 2560);
        assert_eq!(InstructionsPerTick::LEGACY.per_ms(), 160_000);
    }
}
