//! The reset ROM every hart starts in (at [`ROM_BASE`]): it loads the
//! OpenSBI `fw_dynamic` calling convention into registers and jumps to the
//! firmware:
//!
//! ```text
//! a0 = mhartid, a1 = &device tree, a2 = &fw_dynamic_info, pc = firmware
//! ```
//!
//! `fw_dynamic_info` tells OpenSBI where the next stage (the kernel) is and
//! that it runs in S-mode.

use crate::layout::ROM_BASE;

/// Offsets inside the ROM.
const ENTRY_SLOT: u64 = 0x18;
const FDT_SLOT: u64 = 0x20;
const INFO_OFFSET: u64 = 0x40;

/// `fw_dynamic_info` fields (OpenSBI `include/sbi/fw_dynamic.h`).
const FW_DYNAMIC_MAGIC: u64 = 0x4942_534f; // "OSBI"
const FW_DYNAMIC_VERSION: u64 = 2;
const NEXT_MODE_S: u64 = 1;
const BOOT_HART: u64 = 0;

// Register numbers.
const T0: u32 = 5;
const A0: u32 = 10;
const A1: u32 = 11;
const A2: u32 = 12;
const CSR_MHARTID: u32 = 0xf14;

/// Where the boot code should send the harts.
#[derive(Debug, Clone, Copy)]
pub struct BootTargets {
    pub firmware_entry: u64,
    pub fdt_addr: u64,
    pub kernel_entry: u64,
}

/// The ROM's contents.
pub fn build(targets: &BootTargets) -> Vec<u8> {
    let code = [
        auipc(T0, 0),
        addi(A2, T0, INFO_OFFSET as u32),
        csrrs(A0, CSR_MHARTID, 0),
        ld(A1, T0, FDT_SLOT as u32),
        ld(T0, T0, ENTRY_SLOT as u32),
        jalr(0, T0, 0),
    ];
    let mut rom = Vec::with_capacity(INFO_OFFSET as usize + 48);
    code.iter()
        .for_each(|insn| rom.extend_from_slice(&insn.to_le_bytes()));
    put_u64(&mut rom, ENTRY_SLOT, targets.firmware_entry);
    put_u64(&mut rom, FDT_SLOT, targets.fdt_addr);
    let info = [
        FW_DYNAMIC_MAGIC,
        FW_DYNAMIC_VERSION,
        targets.kernel_entry,
        NEXT_MODE_S,
        0, // options
        BOOT_HART,
    ];
    for (i, field) in info.iter().enumerate() {
        put_u64(&mut rom, INFO_OFFSET + 8 * i as u64, *field);
    }
    rom
}

/// Address of `fw_dynamic_info` (what a2 holds).
#[cfg_attr(not(test), allow(dead_code))] // the tests drive the device with it
pub const fn info_addr() -> u64 {
    ROM_BASE + INFO_OFFSET
}

fn put_u64(rom: &mut Vec<u8>, offset: u64, value: u64) {
    let at = offset as usize;
    if rom.len() < at + 8 {
        rom.resize(at + 8, 0);
    }
    rom[at..at + 8].copy_from_slice(&value.to_le_bytes());
}

// A minimal RV64 encoder for the six instructions above.

fn i_type(opcode: u32, funct3: u32, rd: u32, rs1: u32, imm: u32) -> u32 {
    (imm & 0xfff) << 20 | rs1 << 15 | funct3 << 12 | rd << 7 | opcode
}

fn auipc(rd: u32, imm20: u32) -> u32 {
    imm20 << 12 | rd << 7 | 0x17
}

fn addi(rd: u32, rs1: u32, imm: u32) -> u32 {
    i_type(0x13, 0, rd, rs1, imm)
}

fn csrrs(rd: u32, csr: u32, rs1: u32) -> u32 {
    i_type(0x73, 2, rd, rs1, csr)
}

fn ld(rd: u32, rs1: u32, imm: u32) -> u32 {
    i_type(0x03, 3, rd, rs1, imm)
}

fn jalr(rd: u32, rs1: u32, imm: u32) -> u32 {
    i_type(0x67, 0, rd, rs1, imm)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn word(rom: &[u8], at: usize) -> u32 {
        u32::from_le_bytes(rom[at..at + 4].try_into().unwrap())
    }

    fn dword(rom: &[u8], at: u64) -> u64 {
        let at = at as usize;
        u64::from_le_bytes(rom[at..at + 8].try_into().unwrap())
    }

    #[test]
    fn code_matches_gnu_as() {
        // Encodings from riscv64-linux-gnu-as of the listing in `build`
        // (`jr t0` spelled out as the 32-bit `jalr x0, 0(t0)`).
        let expected = [
            0x0000_0297, // auipc t0, 0
            0x0402_8613, // addi  a2, t0, 64
            0xf140_2573, // csrr  a0, mhartid
            0x0202_b583, // ld    a1, 32(t0)
            0x0182_b283, // ld    t0, 24(t0)
            0x0002_8067, // jalr  x0, 0(t0)
        ];
        let rom = build(&BootTargets {
            firmware_entry: 0,
            fdt_addr: 0,
            kernel_entry: 0,
        });
        for (i, insn) in expected.iter().enumerate() {
            assert_eq!(word(&rom, 4 * i), *insn, "instruction {i}");
        }
    }

    #[test]
    fn data_slots_and_fw_dynamic_info() {
        let rom = build(&BootTargets {
            firmware_entry: 0x8000_0000,
            fdt_addr: 0x9fe0_0000,
            kernel_entry: 0x8020_0000,
        });
        assert_eq!(dword(&rom, ENTRY_SLOT), 0x8000_0000);
        assert_eq!(dword(&rom, FDT_SLOT), 0x9fe0_0000);
        let info: Vec<u64> = (0..6).map(|i| dword(&rom, INFO_OFFSET + 8 * i)).collect();
        assert_eq!(info, [0x4942_534f, 2, 0x8020_0000, 1, 0, 0]);
        assert_eq!(info_addr(), 0x1040);
        assert!(rom.len() as u64 <= crate::layout::ROM_SIZE);
    }
}
