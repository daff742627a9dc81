//! virtio devices on the running machine: M-mode programs set a queue up
//! through MMIO stores and notify it; the request is complete (used ring,
//! data, interrupt status) at the very next instruction.

mod common;

use common::*;
use disk::MemDisk;
use machine::slot_base;
use machine::{Machine, MachineError, Step, VirtioSpec};
use rand_chacha::rand_core::{RngCore, SeedableRng};
use rand_chacha::ChaCha20Rng;

const RAM: u64 = 0x8000_0000;
const DESC: u64 = RAM + 0x1000;
const AVAIL: u64 = RAM + 0x2000;
const USED: u64 = RAM + 0x3000;
const BUF: u64 = RAM + 0x4000;
const HEADER: u64 = RAM + 0x5000;
const STATUS_BYTE: u64 = RAM + 0x5100;
/// The program stores what it saw right after the notify here.
const SCRATCH: u64 = RAM + 0x6000;
const IMAGE_LEN: usize = 0x7000;
const SEED: [u8; 32] = [3; 32];

fn run_until_end(m: &mut Machine) -> Step {
    for _ in 0..1000 {
        match m.step().unwrap() {
            Step::Ran => {}
            other => return other,
        }
    }
    panic!("machine did not stop");
}

/// Set up queue 0 of the device at `base` (size 4, VERSION_1 only), notify
/// it, then store the used index and the interrupt status as seen by the
/// next instructions, and power off.
fn driver_program(base: u64, descs: &[(u64, u32, u16, u16)]) -> Vec<u8> {
    let mut a = Asm::new();
    let reg = |a: &mut Asm, off: i32, val: i32| {
        a.li(T1, val).sw(T1, off, T0);
    };
    a.li(T0, base as i32);
    reg(&mut a, 0x70, 3); // ACKNOWLEDGE | DRIVER
    reg(&mut a, 0x24, 1); // DriverFeaturesSel = 1
    reg(&mut a, 0x20, 1); // VIRTIO_F_VERSION_1 (bit 32)
    reg(&mut a, 0x70, 0xb); // FEATURES_OK
    reg(&mut a, 0x30, 0); // QueueSel
    reg(&mut a, 0x38, 4); // QueueNum
    reg(&mut a, 0x80, DESC as i32);
    reg(&mut a, 0x84, 0);
    reg(&mut a, 0x90, AVAIL as i32);
    reg(&mut a, 0x94, 0);
    reg(&mut a, 0xa0, USED as i32);
    reg(&mut a, 0xa4, 0);
    reg(&mut a, 0x44, 1); // QueueReady
    reg(&mut a, 0x70, 0xf); // DRIVER_OK
                            // RAM addresses have bit 31 set: build them without sign extension.
    let ram_addr = |a: &mut Asm, rd: u32, pa: u64| {
        a.li(rd, 1)
            .slli(rd, rd, 31)
            .li(A2, (pa - RAM) as i32)
            .or(rd, rd, A2);
    };
    ram_addr(&mut a, T2, USED);
    a.sw(ZERO, 0x50, T0) // QueueNotify(0)
        .lbu(A0, 2, T2) // used.idx, the instruction right after
        .lw(A1, 0x60, T0); // InterruptStatus
    ram_addr(&mut a, T2, SCRATCH);
    a.sw(A0, 0, T2)
        .sw(A1, 4, T2)
        .li(T0, 0x10_0000)
        .li(T1, 0x5555)
        .sw(T1, 0, T0);
    let mut image = a.finish();
    assert!(image.len() < 0x1000);
    image.resize(IMAGE_LEN, 0);
    let mut put = |at: u64, bytes: &[u8]| {
        let off = (at - RAM) as usize;
        image[off..off + bytes.len()].copy_from_slice(bytes);
    };
    for (i, &(addr, len, flags, next)) in descs.iter().enumerate() {
        let mut d = addr.to_le_bytes().to_vec();
        d.extend_from_slice(&len.to_le_bytes());
        d.extend_from_slice(&flags.to_le_bytes());
        d.extend_from_slice(&next.to_le_bytes());
        put(DESC + 16 * i as u64, &d);
    }
    put(AVAIL + 2, &1u16.to_le_bytes()); // idx 1: ring[0] = head 0
    image
}

fn scratch(m: &Machine) -> (u32, u32) {
    let s = m.ram().slice(SCRATCH, 8).unwrap();
    (
        u32::from_le_bytes(s[..4].try_into().unwrap()),
        u32::from_le_bytes(s[4..].try_into().unwrap()),
    )
}

fn rng_machine(seed: [u8; 32]) -> Machine {
    let program = driver_program(slot_base(0), &[(BUF, 16, 2, 0)]);
    let mut cfg = config(program, 1);
    cfg.virtio = vec![VirtioSpec::Rng { seed }];
    Machine::new(cfg, Box::new(SharedOutput::default())).unwrap()
}

#[test]
fn rng_request_completes_at_the_notifying_store() {
    let mut m = rng_machine(SEED);
    assert_eq!(run_until_end(&mut m), Step::Poweroff(0));
    assert_eq!(
        scratch(&m),
        (1, 1),
        "used idx and interrupt seen right after the notify"
    );
    let mut want = [0u8; 16];
    ChaCha20Rng::from_seed(SEED).fill_bytes(&mut want);
    assert_eq!(m.ram().slice(BUF, 16).unwrap(), want);
    assert!(m.devices().virtio[0].irq_level());
}

#[test]
fn rng_seed_is_machine_state() {
    let run = |seed| {
        let mut m = rng_machine(seed);
        assert_eq!(run_until_end(&mut m), Step::Poweroff(0));
        (m.state_hash().unwrap(), m.icount())
    };
    let (h1, n1) = run(SEED);
    assert_eq!(run(SEED), (h1, n1), "same seed, same run");
    let (h2, n2) = run([4; 32]);
    assert_eq!(n1, n2);
    assert_ne!(h1, h2, "the entropy differs, and so does the state");
}

#[test]
fn blk_read_through_the_machine() {
    let program = driver_program(
        slot_base(1),
        &[
            (HEADER, 16, 1, 1),     // NEXT
            (BUF, 512, 2 | 1, 2),   // WRITE | NEXT
            (STATUS_BYTE, 1, 2, 0), // WRITE
        ],
    );
    let mut image = program;
    let hdr = (HEADER - RAM) as usize;
    image[hdr + 8..hdr + 16].copy_from_slice(&1u64.to_le_bytes()); // IN, sector 1
    image[(STATUS_BYTE - RAM) as usize] = 0xee;
    let mut cfg = config(image, 1);
    cfg.virtio = vec![
        VirtioSpec::Rng { seed: SEED },
        VirtioSpec::Block {
            serial: "lockstep-vda".into(),
        },
    ];
    let contents: Vec<u8> = (0..4096u32).map(|i| (i / 512 * 16 + i % 7) as u8).collect();
    let disk = MemDisk::with_contents(contents.clone(), false);
    let mut m =
        Machine::with_disks(cfg, Box::new(SharedOutput::default()), vec![Box::new(disk)]).unwrap();
    assert_eq!(run_until_end(&mut m), Step::Poweroff(0));
    assert_eq!(scratch(&m), (1, 1));
    assert_eq!(m.ram().slice(BUF, 512).unwrap(), &contents[512..1024]);
    assert_eq!(m.ram().slice(STATUS_BYTE, 1).unwrap(), [0]);
    assert!(!m.devices().virtio[0].irq_level(), "the rng was not used");
    m.flush_disks().unwrap();
}

#[test]
fn bad_virtio_configurations_are_errors() {
    let firmware = Asm::new().wfi().finish();
    let out = || Box::new(SharedOutput::default());
    let mut cfg = config(firmware, 1);
    cfg.virtio = vec![VirtioSpec::Block { serial: "a".into() }];
    assert!(matches!(
        Machine::new(cfg.clone(), out()),
        Err(MachineError::DiskCount { specs: 1, disks: 0 })
    ));
    cfg.virtio = vec![VirtioSpec::Block {
        serial: "x".repeat(21),
    }];
    let disk = || -> Box<dyn disk::BlockDevice> { Box::new(MemDisk::new(4096)) };
    assert!(matches!(
        Machine::with_disks(cfg.clone(), out(), vec![disk()]),
        Err(MachineError::BadSerial(_))
    ));
    cfg.virtio = vec![VirtioSpec::Rng { seed: SEED }; 9];
    assert!(matches!(
        Machine::new(cfg, out()),
        Err(MachineError::TooManyVirtio(9))
    ));
}
