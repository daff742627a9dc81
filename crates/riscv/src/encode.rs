//! A tiny RV64I encoder, for programs the project generates itself (the
//! MIPS benchmark, unit tests). Registers are numbers 0..=31.

pub fn r(funct7: u32, rs2: u32, rs1: u32, funct3: u32, rd: u32, opcode: u32) -> u32 {
    (funct7 << 25) | (rs2 << 20) | (rs1 << 15) | (funct3 << 12) | (rd << 7) | opcode
}

pub fn i(imm: i32, rs1: u32, funct3: u32, rd: u32, opcode: u32) -> u32 {
    (((imm as u32) & 0xfff) << 20) | (rs1 << 15) | (funct3 << 12) | (rd << 7) | opcode
}

pub fn s(imm: i32, rs2: u32, rs1: u32, funct3: u32, opcode: u32) -> u32 {
    let imm = imm as u32;
    (((imm >> 5) & 0x7f) << 25)
        | (rs2 << 20)
        | (rs1 << 15)
        | (funct3 << 12)
        | ((imm & 0x1f) << 7)
        | opcode
}

pub fn b(imm: i32, rs2: u32, rs1: u32, funct3: u32) -> u32 {
    let imm = imm as u32;
    (((imm >> 12) & 1) << 31)
        | (((imm >> 5) & 0x3f) << 25)
        | (rs2 << 20)
        | (rs1 << 15)
        | (funct3 << 12)
        | (((imm >> 1) & 0xf) << 8)
        | (((imm >> 11) & 1) << 7)
        | 0x63
}

pub fn lui(rd: u32, imm20: u32) -> u32 {
    (imm20 << 12) | (rd << 7) | 0x37
}

pub fn addi(rd: u32, rs1: u32, imm: i32) -> u32 {
    i(imm, rs1, 0, rd, 0x13)
}
pub fn andi(rd: u32, rs1: u32, imm: i32) -> u32 {
    i(imm, rs1, 7, rd, 0x13)
}
pub fn slli(rd: u32, rs1: u32, sh: i32) -> u32 {
    i(sh, rs1, 1, rd, 0x13)
}
pub fn srli(rd: u32, rs1: u32, sh: i32) -> u32 {
    i(sh, rs1, 5, rd, 0x13)
}
pub fn add(rd: u32, rs1: u32, rs2: u32) -> u32 {
    r(0, rs2, rs1, 0, rd, 0x33)
}
pub fn sub(rd: u32, rs1: u32, rs2: u32) -> u32 {
    r(0x20, rs2, rs1, 0, rd, 0x33)
}
pub fn xor(rd: u32, rs1: u32, rs2: u32) -> u32 {
    r(0, rs2, rs1, 4, rd, 0x33)
}
pub fn or(rd: u32, rs1: u32, rs2: u32) -> u32 {
    r(0, rs2, rs1, 6, rd, 0x33)
}
pub fn and(rd: u32, rs1: u32, rs2: u32) -> u32 {
    r(0, rs2, rs1, 7, rd, 0x33)
}
pub fn ld(rd: u32, rs1: u32, off: i32) -> u32 {
    i(off, rs1, 3, rd, 0x03)
}
pub fn lw(rd: u32, rs1: u32, off: i32) -> u32 {
    i(off, rs1, 2, rd, 0x03)
}
pub fn sd(rs2: u32, rs1: u32, off: i32) -> u32 {
    s(off, rs2, rs1, 3, 0x23)
}
pub fn sw(rs2: u32, rs1: u32, off: i32) -> u32 {
    s(off, rs2, rs1, 2, 0x23)
}
pub fn bne(rs1: u32, rs2: u32, off: i32) -> u32 {
    b(off, rs2, rs1, 1)
}
pub fn bltu(rs1: u32, rs2: u32, off: i32) -> u32 {
    b(off, rs2, rs1, 6)
}
pub fn jal(rd: u32, off: i32) -> u32 {
    let imm = off as u32;
    (((imm >> 20) & 1) << 31)
        | (((imm >> 1) & 0x3ff) << 21)
        | (((imm >> 11) & 1) << 20)
        | (((imm >> 12) & 0xff) << 12)
        | (rd << 7)
        | 0x6f
}

/// `li rd, v` for a value that fits in 32 signed bits (lui + addi).
pub fn li32(rd: u32, v: i32) -> [u32; 2] {
    let lo = (v << 20) >> 20;
    let hi = ((v.wrapping_sub(lo)) as u32) >> 12;
    [lui(rd, hi), addi(rd, rd, lo)]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::{decode, Op};

    #[test]
    fn encodings_round_trip_through_the_decoder() {
        let d = decode(addi(10, 11, -5));
        assert_eq!((d.op, d.rd(), d.rs1, d.imm), (Op::Addi, 10, 11, -5));
        let d = decode(sd(5, 6, -16));
        assert_eq!((d.op, d.rs1, d.rs2, d.imm), (Op::Sd, 6, 5, -16));
        let d = decode(bne(8, 0, -64));
        assert_eq!((d.op, d.rs1, d.rs2, d.imm), (Op::Bne, 8, 0, -64));
        let d = decode(jal(1, 2048));
        assert_eq!((d.op, d.rd(), d.imm), (Op::Jal, 1, 2048));
        for v in [
            0,
            1,
            -1,
            0x7ff,
            0x800,
            -2048,
            0x1234_5678,
            i32::MIN,
            i32::MAX,
        ] {
            let [u, a] = li32(7, v);
            let (du, da) = (decode(u), decode(a));
            assert_eq!(du.imm.wrapping_add(da.imm), v, "li32({v:#x})");
        }
    }
}
