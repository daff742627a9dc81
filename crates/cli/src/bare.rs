//! `lockstep bare`: run a bare-metal RISC-V ELF in M-mode on one hart, with
//! a CLINT and the HTIF `tohost`/`fromhost` convention of riscv-tests (the
//! board is the `lockstep-bare` crate).

use ::bare::{execute, execute_checked, load_elf, Cpu, Outcome, RAM_BASE};
use clap::Args;
use riscv::{Hart, Ram};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Args, Debug)]
pub struct BareArgs {
    /// RISC-V 64-bit ELF to run (entry in M-mode, segments at their physical addresses).
    pub elf: PathBuf,
    /// Stop with an error after this many retired instructions.
    #[arg(long, default_value_t = 1_000_000_000)]
    pub max_instructions: u64,
    /// Guest RAM at 0x8000_0000 (whole MiB).
    #[arg(long = "memory", value_name = "SIZE", default_value = "256M", value_parser = vocab::size_in::<u64>(1 << 20, 1..=65536))]
    pub memory_mib: u64,
    #[arg(long = "memory-mib", hide = true, value_parser = vocab::renamed("--memory 256M"))]
    old_memory_mib: Option<String>,
    /// How to execute: `interp` (the interpreter), `reference` (its general
    /// loop alone, without the fast loop), `jit` (the translator to x86-64;
    /// the interpreter on other hosts), `check` (interpreter and reference
    /// in lockstep, comparing the hart's state after every slice and RAM
    /// at the end) or `jit-check` (translator and reference the same way).
    #[arg(long, value_enum, default_value_t = Cpu::Interp)]
    pub cpu: Cpu,
}

pub fn run(args: BareArgs) -> Result<ExitCode, Box<dyn std::error::Error>> {
    let mut ram = Ram::new(RAM_BASE, args.memory_mib.max(1) << 20)?;
    let prog = load_elf(&args.elf, &mut ram)?;
    let mut hart = Hart::new(0);
    args.cpu.apply(&mut hart);
    let outcome = if args.cpu.checked() {
        execute_checked(
            &mut hart,
            &mut ram,
            &prog,
            args.max_instructions,
            &mut std::io::stdout(),
            args.cpu.name(),
        )?
    } else {
        execute(
            &mut hart,
            &mut ram,
            &prog,
            args.max_instructions,
            &mut std::io::stdout(),
        )?
    };
    Ok(match outcome {
        Outcome::Pass => ExitCode::SUCCESS,
        Outcome::Fail(n) => {
            eprintln!(
                "lockstep: test {n} failed (after {} instructions)",
                hart.instret()
            );
            ExitCode::from(1)
        }
    })
}
