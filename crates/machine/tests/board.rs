//! The machine running small M-mode programs through the reset ROM: console
//! output stamps, poweroff, exact timer interrupts, idle skip, UART input,
//! IPIs, reset, trap storms and state-hash determinism.

mod common;

use common::*;
use machine::Input;
use machine::{HostEvent, Pacing, RunEnd, Runner};
use machine::{InstructionsPerTick, Machine, MachineError, Step, DEFAULT_INSTRUCTIONS_PER_TICK};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// The reset ROM retires this many instructions before the firmware.
const ROM_INSNS: u64 = 6;

fn run_until_end(m: &mut Machine, max_steps: usize) -> Step {
    for _ in 0..max_steps {
        match m.step().unwrap() {
            Step::Ran => {}
            other => return other,
        }
    }
    panic!("machine did not stop within {max_steps} steps");
}

#[test]
fn console_output_is_stamped_and_poweroff_ends() {
    let mut a = Asm::new();
    a.li(T0, 0x1000_0000) // lui: icount 6
        .li(T1, 'H' as i32) // 7
        .sb(T1, 0, T0) // 8
        .li(T1, 'i' as i32) // 9
        .sb(T1, 0, T0) // 10
        .li(T0, 0x10_0000)
        .li(T1, 0x5555)
        .sw(T1, 0, T0);
    let (mut m, out) = machine(a.finish(), 1);
    assert_eq!(run_until_end(&mut m, 100), Step::Poweroff(0));
    let out = out.0.lock().unwrap();
    assert_eq!(out.console, b"Hi");
    assert_eq!(out.stamps, [ROM_INSNS + 2, ROM_INSNS + 4]);
}

/// Arms the machine timer for `ticks` and spins; the handler powers off
/// with minstret as the exit code.
fn timer_program(ticks: i32) -> Vec<u8> {
    let mut a = Asm::new();
    a.la(T0, "handler")
        .csrw(MTVEC, T0)
        .li(T0, 0x200_4000)
        .li(T1, ticks)
        .sd(T1, 0, T0)
        .li(T1, 0x80)
        .csrw(MIE, T1)
        .csrsi(MSTATUS, 8)
        .label("spin")
        .addi(A0, A0, 1)
        .j("spin")
        .label("handler")
        .csrr(A1, MINSTRET);
    poweroff_with(&mut a, A1);
    a.finish()
}

#[test]
fn timer_interrupt_arrives_at_the_exact_instruction() {
    // At N instructions per tick mtime reaches 100 after 100 N retired
    // instructions; the interrupt is taken right there, so the handler
    // reads minstret = 100 N.
    for rate in [16, DEFAULT_INSTRUCTIONS_PER_TICK, 7, 1] {
        let mut cfg = config(timer_program(100), 1);
        cfg.instructions_per_tick = InstructionsPerTick::new(rate).unwrap();
        let mut m = Machine::new(cfg, Box::new(SharedOutput::default())).unwrap();
        let end = run_until_end(&mut m, 1000);
        assert_eq!(end, Step::Poweroff((100 * rate) as u32), "rate {rate}");
    }
}

#[test]
fn the_clock_rate_is_part_of_the_state_hash() {
    let hash = |rate: u64| {
        let mut cfg = config(timer_program(300), 1);
        cfg.instructions_per_tick = InstructionsPerTick::new(rate).unwrap();
        let mut m = Machine::new(cfg, Box::new(SharedOutput::default())).unwrap();
        m.state_hash().unwrap()
    };
    assert_eq!(hash(16), hash(16));
    assert_ne!(hash(16), hash(17), "same RAM and harts, another machine");
}

#[test]
fn same_program_same_state_hash() {
    let hash = |vmgenid: [u8; 16]| {
        let mut cfg = config(timer_program(300), 1);
        cfg.vmgenid = vmgenid;
        let mut m = Machine::new(cfg, Box::new(SharedOutput::default())).unwrap();
        assert!(matches!(run_until_end(&mut m, 1000), Step::Poweroff(_)));
        (m.state_hash().unwrap(), m.icount())
    };
    let (h1, n1) = hash([1; 16]);
    let (h2, n2) = hash([1; 16]);
    assert_eq!((h1, n1), (h2, n2));
    let (h3, _) = hash([2; 16]);
    assert_ne!(h1, h3, "device state is part of the hash");
}

/// Arms the timer for `ticks`, then waits in WFI; the handler powers off
/// with code 5.
fn idle_program(ticks: i32) -> Vec<u8> {
    let mut a = Asm::new();
    a.la(T0, "handler")
        .csrw(MTVEC, T0)
        .li(T0, 0x200_4000)
        .li(T1, ticks)
        .sd(T1, 0, T0)
        .li(T1, 0x80)
        .csrw(MIE, T1)
        .csrsi(MSTATUS, 8)
        .label("idle")
        .wfi()
        .j("idle")
        .label("handler")
        .li(A0, 5);
    poweroff_with(&mut a, A0);
    a.finish()
}

#[test]
fn idle_machine_waits_for_a_clock_warp() {
    let (mut m, _) = machine(idle_program(1_000_000), 1);
    loop {
        match m.step().unwrap() {
            Step::Ran => {}
            Step::Idle => break,
            other => panic!("unexpected {other:?}"),
        }
    }
    let icount = m.icount();
    assert_eq!(m.step().unwrap(), Step::Idle);
    assert_eq!(m.icount(), icount, "an idle machine retires nothing");
    assert_eq!(m.next_deadline(), Some(1_000_000));
    m.input(Input::ClockWarp(1_000_000 - m.mtime() - 1));
    assert_eq!(m.step().unwrap(), Step::Idle, "one tick early");
    m.input(Input::ClockWarp(1));
    assert_eq!(
        m.clock().total_warp(),
        1_000_000 - icount / DEFAULT_INSTRUCTIONS_PER_TICK
    );
    assert_eq!(run_until_end(&mut m, 100), Step::Poweroff(5));
}

#[test]
fn runner_fast_forward_skips_idle_time() {
    let (mut m, _) = machine(idle_program(50_000_000), 1); // 5 s of guest time
    let (_tx, rx) = mpsc::channel();
    let start = Instant::now();
    let end = Runner::new(rx, Pacing::FastForward).run(&mut m).unwrap();
    assert_eq!(end, RunEnd::Poweroff(5));
    assert!(start.elapsed() < Duration::from_secs(2));
    assert!(m.mtime() >= 50_000_000);
}

#[test]
fn runner_real_time_sleeps_until_the_deadline() {
    let (mut m, _) = machine(idle_program(1_000_000), 1); // 100 ms
    let (tx, rx) = mpsc::channel();
    drop(tx); // no input at all: the runner still sleeps to the deadline
    let start = Instant::now();
    let end = Runner::new(rx, Pacing::RealTime).run(&mut m).unwrap();
    assert_eq!(end, RunEnd::Poweroff(5));
    assert!(
        start.elapsed() >= Duration::from_millis(90),
        "{:?}",
        start.elapsed()
    );
}

#[test]
fn runner_reports_a_hung_guest() {
    // WFI with no timer armed and no input source: nothing can wake it.
    let mut a = Asm::new();
    a.label("idle").wfi().j("idle");
    let (mut m, _) = machine(a.finish(), 1);
    let (tx, rx) = mpsc::channel::<HostEvent>();
    drop(tx);
    let err = Runner::new(rx, Pacing::RealTime).run(&mut m).unwrap_err();
    assert!(err.to_string().contains("hung"), "{err}");
}

#[test]
fn console_input_raises_the_uart_interrupt() {
    let mut a = Asm::new();
    a.la(T0, "handler")
        .csrw(MTVEC, T0)
        .li(T0, 0x0c00_0000 + 4 * 10) // PLIC priority of source 10
        .li(T1, 1)
        .sw(T1, 0, T0)
        .li(T0, 0x0c00_2000) // context 0 enables
        .li(T1, 1 << 10)
        .sw(T1, 0, T0)
        .li(T0, 0x1000_0000)
        .li(T1, 1)
        .sb(T1, 2, T0) // FCR: FIFO on
        .sb(T1, 1, T0) // IER: received data
        .li(T1, 0x800)
        .csrw(MIE, T1) // MEIE
        .csrsi(MSTATUS, 8)
        .label("idle")
        .wfi()
        .j("idle")
        .label("handler")
        .li(T0, 0x0c20_0004)
        .lw(A2, 0, T0) // claim
        .li(T2, 0x1000_0000)
        .lbu(A1, 0, T2) // the byte
        .sw(A2, 0, T0) // complete
        .slli(A2, A2, 8)
        .or(A1, A1, A2);
    poweroff_with(&mut a, A1);
    let (mut m, _) = machine(a.finish(), 1);
    // Type only once the guest waits: enabling the FIFO clears it.
    while m.step().unwrap() == Step::Ran {}
    assert_eq!(m.step().unwrap(), Step::Idle);
    let (tx, rx) = mpsc::channel();
    tx.send(HostEvent::Console(b"A".to_vec())).unwrap();
    let end = Runner::new(rx, Pacing::FastForward).run(&mut m).unwrap();
    assert_eq!(end, RunEnd::Poweroff(10 << 8 | u32::from(b'A')));
}

#[test]
fn ipi_wakes_the_second_hart() {
    let mut a = Asm::new();
    a.csrr(T0, MHARTID)
        .bne(T0, ZERO, "secondary")
        .li(T0, 0x200_0004) // msip of hart 1
        .li(T1, 1)
        .sw(T1, 0, T0)
        .label("spin")
        .j("spin")
        .label("secondary")
        .la(T0, "handler")
        .csrw(MTVEC, T0)
        .li(T1, 0x8)
        .csrw(MIE, T1) // MSIE
        .csrsi(MSTATUS, 8)
        .label("idle")
        .wfi()
        .j("idle")
        .label("handler")
        .csrr(A0, MHARTID)
        .addi(A0, A0, 6);
    poweroff_with(&mut a, A0);
    let (mut m, _) = machine(a.finish(), 2);
    assert_eq!(run_until_end(&mut m, 1000), Step::Poweroff(7));
}

#[test]
fn guest_reset_restarts_from_the_images() {
    let mut a = Asm::new();
    a.li(T0, 0x1000_0000)
        .li(T1, 'R' as i32)
        .sb(T1, 0, T0)
        .li(T0, 0x10_0000)
        .li(T1, 0x7777)
        .sw(T1, 0, T0);
    let (mut m, out) = machine(a.finish(), 1);
    assert_eq!(run_until_end(&mut m, 100), Step::Reset);
    let icount = m.icount();
    assert!(icount > ROM_INSNS);
    assert_eq!(m.mtime(), 0, "guest time restarts");
    assert_eq!(m.harts()[0].pc(), 0x1000);
    assert_eq!(run_until_end(&mut m, 100), Step::Reset);
    assert_eq!(m.icount(), 2 * icount, "icount keeps counting");
    assert_eq!(out.0.lock().unwrap().console, b"RR");
}

#[test]
fn runaway_guest_is_a_trap_storm() {
    // mtvec = 0 is not memory: every trap faults again.
    let mut a = Asm::new();
    a.csrw(MTVEC, ZERO).illegal();
    let (mut m, _) = machine(a.finish(), 1);
    assert!(matches!(
        run_until_end(&mut m, 100),
        Step::TrapStorm { hart: 0, .. }
    ));
}

#[test]
fn bad_configurations_are_errors() {
    let firmware = Asm::new().wfi().finish();
    let mut cfg = config(firmware.clone(), 5);
    assert!(matches!(
        Machine::new(cfg.clone(), Box::new(SharedOutput::default())),
        Err(MachineError::BadCpus(5))
    ));
    cfg.cpus = 1;
    cfg.memory = 3 << 20;
    let err = Machine::new(cfg.clone(), Box::new(SharedOutput::default()))
        .err()
        .unwrap();
    assert!(matches!(err, MachineError::BadMemory(_)), "{err}");
    cfg.memory = 2 << 20;
    let err = Machine::new(cfg, Box::new(SharedOutput::default()))
        .err()
        .unwrap();
    assert!(err.to_string().contains("memory too small"), "{err}");
}
