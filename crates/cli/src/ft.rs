//! Fault tolerance from the command line (the protocol lives in the `ft`
//! crate):
//! - `lockstep run --arbiter PATH [--ft-backup ADDR]` runs an FT-capable
//!   VM (the primary), protected by the backup at ADDR once it has the VM;
//! - `lockstep ft backup --listen ADDR --arbiter PATH` receives a primary's
//!   VM, follows it and goes live when it fails, then runs as a primary
//!   itself (unprotected until a new backup is added);
//! - `lockstep ft add-backup ADDR`, `lockstep ft status` talk to a running
//!   VM through its control socket;
//! - `lockstep ft tls-init DIR` makes the certificates `--tls-dir` takes.

use crate::control::{self, ControlServer};
use crate::nics;
use crate::run::{self, Console, RunOutput};
use ::ft::{
    Arbiter, BackupOptions, DiskShape, FtConfig, FtPrimary, Outcome, PrimaryJournal, Protection,
    Resumed, Status, SyncReport, SyncUpdate, TlsIdentity, VmShape,
};
use clap::{Args, Subcommand};
use machine::{HostEvent, Machine, Pacing, RunEnd, Runner};
use serde::{Deserialize, Serialize};
use std::error::Error;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Sender};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Args, Debug)]
pub struct FtArgs {
    #[command(subcommand)]
    command: FtCommand,
}

#[derive(Subcommand, Debug)]
enum FtCommand {
    /// Wait for a primary (`lockstep run --arbiter PATH --ft-backup ADDR`),
    /// receive its VM, follow it, and go live with this host's console and
    /// NICs when it fails.
    Backup(BackupArgs),
    /// Protect a running FT-capable VM with the backup listening at ADDR:
    /// the VM is sent over while it runs (paused only for the last round).
    AddBackup(AddBackupArgs),
    /// Show a VM's FT state: role, arbiter generation, backup lag, log
    /// bandwidth, outputs held, protected or not.
    Status(ControlArgs),
    /// Create DIR with a new certificate authority and a node certificate
    /// for `--tls-dir` (or, with --ca-from, a node certificate signed by
    /// another directory's CA: give each host its own).
    TlsInit(TlsInitArgs),
}

/// Fault-tolerance options shared by `lockstep run` and `lockstep ft backup`.
#[derive(Args, Debug, Clone)]
pub struct FtOptions {
    /// The arbiter file, on storage both FT hosts share. With it, the VM
    /// is FT-capable: it can be protected by a backup.
    #[arg(long, value_name = "PATH")]
    pub arbiter: Option<PathBuf>,
    /// Declare the FT peer dead after MS milliseconds without a message.
    #[arg(long = "ft-timeout", value_name = "MS", default_value_t = 500, value_parser = clap::value_parser!(u64).range(10..))]
    pub timeout_ms: u64,
    /// Flow control: slow the primary while its backup lags more than MS
    /// milliseconds behind (of execution at 160 MIPS, whatever the VM's
    /// clock rate: the bound is on the backup's catch-up time).
    #[arg(long = "ft-max-lag", value_name = "MS", default_value_t = ::ft::DEFAULT_MAX_LAG_MS, value_parser = clap::value_parser!(u64).range(1..))]
    pub max_lag_ms: u64,
    /// Use mutually authenticated TLS on the FT log channel, with the
    /// certificates in DIR (`lockstep ft tls-init`). Both sides must.
    #[arg(long, value_name = "DIR")]
    pub tls_dir: Option<PathBuf>,
    /// The VM's control socket (for `lockstep ft status` and `add-backup`)
    /// [default: $XDG_RUNTIME_DIR/lockstep/NAME.sock, else /tmp/lockstep-UID/NAME.sock].
    #[arg(long, value_name = "PATH")]
    pub control: Option<PathBuf>,
    /// Whenever the VM is unprotected, keep trying to add the backup
    /// listening at ADDR (restores redundancy after a failover).
    #[arg(long = "ft-standby", value_name = "ADDR")]
    pub standby: Option<String>,
}

#[derive(Args, Debug)]
pub struct BackupArgs {
    /// Address to listen on for the primary, e.g. 0.0.0.0:7400 (port 0: any; the
    /// address taken is printed).
    #[arg(long, value_name = "ADDR")]
    listen: String,
    /// Where the replicas of the VM's disks are written (and the VM is
    /// assembled while it arrives) [default: $XDG_DATA_HOME/lockstep/replicas,
    /// else ~/.local/share/lockstep/replicas].
    #[arg(long, value_name = "DIR")]
    replica_dir: Option<PathBuf>,
    /// Where the guest's console goes once live: stdio, none or file:PATH.
    #[arg(long, value_name = "WHERE", default_value = "stdio", value_parser = run::parse_console)]
    console: Console,
    /// This host's backend for each of the VM's NICs, in order (as `lockstep run --net`;
    /// the MACs are the primary's).
    #[arg(long = "net", value_name = "SPEC", value_parser = run::parse_net)]
    nets: Vec<(String, net::NetSpec)>,
    #[command(flatten)]
    ft: FtOptions,
}

#[derive(Args, Debug)]
pub struct ControlArgs {
    /// The VM's control socket [default: the one `--name` gives].
    #[arg(long, value_name = "PATH")]
    control: Option<PathBuf>,
    /// The VM's name, for the default control socket.
    #[arg(long, value_name = "NAME", default_value = "lockstep")]
    name: String,
}

#[derive(Args, Debug)]
pub struct AddBackupArgs {
    /// The backup's address (`lockstep ft backup --listen`).
    addr: String,
    #[command(flatten)]
    vm: ControlArgs,
}

#[derive(Args, Debug)]
pub struct TlsInitArgs {
    /// The directory to create (ca.pem, node.pem, node.key; ca.key unless --ca-from).
    dir: PathBuf,
    /// Sign this node's certificate with the CA in this directory (made by
    /// an earlier `tls-init`) instead of a new CA.
    #[arg(long, value_name = "DIR")]
    ca_from: Option<PathBuf>,
}

pub fn run(args: FtArgs) -> Result<ExitCode, Box<dyn Error>> {
    match args.command {
        FtCommand::Backup(args) => backup(args),
        FtCommand::AddBackup(args) => {
            let path = control_path(args.vm.control, &args.vm.name);
            control::request(&path, &format!("add-backup {}", args.addr))
        }
        FtCommand::Status(args) => {
            let path = control_path(args.control, &args.name);
            control::request(&path, "status")
        }
        FtCommand::TlsInit(args) => {
            ::ft::tls_init(&args.dir, args.ca_from.as_deref())?;
            eprintln!(
                "lockstep: TLS certificates in {}; give the other host a directory made with --ca-from {}",
                args.dir.display(),
                args.dir.display()
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// What the backup learns of the VM beyond its machine (the Hello's
/// opaque setup).
#[derive(Serialize, Deserialize)]
struct FtVm {
    name: String,
    /// One per NIC: the backup needs a backend for each.
    macs: Vec<[u8; 6]>,
}

fn config(opts: &FtOptions) -> FtConfig {
    FtConfig {
        timeout: Duration::from_millis(opts.timeout_ms),
        max_lag: opts.max_lag_ms.saturating_mul(::ft::INSTRUCTIONS_PER_MS),
        ..FtConfig::default()
    }
}

fn tls(opts: &FtOptions) -> Result<Option<TlsIdentity>, Box<dyn Error>> {
    Ok(opts.tls_dir.as_deref().map(TlsIdentity::load).transpose()?)
}

/// `--control`, or the default for the VM called `name`.
fn control_path(control: Option<PathBuf>, name: &str) -> PathBuf {
    control.unwrap_or_else(|| {
        let dir = match std::env::var_os("XDG_RUNTIME_DIR") {
            Some(dir) if PathBuf::from(&dir).is_absolute() => PathBuf::from(dir).join("lockstep"),
            _ => PathBuf::from(format!(
                "/tmp/lockstep-{}",
                rustix::process::getuid().as_raw()
            )),
        };
        dir.join(format!("{name}.sock"))
    })
}

/// An FT-capable VM: its journal for the runner, and the services that
/// keep it protected (control socket, backups to add).
pub struct FtVmHandle {
    pub primary: FtPrimary,
    /// `None` if it could not be created (a warning said why).
    _control: Option<ControlServer>,
    stop: Arc<AtomicBool>,
}

impl Drop for FtVmHandle {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
    }
}

/// Make `machine` FT-capable (`opts.arbiter` must be set) and start its
/// services; `backup`: add this backup now (in the background, while the
/// guest runs). `resumed`: a live backup's generation and clock.
pub fn protectable(
    opts: &FtOptions,
    name: &str,
    machine: &mut Machine,
    events: Sender<HostEvent>,
    resumed: Option<Resumed>,
    backup: Option<String>,
) -> Result<(PrimaryJournal, FtVmHandle), Box<dyn Error>> {
    let Some(arbiter) = &opts.arbiter else {
        return Err("fault tolerance needs --arbiter PATH".into());
    };
    let arbiter = Arbiter::open(arbiter)?;
    let shape = VmShape {
        vm_uuid: vm_uuid(name, machine),
        setup: serde_json::to_vec(&FtVm {
            name: name.to_string(),
            macs: machine.nic_macs(),
        })?,
        images_len: machine
            .boot_image_parts()?
            .iter()
            .map(|p| p.len() as u64)
            .sum(),
        memory: machine.config().memory,
        disks: machine
            .disks()
            .map(|d| DiskShape {
                capacity: d.capacity(),
                read_only: d.read_only(),
            })
            .collect(),
    };
    let (journal, primary) = ::ft::protectable(
        machine,
        arbiter,
        resumed,
        shape,
        config(opts),
        tls(opts)?,
        events,
    )?;
    let control_at = control_path(opts.control.clone(), name);
    let control = ControlServer::start(&control_at, primary.clone())
        .map_err(|e| eprint!("\r\nlockstep: no control socket: {e}\r\n"))
        .ok();
    let stop = Arc::new(AtomicBool::new(false));
    let adder = primary.clone();
    let standby = opts.standby.clone();
    let stopping = Arc::clone(&stop);
    std::thread::spawn(move || keep_protected(&adder, backup, standby, &stopping));
    Ok((
        journal,
        FtVmHandle {
            primary,
            _control: control,
            stop,
        },
    ))
}

/// A stable id for the VM's replica files on the backup.
fn vm_uuid(name: &str, machine: &Machine) -> [u8; 16] {
    let mut h = blake3::Hasher::new();
    h.update(name.as_bytes());
    h.update(&machine.config().vmgenid);
    let mut uuid = [0u8; 16];
    uuid.copy_from_slice(&h.finalize().as_bytes()[..16]);
    uuid
}

/// Add `first` (once), then the standby whenever the VM is unprotected.
fn keep_protected(
    primary: &FtPrimary,
    first: Option<String>,
    standby: Option<String>,
    stop: &AtomicBool,
) {
    if let Some(addr) = first {
        add_and_report(primary, &addr);
    }
    let Some(addr) = standby else {
        return;
    };
    let mut last_error = None;
    while !stop.load(Ordering::Acquire) {
        if primary.status().protection == Protection::Unprotected {
            match primary.add_backup(&addr, &mut |_| {}) {
                Ok(report) => {
                    report_protected(primary, &addr, &report);
                    last_error = None;
                }
                Err(e) => {
                    // Said once per kind of failure, not every second.
                    let said = e.to_string();
                    if last_error.as_ref() != Some(&said) {
                        eprint!(
                            "\r\nlockstep: {said}; running unprotected, retrying every second\r\n"
                        );
                        last_error = Some(said);
                    }
                }
            }
        }
        std::thread::sleep(Duration::from_secs(1));
    }
}

fn add_and_report(primary: &FtPrimary, addr: &str) {
    match primary.add_backup(addr, &mut |_| {}) {
        Ok(report) => report_protected(primary, addr, &report),
        Err(e) => eprint!("\r\nlockstep: {e}; running unprotected\r\n"),
    }
}

fn report_protected(primary: &FtPrimary, addr: &str, report: &SyncReport) {
    eprint!(
        "\r\nlockstep: FT primary: protected by the backup at {addr} (arbiter generation {}; {})\r\n",
        primary.status().generation,
        describe_sync(report)
    );
}

pub fn describe_sync(r: &SyncReport) -> String {
    format!(
        "sent {:.1} MiB in {} rounds over {} ms, guest paused {:.1} ms",
        r.bytes as f64 / f64::from(1 << 20),
        r.rounds,
        r.total.as_millis(),
        r.pause.as_secs_f64() * 1e3
    )
}

pub fn describe_update(update: &SyncUpdate) -> Option<String> {
    match update {
        SyncUpdate::Round { round, next_bytes } => Some(format!(
            "round {round} sent; {:.1} MiB changed meanwhile",
            *next_bytes as f64 / f64::from(1 << 20)
        )),
        _ => None,
    }
}

/// The log channel's traffic: bytes, and bits per host and guest second.
pub fn describe_log(s: &Status) -> String {
    let per_ms = s.instructions_per_tick.per_ms() as f64;
    let guest_s = s.log_instructions as f64 / (per_ms * 1e3);
    let kbit = |secs: f64| {
        if secs > 0.0 {
            s.log_bytes as f64 * 8.0 / secs / 1e3
        } else {
            0.0
        }
    };
    format!(
        "log: {} bytes in {:.1} s ({:.1} kbit/s; {:.1} kbit per guest second over {:.1} guest s)",
        s.log_bytes,
        s.log_seconds,
        kbit(s.log_seconds),
        kbit(guest_s),
        guest_s
    )
}

/// `lockstep ft status` for a primary.
pub fn describe_status(s: &Status) -> String {
    let protection = match &s.protection {
        Protection::Unprotected => "unprotected".to_string(),
        Protection::Syncing { backup } => format!("unprotected (sending the VM to {backup})"),
        Protection::Protected { backup } => format!("protected by {backup}"),
        Protection::Fenced(why) => format!("halted ({why})"),
    };
    let ms = |instructions: u64| instructions as f64 / ::ft::INSTRUCTIONS_PER_MS as f64;
    format!(
        "role: primary\nprotection: {protection}\narbiter generation: {}\nicount: {}\n\
         backup lag: {:.1} ms of guest time ({} instructions; flow control at {:.0} ms)\n\
         {}\noutputs held: {} ({} bytes)",
        s.generation,
        s.icount,
        ms(s.lag),
        s.lag,
        ms(s.max_lag),
        describe_log(s),
        s.held_outputs,
        s.held_bytes
    )
}

fn backup(args: BackupArgs) -> Result<ExitCode, Box<dyn Error>> {
    let Some(arbiter_path) = &args.ft.arbiter else {
        return Err(
            "lockstep ft backup needs --arbiter PATH (on storage the primary's host shares)".into(),
        );
    };
    let arbiter = Arbiter::open(arbiter_path)?;
    let tls = tls(&args.ft)?;
    let replica_dir = match &args.replica_dir {
        Some(dir) => dir.clone(),
        None => default_replica_dir()?,
    };
    std::fs::create_dir_all(&replica_dir)
        .map_err(|e| format!("cannot create {}: {e}", replica_dir.display()))?;
    // The VM's NICs must have a backend here before the VM is accepted:
    // a mismatch is the primary's error too, not a backup that dies later.
    let opened = std::cell::RefCell::new(None);
    let accept = |hello: &::ft::Hello| -> Result<(), String> {
        let vm: FtVm = serde_json::from_slice(&hello.setup)
            .map_err(|e| format!("the primary's VM description is not valid: {e}"))?;
        let nics = nics::open_for(&args.nets, &vm.macs).map_err(|e| format!("backup host: {e}"))?;
        *opened.borrow_mut() = Some((vm, nics));
        Ok(())
    };
    let options = BackupOptions {
        tls: tls.as_ref(),
        replica_dir: &replica_dir,
        config: config(&args.ft),
        accept: Some(&accept),
    };
    let (mut backup, started) = {
        // Listening ends with the one primary taken.
        let listener = TcpListener::bind(&args.listen)
            .map_err(|e| format!("cannot listen on {}: {e}", args.listen))?;
        eprintln!(
            "lockstep: FT backup listening on {}",
            listener.local_addr()?
        );
        let started = Instant::now();
        let backup = ::ft::serve(&listener, arbiter, &options, &mut |what| {
            eprintln!("lockstep: FT backup: {what}")
        })?;
        (backup, started)
    };
    let Some((vm, mut nics)) = opened.take() else {
        return Err("the primary's VM was accepted without its NICs".into());
    };
    if vm.macs != backup.machine().nic_macs() {
        return Err("the primary's VM has other NICs than it announced".into());
    }
    let status = BackupStatus {
        executed: backup.executed(),
        generation: backup.hello().generation,
    };
    // While following, the primary may hold the VM's own name's socket
    // on this host.
    let control_at = control_path(args.ft.control.clone(), &format!("{}-backup", vm.name));
    let control = ControlServer::start_backup(&control_at, status)
        .map_err(|e| eprintln!("lockstep: FT backup: no control socket: {e}"))
        .ok();
    eprintln!(
        "lockstep: FT backup: following the primary (arbiter generation {}; received the VM in {} ms; replicas: {})",
        backup.hello().generation,
        started.elapsed().as_millis(),
        describe_replicas(backup.replicas())
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
    nics.discard_pending();
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
    drop(control);
    let generation = live.generation;
    run_live(
        live.machine,
        live.anchor,
        &mut nics,
        &args,
        &vm.name,
        generation,
    )
}

fn default_replica_dir() -> Result<PathBuf, Box<dyn Error>> {
    let absolute = |var| {
        std::env::var_os(var)
            .map(PathBuf::from)
            .filter(|p| p.is_absolute())
    };
    let data = absolute("XDG_DATA_HOME")
        .or_else(|| absolute("HOME").map(|home| home.join(".local/share")))
        .ok_or("no place for disk replicas: set $XDG_DATA_HOME or $HOME, or pass --replica-dir")?;
    Ok(data.join("lockstep/replicas"))
}

fn describe_replicas(paths: &[PathBuf]) -> String {
    if paths.is_empty() {
        return "none".into();
    }
    let names: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
    names.join(", ")
}

/// What a backup's control socket reports.
pub struct BackupStatus {
    pub executed: Arc<AtomicU64>,
    pub generation: u64,
}

impl BackupStatus {
    pub fn describe(&self) -> String {
        format!(
            "role: backup\nprotection: following the primary\narbiter generation: {}\nicount: {}",
            self.generation,
            self.executed.load(Ordering::Acquire)
        )
    }
}

/// Run the live machine as `lockstep run` would, FT-capable (a primary
/// without a backup until one is added), until it powers off or is
/// stopped.
fn run_live(
    mut machine: Machine,
    anchor: Option<Instant>,
    nics: &mut nics::Nics,
    args: &BackupArgs,
    name: &str,
    generation: u64,
) -> Result<ExitCode, Box<dyn Error>> {
    let (events, rx) = mpsc::channel();
    let resumed = Resumed { generation, anchor };
    let (journal, handle) = protectable(
        &args.ft,
        name,
        &mut machine,
        events.clone(),
        Some(resumed),
        None,
    )?;
    let mut runner = Runner::new(rx, Pacing::RealTime)
        .with_journal(Box::new(journal))
        .with_anchor(handle.primary.anchor());
    let _receivers = nics.start_receivers(&events);
    let _signals = crate::signals::forward(events.clone())?;
    let _terminal = match args.console {
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
    if let Some(why) = handle.primary.fenced() {
        return Err(format!("FT primary halted: {why}").into());
    }
    match end? {
        RunEnd::Poweroff(code) => Ok(ExitCode::from(u8::try_from(code).unwrap_or(u8::MAX))),
        RunEnd::Stopped | RunEnd::SaveRequested => {
            eprintln!("lockstep: stopped");
            Ok(ExitCode::SUCCESS)
        }
    }
}
