//! Accesses at the top of the 64-bit address space are guest-visible
//! access faults, never host arithmetic overflow. Found by fuzzing (the
//! `loader` target runs the machine it builds): an M-mode `sd` to
//! 0xffff_ffff_ffff_fff8 overflowed the PMP check's page end (a panic with
//! overflow checks on, which the release profile has).

use riscv::encode::{addi, i, ld, sd, slli};
use riscv::{Hart, NoDevices, Ram};

const BASE: u64 = 0x8000_0000;
const T0: u32 = 5;
const T1: u32 = 6;
const T2: u32 = 7;
const MTVEC: i32 = 0x305;
const HANDLER: u64 = 0x100;

/// Runs `code` at the base of RAM for one instruction past it and returns
/// mcause and mtval.
fn fault_of(code: &[u32]) -> (u64, u64) {
    // mtvec = a `j .` at BASE + HANDLER, so the cause stays the first one.
    let mut program = vec![
        addi(T2, 0, 1),
        slli(T2, T2, 31),
        addi(T2, T2, HANDLER as i32),
        i(MTVEC, T2, 1, 0, 0x73), // csrw mtvec, t2
    ];
    program.extend_from_slice(code);
    let mut ram = Ram::new(BASE, 1 << 20).unwrap();
    let bytes: Vec<u8> = program.iter().flat_map(|w| w.to_le_bytes()).collect();
    ram.write(BASE, &bytes);
    ram.write(BASE + HANDLER, &0x0000_006fu32.to_le_bytes());
    let mut hart = Hart::new(0);
    hart.set_pc(BASE);
    hart.run(&mut ram, &mut NoDevices, program.len() as u64 + 4);
    assert_eq!(hart.pc(), BASE + HANDLER, "the access trapped");
    let csrs = hart.csrs();
    (csrs.mcause, csrs.mtval)
}

#[test]
fn stores_and_loads_at_the_top_page_fault() {
    const STORE_ACCESS: u64 = 7;
    const LOAD_ACCESS: u64 = 5;
    for offset in [-8, -1, -2048] {
        let addr = offset as i64 as u64;
        assert_eq!(
            fault_of(&[addi(T0, 0, offset), sd(T0, T0, 0)]),
            (STORE_ACCESS, addr),
            "sd at {addr:#x}"
        );
        assert_eq!(
            fault_of(&[addi(T0, 0, offset), ld(T1, T0, 0)]),
            (LOAD_ACCESS, addr),
            "ld at {addr:#x}"
        );
    }
}
