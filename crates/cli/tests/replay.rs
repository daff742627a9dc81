//! Record a Debian guest driven from its console, replay it, and check that
//! the replay reproduces every output window and state-hash checkpoint; a
//! damaged log is refused before anything runs, and a perturbed input is
//! reported as a divergence at the right icount.

mod common;

use common::{Guest, PROMPT};
use replay::{LogReader, LogWriter, OutputChannel, Record, RecordKind, TailPolicy};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const SEED: &str = "5eed5eed5eed5eed5eed5eed5eed5eed5eed5eed5eed5eed5eed5eed5eed5eed";

/// Boot with `--record`, type a few commands, power off.
fn record(dir: &Path, cpus: &str) -> PathBuf {
    record_with(dir, cpus, "interp")
}

/// The same, the harts executing as `--cpu` says.
fn record_with(dir: &Path, cpus: &str, cpu: &str) -> PathBuf {
    let log = dir.join(format!("run-{cpus}-{cpu}.log"));
    let log_arg = log.to_str().expect("utf-8 temp path");
    let mut g = Guest::boot(&[
        "--cpus",
        cpus,
        "--rng-seed",
        SEED,
        "--record",
        log_arg,
        "--checkpoint-every",
        "200000000",
        "--cpu",
        cpu,
    ]);
    g.expect(PROMPT);
    assert_eq!(g.run("echo typed-$((6 * 7))"), "typed-42");
    let n = g.run("grep -c processor /proc/cpuinfo");
    assert_eq!(n, cpus);
    g.run("head -c 64 /dev/urandom | sha256sum");
    g.send("poweroff -f");
    let status = g.child.wait().expect("wait for lockstep");
    assert!(status.success(), "{status}");
    log
}

fn replay(log: &Path) -> Output {
    replay_with(log, "interp")
}

fn replay_with(log: &Path, cpu: &str) -> Output {
    Command::new(env!("CARGO_BIN_EXE_lockstep"))
        .arg("replay")
        .arg(log)
        .args(["--cpu", cpu])
        .output()
        .expect("run lockstep replay")
}

fn records(log: &Path) -> (replay::Header, Vec<Record>) {
    let mut reader = LogReader::open(log, TailPolicy::Strict).expect("open log");
    let header = reader.header().clone();
    let mut all = Vec::new();
    while let Some(r) = reader.next_record().expect("read record") {
        all.push(r);
    }
    (header, all)
}

fn assert_replays(log: &Path) {
    assert_replays_with(log, "interp");
}

fn assert_replays_with(log: &Path, cpu: &str) {
    let out = replay_with(log, cpu);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "replay failed: {err}");
    assert!(err.contains("replay matched the recording"), "{err}");
    let (_, all) = records(log);
    let checkpoints = all
        .iter()
        .filter(|r| matches!(r.kind, RecordKind::Checkpoint { .. }))
        .count();
    assert!(
        checkpoints >= 2,
        "only {checkpoints} checkpoints were checked"
    );
    assert!(err.contains(&format!("{checkpoints} checkpoints")), "{err}");
}

#[test]
fn a_console_driven_run_replays_exactly_and_bad_logs_are_caught() {
    let dir = tempfile::tempdir().expect("temp dir");
    let log = record(dir.path(), "1");
    assert_replays(&log);

    // One flipped byte anywhere in a frame: refused before execution.
    let bytes = std::fs::read(&log).expect("read log");
    let mut flipped = bytes.clone();
    let at = bytes.len() / 2;
    flipped[at] ^= 0x20;
    let bad = dir.path().join("flipped.log");
    std::fs::write(&bad, &flipped).expect("write log");
    let out = replay(&bad);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert!(!err.contains("valid log"), "it must not run: {err}");
    assert!(err.contains("offset"), "names where: {err}");

    // Truncated in the middle of a frame.
    let cut = dir.path().join("cut.log");
    std::fs::write(&cut, &bytes[..bytes.len() - 3]).expect("write log");
    let out = replay(&cut);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert!(err.contains("truncated") || err.contains("torn"), "{err}");

    // A perturbed input (valid log, different typed character): the replay
    // diverges at a console output window that closes after that input and
    // before the next command is typed (the echo of that very line).
    let (header, mut all) = records(&log);
    let console_input = |r: &Record, needle: &[u8]| matches!(&r.kind, RecordKind::Input(replay::Input::ConsoleInput(b)) if b.windows(needle.len()).any(|w| w == needle));
    let typed = all
        .iter()
        .position(|r| console_input(r, b"typed"))
        .expect("the typed command is in the log");
    let next_command = all
        .iter()
        .find(|r| console_input(r, b"grep"))
        .expect("the next command is in the log")
        .icount;
    if let RecordKind::Input(replay::Input::ConsoleInput(b)) = &mut all[typed].kind {
        let t = b.iter().position(|&c| c == b't').expect("a 't'");
        b[t] = b'T';
    }
    let windows: Vec<u64> = all[typed..]
        .iter()
        .filter(|r| {
            matches!(
                r.kind,
                RecordKind::Output {
                    channel: OutputChannel::Console,
                    ..
                }
            )
        })
        .map(|r| r.icount)
        // A window flushed just before the next command's input still holds this
        // command's output.
        .take_while(|&icount| icount <= next_command)
        .collect();
    assert!(!windows.is_empty(), "the command's echo is in the log");
    let perturbed = dir.path().join("perturbed.log");
    let file = std::fs::File::create(&perturbed).expect("create log");
    let mut w = LogWriter::new(file, &header);
    for r in &all {
        w.append(r).expect("append");
    }
    w.flush().expect("flush");
    drop(w);
    let out = replay(&perturbed);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(6), "{err}");
    let reported: u64 = err
        .split("diverged at icount ")
        .nth(1)
        .and_then(|rest| rest.split(':').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no divergence icount in: {err}"));
    assert!(
        windows.contains(&reported),
        "divergence at icount {reported}, expected one of the echo windows {windows:?}: {err}"
    );
    assert!(err.contains("Console output differs"), "{err}");
}

/// The translator is not part of the machine: a run recorded with it
/// replays under the interpreter, and one recorded with the interpreter
/// under it, checkpoint for checkpoint.
#[test]
fn runs_recorded_with_either_engine_replay_with_the_other() {
    let dir = tempfile::tempdir().expect("temp dir");
    let translated = record_with(dir.path(), "2", "jit");
    assert_replays_with(&translated, "interp");
    let interpreted = record_with(dir.path(), "1", "interp");
    assert_replays_with(&interpreted, "jit");
}

#[test]
fn a_two_hart_run_replays_exactly() {
    let dir = tempfile::tempdir().expect("temp dir");
    let log = record(dir.path(), "2");
    assert_replays(&log);
}

#[test]
fn a_run_receiving_pings_over_a_socket_segment_replays_exactly() {
    let dir = tempfile::tempdir().expect("temp dir");
    let segment = format!("socket={}", dir.path().join("seg").display());
    let log = dir.path().join("pinged.log");
    let log_arg = log.to_str().expect("utf-8 temp path");
    let mut a = Guest::boot_with(
        &[],
        "lockstep.ip=10.79.1.1/24",
        &[
            "--name",
            "a",
            "--net",
            &segment,
            "--rng-seed",
            SEED,
            "--record",
            log_arg,
        ],
    );
    let mut b = Guest::boot_with(
        &[],
        "lockstep.ip=10.79.1.2/24",
        &["--name", "b", "--net", &segment],
    );
    a.expect(PROMPT);
    b.expect(PROMPT);
    let pings = b.run("ping -c 5 -W 5 10.79.1.1");
    assert!(pings.contains("5 packets received"), "{pings}");
    for mut g in [a, b] {
        g.send("poweroff -f");
        assert!(g.child.wait().expect("wait for lockstep").success());
    }
    let (_, all) = records(&log);
    let frames = all
        .iter()
        .filter(|r| matches!(r.kind, RecordKind::Input(replay::Input::NetFrame { .. })))
        .count();
    assert!(frames >= 5, "only {frames} received frames were recorded");
    let sent = all
        .iter()
        .filter(|r| {
            matches!(
                r.kind,
                RecordKind::Output {
                    channel: OutputChannel::Net { nic: 0 },
                    ..
                }
            )
        })
        .count();
    assert!(sent >= 1, "no transmitted frames in the log");
    assert_replays(&log);
}
