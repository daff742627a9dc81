//! `lockstep bench`: measurements that print figures (never pass/fail).
//!
//! This crate owns every benchmark of lockstep — the guest workloads, disk
//! and network throughput, the cost of recording, snapshots, fault
//! tolerance, VM bundles and the interpreter's MIPS — each beside QEMU
//! where QEMU has an equivalent: their flags (clap [`Args`] the `lockstep`
//! command embeds as its `bench` subcommand), the guest scripts, the runs
//! of `lockstep` and QEMU, and the tables and JSON they print.
//!
//! It must not know the `lockstep` command's internals: it starts
//! `lockstep run`, `replay`, `vm` and `ft` as child processes of the
//! running executable ([`std::env::current_exe`]), so it works only inside
//! the `lockstep` binary, and reads their output (BENCH lines, the
//! `lockstep: speed:` line, logs and bundles) as any client would. The
//! dependencies point down: the CLI uses this crate, never the reverse.

mod api;
mod disk;
mod ft;
mod guest;
mod migrate;
mod mips_qemu;
mod net;
mod qemu;
mod record;
mod snapshot;
mod table;
mod vm;
mod vm_live;

pub use guest::parse_speed;

use bare::{Outcome, Program, RAM_BASE};
use clap::{Args, Subcommand};
use riscv::encode::*;
use riscv::{Hart, Ram};
use std::process::ExitCode;
use std::time::Instant;

#[derive(Args, Debug)]
#[command(args_conflicts_with_subcommands = true)]
pub struct BenchArgs {
    /// Without a subcommand: the guest workloads under lockstep and QEMU.
    #[command(subcommand)]
    pub what: Option<BenchKind>,
    #[command(flatten)]
    pub guest: crate::guest::GuestBenchArgs,
}

#[derive(Subcommand, Debug)]
pub enum BenchKind {
    /// Interpreter speed on a fixed bare-metal loop of ALU ops, loads, stores and
    /// branches, and the same loop under QEMU TCG (if installed) in the same run.
    Mips {
        /// Instructions to retire (rounded to whole loop iterations).
        #[arg(long, default_value_t = 1_000_000_000)]
        instructions: u64,
        /// Skip the QEMU baseline even if QEMU is installed.
        #[arg(long)]
        no_qemu: bool,
        /// The engine to measure: `interp`, `reference` or `jit` (the
        /// checking modes are refused).
        #[arg(long, value_enum, default_value_t = bare::Cpu::Interp)]
        cpu: bare::Cpu,
    },
    /// Sequential write and read throughput of fresh raw and qcow2 scratch disks, under
    /// lockstep and QEMU TCG.
    Disk(crate::disk::DiskBenchArgs),
    /// Guest <-> host TCP throughput over a TAP, under lockstep and QEMU TCG (needs root).
    Net(crate::net::NetBenchArgs),
    /// The cost of recording: the guest workloads plainly and with --record
    /// (wall ratio, log size, bits per guest second), then a replay of the log.
    Record(crate::record::RecordBenchArgs),
    /// Snapshot save and restore-to-first-instruction times.
    Snapshot(crate::snapshot::SnapshotBenchArgs),
    /// The cost and speed of fault tolerance: the guest workloads plainly and
    /// as an FT primary with a backup (wall ratio, log bandwidth), failover
    /// time after kill -9 of the primary, guest pause when a backup is added.
    Ft(crate::ft::FtBenchArgs),
    /// Bundle operations of a kept VM (snapshot create/revert/delete, linked
    /// and full clone) beside qemu-img's nearest equivalents.
    Vm(crate::vm::VmBenchArgs),
    /// The control plane: create-to-first-console-byte through lockstepd beside
    /// QEMU's start-to-first-byte, and list/show latency under concurrent clients.
    Api(crate::api::ApiBenchArgs),
    /// Live migration of a 512 MiB guest that keeps rewriting 64 MiB, between
    /// two processes on this host: guest pause and total time under lockstep
    /// (`ft migrate`) and QEMU TCG (`migrate`) in the same run.
    Migrate(crate::migrate::MigrateBenchArgs),
}

pub fn run(args: BenchArgs) -> Result<ExitCode, Box<dyn std::error::Error>> {
    match args.what {
        Some(BenchKind::Mips {
            instructions,
            no_qemu,
            cpu,
        }) => mips(instructions, no_qemu, cpu),
        Some(BenchKind::Disk(args)) => crate::disk::run(args),
        Some(BenchKind::Net(args)) => crate::net::run(args),
        Some(BenchKind::Record(args)) => crate::record::run(args),
        Some(BenchKind::Snapshot(args)) => crate::snapshot::run(args),
        Some(BenchKind::Ft(args)) => crate::ft::run(args),
        Some(BenchKind::Vm(args)) => crate::vm::run(args),
        Some(BenchKind::Api(args)) => crate::api::run(args),
        Some(BenchKind::Migrate(args)) => crate::migrate::run(args),
        None => crate::guest::run(args.guest),
    }
}

/// Instructions per pass of the loop.
pub const LOOP_LEN: u64 = 16;
const TOHOST: u64 = RAM_BASE + 0x1000;
const BUFFER: u64 = RAM_BASE + 0x10_0000;

/// Registers used by the loop.
const T0: u32 = 5;
const T1: u32 = 6;
const T2: u32 = 7;
const S0: u32 = 8;
const S1: u32 = 9;
const A0: u32 = 10;
const S2: u32 = 18;
const S3: u32 = 19;
const T3: u32 = 28;
const T4: u32 = 29;
const T5: u32 = 30;
const T6: u32 = 31;

/// `li rd, addr` for an address in the low 4 GiB (zero-extended).
fn li_addr(rd: u32, addr: u64) -> Vec<u32> {
    let mut v = li32(rd, addr as u32 as i32).to_vec();
    v.extend([slli(rd, rd, 32), srli(rd, rd, 32)]);
    v
}

/// How the benchmark program says it is done.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LoopExit {
    /// Write 1 to the HTIF `tohost` word (`lockstep bare`'s convention).
    Tohost,
    /// Write "pass" (0x5555) to the SiFive test device of QEMU's `virt`
    /// board (at the same address on ours), which powers QEMU off.
    SifiveTest,
}

/// The SiFive test (poweroff) device on `virt`.
const SIFIVE_TEST: u64 = 0x10_0000;

/// The benchmark program: `iterations` passes over a 16-instruction loop
/// body (2 loads, 2 stores, 10 ALU ops, 1 branch), then report to tohost.
pub fn mips_program(iterations: u32) -> Vec<u32> {
    mips_program_with(iterations, LoopExit::Tohost)
}

/// The benchmark program with the given way of saying it is done. The
/// instructions retired before the exit sequence are the same for both.
pub fn mips_program_with(iterations: u32, exit: LoopExit) -> Vec<u32> {
    let mut p = Vec::new();
    p.extend(li32(S0, iterations as i32));
    // The counter is unsigned: clear the sign extension of lui.
    p.extend([slli(S0, S0, 32), srli(S0, S0, 32)]);
    p.extend(li_addr(S3, BUFFER));
    p.extend([addi(S1, S3, 0)]);
    p.extend(li32(S2, 0xffff));
    let body = [
        ld(T0, S1, 0),
        add(T1, T0, S0),
        xor(T2, T1, T0),
        slli(T3, T1, 3),
        srli(T4, T3, 2),
        or(T5, T4, T2),
        sub(T6, T5, T1),
        sd(T6, S1, 8),
        lw(A0, S1, 16),
        add(A0, A0, T6),
        sw(A0, S1, 24),
        addi(S1, S1, 32),
        and(S1, S1, S2),
        or(S1, S1, S3),
        addi(S0, S0, -1),
    ];
    p.extend(body);
    p.push(bne(S0, 0, -(body.len() as i32) * 4));
    match exit {
        LoopExit::Tohost => {
            p.extend(li_addr(T1, TOHOST));
            p.extend([addi(T0, 0, 1), sd(T0, T1, 0), jal(0, 0)]);
        }
        LoopExit::SifiveTest => {
            p.extend(li_addr(T1, SIFIVE_TEST));
            p.extend(li32(T0, 0x5555));
            p.extend([sw(T0, T1, 0), jal(0, 0)]);
        }
    }
    p
}

fn mips(
    instructions: u64,
    no_qemu: bool,
    cpu: bare::Cpu,
) -> Result<ExitCode, Box<dyn std::error::Error>> {
    if matches!(cpu, bare::Cpu::Check | bare::Cpu::JitCheck) {
        return Err("bench mips measures one engine: --cpu interp, reference or jit".into());
    }
    let iterations = u32::try_from((instructions / LOOP_LEN).max(1))
        .map_err(|_| "--instructions is too large for the benchmark loop (max 68 billion)")?;
    let mut ram = Ram::new(RAM_BASE, 16 << 20)?;
    let code: Vec<u8> = mips_program(iterations)
        .iter()
        .flat_map(|w| w.to_le_bytes())
        .collect();
    ram.write(RAM_BASE, &code);
    let prog = Program {
        entry: RAM_BASE,
        tohost: TOHOST,
        fromhost: None,
    };
    let mut hart = Hart::new(0);
    cpu.apply(&mut hart);
    let start = Instant::now();
    let outcome = bare::execute(&mut hart, &mut ram, &prog, u64::MAX, &mut std::io::sink())?;
    let secs = start.elapsed().as_secs_f64();
    if outcome != Outcome::Pass {
        return Err(format!("benchmark program failed: {outcome:?}").into());
    }
    let retired = hart.instret();
    let ours = retired as f64 / secs / 1e6;
    println!("retired {retired} instructions in {secs:.3} s ({cpu:?})");
    println!("{ours:.0} MIPS");
    let stats = hart.jit_stats();
    if stats.blocks > 0 {
        println!(
            "translator: {} blocks, {} bytes of host code, {} of {} instructions in blocks, {:.3} ms translating",
            stats.blocks,
            stats.code_bytes,
            stats.retired_in_blocks,
            retired,
            stats.translate_ns as f64 / 1e6
        );
    }
    if !qemu::wanted(no_qemu) {
        return Ok(ExitCode::SUCCESS);
    }
    let q = crate::mips_qemu::measure(iterations)?;
    let qemu = q.instructions as f64 / q.loop_secs / 1e6;
    println!(
        "qemu TCG: {} instructions in {:.3} s ({:.3} s wall, {:.3} s of it QEMU's start and exit, measured with a 1-iteration run)",
        q.instructions, q.loop_secs, q.wall_secs, q.startup_secs
    );
    println!("qemu {qemu:.0} MIPS");
    println!("ratio {:.3} (lockstep MIPS / QEMU MIPS)", ours / qemu);
    Ok(ExitCode::SUCCESS)
}
