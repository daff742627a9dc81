//! A tiny RV64 assembler for test programs, and helpers to build machines
//! around them. Encodings follow the RISC-V unprivileged spec, chapter 34.

#![allow(dead_code)]

use machine::{BootImages, CaptureOutput, Machine, MachineConfig, Output, OutputEvent};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

pub const ZERO: u32 = 0;
pub const T0: u32 = 5;
pub const T1: u32 = 6;
pub const T2: u32 = 7;
pub const A0: u32 = 10;
pub const A1: u32 = 11;
pub const A2: u32 = 12;

pub const MSTATUS: u32 = 0x300;
pub const MIE: u32 = 0x304;
pub const MTVEC: u32 = 0x305;
pub const MHARTID: u32 = 0xf14;
pub const MINSTRET: u32 = 0xb02;

#[derive(Default)]
pub struct Asm {
    words: Vec<u32>,
    labels: BTreeMap<&'static str, usize>,
    /// (instruction index, label, kind)
    fixups: Vec<(usize, &'static str, Fix)>,
}

#[derive(Clone, Copy)]
enum Fix {
    Jal(u32),
    Branch(u32, u32, u32),
    /// auipc+addi pair loading the label's address.
    La(u32),
}

fn i_type(op: u32, f3: u32, rd: u32, rs1: u32, imm: i32) -> u32 {
    ((imm as u32) & 0xfff) << 20 | rs1 << 15 | f3 << 12 | rd << 7 | op
}

fn s_type(f3: u32, rs1: u32, rs2: u32, imm: i32) -> u32 {
    let imm = imm as u32;
    (imm >> 5 & 0x7f) << 25 | rs2 << 20 | rs1 << 15 | f3 << 12 | (imm & 0x1f) << 7 | 0x23
}

fn jal(rd: u32, off: i32) -> u32 {
    let o = off as u32;
    (o >> 20 & 1) << 31
        | (o >> 1 & 0x3ff) << 21
        | (o >> 11 & 1) << 20
        | (o >> 12 & 0xff) << 12
        | rd << 7
        | 0x6f
}

fn branch(f3: u32, rs1: u32, rs2: u32, off: i32) -> u32 {
    let o = off as u32;
    (o >> 12 & 1) << 31
        | (o >> 5 & 0x3f) << 25
        | rs2 << 20
        | rs1 << 15
        | f3 << 12
        | (o >> 1 & 0xf) << 8
        | (o >> 11 & 1) << 7
        | 0x63
}

impl Asm {
    pub fn new() -> Self {
        Self::default()
    }

    fn emit(&mut self, w: u32) -> &mut Self {
        self.words.push(w);
        self
    }

    pub fn label(&mut self, name: &'static str) -> &mut Self {
        self.labels.insert(name, self.words.len());
        self
    }

    /// Load a 32-bit signed constant (lui and/or addi).
    pub fn li(&mut self, rd: u32, v: i32) -> &mut Self {
        let lo = (v << 20) >> 20;
        let hi = v.wrapping_sub(lo) as u32;
        if hi != 0 {
            self.emit(hi | rd << 7 | 0x37);
            if lo != 0 {
                self.addi(rd, rd, lo);
            }
            self
        } else {
            self.addi(rd, ZERO, lo)
        }
    }
    pub fn addi(&mut self, rd: u32, rs1: u32, imm: i32) -> &mut Self {
        self.emit(i_type(0x13, 0, rd, rs1, imm))
    }
    pub fn slli(&mut self, rd: u32, rs1: u32, sh: i32) -> &mut Self {
        self.emit(i_type(0x13, 1, rd, rs1, sh))
    }
    pub fn or(&mut self, rd: u32, rs1: u32, rs2: u32) -> &mut Self {
        self.emit(rs2 << 20 | rs1 << 15 | 6 << 12 | rd << 7 | 0x33)
    }
    pub fn sb(&mut self, rs2: u32, off: i32, rs1: u32) -> &mut Self {
        self.emit(s_type(0, rs1, rs2, off))
    }
    pub fn sw(&mut self, rs2: u32, off: i32, rs1: u32) -> &mut Self {
        self.emit(s_type(2, rs1, rs2, off))
    }
    pub fn sd(&mut self, rs2: u32, off: i32, rs1: u32) -> &mut Self {
        self.emit(s_type(3, rs1, rs2, off))
    }
    pub fn lw(&mut self, rd: u32, off: i32, rs1: u32) -> &mut Self {
        self.emit(i_type(0x03, 2, rd, rs1, off))
    }
    pub fn lbu(&mut self, rd: u32, off: i32, rs1: u32) -> &mut Self {
        self.emit(i_type(0x03, 4, rd, rs1, off))
    }
    pub fn csrw(&mut self, csr: u32, rs1: u32) -> &mut Self {
        self.emit(i_type(0x73, 1, ZERO, rs1, csr as i32))
    }
    pub fn csrr(&mut self, rd: u32, csr: u32) -> &mut Self {
        self.emit(i_type(0x73, 2, rd, ZERO, csr as i32))
    }
    pub fn csrsi(&mut self, csr: u32, imm: u32) -> &mut Self {
        self.emit(i_type(0x73, 6, ZERO, imm, csr as i32))
    }
    pub fn wfi(&mut self) -> &mut Self {
        self.emit(0x1050_0073)
    }
    /// An all-zero word: an illegal instruction.
    pub fn illegal(&mut self) -> &mut Self {
        self.emit(0)
    }
    pub fn j(&mut self, label: &'static str) -> &mut Self {
        self.fixups.push((self.words.len(), label, Fix::Jal(ZERO)));
        self.emit(0)
    }
    pub fn bne(&mut self, rs1: u32, rs2: u32, label: &'static str) -> &mut Self {
        self.fixups
            .push((self.words.len(), label, Fix::Branch(1, rs1, rs2)));
        self.emit(0)
    }
    /// Address of `label` into `rd` (auipc + addi).
    pub fn la(&mut self, rd: u32, label: &'static str) -> &mut Self {
        self.fixups.push((self.words.len(), label, Fix::La(rd)));
        self.emit(0).emit(0)
    }

    pub fn finish(&mut self) -> Vec<u8> {
        for &(at, label, fix) in &self.fixups {
            let target = self.labels[label];
            let off = (target as i32 - at as i32) * 4;
            match fix {
                Fix::Jal(rd) => self.words[at] = jal(rd, off),
                Fix::Branch(f3, rs1, rs2) => self.words[at] = branch(f3, rs1, rs2, off),
                Fix::La(rd) => {
                    let lo = (off << 20) >> 20;
                    let hi = off.wrapping_sub(lo) as u32;
                    self.words[at] = hi | rd << 7 | 0x17;
                    self.words[at + 1] = i_type(0x13, 0, rd, rd, lo);
                }
            }
        }
        self.words.iter().flat_map(|w| w.to_le_bytes()).collect()
    }
}

/// A kernel that is only a valid `Image` header (tests never jump to it).
pub fn stub_kernel() -> Vec<u8> {
    let mut k = vec![0u8; 64];
    k[16..24].copy_from_slice(&(1u64 << 20).to_le_bytes());
    k[0x38..0x3c].copy_from_slice(b"RSC\x05");
    k
}

/// Console output shared with the test while the machine owns the sink.
#[derive(Clone, Default)]
pub struct SharedOutput(pub Arc<Mutex<CaptureOutput>>);

impl Output for SharedOutput {
    fn emit(&mut self, icount: u64, event: OutputEvent<'_>) {
        self.0.lock().unwrap().emit(icount, event);
    }
}

pub fn config(firmware: Vec<u8>, cpus: usize) -> MachineConfig {
    MachineConfig {
        cpus,
        memory: 64 << 20,
        images: BootImages {
            firmware: firmware.into(),
            kernel: stub_kernel().into(),
            initrd: None,
        },
        bootargs: "console=ttyS0".into(),
        boot_wall_ns: 1_700_000_000_000_000_000,
        vmgenid: [7; 16],
        virtio: Vec::new(),
        instructions_per_tick: machine::InstructionsPerTick::DEFAULT,
    }
}

pub fn machine(firmware: Vec<u8>, cpus: usize) -> (Machine, SharedOutput) {
    let out = SharedOutput::default();
    let m = Machine::new(config(firmware, cpus), Box::new(out.clone())).unwrap();
    (m, out)
}

/// Poweroff through the test device with the code in `reg`.
pub fn poweroff_with(a: &mut Asm, reg: u32) {
    a.slli(reg, reg, 16)
        .li(T1, 0x3333)
        .or(reg, reg, T1)
        .li(T0, 0x10_0000)
        .sw(reg, 0, T0);
}
