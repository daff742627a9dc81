//! `lockstep`: run deterministic RISC-V virtual machines.

mod bare;
mod console_sock;
mod control;
mod disk;
mod exit;
mod ft;
mod image;
mod logging;
mod names;
mod netcmd;
mod nics;
mod record;
mod run;
mod signals;
mod vm;
mod vmcmd;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "lockstep",
    about = "Deterministic RISC-V virtual machines",
    after_help = exit::TABLE
)]
struct Cli {
    #[command(flatten)]
    log: logging::LogArgs,
    /// Work through lockstepd's API (unix:/PATH/lockstepd.sock or
    /// https://HOST:PORT) instead of the local VM store: vm, snapshot, login.
    #[arg(long, global = true, value_name = "URL", env = "LOCKSTEP_API")]
    api: Option<String>,
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
    /// reproduces: exits 6 and names the first divergence if it does not.
    Replay(record::ReplayArgs),
    /// VMs kept in bundles: create, list, show, start, stop, kill, delete, rename, clone.
    Vm(vmcmd::VmArgs),
    /// Snapshot trees of kept VMs: create, list, revert, delete, show.
    Snapshot(vmcmd::SnapshotArgs),
    /// Log in to lockstepd (`--api URL`): get a token and keep it for the next commands.
    Login(vmcmd::LoginArgs),
    /// Virtual networks: nat, hostonly, bridged and internal switches, VXLAN.
    Net(netcmd::NetArgs),
    /// Fault-tolerant VMs: backups, adding them to running VMs, status, TLS certificates.
    Ft(ft::FtArgs),
    /// Print a shell completion script: `source <(lockstep completions bash)`.
    Completions(CompletionsArgs),
    /// Write a man page for every command into a directory.
    Man(ManArgs),
}

#[derive(clap::Args)]
struct CompletionsArgs {
    /// The shell to complete for.
    #[arg(value_enum)]
    shell: clap_complete::Shell,
}

#[derive(clap::Args)]
struct ManArgs {
    /// Where to write `lockstep.1`, `lockstep-run.1`, `lockstep-vm-start.1`, …
    /// (e.g. /usr/local/share/man/man1).
    #[arg(long, value_name = "DIR")]
    out_dir: std::path::PathBuf,
}

/// `lockstep --version`: the release, the commit, and the versions of the
/// formats a peer or a file must share with this build.
fn version() -> String {
    format!(
        "{} (commit {})\nsnapshot format {}, replay log format {}, FT protocol {}, VM bundle format {}",
        env!("CARGO_PKG_VERSION"),
        env!("LOCKSTEP_COMMIT"),
        machine::snapshot::FORMAT_VERSION,
        replay::FORMAT_VERSION,
        ::ft::wire::PROTOCOL_VERSION,
        vmm::FORMAT,
    )
}

/// The command line's definition, with its version.
fn command() -> clap::Command {
    // Built once per process; the strings live as long as it does.
    let version: &'static str = Box::leak(version().into_boxed_str());
    Cli::command().version(version)
}

/// A reader that went away (`lockstep vm show X | head`) ends a report
/// quietly, as it ends `cat`, instead of with a panic: Rust ignores
/// SIGPIPE, so `println!` panics on the broken pipe. (The signal stays
/// ignored: a VM's process writes to sockets whose peers may go.)
fn quiet_on_broken_stdout() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let payload = info.payload();
        let message = payload
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| payload.downcast_ref::<&str>().copied())
            .unwrap_or("");
        if message.starts_with("failed printing to stdout") && message.contains("Broken pipe") {
            std::process::exit(0);
        }
        default(info);
    }));
}

fn main() -> ExitCode {
    quiet_on_broken_stdout();
    let matches = command().get_matches();
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    if let Err(e) = logging::init(&cli.log) {
        eprintln!("lockstep: {e}");
        return exit::Exit::Usage.into();
    }
    let result = match cli.command {
        Command::Run(args) => run::run(args),
        Command::Bare(args) => bare::run(args),
        Command::Bench(args) => bench::run(args),
        Command::Image(args) => image::run(args),
        Command::Disk(args) => disk::run(args),
        Command::Replay(args) => record::replay_command(args),
        Command::Ft(args) => ft::run(args),
        Command::Vm(args) => vmcmd::vm(args, cli.api.as_deref()),
        Command::Login(args) => vmcmd::login(args, cli.api.as_deref()),
        Command::Snapshot(args) => vmcmd::snapshot(args, cli.api.as_deref()),
        Command::Net(args) => netcmd::run(args),
        Command::Completions(args) => {
            let mut script = Vec::new();
            clap_complete::generate(args.shell, &mut command(), "lockstep", &mut script);
            use std::io::Write;
            match std::io::stdout().write_all(&script) {
                Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
                _ => Ok(ExitCode::SUCCESS),
            }
        }
        Command::Man(args) => write_man_pages(&args.out_dir),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            tracing::debug!(error = ?err, "command failed");
            eprintln!("lockstep: {err}");
            exit::for_error(&*err).into()
        }
    }
}

/// One page for the command and one per subcommand, named as `git` names
/// its pages (`lockstep-vm-start.1`), each written new and renamed.
fn write_man_pages(dir: &std::path::Path) -> Result<ExitCode, Box<dyn std::error::Error>> {
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let mut written = 0;
    let mut pending = vec![(String::from("lockstep"), command())];
    while let Some((name, cmd)) = pending.pop() {
        let cmd = cmd.name(name.clone()).bin_name(name.replace('-', " "));
        for sub in cmd.get_subcommands() {
            if sub.get_name() != "help" {
                pending.push((format!("{name}-{}", sub.get_name()), sub.clone()));
            }
        }
        let mut page = Vec::new();
        clap_mangen::Man::new(cmd).render(&mut page)?;
        let path = dir.join(format!("{name}.1"));
        vmm::replace_file(&path, &page)
            .and_then(|()| {
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644))
            })
            .map_err(|e| format!("{}: {e}", path.display()))?;
        written += 1;
    }
    eprintln!("lockstep: wrote {written} man pages to {}", dir.display());
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    /// Clap's own consistency checks (unique ids, valid defaults, no
    /// clashing short flags), which release builds skip at run time.
    #[test]
    fn the_command_line_is_consistent() {
        super::command().debug_assert();
    }
}
