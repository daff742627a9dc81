//! `lockstep bench migrate`: live migration of a guest (512 MiB, 1 hart)
//! that rewrites a 64 MiB tmpfs file in a loop, between two processes on
//! this host, `--repeat` times back and forth:
//! - lockstep: `lockstep ft migrate --to ADDR` to a `lockstep ft backup
//!   --incoming` (the FT sync while the guest runs, the log until the
//!   target has caught up, then the hand-over); the guest's pauses (the
//!   sync's last round and the hand-over), the total time and the bytes
//!   sent, as `ft migrate` reports them;
//! - QEMU TCG, in the same run: `migrate` from its monitor to a QEMU
//!   started with `-incoming`, with its default downtime limit and no
//!   bandwidth cap (lockstep has none); the downtime, total time and RAM
//!   sent, as `info migrate` reports them.
//!
//! Both sides run on this host's cores beside their targets, so the core
//! count and load average are printed with the figures.

use crate::ft::{
    control, exe, host_line, missing, number_after, run_cmd, FtBenchError, Proc, BOOT, DIRTIER,
    REACT,
};
use crate::guest::{ratio, GuestBenchArgs, Scratch};
use crate::qemu::{self, QEMU};
use crate::record::median;
use crate::table::{num, Col, Table};
use crate::vm_live::{wait_for_text, Monitor, Qemu};
use clap::Args;
use std::ffi::OsString;
use std::path::Path;
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

/// The guest's memory (as `run_cmd` boots it).
const MEMORY_MIB: u32 = 512;

#[derive(Args, Debug)]
pub struct MigrateBenchArgs {
    /// Migrations of each hypervisor's guest (back and forth between two
    /// processes).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=50))]
    pub repeat: u32,
    /// Skip the QEMU baseline even if QEMU is installed.
    #[arg(long)]
    pub no_qemu: bool,
}

/// One lockstep migration, as `lockstep ft migrate` reported it.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Ours {
    sent_mib: f64,
    rounds: f64,
    /// The guest's pause for the sync's last round.
    sync_pause_ms: f64,
    catch_up_ms: f64,
    /// The guest's pause at the hand-over.
    handoff_ms: f64,
    total_ms: f64,
}

impl Ours {
    /// `migrated to A: sent X MiB in R rounds over T ms, guest paused P
    /// ms; the target caught up in C ms; guest paused H ms at the
    /// hand-over (icount N); M ms in all`.
    fn parse(line: &str) -> Option<Ours> {
        let sent_mib = number_after(line, "sent ")?;
        let rounds = number_after(line, "MiB in ")?;
        let sync_pause_ms = number_after(line, "guest paused ")?;
        let rest = &line[line.find("caught up in ")?..];
        let catch_up_ms = number_after(rest, "caught up in ")?;
        let handoff_ms = number_after(rest, "guest paused ")?;
        let all = &rest[rest.find("); ")? + 3..];
        let total_ms = number_after(all, "")?;
        Some(Ours {
            sent_mib,
            rounds,
            sync_pause_ms,
            catch_up_ms,
            handoff_ms,
            total_ms,
        })
    }

    fn pause_ms(&self) -> f64 {
        self.sync_pause_ms + self.handoff_ms
    }
}

/// One QEMU migration, as `info migrate` reported it.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Theirs {
    downtime_ms: f64,
    total_ms: f64,
    sent_mib: f64,
}

impl Theirs {
    /// From `info migrate` once its status is `completed`.
    fn parse(info: &str) -> Option<Theirs> {
        let field = |key: &str| {
            info.lines()
                .find_map(|l| l.trim().strip_prefix(key))
                .and_then(|v| v.split_whitespace().next())
                .and_then(|v| v.parse::<f64>().ok())
        };
        Some(Theirs {
            downtime_ms: field("downtime:")?,
            total_ms: field("total time:")?,
            sent_mib: field("transferred ram:")? / 1024.0,
        })
    }
}

fn status_of(info: &str) -> Option<&str> {
    info.lines()
        .find_map(|l| l.trim().strip_prefix("Migration status:"))
        .map(str::trim)
}

pub fn run(args: MigrateBenchArgs) -> Result<ExitCode> {
    let scratch = Scratch::new("bench-migrate")?;
    let guest = GuestBenchArgs {
        cpus: 1,
        memory_mib: MEMORY_MIB,
        no_qemu: args.no_qemu,
        ..Default::default()
    };
    println!("{}", host_line());
    let vm = crate::guest::BenchVm::prepare(&guest, DIRTIER, &scratch)?;
    let ours = lockstep_migrations(&vm, scratch.path(), args.repeat)?;
    let theirs = if vm.wants_qemu() {
        Some(qemu_migrations(&vm, scratch.path(), args.repeat)?)
    } else {
        None
    };
    print_figures(MEMORY_MIB, &ours, theirs.as_deref());
    println!("{}", host_line());
    Ok(ExitCode::SUCCESS)
}

/// Boot the guest under lockstep (migratable: a control socket) and move
/// it `repeat` times between fresh targets.
fn lockstep_migrations(
    vm: &crate::guest::BenchVm<'_>,
    dir: &Path,
    repeat: u32,
) -> std::result::Result<Vec<Ours>, FtBenchError> {
    eprintln!("bench: booting a migratable guest that rewrites 64 MiB in a loop …");
    let mut sock = dir.join("vm-0.sock");
    let flags: Vec<OsString> = vec!["--ft-control".into(), sock.clone().into()];
    let cmd = run_cmd(vm, &flags)?;
    let mut source = Proc::spawn("the migration source", cmd)?;
    source.console_line("dirtying", BOOT, |l| l == "dirtying")?;
    let mut figures = Vec::new();
    for n in 1..=repeat {
        std::thread::sleep(Duration::from_secs(2));
        eprintln!("bench: lockstep migration {n} …");
        let target_sock = dir.join(format!("vm-{n}.sock"));
        let mut cmd = Command::new(exe()?);
        cmd.args(["ft", "backup", "--incoming", "--console", "none"]);
        cmd.args(["--listen", "127.0.0.1:0"]);
        cmd.arg("--ft-control").arg(&target_sock);
        cmd.arg("--replica-dir")
            .arg(dir.join(format!("replicas-{n}")));
        let mut target = Proc::spawn(&format!("migration target {n}"), cmd)?;
        let (_, line) = target.message("listening on", REACT)?;
        let addr = line.rsplit(' ').next().unwrap_or_default().to_string();
        let answer = control(&sock, &["migrate", "--to", &addr])?;
        let what = "lockstep ft migrate";
        let report = answer.lines().rev().find_map(Ours::parse);
        let report = report.ok_or_else(|| missing(what, "migrated to …", "it ended", &answer))?;
        let ended = source
            .child
            .wait()
            .map_err(|e| missing("the migration source", "an exit", &e.to_string(), &answer))?;
        if !ended.success() {
            return Err(missing(
                "the migration source",
                "exit status 0",
                &format!("it exited {ended}"),
                &answer,
            ));
        }
        target.message("live at icount", REACT)?;
        // The guest runs on at the target.
        let before = icount(&target_sock)?;
        std::thread::sleep(Duration::from_millis(500));
        let after = icount(&target_sock)?;
        if after <= before {
            return Err(missing(
                "the migrated guest",
                "a growing icount",
                &format!("{before} then {after}"),
                "",
            ));
        }
        figures.push(report);
        source = target;
        sock = target_sock;
    }
    drop(source);
    Ok(figures)
}

fn icount(sock: &Path) -> std::result::Result<f64, FtBenchError> {
    let status = control(sock, &["status"])?;
    number_after(&status, "icount: ")
        .ok_or_else(|| missing("lockstep ft status", "icount: N", "it answered", &status))
}

/// A QEMU of the guest, its console in a file and its monitor on a
/// socket; with `incoming`, waiting for a migration on that port.
fn start_qemu(
    vm: &crate::guest::BenchVm<'_>,
    dir: &Path,
    tag: &str,
    incoming: Option<u16>,
) -> Result<(Qemu, Monitor, std::path::PathBuf)> {
    let console = dir.join(format!("qemu-{tag}.console"));
    let mon = dir.join(format!("qemu-{tag}.monitor"));
    let mut cmd = qemu::virt(u64::from(vm.args.memory_mib), 1);
    qemu::boot_linux(
        &mut cmd,
        &vm.image.firmware,
        &vm.image.kernel,
        &vm.initrd,
        &vm.append,
    )
    .args(["-display", "none"])
    .arg("-serial")
    .arg(format!("file:{}", console.display()))
    .arg("-monitor")
    .arg(format!("unix:{},server=on,wait=off", mon.display()));
    if let Some(port) = incoming {
        cmd.arg("-incoming").arg(format!("tcp:127.0.0.1:{port}"));
    }
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("{QEMU}: {e}"))?;
    let qemu = Qemu(child);
    let monitor = Monitor::connect(&mon)?;
    Ok((qemu, monitor, console))
}

/// A port free on loopback now.
fn free_port() -> Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}

/// Boot the guest under QEMU and migrate it `repeat` times between fresh
/// `-incoming` QEMUs.
fn qemu_migrations(vm: &crate::guest::BenchVm<'_>, dir: &Path, repeat: u32) -> Result<Vec<Theirs>> {
    eprintln!("bench: booting the same guest under QEMU …");
    let (mut source, mut monitor, console) = start_qemu(vm, dir, "0", None)?;
    wait_for_text(&console, "dirtying", "QEMU")?;
    let mut figures = Vec::new();
    for n in 1..=repeat {
        std::thread::sleep(Duration::from_secs(2));
        eprintln!("bench: QEMU migration {n} …");
        let port = free_port()?;
        let (target, target_monitor, _) = start_qemu(vm, dir, &n.to_string(), Some(port))?;
        // No bandwidth cap (lockstep has none); QEMU's own downtime limit.
        monitor.say("migrate_set_parameter max-bandwidth 100G")?;
        monitor.say(&format!("migrate -d tcp:127.0.0.1:{port}"))?;
        let deadline = Instant::now() + Duration::from_secs(600);
        let info = loop {
            let info = monitor.say("info migrate")?;
            match status_of(&info) {
                Some("completed") => break info,
                Some("failed" | "cancelled") => {
                    return Err(format!("QEMU migration {n}: {info}").into())
                }
                _ if Instant::now() > deadline => {
                    return Err(format!("QEMU migration {n} did not complete in 600 s").into())
                }
                _ => std::thread::sleep(Duration::from_millis(50)),
            }
        };
        let figure = Theirs::parse(&info)
            .ok_or_else(|| format!("QEMU migration {n}: no figures in {info:?}"))?;
        figures.push(figure);
        drop(source);
        (source, monitor) = (target, target_monitor);
    }
    drop(source);
    Ok(figures)
}

fn print_figures(memory_mib: u32, ours: &[Ours], theirs: Option<&[Theirs]>) {
    println!(
        "\nlive migration of a {memory_mib} MiB guest rewriting a 64 MiB tmpfs file in a loop, \
         between two processes on this host (guest pause: lockstep's sync last round + hand-over; \
         QEMU's downtime as it reports it)"
    );
    let mut t = Table::new([
        Col::left(12),
        Col::right(11),
        Col::right(11),
        Col::right(12),
        Col::right(11),
        Col::right(10),
        Col::right(11),
        Col::right(8),
    ]);
    t.row([
        "",
        "pause (ms)",
        "sync (ms)",
        "handoff (ms)",
        "catch-up",
        "total (ms)",
        "sent (MiB)",
        "rounds",
    ]);
    for (i, o) in ours.iter().enumerate() {
        t.row([
            format!("lockstep {}", i + 1),
            num(o.pause_ms(), 1),
            num(o.sync_pause_ms, 1),
            num(o.handoff_ms, 1),
            num(o.catch_up_ms, 0),
            num(o.total_ms, 0),
            num(o.sent_mib, 1),
            o.rounds.to_string(),
        ]);
    }
    for (i, q) in theirs.unwrap_or_default().iter().enumerate() {
        t.row([
            format!("QEMU {}", i + 1),
            num(q.downtime_ms, 1),
            String::new(),
            String::new(),
            String::new(),
            num(q.total_ms, 0),
            num(q.sent_mib, 1),
            String::new(),
        ]);
    }
    print!("{t}");
    let pause = median(&ours.iter().map(Ours::pause_ms).collect::<Vec<_>>());
    let total = median(&ours.iter().map(|o| o.total_ms).collect::<Vec<_>>());
    println!(
        "lockstep median: guest pause {pause:.1} ms (goal: at most 100 ms), total {total:.0} ms"
    );
    if let Some(theirs) = theirs {
        let down = median(&theirs.iter().map(|q| q.downtime_ms).collect::<Vec<_>>());
        let q_total = median(&theirs.iter().map(|q| q.total_ms).collect::<Vec<_>>());
        println!(
            "QEMU median: downtime {down:.1} ms, total {q_total:.0} ms\n\
             ratio lockstep/QEMU: guest pause {:.2}, total time {:.2}",
            ratio(pause, down),
            ratio(total, q_total)
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn figures_come_from_the_lines_each_side_prints() {
        let line = "migrated to 127.0.0.1:4000: sent 106.4 MiB in 2 rounds over 323 ms, guest \
                    paused 0.5 ms; the target caught up in 121 ms; guest paused 2.1 ms at the \
                    hand-over (icount 3781341664); 813 ms in all";
        assert_eq!(
            Ours::parse(line),
            Some(Ours {
                sent_mib: 106.4,
                rounds: 2.0,
                sync_pause_ms: 0.5,
                catch_up_ms: 121.0,
                handoff_ms: 2.1,
                total_ms: 813.0,
            })
        );
        assert_eq!(Ours::parse("error: the target failed"), None);
        let info = "globals:\nstore-global-state: on\nMigration status: completed\n\
                    total time: 2310 ms\ndowntime: 41 ms\nsetup: 3 ms\n\
                    transferred ram: 204800 kbytes\nthroughput: 700.00 mbps\n";
        assert_eq!(status_of(info), Some("completed"));
        assert_eq!(
            Theirs::parse(info),
            Some(Theirs {
                downtime_ms: 41.0,
                total_ms: 2310.0,
                sent_mib: 200.0,
            })
        );
        assert_eq!(status_of("Migration status: active\n"), Some("active"));
    }
}
