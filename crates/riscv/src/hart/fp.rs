//! F and D instructions: register-file plumbing (NaN-boxing, fflags, FS)
//! around the exact arithmetic in [`crate::fpu`].

use super::{Hart, Trap};
use crate::bus::Bus;
use crate::decode::{Insn, Op};
use crate::fpu::{self, Flags, Rm};
use crate::ram::Ram;

const BOX: u64 = 0xffff_ffff_0000_0000;

impl Hart {
    /// An f32 operand: properly NaN-boxed, or else the canonical NaN.
    fn fs(&self, r: u8) -> u32 {
        let v = self.f[r as usize];
        if v & BOX == BOX {
            v as u32
        } else {
            fpu::CANONICAL_NAN32
        }
    }

    fn fd(&self, r: u8) -> u64 {
        self.f[r as usize]
    }

    fn set_fs(&mut self, r: u8, v: u32, flags: Flags) {
        self.f[r as usize] = BOX | v as u64;
        self.fflags |= flags;
        self.fp_dirty();
    }

    fn set_fd(&mut self, r: u8, v: u64, flags: Flags) {
        self.f[r as usize] = v;
        self.fflags |= flags;
        self.fp_dirty();
    }

    /// An integer result of an FP instruction (compare, class, convert).
    fn set_xf(&mut self, rd: u8, v: u64, flags: Flags) {
        self.set_x(rd, v);
        if flags != 0 {
            self.fflags |= flags;
            self.fp_dirty();
        }
    }

    fn rounding(&self, i: &Insn) -> Result<Rm, Trap> {
        let bits = if i.rm() == 7 { self.frm } else { i.rm() };
        Rm::from_bits(bits as u32).ok_or_else(|| Self::illegal(i))
    }

    pub(super) fn execute_fp<B: Bus>(
        &mut self,
        i: &Insn,
        ram: &mut Ram,
        bus: &mut B,
    ) -> Result<(), Trap> {
        let (a, b, c) = (i.rs1, i.rs2, i.rs3());
        let (rd, xs1) = (i.rd(), self.x[i.rs1 as usize]);
        let addr = xs1.wrapping_add(i.imm as i64 as u64);
        let sx32 = |v: i32| v as i64 as u64;
        match i.op {
            Op::Flw => {
                let v = self.load::<4, B>(ram, bus, addr)?;
                self.set_fs(rd, v as u32, 0);
            }
            Op::Fld => {
                let v = self.load::<8, B>(ram, bus, addr)?;
                self.set_fd(rd, v, 0);
            }
            Op::Fsw => self.store::<4, B>(ram, bus, addr, self.f[b as usize])?,
            Op::Fsd => self.store::<8, B>(ram, bus, addr, self.f[b as usize])?,

            Op::FaddS | Op::FsubS | Op::FmulS | Op::FdivS => {
                let rm = self.rounding(i)?;
                let f = match i.op {
                    Op::FaddS => fpu::add32,
                    Op::FsubS => fpu::sub32,
                    Op::FmulS => fpu::mul32,
                    _ => fpu::div32,
                };
                let (v, fl) = f(self.fs(a), self.fs(b), rm);
                self.set_fs(rd, v, fl);
            }
            Op::FaddD | Op::FsubD | Op::FmulD | Op::FdivD => {
                let rm = self.rounding(i)?;
                let f = match i.op {
                    Op::FaddD => fpu::add64,
                    Op::FsubD => fpu::sub64,
                    Op::FmulD => fpu::mul64,
                    _ => fpu::div64,
                };
                let (v, fl) = f(self.fd(a), self.fd(b), rm);
                self.set_fd(rd, v, fl);
            }
            Op::FsqrtS => {
                let (v, fl) = fpu::sqrt32(self.fs(a), self.rounding(i)?);
                self.set_fs(rd, v, fl);
            }
            Op::FsqrtD => {
                let (v, fl) = fpu::sqrt64(self.fd(a), self.rounding(i)?);
                self.set_fd(rd, v, fl);
            }
            Op::FmaddS | Op::FmsubS | Op::FnmsubS | Op::FnmaddS => {
                let rm = self.rounding(i)?;
                const S: u32 = 1 << 31;
                let (na, nc) = fma_signs(i.op);
                let (v, fl) = fpu::fma32(
                    self.fs(a) ^ (na as u32 * S),
                    self.fs(b),
                    self.fs(c) ^ (nc as u32 * S),
                    rm,
                );
                self.set_fs(rd, v, fl);
            }
            Op::FmaddD | Op::FmsubD | Op::FnmsubD | Op::FnmaddD => {
                let rm = self.rounding(i)?;
                const S: u64 = 1 << 63;
                let (na, nc) = fma_signs(i.op);
                let (v, fl) = fpu::fma64(
                    self.fd(a) ^ (na as u64 * S),
                    self.fd(b),
                    self.fd(c) ^ (nc as u64 * S),
                    rm,
                );
                self.set_fd(rd, v, fl);
            }
            Op::FsgnjS | Op::FsgnjnS | Op::FsgnjxS => {
                let (x, y) = (self.fs(a), self.fs(b));
                let sign = match i.op {
                    Op::FsgnjS => y,
                    Op::FsgnjnS => !y,
                    _ => x ^ y,
                } & (1 << 31);
                self.set_fs(rd, (x & !(1 << 31)) | sign, 0);
            }
            Op::FsgnjD | Op::FsgnjnD | Op::FsgnjxD => {
                let (x, y) = (self.fd(a), self.fd(b));
                let sign = match i.op {
                    Op::FsgnjD => y,
                    Op::FsgnjnD => !y,
                    _ => x ^ y,
                } & (1 << 63);
                self.set_fd(rd, (x & !(1 << 63)) | sign, 0);
            }
            Op::FminS | Op::FmaxS => {
                let f = if i.op == Op::FminS {
                    fpu::min32
                } else {
                    fpu::max32
                };
                let (v, fl) = f(self.fs(a), self.fs(b));
                self.set_fs(rd, v, fl);
            }
            Op::FminD | Op::FmaxD => {
                let f = if i.op == Op::FminD {
                    fpu::min64
                } else {
                    fpu::max64
                };
                let (v, fl) = f(self.fd(a), self.fd(b));
                self.set_fd(rd, v, fl);
            }
            Op::FeqS | Op::FltS | Op::FleS => {
                let f = match i.op {
                    Op::FeqS => fpu::eq32,
                    Op::FltS => fpu::lt32,
                    _ => fpu::le32,
                };
                let (v, fl) = f(self.fs(a), self.fs(b));
                self.set_xf(rd, v as u64, fl);
            }
            Op::FeqD | Op::FltD | Op::FleD => {
                let f = match i.op {
                    Op::FeqD => fpu::eq64,
                    Op::FltD => fpu::lt64,
                    _ => fpu::le64,
                };
                let (v, fl) = f(self.fd(a), self.fd(b));
                self.set_xf(rd, v as u64, fl);
            }
            Op::FclassS => self.set_x(rd, fpu::class32(self.fs(a))),
            Op::FclassD => self.set_x(rd, fpu::class64(self.fd(a))),
            Op::FmvXW => self.set_x(rd, sx32(self.f[a as usize] as u32 as i32)),
            Op::FmvXD => self.set_x(rd, self.f[a as usize]),
            Op::FmvWX => self.set_fs(rd, xs1 as u32, 0),
            Op::FmvDX => self.set_fd(rd, xs1, 0),

            Op::FcvtWS => {
                let (v, fl) = fpu::to_i32_from32(self.fs(a), self.rounding(i)?);
                self.set_xf(rd, sx32(v), fl);
            }
            Op::FcvtWuS => {
                let (v, fl) = fpu::to_u32_from32(self.fs(a), self.rounding(i)?);
                self.set_xf(rd, sx32(v as i32), fl);
            }
            Op::FcvtLS => {
                let (v, fl) = fpu::to_i64_from32(self.fs(a), self.rounding(i)?);
                self.set_xf(rd, v as u64, fl);
            }
            Op::FcvtLuS => {
                let (v, fl) = fpu::to_u64_from32(self.fs(a), self.rounding(i)?);
                self.set_xf(rd, v, fl);
            }
            Op::FcvtWD => {
                let (v, fl) = fpu::to_i32_from64(self.fd(a), self.rounding(i)?);
                self.set_xf(rd, sx32(v), fl);
            }
            Op::FcvtWuD => {
                let (v, fl) = fpu::to_u32_from64(self.fd(a), self.rounding(i)?);
                self.set_xf(rd, sx32(v as i32), fl);
            }
            Op::FcvtLD => {
                let (v, fl) = fpu::to_i64_from64(self.fd(a), self.rounding(i)?);
                self.set_xf(rd, v as u64, fl);
            }
            Op::FcvtLuD => {
                let (v, fl) = fpu::to_u64_from64(self.fd(a), self.rounding(i)?);
                self.set_xf(rd, v, fl);
            }
            Op::FcvtSW => {
                let (v, fl) = fpu::from_i32_to32(xs1 as i32, self.rounding(i)?);
                self.set_fs(rd, v, fl);
            }
            Op::FcvtSWu => {
                let (v, fl) = fpu::from_u32_to32(xs1 as u32, self.rounding(i)?);
                self.set_fs(rd, v, fl);
            }
            Op::FcvtSL => {
                let (v, fl) = fpu::from_i64_to32(xs1 as i64, self.rounding(i)?);
                self.set_fs(rd, v, fl);
            }
            Op::FcvtSLu => {
                let (v, fl) = fpu::from_u64_to32(xs1, self.rounding(i)?);
                self.set_fs(rd, v, fl);
            }
            Op::FcvtDW => {
                let (v, fl) = fpu::from_i32_to64(xs1 as i32, self.rounding(i)?);
                self.set_fd(rd, v, fl);
            }
            Op::FcvtDWu => {
                let (v, fl) = fpu::from_u32_to64(xs1 as u32, self.rounding(i)?);
                self.set_fd(rd, v, fl);
            }
            Op::FcvtDL => {
                let (v, fl) = fpu::from_i64_to64(xs1 as i64, self.rounding(i)?);
                self.set_fd(rd, v, fl);
            }
            Op::FcvtDLu => {
                let (v, fl) = fpu::from_u64_to64(xs1, self.rounding(i)?);
                self.set_fd(rd, v, fl);
            }
            Op::FcvtSD => {
                let (v, fl) = fpu::f64_to_f32(self.fd(a), self.rounding(i)?);
                self.set_fs(rd, v, fl);
            }
            Op::FcvtDS => {
                self.rounding(i)?;
                let (v, fl) = fpu::f32_to_f64(self.fs(a));
                self.set_fd(rd, v, fl);
            }
            _ => return Err(Self::illegal(i)),
        }
        Ok(())
    }
}

/// Operand negations that turn fmadd into the other three fused forms:
/// (negate the product, negate the addend).
fn fma_signs(op: Op) -> (bool, bool) {
    match op {
        Op::FmaddS | Op::FmaddD => (false, false),
        Op::FmsubS | Op::FmsubD => (false, true),
        Op::FnmsubS | Op::FnmsubD => (true, false),
        _ => (true, true),
    }
}
