//! Fault tolerance from the command line: `lockstep ft backup` waits for a
//! primary and takes over when it fails; `lockstep run --ft-backup ADDR`
//! makes a run the primary (the protocol lives in the `ft` crate).

use crate::nics;
use crate::run::{self, Console, RunOutput};
use crate::vm::VmSetup;
use ::ft::{Arbiter, FtConfig, Hello, Outcome, PrimaryJournal, PrimaryLink};
use clap::{Args, Subcommand};
use machine::{HostEvent, Machine, NullOutput, Pacing, RunEnd, Runner, VirtioSpec};
use std::error::Error;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::mpsc::{self, Sender};
use std::time::{Duration, Instant};

#[derive(Args, Debug)]
pub struct FtArgs {
    #[command(subcommand)]
    command: FtCommand,
}

#[derive(Subcommand, Debug)]
enum FtCommand {
    /// Wait for a primary (`lockstep run --ft-backup ADDR`), re-execute its
    /// log, and go live with this host's console and NICs when it fails.
    Backup(BackupArgs),
}

#[derive(Args, Debug)]
pub struct BackupArgs {
    /// Address to listen on for the primary, e.g. 0.0.0.0:7400 (port 0: any; the
    /// address taken is printed).
    #[arg(long, value_name = "ADDR")]
    listen: String,
    /// The arbiter file, on storage the primary's host shares.
    #[arg(long, value_name = "PATH")]
    arbiter: PathBuf,
    /// Where the guest's console goes once live: stdio, none or file:PATH.
    #[arg(long, value_name = "WHERE", default_value = "stdio", value_parser = run::parse_console)]
    console: Console,
    /// This host's backend for each of the VM's NICs, in order (as `lockstep run --net`;
    /// the MACs are the primary's).
    #[arg(long = "net", value_name = "SPEC", value_parser = run::parse_net)]
    nets: Vec<(String, net::NetSpec)>,
    /// Declare the primary dead after this many milliseconds without a message.
    #[arg(long, value_name = "MS", default_value_t = 500, value_parser = clap::value_parser!(u64).range(10..))]
    ft_timeout: u64,
}

pub fn run(args: FtArgs) -> Result<ExitCode, Box<dyn Error>> {
    match args.command {
        FtCommand::Backup(args) => backup(args),
    }
}

fn config(timeout_ms: u64) -> FtConfig {
    FtConfig {
        timeout: Duration::from_millis(timeout_ms),
        ..FtConfig::default()
    }
}

/// Make `machine` (just booted from `setup`) an FT primary protected by
/// the backup at `addr`.
pub fn start_primary(
    addr: &str,
    arbiter: &Path,
    timeout_ms: u64,
    setup: &VmSetup,
    machine: &mut Machine,
    events: Sender<HostEvent>,
) -> Result<(PrimaryJournal, PrimaryLink), Box<dyn Error>> {
    let arbiter = Arbiter::open(arbiter)?;
    let generation = arbiter.generation()?;
    let bytes = serde_json::to_vec(setup)?;
    let pair = ::ft::connect(
        addr,
        arbiter,
        bytes,
        setup.uuid(),
        machine,
        config(timeout_ms),
        events,
    )?;
    eprintln!(
        "lockstep: FT primary: protected by the backup at {addr} (arbiter generation {generation})"
    );
    Ok(pair)
}

fn backup(args: BackupArgs) -> Result<ExitCode, Box<dyn Error>> {
    let arbiter = Arbiter::open(&args.arbiter)?;
    let listener = TcpListener::bind(&args.listen)
        .map_err(|e| format!("cannot listen on {}: {e}", args.listen))?;
    eprintln!(
        "lockstep: FT backup listening on {}",
        listener.local_addr()?
    );
    let mut backup = ::ft::serve(&listener, arbiter, config(args.ft_timeout), build)?;
    let mut nics = nics::open_for(&args.nets, &backup.machine().nic_macs())?;
    eprintln!(
        "lockstep: FT backup: following the primary (arbiter generation {})",
        backup.hello().generation
    );
    let (reason, detected) = match backup.follow()? {
        Outcome::Ended(reason) => {
            eprintln!(
                "lockstep: FT backup: the primary ended the run ({reason:?}) at icount {}; done",
                backup.machine().icount()
            );
            return Ok(ExitCode::SUCCESS);
        }
        Outcome::PrimaryLost { reason, at } => (reason, at),
    };
    eprintln!("lockstep: FT backup: primary lost: {reason}");
    let live_sink = RunOutput {
        console: run::console_writer(&args.console)?,
        nics: std::mem::take(&mut nics.tx),
    };
    let records = backup.records();
    let live = backup.go_live(Box::new(live_sink))?;
    for (nic, ip) in &live.announced {
        let [a, b, c, d] = ip;
        eprintln!("lockstep: FT backup: announced {a}.{b}.{c}.{d} on NIC {nic}");
    }
    eprintln!(
        "lockstep: FT backup: live at icount {} as arbiter generation {} ({} records re-executed; {} ms after detecting the failure; re-emitted {} bytes)",
        live.machine.icount(),
        live.generation,
        records,
        detected.elapsed().as_millis(),
        live.reemitted_bytes
    );
    run_live(live.machine, live.anchor, &mut nics, &args.console)
}

/// The machine a primary's Hello describes, as `lockstep run` built it.
fn build(hello: &Hello) -> Result<Machine, String> {
    let setup: VmSetup = serde_json::from_slice(&hello.setup)
        .map_err(|e| format!("the primary's VM setup is not valid: {e}"))?;
    let images = run::read_images(&setup.images).map_err(|e| e.to_string())?;
    let (disks, mut virtio) = run::open_disks(&setup.disks).map_err(|e| e.to_string())?;
    virtio.push(VirtioSpec::Rng {
        seed: setup.rng_seed,
    });
    let config = setup.machine_config(images, virtio);
    Machine::with_disks(config, Box::new(NullOutput), disks).map_err(|e| e.to_string())
}

/// Run the live machine as `lockstep run` would, until it powers off or
/// is stopped.
fn run_live(
    mut machine: Machine,
    anchor: Option<Instant>,
    nics: &mut nics::Nics,
    console: &Console,
) -> Result<ExitCode, Box<dyn Error>> {
    let (events, rx) = mpsc::channel();
    let mut runner = Runner::new(rx, Pacing::RealTime);
    if let Some(anchor) = anchor {
        runner = runner.with_anchor(anchor);
    }
    let _receivers = nics.start_receivers(&events);
    let _signals = crate::signals::forward(events.clone())?;
    let _terminal = match console {
        Console::Stdio => run::start_console_input(events)?,
        _ => None,
    };
    let end = loop {
        match runner.run(&mut machine) {
            Ok(RunEnd::SaveRequested) => {
                eprint!("\r\nlockstep: snapshots are not available on a live FT backup\r\n")
            }
            other => break other,
        }
    };
    drop(_terminal);
    machine.flush_disks()?;
    match end? {
        RunEnd::Poweroff(code) => Ok(ExitCode::from(u8::try_from(code).unwrap_or(u8::MAX))),
        RunEnd::Stopped | RunEnd::SaveRequested => {
            eprintln!("lockstep: stopped");
            Ok(ExitCode::SUCCESS)
        }
    }
}
