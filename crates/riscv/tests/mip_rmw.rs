//! A read-modify-write of mip must not latch the external SEIP line into the
//! software-writable SEIP bit (OpenSBI sets mip.SSIP while a device line is
//! high; latching it once left Linux in an endless supervisor-external
//! interrupt loop).

use riscv::encode::{i, li32};
use riscv::{Exit, Hart, Irq, NoDevices, Ram};

const BASE: u64 = 0x8000_0000;
const MIP: i32 = 0x344;
const SSIP: u64 = 1 << 1;
const SEIP: u64 = 1 << 9;

fn csrrs(rd: u32, csr: i32, rs1: u32) -> u32 {
    i(csr, rs1, 2, rd, 0x73)
}

#[test]
fn csrs_on_mip_does_not_latch_the_external_seip_line() {
    let mut ram = Ram::new(BASE, 1 << 20).unwrap();
    let mut code: Vec<u32> = li32(5, SSIP as i32).to_vec();
    code.push(csrrs(0, MIP, 5)); // csrs mip, t0 (with SEIP's line high)
    code.push(csrrs(6, MIP, 0)); // csrr t1, mip (after the line drops)
    let bytes: Vec<u8> = code.iter().flat_map(|w| w.to_le_bytes()).collect();
    ram.write(BASE, &bytes);

    let mut hart = Hart::new(0);
    hart.set_pc(BASE);
    hart.set_irq(Irq::SupervisorExternal, true);
    let mut bus = NoDevices;
    // Run up to and including the csrs (which yields: it may change interrupts).
    assert_eq!(hart.run(&mut ram, &mut bus, 3), Exit::Yield);
    hart.set_irq(Irq::SupervisorExternal, false);
    hart.run(&mut ram, &mut bus, 1);
    let mip = hart.reg(6);
    assert_eq!(mip & SSIP, SSIP, "csrs set SSIP");
    assert_eq!(
        mip & SEIP,
        0,
        "the external line leaked into software SEIP: mip={mip:#x}"
    );
}
