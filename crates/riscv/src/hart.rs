//! The hart: architectural state, the run loop, and instruction execution.

use crate::bus::Bus;
pub use crate::csr::Priv;
use crate::csr::{self, Csrs};
use crate::decode::{self, DecodedPage, Insn, Op};
use crate::mmu::{self, tlb_index, tlb_tag, Access, Tlb, TlbEntry};
use crate::ram::{Ram, PAGE_SHIFT};

/// The register operations of I and M (the value rd gets from rs1, rs2,
/// the immediate and pc), as the arms of one `match` on the operation: each
/// evaluates `$done!(value)`; the caller's `$other` arms come after them.
/// The one definition of these operations, for both run loops (the general
/// one through [`alu`], the fast one with its own arms in the same match).
macro_rules! alu_match {
    ($i:expr, $rs1:expr, $rs2:expr, $pc:expr, $done:ident, { $($other:tt)* }) => {{
        let (i, rs1, rs2, pc): (&Insn, u64, u64, u64) = (&$i, $rs1, $rs2, $pc);
        let imm = i.imm as i64 as u64;
        match i.op {
            Op::Addi => $done!(rs1.wrapping_add(imm)),
            Op::Add => $done!(rs1.wrapping_add(rs2)),
            Op::Lui => $done!(imm),
            Op::Auipc => $done!(pc.wrapping_add(imm)),
            Op::Slti => $done!(((rs1 as i64) < (imm as i64)) as u64),
            Op::Sltiu => $done!((rs1 < imm) as u64),
            Op::Xori => $done!(rs1 ^ imm),
            Op::Ori => $done!(rs1 | imm),
            Op::Andi => $done!(rs1 & imm),
            Op::Slli => $done!(rs1 << (imm & 63)),
            Op::Srli => $done!(rs1 >> (imm & 63)),
            Op::Srai => $done!(((rs1 as i64) >> (imm & 63)) as u64),
            Op::Sub => $done!(rs1.wrapping_sub(rs2)),
            Op::Sll => $done!(rs1 << (rs2 & 63)),
            Op::Slt => $done!(((rs1 as i64) < (rs2 as i64)) as u64),
            Op::Sltu => $done!((rs1 < rs2) as u64),
            Op::Xor => $done!(rs1 ^ rs2),
            Op::Srl => $done!(rs1 >> (rs2 & 63)),
            Op::Sra => $done!(((rs1 as i64) >> (rs2 & 63)) as u64),
            Op::Or => $done!(rs1 | rs2),
            Op::And => $done!(rs1 & rs2),
            Op::Addiw => $done!((rs1 as i32).wrapping_add(i.imm) as i64 as u64),
            Op::Slliw => $done!(((rs1 as u32) << (imm & 31)) as i32 as i64 as u64),
            Op::Srliw => $done!(((rs1 as u32) >> (imm & 31)) as i32 as i64 as u64),
            Op::Sraiw => $done!(((rs1 as i32) >> (imm & 31)) as i64 as u64),
            Op::Addw => $done!((rs1 as i32).wrapping_add(rs2 as i32) as i64 as u64),
            Op::Subw => $done!((rs1 as i32).wrapping_sub(rs2 as i32) as i64 as u64),
            Op::Sllw => $done!(((rs1 as u32) << (rs2 & 31)) as i32 as i64 as u64),
            Op::Srlw => $done!(((rs1 as u32) >> (rs2 & 31)) as i32 as i64 as u64),
            Op::Sraw => $done!(((rs1 as i32) >> (rs2 & 31)) as i64 as u64),
            Op::Mul => $done!(rs1.wrapping_mul(rs2)),
            Op::Mulh => $done!((((rs1 as i64 as i128) * (rs2 as i64 as i128)) >> 64) as u64),
            Op::Mulhsu => $done!((((rs1 as i64 as i128) * (rs2 as u128 as i128)) >> 64) as u64),
            Op::Mulhu => $done!((((rs1 as u128) * (rs2 as u128)) >> 64) as u64),
            Op::Div => $done!($crate::hart::div_signed(rs1 as i64, rs2 as i64) as u64),
            Op::Divu => $done!(rs1.checked_div(rs2).unwrap_or(u64::MAX)),
            Op::Rem => $done!($crate::hart::rem_signed(rs1 as i64, rs2 as i64) as u64),
            Op::Remu => $done!({
                if rs2 == 0 {
                    rs1
                } else {
                    rs1 % rs2
                }
            }),
            Op::Mulw => $done!((rs1 as i32).wrapping_mul(rs2 as i32) as i64 as u64),
            Op::Divw => $done!($crate::hart::div_signed(rs1 as i32 as i64, rs2 as i32 as i64) as i32 as i64 as u64),
            Op::Divuw => $done!((rs1 as u32).checked_div(rs2 as u32).unwrap_or(u32::MAX) as i32 as i64 as u64),
            Op::Remw => $done!($crate::hart::rem_signed(rs1 as i32 as i64, rs2 as i32 as i64) as i32 as i64 as u64),
            Op::Remuw => $done!({
                let (a, b) = (rs1 as u32, rs2 as u32);
                (if b == 0 { a } else { a % b }) as i32 as i64 as u64
            }),
            $($other)*
        }
    }};
}

mod fast;
mod fp;
#[cfg(target_arch = "x86_64")]
mod jit;
mod state;
mod stats;
pub use state::HartState;
pub use stats::JitStats;

/// The interpreter's own counters (not state: they differ between
/// engines), reported with the translator's.
#[derive(Clone, Copy, Debug, Default)]
struct Counters {
    tlb_miss_fetch: u64,
    tlb_miss_load: u64,
    tlb_miss_store: u64,
    retired_general: u64,
    retired_fast: u64,
    code_epoch: u64,
    walks_cached: u64,
}

/// Interrupt lines driven by the board.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Irq {
    MachineSoft,
    MachineTimer,
    MachineExternal,
    SupervisorExternal,
}

impl Irq {
    fn bit(self) -> u64 {
        match self {
            Irq::MachineSoft => csr::IRQ_MSI,
            Irq::MachineTimer => csr::IRQ_MTI,
            Irq::MachineExternal => csr::IRQ_MEI,
            Irq::SupervisorExternal => csr::IRQ_SEI,
        }
    }
}

/// Why [`Hart::run`] returned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exit {
    /// Retired the whole budget.
    Budget,
    /// Stopped early after an MMIO access or a change to interrupt or timer
    /// state; the board should re-evaluate interrupt lines.
    Yield,
    /// Waiting in WFI for an interrupt.
    Wfi,
    /// Took many traps in a row without retiring an instruction: the guest
    /// has run wild (e.g. its trap vector itself faults).
    TrapStorm { pc: u64, cause: u64 },
}

/// A synchronous exception or interrupt about to be taken.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Trap {
    pub cause: u64,
    pub tval: u64,
}

const INTERRUPT: u64 = 1 << 63;
const CAUSE_ILLEGAL: u64 = 2;
const CAUSE_BREAKPOINT: u64 = 3;
const CAUSE_LOAD_MISALIGNED: u64 = 4;
const CAUSE_STORE_MISALIGNED: u64 = 6;
const CAUSE_ECALL_U: u64 = 8;
/// Consecutive traps without a retired instruction that count as runaway.
const TRAP_STORM: u32 = 64;
/// Interrupt causes in priority order.
const IRQ_PRIORITY: [u64; 6] = [11, 3, 7, 9, 1, 5];
/// `fetch_va` when there is no current fetch page (never page aligned).
const FETCH_NONE: u64 = 1;

/// Pointer to the decoded page being executed. It stays valid while the RAM
/// it came from keeps the same code epoch (see [`Hart::fetch_cached`]).
struct PagePtr(*const DecodedPage);

impl Default for PagePtr {
    fn default() -> Self {
        PagePtr(std::ptr::null())
    }
}

// SAFETY: the pointer is only dereferenced by the thread that runs the hart,
// inside `Hart::run`, which also holds the `&mut Ram` that owns the page.
unsafe impl Send for PagePtr {}
/// Placeholder tval of an illegal-instruction trap, replaced by the bits.
const TVAL_INSN_BITS: u64 = u64::MAX;

/// One RV64GC hart: the architectural state ([`HartState`] is its saved
/// form) and caches rebuilt on demand.
pub struct Hart {
    hartid: u64,
    pc: u64,
    x: [u64; 32],
    f: [u64; 32],
    fflags: u8,
    frm: u8,
    priv_mode: Priv,
    csrs: Csrs,
    /// Instructions retired since reset (the hart's icount).
    retired: u64,
    /// LR reservation (physical address).
    reservation: Option<u64>,
    /// Parked in WFI.
    waiting: bool,
    /// Interrupt lines driven by the board (mip bit positions).
    irq_lines: u64,

    tlb: Tlb,
    /// TLB tag context bits for loads/stores (MPRV-adjusted privilege, SUM, MXR).
    data_priv: u64,
    /// The current fetch page: its virtual address (FETCH_NONE if none), its
    /// RAM page index, its decoded instructions, and the RAM code epoch at
    /// which that pointer was taken.
    fetch_va: u64,
    fetch_page: usize,
    fetch_ptr: PagePtr,
    fetch_epoch: u64,
    /// Stop the run loop once `retired` reaches this.
    limit: u64,
    yielded: bool,
    /// Runaway detection: traps taken in a row at the same `retired`.
    trap_streak: u32,
    last_trap_at: u64,
    /// Use only the general loop (see [`Hart::set_fast_path`]).
    general_only: bool,
    /// The translator and its code cache, when enabled (see
    /// [`Hart::set_jit`]).
    #[cfg(target_arch = "x86_64")]
    jit: Option<Box<jit::Jit>>,
    counters: Counters,
    /// PMP decisions over a range of memory (cleared with the TLB, which
    /// every change of the PMP CSRs flushes).
    pmp: mmu::PmpCache,
    /// Recent data walks (cleared with the TLB).
    walks: mmu::WalkCache,
}

impl PartialEq for Hart {
    fn eq(&self, o: &Self) -> bool {
        self.hartid == o.hartid
            && self.pc == o.pc
            && self.x == o.x
            && self.f == o.f
            && self.fflags == o.fflags
            && self.frm == o.frm
            && self.priv_mode == o.priv_mode
            && self.csrs == o.csrs
            && self.retired == o.retired
            && self.reservation == o.reservation
            && self.waiting == o.waiting
            && self.irq_lines == o.irq_lines
    }
}

impl std::fmt::Debug for Hart {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hart")
            .field("hartid", &self.hartid)
            .field("pc", &format_args!("{:#x}", self.pc))
            .field("priv", &self.priv_mode)
            .field("retired", &self.retired)
            .finish_non_exhaustive()
    }
}

impl Hart {
    /// A hart at reset: M-mode, pc at the reset ROM (0x1000).
    pub fn new(hartid: u64) -> Hart {
        let mut h = Hart {
            hartid,
            pc: 0x1000,
            x: [0; 32],
            f: [0; 32],
            fflags: 0,
            frm: 0,
            priv_mode: Priv::Machine,
            csrs: Csrs::reset(),
            retired: 0,
            reservation: None,
            waiting: false,
            irq_lines: 0,
            tlb: Tlb::default(),
            data_priv: 0,
            fetch_va: FETCH_NONE,
            fetch_page: 0,
            fetch_ptr: PagePtr::default(),
            fetch_epoch: 0,
            limit: 0,
            yielded: false,
            trap_streak: 0,
            last_trap_at: u64::MAX,
            general_only: false,
            #[cfg(target_arch = "x86_64")]
            jit: None,
            counters: Counters::default(),
            pmp: mmu::PmpCache::default(),
            walks: mmu::WalkCache::default(),
        };
        h.mode_changed();
        h
    }

    /// Whether [`Hart::run`] may use its fast loop (the default) or only
    /// the general one. The results are the same either way, to the
    /// instruction; the general loop alone is the reference that tests
    /// compare the fast one with (it also walks the page tables on every
    /// TLB miss, without the walk cache).
    pub fn set_fast_path(&mut self, on: bool) {
        self.general_only = !on;
    }

    /// Whether [`Hart::run`] runs translated code (x86-64 hosts) where it
    /// would otherwise use its fast loop. The results are the same either
    /// way, to the instruction. Returns whether the translator is now in
    /// use: false when off, on other hosts, or if the host refused
    /// executable memory. [`Hart::set_fast_path`]`(false)` overrides it.
    pub fn set_jit(&mut self, on: bool) -> bool {
        #[cfg(target_arch = "x86_64")]
        {
            if !on {
                self.jit = None;
            } else if self.jit.is_none() {
                self.jit = jit::Jit::new().map(Box::new);
            }
            self.jit.is_some()
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            let _ = on;
            false
        }
    }

    /// The translator's counters (zero when it is off) and the
    /// interpreter's (TLB misses, instructions its loops retired, RAM's
    /// code epoch when this hart last ran).
    pub fn jit_stats(&self) -> JitStats {
        #[allow(unused_mut)]
        let mut s = JitStats::default();
        #[cfg(target_arch = "x86_64")]
        if let Some(j) = &self.jit {
            s = j.stats();
        }
        let c = &self.counters;
        s.tlb_miss_fetch = c.tlb_miss_fetch;
        s.tlb_miss_load = c.tlb_miss_load;
        s.tlb_miss_store = c.tlb_miss_store;
        s.retired_general = c.retired_general;
        s.retired_fast = c.retired_fast;
        s.code_epoch = c.code_epoch;
        s.walks_cached = c.walks_cached;
        s
    }

    pub fn hartid(&self) -> u64 {
        self.hartid
    }
    pub fn pc(&self) -> u64 {
        self.pc
    }
    pub fn set_pc(&mut self, pc: u64) {
        self.pc = pc;
    }
    pub fn reg(&self, i: usize) -> u64 {
        self.x[i & 31]
    }
    pub fn set_reg(&mut self, i: usize, v: u64) {
        if i & 31 != 0 {
            self.x[i & 31] = v;
        }
    }
    pub fn fpr(&self, i: usize) -> u64 {
        self.f[i & 31]
    }
    pub fn privilege(&self) -> Priv {
        self.priv_mode
    }
    pub fn csrs(&self) -> &Csrs {
        &self.csrs
    }
    pub fn instret(&self) -> u64 {
        self.retired
    }
    pub fn is_waiting(&self) -> bool {
        self.waiting
    }
    pub fn clear_reservation(&mut self) {
        self.reservation = None;
    }

    pub fn set_irq(&mut self, irq: Irq, level: bool) {
        if level {
            self.irq_lines |= irq.bit();
        } else {
            self.irq_lines &= !irq.bit();
        }
    }

    /// Sstc: the `mtime` at which this hart's supervisor timer fires.
    pub fn stimecmp_deadline(&self) -> Option<u64> {
        (self.csrs.sstc_enabled() && self.csrs.stimecmp != u64::MAX).then_some(self.csrs.stimecmp)
    }

    /// Retire up to `budget` instructions.
    pub fn run<B: Bus>(&mut self, ram: &mut Ram, bus: &mut B, budget: u64) -> Exit {
        self.yielded = false;
        // The fetch pointer belongs to whichever RAM we ran with last time.
        self.fetch_va = FETCH_NONE;
        if let Some(cause) = self.pending_interrupt(bus) {
            self.waiting = false;
            let pc = self.pc;
            self.take_trap(
                Trap {
                    cause: cause | INTERRUPT,
                    tval: 0,
                },
                pc,
            );
        } else if self.waiting {
            if self.mip(bus) & self.csrs.mie != 0 {
                self.waiting = false;
            } else {
                return Exit::Wfi;
            }
        }
        self.limit = self.retired.saturating_add(budget);
        // pc lives in a register here; self.pc is written back on exit and
        // reloaded after traps (which set it).
        let mut pc = self.pc;
        while self.retired < self.limit {
            if pc & !0xfff == self.fetch_va
                && ram.code_epoch() == self.fetch_epoch
                && !self.general_only
            {
                // As many instructions as possible on the current fetch
                // page (translated, or by the fast loop), then (if any
                // budget is left) the one it stopped before, the general
                // way.
                #[cfg(target_arch = "x86_64")]
                if self.jit.is_some() {
                    match self.run_jit(ram, bus, pc) {
                        jit::JitStop::Pc(next) => pc = next,
                        jit::JitStop::Trap(t, at) => {
                            if let Some(exit) = self.trap_in_loop(ram, bus, t, at) {
                                return exit;
                            }
                            pc = self.pc;
                            continue;
                        }
                    }
                } else {
                    pc = self.run_fast(ram, pc);
                }
                #[cfg(not(target_arch = "x86_64"))]
                {
                    pc = self.run_fast(ram, pc);
                }
                if self.retired >= self.limit {
                    break;
                }
            }
            let mut insn = self.fetch_cached(ram, pc);
            if insn.op == Op::Undecoded {
                insn = match self.fetch_slow(ram, bus, pc) {
                    Ok(insn) => insn,
                    Err(t) => {
                        if let Some(exit) = self.trap_in_loop(ram, bus, t, pc) {
                            return exit;
                        }
                        pc = self.pc;
                        continue;
                    }
                };
            }
            match self.execute(insn, pc, ram, bus) {
                Ok(next) => {
                    pc = next;
                    self.retired += 1;
                    self.counters.retired_general += 1;
                }
                Err(t) => {
                    if let Some(exit) = self.trap_in_loop(ram, bus, t, pc) {
                        return exit;
                    }
                    pc = self.pc;
                }
            }
        }
        self.pc = pc;
        self.counters.code_epoch = ram.code_epoch();
        if self.waiting {
            Exit::Wfi
        } else if self.yielded {
            Exit::Yield
        } else {
            Exit::Budget
        }
    }

    #[inline(never)]
    fn trap_in_loop<B: Bus>(
        &mut self,
        ram: &mut Ram,
        bus: &mut B,
        mut t: Trap,
        pc: u64,
    ) -> Option<Exit> {
        if t.cause == CAUSE_ILLEGAL && t.tval == TVAL_INSN_BITS {
            t.tval = self.instruction_bits(ram, bus, pc);
        }
        self.take_trap(t, pc);
        // Count traps taken with no instruction retired in between.
        if self.retired == self.last_trap_at {
            self.trap_streak += 1;
        } else {
            self.trap_streak = 1;
            self.last_trap_at = self.retired;
        }
        (self.trap_streak >= TRAP_STORM).then_some(Exit::TrapStorm { pc, cause: t.cause })
    }

    /// End the slice after the current instruction.
    fn request_yield(&mut self) {
        self.yielded = true;
        self.limit = self.retired + 1;
    }

    // ----- interrupts and traps -------------------------------------------

    fn mip<B: Bus>(&self, bus: &mut B) -> u64 {
        let mut v = self.csrs.mip_sw | self.irq_lines;
        if self.csrs.sstc_enabled() {
            v &= !csr::IRQ_STI;
            if bus.mtime(self.retired) >= self.csrs.stimecmp {
                v |= csr::IRQ_STI;
            }
        }
        v
    }

    /// The highest-priority interrupt that is pending, enabled and not
    /// masked at the current privilege.
    fn pending_interrupt<B: Bus>(&self, bus: &mut B) -> Option<u64> {
        if self.csrs.mie == 0 {
            return None;
        }
        let pending = self.mip(bus) & self.csrs.mie;
        if pending == 0 {
            return None;
        }
        let mstatus = self.csrs.mstatus;
        let m_on = self.priv_mode < Priv::Machine || mstatus & csr::MSTATUS_MIE != 0;
        let s_on = self.priv_mode < Priv::Supervisor
            || (self.priv_mode == Priv::Supervisor && mstatus & csr::MSTATUS_SIE != 0);
        let mut take = 0;
        if m_on {
            take |= pending & !self.csrs.mideleg;
        }
        if s_on {
            take |= pending & self.csrs.mideleg;
        }
        if take == 0 {
            return None;
        }
        // Machine-level interrupts outrank supervisor-level ones.
        let m_level = take & !self.csrs.mideleg;
        let set = if m_level != 0 { m_level } else { take };
        IRQ_PRIORITY.iter().copied().find(|c| set & (1 << c) != 0)
    }

    fn take_trap(&mut self, t: Trap, epc: u64) {
        let interrupt = t.cause & INTERRUPT != 0;
        let code = t.cause & 63;
        let deleg_mask = if interrupt {
            self.csrs.mideleg
        } else {
            self.csrs.medeleg
        };
        let to_s = self.priv_mode != Priv::Machine && (deleg_mask >> code) & 1 != 0;
        let ms = self.csrs.mstatus;
        let tvec = if to_s {
            self.csrs.scause = t.cause;
            self.csrs.sepc = epc;
            self.csrs.stval = t.tval;
            let mut s = ms & !(csr::MSTATUS_SPP | csr::MSTATUS_SPIE | csr::MSTATUS_SIE);
            if self.priv_mode == Priv::Supervisor {
                s |= csr::MSTATUS_SPP;
            }
            if ms & csr::MSTATUS_SIE != 0 {
                s |= csr::MSTATUS_SPIE;
            }
            self.csrs.mstatus = s;
            self.priv_mode = Priv::Supervisor;
            self.csrs.stvec
        } else {
            self.csrs.mcause = t.cause;
            self.csrs.mepc = epc;
            self.csrs.mtval = t.tval;
            let mut s = ms & !(csr::MSTATUS_MPP | csr::MSTATUS_MPIE | csr::MSTATUS_MIE);
            s |= (self.priv_mode as u64) << csr::MSTATUS_MPP_SHIFT;
            if ms & csr::MSTATUS_MIE != 0 {
                s |= csr::MSTATUS_MPIE;
            }
            self.csrs.mstatus = s;
            self.priv_mode = Priv::Machine;
            self.csrs.mtvec
        };
        let base = tvec & !3;
        self.pc = if interrupt && tvec & 1 == 1 {
            base + 4 * code
        } else {
            base
        };
        self.mode_changed();
    }

    fn mret(&mut self) {
        let ms = self.csrs.mstatus;
        let to = Priv::from_bits(ms >> csr::MSTATUS_MPP_SHIFT);
        let mut s = ms & !(csr::MSTATUS_MPP | csr::MSTATUS_MIE);
        s |= csr::MSTATUS_MPIE;
        if ms & csr::MSTATUS_MPIE != 0 {
            s |= csr::MSTATUS_MIE;
        }
        if to != Priv::Machine {
            s &= !csr::MSTATUS_MPRV;
        }
        self.csrs.mstatus = s;
        self.priv_mode = to;
        self.pc = self.csrs.mepc;
        self.mode_changed();
        self.request_yield();
    }

    fn sret(&mut self) {
        let ms = self.csrs.mstatus;
        let to = if ms & csr::MSTATUS_SPP != 0 {
            Priv::Supervisor
        } else {
            Priv::User
        };
        let mut s = ms & !(csr::MSTATUS_SPP | csr::MSTATUS_SIE | csr::MSTATUS_MPRV);
        s |= csr::MSTATUS_SPIE;
        if ms & csr::MSTATUS_SPIE != 0 {
            s |= csr::MSTATUS_SIE;
        }
        self.csrs.mstatus = s;
        self.priv_mode = to;
        self.pc = self.csrs.sepc;
        self.mode_changed();
        self.request_yield();
    }

    /// Privilege or mstatus changed: recompute the effective data privilege.
    fn mode_changed(&mut self) {
        self.fetch_va = FETCH_NONE;
        let ms = self.csrs.mstatus;
        let eff = if self.priv_mode == Priv::Machine && ms & csr::MSTATUS_MPRV != 0 {
            Priv::from_bits(ms >> csr::MSTATUS_MPP_SHIFT)
        } else {
            self.priv_mode
        };
        let sum = if ms & csr::MSTATUS_SUM != 0 {
            mmu::TAG_SUM
        } else {
            0
        };
        let mxr = if ms & csr::MSTATUS_MXR != 0 {
            mmu::TAG_MXR
        } else {
            0
        };
        self.data_priv = eff as u64 | sum | mxr;
    }

    fn flush_tlb(&mut self) {
        self.tlb.flush();
        self.pmp.clear();
        self.walks.clear();
        self.fetch_va = FETCH_NONE;
    }

    fn data_priv_mode(&self) -> Priv {
        Priv::from_bits(self.data_priv)
    }

    // ----- memory ------------------------------------------------------------

    /// The decoded instruction at pc if its page is the current fetch page
    /// (the hot path); `Op::Undecoded` otherwise, or if not decoded yet.
    #[inline(always)]
    fn fetch_cached(&self, ram: &Ram, pc: u64) -> Insn {
        if pc & !0xfff != self.fetch_va || ram.code_epoch() != self.fetch_epoch {
            return Insn::UNDECODED;
        }
        // SAFETY: `fetch_ptr` was taken from `ram.decoded[fetch_page]` (a
        // live Box) when `fetch_epoch` was current, during this `run` call
        // with this same `ram` (run resets `fetch_va` on entry). Ram drops a
        // decoded page only while bumping its code epoch, so an unchanged
        // epoch means the Box is still alive; nothing holds a reference into
        // it while we read.
        unsafe { (*self.fetch_ptr.0)[((pc & 0xfff) >> 1) as usize] }
    }

    /// Fetch through translation, decoding and caching as needed.
    #[inline(never)]
    fn fetch_slow<B: Bus>(&mut self, ram: &mut Ram, bus: &mut B, pc: u64) -> Result<Insn, Trap> {
        let Some(page_index) = self.fetch_page_index(ram, pc)? else {
            self.fetch_va = FETCH_NONE;
            return self.fetch_uncached(ram, bus, pc);
        };
        self.fetch_epoch = ram.code_epoch();
        let Some(page) = ram.decoded_page(page_index) else {
            // Not RAM after all (fetch_page_index checked it is).
            self.fetch_va = FETCH_NONE;
            return self.fetch_uncached(ram, bus, pc);
        };
        self.fetch_ptr = PagePtr(&*page);
        self.fetch_page = page_index;
        self.fetch_va = pc & !0xfff;
        let slot = ((pc & 0xfff) >> 1) as usize;
        let insn = page[slot];
        if insn.op != Op::Undecoded {
            return Ok(insn);
        }
        self.decode_into_cache(ram, bus, pc, slot)
    }

    /// RAM page index of pc's page, or None when it is not plain RAM (or has
    /// mixed PMP permissions) and must be fetched uncached.
    fn fetch_page_index(&mut self, ram: &mut Ram, pc: u64) -> Result<Option<usize>, Trap> {
        let tag = tlb_tag(pc, self.priv_mode as u64);
        let e = self.tlb.fetch[tlb_index(pc)];
        let ram_off = if e.tag == tag {
            (pc & !0xfff).wrapping_add(e.addend)
        } else {
            self.counters.tlb_miss_fetch += 1;
            let t = mmu::translate(
                &self.csrs,
                &mut self.pmp,
                ram,
                pc,
                Access::Fetch,
                self.priv_mode,
                &mut mmu::WalkTrace::default(),
            )
            .map_err(|cause| Trap { cause, tval: pc })?;
            let pa_page = t.pa & !0xfff;
            if !t.cacheable || !ram.contains(pa_page, 0x1000) {
                return Ok(None);
            }
            self.fill_tlb(Access::Fetch, pc, pa_page, ram.base());
            pa_page - ram.base()
        };
        Ok(Some((ram_off >> PAGE_SHIFT) as usize))
    }

    fn decode_into_cache<B: Bus>(
        &mut self,
        ram: &mut Ram,
        bus: &mut B,
        pc: u64,
        slot: usize,
    ) -> Result<Insn, Trap> {
        let off = (self.fetch_page << PAGE_SHIFT) + (pc & 0xfff) as usize;
        let bytes = ram.bytes();
        let lo = u16::from_le_bytes([bytes[off], bytes[off + 1]]) as u32;
        if decode::insn_len(lo) == 4 && slot == 2047 {
            // Straddles a page boundary: never cached.
            let hi = self.fetch_half(ram, bus, pc.wrapping_add(2))?;
            return Ok(decode::decode(lo | (hi << 16)));
        }
        let raw = if decode::insn_len(lo) == 4 {
            u32::from_le_bytes([bytes[off], bytes[off + 1], bytes[off + 2], bytes[off + 3]])
        } else {
            lo
        };
        let insn = decode::decode(raw);
        if let Some(page) = ram.decoded_page(self.fetch_page) {
            page[slot] = insn;
        }
        Ok(insn)
    }

    /// The raw bits of the instruction at pc (for mtval), 0 if unreadable.
    fn instruction_bits<B: Bus>(&mut self, ram: &mut Ram, bus: &mut B, pc: u64) -> u64 {
        let Ok(lo) = self.fetch_half(ram, bus, pc) else {
            return 0;
        };
        if decode::insn_len(lo) == 2 {
            return lo as u64;
        }
        let hi = self.fetch_half(ram, bus, pc.wrapping_add(2)).unwrap_or(0);
        (lo | (hi << 16)) as u64
    }

    fn fetch_uncached<B: Bus>(
        &mut self,
        ram: &mut Ram,
        bus: &mut B,
        pc: u64,
    ) -> Result<Insn, Trap> {
        let lo = self.fetch_half(ram, bus, pc)?;
        if decode::insn_len(lo) == 2 {
            return Ok(decode::decode(lo));
        }
        let hi = self.fetch_half(ram, bus, pc.wrapping_add(2))?;
        Ok(decode::decode(lo | (hi << 16)))
    }

    /// One 16-bit instruction parcel through full translation.
    fn fetch_half<B: Bus>(&mut self, ram: &mut Ram, bus: &mut B, va: u64) -> Result<u32, Trap> {
        let fault = |cause| Trap { cause, tval: va };
        let t = mmu::translate(
            &self.csrs,
            &mut self.pmp,
            ram,
            va,
            Access::Fetch,
            self.priv_mode,
            &mut mmu::WalkTrace::default(),
        )
        .map_err(fault)?;
        if let Some(s) = ram.slice(t.pa, 2) {
            return Ok(u16::from_le_bytes([s[0], s[1]]) as u32);
        }
        match bus.load(t.pa, 2, self.retired) {
            Ok(v) => Ok(v as u32 & 0xffff),
            Err(_) => Err(fault(Access::Fetch.access_fault())),
        }
    }

    fn fill_tlb(&mut self, access: Access, va: u64, pa_page: u64, ram_base: u64) {
        let priv_bits = if access == Access::Fetch {
            self.priv_mode as u64
        } else {
            self.data_priv
        };
        let entry = TlbEntry {
            tag: tlb_tag(va, priv_bits),
            addend: (pa_page - ram_base).wrapping_sub(va & !0xfff),
        };
        self.tlb.table(access)[tlb_index(va)] = entry;
    }

    /// Load `N` bytes (zero-extended). Misaligned accesses within RAM are
    /// handled in hardware.
    #[inline(always)]
    fn load<const N: usize, B: Bus>(
        &mut self,
        ram: &mut Ram,
        bus: &mut B,
        va: u64,
    ) -> Result<u64, Trap> {
        match self.load_hit::<N>(ram, va) {
            Some(v) => Ok(v),
            None => self.load_slow(ram, bus, va, N),
        }
    }

    /// A load that hits the TLB within one RAM page (the fast path of
    /// [`Hart::load`]); `None` when it must take the slow path.
    #[inline(always)]
    fn load_hit<const N: usize>(&self, ram: &Ram, va: u64) -> Option<u64> {
        let e = self.tlb.load[tlb_index(va)];
        if e.tag == tlb_tag(va, self.data_priv) && (va & 0xfff) as usize <= 0x1000 - N {
            let off = va.wrapping_add(e.addend) as usize;
            let mut buf = [0u8; 8];
            buf[..N].copy_from_slice(&ram.bytes()[off..off + N]);
            return Some(u64::from_le_bytes(buf));
        }
        None
    }

    #[inline(always)]
    fn store<const N: usize, B: Bus>(
        &mut self,
        ram: &mut Ram,
        bus: &mut B,
        va: u64,
        val: u64,
    ) -> Result<(), Trap> {
        if self.store_hit::<N>(ram, va, val) {
            return Ok(());
        }
        self.store_slow(ram, bus, va, N, val)
    }

    /// A store that hits the TLB within one RAM page (the fast path of
    /// [`Hart::store`]); false, with nothing stored, when it must take the
    /// slow path.
    #[inline(always)]
    fn store_hit<const N: usize>(&self, ram: &mut Ram, va: u64, val: u64) -> bool {
        let e = self.tlb.store[tlb_index(va)];
        if e.tag == tlb_tag(va, self.data_priv) && (va & 0xfff) as usize <= 0x1000 - N {
            let off = va.wrapping_add(e.addend) as usize;
            ram.bytes_mut()[off..off + N].copy_from_slice(&val.to_le_bytes()[..N]);
            ram.touch_page(off >> PAGE_SHIFT);
            return true;
        }
        false
    }

    /// Translate a data access, filling the TLB for cacheable RAM pages.
    fn translate_data(&mut self, ram: &mut Ram, va: u64, access: Access) -> Result<u64, Trap> {
        match access {
            Access::Load => self.counters.tlb_miss_load += 1,
            _ => self.counters.tlb_miss_store += 1,
        }
        let tag = tlb_tag(va, self.data_priv);
        let satp = self.csrs.satp;
        // The general loop alone is the reference: it always walks.
        if let Some(pa_page) = (!self.general_only)
            .then(|| self.walks.lookup(access, tag, satp, ram))
            .flatten()
        {
            // What the walk would give, with nothing else to do.
            self.counters.walks_cached += 1;
            self.fill_tlb(access, va, pa_page, ram.base());
            return Ok(pa_page | (va & 0xfff));
        }
        let eff = self.data_priv_mode();
        let mut trace = mmu::WalkTrace::default();
        let t = mmu::translate(&self.csrs, &mut self.pmp, ram, va, access, eff, &mut trace)
            .map_err(|cause| Trap { cause, tval: va })?;
        let pa_page = t.pa & !0xfff;
        if t.cacheable && ram.contains(pa_page, 0x1000) {
            self.fill_tlb(access, va, pa_page, ram.base());
            if !self.general_only {
                self.walks.insert(access, tag, satp, pa_page, &trace);
            }
        }
        Ok(t.pa)
    }

    /// A TLB miss of an `n`-byte data access inside one page that the
    /// walk cache can serve: count it and fill the TLB exactly as
    /// [`Hart::translate_data`] would (true), for the caller to retry the
    /// access through the TLB, where it now hits. False, with nothing
    /// done, otherwise.
    #[cfg(target_arch = "x86_64")]
    pub(super) fn refill_cached(&mut self, ram: &Ram, va: u64, n: usize, store: bool) -> bool {
        if (va & 0xfff) as usize + n > 0x1000 || self.general_only {
            return false;
        }
        let access = if store { Access::Store } else { Access::Load };
        let tag = tlb_tag(va, self.data_priv);
        let Some(pa_page) = self.walks.lookup(access, tag, self.csrs.satp, ram) else {
            return false;
        };
        if store {
            self.counters.tlb_miss_store += 1;
        } else {
            self.counters.tlb_miss_load += 1;
        }
        self.counters.walks_cached += 1;
        self.fill_tlb(access, va, pa_page, ram.base());
        true
    }

    #[inline(never)]
    fn load_slow<B: Bus>(
        &mut self,
        ram: &mut Ram,
        bus: &mut B,
        va: u64,
        n: usize,
    ) -> Result<u64, Trap> {
        if (va & 0xfff) as usize + n > 0x1000 {
            // Crosses a page: byte by byte, each translated.
            let mut v = 0u64;
            for i in 0..n as u64 {
                v |= self.load::<1, B>(ram, bus, va.wrapping_add(i))? << (8 * i);
            }
            return Ok(v);
        }
        let pa = self.translate_data(ram, va, Access::Load)?;
        self.phys_load(ram, bus, pa, n, va, Access::Load)
    }

    #[inline(never)]
    fn store_slow<B: Bus>(
        &mut self,
        ram: &mut Ram,
        bus: &mut B,
        va: u64,
        n: usize,
        val: u64,
    ) -> Result<(), Trap> {
        if (va & 0xfff) as usize + n > 0x1000 {
            // Crosses a page: make sure both pages are writable first.
            let last = va.wrapping_add(n as u64 - 1);
            self.translate_data(ram, va, Access::Store)?;
            self.translate_data(ram, last, Access::Store)?;
            for i in 0..n as u64 {
                self.store::<1, B>(ram, bus, va.wrapping_add(i), val >> (8 * i))?;
            }
            return Ok(());
        }
        let pa = self.translate_data(ram, va, Access::Store)?;
        self.phys_store(ram, bus, pa, n, val, va)
    }

    fn phys_load<B: Bus>(
        &mut self,
        ram: &mut Ram,
        bus: &mut B,
        pa: u64,
        n: usize,
        va: u64,
        access: Access,
    ) -> Result<u64, Trap> {
        if let Some(s) = ram.slice(pa, n) {
            let mut buf = [0u8; 8];
            buf[..n].copy_from_slice(s);
            return Ok(u64::from_le_bytes(buf));
        }
        if pa & (n as u64 - 1) != 0 {
            return Err(Trap {
                cause: CAUSE_LOAD_MISALIGNED,
                tval: va,
            });
        }
        self.request_yield();
        bus.load(pa, n as u8, self.retired).map_err(|_| Trap {
            cause: access.access_fault(),
            tval: va,
        })
    }

    fn phys_store<B: Bus>(
        &mut self,
        ram: &mut Ram,
        bus: &mut B,
        pa: u64,
        n: usize,
        val: u64,
        va: u64,
    ) -> Result<(), Trap> {
        if ram.write(pa, &val.to_le_bytes()[..n]) {
            return Ok(());
        }
        if pa & (n as u64 - 1) != 0 {
            return Err(Trap {
                cause: CAUSE_STORE_MISALIGNED,
                tval: va,
            });
        }
        self.request_yield();
        let v = if n == 8 {
            val
        } else {
            val & ((1u64 << (8 * n)) - 1)
        };
        bus.store(pa, n as u8, v, self.retired).map_err(|_| Trap {
            cause: Access::Store.access_fault(),
            tval: va,
        })
    }

    // ----- execution ---------------------------------------------------------

    #[inline(always)]
    fn set_x(&mut self, rd: u8, v: u64) {
        self.x[(rd & 31) as usize] = v;
        self.x[0] = 0;
    }

    /// Illegal instruction; `tval` is filled in with the instruction bits
    /// when the trap is taken (they are not kept in the decoded form).
    fn illegal(_i: &Insn) -> Trap {
        Trap {
            cause: CAUSE_ILLEGAL,
            tval: TVAL_INSN_BITS,
        }
    }

    /// Execute one instruction at `pc`; returns the next pc.
    #[inline(always)]
    fn execute<B: Bus>(
        &mut self,
        i: Insn,
        pc: u64,
        ram: &mut Ram,
        bus: &mut B,
    ) -> Result<u64, Trap> {
        let rs1 = self.x[(i.rs1 & 31) as usize];
        let rs2 = self.x[(i.rs2 & 31) as usize];
        let imm = i.imm as i64 as u64;
        let next = pc.wrapping_add(i.size());
        let v = match i.op {
            Op::Jal => {
                self.set_x(i.rd(), next);
                return Ok(pc.wrapping_add(imm));
            }
            Op::Jalr => {
                self.set_x(i.rd(), next);
                return Ok(rs1.wrapping_add(imm) & !1);
            }
            Op::Beq | Op::Bne | Op::Blt | Op::Bge | Op::Bltu | Op::Bgeu => {
                return Ok(if branch_taken(i.op, rs1, rs2) {
                    pc.wrapping_add(imm)
                } else {
                    next
                });
            }
            Op::Lb => self.load::<1, B>(ram, bus, rs1.wrapping_add(imm))? as i8 as u64,
            Op::Lh => self.load::<2, B>(ram, bus, rs1.wrapping_add(imm))? as i16 as u64,
            Op::Lw => self.load::<4, B>(ram, bus, rs1.wrapping_add(imm))? as i32 as u64,
            Op::Ld => self.load::<8, B>(ram, bus, rs1.wrapping_add(imm))?,
            Op::Lbu => self.load::<1, B>(ram, bus, rs1.wrapping_add(imm))?,
            Op::Lhu => self.load::<2, B>(ram, bus, rs1.wrapping_add(imm))?,
            Op::Lwu => self.load::<4, B>(ram, bus, rs1.wrapping_add(imm))?,
            Op::Sb | Op::Sh | Op::Sw | Op::Sd => {
                let va = rs1.wrapping_add(imm);
                match i.op {
                    Op::Sb => self.store::<1, B>(ram, bus, va, rs2)?,
                    Op::Sh => self.store::<2, B>(ram, bus, va, rs2)?,
                    Op::Sw => self.store::<4, B>(ram, bus, va, rs2)?,
                    _ => self.store::<8, B>(ram, bus, va, rs2)?,
                }
                return Ok(next);
            }
            Op::Fence | Op::FenceI => {
                // The decoded-instruction cache is kept exactly coherent with
                // every write to RAM, so fence.i has nothing left to do.
                return Ok(next);
            }
            _ => match alu(&i, rs1, rs2, pc) {
                Some(v) => v,
                None => return self.execute_rare(i, pc, ram, bus),
            },
        };
        self.set_x(i.rd(), v);
        Ok(next)
    }

    /// System, atomic and floating-point instructions.
    #[inline(never)]
    fn execute_rare<B: Bus>(
        &mut self,
        i: Insn,
        pc: u64,
        ram: &mut Ram,
        bus: &mut B,
    ) -> Result<u64, Trap> {
        let next = pc.wrapping_add(i.size());
        match i.op {
            Op::Undecoded | Op::Illegal => return Err(Self::illegal(&i)),
            Op::Ecall => {
                return Err(Trap {
                    cause: CAUSE_ECALL_U + self.priv_mode as u64,
                    tval: 0,
                })
            }
            Op::Ebreak => {
                return Err(Trap {
                    cause: CAUSE_BREAKPOINT,
                    tval: pc,
                })
            }
            Op::Mret => {
                if self.priv_mode != Priv::Machine {
                    return Err(Self::illegal(&i));
                }
                self.mret();
                return Ok(self.pc);
            }
            Op::Sret => {
                let tsr = self.csrs.mstatus & csr::MSTATUS_TSR != 0;
                if self.priv_mode == Priv::User || (self.priv_mode == Priv::Supervisor && tsr) {
                    return Err(Self::illegal(&i));
                }
                self.sret();
                return Ok(self.pc);
            }
            Op::Wfi => {
                let tw = self.csrs.mstatus & csr::MSTATUS_TW != 0;
                if self.priv_mode == Priv::User || (self.priv_mode == Priv::Supervisor && tw) {
                    return Err(Self::illegal(&i));
                }
                if self.mip(bus) & self.csrs.mie == 0 {
                    self.waiting = true;
                }
                self.request_yield();
            }
            Op::SfenceVma => {
                let tvm = self.csrs.mstatus & csr::MSTATUS_TVM != 0;
                if self.priv_mode == Priv::User || (self.priv_mode == Priv::Supervisor && tvm) {
                    return Err(Self::illegal(&i));
                }
                self.flush_tlb();
            }
            Op::Csrrw | Op::Csrrs | Op::Csrrc | Op::Csrrwi | Op::Csrrsi | Op::Csrrci => {
                self.csr_instruction(&i, bus)?;
            }
            op if (op as u8) >= (Op::LrW as u8) && (op as u8) <= (Op::AmoMaxuD as u8) => {
                self.atomic(&i, ram, bus)?;
            }
            _ => {
                if self.csrs.mstatus & csr::MSTATUS_FS == 0 {
                    return Err(Self::illegal(&i));
                }
                self.execute_fp(&i, ram, bus)?;
            }
        }
        Ok(next)
    }

    // ----- atomics -------------------------------------------------------------

    fn atomic<B: Bus>(&mut self, i: &Insn, ram: &mut Ram, bus: &mut B) -> Result<(), Trap> {
        let va = self.x[i.rs1 as usize];
        let src = self.x[i.rs2 as usize];
        let word = (i.op as u8) <= (Op::AmoMaxuW as u8);
        let n: usize = if word { 4 } else { 8 };
        let is_lr = matches!(i.op, Op::LrW | Op::LrD);
        if va & (n as u64 - 1) != 0 {
            let cause = if is_lr {
                CAUSE_LOAD_MISALIGNED
            } else {
                CAUSE_STORE_MISALIGNED
            };
            return Err(Trap { cause, tval: va });
        }
        if is_lr {
            let pa = self.translate_data(ram, va, Access::Load)?;
            let v = self.phys_load(ram, bus, pa, n, va, Access::Load)?;
            self.reservation = Some(pa);
            self.set_x(i.rd(), sext_width(v, word));
            return Ok(());
        }
        let pa = self.translate_data(ram, va, Access::Store)?;
        if matches!(i.op, Op::ScW | Op::ScD) {
            let ok = self.reservation.take() == Some(pa);
            if ok {
                self.phys_store(ram, bus, pa, n, src, va)?;
            }
            self.set_x(i.rd(), (!ok) as u64);
            return Ok(());
        }
        let old = self.phys_load(ram, bus, pa, n, va, Access::Store)?;
        let (a, b) = (sext_width(old, word), sext_width(src, word));
        let new = match i.op {
            Op::AmoSwapW | Op::AmoSwapD => b,
            Op::AmoAddW | Op::AmoAddD => a.wrapping_add(b),
            Op::AmoXorW | Op::AmoXorD => a ^ b,
            Op::AmoAndW | Op::AmoAndD => a & b,
            Op::AmoOrW | Op::AmoOrD => a | b,
            Op::AmoMinW | Op::AmoMinD => (a as i64).min(b as i64) as u64,
            Op::AmoMaxW | Op::AmoMaxD => (a as i64).max(b as i64) as u64,
            Op::AmoMinuW => (a as u32).min(b as u32) as u64,
            Op::AmoMaxuW => (a as u32).max(b as u32) as u64,
            Op::AmoMinuD => a.min(b),
            _ => a.max(b),
        };
        self.phys_store(ram, bus, pa, n, new, va)?;
        self.set_x(i.rd(), a);
        Ok(())
    }

    // ----- CSRs ------------------------------------------------------------------

    fn csr_instruction<B: Bus>(&mut self, i: &Insn, bus: &mut B) -> Result<(), Trap> {
        let num = i.imm as u16;
        let (src, writes) = match i.op {
            Op::Csrrw => (self.x[i.rs1 as usize], true),
            Op::Csrrs | Op::Csrrc => (self.x[i.rs1 as usize], i.rs1 != 0),
            Op::Csrrwi => (i.rs1 as u64, true),
            _ => (i.rs1 as u64, i.rs1 != 0),
        };
        let min_priv = (num >> 8) & 3;
        if (self.priv_mode as u16) < min_priv || (writes && num >> 10 == 3) {
            return Err(Self::illegal(i));
        }
        let old = self.csr_read(num, bus).ok_or_else(|| Self::illegal(i))?;
        if writes {
            // A read-modify-write of mip sees only the software-writable
            // SEIP bit, not the external line ORed into reads.
            let base = if num == csr::MIP {
                (old & !csr::IRQ_SEI) | (self.csrs.mip_sw & csr::IRQ_SEI)
            } else {
                old
            };
            let new = match i.op {
                Op::Csrrw | Op::Csrrwi => src,
                Op::Csrrs | Op::Csrrsi => base | src,
                _ => base & !src,
            };
            self.csr_write(num, new).ok_or_else(|| Self::illegal(i))?;
        }
        self.set_x(i.rd(), old);
        Ok(())
    }

    /// Counter CSRs are visible below M only when mcounteren (and, for U,
    /// scounteren) allow it.
    fn counter_allowed(&self, num: u16) -> bool {
        let bit = 1u64 << (num & 31);
        match self.priv_mode {
            Priv::Machine => true,
            Priv::Supervisor => self.csrs.mcounteren & bit != 0,
            Priv::User => self.csrs.mcounteren & bit != 0 && self.csrs.scounteren & bit != 0,
        }
    }

    fn fp_on(&self) -> bool {
        self.csrs.mstatus & csr::MSTATUS_FS != 0
    }

    fn stimecmp_allowed(&self) -> bool {
        self.priv_mode == Priv::Machine
            || (self.csrs.sstc_enabled() && self.csrs.mcounteren & 2 != 0)
    }

    fn csr_read<B: Bus>(&self, num: u16, bus: &mut B) -> Option<u64> {
        let c = &self.csrs;
        Some(match num {
            csr::FFLAGS if self.fp_on() => self.fflags as u64,
            csr::FRM if self.fp_on() => self.frm as u64,
            csr::FCSR if self.fp_on() => ((self.frm as u64) << 5) | self.fflags as u64,
            0xc00..=0xc1f if !self.counter_allowed(num) => return None,
            csr::CYCLE => self.retired.wrapping_add(c.cycle_offset),
            csr::TIME => bus.mtime(self.retired),
            csr::INSTRET => self.retired.wrapping_add(c.instret_offset),
            0xc03..=0xc1f => 0,
            csr::SSTATUS => c.read_mstatus() & csr::SSTATUS_MASK,
            csr::SIE => c.mie & c.mideleg,
            csr::STVEC => c.stvec,
            csr::SCOUNTEREN => c.scounteren,
            csr::SENVCFG => c.senvcfg,
            csr::SSCRATCH => c.sscratch,
            csr::SEPC => c.sepc,
            csr::SCAUSE => c.scause,
            csr::STVAL => c.stval,
            csr::SIP => self.mip(bus) & c.mideleg,
            csr::STIMECMP if self.stimecmp_allowed() => c.stimecmp,
            csr::SATP if self.satp_allowed() => c.satp,
            csr::MSTATUS => c.read_mstatus(),
            csr::MISA_CSR => csr::MISA,
            csr::MEDELEG => c.medeleg,
            csr::MIDELEG => c.mideleg,
            csr::MIE => c.mie,
            csr::MTVEC => c.mtvec,
            csr::MCOUNTEREN => c.mcounteren,
            csr::MENVCFG => c.menvcfg,
            csr::MCOUNTINHIBIT => 0,
            0x323..=0x33f => 0, // mhpmevent3..31: hardwired zero
            csr::MSCRATCH => c.mscratch,
            csr::MEPC => c.mepc,
            csr::MCAUSE => c.mcause,
            csr::MTVAL => c.mtval,
            csr::MIP => self.mip(bus),
            0x3a0..=0x3af if num & 1 == 0 => c.read_pmpcfg((num - 0x3a0) as usize),
            0x3b0..=0x3ef => c.pmpaddr.get((num - 0x3b0) as usize).copied().unwrap_or(0),
            csr::MCYCLE => self.retired.wrapping_add(c.cycle_offset),
            csr::MINSTRET => self.retired.wrapping_add(c.instret_offset),
            0xb03..=0xb1f => 0, // mhpmcounter3..31: hardwired zero
            csr::MVENDORID | csr::MARCHID | csr::MIMPID | csr::MCONFIGPTR => 0,
            // Debug triggers: tselect exists, but no trigger does (tdata1
            // reads type 0, tinfo says only type 0).
            csr::TSELECT..=csr::TDATA3 => 0,
            csr::TINFO => 1,
            csr::MHARTID => self.hartid,
            _ => return None,
        })
    }

    fn satp_allowed(&self) -> bool {
        !(self.priv_mode == Priv::Supervisor && self.csrs.mstatus & csr::MSTATUS_TVM != 0)
    }

    /// Write a CSR (access already checked). None: no such writable CSR.
    fn csr_write(&mut self, num: u16, v: u64) -> Option<()> {
        let c = &mut self.csrs;
        match num {
            csr::FFLAGS => {
                self.fflags = (v & 0x1f) as u8;
                self.fp_dirty();
            }
            csr::FRM => {
                self.frm = (v & 7) as u8;
                self.fp_dirty();
            }
            csr::FCSR => {
                self.fflags = (v & 0x1f) as u8;
                self.frm = ((v >> 5) & 7) as u8;
                self.fp_dirty();
            }
            csr::SSTATUS => {
                c.write_sstatus(v);
                self.mstatus_changed();
            }
            csr::SIE => {
                c.mie = (c.mie & !c.mideleg) | (v & c.mideleg);
                self.request_yield();
            }
            csr::SIP => {
                let mask = csr::IRQ_SSI & c.mideleg;
                c.mip_sw = (c.mip_sw & !mask) | (v & mask);
                self.request_yield();
            }
            csr::STVEC => c.stvec = Csrs::legal_tvec(v),
            csr::SCOUNTEREN => c.scounteren = v & 0xffff_ffff,
            csr::SENVCFG => c.senvcfg = v & 1,
            csr::SSCRATCH => c.sscratch = v,
            csr::SEPC => c.sepc = v & !1,
            csr::SCAUSE => c.scause = v,
            csr::STVAL => c.stval = v,
            csr::STIMECMP => {
                c.stimecmp = v;
                self.request_yield();
            }
            csr::SATP => {
                c.write_satp(v);
                self.flush_tlb();
            }
            csr::MSTATUS => {
                c.write_mstatus(v);
                self.mstatus_changed();
            }
            csr::MISA_CSR => {}
            csr::MEDELEG => c.write_medeleg(v),
            csr::MIDELEG => {
                c.write_mideleg(v);
                self.request_yield();
            }
            csr::MIE => {
                c.write_mie(v);
                self.request_yield();
            }
            csr::MTVEC => c.mtvec = Csrs::legal_tvec(v),
            csr::MCOUNTEREN => c.mcounteren = v & 0xffff_ffff,
            csr::MENVCFG => {
                c.write_menvcfg(v);
                self.request_yield();
            }
            csr::MCOUNTINHIBIT | 0x323..=0x33f | 0xb03..=0xb1f | csr::TSELECT..=csr::TINFO => {}
            csr::MSCRATCH => c.mscratch = v,
            csr::MEPC => c.mepc = v & !1,
            csr::MCAUSE => c.mcause = v,
            csr::MTVAL => c.mtval = v,
            csr::MIP => {
                let mut mask = csr::IRQ_SSI | csr::IRQ_SEI;
                if !c.sstc_enabled() {
                    mask |= csr::IRQ_STI;
                }
                c.mip_sw = (c.mip_sw & !mask) | (v & mask);
                self.request_yield();
            }
            0x3a0..=0x3af if num & 1 == 0 => {
                if c.write_pmpcfg((num - 0x3a0) as usize, v) {
                    self.flush_tlb();
                }
            }
            0x3b0..=0x3ef => {
                let idx = (num - 0x3b0) as usize;
                if idx < csr::PMP_ENTRIES && c.write_pmpaddr(idx, v) {
                    self.flush_tlb();
                }
            }
            // The write lands after this instruction retires (+1).
            csr::MCYCLE => c.cycle_offset = v.wrapping_sub(self.retired + 1),
            csr::MINSTRET => c.instret_offset = v.wrapping_sub(self.retired + 1),
            _ => return None,
        }
        Some(())
    }

    fn mstatus_changed(&mut self) {
        self.mode_changed();
        self.request_yield();
    }

    fn fp_dirty(&mut self) {
        self.csrs.mstatus |= csr::MSTATUS_FS;
    }
}

/// Register-to-register and immediate operations (I and M): the value
/// written to rd, or `None` for any other instruction.
#[inline(always)]
pub(crate) fn alu(i: &Insn, rs1: u64, rs2: u64, pc: u64) -> Option<u64> {
    macro_rules! some {
        ($v:expr) => {
            Some($v)
        };
    }
    alu_match!(*i, rs1, rs2, pc, some, { _ => None })
}

#[inline(always)]
pub(crate) fn branch_taken(op: Op, rs1: u64, rs2: u64) -> bool {
    match op {
        Op::Beq => rs1 == rs2,
        Op::Bne => rs1 != rs2,
        Op::Blt => (rs1 as i64) < (rs2 as i64),
        Op::Bge => (rs1 as i64) >= (rs2 as i64),
        Op::Bltu => rs1 < rs2,
        _ => rs1 >= rs2,
    }
}

pub(crate) fn div_signed(a: i64, b: i64) -> i64 {
    if b == 0 {
        -1
    } else {
        a.wrapping_div(b)
    }
}

pub(crate) fn rem_signed(a: i64, b: i64) -> i64 {
    if b == 0 {
        a
    } else {
        a.wrapping_rem(b)
    }
}

fn sext_width(v: u64, word: bool) -> u64 {
    if word {
        v as i32 as i64 as u64
    } else {
        v
    }
}
