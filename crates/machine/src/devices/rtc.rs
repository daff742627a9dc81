//! Goldfish real-time clock: nanoseconds since the Unix epoch, with one
//! alarm. Its time is the boot wall-clock value chosen by the host when the
//! machine was created (an input) plus guest time elapsed on `mtime`; the
//! device never reads host time.

use crate::layout::TIMEBASE_HZ;
use crate::state::{BoardShape, Persist, StateError};
use serde::{Deserialize, Serialize};

const TIME_LOW: u64 = 0x00;
const TIME_HIGH: u64 = 0x04;
const ALARM_LOW: u64 = 0x08;
const ALARM_HIGH: u64 = 0x0c;
const IRQ_ENABLED: u64 = 0x10;
const CLEAR_ALARM: u64 = 0x14;
const ALARM_STATUS: u64 = 0x18;
const CLEAR_INTERRUPT: u64 = 0x1c;

const NS_PER_TICK: u64 = 1_000_000_000 / TIMEBASE_HZ;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rtc {
    /// Wall-clock nanoseconds at `mtime` 0 (moved when the guest sets the time).
    base_ns: u64,
    /// High word latched by a TIME_LOW read, or written before TIME_LOW.
    time_high: u32,
    alarm_ns: u64,
    alarm_armed: bool,
    irq_enabled: bool,
    irq_pending: bool,
}

/// The RTC's saved state: registers the guest can set to any value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RtcState {
    pub base_ns: u64,
    pub time_high: u32,
    pub alarm_ns: u64,
    pub alarm_armed: bool,
    pub irq_enabled: bool,
    pub irq_pending: bool,
}

impl Persist for Rtc {
    type State = RtcState;

    fn save(&self) -> RtcState {
        RtcState {
            base_ns: self.base_ns,
            time_high: self.time_high,
            alarm_ns: self.alarm_ns,
            alarm_armed: self.alarm_armed,
            irq_enabled: self.irq_enabled,
            irq_pending: self.irq_pending,
        }
    }

    /// Any value is one the guest could have set.
    fn restore(state: &RtcState, _: &BoardShape<'_>) -> Result<Self, StateError> {
        Ok(Self {
            base_ns: state.base_ns,
            time_high: state.time_high,
            alarm_ns: state.alarm_ns,
            alarm_armed: state.alarm_armed,
            irq_enabled: state.irq_enabled,
            irq_pending: state.irq_pending,
        })
    }
}

impl Rtc {
    pub fn new(boot_wall_ns: u64) -> Self {
        Self {
            base_ns: boot_wall_ns,
            time_high: 0,
            alarm_ns: 0,
            alarm_armed: false,
            irq_enabled: false,
            irq_pending: false,
        }
    }

    fn now_ns(&self, mtime: u64) -> u64 {
        self.base_ns.wrapping_add(mtime.wrapping_mul(NS_PER_TICK))
    }

    /// The interrupt line to the PLIC.
    pub fn irq_level(&self) -> bool {
        self.irq_enabled && self.irq_pending
    }

    /// Fire the alarm if its time has come; called at every slice boundary.
    pub fn tick(&mut self, mtime: u64) {
        if self.alarm_armed && self.now_ns(mtime) >= self.alarm_ns {
            self.alarm_armed = false;
            self.irq_pending = true;
        }
    }

    /// The `mtime` at which the armed alarm fires.
    pub fn deadline(&self, mtime: u64) -> Option<u64> {
        if !self.alarm_armed {
            return None;
        }
        let remaining = self.alarm_ns.saturating_sub(self.now_ns(mtime));
        Some(mtime.saturating_add(remaining.div_ceil(NS_PER_TICK)))
    }

    /// A 32-bit load; `None` is a bus error.
    pub fn load(&mut self, offset: u64, size: u8, mtime: u64) -> Option<u64> {
        if size != 4 {
            return None;
        }
        let value = match offset {
            TIME_LOW => {
                let now = self.now_ns(mtime);
                self.time_high = (now >> 32) as u32;
                now as u32
            }
            TIME_HIGH => self.time_high,
            ALARM_LOW => self.alarm_ns as u32,
            ALARM_HIGH => (self.alarm_ns >> 32) as u32,
            IRQ_ENABLED => self.irq_enabled as u32,
            ALARM_STATUS => self.alarm_armed as u32,
            _ => 0,
        };
        Some(u64::from(value))
    }

    /// A 32-bit store; `None` is a bus error.
    pub fn store(&mut self, offset: u64, size: u8, val: u64, mtime: u64) -> Option<()> {
        if size != 4 {
            return None;
        }
        let val = val & 0xffff_ffff;
        match offset {
            TIME_LOW => {
                let wanted = u64::from(self.time_high) << 32 | val;
                self.base_ns = wanted.wrapping_sub(mtime.wrapping_mul(NS_PER_TICK));
            }
            TIME_HIGH => self.time_high = val as u32,
            ALARM_LOW => {
                self.alarm_ns = (self.alarm_ns & !0xffff_ffff) | val;
                self.alarm_armed = true;
                self.tick(mtime);
            }
            ALARM_HIGH => self.alarm_ns = (self.alarm_ns & 0xffff_ffff) | val << 32,
            IRQ_ENABLED => self.irq_enabled = val & 1 != 0,
            CLEAR_ALARM => self.alarm_armed = false,
            CLEAR_INTERRUPT => self.irq_pending = false,
            _ => {}
        }
        Some(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BOOT: u64 = 1_700_000_000_000_000_000;

    fn read_time(rtc: &mut Rtc, mtime: u64) -> u64 {
        let low = rtc.load(TIME_LOW, 4, mtime).unwrap();
        let high = rtc.load(TIME_HIGH, 4, mtime + 1_000_000).unwrap();
        high << 32 | low
    }

    #[test]
    fn time_is_boot_plus_guest_time_and_high_word_is_latched() {
        let mut rtc = Rtc::new(BOOT);
        assert_eq!(read_time(&mut rtc, 0), BOOT);
        // 10^7 ticks of mtime are one second.
        assert_eq!(read_time(&mut rtc, 10_000_000), BOOT + 1_000_000_000);
    }

    #[test]
    fn guest_can_set_time() {
        let mut rtc = Rtc::new(BOOT);
        let wanted: u64 = 0x0000_0005_0000_0010;
        rtc.store(TIME_HIGH, 4, wanted >> 32, 500).unwrap();
        rtc.store(TIME_LOW, 4, wanted & 0xffff_ffff, 500).unwrap();
        assert_eq!(read_time(&mut rtc, 500), wanted);
        assert_eq!(read_time(&mut rtc, 510), wanted + 1000);
    }

    #[test]
    fn alarm_fires_at_its_deadline() {
        let mut rtc = Rtc::new(BOOT);
        let at = BOOT + 1_050;
        rtc.store(IRQ_ENABLED, 4, 1, 0).unwrap();
        rtc.store(ALARM_HIGH, 4, at >> 32, 0).unwrap();
        rtc.store(ALARM_LOW, 4, at & 0xffff_ffff, 0).unwrap();
        assert_eq!(rtc.load(ALARM_STATUS, 4, 0), Some(1));
        // 1050 ns is 10.5 ticks: due at tick 11.
        assert_eq!(rtc.deadline(0), Some(11));
        rtc.tick(10);
        assert!(!rtc.irq_level());
        rtc.tick(11);
        assert!(rtc.irq_level());
        assert_eq!(rtc.load(ALARM_STATUS, 4, 11), Some(0));
        assert_eq!(rtc.deadline(11), None);
        rtc.store(CLEAR_INTERRUPT, 4, 1, 11).unwrap();
        assert!(!rtc.irq_level());
    }

    #[test]
    fn past_alarm_fires_at_once_and_clear_alarm_disarms() {
        let mut rtc = Rtc::new(BOOT);
        rtc.store(ALARM_HIGH, 4, BOOT >> 32, 100).unwrap();
        rtc.store(ALARM_LOW, 4, BOOT & 0xffff_ffff, 100).unwrap();
        assert!(!rtc.irq_level(), "interrupt not enabled");
        rtc.store(IRQ_ENABLED, 4, 1, 100).unwrap();
        assert!(rtc.irq_level());
        rtc.store(CLEAR_INTERRUPT, 4, 1, 100).unwrap();
        rtc.store(ALARM_HIGH, 4, u64::from(u32::MAX), 100).unwrap();
        rtc.store(ALARM_LOW, 4, 0, 100).unwrap();
        assert!(rtc.deadline(100).is_some());
        rtc.store(CLEAR_ALARM, 4, 1, 100).unwrap();
        assert_eq!(rtc.deadline(100), None);
        assert_eq!(rtc.load(TIME_LOW, 8, 0), None);
    }
}
