//! `lockstep vm …` and `lockstep snapshot …`: VMs kept in bundles
//! (`crates/vmm`), in the vocabulary of virsh, vmrun and govc.

use crate::run::{self, Console, DiskArg, RunArgs};
use clap::{Args, Subcommand};
use std::error::Error;
use std::path::PathBuf;
use std::process::{ExitCode, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use vmm::{CloneFrom, CreateSpec, DiskSource, Home, RunState};

mod remote;

type CmdResult = Result<ExitCode, Box<dyn Error>>;

#[derive(Args, Debug)]
pub struct VmArgs {
    #[command(subcommand)]
    command: VmCommand,
}

#[derive(Subcommand, Debug)]
enum VmCommand {
    /// Create a VM (default: the pulled Debian image and one empty 8 GiB disk).
    Create(Box<CreateArgs>),
    /// List the VMs: name, state, CPUs, memory, uptime, snapshots.
    List(ListArgs),
    /// Show everything about a VM: uuid, disks and their files, NICs and MACs, snapshots.
    Show(NameJson),
    /// Start a VM in the background (its own process; `vm console` attaches
    /// to it; `--attach` runs it with the console here).
    Start(StartArgs),
    /// Attach to a running (detached) VM's console; Ctrl-] detaches, the VM runs on.
    Console(Name),
    /// Stop a running VM (SIGTERM: it stops at the next instruction boundary and
    /// flushes its disks); `--force` kills it if it has not stopped in time.
    Stop(StopArgs),
    /// Kill a running VM's process at once (SIGKILL; disks as at the last flush).
    Kill(Name),
    /// Hold a running VM's guest at an instruction boundary, in memory
    /// (its process stays; `vm unpause` lets it run on).
    Pause(Name),
    /// Let a paused VM's guest run on.
    Unpause(Name),
    /// Suspend a running VM to disk: its whole machine state goes into the
    /// bundle and its process exits; `vm resume` (or `vm start`) continues
    /// it at the same instruction.
    Suspend(StopArgs),
    /// Resume a suspended VM (as `vm start`).
    Resume(StartArgs),
    /// Delete a VM and its files (refused while it runs, unless --force, and
    /// while linked clones stand on it).
    Delete(DeleteArgs),
    /// Rename a powered-off VM.
    Rename(RenameArgs),
    /// Change a VM's settings (fault tolerance), from its next start.
    Set(SetArgs),
    /// Clone a VM: full (disks copied, flattened) or linked (standing on a
    /// snapshot's frozen layers); new uuid, MACs and generation id.
    Clone(CloneArgs),
}

#[derive(Args, Debug)]
struct Name {
    /// The VM.
    name: String,
}

#[derive(Args, Debug)]
struct NameJson {
    /// The VM.
    name: String,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Args, Debug)]
struct ListArgs {
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Args, Debug)]
struct CreateArgs {
    /// The VM's name: letters, digits, '.', '_', '-' (up to 64).
    name: String,
    /// Number of harts (1 to 4).
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u8).range(1..=4))]
    cpus: u8,
    /// Guest RAM, e.g. 512M or 1G.
    #[arg(long, value_name = "SIZE", default_value = "512M", value_parser = parse_size)]
    memory: u64,
    /// An empty disk of SIZE (e.g. 8G). Repeatable; disks come in the order given.
    #[arg(long = "disk-size", value_name = "SIZE", value_parser = parse_size)]
    disk_sizes: Vec<u64>,
    /// An existing image, copied into the VM (`path=PATH,format=raw|qcow2`:
    /// the format is never guessed; `backing=any` as on `run`). Repeatable;
    /// after the --disk-size disks.
    #[arg(long = "disk", value_name = "path=PATH,format=F")]
    disks: Vec<String>,
    /// A NIC: `socket=DIR` or `tap=NAME`, optionally `,mac=MAC` [default MAC: random, locally administered].
    #[arg(long = "net", value_name = "SPEC")]
    nets: Vec<String>,
    /// Linux kernel [default: the pulled Debian image's].
    #[arg(long, value_name = "PATH")]
    kernel: Option<PathBuf>,
    /// Initial RAM disk [default: the pulled Debian image's].
    #[arg(long, value_name = "PATH")]
    initrd: Option<PathBuf>,
    /// OpenSBI firmware [default: the pulled Debian image's].
    #[arg(long, value_name = "PATH")]
    firmware: Option<PathBuf>,
    /// Kernel command line [default: `console=ttyS0`; with --image also `quiet root=/dev/vda
    /// rw systemd.hostname=NAME`].
    #[arg(long, value_name = "ARGS")]
    append: Option<String>,
    /// Boot a Debian root file system built by `lockstep image build debian` (built now
    /// if not cached): `debian` (minbase) or `debian-standard`. It is copied in as the first
    /// disk (vda); the kernel is the pulled image's.
    #[arg(long, value_name = "IMAGE", value_parser = ["debian", "debian-minbase", "debian-standard"])]
    image: Option<String>,
    /// With --image: an SSH public key file whose keys root accepts (handed to systemd as the
    /// `ssh.authorized_keys.root` credential on the kernel command line).
    #[arg(long, value_name = "FILE", requires = "image")]
    ssh_key: Option<PathBuf>,
    /// Guest time's rate: retired instructions per 10 MHz tick (1 to 1000).
    #[arg(long, value_name = "N", default_value_t = machine::DEFAULT_INSTRUCTIONS_PER_TICK)]
    instructions_per_tick: u64,
    #[command(flatten)]
    ft: FtFlags,
}

/// A kept VM's fault tolerance (as `lockstep run --ft-backup`).
#[derive(Args, Debug)]
struct FtFlags {
    /// Run fault-tolerant, protected by the backup listening at ADDR
    /// (`lockstep ft backup`) from each start.
    #[arg(long, value_name = "ADDR", requires = "arbiter")]
    ft_backup: Option<String>,
    /// The arbiter file, on storage both FT hosts share.
    #[arg(long = "ft-arbiter", value_name = "PATH", requires = "ft_backup")]
    arbiter: Option<PathBuf>,
    /// The log channel's TLS directory [default: lockstep's].
    #[arg(long = "ft-tls-dir", value_name = "DIR", requires = "ft_backup")]
    tls_dir: Option<PathBuf>,
    #[arg(long = "arbiter", hide = true, value_parser = vocab::renamed("--ft-arbiter"))]
    old_arbiter: Option<String>,
    #[arg(long = "tls-dir", hide = true, value_parser = vocab::renamed("--ft-tls-dir"))]
    old_tls_dir: Option<String>,
}

impl FtFlags {
    fn settings(&self) -> Result<Option<vmm::FtSettings>, Box<dyn Error>> {
        match (&self.ft_backup, &self.arbiter) {
            (Some(backup), Some(arbiter)) => Ok(Some(vmm::FtSettings {
                backup: backup.clone(),
                arbiter: std::path::absolute(arbiter)?,
                tls_dir: self.tls_dir.as_ref().map(std::path::absolute).transpose()?,
            })),
            _ => Ok(None),
        }
    }
}

#[derive(Args, Debug)]
struct SetArgs {
    /// The VM.
    name: String,
    #[command(flatten)]
    ft: FtFlags,
    /// Run it without fault tolerance from its next start.
    #[arg(long, conflicts_with_all = ["ft_backup", "arbiter", "tls_dir"])]
    no_ft: bool,
}

#[derive(Args, Debug)]
struct StartArgs {
    /// The VM.
    name: String,
    /// Run in this terminal with the console on it (Ctrl-A x stops the VM).
    #[arg(long)]
    attach: bool,
    /// Run in this process with the console only in console.log (what a
    /// background start runs).
    #[arg(long, hide = true, conflicts_with = "attach")]
    foreground: bool,
    /// Resuming: check the saved state entirely first (RAM, images, disks)
    /// and that the rebuilt machine's state hash equals the saved one.
    #[arg(long)]
    verify: bool,
}

#[derive(Args, Debug)]
struct StopArgs {
    /// The VM.
    name: String,
    /// How long to wait for it to stop.
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = vocab::parse_duration)]
    timeout: humantime::Duration,
    /// Kill it (SIGKILL) if it has not stopped within the timeout.
    #[arg(long)]
    force: bool,
}

#[derive(Args, Debug)]
struct DeleteArgs {
    /// The VM.
    name: String,
    /// Kill the VM first if it runs.
    #[arg(long)]
    force: bool,
}

#[derive(Args, Debug)]
struct RenameArgs {
    /// The VM's name now.
    name: String,
    /// Its new name.
    new_name: String,
}

#[derive(Args, Debug)]
struct CloneArgs {
    /// The VM to clone.
    source: String,
    /// The new VM's name.
    name: String,
    /// A linked clone: its disks stand on the source's snapshot layers
    /// (read-only, shared) instead of copies. Without --from-snapshot a
    /// snapshot of the source is taken for it.
    #[arg(long)]
    linked: bool,
    /// Clone this snapshot of the source (else its present state).
    #[arg(long, value_name = "SNAP")]
    from_snapshot: Option<String>,
}

/// `lockstep login`.
#[derive(Args, Debug)]
pub struct LoginArgs {
    /// The user.
    #[arg(long, default_value = "admin")]
    user: String,
    /// Read the password from this file (else from stdin).
    #[arg(long, value_name = "FILE")]
    password_file: Option<PathBuf>,
}

pub fn login(args: LoginArgs, api: Option<&str>) -> CmdResult {
    let api = api.ok_or_else(|| {
        crate::exit::usage("login needs the API: --api unix:/PATH/lockstepd.sock or https://HOST:PORT (or LOCKSTEP_API)")
    })?;
    remote::login(api, &args.user, args.password_file.as_deref())
}

#[derive(Args, Debug)]
pub struct SnapshotArgs {
    #[command(subcommand)]
    command: SnapshotCommand,
}

#[derive(Subcommand, Debug)]
enum SnapshotCommand {
    /// Take a snapshot of a powered-off VM.
    Create(SnapCreateArgs),
    /// List a VM's snapshots (`--tree`: as a tree, the present state marked).
    List(SnapListArgs),
    /// Go back to a snapshot (any node of the tree): the present disks are discarded.
    Revert(SnapName),
    /// Delete a snapshot, merging its disk layers into its children (and the present state).
    Delete(SnapDeleteArgs),
    /// Show one snapshot.
    Show(SnapShowArgs),
}

#[derive(Args, Debug)]
struct SnapName {
    /// The VM.
    vm: String,
    /// The snapshot.
    snapshot: String,
}

#[derive(Args, Debug)]
struct SnapCreateArgs {
    /// The VM.
    vm: String,
    /// The snapshot's name.
    snapshot: String,
    /// A description.
    #[arg(long, value_name = "TEXT", default_value = "")]
    description: String,
    /// Disks only (the only kind a powered-off VM has; accepted for scripts).
    #[arg(long)]
    disk_only: bool,
}

#[derive(Args, Debug)]
struct SnapListArgs {
    /// The VM.
    vm: String,
    /// Draw the tree.
    #[arg(long, conflicts_with = "json")]
    tree: bool,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Args, Debug)]
struct SnapDeleteArgs {
    /// The VM.
    vm: String,
    /// The snapshot.
    snapshot: String,
    /// Delete its descendants too.
    #[arg(long)]
    children: bool,
}

#[derive(Args, Debug)]
struct SnapShowArgs {
    /// The VM.
    vm: String,
    /// The snapshot.
    snapshot: String,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

/// Why a `lockstep vm` command failed (beyond what the bundle store,
/// the disks and the run say themselves).
#[derive(Debug, thiserror::Error)]
pub enum VmCmdError {
    #[error(
        "no --kernel/--initrd/--firmware given and the default guest image is unavailable: {0}"
    )]
    NoImage(#[source] guest_image::ImageError),
    #[error("--disk {disk}: say the image's format: {disk},format=raw|qcow2 (lockstep never guesses one)")]
    DiskFormatUnsaid { disk: String },
    #[error("--disk {disk}: readonly= does not apply: vm create copies the image into the VM")]
    DiskReadOnly { disk: String },
    #[error("--ssh-key {}: {source}", path.display())]
    SshKeyRead {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("--ssh-key {}: not an OpenSSH public key file (lines like 'ssh-ed25519 AAAA… comment')", path.display())]
    NotSshKey { path: PathBuf },
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The VM's process refused a control command.
    #[error("VM {vm}: {message}")]
    Refused { vm: String, message: String },
    #[error("VM {vm} (pid {pid}) stopped without saving its state; see {}", log.display())]
    SuspendLost { vm: String, pid: u32, log: PathBuf },
    #[error("VM {vm} (pid {pid}) has not suspended in {timeout}")]
    SuspendTimeout {
        vm: String,
        pid: u32,
        timeout: humantime::Duration,
    },
    #[error("VM {vm} did not start ({status}): {last}")]
    DidNotStart {
        vm: String,
        status: std::process::ExitStatus,
        /// The last line its log holds.
        last: String,
    },
    #[error("VM {vm}: its process (pid {pid}) has not started it in {} s; see {}", waited.as_secs(), log.display())]
    StartTimeout {
        vm: String,
        pid: u32,
        waited: Duration,
        log: PathBuf,
    },
    #[error(
        "VM {vm} (pid {pid}) has not stopped in {timeout}; `lockstep vm stop --force` kills it"
    )]
    StopTimeout {
        vm: String,
        pid: u32,
        timeout: humantime::Duration,
    },
    #[error("VM {vm} (pid {pid}) did not stop when killed")]
    KillFailed { vm: String, pid: u32 },
}

/// `io_at(path)`: `map_err` for an I/O error about `path`.
fn io_at(path: &std::path::Path) -> impl FnOnce(std::io::Error) -> VmCmdError + '_ {
    move |source| VmCmdError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn parse_size(s: &str) -> Result<u64, run::ArgError> {
    match ::disk::parse_size(s) {
        Ok(0) => Err(run::ArgError::ZeroSize {
            what: "size",
            given: s.into(),
        }),
        other => Ok(other?),
    }
}

/// Print what opening a VM repaired.
fn say_notes(name: &str, notes: &[String]) {
    for note in notes {
        eprintln!("lockstep: {name}: {note}");
    }
}

/// A progress bar for long copies, drawn only on a terminal.
fn progress_bar() -> impl FnMut(&str, u64, u64) {
    let mut bar: Option<(String, indicatif::ProgressBar)> = None;
    move |what: &str, done: u64, total: u64| {
        if bar.as_ref().is_none_or(|(w, _)| w != what) {
            if let Some((_, b)) = bar.take() {
                b.finish_and_clear();
            }
            let b = indicatif::ProgressBar::new(total);
            b.set_style(
                indicatif::ProgressStyle::with_template(
                    "{msg} [{bar:30}] {bytes}/{total_bytes} ({bytes_per_sec}, {eta})",
                )
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
                .progress_chars("=> "),
            );
            b.set_message(what.to_string());
            bar = Some((what.to_string(), b));
        }
        if let Some((_, b)) = &bar {
            b.set_length(total);
            b.set_position(done);
            if done >= total {
                b.finish_and_clear();
            }
        }
    }
}

pub fn vm(args: VmArgs, api: Option<&str>) -> CmdResult {
    // A VM's own process (`vm start --foreground`) always runs here.
    let local = matches!(&args.command, VmCommand::Start(a) if a.foreground);
    if let (Some(api), false) = (api, local) {
        return remote::vm(api, args.command);
    }
    let home = Home::from_env()?;
    match args.command {
        VmCommand::Create(a) => create(&home, *a),
        VmCommand::List(a) => list(&home, a.json),
        VmCommand::Show(a) => show(&home, &a.name, a.json),
        VmCommand::Start(a) | VmCommand::Resume(a) => start(&home, a),
        VmCommand::Suspend(a) => suspend(&home, a),
        VmCommand::Console(a) => {
            if let RunState::Running { .. } = home.run_state(&a.name)? {
                let sock = home
                    .bundle_dir(&a.name)
                    .join(crate::console_sock::CONSOLE_SOCKET);
                crate::console_sock::attach(&sock, &a.name)?;
                Ok(ExitCode::SUCCESS)
            } else {
                Err(vmm::VmmError::NotRunning { name: a.name }.into())
            }
        }
        VmCommand::Stop(a) => stop(&home, a),
        VmCommand::Pause(a) | VmCommand::Unpause(a)
            if home.run_state(&a.name)? == RunState::Off =>
        {
            Err(vmm::VmmError::NotRunning { name: a.name }.into())
        }
        VmCommand::Pause(a) => {
            ask(&home, &a.name, &vmm::VmCommand::Pause {}, COMMAND_WAIT)?;
            eprintln!("lockstep: paused VM {}", a.name);
            Ok(ExitCode::SUCCESS)
        }
        VmCommand::Unpause(a) => {
            ask(&home, &a.name, &vmm::VmCommand::Unpause {}, COMMAND_WAIT)?;
            eprintln!("lockstep: VM {} runs on", a.name);
            Ok(ExitCode::SUCCESS)
        }
        VmCommand::Kill(a) => {
            let vm = home.open(&a.name)?;
            say_notes(&a.name, vm.notes());
            let pid = vm.signal(rustix::process::Signal::KILL)?;
            vm.wait_stopped(Duration::from_secs(10))?;
            eprintln!("lockstep: killed VM {} (pid {pid})", a.name);
            Ok(ExitCode::SUCCESS)
        }
        VmCommand::Delete(a) => {
            home.delete(&a.name, a.force)?;
            eprintln!("lockstep: deleted VM {}", a.name);
            Ok(ExitCode::SUCCESS)
        }
        VmCommand::Set(a) => {
            let mut vm = home.open(&a.name)?;
            say_notes(&a.name, vm.notes());
            let ft = a.ft.settings()?;
            if ft.is_none() && !a.no_ft {
                return Err(crate::exit::usage(
                    "nothing to set: give --ft-backup ADDR --ft-arbiter PATH, or --no-ft",
                ));
            }
            vm.set_ft(ft)?;
            eprintln!(
                "lockstep: VM {} updated; it takes effect at its next start",
                a.name
            );
            Ok(ExitCode::SUCCESS)
        }
        VmCommand::Rename(a) => {
            home.rename(&a.name, &a.new_name)?;
            eprintln!("lockstep: renamed VM {} to {}", a.name, a.new_name);
            Ok(ExitCode::SUCCESS)
        }
        VmCommand::Clone(a) => {
            let mut snapshot = a.from_snapshot.clone();
            if snapshot.is_none() {
                if let RunState::Running { .. } = home.run_state(&a.source)? {
                    // A running VM's clone comes from a snapshot it takes.
                    let name = format!("clone-{}", a.name);
                    let reply = ask(
                        &home,
                        &a.source,
                        &vmm::VmCommand::Snapshot {
                            name: name.clone(),
                            description: format!("taken to clone {}", a.name),
                            disk_only: true,
                        },
                        SNAPSHOT_WAIT,
                    )?;
                    say_reply(&a.source, &reply);
                    snapshot = Some(name);
                }
            }
            let from = CloneFrom {
                linked: a.linked,
                snapshot,
            };
            let started = Instant::now();
            let config = home.clone_vm(&a.source, &a.name, &from, &mut progress_bar())?;
            eprintln!(
                "lockstep: created {} clone {} of {} in {:.1} s (uuid {}; MACs {})",
                if a.linked { "linked" } else { "full" },
                a.name,
                a.source,
                started.elapsed().as_secs_f64(),
                config.uuid,
                macs(&config),
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn macs(config: &vmm::VmConfig) -> String {
    if config.nics.is_empty() {
        return "none".into();
    }
    let macs: Vec<String> = config.nics.iter().map(|n| n.mac.to_string()).collect();
    macs.join(", ")
}

fn create(home: &Home, a: CreateArgs) -> CmdResult {
    vmm::check_name("VM name", &a.name)?;
    let (kernel, initrd, firmware, pulled) = match (a.kernel, a.initrd, a.firmware) {
        (Some(k), Some(i), Some(f)) => (k, i, f, false),
        (k, i, f) => {
            let image = guest_image::pull(&guest_image::PullOptions::default())
                .map_err(VmCmdError::NoImage)?;
            (
                k.unwrap_or(image.kernel),
                i.unwrap_or(image.initrd),
                f.unwrap_or(image.firmware),
                true,
            )
        }
    };
    let mut disks: Vec<DiskSource> = Vec::new();
    let mut append = a.append.clone();
    if let Some(image) = &a.image {
        let variant = if image == "debian-standard" {
            "standard"
        } else {
            "minbase"
        };
        let root = crate::image::build_debian(variant)?;
        disks.push(DiskSource::Import {
            path: root,
            format: ::disk::Format::Qcow2,
            backing: ::disk::BackingPolicy::default(),
        });
        let line = append.get_or_insert_with(|| {
            format!(
                "{} quiet root=/dev/vda rw systemd.hostname={}",
                run::DEFAULT_APPEND,
                a.name
            )
        });
        if let Some(file) = &a.ssh_key {
            line.push_str(&ssh_key_credential(file)?);
        }
    }
    disks.extend(a.disk_sizes.iter().map(|&s| DiskSource::Empty(s)));
    for d in &a.disks {
        let arg = run::parse_disk(d)?;
        let format = arg
            .format
            .ok_or_else(|| VmCmdError::DiskFormatUnsaid { disk: d.clone() })?;
        if arg.read_only {
            return Err(VmCmdError::DiskReadOnly { disk: d.clone() }.into());
        }
        disks.push(DiskSource::Import {
            path: arg.path,
            format,
            backing: arg.backing,
        });
    }
    if disks.is_empty() {
        disks.push(DiskSource::Empty(8 << 30));
    }
    let mut nics = Vec::new();
    for spec in &a.nets {
        let (_, mut spec) = run::parse_net(spec).map_err(|e| crate::exit::usage(e.to_string()))?;
        let mac = spec.mac.take().map(|m| vmm::Mac(m.octets()));
        nics.push((spec.to_string(), mac));
    }
    machine::InstructionsPerTick::new(a.instructions_per_tick)?;
    let spec = CreateSpec {
        name: a.name.clone(),
        cpus: a.cpus,
        memory: a.memory,
        append: append.unwrap_or_else(|| run::DEFAULT_APPEND.to_string()),
        instructions_per_tick: a.instructions_per_tick,
        boot: vmm::Boot {
            kernel: absolute(kernel)?,
            initrd: absolute(initrd)?,
            firmware: absolute(firmware)?,
            pulled,
        },
        disks,
        nics,
        ft: a.ft.settings()?,
    };
    let config = home.create(&spec, &mut progress_bar())?;
    eprintln!(
        "lockstep: created VM {} ({} CPU, {} MiB, {} disk(s), MACs {}) in {}",
        config.name,
        config.cpus,
        config.memory >> 20,
        config.disks.len(),
        macs(&config),
        home.bundle_dir(&config.name).display()
    );
    Ok(ExitCode::SUCCESS)
}

/// ` systemd.set_credential_binary=ssh.authorized_keys.root:BASE64` for the public keys in
/// `file`: systemd-tmpfiles writes them to /root/.ssh/authorized_keys at boot.
fn ssh_key_credential(file: &std::path::Path) -> Result<String, Box<dyn Error>> {
    let text = std::fs::read_to_string(file).map_err(|source| VmCmdError::SshKeyRead {
        path: file.to_path_buf(),
        source,
    })?;
    let keys: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    let looks_public =
        |k: &&str| k.starts_with("ssh-") || k.starts_with("ecdsa-") || k.starts_with("sk-");
    if keys.is_empty() || !keys.iter().all(looks_public) {
        return Err(VmCmdError::NotSshKey {
            path: file.to_path_buf(),
        }
        .into());
    }
    let mut bytes = keys.join("\n").into_bytes();
    bytes.push(b'\n');
    Ok(format!(
        " systemd.set_credential_binary=ssh.authorized_keys.root:{}",
        base64(&bytes)
    ))
}

/// Standard base64 with padding.
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = u32::from(b[0]) << 16 | u32::from(b[1]) << 8 | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[(n >> (18 - 6 * i) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn absolute(p: PathBuf) -> Result<PathBuf, Box<dyn Error>> {
    Ok(std::fs::canonicalize(&p).map_err(io_at(&p))?)
}

fn uptime(state: RunState) -> String {
    match state {
        RunState::Running { since, .. } => {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(since);
            let s = now.saturating_sub(since);
            format!("{}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
        }
        RunState::Off | RunState::Suspended => "-".into(),
    }
}

fn list(home: &Home, json: bool) -> CmdResult {
    let (vms, notes) = home.list()?;
    for note in &notes {
        eprintln!("lockstep: {note}");
    }
    if json {
        let doc = vmm::api::VmList {
            schema: vmm::api::SCHEMA,
            vms,
        };
        println!("{}", serde_json::to_string_pretty(&doc)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{:<24} {:<12} {:>4} {:>8} {:>9} {:>9}",
        "NAME", "STATE", "CPUS", "MEMORY", "UPTIME", "SNAPSHOTS"
    );
    for vm in vms {
        let state = match vm.state {
            RunState::Running { .. } => live_status(home, &vm.name, Duration::from_millis(500))
                .map_or_else(|| vm.state.to_string(), |(s, _)| s),
            other => other.to_string(),
        };
        println!(
            "{:<24} {:<12} {:>4} {:>7}M {:>9} {:>9}",
            vm.name,
            state,
            vm.cpus,
            vm.memory >> 20,
            uptime(vm.state),
            vm.snapshots
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn show(home: &Home, name: &str, json: bool) -> CmdResult {
    let vm = home.open(name)?;
    say_notes(name, vm.notes());
    let c = vm.config();
    let state = vm.state()?;
    let live = match state {
        RunState::Running { .. } => live_status(home, name, Duration::from_secs(2)),
        _ => None,
    };
    if json {
        let view = vmm::api::VmView {
            schema: vmm::api::SCHEMA,
            state,
            live: live.map(|(state, icount)| vmm::api::LiveState { state, icount }),
            dir: vm.dir().to_path_buf(),
            config: c.clone(),
        };
        println!("{}", serde_json::to_string_pretty(&view)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!("name:        {}", c.name);
    println!("uuid:        {}", c.uuid);
    match state {
        RunState::Running { pid, .. } => match live {
            Some((live, icount)) => println!(
                "state:       {live} (pid {pid}, up {}, at icount {icount})",
                uptime(state)
            ),
            None => println!("state:       running (pid {pid}, up {})", uptime(state)),
        },
        RunState::Off => println!("state:       powered off"),
        RunState::Suspended => println!("state:       suspended"),
    }
    println!("created:     {}", vmm::format_time(c.created));
    println!("cpus:        {}", c.cpus);
    println!("memory:      {} MiB", c.memory >> 20);
    println!(
        "clock rate:  {} instructions per tick",
        c.instructions_per_tick
    );
    println!("kernel:      {}", c.boot.kernel.display());
    println!("initrd:      {}", c.boot.initrd.display());
    println!("firmware:    {}", c.boot.firmware.display());
    println!("append:      {}", c.append);
    for (i, (d, layer)) in c.disks.iter().zip(&c.current.layers).enumerate() {
        println!(
            "disk vd{}:    {} MiB, {}",
            char::from(b'a' + i as u8),
            d.size >> 20,
            vm.layer_path(layer).display()
        );
    }
    for (i, n) in c.nics.iter().enumerate() {
        println!("nic eth{i}:    {} mac {}", n.net, n.mac);
    }
    if let Some(l) = &c.linked {
        let snap = format!("snapshot id {}", l.snapshot);
        println!("linked to:   {} ({snap})", l.name);
    }
    match &c.ft {
        Some(ft) => println!(
            "ft:          backup {}, arbiter {}",
            ft.backup,
            ft.arbiter.display()
        ),
        None => println!("ft:          off"),
    }
    println!("snapshots:   {}", c.snapshots.len());
    if let Some(parent) = c.current.parent.and_then(|id| c.snapshot_by_id(id)) {
        println!("current:     after snapshot {}", parent.name);
    }
    println!("bundle:      {}", vm.dir().display());
    Ok(ExitCode::SUCCESS)
}

fn start(home: &Home, a: StartArgs) -> CmdResult {
    if !a.attach && !a.foreground {
        return start_detached(home, &a.name, a.verify);
    }
    let vm = home.open(&a.name)?;
    say_notes(&a.name, vm.notes());
    // Signals that come before the run loop handles them are kept, not
    // fatal: the VM counts as running as soon as it holds its run lock.
    let requested = Arc::new(AtomicBool::new(false));
    let stop_requested = Arc::new(AtomicBool::new(false));
    signal_hook::flag::register(signal_hook::consts::SIGUSR2, requested.clone())?;
    for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(sig, stop_requested.clone())?;
    }
    let _running = vm.start()?;
    let c = vm.config().clone();
    let disks = vm.disks()?;
    let dir = vm.dir().to_path_buf();
    let resume_from = vm.suspended_state();
    let (state_name, state_path) = vm.suspend_target()?;
    drop(vm); // other commands may look at the VM while it runs
    let images_present = [&c.boot.kernel, &c.boot.initrd, &c.boot.firmware]
        .iter()
        .all(|p| p.is_file());
    let image = |p: &PathBuf| (images_present || !c.boot.pulled).then(|| p.clone());
    let mut nets = Vec::new();
    for n in &c.nics {
        nets.push(run::parse_net(&format!("{},mac={}", n.net, n.mac))?);
    }
    let suspend = run::Suspend {
        requested,
        stop_requested,
        to: state_path,
    };
    // A resumed VM drops its saved state once the machine is rebuilt:
    // from then on its disks move on from what the state describes.
    let after_restore = resume_from.as_ref().map(|_| {
        let home = home.clone();
        let name = c.name.clone();
        run::AfterRestore(Box::new(move || {
            home.open(&name)?.clear_suspended()?;
            Ok(())
        }))
    });
    // A detached VM's console is reachable through `vm console`.
    let socket = if a.attach {
        None
    } else {
        let path = dir.join(crate::console_sock::CONSOLE_SOCKET);
        match crate::console_sock::ConsoleServer::bind(&path) {
            Ok(server) => Some(run::SharedConsole(Arc::new(server))),
            Err(e) => {
                eprintln!(
                    "lockstep: no console socket ({}: {e}); the console is only in {}",
                    path.display(),
                    vmm::CONSOLE_LOG
                );
                None
            }
        }
    };
    let args = RunArgs {
        kernel: image(&c.boot.kernel),
        initrd: image(&c.boot.initrd),
        firmware: image(&c.boot.firmware),
        append: c.append.clone(),
        cpus: c.cpus,
        memory: c.memory,
        console: Console::Log {
            path: dir.join(vmm::CONSOLE_LOG),
            echo: a.attach,
            socket,
        },
        disks: disks
            .into_iter()
            .map(|(path, options)| DiskArg {
                path,
                read_only: options.read_only,
                format: Some(options.format),
                backing: options.backing,
            })
            .collect(),
        rng_seed: None,
        nets,
        name_arg: None,
        name: c.name.clone(),
        record: None,
        save_on_exit: None,
        restore: resume_from,
        verify: a.verify,
        instructions_per_tick: c.instructions_per_tick,
        checkpoint_every: replay::session::CHECKPOINT_EVERY,
        ft_backup: c.ft.as_ref().map(|f| f.backup.clone()),
        no_reboot: false,
        ft: crate::ft::FtOptions {
            arbiter: c.ft.as_ref().map(|f| f.arbiter.clone()),
            tls_dir: c.ft.as_ref().and_then(|f| f.tls_dir.clone()),
            ..crate::ft::FtOptions::default()
        },
        vmgenid: Some(c.vmgenid),
        suspend: Some(suspend.clone()),
        after_restore,
        bundle: Some(run::BundleRun {
            home: home.clone(),
            name: c.name.clone(),
        }),
        cpu: run::RunCpu::host_default(),
    };
    let code = run::run(args)?;
    if suspend.requested.load(Ordering::SeqCst) && suspend.to.is_file() {
        home.open(&c.name)?.set_suspended(&state_name)?;
        eprintln!("lockstep: VM {} suspended", c.name);
    }
    Ok(code)
}

/// How long `snapshot create` waits for a running VM's snapshot.
const SNAPSHOT_WAIT: Duration = Duration::from_secs(600);
/// How long other commands wait for a running VM's answer.
const COMMAND_WAIT: Duration = Duration::from_secs(30);
/// How long `vm start` waits for a detached VM's process to answer.
const START_WAIT: Duration = Duration::from_secs(60);

/// A running VM's own account of itself (state, icount), if it answers
/// within `timeout`.
fn live_status(home: &Home, name: &str, timeout: Duration) -> Option<(String, u64)> {
    let path = home.bundle_dir(name).join(vmm::CONTROL_SOCKET);
    match vmm::control::request(&path, &vmm::VmCommand::Status {}, timeout) {
        Ok(vmm::VmReply::Status { state, icount, .. }) => Some((state, icount)),
        _ => None,
    }
}

/// Ask the running VM `name`'s process to do `command`; its refusal is
/// an error.
fn ask(
    home: &Home,
    name: &str,
    command: &vmm::VmCommand,
    timeout: Duration,
) -> Result<vmm::VmReply, Box<dyn Error>> {
    let path = home.bundle_dir(name).join(vmm::CONTROL_SOCKET);
    let mut bar = progress_bar();
    let reply = vmm::control::request_with_progress(&path, command, timeout, &mut bar)?;
    bar("", 1, 1);
    match reply {
        vmm::VmReply::Error { message } => Err(VmCmdError::Refused {
            vm: name.to_string(),
            message,
        }
        .into()),
        reply => Ok(reply),
    }
}

fn say_reply(vm: &str, reply: &vmm::VmReply) {
    if let vmm::VmReply::Snapshot {
        name,
        icount,
        pause_us,
        total_ms,
        rounds,
        ram_bytes,
    } = reply
    {
        eprintln!(
            "lockstep: created snapshot {name} of running VM {vm} at icount {icount} in {total_ms} ms \
             (guest paused {:.1} ms; {} MiB of RAM copied in {rounds} round(s))",
            *pause_us as f64 / 1e3,
            ram_bytes >> 20
        );
    }
}

/// Ask the running `vm`'s process to do `command` (one that ends its run)
/// on its control socket, or, if it has none yet, send it `signal`; its
/// pid.
fn ask_or_signal(
    vm: &vmm::Vm,
    command: &vmm::VmCommand,
    signal: rustix::process::Signal,
) -> Result<u32, Box<dyn Error>> {
    let path = vm.dir().join(vmm::CONTROL_SOCKET);
    match vmm::control::request(&path, command, COMMAND_WAIT) {
        Ok(vmm::VmReply::Accepted) => Ok(match vm.state()? {
            RunState::Running { pid, .. } => pid,
            _ => 0,
        }),
        Ok(vmm::VmReply::Error { message }) => Err(VmCmdError::Refused {
            vm: vm.config().name.clone(),
            message,
        }
        .into()),
        _ => Ok(vm.signal(signal)?),
    }
}

fn suspend(home: &Home, a: StopArgs) -> CmdResult {
    let vm = home.open(&a.name)?;
    say_notes(&a.name, vm.notes());
    let pid = ask_or_signal(
        &vm,
        &vmm::VmCommand::Suspend {},
        rustix::process::Signal::USR2,
    )?;
    drop(vm); // the VM's process records its state under the command lock
    let started = Instant::now();
    let deadline = *a.timeout;
    loop {
        match home.run_state(&a.name)? {
            RunState::Suspended => {
                eprintln!(
                    "lockstep: suspended VM {} (pid {pid}) in {:.1} s",
                    a.name,
                    started.elapsed().as_secs_f64()
                );
                return Ok(ExitCode::SUCCESS);
            }
            RunState::Off => {
                return Err(VmCmdError::SuspendLost {
                    log: home.bundle_dir(&a.name).join(vmm::VM_LOG),
                    vm: a.name,
                    pid,
                }
                .into())
            }
            RunState::Running { .. } if started.elapsed() > deadline => {
                return Err(VmCmdError::SuspendTimeout {
                    vm: a.name,
                    pid,
                    timeout: a.timeout,
                }
                .into())
            }
            RunState::Running { .. } => std::thread::sleep(Duration::from_millis(5)),
        }
    }
}

/// Start `lockstep vm start NAME --foreground` as its own process (own
/// process group, stdio to the bundle's vm.log) and wait until it holds
/// the VM's run lock.
fn start_detached(home: &Home, name: &str, verify: bool) -> CmdResult {
    {
        let vm = home.open(name)?;
        say_notes(name, vm.notes());
        if let RunState::Running { pid, .. } = vm.state()? {
            return Err(vmm::VmmError::Running {
                name: name.to_string(),
                pid,
                what: "it is already running",
            }
            .into());
        }
    }
    let dir = home.bundle_dir(name);
    let log_path = dir.join(vmm::VM_LOG);
    let log = vmm::ConsoleLog::open(&log_path, vmm::MAX_CONSOLE_LOG).map_err(io_at(&log_path))?;
    drop(log);
    let open_log = || {
        use std::os::unix::fs::OpenOptionsExt;
        std::fs::OpenOptions::new()
            .append(true)
            .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
            .open(&log_path)
            .map_err(io_at(&log_path))
    };
    let exe = std::env::current_exe()?;
    use std::os::unix::process::CommandExt;
    let mut child = std::process::Command::new(exe)
        .args(["vm", "start", name, "--foreground"])
        .args(verify.then_some("--verify"))
        .stdin(Stdio::null())
        .stdout(open_log()?)
        .stderr(open_log()?)
        .process_group(0)
        .spawn()?;
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait()? {
            let text = std::fs::read_to_string(&log_path).unwrap_or_default();
            let last = text
                .lines()
                .rev()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("");
            return Err(VmCmdError::DidNotStart {
                vm: name.to_string(),
                status,
                last: last.to_string(),
            }
            .into());
        }
        // Started means it answers commands: its control socket is up.
        if home.started(name, child.id(), Duration::from_millis(200))? {
            eprintln!(
                "lockstep: started VM {name} (pid {}); console in {}",
                child.id(),
                dir.join(vmm::CONSOLE_LOG).display()
            );
            return Ok(ExitCode::SUCCESS);
        }
        if started.elapsed() > START_WAIT {
            return Err(VmCmdError::StartTimeout {
                vm: name.to_string(),
                pid: child.id(),
                waited: START_WAIT,
                log: log_path,
            }
            .into());
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

fn stop(home: &Home, a: StopArgs) -> CmdResult {
    let vm = home.open(&a.name)?;
    say_notes(&a.name, vm.notes());
    let pid = ask_or_signal(&vm, &vmm::VmCommand::Stop {}, rustix::process::Signal::TERM)?;
    if vm.wait_stopped(*a.timeout)? {
        eprintln!("lockstep: stopped VM {} (pid {pid})", a.name);
        return Ok(ExitCode::SUCCESS);
    }
    if !a.force {
        return Err(VmCmdError::StopTimeout {
            vm: a.name,
            pid,
            timeout: a.timeout,
        }
        .into());
    }
    vm.signal(rustix::process::Signal::KILL)?;
    vm.wait_stopped(Duration::from_secs(10))?;
    eprintln!(
        "lockstep: killed VM {} (pid {pid}): it had not stopped in {}",
        a.name, a.timeout
    );
    Ok(ExitCode::SUCCESS)
}

pub fn snapshot(args: SnapshotArgs, api: Option<&str>) -> CmdResult {
    if let Some(api) = api {
        return remote::snapshot(api, args.command);
    }
    let home = Home::from_env()?;
    match args.command {
        SnapshotCommand::Create(a) => {
            // A bad name is the command line's fault, running VM or not.
            vmm::check_name("snapshot name", &a.snapshot)?;
            if let RunState::Running { .. } = home.run_state(&a.vm)? {
                let reply = ask(
                    &home,
                    &a.vm,
                    &vmm::VmCommand::Snapshot {
                        name: a.snapshot.clone(),
                        description: a.description.clone(),
                        disk_only: a.disk_only,
                    },
                    SNAPSHOT_WAIT,
                )?;
                say_reply(&a.vm, &reply);
                return Ok(ExitCode::SUCCESS);
            }
            let mut vm = home.open(&a.vm)?;
            say_notes(&a.vm, vm.notes());
            let started = Instant::now();
            let s = vm.snapshot_create(&a.snapshot, &a.description)?;
            eprintln!(
                "lockstep: created snapshot {} of VM {} ({}) in {:.0} ms",
                s.name,
                a.vm,
                s.power,
                started.elapsed().as_secs_f64() * 1e3
            );
        }
        SnapshotCommand::List(a) => {
            let vm = home.open(&a.vm)?;
            say_notes(&a.vm, vm.notes());
            let c = vm.config();
            if a.json {
                let doc = vmm::api::SnapshotList {
                    schema: vmm::api::SCHEMA,
                    vm: c.name.clone(),
                    snapshots: c
                        .snapshots
                        .iter()
                        .map(|s| vmm::api::SnapshotView::new(c, s))
                        .collect(),
                };
                println!("{}", serde_json::to_string_pretty(&doc)?);
            } else if a.tree {
                println!("{}", c.name);
                for line in vm.tree_lines() {
                    println!("{line}");
                }
            } else {
                println!(
                    "  {:<24} {:<24} {:<12} {:<24} DESCRIPTION",
                    "NAME", "CREATED", "POWER", "PARENT"
                );
                for s in &c.snapshots {
                    let v = vmm::api::SnapshotView::new(c, s);
                    println!(
                        "{} {:<24} {:<24} {:<12} {:<24} {}",
                        if v.current { "*" } else { " " },
                        s.name,
                        vmm::format_time(s.created),
                        s.power.to_string(),
                        v.parent_name.as_deref().unwrap_or("-"),
                        s.description
                    );
                }
            }
        }
        SnapshotCommand::Revert(a) => {
            let mut vm = home.open(&a.vm)?;
            say_notes(&a.vm, vm.notes());
            let started = Instant::now();
            if vm.config().snapshot(&a.snapshot).is_none() {
                return Err(vmm::VmmError::NoSuchSnapshot {
                    vm: a.vm.clone(),
                    snapshot: a.snapshot.clone(),
                }
                .into());
            }
            // The present, running or not, is discarded.
            if let RunState::Running { pid, .. } = vm.state()? {
                vm.signal(rustix::process::Signal::KILL)?;
                if !vm.wait_stopped(Duration::from_secs(10))? {
                    return Err(VmCmdError::KillFailed {
                        vm: a.vm.clone(),
                        pid,
                    }
                    .into());
                }
            }
            let power = vm.snapshot_revert(&a.snapshot)?;
            drop(vm);
            if power == vmm::PowerState::Running {
                start_detached(&home, &a.vm, false)?;
            }
            eprintln!(
                "lockstep: VM {} reverted to snapshot {} ({power}) in {:.0} ms",
                a.vm,
                a.snapshot,
                started.elapsed().as_secs_f64() * 1e3
            );
        }
        SnapshotCommand::Delete(a) => {
            let mut vm = home.open(&a.vm)?;
            say_notes(&a.vm, vm.notes());
            vm.snapshot_delete(&a.snapshot, a.children, &mut progress_bar())?;
            eprintln!(
                "lockstep: deleted snapshot {}{} of VM {}",
                a.snapshot,
                if a.children { " and its children" } else { "" },
                a.vm
            );
        }
        SnapshotCommand::Show(a) => {
            let vm = home.open(&a.vm)?;
            say_notes(&a.vm, vm.notes());
            let c = vm.config();
            let s = c
                .snapshot(&a.snapshot)
                .ok_or_else(|| vmm::VmmError::NoSuchSnapshot {
                    vm: a.vm.clone(),
                    snapshot: a.snapshot.clone(),
                })?;
            let parent = s
                .parent
                .and_then(|p| c.snapshot_by_id(p))
                .map(|p| p.name.as_str());
            let children: Vec<&str> = c
                .snapshots
                .iter()
                .filter(|x| x.parent == Some(s.id))
                .map(|x| x.name.as_str())
                .collect();
            if a.json {
                let doc = vmm::api::SnapshotDoc {
                    schema: vmm::api::SCHEMA,
                    vm: c.name.clone(),
                    snapshot: vmm::api::SnapshotView::new(c, s),
                };
                println!("{}", serde_json::to_string_pretty(&doc)?);
            } else {
                println!("name:        {}", s.name);
                println!("vm:          {}", c.name);
                println!("created:     {}", vmm::format_time(s.created));
                println!("power:       {}", s.power);
                println!("parent:      {}", parent.unwrap_or("-"));
                println!(
                    "children:    {}",
                    if children.is_empty() {
                        "-".to_string()
                    } else {
                        children.join(", ")
                    }
                );
                println!("description: {}", s.description);
                for (i, l) in s.layers.iter().enumerate() {
                    println!(
                        "disk vd{}:    {}",
                        char::from(b'a' + i as u8),
                        vm.layer_path(l).display()
                    );
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_rfc4648_vectors() {
        let cases = [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ];
        for (plain, encoded) in cases {
            assert_eq!(base64(plain.as_bytes()), encoded, "{plain}");
        }
    }

    #[test]
    fn ssh_key_files_are_checked() {
        let dir = tempfile::tempdir().unwrap();
        let good = dir.path().join("id.pub");
        std::fs::write(&good, "# mine\nssh-ed25519 AAAAC3Nza me@host\n").unwrap();
        let arg = ssh_key_credential(&good).unwrap();
        let want = base64(b"ssh-ed25519 AAAAC3Nza me@host\n");
        assert_eq!(
            arg,
            format!(" systemd.set_credential_binary=ssh.authorized_keys.root:{want}")
        );
        let private = dir.path().join("id");
        std::fs::write(&private, "-----BEGIN OPENSSH PRIVATE KEY-----\n").unwrap();
        let err = ssh_key_credential(&private).unwrap_err().to_string();
        assert!(err.contains("not an OpenSSH public key"), "{err}");
    }
}
