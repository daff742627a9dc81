//! `lockstep bench record`: what recording costs. The guest workloads of
//! `lockstep bench` run under lockstep twice per round in one invocation,
//! plainly and with `--record` into a scratch log; the order alternates
//! from round to round so that drift in the host's load favours neither.
//! The last log is then replayed (`lockstep replay`), which must match, and
//! QEMU's own record mode runs on the same image for comparison.
//!
//! Guest seconds, for the log's bits per guest second, come from the log
//! itself: the guest's `mtime` at the end of the run is the last record's
//! icount / N (N: the VM's instructions per tick, from the setup the log
//! starts with) plus every `ClockWarp` the log holds (DESIGN §3.2; the bench
//! guest powers off without a reset, so `mtime` never restarts). icount / N
//! alone would count only the time the guest spent executing: here the
//! guest runs slower than real time, and the catch-up warps that keep its
//! clock with real time are part of its time. The guest's own
//! `/proc/uptime` at `BENCH done` is printed next to it as a cross-check; it
//! is a little smaller (it starts after firmware and early kernel boot).

use crate::guest::{ratio, BenchError, BenchVm, GuestBenchArgs, RunResult, Scratch, WORKLOADS};
use crate::table::{num, Col, Table};
use clap::Args;
use machine::layout::TIMEBASE_HZ;
use replay::Control;
use replay::{Input, LogReader, ReadError, RecordKind, TailPolicy};
use std::collections::BTreeMap;
use std::ffi::OsString;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::Instant;

#[derive(Args, Debug)]
pub struct RecordBenchArgs {
    /// Rounds of one plain and one recorded run (and the same under QEMU);
    /// odd rounds run plain first, even rounds record first.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=100))]
    pub repeat: u32,
    /// Passed to `lockstep run --record`: a state-hash checkpoint every N instructions.
    #[arg(long, value_name = "N", default_value_t = replay::session::CHECKPOINT_EVERY, value_parser = clap::value_parser!(u64).range(1..))]
    pub checkpoint_every: u64,
    /// Do not replay the last log.
    #[arg(long)]
    pub no_replay: bool,
    #[command(flatten)]
    pub vm: GuestBenchArgs,
}

#[derive(Debug, thiserror::Error)]
pub enum RecordBenchError {
    #[error(transparent)]
    Bench(#[from] BenchError),
    #[error("reading the recording {path}: {source}")]
    Log { path: PathBuf, source: ReadError },
    #[error(
        "the plain and the recorded run differ: plain ran [{plain}], recorded ran [{recorded}]"
    )]
    Workloads { plain: String, recorded: String },
    #[error("replaying {log} diverged: {message}")]
    Diverged { log: PathBuf, message: String },
    #[error("{path}: the log does not start with a VM setup naming its clock rate")]
    NoRate { path: PathBuf },
    #[error("replaying {log} failed ({status}): {message}")]
    ReplayFailed {
        log: PathBuf,
        status: String,
        message: String,
    },
}

/// The part of the VM setup a log starts with (`lockstep run`'s `VmSetup`,
/// as JSON) that this benchmark reads: the clock rate.
#[derive(serde::Deserialize)]
struct SetupRate {
    instructions_per_tick: machine::InstructionsPerTick,
}

/// Count and encoded size of one kind of record.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct KindStats {
    pub count: u64,
    pub bytes: u64,
}

/// What a recording holds, read back from its log.
#[derive(Debug, Default, Clone, PartialEq, serde::Serialize)]
pub struct LogStats {
    /// The whole log, header included.
    pub bytes: u64,
    pub records: u64,
    /// Per record kind (frame bytes, the 8-byte frame header included).
    pub kinds: BTreeMap<&'static str, KindStats>,
    pub last_icount: u64,
    /// Sum of all `ClockWarp` inputs, in timebase ticks.
    pub warp_ticks: u64,
    /// The recorded VM's clock rate, from the setup the log starts with
    /// (0 if it has none: [`LogStats::read`] refuses such a log).
    pub instructions_per_tick: u64,
}

impl LogStats {
    pub fn read(path: &Path) -> Result<LogStats, RecordBenchError> {
        let log_err = |source| RecordBenchError::Log {
            path: path.to_path_buf(),
            source,
        };
        let reader = LogReader::open(path, TailPolicy::Strict).map_err(log_err)?;
        let stats = LogStats::from_reader(reader).map_err(log_err)?;
        if stats.instructions_per_tick == 0 {
            return Err(RecordBenchError::NoRate {
                path: path.to_path_buf(),
            });
        }
        Ok(stats)
    }

    /// Reads every record, checking each as `lockstep replay` does.
    pub fn from_reader<R: Read>(mut reader: LogReader<R>) -> Result<LogStats, ReadError> {
        let mut stats = LogStats::default();
        let mut offset = reader.offset();
        while let Some(record) = reader.next_record()? {
            let kind = stats.kinds.entry(kind_name(&record.kind)).or_default();
            kind.count += 1;
            kind.bytes += reader.offset() - offset;
            offset = reader.offset();
            match &record.kind {
                RecordKind::Input(Input::ClockWarp { ticks }) => {
                    stats.warp_ticks = stats.warp_ticks.saturating_add(*ticks);
                }
                RecordKind::Control(Control::ConfigChange(setup)) if stats.records == 0 => {
                    stats.instructions_per_tick = serde_json::from_slice::<SetupRate>(setup)
                        .map_or(0, |s| s.instructions_per_tick.get());
                }
                _ => {}
            }
            stats.records += 1;
        }
        stats.bytes = reader.offset();
        stats.last_icount = reader.last_icount();
        Ok(stats)
    }

    /// The guest's `mtime` at the last record, in seconds.
    pub fn guest_seconds(&self) -> f64 {
        let rate = self.instructions_per_tick.max(1);
        let ticks = (self.last_icount / rate).saturating_add(self.warp_ticks);
        ticks as f64 / TIMEBASE_HZ as f64
    }

    /// Guest seconds spent in clock warps (idle skips and catch-ups).
    pub fn warp_seconds(&self) -> f64 {
        self.warp_ticks as f64 / TIMEBASE_HZ as f64
    }

    pub fn bits_per_guest_second(&self) -> f64 {
        ratio(self.bytes as f64 * 8.0, self.guest_seconds())
    }
}

/// A short name for a record's kind (inputs by what they carry).
fn kind_name(kind: &RecordKind) -> &'static str {
    match kind {
        RecordKind::Input(Input::ConsoleInput(_)) => "console input",
        RecordKind::Input(Input::NetFrame { .. }) => "net frame",
        RecordKind::Input(Input::ClockWarp { .. }) => "clock warp",
        RecordKind::Input(Input::Entropy(_)) => "entropy",
        RecordKind::Input(Input::HostCommand(_)) => "host command",
        RecordKind::Progress => "progress",
        RecordKind::Output { .. } => "output",
        RecordKind::Checkpoint { .. } => "checkpoint",
        RecordKind::Control(_) => "control",
    }
}

/// A run and the CPU time (user + system, all threads) its process used:
/// on a shared host the wall time also measures the neighbours.
#[derive(Debug, Default)]
pub struct Measured {
    pub run: RunResult,
    /// NaN when `/proc/self/stat` cannot tell.
    pub cpu: f64,
}

/// Run `f`, which waits for one child process, and add that child's CPU time.
fn measured<E>(f: impl FnOnce() -> Result<RunResult, E>) -> Result<Measured, E> {
    let before = children_cpu_seconds();
    let run = f()?;
    let cpu = match (before, children_cpu_seconds()) {
        (Some(a), Some(b)) => b - a,
        _ => f64::NAN,
    };
    Ok(Measured { run, cpu })
}

/// CPU seconds used so far by this process's children that it waited for.
fn children_cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    parse_children_cpu(&stat, rustix::param::clock_ticks_per_second())
}

/// `cutime + cstime` (fields 16 and 17) of a `/proc/PID/stat` line, in seconds.
fn parse_children_cpu(stat: &str, ticks_per_second: u64) -> Option<f64> {
    // The command name (field 2) is in parentheses and may hold anything.
    let rest = stat.get(stat.rfind(')')? + 1..)?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // `rest` starts at field 3.
    let ticks = |field: usize| fields.get(field - 3)?.parse::<u64>().ok();
    let total = ticks(16)?.checked_add(ticks(17)?)?;
    (ticks_per_second > 0).then(|| total as f64 / ticks_per_second as f64)
}

/// One plain and one recorded lockstep run.
struct Round {
    plain_first: bool,
    plain: Measured,
    record: Measured,
    log: LogStats,
    qemu: Option<QemuRound>,
}

impl Round {
    fn ratio(&self) -> f64 {
        ratio(self.record.run.wall, self.plain.run.wall)
    }

    fn cpu_ratio(&self) -> f64 {
        ratio(self.record.cpu, self.plain.cpu)
    }
}

/// QEMU TCG plainly and in its record mode; the record run's failure is
/// reported, not fatal (it is only the comparison).
struct QemuRound {
    plain: Measured,
    /// The run and the size of its rrfile.
    record: Result<(Measured, u64), BenchError>,
}

/// Round `index` (from 0) runs plain first when even.
fn plain_first(index: u32) -> bool {
    index.is_multiple_of(2)
}

pub fn run(args: RecordBenchArgs) -> Result<ExitCode, Box<dyn std::error::Error>> {
    let scratch = Scratch::new("bench-record")?;
    let vm = BenchVm::prepare(&args.vm, WORKLOADS, &scratch)?;
    let rrfile = scratch.path().join("qemu-record.rr");
    let qemu = vm.wants_qemu().then_some(rrfile.as_path());
    let mut rounds = Vec::new();
    let mut last_log = None;
    for index in 0..args.repeat {
        let log = scratch.path().join(format!("round-{}.log", index + 1));
        rounds.push(round(&vm, &args, index, &log, qemu)?);
        // Only the last log is replayed; the others are not kept.
        if let Some(previous) = last_log.replace(log) {
            let _ = std::fs::remove_file(previous);
        }
    }
    let replayed = match (&last_log, args.no_replay) {
        (Some(log), false) => {
            eprintln!("bench: replaying the last recording …");
            Some(replay(log)?)
        }
        _ => None,
    };
    if args.vm.json {
        print_json(&rounds, replayed.as_ref());
    } else {
        print_report(&rounds, replayed.as_ref());
    }
    Ok(ExitCode::SUCCESS)
}

fn round(
    vm: &BenchVm<'_>,
    args: &RecordBenchArgs,
    index: u32,
    log: &Path,
    qemu: Option<&Path>,
) -> Result<Round, RecordBenchError> {
    let n = index + 1;
    let record_flags: Vec<OsString> = vec![
        "--record".into(),
        log.into(),
        "--checkpoint-every".into(),
        args.checkpoint_every.to_string().into(),
    ];
    let run_plain = || {
        eprintln!("bench: round {n}: plain run under lockstep …");
        measured(|| vm.run_lockstep(&[], &[]))
    };
    let run_record = || {
        eprintln!("bench: round {n}: recorded run under lockstep …");
        measured(|| vm.run_lockstep(&record_flags, &[]))
    };
    let first = plain_first(index);
    let (plain, record) = if first {
        let plain = run_plain()?;
        (plain, run_record()?)
    } else {
        let record = run_record()?;
        (run_plain()?, record)
    };
    if plain.run.order != record.run.order {
        return Err(RecordBenchError::Workloads {
            plain: plain.run.order.join(" "),
            recorded: record.run.order.join(" "),
        });
    }
    let log = LogStats::read(log)?;
    let qemu = match qemu {
        Some(rrfile) => Some(qemu_round(vm, n, first, rrfile)?),
        None => None,
    };
    Ok(Round {
        plain_first: first,
        plain,
        record,
        log,
        qemu,
    })
}

/// QEMU plainly (TCG, as `lockstep bench` runs it) and with
/// `-icount shift=auto,rr=record` into `rrfile`, in the round's order.
fn qemu_round(
    vm: &BenchVm<'_>,
    n: u32,
    plain_first: bool,
    rrfile: &Path,
) -> Result<QemuRound, BenchError> {
    let mut icount = OsString::from("shift=auto,rr=record,rrfile=");
    icount.push(rrfile);
    let record_flags = ["-icount".into(), icount];
    let run_plain = || {
        eprintln!("bench: round {n}: plain run under QEMU TCG …");
        measured(|| vm.run_qemu(&[], &[]))
    };
    let run_record = || {
        eprintln!("bench: round {n}: QEMU record mode …");
        let result = measured(|| vm.run_qemu(&record_flags, &[])).and_then(|r| {
            let bytes = std::fs::metadata(rrfile).map_err(|source| BenchError::Temp {
                path: rrfile.to_path_buf(),
                source,
            })?;
            Ok((r, bytes.len()))
        });
        let _ = std::fs::remove_file(rrfile);
        result
    };
    let (plain, record) = if plain_first {
        let plain = run_plain()?;
        (plain, run_record())
    } else {
        let record = run_record();
        (run_plain()?, record)
    };
    Ok(QemuRound { plain, record })
}

/// How a `lockstep replay` of the last log went (a divergence is an error).
#[derive(Debug, Clone, PartialEq)]
pub struct Replayed {
    pub wall: f64,
    /// Its last line on stderr (the summary of what it checked).
    pub summary: String,
}

fn replay(log: &Path) -> Result<Replayed, RecordBenchError> {
    let exe = std::env::current_exe().map_err(|source| BenchError::Spawn {
        what: "lockstep replay".into(),
        source,
    })?;
    let mut cmd = Command::new(exe);
    cmd.arg("replay").arg(log).args(["--console", "none"]);
    timed_replay(cmd, log)
}

/// Run a replay command: exit 0 is a match, 1 a divergence, anything else a failure.
fn timed_replay(mut cmd: Command, log: &Path) -> Result<Replayed, RecordBenchError> {
    cmd.stdin(Stdio::null()).stdout(Stdio::null());
    let start = Instant::now();
    let out = cmd.output().map_err(|source| BenchError::Spawn {
        what: "lockstep replay".into(),
        source,
    })?;
    let wall = start.elapsed().as_secs_f64();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let summary = stderr
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("")
        .trim()
        .to_string();
    match out.status.code() {
        Some(0) => Ok(Replayed { wall, summary }),
        Some(6) => Err(RecordBenchError::Diverged {
            log: log.to_path_buf(),
            message: summary,
        }),
        _ => Err(RecordBenchError::ReplayFailed {
            log: log.to_path_buf(),
            status: out.status.to_string(),
            message: summary,
        }),
    }
}

/// The middle value (mean of the two middle ones for an even count); NaN
/// when there are none.
pub fn median(values: &[f64]) -> f64 {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| !x.is_nan()).collect();
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

/// A data rate with an SI prefix: `950 bit/s`, `12.3 kbit/s`, `4.56 Mbit/s`.
pub fn format_bit_rate(bits_per_second: f64) -> String {
    let b = bits_per_second;
    if !b.is_finite() {
        return "-".to_string();
    }
    if b < 1e3 {
        format!("{b:.0} bit/s")
    } else if b < 1e6 {
        format!("{:.1} kbit/s", b / 1e3)
    } else {
        format!("{:.2} Mbit/s", b / 1e6)
    }
}

/// The per-kind breakdown: `clock warp 1200 (16.8 KiB), output 900 (27.3 KiB)`.
pub fn format_kinds(kinds: &BTreeMap<&'static str, KindStats>) -> String {
    kinds
        .iter()
        .map(|(name, k)| format!("{name} {} ({:.1} KiB)", k.count, k.bytes as f64 / 1024.0))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The per-workload table of one round: guest seconds of each workload,
/// plain and recorded, then the wall and CPU time of each run.
pub fn round_table(plain: &Measured, record: &Measured) -> String {
    let (cpu_a, cpu_b) = (plain.cpu, record.cpu);
    let mut t = workload_table(&plain.run, &record.run, "record (s)");
    t.row([
        "cpu (user+sys)".to_string(),
        num(cpu_a, 3),
        num(cpu_b, 3),
        num(ratio(cpu_b, cpu_a), 3),
    ]);
    t.to_string()
}

/// Each workload's time plainly and in the `other` mode (`label`, its
/// column), their ratio, and the wall times: a row per line.
pub fn workload_table(plain: &RunResult, other: &RunResult, label: &str) -> Table {
    let mut t = Table::new([Col::left(18), Col::right(12), Col::right(12), Col::right(8)]);
    t.row(["workload", "plain (s)", label, "ratio"]);
    for name in &plain.order {
        let a = plain.guest[name];
        match other.guest.get(name) {
            Some(&b) => t.row([name, &num(a, 3), &num(b, 3), &num(ratio(b, a), 3)]),
            None => t.row([name, &num(a, 3), "-", "-"]),
        };
    }
    t.row([
        "wall".to_string(),
        num(plain.wall, 3),
        num(other.wall, 3),
        num(ratio(other.wall, plain.wall), 3),
    ]);
    t
}

/// What the log of one round holds, as lines of text.
pub fn log_lines(log: &LogStats, uptime_at_done: Option<f64>) -> String {
    let uptime = uptime_at_done.map_or(String::new(), |u| {
        format!("; the guest's uptime at BENCH done: {u:.3} s")
    });
    format!(
        "log: {} bytes, {} records: {}\n\
         guest time: {:.3} s (mtime at the end: icount {} / {} + {:.3} s of clock warps){uptime}\n\
         log rate: {} per guest second ({:.1} bytes per guest second)\n",
        log.bytes,
        log.records,
        format_kinds(&log.kinds),
        log.guest_seconds(),
        log.last_icount,
        log.instructions_per_tick,
        log.warp_seconds(),
        format_bit_rate(log.bits_per_guest_second()),
        ratio(log.bytes as f64, log.guest_seconds()),
    )
}

fn qemu_lines(q: &QemuRound) -> String {
    match &q.record {
        Ok((r, bytes)) => {
            let guest = r.run.guest.get("done").copied().unwrap_or(f64::NAN);
            format!(
                "QEMU TCG: plain {:.3} s wall ({:.3} s cpu), record mode (-icount shift=auto,rr=record) \
                 {:.3} s wall ({:.3} s cpu): ratio {:.3} wall, {:.3} cpu\n\
                 QEMU rrfile: {bytes} bytes, {} per guest second (uptime at BENCH done {guest:.3} s)\n",
                q.plain.run.wall,
                q.plain.cpu,
                r.run.wall,
                r.cpu,
                ratio(r.run.wall, q.plain.run.wall),
                ratio(r.cpu, q.plain.cpu),
                format_bit_rate(ratio(*bytes as f64 * 8.0, guest)),
            )
        }
        Err(why) => format!(
            "QEMU TCG: plain {:.3} s; record mode failed: {why}\n",
            q.plain.run.wall
        ),
    }
}

fn qemu_ratio(q: &QemuRound) -> Option<f64> {
    q.record
        .as_ref()
        .ok()
        .map(|(r, _)| ratio(r.run.wall, q.plain.run.wall))
}

fn print_report(rounds: &[Round], replayed: Option<&Replayed>) {
    for (i, r) in rounds.iter().enumerate() {
        let order = if r.plain_first {
            "plain first"
        } else {
            "recorded first"
        };
        println!("round {} ({order})", i + 1);
        print!("{}", round_table(&r.plain, &r.record));
        print!(
            "{}",
            log_lines(&r.log, r.record.run.guest.get("done").copied())
        );
        if let Some(q) = &r.qemu {
            print!("{}", qemu_lines(q));
        }
        println!();
    }
    if let Some(r) = replayed {
        println!(
            "replay of the last log: {:.3} s wall, matched ({})",
            r.wall, r.summary
        );
    }
    let ratios: Vec<f64> = rounds.iter().map(Round::ratio).collect();
    let qemu: Vec<f64> = rounds
        .iter()
        .filter_map(|r| r.qemu.as_ref().and_then(qemu_ratio))
        .collect();
    let list = |v: &[f64]| {
        v.iter()
            .map(|x| format!("{x:.3}"))
            .collect::<Vec<_>>()
            .join(" ")
    };
    println!(
        "record/plain wall, lockstep: {} (median {:.3})",
        list(&ratios),
        median(&ratios)
    );
    let cpu: Vec<f64> = rounds.iter().map(Round::cpu_ratio).collect();
    println!(
        "record/plain cpu, lockstep:  {} (median {:.3})",
        list(&cpu),
        median(&cpu)
    );
    if !qemu.is_empty() {
        println!(
            "record/plain wall, QEMU:     {} (median {:.3})",
            list(&qemu),
            median(&qemu)
        );
    }
    println!("ratio {:.3}", median(&ratios));
}

fn print_json(rounds: &[Round], replayed: Option<&Replayed>) {
    println!("{}", json_doc(rounds, replayed));
}

fn json_doc(rounds: &[Round], replayed: Option<&Replayed>) -> serde_json::Value {
    let run = |m: &Measured| serde_json::json!({ "guest": m.run.guest, "wall": m.run.wall, "cpu": m.cpu });
    let rounds_json: Vec<_> = rounds
        .iter()
        .map(|r| {
            serde_json::json!({
                "plain_first": r.plain_first,
                "plain": run(&r.plain),
                "record": run(&r.record),
                "ratio": r.ratio(),
                "cpu_ratio": r.cpu_ratio(),
                "log": r.log,
                "guest_seconds": r.log.guest_seconds(),
                "bits_per_guest_second": r.log.bits_per_guest_second(),
                "qemu": r.qemu.as_ref().map(|q| serde_json::json!({
                    "plain": run(&q.plain),
                    "record": match &q.record {
                        Ok((rec, bytes)) => serde_json::json!({ "run": run(rec), "rrfile_bytes": bytes }),
                        Err(why) => serde_json::json!({ "error": why.to_string() }),
                    },
                    "ratio": qemu_ratio(q),
                })),
            })
        })
        .collect();
    let ratios: Vec<f64> = rounds.iter().map(Round::ratio).collect();
    serde_json::json!({
        "rounds": rounds_json,
        "replay": replayed.map(|r| serde_json::json!({ "wall": r.wall, "matched": true, "summary": r.summary })),
        "ratio": median(&ratios),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::guest::parse_bench_lines;
    use replay::{Control, Header, LogWriter, OutputChannel, OutputHash, StopReason};

    /// A log like a short recording: setup, two warps, an output window,
    /// a checkpoint, power-off.
    fn sample_log() -> Vec<u8> {
        let header = Header {
            vm_uuid: [7; 16],
            initial_state_hash: [9; 32],
        };
        let mut w = LogWriter::new(Vec::new(), &header);
        let records = [
            (0, RecordKind::Control(Control::ConfigChange(setup_json()))),
            (
                1_600,
                RecordKind::Input(Input::ClockWarp { ticks: 10_000_000 }),
            ),
            (
                3_200,
                RecordKind::Output {
                    channel: OutputChannel::Console,
                    len: 42,
                    hash: OutputHash::of(b"x"),
                },
            ),
            (
                3_200,
                RecordKind::Input(Input::ClockWarp { ticks: 5_000_000 }),
            ),
            (
                160_000_016,
                RecordKind::Checkpoint {
                    state_hash: [3; 32],
                },
            ),
            (
                160_000_016,
                RecordKind::Control(Control::PowerOff(StopReason::GuestPowerOff)),
            ),
        ];
        for (icount, kind) in &records {
            w.append_next(*icount, kind).expect("append");
        }
        w.into_inner().expect("flush")
    }

    /// A VM setup as the log's first record holds it: JSON with (among
    /// others) the clock rate, padded to 100 bytes.
    fn setup_json() -> Vec<u8> {
        let mut json = br#"{"instructions_per_tick":16,"name":""#.to_vec();
        json.resize(98, b'x');
        json.extend_from_slice(br#""}"#);
        json
    }

    fn stats_of(bytes: &[u8]) -> LogStats {
        let reader = LogReader::new(bytes, TailPolicy::Strict).expect("header");
        LogStats::from_reader(reader).expect("valid log")
    }

    #[test]
    fn log_stats_count_every_kind_and_add_up_to_the_file() {
        let bytes = sample_log();
        let s = stats_of(&bytes);
        assert_eq!(s.bytes, bytes.len() as u64);
        assert_eq!(s.records, 6);
        assert_eq!(s.last_icount, 160_000_016);
        assert_eq!(s.warp_ticks, 15_000_000);
        let count = |k: &str| s.kinds.get(k).map_or(0, |k| k.count);
        assert_eq!(
            [
                count("control"),
                count("clock warp"),
                count("output"),
                count("checkpoint")
            ],
            [2, 2, 1, 1]
        );
        let frames: u64 = s.kinds.values().map(|k| k.bytes).sum();
        assert_eq!(frames + replay::HEADER_LEN as u64, s.bytes);
        // The setup record carries 100 payload bytes, a checkpoint 32.
        assert!(s.kinds["control"].bytes > 100);
        assert!(s.kinds["checkpoint"].bytes > 32 + 8);
    }

    #[test]
    fn guest_time_is_icount_time_plus_warps() {
        let s = stats_of(&sample_log());
        // 160,000,016 instructions / 16 = 10,000,001 ticks, plus 15,000,000.
        assert!(
            (s.guest_seconds() - 2.500_000_1).abs() < 1e-9,
            "{}",
            s.guest_seconds()
        );
        assert!((s.warp_seconds() - 1.5).abs() < 1e-12);
        let expected = s.bytes as f64 * 8.0 / 2.500_000_1;
        assert!((s.bits_per_guest_second() - expected).abs() < 1e-9);
    }

    #[test]
    fn a_damaged_log_is_an_error_not_a_figure() {
        let mut bytes = sample_log();
        let last = bytes.len() - 1;
        bytes[last] ^= 0x40;
        let reader = LogReader::new(&bytes[..], TailPolicy::Strict).expect("header");
        assert!(LogStats::from_reader(reader).is_err());
        let cut = sample_log();
        let reader = LogReader::new(&cut[..cut.len() - 3], TailPolicy::Strict).expect("header");
        assert!(LogStats::from_reader(reader).is_err());
    }

    #[test]
    fn rounds_alternate_which_run_goes_first() {
        let order: Vec<bool> = (0..4).map(plain_first).collect();
        assert_eq!(order, [true, false, true, false]);
    }

    #[test]
    fn median_of_odd_even_and_empty() {
        assert_eq!(median(&[1.2, 0.9, 1.0]), 1.0);
        assert_eq!(median(&[1.0, 4.0, 2.0, 3.0]), 2.5);
        assert_eq!(median(&[f64::NAN, 2.0]), 2.0);
        assert!(median(&[]).is_nan());
    }

    #[test]
    fn bit_rates_get_a_prefix() {
        assert_eq!(format_bit_rate(950.4), "950 bit/s");
        assert_eq!(format_bit_rate(12_345.0), "12.3 kbit/s");
        assert_eq!(format_bit_rate(4_560_000.0), "4.56 Mbit/s");
        assert_eq!(format_bit_rate(f64::NAN), "-");
    }

    #[test]
    fn the_round_table_has_every_workload_and_the_wall_ratio() {
        let mut plain = parse_bench_lines("BENCH a 1.0\nBENCH b 2.0\nBENCH done 3.0\n");
        plain.wall = 10.0;
        let mut record = parse_bench_lines("BENCH a 1.1\nBENCH done 3.3\n");
        record.wall = 10.5;
        let plain = Measured {
            run: plain,
            cpu: 8.0,
        };
        let record = Measured {
            run: record,
            cpu: 8.4,
        };
        let table = round_table(&plain, &record);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 6, "{table}");
        assert!(
            lines[1].starts_with("a ") && lines[1].ends_with(" 1.100"),
            "{table}"
        );
        assert!(
            lines[2].starts_with("b ") && lines[2].ends_with(" -"),
            "{table}"
        );
        assert!(
            lines[5].starts_with("cpu (user+sys)") && lines[5].ends_with(" 1.050"),
            "{table}"
        );
        assert!(
            lines[4].starts_with("wall")
                && lines[4].contains("10.500")
                && lines[4].ends_with(" 1.050"),
            "{table}"
        );
    }

    #[test]
    fn children_cpu_time_comes_from_fields_16_and_17() {
        // pid (comm) state, then fields 4..; cutime = 250, cstime = 50 ticks.
        let stat = "4242 (a (weird) name) S 1 2 3 4 5 6 7 8 9 10 11 12 250 50 20 0 1 0 99";
        assert_eq!(parse_children_cpu(stat, 100), Some(3.0));
        assert_eq!(parse_children_cpu(stat, 0), None);
        assert_eq!(parse_children_cpu("4242 (x) S 1 2", 100), None);
        assert_eq!(parse_children_cpu("garbage", 100), None);
        let own = children_cpu_seconds().expect("this process's /proc/self/stat");
        assert!(own >= 0.0);
    }

    #[test]
    fn log_lines_name_size_kinds_and_rate() {
        let s = stats_of(&sample_log());
        let text = log_lines(&s, Some(2.25));
        assert!(
            text.starts_with(&format!("log: {} bytes, 6 records: ", s.bytes)),
            "{text}"
        );
        assert!(text.contains("clock warp 2 ("), "{text}");
        assert!(text.contains("guest time: 2.500 s"), "{text}");
        assert!(text.contains("1.500 s of clock warps"), "{text}");
        assert!(text.contains("uptime at BENCH done: 2.250 s"), "{text}");
        assert!(
            text.contains(&format_bit_rate(s.bits_per_guest_second())),
            "{text}"
        );
    }

    fn sh(script: &str) -> Command {
        let mut cmd = Command::new("sh");
        cmd.args(["-c", script]);
        cmd
    }

    #[test]
    fn a_replay_matches_only_on_exit_zero() {
        let log = Path::new("x.log");
        let ok = timed_replay(
            sh("echo 'lockstep: replay matched: 5 instructions' >&2"),
            log,
        )
        .expect("match");
        assert_eq!(ok.summary, "lockstep: replay matched: 5 instructions");
        match timed_replay(sh("echo 'replay diverged at icount 7' >&2; exit 6"), log) {
            Err(RecordBenchError::Diverged { message, .. }) => {
                assert_eq!(message, "replay diverged at icount 7")
            }
            other => panic!("expected a divergence, got {other:?}"),
        }
        match timed_replay(sh("echo 'lockstep: no such file' >&2; exit 3"), log) {
            Err(RecordBenchError::ReplayFailed {
                message, status, ..
            }) => {
                assert_eq!(message, "lockstep: no such file");
                assert!(status.contains('3'), "{status}");
            }
            other => panic!("expected a failure, got {other:?}"),
        }
    }

    #[derive(clap::Parser, Debug)]
    struct Cli {
        #[command(subcommand)]
        command: TestCommand,
    }

    #[derive(clap::Subcommand, Debug)]
    enum TestCommand {
        Bench(crate::BenchArgs),
    }

    fn parse(args: &[&str]) -> Result<crate::BenchKind, clap::Error> {
        use clap::Parser;
        let cli = Cli::try_parse_from(["lockstep", "bench"].iter().chain(args))?;
        let TestCommand::Bench(bench) = cli.command;
        Ok(bench.what.expect("a subcommand"))
    }

    #[test]
    fn record_and_snapshot_options_parse() {
        use crate::BenchKind;
        let BenchKind::Record(r) = parse(&[
            "record",
            "--repeat",
            "3",
            "--checkpoint-every",
            "1000",
            "--no-replay",
            "--no-qemu",
            "--memory",
            "256M",
        ])
        .expect("parses") else {
            panic!("not the record bench");
        };
        assert_eq!((r.repeat, r.checkpoint_every, r.no_replay), (3, 1000, true));
        assert!(r.vm.no_qemu);
        assert_eq!(r.vm.memory_mib, 256);
        let BenchKind::Record(r) = parse(&["record"]).expect("parses") else {
            panic!("not the record bench");
        };
        assert_eq!(
            (r.repeat, r.checkpoint_every, r.no_replay),
            (1, replay::session::CHECKPOINT_EVERY, false)
        );
        assert!(parse(&["record", "--repeat", "0"]).is_err());
        assert!(parse(&["record", "--checkpoint-every", "0"]).is_err());

        let BenchKind::Snapshot(s) = parse(&[
            "snapshot", "--memory", "1G", "--ram", "zstd", "--images", "0M",
        ])
        .expect("parses") else {
            panic!("not the snapshot bench");
        };
        assert_eq!((s.memory_mib, s.images_mib, s.repeat), (1024, Some(0), 3));
        assert_eq!(s.ram, [crate::snapshot::RamKind::Zstd]);
        let BenchKind::Snapshot(s) = parse(&["snapshot"]).expect("parses") else {
            panic!("not the snapshot bench");
        };
        assert_eq!(s.memory_mib, 512);
        assert_eq!(s.ram.len(), 2);
        assert!(parse(&["snapshot", "--ram", "lz4"]).is_err());
        assert!(parse(&["snapshot", "--cpus", "5"]).is_err());
        // Sizes carry units; the MiB-counting flags of earlier versions
        // are refused naming the new spelling.
        assert!(parse(&["snapshot", "--memory", "1024"]).is_err());
        for (old, new) in [
            (["snapshot", "--memory-mib", "1"], "--memory 512M"),
            (["snapshot", "--touched-mib", "1"], "--touched 128M"),
            (["record", "--memory-mib", "1"], "--memory 512M"),
            (["disk", "--size-mib", "1"], "--size 256M"),
            (["net", "--size-mib", "1"], "--size 64M"),
            (["vm", "--disk-gib", "1"], "--disk-size 2G"),
        ] {
            let err = parse(&old).expect_err("refused").to_string();
            assert!(err.contains(new), "{old:?}: {err}");
        }
        let BenchKind::Vm(v) = parse(&["vm", "--disk-size", "3G", "--data", "1G"]).expect("parses")
        else {
            panic!("not the vm bench");
        };
        assert_eq!((v.disk_gib, v.data_mib), (3, 1024));
    }

    #[test]
    fn json_has_each_round_its_log_and_the_median_ratio() {
        let measured = |text: &str, wall: f64, cpu: f64| {
            let mut run = parse_bench_lines(text);
            run.wall = wall;
            Measured { run, cpu }
        };
        let round = |record_wall: f64, qemu: Option<QemuRound>| Round {
            plain_first: true,
            plain: measured("BENCH done 9.0\n", 10.0, 8.0),
            record: measured("BENCH done 9.5\n", record_wall, 8.8),
            log: stats_of(&sample_log()),
            qemu,
        };
        let qemu = QemuRound {
            plain: measured("BENCH done 4.0\n", 4.0, 3.0),
            record: Ok((measured("BENCH done 6.0\n", 6.0, 4.5), 1000)),
        };
        let failed = QemuRound {
            plain: measured("BENCH done 4.0\n", 4.0, 3.0),
            record: Err(BenchError::Spawn {
                what: "qemu".into(),
                source: std::io::Error::other("no rr"),
            }),
        };
        let rounds = [
            round(11.0, Some(qemu)),
            round(13.0, Some(failed)),
            round(12.0, None),
        ];
        let replayed = Replayed {
            wall: 7.5,
            summary: "ok".into(),
        };
        let doc = json_doc(&rounds, Some(&replayed));
        assert_eq!(doc["ratio"], 1.2);
        assert_eq!(doc["replay"]["wall"], 7.5);
        let r = &doc["rounds"];
        assert_eq!(r.as_array().map(Vec::len), Some(3));
        assert_eq!(r[0]["ratio"], 1.1);
        assert_eq!(r[0]["record"]["guest"]["done"], 9.5);
        assert_eq!(r[0]["log"]["kinds"]["clock warp"]["count"], 2);
        assert_eq!(r[0]["log"]["warp_ticks"], 15_000_000);
        assert_eq!(r[0]["qemu"]["ratio"], 1.5);
        assert_eq!(r[0]["qemu"]["record"]["rrfile_bytes"], 1000);
        assert_eq!(r[1]["qemu"]["record"]["error"], "cannot start qemu: no rr");
        assert!(r[1]["qemu"]["ratio"].is_null());
        assert!(r[2]["qemu"].is_null());
        assert!((r[0]["cpu_ratio"].as_f64().unwrap_or(0.0) - 1.1).abs() < 1e-12);
    }
}
