//! Fault tolerance from the command line (the protocol lives in the `ft`
//! crate):
//! - `lockstep run --ft-arbiter PATH [--ft-backup ADDR]` runs an FT-capable
//!   VM (the primary), protected by the backup at ADDR once it has the VM;
//! - `lockstep ft backup --listen ADDR --ft-arbiter PATH` receives a primary's
//!   VM, follows it and goes live when it fails, then runs as a primary
//!   itself (unprotected until a new backup is added);
//! - `lockstep ft add-backup ADDR`, `lockstep ft status` talk to a running
//!   VM through its control socket;
//! - `lockstep ft backup --incoming --listen ADDR` receives a VM that
//!   `lockstep ft migrate --to ADDR` sends (live migration: the FT sync,
//!   the log until the target has caught up, then a hand-over), and runs
//!   it from there;
//! - `lockstep ft tls-init DIR` makes the certificates `--ft-tls-dir` takes.

use crate::control::{self, ControlServer};
use crate::nics;
use crate::run::{self, Console, RunOutput};
use ::ft::{
    Arbiter, BackupOptions, DiskShape, FtConfig, FtPrimary, Outcome, PrimaryJournal, Protection,
    Resumed, Status, SyncReport, SyncUpdate, TlsIdentity, VmShape,
};
use clap::{Args, Subcommand};
use machine::{HostEvent, Machine, Pacing, Runner};
use serde::{Deserialize, Serialize};
use std::error::Error;
use std::net::TcpListener;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
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

// Parsed once per process: the size of the largest variant does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand, Debug)]
enum FtCommand {
    /// Wait for a primary (`lockstep run --ft-arbiter PATH --ft-backup ADDR`),
    /// receive its VM, follow it, and go live with this host's console and
    /// NICs when it fails.
    Backup(BackupArgs),
    /// Protect a running FT-capable VM with the backup listening at ADDR:
    /// the VM is sent over while it runs (paused only for the last round).
    AddBackup(AddBackupArgs),
    /// Show a VM's FT state: role, arbiter generation, backup lag, log
    /// bandwidth, outputs held, protected or not.
    Status(StatusArgs),
    /// Live-migrate a running VM (started with --ft-arbiter or
    /// --ft-control) to the target listening at ADDR (`lockstep ft backup
    /// --incoming`): its memory and disks are sent while it runs, the
    /// target follows it until it has caught up, then the guest stops here
    /// and runs on there from the next instruction. Until that hand-over
    /// any failure, or `--cancel`, leaves the VM running here.
    Migrate(MigrateArgs),
    /// Create DIR with a new certificate authority and a node certificate
    /// for `--ft-tls-dir` (or, with --ca-from, a node certificate signed by
    /// another directory's CA: give each host its own).
    TlsInit(TlsInitArgs),
}

/// Fault-tolerance options shared by `lockstep run` and `lockstep ft backup`,
/// all under `--ft-`.
#[derive(Args, Debug, Clone)]
pub struct FtOptions {
    /// The arbiter file, on storage both FT hosts share. With it, the VM
    /// is FT-capable: it can be protected by a backup.
    #[arg(long = "ft-arbiter", value_name = "PATH", env = "LOCKSTEP_FT_ARBITER")]
    pub arbiter: Option<PathBuf>,
    /// Declare the FT peer dead after this long without a message (at least 10ms).
    #[arg(
        long = "ft-timeout",
        value_name = "DURATION",
        default_value = "500ms",
        value_parser = vocab::duration_at_least(Duration::from_millis(10)),
        env = "LOCKSTEP_FT_TIMEOUT"
    )]
    pub timeout: humantime::Duration,
    /// Flow control: slow the primary while its backup lags more than this
    /// behind (of execution at 160 MIPS, whatever the VM's clock rate: the
    /// bound is on the backup's catch-up time; at least 1ms).
    #[arg(
        long = "ft-max-lag",
        value_name = "DURATION",
        default_value = "1s",
        value_parser = vocab::duration_at_least(Duration::from_millis(1)),
        env = "LOCKSTEP_FT_MAX_LAG"
    )]
    pub max_lag: humantime::Duration,
    /// The log channel is mutually authenticated TLS, with this node's
    /// certificates in DIR (`lockstep ft tls-init`) [default:
    /// $XDG_DATA_HOME/lockstep/tls, else ~/.local/share/lockstep/tls,
    /// created with a CA in .../lockstep/ca on first use].
    #[arg(long = "ft-tls-dir", value_name = "DIR", env = "LOCKSTEP_FT_TLS_DIR")]
    pub tls_dir: Option<PathBuf>,
    /// Run the log channel as plain TCP, unauthenticated: anyone who
    /// reaches the port can talk to it. Loopback addresses only.
    #[arg(long = "ft-insecure-plaintext", conflicts_with = "tls_dir")]
    pub insecure_plaintext: bool,
    /// The VM's control socket (for `lockstep ft status`, `add-backup` and
    /// `migrate`; a VM run with it and no --ft-arbiter can be migrated but
    /// not protected)
    /// [default: $XDG_RUNTIME_DIR/lockstep/NAME.sock, else /tmp/lockstep-UID/NAME.sock].
    #[arg(long = "ft-control", value_name = "PATH")]
    pub control: Option<PathBuf>,
    /// Whenever the VM is unprotected, keep trying to add the backup
    /// listening at ADDR (restores redundancy after a failover).
    #[arg(long = "ft-standby", value_name = "ADDR")]
    pub standby: Option<String>,
    #[command(flatten)]
    pub old: OldFtSpellings,
}

/// The FT flags' old spellings, refused with the new ones.
#[derive(Args, Debug, Clone, Default)]
pub struct OldFtSpellings {
    #[arg(long = "arbiter", hide = true, value_parser = vocab::renamed("--ft-arbiter"))]
    old_arbiter: Option<String>,
    #[arg(long = "tls-dir", hide = true, value_parser = vocab::renamed("--ft-tls-dir"))]
    old_tls_dir: Option<String>,
    #[arg(long = "control", hide = true, value_parser = vocab::renamed("--ft-control"))]
    old_control: Option<String>,
    #[arg(
        long = "insecure-plaintext",
        hide = true,
        num_args = 0,
        default_missing_value = "",
        value_parser = vocab::renamed("--ft-insecure-plaintext")
    )]
    old_insecure_plaintext: Option<String>,
}

impl FtOptions {
    /// The VM runs with a control socket through which it can be
    /// migrated (and, with an arbiter, protected).
    pub fn migratable(&self) -> bool {
        self.arbiter.is_some() || self.control.is_some()
    }
}

impl Default for FtOptions {
    /// As the flags' defaults: not FT-capable.
    fn default() -> Self {
        FtOptions {
            arbiter: None,
            timeout: Duration::from_millis(500).into(),
            max_lag: Duration::from_millis(::ft::DEFAULT_MAX_LAG_MS).into(),
            tls_dir: None,
            insecure_plaintext: false,
            control: None,
            standby: None,
            old: OldFtSpellings::default(),
        }
    }
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
    /// Where the guest's console goes once live: stdio, none or file=PATH.
    #[arg(long, value_name = "WHERE", default_value = "stdio", value_parser = run::parse_console)]
    console: Console,
    /// The most disk a primary's VM may take here for its replicas, e.g.
    /// 100G [default: the replica directory's free space less 5% (at least 1 GiB)].
    #[arg(long, value_name = "SIZE", value_parser = ::disk::parse_size)]
    max_replica_size: Option<u64>,
    /// This host's backend for each of the VM's NICs, in order (as `lockstep run --net`;
    /// the MACs are the primary's).
    #[arg(long = "net", value_name = "SPEC", value_parser = run::parse_net)]
    nets: Vec<(String, net::NetSpec)>,
    #[command(flatten)]
    ft: FtOptions,
    /// Receive a live migration (`lockstep ft migrate --to ADDR`) instead of
    /// protecting a VM: no arbiter is needed, the VM runs here once its
    /// source hands it over, and if the source fails first this side
    /// exits (the VM stays with its source).
    #[arg(long)]
    incoming: bool,
    /// How the harts execute, following and once live: `interp` or `jit`
    /// (as `lockstep run --cpu`; the primary's choice need not match).
    /// [default: `jit` on x86-64, else `interp`; `LOCKSTEP_CPU` overrides]
    #[arg(long, value_enum, default_value_t = run::RunCpu::host_default(), hide_default_value = true)]
    cpu: run::RunCpu,
}

#[derive(Args, Debug)]
pub struct ControlArgs {
    /// The VM's control socket [default: the one `--name` gives].
    #[arg(long, value_name = "PATH")]
    control: Option<PathBuf>,
    /// The VM's name (`lockstep run --name`, or the one it said at start),
    /// for the default control socket.
    #[arg(long, value_name = "NAME", required_unless_present = "control")]
    name: Option<String>,
}

#[derive(Args, Debug)]
pub struct StatusArgs {
    #[command(flatten)]
    vm: ControlArgs,
    /// Print the status as JSON (`vmm::api::FtStatusDoc`).
    #[arg(long)]
    json: bool,
}

#[derive(Args, Debug)]
pub struct AddBackupArgs {
    /// The backup's address (`lockstep ft backup --listen`), as `lockstep
    /// run --ft-backup` takes it.
    #[arg(long = "ft-backup", value_name = "ADDR")]
    addr: String,
    /// (The address was once positional.)
    #[arg(hide = true, value_parser = vocab::renamed("--ft-backup ADDR"))]
    old_addr: Option<String>,
    #[command(flatten)]
    vm: ControlArgs,
}

#[derive(Args, Debug)]
pub struct MigrateArgs {
    /// The target's address (`lockstep ft backup --incoming --listen ADDR`).
    #[arg(long = "to", value_name = "ADDR", required_unless_present = "cancel")]
    to: Option<String>,
    /// Cancel the VM's migration under way (before its hand-over).
    #[arg(long, conflicts_with = "to")]
    cancel: bool,
    #[command(flatten)]
    vm: ControlArgs,
}

#[derive(Args, Debug)]
pub struct TlsInitArgs {
    /// The node directory to create (ca.pem, node.pem, node.key) [default:
    /// the default --ft-tls-dir].
    dir: Option<PathBuf>,
    /// The CA's directory (ca.pem, ca.key): a new CA is made there if it
    /// holds none. Keep it off the FT hosts; give every host a node
    /// directory signed by the same CA [default: $XDG_DATA_HOME/lockstep/ca,
    /// else ~/.local/share/lockstep/ca].
    #[arg(long, value_name = "DIR")]
    ca: Option<PathBuf>,
    /// This node's name in its certificate [default: the host name].
    #[arg(long = "node-name", value_name = "NAME")]
    node_name: Option<String>,
    /// Days the node certificate is valid.
    #[arg(long, value_name = "N", default_value_t = 365, value_parser = clap::value_parser!(u32).range(1..=36500))]
    days: u32,
}

/// What goes wrong in `lockstep ft` on this host (the ft crate's own
/// errors are [`::ft::FtError`]).
#[derive(Debug, thiserror::Error)]
pub enum FtCmdError {
    #[error("no place for lockstep's data: set $XDG_DATA_HOME or $HOME")]
    NoDataDir,
    #[error("no place for disk replicas: set $XDG_DATA_HOME or $HOME, or pass --replica-dir")]
    NoReplicaDir,
    #[error("cannot create {}: {source}", dir.display())]
    CreateDir {
        dir: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot lock {}: {source}", dir.display())]
    Lock {
        dir: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot measure the free space in {}: {source}", dir.display())]
    FreeSpace {
        dir: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: String,
        source: std::io::Error,
    },
    #[error("the primary's VM was accepted without its NICs")]
    AcceptedWithoutNics,
    #[error("the primary's VM has other NICs than it announced")]
    OtherNics,
}

/// Why this backup host refuses a primary's VM (the primary hears it).
#[derive(Debug, thiserror::Error)]
pub enum AcceptError {
    #[error("the primary's VM description is not valid: {0}")]
    Description(#[source] serde_json::Error),
    #[error("the primary's VM name: {0}")]
    Name(#[source] crate::vm::NameError),
    #[error("the primary's VM has {nics} NICs")]
    TooManyNics { nics: usize },
    #[error("{0}")]
    Claim(#[source] crate::names::ClaimError),
    #[error("backup host: {0}")]
    Nics(#[source] nics::NicError),
}

pub fn run(args: FtArgs) -> Result<ExitCode, Box<dyn Error>> {
    match args.command {
        FtCommand::Backup(args) => backup(args),
        FtCommand::AddBackup(args) => {
            let path = control_path(args.vm.control, args.vm.name.as_deref().unwrap_or_default());
            Ok(control::request(
                &path,
                &format!("add-backup {}", args.addr),
            )?)
        }
        FtCommand::Migrate(args) => {
            let path = control_path(args.vm.control, args.vm.name.as_deref().unwrap_or_default());
            match (args.to, args.cancel) {
                (Some(to), _) => Ok(control::request(&path, &format!("migrate {to}"))?),
                (None, _) => Ok(control::request(&path, "cancel-migration")?),
            }
        }
        FtCommand::Status(args) => {
            let path = control_path(args.vm.control, args.vm.name.as_deref().unwrap_or_default());
            Ok(control::request(
                &path,
                if args.json { "status-json" } else { "status" },
            )?)
        }
        FtCommand::TlsInit(args) => {
            let dir = match args.dir {
                Some(dir) => dir,
                None => data_dir()?.join("tls"),
            };
            let ca = match args.ca {
                Some(ca) => ca,
                None => data_dir()?.join("ca"),
            };
            let name = match args.node_name {
                Some(name) => name,
                None => host_name(),
            };
            let new_ca = ::ft::tls_init(&::ft::TlsInit {
                node_dir: &dir,
                ca_dir: &ca,
                node_name: &name,
                days: args.days,
            })?;
            eprintln!(
                "lockstep: node certificate for {name:?} in {} (valid {} days), signed by {} in {}; make the other host's with --ca {}",
                dir.display(),
                args.days,
                if new_ca { "a new CA" } else { "the CA" },
                ca.display(),
                ca.display()
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
        timeout: *opts.timeout,
        max_lag: u64::try_from(opts.max_lag.as_millis())
            .unwrap_or(u64::MAX)
            .saturating_mul(::ft::INSTRUCTIONS_PER_MS),
        ..FtConfig::default()
    }
}

/// The log channel's TLS identity: `--ft-tls-dir`, or the default one,
/// created (with a CA of its own) on first use; `None` only with
/// `--ft-insecure-plaintext` (which the ft crate allows on loopback only).
fn tls(opts: &FtOptions) -> Result<Option<TlsIdentity>, Box<dyn Error>> {
    if opts.insecure_plaintext {
        return Ok(None);
    }
    if let Some(dir) = &opts.tls_dir {
        return Ok(Some(TlsIdentity::load(dir)?));
    }
    let data = data_dir()?;
    let dir = data.join("tls");
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&data)
        .map_err(|source| FtCmdError::CreateDir {
            dir: data.clone(),
            source,
        })?;
    // Two processes starting at once must not both make a CA.
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .open(data.join(".tls.lock"))
        .map_err(|source| FtCmdError::Lock {
            dir: data.clone(),
            source,
        })?;
    rustix::fs::flock(&lock, rustix::fs::FlockOperation::LockExclusive).map_err(|e| {
        FtCmdError::Lock {
            dir: data.clone(),
            source: e.into(),
        }
    })?;
    if !dir.join("node.pem").exists() {
        let ca = data.join("ca");
        let name = host_name();
        ::ft::tls_init(&::ft::TlsInit {
            node_dir: &dir,
            ca_dir: &ca,
            node_name: &name,
            days: 365,
        })?;
        eprintln!(
            "lockstep: created this host's FT certificates in {} (CA in {}); another host joins with `lockstep ft tls-init --ca DIR` from a copy of that CA",
            dir.display(),
            ca.display()
        );
    }
    Ok(Some(TlsIdentity::load(&dir)?))
}

/// `$XDG_DATA_HOME/lockstep`, else `~/.local/share/lockstep`.
fn data_dir() -> Result<PathBuf, FtCmdError> {
    let absolute = |var| {
        std::env::var_os(var)
            .map(PathBuf::from)
            .filter(|p| p.is_absolute())
    };
    let data = absolute("XDG_DATA_HOME")
        .or_else(|| absolute("HOME").map(|home| home.join(".local/share")))
        .ok_or(FtCmdError::NoDataDir)?;
    Ok(data.join("lockstep"))
}

fn host_name() -> String {
    let name = rustix::system::uname();
    let name = name.nodename().to_string_lossy().into_owned();
    if name.is_empty() {
        "lockstep-node".into()
    } else {
        name
    }
}

/// `--ft-control` (`--control` for `ft status`), or the default for the VM called `name`.
fn control_path(control: Option<PathBuf>, name: &str) -> PathBuf {
    control.unwrap_or_else(|| default_control_dir().join(format!("{name}.sock")))
}

/// `$XDG_RUNTIME_DIR/lockstep`, else `/tmp/lockstep-UID`.
pub fn default_control_dir() -> PathBuf {
    match std::env::var_os("XDG_RUNTIME_DIR") {
        Some(dir) if PathBuf::from(&dir).is_absolute() => PathBuf::from(dir).join("lockstep"),
        _ => PathBuf::from(format!(
            "/tmp/lockstep-{}",
            rustix::process::getuid().as_raw()
        )),
    }
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
    if opts.arbiter.is_none() && (backup.is_some() || opts.standby.is_some()) {
        return Err(crate::exit::usage(
            "fault tolerance needs --ft-arbiter PATH",
        ));
    }
    let arbiter = opts.arbiter.as_deref().map(Arbiter::open).transpose()?;
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

/// `lockstep ft status --json` for a primary.
pub fn status_doc(s: &Status) -> vmm::api::FtStatusDoc {
    let (protection, backup, why) = match &s.protection {
        Protection::Unprotected => ("unprotected", None, None),
        Protection::Syncing { backup } => ("syncing", Some(backup.clone()), None),
        Protection::Protected { backup } => ("protected", Some(backup.clone()), None),
        Protection::Migrating { target } => ("migrating", Some(target.clone()), None),
        Protection::Migrated { target } => ("migrated", Some(target.clone()), None),
        Protection::Fenced(why) => ("fenced", None, Some(why.clone())),
    };
    vmm::api::FtStatusDoc {
        schema: vmm::api::SCHEMA,
        role: vmm::api::FtRole::Primary,
        protection: protection.into(),
        backup,
        why,
        generation: s.generation,
        icount: s.icount,
        lag_instructions: Some(s.lag),
        max_lag_instructions: Some(s.max_lag),
        held_outputs: Some(s.held_outputs as u64),
        held_bytes: Some(s.held_bytes as u64),
        log_bytes: Some(s.log_bytes),
        log_seconds: Some(s.log_seconds),
        log_instructions: Some(s.log_instructions),
    }
}

/// `lockstep ft status` for a primary.
pub fn describe_status(s: &Status) -> String {
    let protection = match &s.protection {
        Protection::Unprotected => "unprotected".to_string(),
        Protection::Syncing { backup } => format!("unprotected (sending the VM to {backup})"),
        Protection::Protected { backup } => format!("protected by {backup}"),
        Protection::Migrating { target } => {
            format!("migrating to {target} (it follows; the hand-over comes once it has caught up)")
        }
        Protection::Migrated { target } => format!("migrated to {target}"),
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
    // A migration's target needs no arbiter (it goes live only when
    // handed the VM); given one, the VM is FT-capable once it runs here.
    let arbiter = match (&args.ft.arbiter, args.incoming) {
        (Some(path), _) => Some(Arbiter::open(path)?),
        (None, true) => None,
        (None, false) => return Err(crate::exit::usage(
            "lockstep ft backup needs --ft-arbiter PATH (on storage the primary's host shares), or --incoming to receive a migration",
        )),
    };
    if args.ft.insecure_plaintext {
        ::ft::check_loopback(&args.listen).map_err(|e| crate::exit::usage(e.to_string()))?;
    }
    let role = if args.incoming {
        "migration target"
    } else {
        "FT backup"
    };
    let _span = tracing::info_span!("ft_backup", listen = %args.listen).entered();
    let tls = tls(&args.ft)?;
    let replica_dir = match &args.replica_dir {
        Some(dir) => dir.clone(),
        None => default_replica_dir()?,
    };
    std::fs::create_dir_all(&replica_dir).map_err(|source| FtCmdError::CreateDir {
        dir: replica_dir.clone(),
        source,
    })?;
    // The VM's NICs must have a backend here before the VM is accepted:
    // a mismatch is the primary's error too, not a backup that dies later.
    let opened = std::cell::RefCell::new(None);
    let max_replica_bytes = match args.max_replica_size {
        Some(max) => max,
        None => free_space_less_margin(&replica_dir)?,
    };
    let accept = |hello: &::ft::Hello| -> Result<(), ::ft::AcceptError> {
        // A primary accepted before whose transfer failed: its claim goes.
        opened.borrow_mut().take();
        let vm: FtVm = serde_json::from_slice(&hello.setup).map_err(AcceptError::Description)?;
        // The name ends up in socket paths on this host.
        crate::vm::check_name(&vm.name).map_err(AcceptError::Name)?;
        if vm.macs.len() > machine::layout::VIRTIO_SLOTS {
            return Err(AcceptError::TooManyNics {
                nics: vm.macs.len(),
            }
            .into());
        }
        // One backup of a VM per host: two would share its control
        // socket's name and its replicas.
        let claim = crate::names::claim_backup(&vm.name).map_err(AcceptError::Claim)?;
        let nics = nics::open_for(&args.nets, &vm.macs).map_err(AcceptError::Nics)?;
        *opened.borrow_mut() = Some((vm, nics, claim));
        Ok(())
    };
    let options = BackupOptions {
        tls: tls.as_ref(),
        replica_dir: &replica_dir,
        config: config(&args.ft),
        accept: Some(&accept),
        max_replica_bytes,
        purpose: if args.incoming {
            ::ft::Purpose::Migrate
        } else {
            ::ft::Purpose::Protect
        },
    };
    let (mut backup, started) = {
        // Listening ends with the one primary taken.
        let listener = TcpListener::bind(&args.listen).map_err(|source| FtCmdError::Listen {
            addr: args.listen.clone(),
            source,
        })?;
        eprintln!("lockstep: {role} listening on {}", listener.local_addr()?);
        let started = Instant::now();
        let backup = ::ft::serve_until_ready(&listener, arbiter.as_ref(), &options, &mut |what| {
            tracing::info!(event = "refused", why = %what, "FT backup: refused a primary");
            eprintln!("lockstep: {role}: {what}")
        })?;
        (backup, started)
    };
    let Some((vm, mut nics, claim)) = opened.take() else {
        return Err(FtCmdError::AcceptedWithoutNics.into());
    };
    if vm.macs != backup.machine().nic_macs() {
        return Err(FtCmdError::OtherNics.into());
    }
    if args.cpu == run::RunCpu::Jit && !backup.set_jit(true) {
        eprintln!("lockstep: no translator on this host; using the interpreter");
    }
    let status = BackupStatus {
        executed: backup.executed(),
        generation: backup.hello().generation,
    };
    // While following, the primary may hold the VM's own name's socket
    // on this host.
    let suffix = if args.incoming { "incoming" } else { "backup" };
    let control_at = control_path(args.ft.control.clone(), &format!("{}-{suffix}", vm.name));
    let control = ControlServer::start_backup(&control_at, status)
        .map_err(|e| eprintln!("lockstep: FT backup: no control socket: {e}"))
        .ok();
    let _vm_span = tracing::info_span!("vm", vm = %vm.name).entered();
    tracing::info!(
        event = "following",
        generation = backup.hello().generation,
        received_ms = started.elapsed().as_millis() as u64,
        replicas = backup.replicas().len(),
        "FT backup: following the primary"
    );
    eprintln!(
        "lockstep: {role}: following the primary (arbiter generation {}; received the VM in {} ms; replicas: {})",
        backup.hello().generation,
        started.elapsed().as_millis(),
        describe_replicas(backup.replicas())
    );
    let live = match backup.follow()? {
        Outcome::Ended(reason) => {
            tracing::info!(
                event = "primary_ended",
                reason = ?reason,
                icount = backup.machine().icount(),
                "FT backup: the primary ended the run"
            );
            eprintln!(
                "lockstep: FT backup: the primary ended the run ({reason:?}) at icount {}; done",
                backup.machine().icount()
            );
            return Ok(ExitCode::SUCCESS);
        }
        Outcome::PrimaryLost { reason, at: _ } if args.incoming => {
            tracing::info!(event = "source_lost", why = %reason, "migration target: the source was lost");
            // The VM stays with its source: its copy here goes.
            let replicas = backup.replicas().to_vec();
            drop(backup);
            for path in &replicas {
                let _ = std::fs::remove_file(path);
            }
            return Err(
                ::ft::FtError::from(::ft::MigrationError::SourceLost { why: reason }).into(),
            );
        }
        Outcome::HandedOff { icount } => {
            let records = backup.records();
            let live = backup.take_over(live_sink(&args, &mut nics)?)?;
            say_announced(role, &live);
            tracing::info!(
                event = "live",
                icount,
                records,
                received_ms = started.elapsed().as_millis() as u64,
                "migration target: handed the VM; live"
            );
            eprintln!(
                "lockstep: migration target: live at icount {icount} (handed over by the source; {records} records re-executed; {} ms after it began)",
                started.elapsed().as_millis()
            );
            live
        }
        Outcome::PrimaryLost { reason, at } => {
            go_live_after(backup, reason, at, role, &args, &mut nics)?
        }
    };
    drop(control);
    // Live, this process is the VM: a new backup of it may run here.
    drop(claim);
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

/// The primary failed: win the arbiter and go live here.
fn go_live_after(
    backup: ::ft::Backup,
    reason: String,
    detected: Instant,
    role: &str,
    args: &BackupArgs,
    nics: &mut nics::Nics,
) -> Result<::ft::Live, Box<dyn Error>> {
    tracing::info!(
        event = "primary_lost",
        why = %reason,
        icount = backup.machine().icount(),
        "FT backup: primary lost"
    );
    eprintln!("lockstep: FT backup: primary lost: {reason}");
    let records = backup.records();
    let live = backup.go_live(live_sink(args, nics)?)?;
    say_announced(role, &live);
    tracing::info!(
        event = "live",
        icount = live.machine.icount(),
        generation = live.generation,
        records,
        after_detection_ms = detected.elapsed().as_millis() as u64,
        reemitted_bytes = live.reemitted_bytes,
        "FT backup: live"
    );
    eprintln!(
        "lockstep: FT backup: live at icount {} as arbiter generation {} ({} records re-executed; {} ms after detecting the failure; re-emitted {} bytes)",
        live.machine.icount(),
        live.generation,
        records,
        detected.elapsed().as_millis(),
        live.reemitted_bytes
    );
    Ok(live)
}

/// The sink of a backup going live: this host's console and NICs (frames
/// that arrived while it followed are dropped: they were the primary's).
fn live_sink(
    args: &BackupArgs,
    nics: &mut nics::Nics,
) -> Result<Box<dyn machine::Output>, Box<dyn Error>> {
    let sink = RunOutput {
        console: run::console_writer(&args.console)?,
        nics: std::mem::take(&mut nics.tx),
    };
    nics.discard_pending();
    Ok(Box::new(sink))
}

/// The gratuitous ARPs a backup going live sent.
fn say_announced(role: &str, live: &::ft::Live) {
    for (nic, ip) in &live.announced {
        let [a, b, c, d] = ip;
        eprintln!("lockstep: {role}: announced {a}.{b}.{c}.{d} on NIC {nic}");
    }
}

fn default_replica_dir() -> Result<PathBuf, FtCmdError> {
    Ok(data_dir()
        .map_err(|_| FtCmdError::NoReplicaDir)?
        .join("replicas"))
}

/// The replica directory's free space less a margin (5%, at least 1 GiB):
/// the default bound on what a primary's disks may take here.
fn free_space_less_margin(dir: &Path) -> Result<u64, FtCmdError> {
    let st = rustix::fs::statvfs(dir).map_err(|e| FtCmdError::FreeSpace {
        dir: dir.to_path_buf(),
        source: e.into(),
    })?;
    let free = st.f_bavail.saturating_mul(st.f_frsize);
    let margin = (free / 20).max(1 << 30);
    Ok(free.saturating_sub(margin))
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
    pub fn doc(&self) -> vmm::api::FtStatusDoc {
        vmm::api::FtStatusDoc {
            schema: vmm::api::SCHEMA,
            role: vmm::api::FtRole::Backup,
            protection: "following".into(),
            backup: None,
            why: None,
            generation: self.generation,
            icount: self.executed.load(Ordering::Acquire),
            lag_instructions: None,
            max_lag_instructions: None,
            held_outputs: None,
            held_bytes: None,
            log_bytes: None,
            log_seconds: None,
            log_instructions: None,
        }
    }

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
    let runner = Runner::new(rx, Pacing::RealTime)
        .with_journal(Box::new(journal))
        .with_anchor(handle.primary.anchor());
    let _receivers = nics.start_receivers(&events);
    let _signals = crate::signals::forward(events.clone(), None)?;
    let _terminal = match args.console {
        Console::Stdio => run::start_console_input(events)?,
        _ => None,
    };
    // A backup gone live runs as an FT primary (unprotected until a new
    // backup joins), in the one run loop.
    let mut session = vmm::Session::new(machine, runner, vmm::VmState::FtBackup)?;
    session.go_live()?;
    let mut session = session.with_on_save(|_| {
        eprint!("\r\nlockstep: snapshots are not available on a live FT backup\r\n")
    });
    let end = session.run();
    let mut machine = session.machine;
    drop(_terminal);
    machine.flush_disks()?;
    if let Some(target) = handle.primary.migrated() {
        eprintln!("lockstep: migrated to {target}; the VM runs there");
        return Ok(ExitCode::SUCCESS);
    }
    if let Some(why) = handle.primary.fenced() {
        return Err(crate::exit::fenced(format!("FT primary halted: {why}")));
    }
    match end? {
        vmm::Outcome::Poweroff(code) => Ok(crate::exit::guest_poweroff(code)),
        vmm::Outcome::Reset => {
            eprintln!("lockstep: the guest reset (--no-reboot)");
            Ok(crate::exit::Exit::GuestReset.into())
        }
        vmm::Outcome::Stopped | vmm::Outcome::Suspend => {
            eprintln!("lockstep: stopped");
            Ok(crate::exit::Exit::Stopped.into())
        }
    }
}
