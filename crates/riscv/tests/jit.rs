//! The translator against the interpreter's general loop, operation by
//! operation: every translated instruction (I and M register and
//! immediate operations, lui/auipc, branches, jumps, every load and store
//! width, aligned, misaligned and across a page) on edge-case operands,
//! each followed by a jump to itself, run for the same budget by both;
//! the whole architectural state and RAM must agree. The random programs
//! in `fast_path.rs` cover combinations; this covers every value class
//! of every operation, including results a random program would overwrite
//! before anyone looks.

use riscv::encode::{b, i, jal, lui, r, s};
use riscv::{Exit, Hart, NoDevices, Ram};

const BASE: u64 = 0x8000_0000;
const DATA: u64 = BASE + 0x10_0000;

const VALUES: [u64; 12] = [
    0,
    1,
    2,
    31,
    63,
    0x7fff_ffff,
    0x8000_0000,
    0xffff_ffff,
    0x8000_0000_0000_0000,
    0x7fff_ffff_ffff_ffff,
    u64::MAX,
    0x1234_5678_9abc_def1,
];

/// Every translated operation on (rd, rs1, rs2) = (x3, x1, x2), and the
/// same with rd = x0 and with rd = rs1.
fn operations() -> Vec<u32> {
    let mut ops = Vec::new();
    let mut regs = |f: &dyn Fn(u32, u32, u32) -> u32| {
        ops.push(f(3, 1, 2));
        ops.push(f(0, 1, 2));
        ops.push(f(1, 1, 2));
    };
    for f3 in 0..8 {
        regs(&|rd, a, bb| r(0, bb, a, f3, rd, 0x33));
        regs(&|rd, a, bb| r(1, bb, a, f3, rd, 0x33)); // M
    }
    for (f7, f3) in [
        (0x20, 0),
        (0x20, 5),
        (0, 0),
        (0, 1),
        (0, 5),
        (1, 0),
        (1, 4),
        (1, 5),
        (1, 6),
        (1, 7),
    ] {
        regs(&|rd, a, bb| r(f7, bb, a, f3, rd, 0x33));
        regs(&|rd, a, bb| r(f7, bb, a, f3, rd, 0x3b));
    }
    for imm in [0, 1, -1, 5, 2047, -2048, 0x555] {
        for f3 in [0, 2, 3, 4, 6, 7] {
            regs(&|rd, a, _| i(imm, a, f3, rd, 0x13));
        }
        regs(&|rd, a, _| i(imm, a, 0, rd, 0x1b)); // addiw
    }
    for sh in [0, 1, 13, 31, 32, 63] {
        regs(&|rd, a, _| i(sh, a, 1, rd, 0x13)); // slli
        regs(&|rd, a, _| i(sh, a, 5, rd, 0x13)); // srli
        regs(&|rd, a, _| i(sh | 0x400, a, 5, rd, 0x13)); // srai
        if sh < 32 {
            regs(&|rd, a, _| i(sh, a, 1, rd, 0x1b));
            regs(&|rd, a, _| i(sh, a, 5, rd, 0x1b));
            regs(&|rd, a, _| i(sh | 0x400, a, 5, rd, 0x1b));
        }
    }
    for imm in [0, 1, 0x80000, 0xfffff, 0x7ffff] {
        regs(&|rd, _, _| lui(rd, imm));
        regs(&|rd, _, _| (imm << 12) | (rd << 7) | 0x17); // auipc
    }
    ops
}

/// Two machines with the same `code` (then a jump to itself) and data:
/// one runs the translator, the other the interpreter's general loop.
struct Pair {
    at: u64,
    machines: Vec<(Hart, Ram)>,
}

impl Pair {
    fn new(code: &[u32]) -> Pair {
        // A slice's first instruction always runs in the interpreter's
        // general loop (it looks the fetch page up): a nop.
        let mut bytes = i(0, 0, 0, 0, 0x13).to_le_bytes().to_vec();
        bytes.extend(code.iter().flat_map(|w| w.to_le_bytes()));
        bytes.extend(jal(0, 0).to_le_bytes());
        // The code ends at a page boundary, so that blocks meet the page
        // end too.
        let at = BASE + 0x2000 - bytes.len() as u64;
        let pattern: Vec<u8> = (0..0x2000u32).map(|x| (x * 37 + 11) as u8).collect();
        let machines = [true, false]
            .into_iter()
            .map(|jit| {
                let mut ram = Ram::new(BASE, 2 << 20).unwrap();
                assert!(ram.write(at, &bytes));
                assert!(ram.write(DATA - 0x1000, &pattern));
                let mut hart = Hart::new(0);
                if jit {
                    assert_eq!(hart.set_jit(true), cfg!(target_arch = "x86_64"));
                } else {
                    hart.set_fast_path(false);
                }
                (hart, ram)
            })
            .collect();
        Pair { at, machines }
    }

    /// Run from the code's start with x1, x2 = a, b on both for `budget`
    /// instructions after the nop; compare.
    fn check(&mut self, a: u64, bv: u64, budget: u64, what: &str) {
        let budget = budget + 1;
        let mut exits = Vec::new();
        for (hart, ram) in &mut self.machines {
            hart.set_pc(self.at);
            hart.set_reg(1, a);
            hart.set_reg(2, bv);
            hart.set_reg(3, 0x5a5a);
            exits.push(hart.run(ram, &mut NoDevices, budget));
        }
        let [(jh, jr), (rh, rr)] = &self.machines[..] else {
            unreachable!()
        };
        assert_eq!(exits[0], exits[1], "{what}: exit, x1={a:#x} x2={bv:#x}");
        for x in 0..32 {
            assert_eq!(jh.reg(x), rh.reg(x), "{what}: x{x}, x1={a:#x} x2={bv:#x}");
        }
        assert_eq!(jh, rh, "{what}: state, x1={a:#x} x2={bv:#x}");
        assert!(
            jr.as_slice() == rr.as_slice(),
            "{what}: RAM, x1={a:#x} x2={bv:#x}"
        );
    }
}

#[test]
fn every_operation_computes_what_the_interpreter_computes() {
    for op in operations() {
        let mut pair = Pair::new(&[op]);
        for a in VALUES {
            for bv in VALUES {
                pair.check(a, bv, 2, &format!("{op:#010x}"));
            }
        }
    }
}

#[test]
fn branches_and_jumps_go_where_the_interpreter_goes() {
    let nop = i(0, 0, 0, 0, 0x13);
    let inc = |x| i(1, x, 0, x, 0x13);
    let mut codes = Vec::new();
    for f3 in [0, 1, 4, 5, 6, 7] {
        // taken: skip the increment of x5; not taken: run it
        codes.push(vec![b(8, 2, 1, f3), inc(5), inc(6)]);
        codes.push(vec![inc(7), b(-4, 2, 1, f3), inc(6)]);
    }
    codes.push(vec![jal(4, 8), inc(5), inc(6)]);
    codes.push(vec![jal(0, 8), inc(5), inc(6)]);
    // jalr through x1 (odd targets lose bit 0), rd = rs1
    codes.push(vec![i(0, 1, 0, 1, 0x67), nop]);
    codes.push(vec![i(3, 1, 0, 4, 0x67), nop]);
    for code in &codes {
        let mut pair = Pair::new(code);
        for a in VALUES {
            for bv in VALUES {
                // jalr targets must be somewhere: keep them in RAM
                let a = if code[0] & 0x7f == 0x67 {
                    BASE + (a & 0xfff)
                } else {
                    a
                };
                for budget in [1, 2, 3, 5] {
                    pair.check(a, bv, budget, &format!("{:#010x}", code[0]));
                }
            }
        }
    }
}

#[test]
fn loads_and_stores_of_every_width_match() {
    let mut codes = Vec::new();
    for imm in [0, 1, 3, 6, 7, -1, -2048, 2047] {
        for f3 in 0..7 {
            codes.push(i(imm, 1, f3, 3, 0x03));
            codes.push(i(imm, 1, f3, 0, 0x03));
        }
        for f3 in 0..4 {
            codes.push(s(imm, 2, 1, f3, 0x23));
        }
    }
    // aligned, misaligned, across the page boundary at DATA, outside RAM
    let bases = [
        DATA,
        DATA + 0x100,
        DATA - 4,
        DATA - 1,
        DATA - 0x800,
        DATA + 0x7ff,
        0x1000,
        BASE - 2,
    ];
    for code in codes {
        let mut pair = Pair::new(&[code]);
        for a in bases {
            for bv in [0, u64::MAX, 0x8081_8283_8485_8687] {
                for budget in [1, 2, 3] {
                    pair.check(a, bv, budget, &format!("{code:#010x}"));
                }
            }
        }
    }
}

/// A guest that writes an instruction and runs it, with the block that
/// wrote it still running: the store ends the block, the new code runs.
#[test]
fn a_store_into_the_running_block_ends_it() {
    let inc5 = i(1, 5, 0, 5, 0x13);
    // x2 holds the encoding of `addi x6, x6, 1`; the store overwrites the
    // instruction right after it (which would increment x5).
    let nop = i(0, 0, 0, 0, 0x13);
    let code = [
        nop,                  // (a slice starts in the general loop)
        s(12, 2, 1, 2, 0x23), // sw x2, 12(x1)    (x1 = this code's address)
        nop,
        inc5, // overwritten before it runs
        inc5,
    ];
    for budget in 1..=7 {
        let mut states = Vec::new();
        for jit in [true, false] {
            let mut ram = Ram::new(BASE, 1 << 20).unwrap();
            let at = BASE + 0x400;
            let bytes: Vec<u8> = code.iter().flat_map(|w| w.to_le_bytes()).collect();
            assert!(ram.write(at, &bytes));
            assert!(ram.write(at + 20, &jal(0, 0).to_le_bytes()));
            let mut hart = Hart::new(0);
            if jit {
                hart.set_jit(true);
            } else {
                hart.set_fast_path(false);
            }
            // Run once so that the code is decoded and translated, then
            // restore the original instruction and run again.
            hart.set_pc(at);
            hart.set_reg(1, at);
            hart.set_reg(2, u64::from(i(1, 6, 0, 6, 0x13)));
            assert_eq!(hart.run(&mut ram, &mut NoDevices, 6), Exit::Budget);
            assert!(ram.write(at + 12, &inc5.to_le_bytes()));
            hart.set_pc(at);
            hart.run(&mut ram, &mut NoDevices, budget);
            states.push((
                (0..32).map(|x| hart.reg(x)).collect::<Vec<_>>(),
                hart.instret(),
            ));
        }
        assert_eq!(states[0], states[1], "budget {budget}");
        // The first run left x5 = 1, x6 = 1.
        if budget >= 4 {
            assert_eq!(states[0].0[6], 2, "the rewritten instruction ran");
        }
        if budget >= 5 {
            assert_eq!(states[0].0[5], 2, "the instruction after it ran");
        }
    }
}

/// A jump found through the jump cache by generated code (here `jalr` to
/// another page) must not land in a translation of code that has since
/// changed (here by a device writing RAM between slices).
#[test]
fn a_jump_to_rewritten_code_runs_the_new_code() {
    let page_a = BASE + 0x1000;
    let page_b = BASE + 0x2000;
    let nop = i(0, 0, 0, 0, 0x13);
    let inc = |x| i(1, x, 0, x, 0x13);
    let a = [nop, inc(6), i(0, 1, 0, 0, 0x67)]; // jalr x0, 0(x1)
    let b_code = |first: u32| [first, jal(0, (page_a + 4) as i32 - page_b as i32 - 4)];
    let words = |w: &[u32]| w.iter().flat_map(|w| w.to_le_bytes()).collect::<Vec<u8>>();
    let mut results = Vec::new();
    for jit in [true, false] {
        let mut ram = Ram::new(BASE, 1 << 20).unwrap();
        assert!(ram.write(page_a, &words(&a)));
        assert!(ram.write(page_b, &words(&b_code(inc(5)))));
        let mut hart = Hart::new(0);
        if jit {
            hart.set_jit(true);
        } else {
            hart.set_fast_path(false);
        }
        hart.set_reg(1, page_b);
        hart.set_pc(page_a);
        hart.run(&mut ram, &mut NoDevices, 41);
        // A device rewrites the target: x7 counts from now on, not x5.
        assert!(ram.write(page_b, &words(&b_code(inc(7)))));
        hart.set_pc(page_a);
        hart.run(&mut ram, &mut NoDevices, 41);
        results.push((
            (0..32).map(|x| hart.reg(x)).collect::<Vec<_>>(),
            hart.instret(),
            hart.jit_stats().cache_jumps,
        ));
    }
    assert_eq!(results[0].0, results[1].0);
    assert_eq!(results[0].1, results[1].1);
    assert!(results[1].0[7] > 5, "the new code ran: {:?}", results[1].0);
    if cfg!(target_arch = "x86_64") {
        assert!(results[0].2 > 10, "jumps went through the jump cache");
    }
}
