//! TEMPORARY STUB (lead) until the FPU helper lands fpu.rs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rm { Rne, Rtz, Rdn, Rup, Rmm }
impl Rm { pub fn from_bits(b: u32) -> Option<Rm> { match b { 0 => Some(Rm::Rne), 1 => Some(Rm::Rtz), 2 => Some(Rm::Rdn), 3 => Some(Rm::Rup), 4 => Some(Rm::Rmm), _ => None } } }
pub type Flags = u8;
pub const CANONICAL_NAN32: u32 = 0x7fc0_0000;
pub const CANONICAL_NAN64: u64 = 0x7ff8_0000_0000_0000;
pub fn add32(_a: u32, _b: u32, _rm: Rm) -> (u32, Flags) { todo!() }
pub fn sub32(_a: u32, _b: u32, _rm: Rm) -> (u32, Flags) { todo!() }
pub fn mul32(_a: u32, _b: u32, _rm: Rm) -> (u32, Flags) { todo!() }
pub fn div32(_a: u32, _b: u32, _rm: Rm) -> (u32, Flags) { todo!() }
pub fn sqrt32(_a: u32, _rm: Rm) -> (u32, Flags) { todo!() }
pub fn fma32(_a: u32, _b: u32, _c: u32, _rm: Rm) -> (u32, Flags) { todo!() }
pub fn min32(_a: u32, _b: u32) -> (u32, Flags) { todo!() }
pub fn max32(_a: u32, _b: u32) -> (u32, Flags) { todo!() }
pub fn eq32(_a: u32, _b: u32) -> (bool, Flags) { todo!() }
pub fn lt32(_a: u32, _b: u32) -> (bool, Flags) { todo!() }
pub fn le32(_a: u32, _b: u32) -> (bool, Flags) { todo!() }
pub fn class32(_a: u32) -> u64 { todo!() }
pub fn to_i32_from32(_a: u32, _rm: Rm) -> (i32, Flags) { todo!() }
pub fn from_i32_to32(_v: i32, _rm: Rm) -> (u32, Flags) { todo!() }
pub fn to_u32_from32(_a: u32, _rm: Rm) -> (u32, Flags) { todo!() }
pub fn from_u32_to32(_v: u32, _rm: Rm) -> (u32, Flags) { todo!() }
pub fn to_i64_from32(_a: u32, _rm: Rm) -> (i64, Flags) { todo!() }
pub fn from_i64_to32(_v: i64, _rm: Rm) -> (u32, Flags) { todo!() }
pub fn to_u64_from32(_a: u32, _rm: Rm) -> (u64, Flags) { todo!() }
pub fn from_u64_to32(_v: u64, _rm: Rm) -> (u32, Flags) { todo!() }
pub fn add64(_a: u64, _b: u64, _rm: Rm) -> (u64, Flags) { todo!() }
pub fn sub64(_a: u64, _b: u64, _rm: Rm) -> (u64, Flags) { todo!() }
pub fn mul64(_a: u64, _b: u64, _rm: Rm) -> (u64, Flags) { todo!() }
pub fn div64(_a: u64, _b: u64, _rm: Rm) -> (u64, Flags) { todo!() }
pub fn sqrt64(_a: u64, _rm: Rm) -> (u64, Flags) { todo!() }
pub fn fma64(_a: u64, _b: u64, _c: u64, _rm: Rm) -> (u64, Flags) { todo!() }
pub fn min64(_a: u64, _b: u64) -> (u64, Flags) { todo!() }
pub fn max64(_a: u64, _b: u64) -> (u64, Flags) { todo!() }
pub fn eq64(_a: u64, _b: u64) -> (bool, Flags) { todo!() }
pub fn lt64(_a: u64, _b: u64) -> (bool, Flags) { todo!() }
pub fn le64(_a: u64, _b: u64) -> (bool, Flags) { todo!() }
pub fn class64(_a: u64) -> u64 { todo!() }
pub fn to_i32_from64(_a: u64, _rm: Rm) -> (i32, Flags) { todo!() }
pub fn from_i32_to64(_v: i32, _rm: Rm) -> (u64, Flags) { todo!() }
pub fn to_u32_from64(_a: u64, _rm: Rm) -> (u32, Flags) { todo!() }
pub fn from_u32_to64(_v: u32, _rm: Rm) -> (u64, Flags) { todo!() }
pub fn to_i64_from64(_a: u64, _rm: Rm) -> (i64, Flags) { todo!() }
pub fn from_i64_to64(_v: i64, _rm: Rm) -> (u64, Flags) { todo!() }
pub fn to_u64_from64(_a: u64, _rm: Rm) -> (u64, Flags) { todo!() }
pub fn from_u64_to64(_v: u64, _rm: Rm) -> (u64, Flags) { todo!() }
pub fn f32_to_f64(_a: u32) -> (u64, Flags) { todo!() }
pub fn f64_to_f32(_a: u64, _rm: Rm) -> (u32, Flags) { todo!() }
