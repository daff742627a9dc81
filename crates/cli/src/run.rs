//! `lockstep run`: boot Linux on the lockstep board, with the guest's
//! serial console on this terminal (or a file, or nowhere).
//!
//! Everything host-dependent is decided here and handed to the machine as
//! inputs: the RTC's boot time, the VM generation id, the RNG seed, typed
//! bytes. The run loop itself (idle sleeps, catch-up) is `machine::Runner`.
//!
//! Devices: `--disk` images become virtio-blk disks vda, vdb, … in slots
//! 0, 1, …; one virtio-rng always follows them, then one virtio-net per
//! `--net` (eth0, eth1, …).

use crate::nics::{self, NicError};
use crate::vm::{ImagePaths, VmSetup};
use clap::Args;
use guest_image::PullOptions;
use machine::layout::VIRTIO_SLOTS;
use machine::{
    BootImages, HostEvent, Input, InstructionsPerTick, Machine, Output, OutputEvent, Pacing,
    Runner, VirtioSpec,
};
use net::FrameTx;
use replay::session::{SharedWindows, TeeOutput};
use rustix::termios::{self, OptionalActions, OutputModes, Termios};
use serde::{Deserialize, Serialize};
use std::fs::File;
use std::io::{IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::mpsc::{self, Sender};
use std::time::{SystemTime, UNIX_EPOCH};

pub const DEFAULT_APPEND: &str = vmm::DEFAULT_APPEND;
/// Ctrl-A: the console escape key, as in QEMU.
const ESCAPE: u8 = 0x01;

#[derive(Args, Debug)]
pub struct RunArgs {
    /// Linux kernel: a flat RISC-V `Image` or an ELF [default: the pulled Debian image's].
    #[arg(long, value_name = "PATH")]
    pub kernel: Option<PathBuf>,
    /// Initial RAM disk (cpio, optionally compressed) [default: the pulled Debian image's].
    #[arg(long, value_name = "PATH")]
    pub initrd: Option<PathBuf>,
    /// OpenSBI firmware, `fw_dynamic` as a raw binary or ELF [default: the pulled Debian image's].
    #[arg(long, value_name = "PATH")]
    pub firmware: Option<PathBuf>,
    /// Kernel command line.
    #[arg(long, value_name = "ARGS", default_value = DEFAULT_APPEND)]
    pub append: String,
    /// Number of harts (1 to 4).
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u8).range(1..=4))]
    pub cpus: u8,
    /// Guest RAM, e.g. 512M or 1G.
    #[arg(long, value_name = "SIZE", default_value = "512M", value_parser = parse_memory)]
    pub memory: u64,
    /// Where the guest's serial console goes: stdio, none or file=PATH.
    #[arg(long, value_name = "WHERE", default_value = "stdio", value_parser = parse_console)]
    pub console: Console,
    /// A disk image as the next virtio disk (vda, vdb, …), as key=value
    /// fields: `path=PATH`; `format=raw` or `format=qcow2` pins its format
    /// (never guessed from the file: without it the file is raw, and one
    /// with an image header is refused); `readonly=on`; `backing=any` lets
    /// a qcow2 chain follow absolute or `..` backing names. Repeatable.
    #[arg(long = "disk", value_name = "path=PATH[,format=F][,readonly=on][,backing=any]", value_parser = parse_disk)]
    pub disks: Vec<DiskArg>,
    /// Seed of the virtio-rng entropy stream, 64 hex digits [default: fresh random bytes].
    #[arg(long, value_name = "HEX", value_parser = parse_seed)]
    pub rng_seed: Option<Seed>,
    /// A network interface (eth0, eth1, …), as key=value fields: `tap=NAME`
    /// (a Linux TAP device; needs root or CAP_NET_ADMIN) or `socket=DIR` (a
    /// shared segment: VMs naming the same directory are on one hub);
    /// `mac=MAC` sets its address. Repeatable.
    #[arg(long = "net", value_name = "SPEC", value_parser = parse_net)]
    pub nets: Vec<(String, net::NetSpec)>,
    /// The VM's name, unique on this host (a running one's is refused
    /// with its pid). NIC addresses derive from it unless given, and the
    /// log and the FT backup carry it. [default: `vm-` and 8 random hex
    /// digits, shown at start]
    #[arg(long = "name", value_name = "NAME", value_parser = parse_name)]
    pub name_arg: Option<String>,
    /// The name the run goes by: `--name`, a kept VM's, or a new one.
    #[arg(skip)]
    pub name: String,
    /// Record every input into a new replay log FILE (`lockstep replay FILE`
    /// re-executes the run and checks it). A log starts at boot: not with
    /// `--restore`.
    #[arg(long, value_name = "FILE")]
    pub record: Option<PathBuf>,
    /// Save a snapshot of the whole machine to FILE when the run is stopped
    /// (Ctrl-A x, SIGTERM, SIGINT); Ctrl-A s or SIGUSR1 saves to FILE while
    /// the guest runs on. `--restore FILE` resumes it.
    #[arg(long, value_name = "FILE")]
    pub save_on_exit: Option<PathBuf>,
    /// Resume a snapshot saved with --save-on-exit, instead of booting. The
    /// VM keeps its CPUs, memory, disks and NIC addresses; give one --net
    /// per NIC it had.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["kernel", "initrd", "firmware", "cpus", "memory", "disks", "rng_seed", "record", "instructions_per_tick"])]
    pub restore: Option<PathBuf>,
    /// With --restore: check everything the snapshot holds before running
    /// (boot images, every RAM chunk, the disks' written clusters re-read)
    /// and that the rebuilt machine's state hash is the one saved.
    #[arg(long, requires = "restore")]
    pub verify: bool,
    /// Guest time's rate: retired instructions per tick of the 10 MHz
    /// timebase (1 to 1000). Guest time keeps up with real time at N × 10
    /// MIPS; a hart faster than that waits for real time, so N caps the
    /// speed. Part of the machine (snapshots, logs, FT carry it).
    #[arg(long, value_name = "N", default_value_t = machine::DEFAULT_INSTRUCTIONS_PER_TICK, value_parser = parse_rate)]
    pub instructions_per_tick: u64,
    /// With --record: log the machine's state hash every N instructions.
    #[arg(long, value_name = "N", default_value_t = replay::session::CHECKPOINT_EVERY, value_parser = clap::value_parser!(u64).range(1..))]
    pub checkpoint_every: u64,
    /// Run fault-tolerant: protected by the backup listening at ADDR
    /// (`lockstep ft backup`) once it has received the VM (sent while the
    /// guest runs); outputs then leave only once the backup has the log.
    /// With `--record`, the run is both logged for the backup and
    /// recorded (every input and step goes to both).
    #[arg(long, value_name = "ADDR", requires = "arbiter")]
    pub ft_backup: Option<String>,
    /// End the run (exit code 4) when the guest resets, rather than
    /// booting again.
    #[arg(long)]
    pub no_reboot: bool,
    #[command(flatten)]
    pub ft: crate::ft::FtOptions,
    /// The generation id to boot with (a kept VM's; else a fresh one).
    #[arg(skip)]
    pub vmgenid: Option<[u8; 16]>,
    /// A kept VM's suspend: SIGUSR2 raises the flag and stops the run,
    /// which then saves the machine to the file.
    #[arg(skip)]
    pub suspend: Option<Suspend>,
    /// Called once a `--restore` has rebuilt the machine, before it runs.
    #[arg(skip)]
    pub after_restore: Option<AfterRestore>,
    /// A kept VM's run: its control socket answers commands, and a
    /// `--restore` runs on the bundle's disks (`disks`: the layers the
    /// state recorded, or new layers over them).
    #[arg(skip)]
    pub bundle: Option<BundleRun>,
    /// How the harts execute: `interp` (the interpreter) or `jit` (the
    /// translator to x86-64; the interpreter on other hosts). Not part of
    /// the machine: both compute the same, to the instruction.
    /// [default: `jit` on x86-64, else `interp`; `LOCKSTEP_CPU` overrides]
    #[arg(long, value_enum, default_value_t = RunCpu::host_default(), hide_default_value = true)]
    pub cpu: RunCpu,
}

/// `lockstep run --cpu`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum RunCpu {
    Interp,
    Jit,
}

impl RunCpu {
    /// The translator where there is one (x86-64), else the interpreter;
    /// `LOCKSTEP_CPU=interp|jit` chooses instead (e.g. to run a test suite
    /// under each).
    pub fn host_default() -> RunCpu {
        match std::env::var("LOCKSTEP_CPU").as_deref() {
            Ok("interp") => RunCpu::Interp,
            Ok("jit") => RunCpu::Jit,
            Ok(other) if !other.is_empty() => {
                eprintln!("lockstep: LOCKSTEP_CPU={other:?} is neither interp nor jit; ignored");
                Self::native()
            }
            _ => Self::native(),
        }
    }

    fn native() -> RunCpu {
        if cfg!(target_arch = "x86_64") {
            RunCpu::Jit
        } else {
            RunCpu::Interp
        }
    }
}

/// Where and whether to suspend (see [`RunArgs::suspend`]).
#[derive(Debug, Clone)]
pub struct Suspend {
    pub requested: std::sync::Arc<std::sync::atomic::AtomicBool>,
    /// Raised by a SIGTERM/SIGINT that came before the run's own signal
    /// handling was in place (the VM counts as running from when its
    /// process holds the run lock).
    pub stop_requested: std::sync::Arc<std::sync::atomic::AtomicBool>,
    pub to: PathBuf,
}

/// The kept VM a run belongs to (see [`RunArgs::bundle`]).
#[derive(Debug, Clone)]
pub struct BundleRun {
    pub home: vmm::Home,
    pub name: String,
}

/// A hook run after a restore (a resumed kept VM drops its saved state).
pub struct AfterRestore(pub Box<dyn FnOnce() -> Result<(), Box<dyn std::error::Error>>>);

impl std::fmt::Debug for AfterRestore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AfterRestore")
    }
}

/// A `--disk` argument.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiskArg {
    pub path: PathBuf,
    pub read_only: bool,
    /// As given; [`open_disks`] pins it (a log records it pinned).
    pub format: Option<disk::Format>,
    pub backing: disk::BackingPolicy,
}

impl DiskArg {
    /// How to open it, once its format is pinned.
    pub fn options(&self) -> Option<disk::OpenOptions> {
        Some(disk::OpenOptions {
            format: self.format?,
            read_only: self.read_only,
            backing: self.backing,
        })
    }
}

/// A 32-byte RNG seed.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Seed(pub [u8; 32]);

impl std::fmt::Debug for Seed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Seed(<secret>)")
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Console {
    Stdio,
    None,
    File(PathBuf),
    /// A kept VM's console log (appended, rotated); `echo`: also on the
    /// terminal, which types into the console; `socket`: also to a
    /// `lockstep vm console` client, which types into it.
    Log {
        path: PathBuf,
        echo: bool,
        socket: Option<SharedConsole>,
    },
}

/// A console socket shared by the run's output and input sides.
#[derive(Debug, Clone)]
pub struct SharedConsole(pub std::sync::Arc<crate::console_sock::ConsoleServer>);

impl PartialEq for SharedConsole {
    fn eq(&self, other: &Self) -> bool {
        std::sync::Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for SharedConsole {}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("cannot read {what} {path}: {source}")]
    Read {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("no {0} given and the default guest image is unavailable: {1}")]
    NoImage(&'static str, guest_image::ImageError),
    #[error("cannot create console file {path}: {source}")]
    ConsoleFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: {source}", path.display())]
    ControlSocket {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot put the terminal in raw mode: {0}")]
    Terminal(std::io::Error),
    #[error("{given} disks given; at most {max} fit beside the RNG device")]
    TooManyDisks { given: usize, max: usize },
    /// The disk crate's errors name the image file.
    #[error("cannot open disk: {0}")]
    Disk(disk::DiskError),
    #[error("{path} has a {found} header: say which format it is with --disk path={path},format={found} (or format=raw if it is a raw disk a guest wrote that header into); lockstep never guesses a format", path = .path.display())]
    UnpinnedFormat { path: PathBuf, found: disk::Format },
    #[error("cannot read /dev/urandom for the RNG seed: {0}")]
    Entropy(std::io::Error),
    #[error("{disks} disks and {nics} NICs need {} virtio slots; the board has {max}", disks + nics + 1)]
    TooManyDevices {
        disks: usize,
        nics: usize,
        max: usize,
    },
    #[error(transparent)]
    Nic(#[from] NicError),
    #[error(transparent)]
    Record(#[from] crate::record::RecordError),
}

/// Why a flag's value is refused (clap prints the message after the flag);
/// each message quotes the value as given.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ArgError {
    /// `what`: `memory size`, `size`.
    #[error("invalid {what} '{given}': must be more than zero")]
    ZeroSize { what: &'static str, given: String },
    #[error("invalid memory size: {0}")]
    BadMemory(#[source] ::disk::SizeError),
    #[error(transparent)]
    Size(#[from] ::disk::SizeError),
    #[error(transparent)]
    Name(#[from] crate::vm::NameError),
    #[error("'{given}' is not a whole number of instructions per tick")]
    RateNotNumber { given: String },
    #[error(transparent)]
    Rate(#[from] machine::BadRate),
    /// A spec's `key=value` fields, or a switch's `on`/`off`.
    #[error(transparent)]
    Fields(#[from] vocab::VocabError),
    #[error("invalid disk '{given}': the PATH[,ro] form is gone; write '{new}'")]
    OldDiskForm { given: String, new: String },
    #[error("invalid disk '{given}': {source}")]
    DiskFormat {
        given: String,
        #[source]
        source: ::disk::UnknownFormat,
    },
    #[error("invalid disk '{given}': backing={value}: expected any or contained")]
    Backing { given: String, value: String },
    #[error(
        "invalid disk '{given}': expected path=PATH[,format=raw|qcow2][,readonly=on][,backing=any]"
    )]
    NoDiskPath { given: String },
    #[error("invalid RNG seed: expected 64 hex digits (32 bytes), got {len} characters")]
    SeedLength { len: usize },
    #[error("invalid RNG seed: '{pair}' at position {at} is not hex")]
    SeedNotHex { pair: String, at: usize },
    #[error("invalid network '{given}': {source}")]
    Net {
        given: String,
        #[source]
        source: net::SpecError,
    },
    #[error("invalid console '{given}': the file:PATH form is gone; write 'file={path}'")]
    OldConsoleForm { given: String, path: String },
    #[error("invalid console '{given}': expected stdio, none or file=PATH")]
    Console { given: String },
}

/// Sizes like `512M`, `1G`, `1GiB`, `65536K` or plain bytes.
fn parse_memory(s: &str) -> Result<u64, ArgError> {
    match ::disk::parse_size(s) {
        Ok(0) => Err(ArgError::ZeroSize {
            what: "memory size",
            given: s.into(),
        }),
        other => other.map_err(ArgError::BadMemory),
    }
}

fn parse_name(s: &str) -> Result<String, ArgError> {
    crate::vm::check_name(s)?;
    Ok(s.to_string())
}

/// A clock rate: instructions per tick, 1 to 1000.
fn parse_rate(s: &str) -> Result<u64, ArgError> {
    let n: u64 = s
        .parse()
        .map_err(|_| ArgError::RateNotNumber { given: s.into() })?;
    Ok(InstructionsPerTick::new(n)?.get())
}

/// `path=PATH[,format=raw|qcow2][,readonly=on|off][,backing=any|contained]`.
pub(crate) fn parse_disk(s: &str) -> Result<DiskArg, ArgError> {
    let first = s.split(',').next().unwrap_or_default();
    if !first.contains('=') && !first.is_empty() {
        // Only a whole `ro` field is the old flag (a path may hold ",ro").
        let fields: Vec<&str> = s
            .split(',')
            .map(|f| if f == "ro" { "readonly=on" } else { f })
            .collect();
        return Err(ArgError::OldDiskForm {
            given: s.into(),
            new: format!("path={}", fields.join(",")),
        });
    }
    let mut arg = DiskArg {
        path: PathBuf::new(),
        read_only: false,
        format: None,
        backing: disk::BackingPolicy::Contained,
    };
    let what = "disk";
    for (key, value) in vocab::fields(what, s, &["path", "format", "readonly", "backing"])? {
        match key {
            "path" => arg.path = PathBuf::from(value),
            "format" => {
                arg.format = Some(value.parse().map_err(|source| ArgError::DiskFormat {
                    given: s.into(),
                    source,
                })?)
            }
            "readonly" => arg.read_only = vocab::on_off(what, key, value)?,
            _ => {
                arg.backing = match value {
                    "any" => disk::BackingPolicy::Any,
                    "contained" => disk::BackingPolicy::Contained,
                    other => {
                        return Err(ArgError::Backing {
                            given: s.into(),
                            value: other.into(),
                        })
                    }
                }
            }
        }
    }
    if arg.path.as_os_str().is_empty() {
        return Err(ArgError::NoDiskPath { given: s.into() });
    }
    Ok(arg)
}

/// 64 hex digits.
fn parse_seed(s: &str) -> Result<Seed, ArgError> {
    if s.len() != 64 || !s.is_ascii() {
        return Err(ArgError::SeedLength { len: s.len() });
    }
    let mut seed = [0u8; 32];
    for (i, byte) in seed.iter_mut().enumerate() {
        let pair = &s[2 * i..2 * i + 2];
        *byte = u8::from_str_radix(pair, 16).map_err(|_| ArgError::SeedNotHex {
            pair: pair.into(),
            at: 2 * i,
        })?;
    }
    Ok(Seed(seed))
}

pub(crate) fn parse_net(s: &str) -> Result<(String, net::NetSpec), ArgError> {
    s.parse()
        .map(|spec| (s.to_string(), spec))
        .map_err(|source| ArgError::Net {
            given: s.into(),
            source,
        })
}

/// `stdio`, `none` or `file=PATH`.
pub fn parse_console(s: &str) -> Result<Console, ArgError> {
    match s {
        "stdio" => Ok(Console::Stdio),
        "none" => Ok(Console::None),
        _ => match (s.strip_prefix("file="), s.strip_prefix("file:")) {
            (Some(path), _) if !path.is_empty() => Ok(Console::File(PathBuf::from(path))),
            (_, Some(path)) if !path.is_empty() => Err(ArgError::OldConsoleForm {
                given: s.into(),
                path: path.into(),
            }),
            _ => Err(ArgError::Console { given: s.into() }),
        },
    }
}

pub fn run(mut args: RunArgs) -> Result<ExitCode, Box<dyn std::error::Error>> {
    let mut generated = false;
    if args.name.is_empty() {
        args.name = match args.name_arg.take() {
            Some(name) => name,
            None => {
                generated = true;
                crate::names::unique()?
            }
        };
    }
    // A kept VM's bundle run lock already makes it the one of its name
    // in its home (two homes may each hold a VM "db"); an ad-hoc run
    // claims its name on the host.
    let _claim = match args.bundle {
        None => Some(crate::names::claim(&args.name)?),
        Some(_) => None,
    };
    let _span = tracing::info_span!("vm", vm = %args.name).entered();
    let windows = SharedWindows::default();
    let (mut machine, mut nics, setup) = match &args.restore {
        Some(path) => {
            let built = restore(&args, path)?;
            if let Some(AfterRestore(hook)) = args.after_restore.take() {
                hook()?;
            }
            built
        }
        None => boot(&args, &windows)?,
    };
    if args.cpu == RunCpu::Jit && !machine.set_jit(true) {
        eprintln!("lockstep: no translator on this host; using the interpreter");
    }
    let (events, rx) = mpsc::channel();
    let mut runner = Runner::new(rx, Pacing::RealTime).with_exit_on_reset(args.no_reboot);
    let mut ft_vm = None;
    if args.ft.migratable() {
        let (journal, handle) = crate::ft::protectable(
            &args.ft,
            &args.name,
            &mut machine,
            events.clone(),
            None,
            args.ft_backup.clone(),
        )?;
        runner = runner
            .with_journal(Box::new(journal))
            .with_anchor(handle.primary.anchor());
        ft_vm = Some(handle);
        if args.record.is_some() {
            let held = machine.replace_output(Box::new(machine::NullOutput));
            machine.replace_output(Box::new(TeeOutput::new(held, windows.clone())));
        }
    }
    if let (Some(path), Some(setup)) = (&args.record, setup) {
        let recorder =
            crate::record::start(path, setup, &mut machine, windows, args.checkpoint_every)?;
        runner = runner.with_journal(Box::new(recorder));
    }
    let _receivers = nics.start_receivers(&events);
    let suspend_flag = args.suspend.as_ref().map(|s| s.requested.clone());
    let _signals = crate::signals::forward(events.clone(), suspend_flag)?;
    if let Some(s) = &args.suspend {
        use std::sync::atomic::Ordering::SeqCst;
        if s.requested.load(SeqCst) || s.stop_requested.load(SeqCst) {
            let _ = events.send(HostEvent::Stop);
        }
    }
    if let Console::Log {
        socket: Some(socket),
        ..
    } = &args.console
    {
        socket.0.serve(events.clone()).map_err(RunError::Terminal)?;
    }
    let running = match ft_vm {
        Some(_) => vmm::VmState::FtPrimary,
        None => vmm::VmState::Running,
    };
    let mut session = vmm::Session::new(machine, runner, running)?;
    let _control = match &args.bundle {
        Some(b) => {
            let path = b.home.bundle_dir(&b.name).join(vmm::CONTROL_SOCKET);
            let server = vmm::control::ControlServer::bind(&path)
                .map_err(|source| RunError::ControlSocket { path, source })?;
            let wake = events.clone();
            let requests = server.serve(move || {
                let _ = wake.send(HostEvent::Save);
            })?;
            session = session.with_commands(b.home.clone(), &b.name, requests);
            Some(server)
        }
        None => {
            let to = args.save_on_exit.clone();
            session = session.with_on_save(move |machine| save(machine, to.as_deref()));
            None
        }
    };
    let _terminal = match args.console {
        Console::Stdio | Console::Log { echo: true, .. } => start_console_input(events)?,
        // No console input: the runner sees the channel closed.
        _ => None,
    };
    if generated {
        // Said once everything is set up: a run that fails before says one line.
        eprintln!("lockstep: VM name {} (choose one with --name)", args.name);
    }
    tracing::info!(
        event = "start",
        restored = args.restore.is_some(),
        icount = session.machine.icount(),
        harts = session.machine.config().cpus,
        instructions_per_tick = session.machine.config().instructions_per_tick.get(),
        cpu = ?args.cpu,
        "VM starting"
    );
    let (started, first_icount) = (std::time::Instant::now(), session.machine.icount());
    let end = session.run();
    let vmm::Session {
        mut machine,
        runner,
        ..
    } = session;
    drop(_terminal); // restore the terminal before printing anything
    match &end {
        Ok(outcome) => tracing::info!(
            event = "end",
            outcome = ?outcome,
            icount = machine.icount(),
            ran_ms = started.elapsed().as_millis() as u64,
            "VM run ended"
        ),
        Err(e) => {
            tracing::info!(event = "end", error = %e, icount = machine.icount(), "VM run failed")
        }
    }
    let run_time = started.elapsed();
    eprintln!(
        "{}",
        describe_speed(
            machine.icount() - first_icount,
            run_time,
            machine.config().instructions_per_tick,
            &runner.stats()
        )
    );
    if args.cpu == RunCpu::Jit {
        eprintln!("{}", describe_translator(&machine.jit_stats(), run_time));
    }
    machine.flush_disks()?;
    if nics.dropped() > 0 {
        eprintln!(
            "lockstep: {} received frames dropped while the VM was busy",
            nics.dropped()
        );
    }
    if let Some(vm) = &ft_vm {
        eprintln!(
            "lockstep: FT {}",
            crate::ft::describe_log(&vm.primary.status())
        );
    }
    if let Some(target) = ft_vm.as_ref().and_then(|vm| vm.primary.migrated()) {
        eprintln!("lockstep: migrated to {target}; the VM runs there");
        return Ok(ExitCode::SUCCESS);
    }
    if let Some(why) = ft_vm.as_ref().and_then(|vm| vm.primary.fenced()) {
        return Err(crate::exit::fenced(format!("FT primary halted: {why}")));
    }
    let end = match end? {
        vmm::Outcome::Suspend => match &args.suspend {
            Some(s) => {
                s.requested.store(true, std::sync::atomic::Ordering::SeqCst);
                vmm::Outcome::Stopped
            }
            None => {
                eprintln!("lockstep: this run cannot suspend; stopped");
                vmm::Outcome::Stopped
            }
        },
        other => other,
    };
    match end {
        vmm::Outcome::Poweroff(code) => Ok(crate::exit::guest_poweroff(code)),
        vmm::Outcome::Reset => {
            eprintln!("lockstep: the guest reset (--no-reboot)");
            Ok(crate::exit::Exit::GuestReset.into())
        }
        vmm::Outcome::Stopped | vmm::Outcome::Suspend => {
            if let Some(s) = args
                .suspend
                .as_ref()
                .filter(|s| s.requested.load(std::sync::atomic::Ordering::SeqCst))
            {
                let info = machine.save_snapshot(&s.to)?;
                eprintln!(
                    "lockstep: suspended at icount {} ({} MiB of RAM stored)",
                    machine.icount(),
                    (info.ram_pages_stored * 4096) >> 20
                );
                return Ok(crate::exit::Exit::Stopped.into());
            }
            match &args.save_on_exit {
                Some(path) => {
                    let info = machine.save_snapshot(path)?;
                    eprintln!(
                        "lockstep: stopped; saved to {} ({} MiB of RAM stored)",
                        path.display(),
                        (info.ram_pages_stored * 4096) >> 20
                    );
                }
                None => eprintln!("lockstep: stopped"),
            }
            Ok(crate::exit::Exit::Stopped.into())
        }
    }
}

/// The run's speed and what pacing did, as one line (`lockstep bench`
/// reads it: [`bench::parse_speed`]).
pub fn describe_speed(
    instructions: u64,
    host: std::time::Duration,
    rate: InstructionsPerTick,
    stats: &machine::PacingStats,
) -> String {
    let secs = host.as_secs_f64();
    let mips = if secs > 0.0 {
        instructions as f64 / secs / 1e6
    } else {
        0.0
    };
    let ticks_s = |ticks: u64| ticks as f64 / machine::layout::TIMEBASE_HZ as f64;
    format!(
        "lockstep: speed: {instructions} instructions in {secs:.3} s ({mips:.1} MIPS); \
         clock rate {rate} instructions per tick ({} MIPS nominal): waited {:.3} s for real time, \
         {} catch-up warps ({:.3} s), {} idle skips ({:.3} s)",
        rate.nominal_mips(),
        stats.ahead_wait.as_secs_f64(),
        stats.catch_up_warps,
        ticks_s(stats.catch_up_ticks),
        stats.idle_warps,
        ticks_s(stats.idle_ticks),
    )
}

/// The `lockstep: translator:` line printed at the end of a translated
/// run: the code cache, where instructions retired, why the run loop went
/// back to the interpreter, TLB misses and RAM's code epoch (issue #15).
pub fn describe_translator(j: &riscv::JitStats, run: std::time::Duration) -> String {
    let translating = j.translate_ns as f64 / 1e9;
    let share = if run.as_secs_f64() > 0.0 {
        100.0 * translating / run.as_secs_f64()
    } else {
        0.0
    };
    format!(
        "lockstep: translator: {} blocks ({} bytes of host code, {} per block, {} cache flushes; \
         translating took {translating:.3} s, {share:.1} % of the run), \
         {} block entries from the run loop, {} direct links, {} jumps through the jump \
         cache, {} instructions in blocks ({} in the fast loop, {} in the general loop); \
         back to the interpreter: {} code changes, {} fetch TLB misses, {} untranslated \
         instructions, {} block tails, {} traps, {} blocks ended by a helper; TLB misses: \
         {} fetch, {} load, {} store ({} without a walk); code epoch {}",
        j.blocks,
        j.code_bytes,
        j.code_bytes.checked_div(j.blocks).unwrap_or(0),
        j.flushes,
        j.entered,
        j.links,
        j.cache_jumps,
        j.retired_in_blocks,
        j.retired_fast,
        j.retired_general,
        j.exit_epoch,
        j.exit_fetch_miss,
        j.exit_empty,
        j.exit_budget_tail,
        j.exit_trap,
        j.exit_helper,
        j.tlb_miss_fetch,
        j.tlb_miss_load,
        j.tlb_miss_store,
        j.walks_cached,
        j.code_epoch
    )
}

/// Save while running (Ctrl-A s, SIGUSR1); a failure is reported and the
/// guest runs on.
fn save(machine: &mut Machine, path: Option<&Path>) {
    let Some(path) = path else {
        eprint!("\r\nlockstep: no snapshot file: start with --save-on-exit FILE\r\n");
        return;
    };
    let started = std::time::Instant::now();
    match machine.save_snapshot(path) {
        Ok(_) => eprint!(
            "\r\nlockstep: saved to {} in {} ms\r\n",
            path.display(),
            started.elapsed().as_millis()
        ),
        Err(e) => eprint!("\r\nlockstep: saving failed: {e}\r\n"),
    }
}

type Built = (Machine, nics::Nics, Option<VmSetup>);

/// A fresh machine from the command line.
fn boot(args: &RunArgs, windows: &SharedWindows) -> Result<Built, Box<dyn std::error::Error>> {
    let paths = image_paths(args)?;
    let images = read_images(&paths)?;
    let (disks, mut virtio, pinned_disks) = open_disks(&args.disks)?;
    let seed = match args.rng_seed {
        Some(Seed(seed)) => seed,
        None => new_rng_seed()?,
    };
    virtio.push(VirtioSpec::Rng { seed });
    if virtio.len() + args.nets.len() > VIRTIO_SLOTS {
        return Err(RunError::TooManyDevices {
            disks: args.disks.len(),
            nics: args.nets.len(),
            max: VIRTIO_SLOTS,
        }
        .into());
    }
    let mut nics = nics::open(&args.nets, &args.name)?;
    let setup = VmSetup {
        name: args.name.clone(),
        images: paths,
        image_digests: None,
        append: args.append.clone(),
        cpus: args.cpus,
        memory: args.memory,
        disks: pinned_disks,
        disk_identities: Vec::new(),
        rng_seed: seed,
        boot_wall_ns: wall_clock_ns(),
        vmgenid: args.vmgenid.unwrap_or_else(new_vmgenid),
        macs: nics.macs.iter().map(|m| m.octets()).collect(),
        instructions_per_tick: InstructionsPerTick::new(args.instructions_per_tick)?,
    };
    let config = setup.machine_config(images, virtio);
    let output: Box<dyn Output> = Box::new(RunOutput {
        console: console_writer(&args.console)?,
        nics: std::mem::take(&mut nics.tx),
    });
    // An FT primary holds outputs back until its backup has the log: a
    // recording sees them as the guest emits them, so its tee goes on
    // outside the primary's (in `run`).
    let output = match &args.record {
        Some(_) if !args.ft.migratable() => Box::new(TeeOutput::new(output, windows.clone())),
        _ => output,
    };
    let machine = Machine::with_disks(config, output, disks)?;
    Ok((machine, nics, Some(setup)))
}

/// A machine resumed from a snapshot, with a new generation id (Linux
/// reseeds its RNG: a restored VM must not repeat the original's secrets).
fn restore(args: &RunArgs, path: &Path) -> Result<Built, Box<dyn std::error::Error>> {
    let (disks, options) = match &args.bundle {
        // A kept VM's disks are its present layers: the ones the state
        // recorded, or new layers over them after a revert.
        Some(_) => (
            open_disks(&args.disks)?.0,
            machine::snapshot::RestoreOptions {
                new_top_layers: true,
                ..Default::default()
            },
        ),
        None => {
            let info = machine::snapshot::read_info(path)?;
            (machine::snapshot::open_disks(&info)?, Default::default())
        }
    };
    let started = std::time::Instant::now();
    let mut machine =
        Machine::restore_snapshot_with(path, Box::new(machine::NullOutput), disks, &options)?;
    let restored_in = started.elapsed();
    let mut nics = nics::open_for(&args.nets, &machine.nic_macs())?;
    machine.replace_output(Box::new(RunOutput {
        console: console_writer(&args.console)?,
        nics: std::mem::take(&mut nics.tx),
    }));
    machine.input(Input::VmGenId(args.vmgenid.unwrap_or_else(new_vmgenid)));
    eprintln!(
        "lockstep: restored {} at icount {} in {:.1} ms{}",
        path.display(),
        machine.icount(),
        restored_in.as_secs_f64() * 1e3,
        if args.verify {
            "; verified: images, RAM and disks as saved, state hash equal to the saved one"
        } else {
            ""
        }
    );
    Ok((machine, nics, None))
}

/// The images named on the command line, completed from the pulled
/// default image for any that are not.
fn image_paths(args: &RunArgs) -> Result<ImagePaths, RunError> {
    let (mut kernel, mut initrd, mut firmware) = (
        args.kernel.clone(),
        args.initrd.clone(),
        args.firmware.clone(),
    );
    if kernel.is_none() || initrd.is_none() || firmware.is_none() {
        let missing = if kernel.is_none() {
            "--kernel"
        } else if initrd.is_none() {
            "--initrd"
        } else {
            "--firmware"
        };
        let image = guest_image::pull(&PullOptions::default())
            .map_err(|e| RunError::NoImage(missing, e))?;
        kernel.get_or_insert(image.kernel);
        initrd.get_or_insert(image.initrd);
        firmware.get_or_insert(image.firmware);
    }
    Ok(ImagePaths {
        kernel: kernel.unwrap_or_default(),
        initrd: initrd.unwrap_or_default(),
        firmware: firmware.unwrap_or_default(),
    })
}

/// Read the boot images.
pub fn read_images(paths: &ImagePaths) -> Result<BootImages, RunError> {
    let read = |what, path: &Path| -> Result<Vec<u8>, RunError> {
        std::fs::read(path).map_err(|source| RunError::Read {
            what,
            path: path.to_path_buf(),
            source,
        })
    };
    Ok(BootImages {
        kernel: read("kernel", &paths.kernel)?.into(),
        initrd: Some(read("initrd", &paths.initrd)?.into()),
        firmware: read("firmware", &paths.firmware)?.into(),
    })
}

type Disk = Box<dyn disk::BlockDevice>;
/// The disks, their virtio specs, and the arguments with formats pinned.
type OpenedDisks = (Vec<Disk>, Vec<VirtioSpec>, Vec<DiskArg>);

/// Open the `--disk` images, with a virtio-blk spec for each (serials
/// `lockstep-vda`, `lockstep-vdb`, …). Returns the arguments with their
/// formats pinned, as a log records them.
pub fn open_disks(args: &[DiskArg]) -> Result<OpenedDisks, RunError> {
    let max = VIRTIO_SLOTS - 1;
    if args.len() > max {
        return Err(RunError::TooManyDisks {
            given: args.len(),
            max,
        });
    }
    let mut disks = Vec::with_capacity(args.len());
    let mut specs = Vec::with_capacity(args.len() + 1);
    let mut pinned = Vec::with_capacity(args.len());
    for (letter, arg) in (0..).zip(args) {
        let mut arg = arg.clone();
        let format = match arg.format {
            Some(format) => format,
            None => unpinned_format(&arg.path)?,
        };
        arg.format = Some(format);
        let options = disk::OpenOptions {
            format,
            read_only: arg.read_only,
            backing: arg.backing,
        };
        disks.push(disk::open(&arg.path, &options).map_err(RunError::Disk)?);
        specs.push(block_spec(letter));
        pinned.push(arg);
    }
    Ok((disks, specs, pinned))
}

/// A disk given without `format=` is raw, and only if its first bytes do
/// not look like an image format: a file with a qcow2 header may be a
/// qcow2 image or a raw disk a guest wrote one into, and only the user
/// knows which.
fn unpinned_format(path: &Path) -> Result<disk::Format, RunError> {
    match disk::probe(path).map_err(RunError::Disk)? {
        disk::Format::Raw => Ok(disk::Format::Raw),
        found => Err(RunError::UnpinnedFormat {
            path: path.to_path_buf(),
            found,
        }),
    }
}

/// The virtio-blk spec of the `n`th disk: serial `lockstep-vda`, `-vdb`, ….
pub fn block_spec(n: u8) -> VirtioSpec {
    VirtioSpec::Block {
        serial: format!("lockstep-vd{}", char::from(b'a' + n)),
    }
}

/// A fresh secret seed for the VM's entropy device.
fn new_rng_seed() -> Result<[u8; 32], RunError> {
    let mut seed = [0u8; 32];
    File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut seed))
        .map_err(RunError::Entropy)?;
    Ok(seed)
}

/// The RTC's time at boot, decided once by the host.
fn wall_clock_ns() -> u64 {
    let since_epoch = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    u64::try_from(since_epoch.as_nanos()).unwrap_or(u64::MAX)
}

/// A fresh random generation id; if the host has no entropy source, one
/// derived from the time (it only needs to differ between runs).
fn new_vmgenid() -> [u8; 16] {
    let mut id = [0u8; 16];
    let random = File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut id));
    if random.is_err() {
        id = (u128::from(wall_clock_ns()) ^ u128::from(std::process::id()) << 64).to_le_bytes();
    }
    id
}

/// Where a running VM's outputs go: console bytes to a file or stdout as
/// they come, frames to the NICs' backends.
pub struct RunOutput {
    pub console: Option<Box<dyn Write + Send>>,
    pub nics: Vec<Box<dyn FrameTx>>,
}

impl Output for RunOutput {
    fn emit(&mut self, _icount: u64, event: OutputEvent<'_>) {
        match event {
            OutputEvent::Console(bytes) => {
                if let Some(w) = &mut self.console {
                    // A closed stdout or full disk must not stop the guest.
                    let _ = w.write_all(bytes).and_then(|()| w.flush());
                }
            }
            OutputEvent::Net { nic, frame } => {
                if let Some(tx) = self.nics.get_mut(nic) {
                    // A frame the backend cannot take is lost, as on a wire.
                    let _ = tx.send(frame);
                }
            }
        }
    }
}

pub fn console_writer(console: &Console) -> Result<Option<Box<dyn Write + Send>>, RunError> {
    Ok(match console {
        Console::Log { path, echo, socket } => {
            let log = vmm::ConsoleLog::open(path, vmm::MAX_CONSOLE_LOG).map_err(|source| {
                RunError::ConsoleFile {
                    path: path.clone(),
                    source,
                }
            })?;
            let mut log: Box<dyn Write + Send> = Box::new(std::io::LineWriter::new(log));
            if let Some(socket) = socket {
                log = Box::new(Tee(Box::new(socket.0.writer()), log));
            }
            Some(if *echo {
                Box::new(Tee(Box::new(std::io::stdout()), log))
            } else {
                log
            })
        }
        Console::Stdio => Some(Box::new(std::io::stdout())),
        Console::None => None,
        Console::File(path) => {
            // Guest output is guest data: 0600 when new, and a symbolic
            // link at the path is refused rather than followed.
            use std::os::unix::fs::OpenOptionsExt;
            let file = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
                .open(path)
                .map_err(|source| RunError::ConsoleFile {
                    path: path.clone(),
                    source: if source.raw_os_error() == Some(rustix::io::Errno::LOOP.raw_os_error())
                    {
                        std::io::Error::other("it is a symbolic link; refusing to follow it")
                    } else {
                        source
                    },
                })?;
            Some(Box::new(std::io::BufWriter::new(file)))
        }
    })
}

/// Writes to both (the terminal and the console log).
struct Tee(Box<dyn Write + Send>, Box<dyn Write + Send>);

impl Write for Tee {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.write_all(buf)?;
        self.1.write_all(buf)?;
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()?;
        self.1.flush()
    }
}

/// Puts the terminal back as it was when dropped (on every exit path,
/// unwinding included).
pub(crate) struct RawTerminal {
    saved: Termios,
}

impl RawTerminal {
    pub(crate) fn enter() -> Result<Self, RunError> {
        let stdin = std::io::stdin();
        let saved = termios::tcgetattr(&stdin).map_err(|e| RunError::Terminal(e.into()))?;
        let mut raw = saved.clone();
        raw.make_raw();
        // Keep output processing, as QEMU does, so host-side messages stay readable.
        raw.output_modes.insert(OutputModes::OPOST);
        termios::tcsetattr(&stdin, OptionalActions::Now, &raw)
            .map_err(|e| RunError::Terminal(e.into()))?;
        Ok(Self { saved })
    }
}

impl Drop for RawTerminal {
    fn drop(&mut self) {
        let _ = termios::tcsetattr(std::io::stdin(), OptionalActions::Now, &self.saved);
    }
}

/// Read stdin on a thread and send it to the run loop. On a terminal:
/// raw mode, with Ctrl-A x to quit; otherwise bytes pass through untouched
/// and EOF just ends input (the guest keeps running).
pub(crate) fn start_console_input(
    events: Sender<HostEvent>,
) -> Result<Option<RawTerminal>, RunError> {
    let interactive = std::io::stdin().is_terminal();
    let terminal = if interactive {
        eprintln!("lockstep: console on this terminal; press Ctrl-A x to quit");
        Some(RawTerminal::enter()?)
    } else {
        None
    };
    std::thread::spawn(move || read_console(events, interactive));
    Ok(terminal)
}

fn read_console(events: Sender<HostEvent>, interactive: bool) {
    let mut stdin = std::io::stdin().lock();
    let mut buf = [0u8; 256];
    let mut escape = Escape::default();
    loop {
        let n = match stdin.read(&mut buf) {
            Ok(0) => return,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => return,
        };
        let batch = if interactive {
            escape.filter(&buf[..n])
        } else {
            vec![HostEvent::Console(buf[..n].to_vec())]
        };
        for event in batch {
            let stop = event == HostEvent::Stop;
            if events.send(event).is_err() || stop {
                return;
            }
        }
    }
}

/// The Ctrl-A escape: Ctrl-A x quits, Ctrl-A s saves a snapshot, Ctrl-A
/// Ctrl-A types one Ctrl-A, Ctrl-A h shows help; anything else after
/// Ctrl-A is dropped.
#[derive(Default)]
struct Escape {
    pending: bool,
}

impl Escape {
    /// The events a read from the terminal makes, in order.
    fn filter(&mut self, input: &[u8]) -> Vec<HostEvent> {
        let mut events = Vec::new();
        let mut out = Vec::with_capacity(input.len());
        for &b in input {
            if !std::mem::take(&mut self.pending) {
                if b == ESCAPE {
                    self.pending = true;
                } else {
                    out.push(b);
                }
                continue;
            }
            match b {
                b'x' | b'X' | b's' | b'S' => {
                    if !out.is_empty() {
                        events.push(HostEvent::Console(std::mem::take(&mut out)));
                    }
                    if b.eq_ignore_ascii_case(&b'x') {
                        events.push(HostEvent::Stop);
                        return events;
                    }
                    events.push(HostEvent::Save);
                }
                ESCAPE => out.push(ESCAPE),
                b'h' | b'H' => {
                    eprint!("\r\nC-a x    quit (saving to --save-on-exit FILE if given)\r\nC-a s    save a snapshot to --save-on-exit FILE and run on\r\nC-a C-a  type C-a\r\nC-a h    this help\r\n")
                }
                _ => {}
            }
        }
        if !out.is_empty() || events.is_empty() {
            events.push(HostEvent::Console(out));
        }
        events
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clock_rates() {
        assert_eq!(parse_rate("64"), Ok(64));
        assert_eq!(parse_rate("1"), Ok(1));
        assert_eq!(parse_rate("1000"), Ok(1000));
        for bad in ["0", "1001", "-3", "x", ""] {
            assert!(parse_rate(bad).is_err(), "{bad:?} accepted");
        }
        assert!(parse_rate("0")
            .unwrap_err()
            .to_string()
            .contains("1 to 1000"));
    }

    #[test]
    fn the_speed_line_reads_back() {
        let stats = machine::PacingStats {
            ahead_wait: std::time::Duration::from_millis(1250),
            catch_up_warps: 3,
            catch_up_ticks: 450_000,
            idle_warps: 2,
            idle_ticks: 10_000_000,
        };
        let line = describe_speed(
            2_000_000_000,
            std::time::Duration::from_secs(10),
            InstructionsPerTick::DEFAULT,
            &stats,
        );
        assert!(line.contains("(200.0 MIPS)"), "{line}");
        assert!(
            line.contains("3 catch-up warps (0.045 s), 2 idle skips (1.000 s)"),
            "{line}"
        );
        assert_eq!(bench::parse_speed(&line), Some((200.0, 1.25)));
        assert_eq!(bench::parse_speed("lockstep: stopped"), None);
    }

    #[test]
    fn memory_sizes() {
        assert_eq!(parse_memory("512M"), Ok(512 << 20));
        assert_eq!(parse_memory("1G"), Ok(1 << 30));
        assert_eq!(parse_memory("1GiB"), Ok(1 << 30));
        assert_eq!(parse_memory("2g"), Ok(2 << 30));
        assert_eq!(parse_memory("65536K"), Ok(64 << 20));
        assert_eq!(parse_memory("1048576"), Ok(1 << 20));
        for bad in ["", "M", "12X", "-1G", "0", "99999999999T"] {
            assert!(
                parse_memory(bad)
                    .unwrap_err()
                    .to_string()
                    .contains("invalid memory size"),
                "{bad}"
            );
        }
    }

    #[test]
    fn disks() {
        assert_eq!(
            parse_disk("path=/a/b.qcow2"),
            Ok(DiskArg {
                path: "/a/b.qcow2".into(),
                read_only: false,
                format: None,
                backing: disk::BackingPolicy::Contained,
            })
        );
        assert_eq!(
            parse_disk("readonly=on,path=x.img"),
            Ok(DiskArg {
                path: "x.img".into(),
                read_only: true,
                format: None,
                backing: disk::BackingPolicy::Contained,
            })
        );
        assert_eq!(
            parse_disk("path=a.qcow2,format=qcow2,readonly=on,backing=any"),
            Ok(DiskArg {
                path: "a.qcow2".into(),
                read_only: true,
                format: Some(disk::Format::Qcow2),
                backing: disk::BackingPolicy::Any,
            })
        );
        for (bad, says) in [
            ("path=a,format=vmdk", "unknown disk format 'vmdk'"),
            ("path=a,backing=up", "backing=up"),
            ("path=a,readonly=yes", "readonly=on or readonly=off"),
            ("path=a,ro", "'ro' is not key=value"),
            ("readonly=on", "expected path=PATH"),
            ("path=", "expected path=PATH"),
            ("", "is not key=value"),
            // The old form, refused naming the new.
            ("a.img,ro", "write 'path=a.img,readonly=on'"),
            ("a.qcow2,format=qcow2", "write 'path=a.qcow2,format=qcow2'"),
        ] {
            let err = parse_disk(bad).unwrap_err().to_string();
            assert!(err.contains(says), "{bad:?}: {err}");
        }
    }

    #[test]
    fn seeds() {
        let hex = "00ff10".to_string() + &"ab".repeat(29);
        let Seed(seed) = parse_seed(&hex).unwrap();
        assert_eq!(&seed[..3], &[0x00, 0xff, 0x10]);
        assert_eq!(seed[31], 0xab);
        assert!(parse_seed("abc")
            .unwrap_err()
            .to_string()
            .contains("64 hex digits"));
        let bad = "zz".to_string() + &"00".repeat(31);
        assert!(parse_seed(&bad)
            .unwrap_err()
            .to_string()
            .contains("not hex"));
        assert!(parse_seed(&"é".repeat(32)).is_err());
        assert_eq!(format!("{:?}", Seed(seed)), "Seed(<secret>)");
    }

    #[test]
    fn too_many_disks() {
        let args = vec![
            DiskArg {
                path: "/nonexistent".into(),
                read_only: true,
                format: Some(disk::Format::Raw),
                backing: disk::BackingPolicy::Contained,
            };
            8
        ];
        assert!(matches!(
            open_disks(&args),
            Err(RunError::TooManyDisks { given: 8, max: 7 })
        ));
        let err = open_disks(&args[..1]).err().unwrap();
        assert!(err.to_string().contains("/nonexistent"), "{err}");
    }

    #[test]
    fn consoles() {
        assert_eq!(parse_console("stdio"), Ok(Console::Stdio));
        assert_eq!(parse_console("none"), Ok(Console::None));
        assert_eq!(
            parse_console("file=/tmp/x.log"),
            Ok(Console::File("/tmp/x.log".into()))
        );
        assert!(parse_console("file=").is_err());
        assert!(parse_console("file:/tmp/x.log")
            .unwrap_err()
            .to_string()
            .contains("write 'file=/tmp/x.log'"));
        assert!(parse_console("tcp:1").is_err());
    }

    #[test]
    fn escape_sequences() {
        use HostEvent::{Console as C, Save, Stop};
        let mut e = Escape::default();
        assert_eq!(e.filter(b"ab"), [C(b"ab".to_vec())]);
        assert_eq!(
            e.filter(&[b'a', ESCAPE, ESCAPE, b'b']),
            [C(vec![b'a', ESCAPE, b'b'])]
        );
        // An escape split across reads still works.
        assert_eq!(e.filter(&[b'c', ESCAPE]), [C(b"c".to_vec())]);
        assert_eq!(e.filter(b"x"), [Stop]);
        assert_eq!(e.filter(&[ESCAPE, b'q', b'z']), [C(b"z".to_vec())]);
        // A save keeps what was typed around it, in order.
        assert_eq!(
            e.filter(&[b'a', ESCAPE, b's', b'b']),
            [C(b"a".to_vec()), Save, C(b"b".to_vec())]
        );
        assert_eq!(
            e.filter(&[b'a', ESCAPE, b'x', b'b']),
            [C(b"a".to_vec()), Stop]
        );
    }
}
