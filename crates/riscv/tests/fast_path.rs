//! The interpreter's fast loop, and the translator, against the
//! interpreter's general loop: random programs (ALU, M, loads, stores,
//! branches, jumps, compressed instructions, stores into the program
//! itself, a page boundary inside the program, loads and stores across a
//! page boundary, access faults in the middle of a block, traps to a
//! handler that skips the faulting instruction) run in random slices, once
//! with the engine under test and once with the general loop alone. Every
//! slice must end the same way at the same pc with the same registers and
//! retired count (for the translator: the same whole architectural state),
//! and RAM must be the same at the end.

use riscv::encode::{b, i, jal, lui, r, s};
use riscv::{Exit, Hart, NoDevices, Ram};

const BASE: u64 = 0x8000_0000;
/// The program starts 256 bytes before a page boundary.
const CODE: u64 = BASE + 0xf00;
const DATA: u64 = BASE + 0x8000;
const HANDLER: u64 = BASE + 0x100;
const WORDS: usize = 400;

/// xorshift64*: a reproducible stream, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    /// A register the program computes with (x1..x7, x12..x15).
    fn reg(&mut self) -> u32 {
        [1, 2, 3, 4, 5, 6, 7, 12, 13, 14, 15][self.below(11) as usize]
    }
}

fn c_addi(rd: u32, imm: i32) -> u32 {
    let imm = imm as u32;
    (((imm >> 5) & 1) << 12) | (rd << 7) | ((imm & 0x1f) << 2) | 0b01
}

fn c_add(rd: u32, rs2: u32) -> u32 {
    (0b1001 << 12) | (rd << 7) | (rs2 << 2) | 0b10
}

fn instruction(g: &mut Rng, at: usize) -> u32 {
    let (rd, rs1, rs2) = (g.reg(), g.reg(), g.reg());
    let f3 = g.below(8) as u32;
    match g.below(25) {
        0..=3 => r(
            [0, 0x20][g.below(2) as usize] * u32::from(f3 == 0 || f3 == 5),
            rs2,
            rs1,
            f3,
            rd,
            0x33,
        ),
        4 => r(1, rs2, rs1, f3, rd, 0x33), // M
        5 => {
            let f3 = [0, 1, 5, 0, 4, 5, 6, 7][g.below(8) as usize];
            let f7 = if g.below(2) == 0 {
                1
            } else if f3 == 0 || f3 == 5 {
                0x20 * g.below(2) as u32
            } else {
                0
            };
            r(f7, rs2, rs1, f3, rd, 0x3b)
        }
        6..=8 => {
            let imm = match f3 {
                1 => g.below(64) as i32,
                5 => g.below(64) as i32 | (0x400 * g.below(2) as i32),
                _ => g.below(4096) as i32 - 2048,
            };
            i(imm, rs1, f3, rd, 0x13)
        }
        9 => i(g.below(4096) as i32 - 2048, rs1, 0, rd, 0x1b), // addiw
        10 | 11 => i(
            g.below(256) as i32,
            10,
            [0, 1, 2, 3, 4, 5, 6][g.below(7) as usize],
            rd,
            0x03,
        ),
        12 | 13 => s(g.below(256) as i32, rs2, 10, g.below(4) as u32, 0x23),
        14 if g.below(2) == 0 => {
            // A store of anything into the program itself.
            let off = (g.below(WORDS as u64) * 4) as i32;
            s(off.min(2047), rs2, 11, [2, 3][g.below(2) as usize], 0x23)
        }
        14 => {
            // Self-modifying code that matters: replace the instruction 1
            // to 3 ahead (already decoded when a loop comes round again)
            // with one of two valid ones (x8, x9 hold their encodings).
            let ahead = (at as u64 + 1 + g.below(3)).min(WORDS as u64 - 1);
            s((ahead * 4) as i32, 8 + g.below(2) as u32, 11, 2, 0x23)
        }
        15 | 16 => {
            // A short branch, mostly backwards (loops), never outside.
            let back = g.below(3) != 0;
            let dist = 1 + g.below(12) as i32;
            let dist = if back {
                -dist.min(at as i32)
            } else {
                dist.min((WORDS - at) as i32 - 1)
            };
            b(dist * 4, rs2, rs1, [0, 1, 4, 5, 6, 7][g.below(6) as usize])
        }
        17 => {
            let dist = 1 + g.below(8).min((WORDS - at) as u64 - 1) as i32;
            jal(rd, dist * 4)
        }
        18 => lui(rd, g.below(1 << 20) as u32),
        // Loads and stores that may cross a page (x17 is 4 bytes before
        // one): the slow path, byte by byte.
        20 => i(g.below(8) as i32, 17, g.below(7) as u32, rd, 0x03),
        21 => s(g.below(8) as i32, rs2, 17, g.below(4) as u32, 0x23),
        // Through x19, a random address: an access fault in the middle of
        // a block, or a misaligned access to no device.
        22 if g.below(2) == 0 => i(g.below(64) as i32, 19, g.below(7) as u32, rd, 0x03),
        22 => s(g.below(64) as i32, rs2, 19, g.below(4) as u32, 0x23),
        // An indirect jump a little ahead (x11 holds the program's start),
        // maybe onto the next page.
        23 => {
            let to = (at as u64 + 1 + g.below(8)).min(WORDS as u64 - 1);
            i((to * 4) as i32 | g.below(2) as i32, 11, 0, rd, 0x67)
        }
        _ => c_addi(rd, g.below(64) as i32 - 32) | (c_add(rs1, rs2) << 16),
    }
}

fn program(seed: u64) -> Vec<u32> {
    let mut g = Rng(seed | 1);
    (0..WORDS).map(|at| instruction(&mut g, at)).collect()
}

/// An atomic (LR/SC, AMO; word or doubleword, random aq/rl) on x10's
/// data (aligned), x17's (4 bytes before a page: misaligned for
/// doublewords) or x19's (anywhere: faults), or a floating-point
/// instruction (loads and stores through x10, arithmetic with random
/// rounding modes, invalid ones included, conversions both ways, moves,
/// compares, classes, fused multiply-adds).
fn afd_instruction(g: &mut Rng) -> u32 {
    let (rd, rs1, rs2) = (g.reg(), g.reg(), g.reg());
    let (fd, fs1, fs2, fs3) = (
        g.below(32) as u32,
        g.below(32) as u32,
        g.below(32) as u32,
        g.below(32) as u32,
    );
    let d = g.below(2) as u32; // 0: single, 1: double
    let rm = [0, 1, 2, 3, 4, 7, 7, 5][g.below(8) as usize];
    match g.below(12) {
        0..=2 => {
            let f5 = [
                0x00, 0x01, 0x02, 0x03, 0x04, 0x08, 0x0c, 0x10, 0x14, 0x18, 0x1c,
            ][g.below(11) as usize];
            let base = [10, 10, 10, 17, 19][g.below(5) as usize];
            let rs2 = if f5 == 0x02 { 0 } else { rs2 };
            r((f5 << 2) | g.below(4) as u32, rs2, base, 2 + d, rd, 0x2f)
        }
        3 => i(g.below(256) as i32 & !3, 10, 2 + d, fd, 0x07),
        4 => s(g.below(256) as i32 & !3, fs2, 10, 2 + d, 0x27),
        5..=7 => {
            let f7 = [0x00, 0x04, 0x08, 0x0c][g.below(4) as usize] | d;
            r(f7, fs2, fs1, rm, fd, 0x53)
        }
        8 => match g.below(6) {
            0 => r(0x2c | d, 0, fs1, rm, fd, 0x53), // fsqrt
            1 => r(0x10 | d, fs2, fs1, g.below(3) as u32, fd, 0x53), // fsgnj*
            2 => r(0x14 | d, fs2, fs1, g.below(2) as u32, fd, 0x53), // fmin/fmax
            3 => r(0x20 | (1 - d), d ^ 1, fs1, rm, fd, 0x53), // fcvt.s.d / fcvt.d.s
            4 => r(0x50 | d, fs2, fs1, g.below(3) as u32, rd, 0x53), // fle/flt/feq
            _ => r(0x70 | d, 0, fs1, g.below(2) as u32, rd, 0x53), // fmv.x / fclass
        },
        9 => r(0x60 | d, g.below(4) as u32, fs1, rm, rd, 0x53), // fcvt.{w,wu,l,lu}
        10 => match g.below(2) {
            0 => r(0x68 | d, g.below(4) as u32, rs1, rm, fd, 0x53), // fcvt from int
            _ => r(0x78 | d, 0, rs1, 0, fd, 0x53),                  // fmv.{w,d}.x
        },
        _ => {
            let op = [0x43, 0x47, 0x4b, 0x4f][g.below(4) as usize];
            (fs3 << 27) | (d << 25) | (fs2 << 20) | (fs1 << 15) | (rm << 12) | (fd << 7) | op
        }
    }
}

/// A program of the usual instructions with atomics and floating point
/// mixed in (about one in three).
fn afd_program(seed: u64) -> Vec<u32> {
    let mut g = Rng(seed | 1);
    (0..WORDS)
        .map(|at| {
            if g.below(3) == 0 {
                afd_instruction(&mut g)
            } else {
                instruction(&mut g, at)
            }
        })
        .collect()
}

/// How a hart executes.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Mode {
    /// The interpreter's general loop alone (the reference).
    General,
    /// The interpreter with its fast loop.
    Fast,
    /// The translator (x86-64; the fast loop elsewhere).
    Jit,
}

/// The machine for one program: handler, program, registers.
fn machine(code: &[u32], seed: u64, fast: bool) -> (Hart, Ram) {
    machine_in(code, seed, if fast { Mode::Fast } else { Mode::General })
}

fn machine_in(code: &[u32], seed: u64, mode: Mode) -> (Hart, Ram) {
    machine_with(code, seed, mode, false)
}

/// Where the Sv39 page tables of a paged machine live (beyond what the
/// program maps).
const ROOT: u64 = BASE + 0x1_0000;

/// The machine for one program; `paged`: the program runs in S-mode under
/// Sv39 (identity-mapped, half its pages without A/D bits so that walks
/// set them, the page after DATA's unmapped, so that accesses crossing
/// into it fault half-way), traps going to the M-mode handler.
fn machine_with(code: &[u32], seed: u64, mode: Mode, paged: bool) -> (Hart, Ram) {
    let fast = mode != Mode::General;
    let mut ram = Ram::new(BASE, 256 << 10).unwrap();
    // Trap handler: count the trap in x31, skip the faulting instruction.
    let handler = [
        i(1, 31, 0, 31, 0x13),    // addi x31, x31, 1
        i(0x341, 0, 2, 30, 0x73), // csrr x30, mepc
        i(4, 30, 0, 30, 0x13),    // addi x30, x30, 4
        i(0x341, 30, 1, 0, 0x73), // csrw mepc, x30
        0x3020_0073,              // mret
    ];
    let words = |w: &[u32]| w.iter().flat_map(|w| w.to_le_bytes()).collect::<Vec<u8>>();
    assert!(ram.write(HANDLER, &words(&handler)));
    assert!(ram.write(CODE, &words(code)));
    // After the program: jump back to its start.
    assert!(ram.write(
        CODE + 4 * WORDS as u64,
        &words(&[jal(0, -4 * WORDS as i32)])
    ));
    let mut hart = Hart::new(0);
    hart.set_fast_path(fast);
    if mode == Mode::Jit {
        assert_eq!(hart.set_jit(true), cfg!(target_arch = "x86_64"));
    }
    let mut g = Rng(seed.wrapping_mul(31) | 1);
    for x in 1..32 {
        hart.set_reg(x, g.next() >> g.below(64));
    }
    hart.set_reg(8, u64::from(i(7, 5, 0, 5, 0x13))); // addi x5, x5, 7
    hart.set_reg(9, u64::from(r(0, 7, 6, 4, 6, 0x33))); // xor x6, x6, x7
    hart.set_reg(10, DATA);
    hart.set_reg(11, CODE);
    hart.set_reg(17, DATA + 0x1000 - 4);
    // mtvec = HANDLER, through a tiny prologue at BASE.
    // (lui sign-extends: clear the upper half.)
    let prologue = [
        lui(30, (HANDLER >> 12) as u32 & 0xfffff),
        i((HANDLER & 0xfff) as i32, 30, 0, 30, 0x13),
        i(32, 30, 1, 30, 0x13),   // slli x30, x30, 32
        i(32, 30, 5, 30, 0x13),   // srli x30, x30, 32
        i(0x305, 30, 1, 0, 0x73), // csrw mtvec, x30
        lui(30, 2),               // mstatus.FS = Initial (0x2000):
        i(0x300, 30, 2, 0, 0x73), // csrs mstatus, x30
        jal(0, (CODE - (BASE + 28)) as i32),
    ];
    assert!(ram.write(BASE, &words(&prologue)));
    if paged {
        const V: u64 = 1;
        const RWX: u64 = 2 | 4 | 8;
        const AD: u64 = 64 | 128;
        let (l1, l0) = (ROOT + 0x1000, ROOT + 0x2000);
        let pointer = |table: u64| ((table >> 12) << 10) | V;
        assert!(ram.write_u64(ROOT + 8 * ((BASE >> 30) & 511), pointer(l1)));
        assert!(ram.write_u64(l1 + 8 * ((BASE >> 21) & 511), pointer(l0)));
        for page in 0..16u64 {
            let pa = BASE + (page << 12);
            if pa == DATA + 0x1000 {
                continue;
            }
            let ad = if page % 2 == 0 { AD } else { 0 };
            assert!(ram.write_u64(l0 + 8 * page, ((pa >> 12) << 10) | V | RWX | ad));
        }
        let li = |rd: u32, v: u64| {
            // v < 2^31: lui + addi, zero-extended
            let (hi, lo) = ((v + 0x800) >> 12, (v & 0xfff) as i32);
            let lo = if lo >= 0x800 { lo - 0x1000 } else { lo };
            [
                lui(rd, hi as u32 & 0xfffff),
                i(lo, rd, 0, rd, 0x13),
                i(32, rd, 1, rd, 0x13), // slli 32
                i(32, rd, 5, rd, 0x13), // srli 32
            ]
        };
        let mut p = Vec::new();
        p.extend(li(30, HANDLER));
        p.push(i(0x305, 30, 1, 0, 0x73)); // csrw mtvec, x30
                                          // PMP: all of memory for S and U (nothing is, without an entry).
        p.push(i(-1, 0, 0, 30, 0x13)); // addi x30, x0, -1
        p.push(i(0x3b0, 30, 1, 0, 0x73)); // csrw pmpaddr0, x30
        p.push(i(0x1f, 0, 0, 30, 0x13)); // addi x30, x0, NAPOT | RWX
        p.push(i(0x3a0, 30, 1, 0, 0x73)); // csrw pmpcfg0, x30
        p.extend(li(29, ROOT >> 12));
        p.push(i(8, 0, 0, 30, 0x13)); // addi x30, x0, 8 (Sv39)
        p.push(i(60, 30, 1, 30, 0x13)); // slli x30, x30, 60
        p.push(r(0, 29, 30, 6, 30, 0x33)); // or x30, x30, x29
        p.push(i(0x180, 30, 1, 0, 0x73)); // csrw satp, x30
        p.extend(li(30, 0x2800)); // mstatus.MPP = S, FS = Initial
        p.push(i(0x300, 30, 1, 0, 0x73)); // csrw mstatus, x30
        p.extend(li(30, CODE));
        p.push(i(0x341, 30, 1, 0, 0x73)); // csrw mepc, x30
        p.push(0x3020_0073); // mret
        assert!(p.len() * 4 < (HANDLER - BASE) as usize);
        assert!(ram.write(BASE, &words(&p)));
    }
    hart.set_pc(BASE);
    (hart, ram)
}

#[derive(Debug, PartialEq)]
struct Seen {
    exit: Exit,
    pc: u64,
    instret: u64,
    regs: Vec<u64>,
}

fn seen(exit: Exit, h: &Hart) -> Seen {
    Seen {
        exit,
        pc: h.pc(),
        instret: h.instret(),
        regs: (0..32).map(|x| h.reg(x)).collect(),
    }
}

/// Runs `a` and `b` (each with its RAM) over the same random slices
/// (`count` of them, budgets drawn from `seed + salt`), comparing exits
/// and registers after each slice, and the whole `Hart` too when
/// `whole_state`; RAM at the end (`ram_differs` names what).
fn run_side_by_side(
    seed: u64,
    salt: u64,
    count: usize,
    (a, a_ram): (&mut Hart, &mut Ram),
    (b, b_ram): (&mut Hart, &mut Ram),
    whole_state: bool,
    ram_differs: &str,
) {
    let mut slices = Rng(seed.wrapping_add(salt));
    for slice in 0..count {
        let budget = 1 + slices.below(3000);
        let x = a.run(a_ram, &mut NoDevices, budget);
        let y = b.run(b_ram, &mut NoDevices, budget);
        assert_eq!(
            seen(x, a),
            seen(y, b),
            "program {seed}, slice {slice} (budget {budget})"
        );
        if whole_state {
            assert_eq!(*a, *b, "program {seed}, slice {slice}: state");
        }
        if matches!(x, Exit::TrapStorm { .. }) {
            break;
        }
    }
    assert!(
        a_ram.as_slice() == b_ram.as_slice(),
        "program {seed}: {ram_differs}"
    );
}

#[test]
fn the_fast_loop_computes_what_the_general_loop_computes() {
    let mut fast_share = 0u64;
    for seed in 1..=150u64 {
        let code = program(seed);
        let (mut fast, mut fast_ram) = machine(&code, seed, true);
        let (mut general, mut general_ram) = machine(&code, seed, false);
        run_side_by_side(
            seed,
            7,
            60,
            (&mut fast, &mut fast_ram),
            (&mut general, &mut general_ram),
            false,
            "RAM differs",
        );
        fast_share += fast.instret();
    }
    assert!(
        fast_share > 1_000_000,
        "the programs ran: {fast_share} instructions"
    );
}

#[test]
fn the_translator_computes_what_the_general_loop_computes() {
    let (mut in_blocks, mut links, mut cache_jumps) = (0u64, 0u64, 0u64);
    for seed in 1..=150u64 {
        let code = program(seed);
        let (mut jit, mut jit_ram) = machine_in(&code, seed, Mode::Jit);
        let (mut general, mut general_ram) = machine_in(&code, seed, Mode::General);
        run_side_by_side(
            seed,
            7,
            150,
            (&mut jit, &mut jit_ram),
            (&mut general, &mut general_ram),
            true,
            "RAM differs",
        );
        in_blocks += jit.jit_stats().retired_in_blocks;
        links += jit.jit_stats().links;
        cache_jumps += jit.jit_stats().cache_jumps;
    }
    if cfg!(target_arch = "x86_64") {
        assert!(
            in_blocks > 500_000,
            "translated code ran: {in_blocks} instructions"
        );
        assert!(links > 1000, "blocks jumped straight into blocks: {links}");
        assert!(
            cache_jumps > 1000,
            "blocks jumped into blocks through the jump cache: {cache_jumps}"
        );
    }
}

#[test]
fn the_translator_computes_what_the_general_loop_computes_under_sv39() {
    let mut in_blocks = 0u64;
    let mut faults = 0u64;
    for seed in 1..=100u64 {
        let code = program(seed);
        let (mut jit, mut jit_ram) = machine_with(&code, seed, Mode::Jit, true);
        let (mut general, mut general_ram) = machine_with(&code, seed, Mode::General, true);
        run_side_by_side(
            seed,
            11,
            150,
            (&mut jit, &mut jit_ram),
            (&mut general, &mut general_ram),
            true,
            "RAM differs (page tables included)",
        );
        assert_ne!(jit.csrs().satp, 0, "program {seed}: paging on");
        in_blocks += jit.jit_stats().retired_in_blocks;
        if general.csrs().mcause == 13 || general.csrs().mcause == 15 {
            faults += 1;
        }
    }
    if cfg!(target_arch = "x86_64") {
        assert!(
            in_blocks > 300_000,
            "translated code ran: {in_blocks} instructions"
        );
    }
    assert!(faults > 10, "page faults were taken: {faults} programs");
}

/// Atomics and floating point (run inside blocks through the
/// interpreter's `execute_rare`, with registers cached around the call)
/// among the usual instructions, with and without paging: the whole
/// architectural state (FP registers, fcsr, the reservation, mstatus.FS)
/// after every slice, RAM at the end.
#[test]
fn the_translator_computes_what_the_general_loop_computes_with_atomics_and_fp() {
    let (mut in_blocks, mut fp_dirty) = (0u64, 0u64);
    for seed in 1..=120u64 {
        let paged = seed % 2 == 0;
        let code = afd_program(seed);
        let (mut jit, mut jit_ram) = machine_with(&code, seed, Mode::Jit, paged);
        let (mut general, mut general_ram) = machine_with(&code, seed, Mode::General, paged);
        run_side_by_side(
            seed,
            13,
            150,
            (&mut jit, &mut jit_ram),
            (&mut general, &mut general_ram),
            true,
            "RAM differs",
        );
        in_blocks += jit.jit_stats().retired_in_blocks;
        // mstatus.FS = Dirty: floating point really ran.
        if (general.csrs().mstatus >> 13) & 3 == 3 {
            fp_dirty += 1;
        }
    }
    if cfg!(target_arch = "x86_64") {
        assert!(
            in_blocks > 300_000,
            "translated code ran: {in_blocks} instructions"
        );
    }
    assert!(fp_dirty > 60, "floating point ran in {fp_dirty} programs");
}

#[test]
fn code_rewritten_in_a_loop_runs_as_rewritten() {
    // A loop whose store goes to its own page every other iteration (to
    // data in between, so the page and its decoded store survive that
    // iteration), rewriting `target`, which it then runs, with one of
    // three instructions in turn.
    let add = |rd, rs1| r(0, 0, rs1, 0, rd, 0x33); // add rd, rs1, x0
    let inc = |x| i(1, x, 0, x, 0x13); // addi x, x, 1
    let code = [
        r(0, 13, 11, 4, 11, 0x33), // xor x11, x11, x13: CODE <-> DATA
        add(16, 8),                // rotate x8 <- x14 <- x15 <- x8
        add(8, 14),
        add(14, 15),
        add(15, 16),
        s(32, 8, 11, 2, 0x23), // sw x8, 32(x11)
        inc(7),
        i(0, 0, 0, 0, 0x13), // nop
        inc(3),              // target (CODE + 32)
        b(-36, 12, 7, 4),    // blt x7, x12, loop
        jal(0, 0),
    ];
    let run = |fast: bool| {
        let mut ram = Ram::new(BASE, 64 << 10).unwrap();
        let bytes: Vec<u8> = code.iter().flat_map(|w| w.to_le_bytes()).collect();
        assert!(ram.write(CODE, &bytes));
        let mut hart = Hart::new(0);
        hart.set_fast_path(fast);
        hart.set_pc(CODE);
        hart.set_reg(8, u64::from(inc(4)));
        hart.set_reg(14, u64::from(inc(5)));
        hart.set_reg(15, u64::from(inc(6)));
        hart.set_reg(11, DATA);
        hart.set_reg(13, CODE ^ DATA);
        hart.set_reg(12, 30);
        hart.run(&mut ram, &mut NoDevices, 30 * 10 + 1);
        (0..32).map(|x| hart.reg(x)).collect::<Vec<_>>()
    };
    let general = run(false);
    assert_eq!(general[7], 30, "the loop ran");
    assert!(
        general[4] > 0 && general[5] > 0 && general[6] > 0,
        "each rewritten form ran: {general:?}"
    );
    assert_eq!(run(true), general);
}

/// Page-table entries rewritten without `sfence.vma` behind pages that
/// conflict in the TLB (A and D cleared, the frame changed): the fast
/// loop and the translator (which keep recent walks, `mmu::WalkCache`)
/// must see each change exactly when the general loop (which always
/// walks) does, set the same A/D bits and compute the same.
#[test]
fn rewritten_page_tables_behind_conflicting_pages_are_walked_again() {
    const V: u64 = 1;
    const RW: u64 = 2 | 4;
    const RWX: u64 = 2 | 4 | 8;
    const AD: u64 = 64 | 128;
    let l0 = ROOT + 0x2000;
    // X: one TLB index with DATA (256 pages on), frame DATA + 0x2000, no
    // A/D yet. P: the last-level table itself, so that the program can
    // rewrite DATA's entry (at P + 64).
    let x_va = DATA + 0x10_0000;
    let p_va = BASE + 0x10_1000;
    let ld = |rd, off, rs1| i(off, rs1, 3, rd, 0x03);
    let sd = |rs2, off, rs1| s(off, rs2, rs1, 3, 0x23);
    let xori = |rd, rs1, imm| i(imm, rs1, 4, rd, 0x13);
    let body = [
        ld(5, 0, 20),
        sd(5, 16, 20),
        ld(6, 0, 21), // evicts DATA from both data TLBs
        sd(6, 16, 21),
        ld(7, 64, 22),
        xori(7, 7, 64), // A
        sd(7, 64, 22),
        ld(8, 0, 20),
        ld(6, 0, 21),
        ld(7, 64, 22),
        xori(7, 7, 128), // D
        sd(7, 64, 22),
        sd(8, 24, 20),
        ld(6, 0, 21),
        sd(6, 8, 21),
        ld(7, 64, 22),
        xori(7, 7, 1024), // the frame: DATA's page or the next
        sd(7, 64, 22),
        ld(8, 0, 20),
        r(0, 8, 9, 0, 9, 0x33), // add x9, x9, x8
        sd(9, 32, 20),
        i(1, 24, 0, 24, 0x13), // addi x24, x24, 1
    ];
    let mut code = body.to_vec();
    code.push(jal(0, -4 * body.len() as i32));
    for mode in [Mode::Fast, Mode::Jit] {
        let setup = |mode| {
            let (mut hart, mut ram) = machine_with(&code, 5, mode, true);
            let vpn0 = |va: u64| (va >> 12) & 511;
            assert!(ram.write_u64(
                l0 + 8 * vpn0(x_va),
                (((DATA + 0x2000) >> 12) << 10) | V | RWX
            ));
            assert!(ram.write_u64(l0 + 8 * vpn0(p_va), ((l0 >> 12) << 10) | V | RW | AD));
            hart.set_reg(20, DATA);
            hart.set_reg(21, x_va);
            hart.set_reg(22, p_va);
            hart.set_reg(24, 0);
            (hart, ram)
        };
        let (mut a, mut a_ram) = setup(mode);
        let (mut g, mut g_ram) = setup(Mode::General);
        let mut slices = Rng(17);
        for slice in 0..300 {
            let budget = 1 + slices.below(500);
            let ea = a.run(&mut a_ram, &mut NoDevices, budget);
            let eg = g.run(&mut g_ram, &mut NoDevices, budget);
            assert_eq!(seen(ea, &a), seen(eg, &g), "{mode:?}, slice {slice}");
            assert_eq!(a, g, "{mode:?}, slice {slice}: state");
            assert!(
                a_ram.as_slice() == g_ram.as_slice(),
                "{mode:?}, slice {slice}: RAM"
            );
        }
        assert_eq!(g.csrs().satp >> 60, 8, "Sv39 on");
        assert!(g.reg(24) > 2000, "the loop ran: {} passes", g.reg(24));
        assert_eq!(g.csrs().mcause, 0, "no trap was taken");
        assert!(
            a.jit_stats().walks_cached > 1000,
            "{mode:?}: walks were cached: {:?}",
            a.jit_stats()
        );
    }
}
