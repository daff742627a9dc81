//! Control and status registers: the architectural privileged state and the
//! rules for reading and writing it (WARL masks, access checks).

use serde::{Deserialize, Serialize};

/// Privilege mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Priv {
    User = 0,
    Supervisor = 1,
    Machine = 3,
}

impl Priv {
    pub(crate) fn from_bits(b: u64) -> Priv {
        match b & 3 {
            0 => Priv::User,
            1 => Priv::Supervisor,
            _ => Priv::Machine,
        }
    }
}

// mstatus fields.
pub const MSTATUS_SIE: u64 = 1 << 1;
pub const MSTATUS_MIE: u64 = 1 << 3;
pub const MSTATUS_SPIE: u64 = 1 << 5;
pub const MSTATUS_MPIE: u64 = 1 << 7;
pub const MSTATUS_SPP: u64 = 1 << 8;
pub const MSTATUS_MPP_SHIFT: u32 = 11;
pub const MSTATUS_MPP: u64 = 3 << MSTATUS_MPP_SHIFT;
pub const MSTATUS_FS: u64 = 3 << 13;
pub const MSTATUS_MPRV: u64 = 1 << 17;
pub const MSTATUS_SUM: u64 = 1 << 18;
pub const MSTATUS_MXR: u64 = 1 << 19;
pub const MSTATUS_TVM: u64 = 1 << 20;
pub const MSTATUS_TW: u64 = 1 << 21;
pub const MSTATUS_TSR: u64 = 1 << 22;
pub const MSTATUS_UXL: u64 = 2 << 32;
pub const MSTATUS_SXL: u64 = 2 << 34;
pub const MSTATUS_SD: u64 = 1 << 63;

const MSTATUS_WRITABLE: u64 = MSTATUS_SIE
    | MSTATUS_MIE
    | MSTATUS_SPIE
    | MSTATUS_MPIE
    | MSTATUS_SPP
    | MSTATUS_MPP
    | MSTATUS_FS
    | MSTATUS_MPRV
    | MSTATUS_SUM
    | MSTATUS_MXR
    | MSTATUS_TVM
    | MSTATUS_TW
    | MSTATUS_TSR;
pub const SSTATUS_MASK: u64 = MSTATUS_SIE
    | MSTATUS_SPIE
    | MSTATUS_SPP
    | MSTATUS_FS
    | MSTATUS_SUM
    | MSTATUS_MXR
    | MSTATUS_UXL
    | MSTATUS_SD;

// Interrupt bits in mip/mie, by cause number.
pub const IRQ_SSI: u64 = 1 << 1;
pub const IRQ_MSI: u64 = 1 << 3;
pub const IRQ_STI: u64 = 1 << 5;
pub const IRQ_MTI: u64 = 1 << 7;
pub const IRQ_SEI: u64 = 1 << 9;
pub const IRQ_MEI: u64 = 1 << 11;
pub const S_IRQS: u64 = IRQ_SSI | IRQ_STI | IRQ_SEI;
pub const ALL_IRQS: u64 = S_IRQS | IRQ_MSI | IRQ_MTI | IRQ_MEI;

/// Exceptions that may be delegated to S-mode (not ecall-from-M).
const MEDELEG_WRITABLE: u64 = 0xb3ff;
pub const MENVCFG_STCE: u64 = 1 << 63;
const MENVCFG_WRITABLE: u64 = MENVCFG_STCE | 1;

/// misa: RV64 with A, C, D, F, I, M, S, U.
pub const MISA: u64 = (2 << 62)
    | (1 << 0)
    | (1 << 2)
    | (1 << 3)
    | (1 << 5)
    | (1 << 8)
    | (1 << 12)
    | (1 << 18)
    | (1 << 20);

pub const SATP_MODE_BARE: u64 = 0;
pub const SATP_MODE_SV39: u64 = 8;
pub const SATP_MODE_SV48: u64 = 9;

pub const PMP_ENTRIES: usize = 16;

/// Privileged CSR state of one hart (the unprivileged fcsr lives with the
/// FP registers in the hart).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Csrs {
    pub mstatus: u64,
    pub medeleg: u64,
    pub mideleg: u64,
    pub mie: u64,
    /// Software-writable pending bits (SSIP, STIP, SEIP); lines are separate.
    pub mip_sw: u64,
    pub mtvec: u64,
    pub mscratch: u64,
    pub mepc: u64,
    pub mcause: u64,
    pub mtval: u64,
    pub mcounteren: u64,
    pub menvcfg: u64,
    pub stvec: u64,
    pub sscratch: u64,
    pub sepc: u64,
    pub scause: u64,
    pub stval: u64,
    pub scounteren: u64,
    pub senvcfg: u64,
    pub satp: u64,
    pub stimecmp: u64,
    /// mcycle/minstret = retired + offset.
    pub cycle_offset: u64,
    pub instret_offset: u64,
    pub pmpcfg: [u8; PMP_ENTRIES],
    pub pmpaddr: [u64; PMP_ENTRIES],
}

impl Csrs {
    pub fn reset() -> Self {
        Csrs {
            mstatus: MSTATUS_UXL | MSTATUS_SXL | (3 << MSTATUS_MPP_SHIFT),
            stimecmp: u64::MAX,
            ..Default::default()
        }
    }

    pub fn read_mstatus(&self) -> u64 {
        let fs_dirty = self.mstatus & MSTATUS_FS == MSTATUS_FS;
        (self.mstatus & !MSTATUS_SD) | if fs_dirty { MSTATUS_SD } else { 0 }
    }

    pub fn write_mstatus(&mut self, v: u64) {
        let mut new = (self.mstatus & !MSTATUS_WRITABLE) | (v & MSTATUS_WRITABLE);
        // MPP is WARL over {U, S, M}: keep the old value for the reserved 2.
        if (new & MSTATUS_MPP) >> MSTATUS_MPP_SHIFT == 2 {
            new = (new & !MSTATUS_MPP) | (self.mstatus & MSTATUS_MPP);
        }
        self.mstatus = new;
    }

    pub fn write_sstatus(&mut self, v: u64) {
        let mask = SSTATUS_MASK & MSTATUS_WRITABLE;
        self.mstatus = (self.mstatus & !mask) | (v & mask);
    }

    pub fn write_medeleg(&mut self, v: u64) {
        self.medeleg = v & MEDELEG_WRITABLE;
    }

    pub fn write_mideleg(&mut self, v: u64) {
        self.mideleg = v & S_IRQS;
    }

    pub fn write_mie(&mut self, v: u64) {
        self.mie = v & ALL_IRQS;
    }

    pub fn write_menvcfg(&mut self, v: u64) {
        self.menvcfg = v & MENVCFG_WRITABLE;
    }

    pub fn sstc_enabled(&self) -> bool {
        self.menvcfg & MENVCFG_STCE != 0
    }

    /// WARL satp: only Bare, Sv39 and Sv48 are accepted, no ASID bits.
    /// Returns whether the register changed.
    pub fn write_satp(&mut self, v: u64) -> bool {
        let mode = v >> 60;
        if !matches!(mode, SATP_MODE_BARE | SATP_MODE_SV39 | SATP_MODE_SV48) {
            return false;
        }
        let new = if mode == SATP_MODE_BARE {
            0
        } else {
            (mode << 60) | (v & ((1 << 44) - 1))
        };
        let changed = new != self.satp;
        self.satp = new;
        changed
    }

    /// WARL trap vector: direct or vectored mode, 4-byte aligned base.
    pub fn legal_tvec(v: u64) -> u64 {
        if v & 3 >= 2 {
            v & !3
        } else {
            v & !2
        }
    }

    /// Write pmpcfg register `reg` (0 or 2 on RV64); locked entries keep
    /// their value. Returns true when anything changed.
    pub fn write_pmpcfg(&mut self, reg: usize, v: u64) -> bool {
        let first = reg * 4;
        let mut changed = false;
        for i in 0..8 {
            let idx = first + i;
            if idx >= PMP_ENTRIES || self.pmpcfg[idx] & PMP_L != 0 {
                continue;
            }
            let mut cfg = (v >> (8 * i)) as u8 & !0x60;
            // R=0, W=1 is reserved: drop W.
            if cfg & (PMP_R | PMP_W) == PMP_W {
                cfg &= !PMP_W;
            }
            changed |= cfg != self.pmpcfg[idx];
            self.pmpcfg[idx] = cfg;
        }
        changed
    }

    pub fn read_pmpcfg(&self, reg: usize) -> u64 {
        (0..8).fold(0, |acc, i| {
            let idx = reg * 4 + i;
            let b = if idx < PMP_ENTRIES {
                self.pmpcfg[idx] as u64
            } else {
                0
            };
            acc | (b << (8 * i))
        })
    }

    pub fn write_pmpaddr(&mut self, idx: usize, v: u64) -> bool {
        let locked = self.pmpcfg[idx] & PMP_L != 0;
        let next_tor_locked = idx + 1 < PMP_ENTRIES
            && self.pmpcfg[idx + 1] & PMP_L != 0
            && pmp_mode(self.pmpcfg[idx + 1]) == PMP_TOR;
        if locked || next_tor_locked {
            return false;
        }
        let v = v & ((1 << 54) - 1);
        let changed = v != self.pmpaddr[idx];
        self.pmpaddr[idx] = v;
        changed
    }
}

pub const PMP_R: u8 = 1;
pub const PMP_W: u8 = 2;
pub const PMP_X: u8 = 4;
pub const PMP_L: u8 = 0x80;
pub const PMP_OFF: u8 = 0;
pub const PMP_TOR: u8 = 1;
pub const PMP_NA4: u8 = 2;
pub const PMP_NAPOT: u8 = 3;

pub fn pmp_mode(cfg: u8) -> u8 {
    (cfg >> 3) & 3
}

// CSR numbers.
pub const FFLAGS: u16 = 0x001;
pub const FRM: u16 = 0x002;
pub const FCSR: u16 = 0x003;
pub const CYCLE: u16 = 0xc00;
pub const TIME: u16 = 0xc01;
pub const INSTRET: u16 = 0xc02;
pub const SSTATUS: u16 = 0x100;
pub const SIE: u16 = 0x104;
pub const STVEC: u16 = 0x105;
pub const SCOUNTEREN: u16 = 0x106;
pub const SENVCFG: u16 = 0x10a;
pub const SSCRATCH: u16 = 0x140;
pub const SEPC: u16 = 0x141;
pub const SCAUSE: u16 = 0x142;
pub const STVAL: u16 = 0x143;
pub const SIP: u16 = 0x144;
pub const STIMECMP: u16 = 0x14d;
pub const SATP: u16 = 0x180;
pub const MSTATUS: u16 = 0x300;
pub const MISA_CSR: u16 = 0x301;
pub const MEDELEG: u16 = 0x302;
pub const MIDELEG: u16 = 0x303;
pub const MIE: u16 = 0x304;
pub const MTVEC: u16 = 0x305;
pub const MCOUNTEREN: u16 = 0x306;
pub const MENVCFG: u16 = 0x30a;
pub const MCOUNTINHIBIT: u16 = 0x320;
pub const MSCRATCH: u16 = 0x340;
pub const MEPC: u16 = 0x341;
pub const MCAUSE: u16 = 0x342;
pub const MTVAL: u16 = 0x343;
pub const MIP: u16 = 0x344;
pub const MCYCLE: u16 = 0xb00;
pub const MINSTRET: u16 = 0xb02;
pub const MVENDORID: u16 = 0xf11;
pub const MARCHID: u16 = 0xf12;
pub const MIMPID: u16 = 0xf13;
pub const MHARTID: u16 = 0xf14;
pub const MCONFIGPTR: u16 = 0xf15;
pub const TSELECT: u16 = 0x7a0;
pub const TDATA3: u16 = 0x7a3;
pub const TINFO: u16 = 0x7a4;
