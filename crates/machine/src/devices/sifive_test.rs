//! SiFive test device ("finisher"): the guest powers off, fails or resets
//! the machine by writing a 32-bit command to offset 0. Linux drives it via
//! `syscon-poweroff`/`syscon-reboot`, OpenSBI via its system-reset driver.

use serde::{Deserialize, Serialize};

const FINISHER_FAIL: u64 = 0x3333;
const FINISHER_PASS: u64 = 0x5555;
const FINISHER_RESET: u64 = 0x7777;

/// What the guest asked the machine to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Finish {
    /// Power off with this exit code (0 for a normal poweroff).
    Poweroff(u32),
    /// Restart from the boot images.
    Reset,
}

/// Decode a store of `size` bytes at `offset`: `Ok(None)` for writes that
/// ask nothing, `Err(())` for a bus error (widths other than 2 and 4, as on
/// QEMU).
#[allow(clippy::result_unit_err)]
pub fn store(offset: u64, size: u8, val: u64) -> Result<Option<Finish>, ()> {
    if !matches!(size, 2 | 4) {
        return Err(());
    }
    if offset != 0 {
        return Ok(None);
    }
    let code = ((val >> 16) & 0xffff) as u32;
    Ok(match val & 0xffff {
        FINISHER_PASS => Some(Finish::Poweroff(0)),
        // A failure always exits non-zero, even with code 0.
        FINISHER_FAIL => Some(Finish::Poweroff(code.max(1))),
        FINISHER_RESET => Some(Finish::Reset),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands() {
        assert_eq!(store(0, 4, 0x5555), Ok(Some(Finish::Poweroff(0))));
        assert_eq!(store(0, 4, 0x0003_3333), Ok(Some(Finish::Poweroff(3))));
        assert_eq!(store(0, 4, 0x3333), Ok(Some(Finish::Poweroff(1))));
        assert_eq!(store(0, 4, 0x7777), Ok(Some(Finish::Reset)));
        assert_eq!(store(0, 2, 0x5555), Ok(Some(Finish::Poweroff(0))));
        assert_eq!(store(0, 4, 0x1234), Ok(None));
        assert_eq!(store(8, 4, 0x5555), Ok(None));
        assert_eq!(store(0, 1, 0x55), Err(()));
        assert_eq!(store(0, 8, 0x5555), Err(()));
    }
}
