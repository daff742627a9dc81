//! `lockstep`: run deterministic RISC-V virtual machines.

mod bare;
mod bench;
mod bench_disk;
mod bench_ft;
mod bench_guest;
mod bench_mips_qemu;
mod bench_net;
mod bench_record;
mod bench_snapshot;
mod bench_vm;
mod bench_vm_live;
mod console_sock;
mod control;
mod disk;
mod ft;
mod image;
mod nics;
mod record;
mod run;
mod signals;
mod vm;
mod vmcmd;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "lockstep",
    version,
    about = "Deterministic RISC-V virtual machines"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
// Parsed once per process: the size of the largest variant does not matter.
#[allow(clippy::large_enum_variant)]
enum Command {
    /// Boot a VM (with no flags: the default Debian image, pulled on first use).
    Run(run::RunArgs),
    /// Run a bare-metal RISC-V ELF in M-mode with the HTIF tohost/fromhost convention.
    Bare(bare::BareArgs),
    /// Benchmarks; each prints its figures.
    Bench(bench::BenchArgs),
    /// Disk images: create qcow2 images and overlays, describe images and their backing chains.
    Disk(disk::DiskArgs),
    /// Guest images: fetch and verify Debian's riscv64 kernel, busybox and OpenSBI.
    Image(image::ImageArgs),
    /// Re-execute a run recorded with `lockstep run --record` and check that it
    /// reproduces: exits 1 and names the first divergence if it does not.
    Replay(record::ReplayArgs),
    /// VMs kept in bundles: create, list, show, start, stop, kill, delete, rename, clone.
    Vm(vmcmd::VmArgs),
    /// Snapshot trees of kept VMs: create, list, revert, delete, show.
    Snapshot(vmcmd::SnapshotArgs),
    /// Fault-tolerant VMs: backups, adding them to running VMs, status, TLS certificates.
    Ft(ft::FtArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run(args) => run::run(args),
        Command::Bare(args) => bare::run(args),
        Command::Bench(args) => bench::run(args),
        Command::Image(args) => image::run(args),
        Command::Disk(args) => disk::run(args),
        Command::Replay(args) => record::replay_command(args),
        Command::Ft(args) => ft::run(args),
        Command::Vm(args) => vmcmd::vm(args),
        Command::Snapshot(args) => vmcmd::snapshot(args),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("lockstep: {err}");
            ExitCode::from(2)
        }
    }
}
