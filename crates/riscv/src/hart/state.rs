//! The hart's state type: what a snapshot holds of a hart and what the
//! machine's state hash covers, apart from the live [`Hart`] and its
//! caches (the TLB, the fetch page, the walk and PMP caches, the
//! translator's code cache), which are rebuilt on demand and never saved.
//!
//! [`Hart::save`] copies the architectural state out; [`Hart::from_state`]
//! builds a hart from it and [`Hart::restore`] puts it into a running one,
//! dropping every cache, translations included. The encoding is the
//! snapshot format's business (`machine::snapshot`): it is versioned
//! there, and any change to this type needs a new format version.

use super::{Hart, FETCH_NONE};
use crate::csr::{Csrs, Priv};
use serde::{Deserialize, Serialize};

/// The architectural state of one hart: plain data, in the order the
/// snapshot format stores it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HartState {
    pub hartid: u64,
    pub pc: u64,
    /// Integer registers (x0 is stored, always 0).
    pub x: [u64; 32],
    /// Floating-point registers, NaN-boxed.
    pub f: [u64; 32],
    pub fflags: u8,
    pub frm: u8,
    pub privilege: Priv,
    pub csrs: Csrs,
    /// Instructions retired since reset (the hart's icount).
    pub retired: u64,
    /// LR reservation (physical address).
    pub reservation: Option<u64>,
    /// Parked in WFI.
    pub waiting: bool,
    /// Interrupt lines driven by the board (mip bit positions).
    pub irq_lines: u64,
}

impl Hart {
    /// The hart's architectural state (its caches are not part of it).
    pub fn save(&self) -> HartState {
        HartState {
            hartid: self.hartid,
            pc: self.pc,
            x: self.x,
            f: self.f,
            fflags: self.fflags,
            frm: self.frm,
            privilege: self.priv_mode,
            csrs: self.csrs.clone(),
            retired: self.retired,
            reservation: self.reservation,
            waiting: self.waiting,
            irq_lines: self.irq_lines,
        }
    }

    /// A hart in `state`, with empty caches, the fast loop on and the
    /// translator off (as [`Hart::new`]).
    pub fn from_state(state: &HartState) -> Hart {
        let mut hart = Hart::new(state.hartid);
        hart.restore(state);
        hart
    }

    /// Put `state` into this hart. Every cache is dropped: TLB, fetch
    /// page, walk and PMP caches, and the translator's code (its blocks
    /// are keyed by RAM page and code generation, which a restore may
    /// bring back to values they had for other code). The engine settings
    /// ([`Hart::set_fast_path`], [`Hart::set_jit`]) and the counters stay.
    pub fn restore(&mut self, state: &HartState) {
        self.hartid = state.hartid;
        self.pc = state.pc;
        self.x = state.x;
        self.x[0] = 0;
        self.f = state.f;
        self.fflags = state.fflags;
        self.frm = state.frm;
        self.priv_mode = state.privilege;
        self.csrs = state.csrs.clone();
        self.retired = state.retired;
        self.reservation = state.reservation;
        self.waiting = state.waiting;
        self.irq_lines = state.irq_lines;
        self.limit = 0;
        self.yielded = false;
        self.trap_streak = 0;
        self.last_trap_at = u64::MAX;
        #[cfg(target_arch = "x86_64")]
        if let Some(jit) = &mut self.jit {
            jit.invalidate();
        }
        self.drop_caches();
    }

    /// Empty the caches, as a restored hart's are. They are not state, but
    /// the TLB's contents are guest-visible (Linux clears PTE accessed
    /// bits without `sfence.vma`), so a machine that goes on after a save
    /// drops them too and continues exactly as its restored copy will.
    pub fn drop_caches(&mut self) {
        self.flush_tlb();
        self.fetch_va = FETCH_NONE;
        self.mode_changed();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bus::NoDevices;
    use crate::encode::{addi, bne, jal};
    use crate::hart::Exit;
    use crate::ram::Ram;

    const BASE: u64 = 0x8000_0000;

    fn counting_ram() -> Ram {
        let code = [addi(5, 5, 1), bne(5, 6, -4), jal(0, 0)];
        let mut ram = Ram::new(BASE, 1 << 20).unwrap();
        let bytes: Vec<u8> = code.iter().flat_map(|w| w.to_le_bytes()).collect();
        assert!(ram.write(BASE, &bytes));
        ram
    }

    #[test]
    fn save_restore_round_trips() {
        let mut ram = counting_ram();
        let mut hart = Hart::new(3);
        hart.set_pc(BASE);
        hart.set_reg(6, 1000);
        assert_eq!(hart.run(&mut ram, &mut NoDevices, 101), Exit::Budget);
        let state = hart.save();
        let restored = Hart::from_state(&state);
        assert_eq!(restored.save(), state);
        assert_eq!(restored, hart);
        // Through the bytes a snapshot holds, too.
        let bytes = postcard::to_stdvec(&state).unwrap();
        let decoded: HartState = postcard::from_bytes(&bytes).unwrap();
        assert_eq!(decoded, state);
    }

    #[test]
    fn a_restored_hart_runs_on_exactly() {
        for jit in [false, true] {
            let mut ram = counting_ram();
            let mut hart = Hart::new(0);
            hart.set_jit(jit);
            hart.set_pc(BASE);
            hart.set_reg(6, 1000);
            hart.run(&mut ram, &mut NoDevices, 301);
            let at = hart.save();
            hart.run(&mut ram, &mut NoDevices, 700);
            let end = hart.save();
            // Back in place (translations dropped), and into a new hart.
            hart.restore(&at);
            assert_eq!(hart.save(), at);
            hart.run(&mut ram, &mut NoDevices, 700);
            assert_eq!(hart.save(), end, "restored in place, jit {jit}");
            let mut fresh = Hart::from_state(&at);
            fresh.set_jit(jit);
            fresh.run(&mut ram, &mut NoDevices, 700);
            assert_eq!(fresh.save(), end, "restored anew, jit {jit}");
        }
    }
}
