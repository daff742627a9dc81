//! Fault tolerance end to end (DESIGN §5): a Debian guest runs as an FT
//! primary protected by a backup on this host; the guest prints a counter
//! on its console every 50 ms; the primary is killed with SIGKILL at a
//! random moment. The backup must go live within the failure timeout plus
//! 500 ms, and the console output the primary released followed by what
//! the backup emitted after going live must hold every counter value, in
//! order, with duplicates only among the outputs the backup re-emitted
//! (those stamped after the primary's last reported release point).
//!
//! `LOCKSTEP_FT_ROUNDS=N` runs N kill points (default 3; every second
//! round uses 2 harts).

mod common;

use common::{Guest, PROMPT};
use std::path::Path;
use std::time::{Duration, Instant, SystemTime};

const TIMEOUT_MS: u64 = 500;
/// Flow control's bound on the backup's lag (ms of guest time): a backup
/// must catch up that much before going live, so the failover bound
/// holds even when the backup's host is busy (here: other tests).
const MAX_LAG: &str = "250ms";

/// One FT pair at a time: two VMs per test already fill this machine's
/// two cores, and the failover bounds are about FT, not CPU contention.
fn serial() -> std::sync::MutexGuard<'static, ()> {
    static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());
    SERIAL
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}
const TICK: &str = "tick-";

fn rounds() -> usize {
    std::env::var("LOCKSTEP_FT_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3)
}

/// A kill delay between 200 and 1500 ms, different each time.
fn random_delay() -> Duration {
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    Duration::from_millis(200 + u64::from(nanos) % 1300)
}

fn start_backup(arbiter: &Path) -> (Guest, String) {
    start_backup_with(arbiter, &[])
}

fn start_backup_with(arbiter: &Path, extra: &[&str]) -> (Guest, String) {
    let timeout = format!("{TIMEOUT_MS}ms");
    let arbiter = arbiter.to_str().expect("utf-8 temp path");
    let mut args = vec![
        "ft",
        "backup",
        "--listen",
        "127.0.0.1:0",
        "--ft-arbiter",
        arbiter,
        "--console",
        "stdio",
        "--ft-timeout",
        &timeout,
    ];
    args.extend_from_slice(extra);
    let mut backup = Guest::launch(&[], &args);
    let line = backup.expect_stderr("listening on");
    let addr = line.rsplit(' ').next().expect("an address").to_string();
    (backup, addr)
}

/// Boot an FT primary protected by the backup at `backup` (flow control
/// and failure timeout as the tests assume), with `extra` flags.
fn boot_primary(backup: &str, arbiter: &str, extra: &[&str]) -> Guest {
    let timeout = format!("{TIMEOUT_MS}ms");
    let mut args = vec![
        "--ft-max-lag",
        MAX_LAG,
        "--ft-timeout",
        &timeout,
        "--ft-backup",
        backup,
        "--ft-arbiter",
        arbiter,
    ];
    args.extend_from_slice(extra);
    Guest::boot(&args)
}

/// Make the guest print `tick-N` every 50 ms; returns once tick-3 is out.
fn start_ticking(guest: &mut Guest) {
    guest.send(&format!(
        "i=0; while [ $i -lt 1000000 ]; do i=$((i+1)); echo {TICK}$i; usleep 50000; done"
    ));
    guest.expect(&format!("{TICK}3\r\n"));
}

/// The counter values in `text`, from whole `tick-N` lines.
fn ticks(text: &str) -> Vec<u64> {
    text.split('\n')
        .filter_map(|line| line.trim_end_matches('\r').strip_prefix(TICK))
        .filter_map(|n| n.parse().ok())
        .collect()
}

/// The number after `key` in `line`.
fn number_after(line: &str, key: &str) -> u64 {
    line.split(key)
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.trim_matches(|c: char| !c.is_ascii_digit()).parse().ok())
        .unwrap_or_else(|| panic!("no number after {key:?} in {line:?}"))
}

fn failover_round(round: usize) {
    let cpus = if round % 2 == 1 { "2" } else { "1" };
    let dir = tempfile::tempdir().expect("temp dir");
    let arbiter = dir.path().join("arbiter");
    let (mut backup, addr) = start_backup(&arbiter);
    let arbiter_arg = arbiter.to_str().expect("utf-8 temp path");
    let mut primary = boot_primary(&addr, arbiter_arg, &["--cpus", cpus]);
    primary.expect_stderr("protected by the backup");
    backup.expect_stderr("following the primary");
    primary.expect(PROMPT);
    start_ticking(&mut primary);
    std::thread::sleep(random_delay());

    primary.child.kill().expect("kill -9 the primary");
    let killed = Instant::now();
    let live = backup.expect_stderr("live at icount");
    let failover = killed.elapsed();
    primary.child.wait().expect("reap the primary");
    let released = primary.read_to_end().to_string();
    let last_released = *ticks(&released).last().expect("the primary released ticks");
    // The backup runs on: its counter goes on from where the primary was.
    backup.expect(&format!("{TICK}{}\r\n", last_released + 5));
    let emitted = backup.console.clone();
    let _ = backup.child.kill();
    let _ = backup.child.wait();

    let reemitted = number_after(&live, "re-emitted") as usize;
    // The duplicates: the longest prefix of the backup's output that the
    // primary's output ends with; it must lie within the re-emitted part.
    let overlap = (0..=reemitted.min(emitted.len()))
        .rev()
        .find(|&k| emitted.is_char_boundary(k) && released.ends_with(&emitted[..k]))
        .unwrap_or(0);
    let merged = format!("{released}{}", &emitted[overlap..]);
    let all = ticks(&merged);
    let expected: Vec<u64> = (1..=all.len() as u64).collect();
    assert_eq!(
        all, expected,
        "round {round}: the counter has a gap, a duplicate or a reordering \
         (overlap {overlap} bytes, re-emitted {reemitted}; primary released up to {last_released})\n\
         primary tail: {:?}\nbackup head: {:?}",
        &released[released.len().saturating_sub(200)..],
        &emitted[..emitted.len().min(200)]
    );
    assert!(
        failover <= Duration::from_millis(TIMEOUT_MS + 500),
        "round {round}: the backup went live {failover:?} after the kill"
    );
    eprintln!(
        "FT round {round} ({cpus} harts): live {} ms after kill -9; {} bytes re-emitted, {overlap} of them duplicates ({} ticks); counter continuous 1..={}",
        failover.as_millis(),
        reemitted,
        ticks(&emitted[..overlap]).len(),
        all.len()
    );
}

#[test]
fn an_ft_primary_that_also_records_keeps_its_backup_and_its_log_replays() {
    let _serial = serial();
    let dir = tempfile::tempdir().expect("temp dir");
    let arbiter = dir.path().join("arbiter");
    let log = dir.path().join("run.log");
    let (mut backup, addr) = start_backup(&arbiter);
    let arbiter_arg = arbiter.to_str().expect("utf-8 temp path");
    let log_arg = log.to_str().expect("utf-8 temp path");
    let mut primary = boot_primary(&addr, arbiter_arg, &["--record", log_arg]);
    primary.expect_stderr("protected by the backup");
    backup.expect_stderr("following the primary");
    primary.expect(PROMPT);
    for n in 0..5 {
        assert_eq!(
            primary.run(&format!("echo both-$(({n}*7))")),
            format!("both-{}", n * 7)
        );
    }
    // The backup followed all along: it is at the primary's icount when
    // the guest powers off.
    primary.send("poweroff -f");
    let status = primary.child.wait().expect("reap the primary");
    assert!(status.success(), "{status}");
    let end = backup.expect_stderr("the primary ended the run");
    let _ = backup.child.kill();
    let _ = backup.child.wait();
    assert!(!end.contains("live"), "{end}");
    // And the recording of the same run replays exactly.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_lockstep"))
        .arg("replay")
        .arg(&log)
        .output()
        .expect("run lockstep replay");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "replay failed: {err}");
    assert!(err.contains("replay matched the recording"), "{err}");
}

#[test]
fn the_backup_takes_over_a_killed_primary_with_no_gap_in_its_output() {
    let _serial = serial();
    for round in 0..rounds() {
        failover_round(round);
    }
}

/// Two hosts' VMs of one name, protected by two backups on one host: the
/// second backup refuses its primary (they would share a control socket),
/// naming the first's pid; each VM's replicas sit in their own directory.
#[test]
fn a_second_backup_of_one_vm_on_a_host_is_refused_with_the_first_ones_pid() {
    let _serial = serial();
    let dir = tempfile::tempdir().expect("temp dir");
    let replicas = dir.path().join("replicas");
    let replicas_arg = replicas.to_str().expect("utf-8 temp path");
    let timeout = format!("{TIMEOUT_MS}ms");
    let mut primaries = Vec::new();
    let mut backups = Vec::new();
    for host in ["host-1", "host-2"] {
        // Each primary's "host": its own runtime directory (name claims
        // and control sockets); the backups share this one's.
        let runtime = dir.path().join(host);
        std::fs::create_dir(&runtime).expect("runtime dir");
        let arbiter = dir.path().join(format!("{host}-arbiter"));
        let arbiter_arg = arbiter.to_str().expect("utf-8 temp path");
        let (backup, addr) = start_backup_with(&arbiter, &["--replica-dir", replicas_arg]);
        let args = [
            "run",
            "--memory",
            "512M",
            "--console",
            "stdio",
            "--append",
            "console=ttyS0 quiet",
            "--name",
            "twin",
            "--ft-timeout",
            &timeout,
            "--ft-backup",
            &addr,
            "--ft-arbiter",
            arbiter_arg,
        ];
        let mut primary = Guest::launch_env(&[], &args, &[("XDG_RUNTIME_DIR", &runtime)]);
        let mut backup = backup;
        if backups.is_empty() {
            primary.expect_stderr("protected by the backup");
            backup.expect_stderr("following the primary");
        }
        primaries.push(primary);
        backups.push(backup);
    }
    let first = backups[0].child.id();
    let refused = backups[1].expect_stderr("already runs on this host");
    assert!(
        refused.contains("a backup of the VM \"twin\"")
            && refused.contains(&format!("(pid {first})")),
        "{refused}"
    );
    // The primary it refused runs on, unprotected, and says why.
    let said = primaries[1].expect_stderr("already runs on this host");
    assert!(said.contains(&format!("(pid {first})")), "{said}");
    // The first backup's replicas: in a directory named by the VM's uuid.
    let dirs: Vec<_> = std::fs::read_dir(&replicas)
        .expect("replica dir")
        .filter_map(Result::ok)
        .collect();
    assert_eq!(dirs.len(), 1, "one VM's replica directory");
    assert_eq!(
        dirs[0].file_name().len(),
        32,
        "a uuid: {:?}",
        dirs[0].file_name()
    );
    for mut g in primaries.into_iter().chain(backups) {
        let _ = g.child.kill();
        let _ = g.child.wait();
    }
}

#[test]
fn a_primary_under_another_arbiter_generation_is_refused() {
    let _serial = serial();
    let dir = tempfile::tempdir().expect("temp dir");
    let (mut backup, addr) = start_backup(&dir.path().join("arbiter"));
    let other = dir.path().join("other-arbiter");
    std::fs::write(&other, "lockstep-ft-generation 5\n").expect("write arbiter");
    let segment = dir.path().join("segment");
    std::fs::create_dir(&segment).expect("segment dir");
    let net = format!("socket={}", segment.display());
    let control = dir.path().join("primary.sock");
    let control = control.to_str().expect("utf-8 temp path");
    let mut primary = boot_primary(
        &addr,
        other.to_str().expect("utf-8 temp path"),
        &["--net", &net, "--ft-control", control],
    );
    let refused = primary.expect_stderr("refused");
    assert!(refused.contains("generation 5"), "{refused}");
    assert!(refused.contains("running unprotected"), "{refused}");
    // The backup refuses it, says why, and keeps listening.
    let said = backup.expect_stderr("refused the primary");
    assert!(said.contains("still listening"), "{said}");
    assert!(backup.child.try_wait().expect("poll the backup").is_none());
    let _ = backup.child.kill();
    // The primary runs on, unprotected: its guest still answers.
    primary.expect(PROMPT);
    let echoed = primary.run("echo still-$((20+22))");
    assert!(echoed.contains("still-42"), "{echoed}");

    // A backup with no backend for the VM's NIC refuses it up front.
    let (mut netless, addr) = start_backup(&other);
    let refused = lockstep(&[
        "ft",
        "add-backup",
        "--ft-backup",
        &addr,
        "--control",
        control,
    ]);
    assert_eq!(refused.status.code(), Some(3));
    let why = text(&refused.stderr);
    assert!(why.contains("refused") && why.contains("NIC"), "{why}");
    netless.expect_stderr("still listening");
    let _ = netless.child.kill();
    let status = text(&lockstep(&["ft", "status", "--control", control]).stdout);
    assert!(status.contains("protection: unprotected"), "{status}");
}

/// A primary that stops answering without closing its connection (here:
/// SIGSTOP, as a hung host or a partition looks) is declared dead after
/// the timeout; the backup goes live, and when the old primary wakes up it
/// loses the arbiter and halts instead of emitting anything more.
#[test]
fn a_silent_primary_is_replaced_and_then_fenced() {
    let _serial = serial();
    use rustix::process::{kill_process, Pid, Signal};
    let dir = tempfile::tempdir().expect("temp dir");
    let arbiter = dir.path().join("arbiter");
    // The backup logs as JSON, the primary as text, both at -v (info).
    let (mut backup, addr) = start_backup_with(&arbiter, &["-v", "--log-format", "json"]);
    let mut primary = boot_primary(&addr, arbiter.to_str().expect("utf-8 temp path"), &["-v"]);
    let protected = primary.expect_stderr("FT primary: protected");
    assert_timestamped(&protected, "INFO");
    assert!(
        protected.contains("rounds=") && protected.contains("pause_us="),
        "{protected}"
    );
    primary.expect(PROMPT);
    start_ticking(&mut primary);
    let pid = Pid::from_raw(primary.child.id() as i32).expect("a pid");
    kill_process(pid, Signal::STOP).expect("SIGSTOP the primary");
    let stopped = Instant::now();
    let lost = json_event(&mut backup, "primary_lost");
    assert_eq!(lost["level"], "INFO", "{lost}");
    let won = json_event(&mut backup, "arbiter");
    assert_eq!(
        (
            &won["arbiter"],
            &won["generation"],
            &won["previous_generation"]
        ),
        (&"won".into(), &1.into(), &0.into()),
        "{won}"
    );
    let went_live = json_event(&mut backup, "live");
    assert!(
        went_live["icount"].as_u64().is_some_and(|i| i > 0),
        "{went_live}"
    );
    assert!(went_live["reemitted_bytes"].is_u64(), "{went_live}");
    let live = backup.expect_stderr("live at icount");
    let failover = stopped.elapsed();
    assert!(
        failover >= Duration::from_millis(TIMEOUT_MS)
            && failover <= Duration::from_millis(TIMEOUT_MS + 500),
        "the backup went live {failover:?} after the primary fell silent: {live}"
    );
    kill_process(pid, Signal::CONT).expect("SIGCONT the primary");
    let lost = primary.expect_stderr("event=\"backup_lost\"");
    assert_timestamped(&lost, "INFO");
    assert!(
        lost.contains("arbiter=\"lost\"") && lost.contains("generation=1"),
        "{lost}"
    );
    assert_timestamped(&primary.expect_stderr("FT primary: halting"), "INFO");
    let halted = primary.expect_stderr("halting");
    assert!(
        halted.contains("took over (arbiter generation 1)"),
        "{halted}"
    );
    let status = primary.child.wait().expect("wait for the primary");
    assert_eq!(status.code(), Some(5), "a fenced primary exits 5 (fenced)");
    let released = primary.read_to_end().to_string();
    let last = *ticks(&released).last().expect("ticks");
    backup.expect(&format!("{TICK}{}\r\n", last + 3));
    let _ = backup.child.kill();
    let _ = backup.child.wait();
    eprintln!(
        "silent primary: backup live {} ms after SIGSTOP",
        failover.as_millis()
    );
}

/// A text log line: an RFC 3339 UTC timestamp, then `level`.
fn assert_timestamped(line: &str, level: &str) {
    let mut words = line.split_whitespace();
    let stamp = words.next().unwrap_or_default();
    let date_time: Vec<&str> = stamp.splitn(2, 'T').collect();
    assert!(
        date_time.len() == 2
            && date_time[0].len() == 10
            && date_time[0].split('-').all(|p| p.parse::<u32>().is_ok())
            && stamp.ends_with('Z'),
        "no timestamp first: {line}"
    );
    assert_eq!(words.next(), Some(level), "{line}");
}

/// The next JSON log line from `guest` whose `event` is `event`, parsed;
/// every log line on the way must parse too and carry a timestamp.
fn json_event(guest: &mut Guest, event: &str) -> serde_json::Value {
    loop {
        let line = guest.expect_stderr("");
        if !line.starts_with('{') {
            continue;
        }
        let value: serde_json::Value =
            serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        assert!(value["timestamp"].is_string(), "{line}");
        if value["event"] == event {
            return value;
        }
    }
}

fn lockstep(args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_lockstep"))
        .args(args)
        .output()
        .expect("run lockstep")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Backups that cannot protect the VM (unreachable, a TLS certificate of
/// another CA) are clear errors after which the primary runs on
/// unprotected, as `ft status` says; a good backup added through the
/// control socket then receives the running VM, its disk replica
/// included, and takes over when the primary dies.
#[test]
fn bad_backups_leave_the_primary_running_unprotected_until_a_good_one_joins() {
    let _serial = serial();
    let dir = tempfile::tempdir().expect("temp dir");
    let path = |name: &str| dir.path().join(name).to_str().expect("utf-8").to_string();
    for (name, ca) in [("tls-a", "ca-1"), ("tls-b", "ca-2"), ("tls-a2", "ca-1")] {
        let args = [
            "ft".to_string(),
            "tls-init".into(),
            path(name),
            "--ca".into(),
            path(ca),
        ];
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = lockstep(&args);
        assert!(out.status.success(), "tls-init: {}", text(&out.stderr));
    }
    // The review's attack on a backup: the guest's raw disk starts with a
    // qcow2 header naming a host file. The replica must open as raw.
    std::fs::write(path("host-secret"), b"HOST-SECRET ".repeat(1 << 16)).expect("secret");
    let made = std::process::Command::new("qemu-img")
        .args([
            "create",
            "-q",
            "-f",
            "qcow2",
            "-b",
            &path("host-secret"),
            "-F",
            "raw",
        ])
        .arg(path("header.qcow2"))
        .status()
        .expect("run qemu-img");
    assert!(made.success());
    let header = std::fs::read(path("header.qcow2")).expect("header");
    let mut disk: Vec<u8> = (0..4u32 << 20).map(|i| (i % 251) as u8).collect();
    disk[..header.len()].copy_from_slice(&header);
    std::fs::write(path("disk.raw"), &disk).expect("write the disk");
    let disk_spec = format!("path={},format=raw", path("disk.raw"));
    let (arbiter, control) = (path("arbiter"), path("primary.sock"));
    let mut primary = boot_primary(
        "127.0.0.1:1",
        &arbiter,
        &[
            "--ft-control",
            &control,
            "--ft-tls-dir",
            &path("tls-a"),
            "--disk",
            &disk_spec,
        ],
    );
    let unreachable = primary.expect_stderr("running unprotected");
    assert!(
        unreachable.contains("cannot reach the backup at 127.0.0.1:1"),
        "{unreachable}"
    );
    primary.expect(PROMPT);
    let status = lockstep(&["ft", "status", "--control", &control]);
    assert!(status.status.success(), "{}", text(&status.stderr));
    assert!(
        text(&status.stdout).contains("protection: unprotected"),
        "{}",
        text(&status.stdout)
    );
    let status = lockstep(&["ft", "status", "--control", &control, "--json"]);
    assert!(status.status.success(), "{}", text(&status.stderr));
    let doc: vmm::api::FtStatusDoc =
        serde_json::from_str(&text(&status.stdout)).expect("ft status --json");
    assert_eq!(
        (doc.schema, doc.role, doc.protection.as_str()),
        (vmm::api::SCHEMA, vmm::api::FtRole::Primary, "unprotected")
    );
    assert!(
        doc.icount > 0 && doc.max_lag_instructions.is_some(),
        "{doc:?}"
    );

    let (mut stranger, addr) =
        start_backup_with(Path::new(&arbiter), &["--ft-tls-dir", &path("tls-b")]);
    let refused = lockstep(&[
        "ft",
        "add-backup",
        "--ft-backup",
        &addr,
        "--control",
        &control,
    ]);
    assert_eq!(refused.status.code(), Some(3));
    let why = text(&refused.stderr);
    assert!(why.contains("TLS"), "{why}");
    let _ = stranger.child.kill();
    assert!(primary.run("echo alive-$((6*7))").contains("alive-42"));

    let (mut backup, addr) = start_backup_with(
        Path::new(&arbiter),
        &[
            "--ft-tls-dir",
            &path("tls-a2"),
            "--replica-dir",
            &path("replicas"),
            "--ft-control",
            &path("backup.sock"),
        ],
    );
    let added = lockstep(&[
        "ft",
        "add-backup",
        "--ft-backup",
        &addr,
        "--control",
        &control,
    ]);
    let said = text(&added.stdout);
    assert!(added.status.success(), "{said}{}", text(&added.stderr));
    assert!(said.contains("protected by the backup at"), "{said}");
    let pause = said
        .split("guest paused ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|ms| ms.parse::<f64>().ok())
        .unwrap_or_else(|| panic!("no pause in {said:?}"));
    backup.expect_stderr("following the primary");
    let status = text(&lockstep(&["ft", "status", "--control", &control]).stdout);
    assert!(status.contains("protection: protected by"), "{status}");
    let backup_status =
        text(&lockstep(&["ft", "status", "--control", &path("backup.sock")]).stdout);
    assert!(backup_status.contains("role: backup"), "{backup_status}");
    // Each VM's replicas in a directory of its own, named by its uuid.
    let replicas: Vec<_> = std::fs::read_dir(path("replicas"))
        .expect("replica dir")
        .filter_map(Result::ok)
        .filter_map(|vm| std::fs::read_dir(vm.path()).ok())
        .flatten()
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().ends_with("-disk0.raw"))
        .collect();
    assert_eq!(replicas.len(), 1, "one disk replica");
    assert!(
        std::fs::read(replicas[0].path()).expect("read the replica") == disk,
        "the replica holds the disk's bytes"
    );

    primary.child.kill().expect("kill -9 the primary");
    backup.expect_stderr("live at icount");
    backup.send("echo live-$((40+2))");
    backup.expect("live-42");
    // The live backup's guest sees its raw disk, nothing of the host file.
    backup.expect(PROMPT);
    assert_eq!(backup.run("cat /sys/block/vda/size"), "8192");
    assert_eq!(backup.run("head -c 3 /dev/vda; echo"), "QFI");
    assert_eq!(backup.run("grep -c HOST-SECRET /dev/vda"), "0");
    eprintln!("add-backup with TLS: guest paused {pause} ms");
}

#[test]
fn an_arbiter_that_cannot_be_written_is_refused_before_the_guest_starts() {
    let out = lockstep(&[
        "run",
        "--console",
        "none",
        "--ft-arbiter",
        "/proc/lockstep-no-such-dir/arbiter",
    ]);
    assert_eq!(out.status.code(), Some(3));
    let err = text(&out.stderr);
    assert!(
        err.contains("/proc/lockstep-no-such-dir/arbiter") && err.lines().count() == 1,
        "{err}"
    );
}

/// The log channel is TLS by default: an HTTP request to `ft backup`
/// (the review killed it with one) is refused with a logged reason, the
/// backup keeps listening, and the real primary is protected after it.
/// Plain TCP is refused off loopback.
#[test]
fn a_backup_survives_a_stranger_and_plaintext_stays_on_loopback() {
    let _serial = serial();
    let dir = tempfile::tempdir().expect("temp dir");
    let arbiter = dir.path().join("arbiter");
    let (mut backup, addr) = start_backup(&arbiter);
    {
        use std::io::{Read, Write};
        let mut stranger = std::net::TcpStream::connect(&addr).expect("connect");
        stranger
            .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            .expect("send a request");
        let mut answer = Vec::new();
        let _ = stranger.read_to_end(&mut answer);
    }
    let said = backup.expect_stderr("still listening");
    assert!(said.contains("TLS") || said.contains("preamble"), "{said}");
    assert!(
        backup.child.try_wait().expect("poll").is_none(),
        "the backup died"
    );
    let arbiter_arg = arbiter.to_str().expect("utf-8 temp path");
    let mut primary = boot_primary(&addr, arbiter_arg, &[]);
    primary.expect_stderr("protected by the backup");
    backup.expect_stderr("following the primary");

    let out = lockstep(&[
        "ft",
        "backup",
        "--listen",
        "0.0.0.0:0",
        "--ft-insecure-plaintext",
        "--ft-arbiter",
        arbiter_arg,
    ]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("loopback") && err.trim().lines().count() == 1,
        "{err}"
    );
}

/// Send `signal` (e.g. "-STOP") to the process `pid`.
fn signal(pid: &str, signal: &str) {
    let status = std::process::Command::new("kill")
        .args([signal, pid])
        .status()
        .expect("run kill");
    assert!(status.success(), "kill {signal} {pid}");
}

/// The number before `unit` after `key` in `line` (e.g. the pause in
/// "guest paused 12.3 ms at the hand-over").
fn decimal_after(line: &str, key: &str) -> f64 {
    line.split(key)
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no number after {key:?} in {line:?}"))
}

/// Live migration (`lockstep ft migrate --to`): a ticking guest, run with
/// a control socket and no arbiter, moves to a target on this host at a
/// random moment. The source exits successfully once the target runs the
/// VM; the console output the source released followed by the target's
/// holds every counter value exactly once, in order (no gap, no
/// duplicate: a hand-over releases everything before it); the target runs
/// on; and the guest's pause at the hand-over is reported. A target that
/// dies before the hand-over, and a cancelled migration, leave the VM
/// running at its source.
#[test]
fn a_migrated_guest_runs_on_at_its_target_with_no_gap_and_no_duplicate() {
    let _serial = serial();
    let dir = tempfile::tempdir().expect("temp dir");
    let control = dir.path().join("source.sock");
    let control_arg = control.to_str().expect("utf-8 temp path");
    let incoming = |name: &str| {
        let socket = dir.path().join(name);
        let mut target = Guest::launch(
            &[],
            &[
                "ft",
                "backup",
                "--incoming",
                "--listen",
                "127.0.0.1:0",
                "--console",
                "stdio",
                // As the source's: each side's silence bound must cover
                // the other's heartbeat (a fifth of its timeout).
                "--ft-timeout",
                "5s",
                "--ft-control",
                socket.to_str().expect("utf-8 temp path"),
            ],
        );
        let line = target.expect_stderr("listening on");
        let addr = line.rsplit(' ').next().expect("an address").to_string();
        (target, addr)
    };
    // A long failure timeout: the cancelled target below is stopped for a while.
    let mut source = Guest::boot(&["--ft-control", control_arg, "--ft-timeout", "5s"]);
    source.expect(PROMPT);
    start_ticking(&mut source);

    // A target killed while it receives the VM: the source runs on.
    let (mut doomed, addr) = incoming("doomed.sock");
    let migrating = std::thread::spawn({
        let (addr, control) = (addr.clone(), control_arg.to_string());
        move || lockstep(&["ft", "migrate", "--to", &addr, "--control", &control])
    });
    doomed.expect_stderr("following the primary");
    doomed.child.kill().expect("kill the target");
    let _ = doomed.child.wait();
    let failed = migrating.join().expect("migrate thread");
    let said = text(&failed.stderr);
    assert!(!failed.status.success(), "{said}");
    assert!(
        said.contains("failed before the hand-over") && said.contains("runs on here"),
        "{said}"
    );
    let now = *ticks(&source.console).last().expect("ticks");
    source.expect(&format!("{TICK}{}\r\n", now + 3));

    // Cancelled while the VM is being sent (the target is held with
    // SIGSTOP so the sync cannot finish first): the source runs on, and
    // the target, its transfer broken off, never runs the VM.
    let (mut cancelled, addr) = incoming("cancelled.sock");
    let migrating = std::thread::spawn({
        let (addr, control) = (addr.clone(), control_arg.to_string());
        move || lockstep(&["ft", "migrate", "--to", &addr, "--control", &control])
    });
    cancelled.expect_stderr("receiving the VM");
    let pid = cancelled.child.id().to_string();
    signal(&pid, "-STOP");
    let cancel = lockstep(&["ft", "migrate", "--cancel", "--control", control_arg]);
    assert!(cancel.status.success(), "{}", text(&cancel.stderr));
    let answer = migrating.join().expect("migrate thread");
    let said = text(&answer.stderr);
    assert!(
        !answer.status.success() && said.contains("cancelled"),
        "{said}"
    );
    signal(&pid, "-CONT");
    cancelled.expect_stderr("still listening");
    assert!(
        cancelled.child.try_wait().expect("wait").is_none(),
        "the cancelled target keeps listening"
    );
    let _ = cancelled.child.kill();
    let _ = cancelled.child.wait();
    assert!(
        !cancelled.console.contains(TICK),
        "the cancelled target ran the VM"
    );
    let now = *ticks(&source.console).last().expect("ticks");
    source.expect(&format!("{TICK}{}\r\n", now + 3));

    // The real one, at a random moment.
    let (mut target, addr) = incoming("target.sock");
    std::thread::sleep(random_delay());
    let migrated = lockstep(&["ft", "migrate", "--to", &addr, "--control", control_arg]);
    let report = text(&migrated.stdout);
    assert!(
        migrated.status.success(),
        "{report}{}",
        text(&migrated.stderr)
    );
    let last = report.lines().last().expect("a report").to_string();
    assert!(last.contains(&format!("migrated to {addr}")), "{report}");
    let pause = decimal_after(&last, "guest paused");
    let status = source.child.wait().expect("the source exits");
    assert!(
        status.success(),
        "the source exits 0 once migrated: {status:?}"
    );
    let released = source.read_to_end().to_string();
    let last_released = *ticks(&released).last().expect("the source released ticks");
    target.expect_stderr("live at icount");
    target.expect(&format!("{TICK}{}\r\n", last_released + 5));
    let emitted = target.console.clone();
    let _ = target.child.kill();
    let _ = target.child.wait();
    let all = ticks(&format!("{released}{emitted}"));
    let expected: Vec<u64> = (1..=all.len() as u64).collect();
    assert_eq!(
        all,
        expected,
        "the counter has a gap or a duplicate across the migration\nsource tail: {:?}\ntarget head: {:?}",
        &released[released.len().saturating_sub(200)..],
        &emitted[..emitted.len().min(200)]
    );
    eprintln!(
        "migration: {last}; counter continuous 1..={} across it",
        all.len()
    );
    assert!(pause > 0.0, "{last}");
}
