//! `lockstep bench ft`: what fault tolerance costs and how fast it acts.
//! - The guest workloads of `lockstep bench` plainly and as an FT primary
//!   protected by a backup on loopback, in alternating order per round: the
//!   wall ratio, and the log channel's bandwidth (the primary's `FT log:`).
//! - Failover: a guest prints a counter line every 10 ms; the primary is
//!   killed (SIGKILL) at a random moment; the time until the backup prints
//!   the first counter value the primary never released.
//! - Adding a backup to a running primary whose guest keeps rewriting a
//!   64 MiB tmpfs file: how long the guest is paused, the rounds, and how
//!   fast the guest runs during the sync against the second before it.
//!
//! The backup runs on this host too and takes a core from the primary, so
//! the core count and load average are printed with the figures.

use crate::guest::{
    parse_bench_lines, ratio, BenchError, BenchVm, GuestBenchArgs, RunResult, Scratch, WORKLOADS,
};
use crate::record::{format_bit_rate, median, workload_table};
use crate::table::{num, Col, Table};
use clap::Args;
use std::ffi::OsString;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant, SystemTime};

/// Longest wait for a booting guest or a sync.
pub(crate) const BOOT: Duration = Duration::from_secs(300);
/// Longest wait for a reaction to a kill, an exit or a status change.
pub(crate) const REACT: Duration = Duration::from_secs(60);
const TICK: &str = "tick-";

/// `/init` of the failover guest: a counter line every 10 ms.
const TICKER: &str = "#!/bin/sh\n/bin/busybox --install -s /bin\n\
    mount -t proc proc /proc; mount -t devtmpfs dev /dev\n\
    i=0; while :; do i=$((i+1)); echo tick-$i; usleep 10000; done\n";

/// `/init` of the add-backup guest: rewrites a 64 MiB tmpfs file forever.
pub(crate) const DIRTIER: &str = "#!/bin/sh\n/bin/busybox --install -s /bin\n\
    mount -t proc proc /proc; mount -t devtmpfs dev /dev; mount -t tmpfs -o size=80m tmp /mnt\n\
    dd if=/dev/zero of=/mnt/f bs=1M count=64 2>/dev/null; echo dirtying\n\
    while :; do dd if=/dev/zero of=/mnt/f bs=1M count=64 conv=notrunc 2>/dev/null; done\n";

#[derive(Args, Debug)]
pub struct FtBenchArgs {
    /// Rounds of one plain and one FT run of the workloads; odd rounds run plain first.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=100))]
    pub repeat: u32,
    /// Primaries to kill for the failover time (0: none).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(0..=100))]
    pub failovers: u32,
    /// Backups to add to a running primary for its pause (0: none).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(0..=100))]
    pub adds: u32,
    /// Both sides' --ft-timeout: the peer is dead after this long without a message.
    #[arg(
        long,
        value_name = "DURATION",
        default_value = "500ms",
        value_parser = vocab::duration_at_least(std::time::Duration::from_millis(10))
    )]
    pub ft_timeout: humantime::Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum FtBenchError {
    #[error(transparent)]
    Bench(#[from] BenchError),
    #[error("{what} printed no {expected:?} ({why}); its output ended with:\n{tail}")]
    Missing {
        what: String,
        expected: String,
        why: String,
        tail: String,
    },
}

pub(crate) fn missing(what: &str, expected: &str, why: &str, output: &str) -> FtBenchError {
    let (what, expected, why) = (what.into(), expected.into(), why.into());
    FtBenchError::Missing {
        what,
        expected,
        why,
        tail: tail(output),
    }
}

fn spawn_error(what: &str, source: std::io::Error) -> FtBenchError {
    let what = what.into();
    BenchError::Spawn { what, source }.into()
}

pub(crate) fn exe() -> Result<PathBuf, FtBenchError> {
    std::env::current_exe().map_err(|e| spawn_error("lockstep", e))
}

/// The last lines of `text`.
fn tail(text: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(12)..].join("\n")
}

enum Output {
    Console(Vec<u8>),
    Message(String),
}

/// Indices of a `Proc`'s two streams of lines.
const CONSOLE: usize = 0;
const MESSAGES: usize = 1;

/// A lockstep process whose output threads collect; killed when dropped.
pub(crate) struct Proc {
    what: String,
    pub(crate) child: Child,
    output: Receiver<(Instant, Output)>,
    /// Whole console lines and lockstep's own messages (stderr) so far,
    /// each with when it arrived; and how many of each were looked at.
    lines: [Vec<(Instant, String)>; 2],
    seen: [usize; 2],
    /// The console's last line while it is incomplete.
    partial: String,
}

impl Proc {
    pub(crate) fn spawn(what: &str, mut cmd: Command) -> Result<Proc, FtBenchError> {
        cmd.stdin(Stdio::null()).stdout(Stdio::piped());
        let child = cmd.stderr(Stdio::piped()).spawn();
        let mut child = child.map_err(|e| spawn_error(what, e))?;
        let (tx, output) = mpsc::channel();
        let (Some(mut out), Some(err)) = (child.stdout.take(), child.stderr.take()) else {
            let _ = child.kill();
            return Err(spawn_error(what, std::io::Error::other("no pipes")));
        };
        let send = move |tx: &mpsc::Sender<_>, o| tx.send((Instant::now(), o)).is_ok();
        let tx2 = tx.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n @ 1..) = out.read(&mut buf) {
                if !send(&tx, Output::Console(buf[..n].to_vec())) {
                    return;
                }
            }
        });
        std::thread::spawn(move || {
            let mut lines = BufReader::new(err).lines().map_while(Result::ok);
            while lines.next().is_some_and(|l| send(&tx2, Output::Message(l))) {}
        });
        let what = what.into();
        let (lines, seen, partial) = (Default::default(), [0; 2], String::new());
        Ok(Proc {
            what,
            child,
            output,
            lines,
            seen,
            partial,
        })
    }

    /// The next line of `stream` that `found` accepts, and when it came.
    fn wait(
        &mut self,
        stream: usize,
        expected: &str,
        wait: Duration,
        mut found: impl FnMut(&str) -> bool,
    ) -> Result<(Instant, String), FtBenchError> {
        let deadline = Instant::now() + wait;
        loop {
            while let Some((at, line)) = self.lines[stream].get(self.seen[stream]) {
                self.seen[stream] += 1;
                if found(line) {
                    return Ok((*at, line.clone()));
                }
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match self.output.recv_timeout(left) {
                Ok((at, output)) => self.add(at, output),
                Err(e) => return Err(self.missing(expected, e, wait)),
            }
        }
    }

    fn add(&mut self, at: Instant, output: Output) {
        match output {
            Output::Message(line) => self.lines[MESSAGES].push((at, line)),
            Output::Console(bytes) => {
                self.partial += &String::from_utf8_lossy(&bytes);
                while let Some(end) = self.partial.find('\n') {
                    let line: String = self.partial.drain(..=end).collect();
                    self.lines[CONSOLE].push((at, line.trim_end().to_string()));
                }
            }
        }
    }

    fn missing(&self, expected: &str, error: RecvTimeoutError, wait: Duration) -> FtBenchError {
        let why = match error {
            RecvTimeoutError::Timeout => format!("waited {} s", wait.as_secs()),
            RecvTimeoutError::Disconnected => "it ended".into(),
        };
        let all = self.lines.iter().flatten().map(|(_, l)| l.as_str());
        missing(
            &self.what,
            expected,
            &why,
            &all.collect::<Vec<_>>().join("\n"),
        )
    }

    /// The next message holding `needle`, and when it came.
    pub(crate) fn message(
        &mut self,
        needle: &str,
        wait: Duration,
    ) -> Result<(Instant, String), FtBenchError> {
        self.wait(MESSAGES, needle, wait, |line| line.contains(needle))
    }

    /// When the next console line that `wanted` accepts came.
    pub(crate) fn console_line(
        &mut self,
        expected: &str,
        wait: Duration,
        wanted: impl FnMut(&str) -> bool,
    ) -> Result<Instant, FtBenchError> {
        Ok(self.wait(CONSOLE, expected, wait, wanted)?.0)
    }

    /// Every console line, once the process has closed its output.
    fn drain(&mut self) -> impl Iterator<Item = &str> {
        while let Ok((at, output)) = self.output.recv_timeout(REACT) {
            self.add(at, output);
        }
        self.lines[CONSOLE].iter().map(|(_, line)| line.as_str())
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `lockstep run` of `vm` with `extra` flags, its console on stdout.
pub(crate) fn run_cmd(vm: &BenchVm<'_>, extra: &[OsString]) -> Result<Command, FtBenchError> {
    let mut cmd = Command::new(exe()?);
    cmd.arg("run").arg("--kernel").arg(&vm.image.kernel);
    cmd.arg("--firmware").arg(&vm.image.firmware);
    cmd.arg("--initrd")
        .arg(&vm.initrd)
        .arg("--append")
        .arg(&vm.append);
    cmd.args(["--console", "stdio", "--cpus", "1", "--memory", "512M"]);
    cmd.args(extra);
    Ok(cmd)
}

/// Scratch paths and the timeout of the FT pairs.
struct Pairs<'a> {
    dir: &'a Path,
    /// `--ft-timeout` as both sides take it (`500ms`).
    timeout: String,
}

impl Pairs<'_> {
    fn path(&self, tag: &str, what: &str) -> PathBuf {
        self.dir.join(format!("{tag}.{what}"))
    }

    /// A backup under the arbiter of `arbiter_tag`, on loopback; and its address.
    fn backup(
        &self,
        arbiter_tag: &str,
        tag: &str,
        console: &str,
    ) -> Result<(Proc, String), FtBenchError> {
        let mut cmd = Command::new(exe()?);
        cmd.args(["ft", "backup", "--console", console]);
        cmd.args(["--listen", "127.0.0.1:0"]);
        cmd.args(["--ft-timeout", &self.timeout]);
        cmd.arg("--ft-arbiter")
            .arg(self.path(arbiter_tag, "arbiter"));
        cmd.arg("--ft-control").arg(self.path(tag, "backup.sock"));
        cmd.arg("--replica-dir").arg(self.path(tag, "replicas"));
        let mut backup = Proc::spawn(&format!("the FT backup ({tag})"), cmd)?;
        let (_, line) = backup.message("listening on", REACT)?;
        let addr = line.rsplit(' ').next().unwrap_or_default().to_string();
        Ok((backup, addr))
    }

    /// `lockstep run` flags of an FT primary, protected by `backup` if given.
    fn primary_flags(&self, tag: &str, backup: Option<&str>) -> Vec<OsString> {
        let mut flags: Vec<OsString> =
            vec!["--ft-arbiter".into(), self.path(tag, "arbiter").into()];
        flags.extend(["--ft-control".into(), self.path(tag, "primary.sock").into()]);
        flags.extend(["--ft-timeout".into(), self.timeout.clone().into()]);
        if let Some(addr) = backup {
            flags.extend(["--ft-backup".into(), addr.into()]);
        }
        flags
    }
}

/// The number right after `key` in `text`.
pub(crate) fn number_after(text: &str, key: &str) -> Option<f64> {
    let rest = &text[text.find(key)? + key.len()..];
    let end = rest.find(|c: char| !(c.is_ascii_digit() || c == '.'));
    rest[..end.unwrap_or(rest.len())].parse().ok()
}

/// The numbers after each of `keys` in `text`.
fn numbers<const N: usize>(text: &str, keys: [&str; N]) -> Option<[f64; N]> {
    let mut values = [0.0; N];
    for (value, key) in values.iter_mut().zip(keys) {
        *value = number_after(text, key)?;
    }
    Some(values)
}

/// `sent X MiB in R rounds over T ms, guest paused P ms`.
#[derive(Debug, Clone, Copy, PartialEq)]
struct SyncFigures {
    mib: f64,
    rounds: f64,
    total_ms: f64,
    paused_ms: f64,
}

impl SyncFigures {
    fn parse(line: &str) -> Option<SyncFigures> {
        let keys = ["sent ", "MiB in ", "rounds over ", "guest paused "];
        let [mib, rounds, total_ms, paused_ms] = numbers(line, keys)?;
        Some(SyncFigures {
            mib,
            rounds,
            total_ms,
            paused_ms,
        })
    }
}

/// `FT log: N bytes in T s (…; … over Z guest s)`.
#[derive(Debug, Clone, Copy, PartialEq)]
struct LogFigures {
    bytes: f64,
    host_s: f64,
    guest_s: f64,
}

impl LogFigures {
    fn parse(line: &str) -> Option<LogFigures> {
        let [bytes, host_s, guest_s] = numbers(line, ["FT log: ", "bytes in ", "second over "])?;
        Some(LogFigures {
            bytes,
            host_s,
            guest_s,
        })
    }
}

struct FtRun {
    run: RunResult,
    sync: SyncFigures,
    log: LogFigures,
    /// Why the backup did not follow to the end, if it did not.
    backup_trouble: Option<String>,
}

struct Round {
    plain_first: bool,
    plain: RunResult,
    ft: FtRun,
}

pub fn run(args: FtBenchArgs) -> Result<ExitCode, Box<dyn std::error::Error>> {
    let scratch = Scratch::new("bench-ft")?;
    let guest = GuestBenchArgs {
        cpus: 1,
        memory_mib: 512,
        no_qemu: true,
        ..Default::default()
    };
    let dir = |tag| Scratch::new_in(scratch.path(), tag);
    let (work_dir, tick_dir, dirty_dir) = (dir("workloads")?, dir("ticker")?, dir("dirtier")?);
    let pairs = Pairs {
        dir: scratch.path(),
        timeout: args.ft_timeout.to_string(),
    };
    println!("{}", host_line());
    let vm = BenchVm::prepare(&guest, WORKLOADS, &work_dir)?;
    let rounds: Result<Vec<_>, _> = (0..args.repeat).map(|i| round(&vm, &pairs, i)).collect();
    print_rounds(&rounds?);
    if args.failovers > 0 {
        let vm = BenchVm::prepare(&guest, TICKER, &tick_dir)?;
        let kills: Result<Vec<_>, _> = (1..=args.failovers)
            .map(|n| failover(&vm, &pairs, n))
            .collect();
        print_failovers(&kills?, *args.ft_timeout);
    }
    if args.adds > 0 {
        let vm = BenchVm::prepare(&guest, DIRTIER, &dirty_dir)?;
        print_adds(&add_backups(&vm, &pairs, args.adds)?);
    }
    println!("{}", host_line());
    Ok(ExitCode::SUCCESS)
}

pub(crate) fn host_line() -> String {
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let load: Vec<&str> = load.split_whitespace().take(3).collect();
    format!(
        "host: {cores} cores, load average {} (the backups run here too)",
        load.join(" ")
    )
}

fn round(vm: &BenchVm<'_>, pairs: &Pairs<'_>, index: u32) -> Result<Round, FtBenchError> {
    let (n, plain_first) = (index + 1, index.is_multiple_of(2));
    let plain = || {
        eprintln!("bench: round {n}: plain run …");
        run_to_end("lockstep run", run_cmd(vm, &[])?).map(|(run, _)| run)
    };
    let (plain, ft) = if plain_first {
        let plain = plain()?;
        (plain, ft_run(vm, pairs, n)?)
    } else {
        let ft = ft_run(vm, pairs, n)?;
        (plain()?, ft)
    };
    Ok(Round {
        plain_first,
        plain,
        ft,
    })
}

/// Run to power-off: its BENCH lines, wall time and messages.
fn run_to_end(what: &str, mut cmd: Command) -> Result<(RunResult, String), FtBenchError> {
    let start = Instant::now();
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|e| spawn_error(what, e))?;
    let console = String::from_utf8_lossy(&out.stdout);
    let mut run = parse_bench_lines(&console);
    run.wall = start.elapsed().as_secs_f64();
    let messages = String::from_utf8_lossy(&out.stderr).into_owned();
    if !run.guest.contains_key("done") {
        let output = format!("{console}\n{messages}");
        return Err(missing(what, "BENCH done", "it ended", &output));
    }
    Ok((run, messages))
}

/// The workloads as an FT primary with a fresh backup.
fn ft_run(vm: &BenchVm<'_>, pairs: &Pairs<'_>, n: u32) -> Result<FtRun, FtBenchError> {
    eprintln!("bench: round {n}: FT primary with a backup on loopback …");
    let tag = format!("round-{n}");
    let (mut backup, addr) = pairs.backup(&tag, &tag, "none")?;
    let cmd = run_cmd(vm, &pairs.primary_flags(&tag, Some(&addr)))?;
    let (run, messages) = run_to_end("the FT primary", cmd)?;
    let line = |key: &str| {
        messages
            .lines()
            .find(|l| l.contains(key))
            .unwrap_or_default()
    };
    let lost = |expected| missing("the FT primary", expected, "it ended", &messages);
    let sync = SyncFigures::parse(line("protected by the backup"));
    let sync = sync.ok_or_else(|| lost("protected by the backup … (sent …)"))?;
    let log = LogFigures::parse(line("FT log: ")).ok_or_else(|| lost("FT log: N bytes …"))?;
    let backup_trouble = backup
        .message("ended the run", REACT)
        .err()
        .map(|e| e.to_string());
    Ok(FtRun {
        run,
        sync,
        log,
        backup_trouble,
    })
}

fn print_rounds(rounds: &[Round]) {
    println!(
        "\nFT on vs off: the guest workloads plainly and as an FT primary (backup on loopback)"
    );
    for (i, r) in rounds.iter().enumerate() {
        let order = if r.plain_first {
            "plain first"
        } else {
            "FT first"
        };
        println!("round {} ({order})", i + 1);
        let (plain, ft) = (&r.plain, &r.ft.run);
        print!("{}", workload_table(plain, ft, "FT (s)"));
        let (s, l) = (r.ft.sync, r.ft.log);
        println!(
            "backup added: {:.1} MiB in {} rounds over {} ms, guest paused {:.1} ms",
            s.mib, s.rounds, s.total_ms, s.paused_ms
        );
        let uptime = ft.guest.get("done").copied().unwrap_or(f64::NAN);
        let rate = |seconds| format_bit_rate(ratio(l.bytes * 8.0, seconds));
        println!(
            "log channel: {} bytes, {} over {:.1} host s; per guest second: {} over {:.1} s of \
             icount time, {} over the guest's {uptime:.1} s uptime",
            l.bytes,
            rate(l.host_s),
            l.host_s,
            rate(l.guest_s),
            l.guest_s,
            rate(uptime)
        );
        if let Some(why) = &r.ft.backup_trouble {
            println!("the backup did not follow to the end: {why}");
        }
    }
    let ratios: Vec<f64> = rounds
        .iter()
        .map(|r| ratio(r.ft.run.wall, r.plain.wall))
        .collect();
    let list: Vec<String> = ratios.iter().map(|x| format!("{x:.3}")).collect();
    let median_ratio = median(&ratios);
    println!(
        "FT/plain wall: {} (median {median_ratio:.3}; goal <= 1.05)",
        list.join(" ")
    );
    let sum = |f: fn(&Round) -> f64| rounds.iter().map(f).sum::<f64>();
    let bits = sum(|r| r.ft.log.bytes) * 8.0;
    println!(
        "log channel, mean over {} runs: {:.0} bytes, {} per host second, {} per guest second \
         of icount time (goal <= 1 Mbit/s)",
        rounds.len(),
        bits / 8.0 / rounds.len() as f64,
        format_bit_rate(ratio(bits, sum(|r| r.ft.log.host_s))),
        format_bit_rate(ratio(bits, sum(|r| r.ft.log.guest_s)))
    );
}

struct Failover {
    delay: Duration,
    live: Duration,
    first_new: Duration,
    /// The last counter value the primary released, the first new one the backup printed.
    ticks: (u64, u64),
    live_line: String,
    /// When the backup said it lost the primary, and why.
    lost: (Duration, String),
}

fn tick(line: &str) -> Option<u64> {
    line.strip_prefix(TICK)?.parse().ok()
}

/// A delay between 200 and 1500 ms, different each time.
fn random_delay() -> Duration {
    let now = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH);
    Duration::from_millis(200 + u64::from(now.map_or(0, |d| d.subsec_nanos())) % 1300)
}

fn failover(vm: &BenchVm<'_>, pairs: &Pairs<'_>, n: u32) -> Result<Failover, FtBenchError> {
    eprintln!("bench: failover {n}: booting a primary and its backup …");
    let tag = format!("failover-{n}");
    let (mut backup, addr) = pairs.backup(&tag, &tag, "stdio")?;
    let cmd = run_cmd(vm, &pairs.primary_flags(&tag, Some(&addr)))?;
    let mut primary = Proc::spawn("the FT primary", cmd)?;
    primary.message("protected by the backup", BOOT)?;
    backup.message("following the primary", REACT)?;
    primary.console_line("tick-20", BOOT, |l| l == "tick-20")?;
    let delay = random_delay();
    std::thread::sleep(delay);
    let kill = primary.child.kill();
    let killed = Instant::now();
    kill.map_err(|e| spawn_error("kill -9 of the primary", e))?;
    let last = primary.drain().filter_map(tick).fold(0, u64::max);
    let (lost_at, lost) = backup.message("primary lost: ", REACT)?;
    let reason = lost.split("primary lost: ").nth(1).unwrap_or_default();
    let lost = (
        lost_at.saturating_duration_since(killed),
        reason.to_string(),
    );
    let (live_at, live_line) = backup.message("live at icount", REACT)?;
    let mut first = 0;
    let new_at = backup.console_line(&format!("a {TICK} after {last}"), REACT, |l| {
        first = tick(l).filter(|&t| t > last).unwrap_or(0);
        first > 0
    })?;
    Ok(Failover {
        delay,
        live: live_at.saturating_duration_since(killed),
        first_new: new_at.saturating_duration_since(killed),
        ticks: (last, first),
        live_line,
        lost,
    })
}

fn print_failovers(kills: &[Failover], timeout: std::time::Duration) {
    let timeout_ms = timeout.as_millis();
    println!(
        "\nfailover: kill -9 of the primary at a random moment (after: since tick-20); the guest \
         prints a counter line every 10 ms; --ft-timeout {timeout_ms} ms"
    );
    let mut t = Table::new([
        Col::left(5),
        Col::right(10),
        Col::right(9),
        Col::right(9),
        Col::right(13),
        Col::right(10),
        Col::right(15),
        Col::text().gap(2),
    ]);
    t.row([
        "kill",
        "after (ms)",
        "lost (ms)",
        "live (ms)",
        "new line (ms)",
        "re-emitted",
        "released -> new",
        "why the backup saw the primary lost",
    ]);
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    for (i, k) in kills.iter().enumerate() {
        let field = |key| number_after(&k.live_line, key).map_or("-".into(), |v| v.to_string());
        t.row([
            (i + 1).to_string(),
            num(ms(k.delay), 0),
            num(ms(k.lost.0), 0),
            num(ms(k.live), 0),
            num(ms(k.first_new), 0),
            field("re-emitted "),
            format!("{} -> {}", k.ticks.0, k.ticks.1),
            k.lost.1.clone(),
        ]);
    }
    print!("{t}");
    let median_ms =
        |f: fn(&Failover) -> Duration| median(&kills.iter().map(|k| ms(f(k))).collect::<Vec<_>>());
    println!(
        "median after the kill: backup live {:.0} ms (its `live at icount` message), first new \
         counter line {:.0} ms (lost: its `primary lost` message)",
        median_ms(|k| k.live),
        median_ms(|k| k.first_new)
    );
}

fn add_backups(
    vm: &BenchVm<'_>,
    pairs: &Pairs<'_>,
    count: u32,
) -> Result<Vec<Added>, FtBenchError> {
    eprintln!("bench: booting an unprotected primary that rewrites 64 MiB in a loop …");
    let cmd = run_cmd(vm, &pairs.primary_flags("adds", None))?;
    let mut primary = Proc::spawn("the FT primary", cmd)?;
    primary.console_line("dirtying", BOOT, |l| l == "dirtying")?;
    let sock = pairs.path("adds", "primary.sock");
    (1..=count).map(|n| add_one(pairs, &sock, n)).collect()
}

/// One backup added to the running primary.
struct Added {
    sync: SyncFigures,
    /// MiB changed during each pre-copy round.
    changed: String,
    /// The guest's instructions per host second during the sync, over
    /// the same in the second before it.
    speed: f64,
}

/// Add a fresh backup to the primary at `sock`, then kill it.
fn add_one(pairs: &Pairs<'_>, sock: &Path, n: u32) -> Result<Added, FtBenchError> {
    eprintln!("bench: adding backup {n} …");
    let (backup, addr) = pairs.backup("adds", &format!("add-{n}"), "none")?;
    let before = icount(sock)?;
    std::thread::sleep(Duration::from_secs(1));
    let start = icount(sock)?;
    let answer = control(sock, &["add-backup", "--ft-backup", &addr])?;
    let end = icount(sock)?;
    let rate = |(t0, i0): (Instant, f64), (t1, i1): (Instant, f64)| {
        ratio(i1 - i0, t1.duration_since(t0).as_secs_f64())
    };
    let speed = ratio(rate(start, end), rate(before, start));
    let sync = answer.lines().rev().find_map(SyncFigures::parse);
    let what = "lockstep ft add-backup";
    let sync = sync.ok_or_else(|| missing(what, "protected … (sent …)", "it ended", &answer))?;
    drop(backup);
    wait_unprotected(sock)?;
    let changed = answer.lines().filter_map(|l| number_after(l, "sent; "));
    let changed: Vec<String> = changed.map(|mib| mib.to_string()).collect();
    let changed = changed.join(" ");
    Ok(Added {
        sync,
        changed,
        speed,
    })
}

/// The primary's icount by `lockstep ft status`, and when it was asked.
fn icount(sock: &Path) -> Result<(Instant, f64), FtBenchError> {
    let status = control(sock, &["status"])?;
    let icount = number_after(&status, "icount: ");
    let icount =
        icount.ok_or_else(|| missing("lockstep ft status", "icount: N", "it answered", &status))?;
    Ok((Instant::now(), icount))
}

/// `lockstep ft COMMAND… --control SOCK`: its stdout and stderr.
pub(crate) fn control(sock: &Path, command: &[&str]) -> Result<String, FtBenchError> {
    let mut cmd = Command::new(exe()?);
    cmd.arg("ft")
        .args(command)
        .arg("--control")
        .arg(sock)
        .stdin(Stdio::null());
    let out = cmd.output().map_err(|e| spawn_error("lockstep ft", e))?;
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    Ok(text(&out.stdout) + &text(&out.stderr))
}

/// Once its backup is killed, the primary must notice and run on alone.
fn wait_unprotected(sock: &Path) -> Result<(), FtBenchError> {
    let deadline = Instant::now() + REACT;
    loop {
        let status = control(sock, &["status"])?;
        if status
            .lines()
            .any(|l| l.trim() == "protection: unprotected")
        {
            return Ok(());
        }
        if Instant::now() > deadline {
            let expected = "protection: unprotected";
            return Err(missing(
                "lockstep ft status",
                expected,
                "waited 60 s",
                &status,
            ));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn print_adds(adds: &[Added]) {
    println!(
        "\nadding a backup to a running primary whose guest rewrites a 64 MiB tmpfs file in a loop \
         (guest speed: its instructions per second during the sync / in the second before)"
    );
    let mut t = Table::new([
        Col::left(5),
        Col::right(11),
        Col::right(7),
        Col::right(11),
        Col::right(11),
        Col::right(12),
        Col::text().gap(2),
    ]);
    t.row([
        "add",
        "paused (ms)",
        "rounds",
        "sent (MiB)",
        "total (ms)",
        "guest speed",
        "MiB changed during each round",
    ]);
    for (i, a) in adds.iter().enumerate() {
        let (n, s) = (i + 1, &a.sync);
        t.row([
            n.to_string(),
            num(s.paused_ms, 1),
            s.rounds.to_string(),
            num(s.mib, 1),
            s.total_ms.to_string(),
            num(a.speed, 2),
            a.changed.to_string(),
        ]);
    }
    print!("{t}");
    let paused: Vec<f64> = adds.iter().map(|a| a.sync.paused_ms).collect();
    println!("median guest pause: {:.1} ms", median(&paused));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn figures_come_from_the_lines_lockstep_prints() {
        let sync = "lockstep: FT primary: protected by the backup at 127.0.0.1:4000 (arbiter \
                    generation 0; sent 70.5 MiB in 4 rounds over 1234 ms, guest paused 12.5 ms)";
        let s = SyncFigures::parse(sync).expect("sync figures");
        assert_eq!(
            (s.mib, s.rounds, s.total_ms, s.paused_ms),
            (70.5, 4.0, 1234.0, 12.5)
        );
        let log = "lockstep: FT log: 123456 bytes in 30.5 s (32.4 kbit/s; 50.1 kbit per guest \
                   second over 19.7 guest s)";
        let l = LogFigures::parse(log).expect("log figures");
        assert_eq!((l.bytes, l.host_s, l.guest_s), (123456.0, 30.5, 19.7));
        assert_eq!(SyncFigures::parse("sent 1 MiB in 2 rounds"), None);
        assert_eq!(LogFigures::parse("lockstep: FT log: lots"), None);
    }

    #[test]
    fn counter_lines_are_whole_tick_lines() {
        assert_eq!(tick("tick-42"), Some(42));
        assert_eq!(tick("tick-4x"), None);
        assert_eq!(tick("xtick-4"), None);
        assert_eq!(
            number_after("re-emitted 310 bytes)", "re-emitted "),
            Some(310.0)
        );
        assert_eq!(number_after("nothing", "re-emitted "), None);
    }

    #[test]
    fn a_console_line_is_stamped_with_the_chunk_that_completed_it() {
        let mut cmd = Command::new("sh");
        cmd.args([
            "-c",
            "echo noise >&2; echo 'listening on 10.0.0.1:7' >&2; \
             printf 'tick-1\\r\\ntick-'; sleep 0.2; printf '2\\r\\ntick-3\\r\\n'",
        ]);
        let mut p = Proc::spawn("sh", cmd).expect("sh runs");
        let (_, line) = p.message("listening on", REACT).expect("the message");
        assert_eq!(line, "listening on 10.0.0.1:7");
        assert!(p.message("no such message", REACT).is_err());
        let first = p
            .console_line("tick-1", REACT, |l| l == "tick-1")
            .expect("tick-1");
        let second = p
            .console_line("tick-2", REACT, |l| tick(l) == Some(2))
            .expect("tick-2");
        assert!(second.duration_since(first) >= Duration::from_millis(150));
        assert!(p.console_line("tick-9", REACT, |l| l == "tick-9").is_err());
        assert_eq!(
            p.drain().collect::<Vec<_>>(),
            ["tick-1", "tick-2", "tick-3"]
        );
    }
}
