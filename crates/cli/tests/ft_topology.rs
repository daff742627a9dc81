//! Fault tolerance across a network (DESIGN §5): two "hosts" and a client,
//! each a network namespace these tests create.
//!
//! ```text
//!   client: br0 10.77.0.1/24 ── cA ─┬─ vA ── hostA: brA ── tapA
//!                            └─ cB ─┴─ vB ── hostB: brB ── tapB
//!   hostA: lA 10.78.0.1/24 ──────────── lB 10.78.0.2/24 :hostB  (FT log channel)
//! ```
//!
//! The guest (10.77.0.2) streams an incrementing counter over TCP, one
//! number per line; a client in `client` reads it over one connection for
//! the whole test and checks every number is the previous one plus one.
//! Every lockstep process of a test shares one arbiter file (storage both
//! "hosts" share); each has its own control socket.
//!
//! - `failover_chain`: one boot, one connection, N kill -9s of whichever
//!   side is primary (`LOCKSTEP_FT_CHAIN`, default 10), redundancy
//!   restored by `--ft-standby` after each, over TLS.
//! - `killing_the_backup_then_adding_one`: the primary shrugs off its
//!   backup's death; `lockstep ft add-backup` protects it again.
//! - `cutting_the_log_channel`: a partition; exactly one side survives.
//!
//! `LOCKSTEP_FT_CHAIN_CPUS=N` boots the chain's guest with N harts;
//! `LOCKSTEP_FT_CHAIN_TLS=0` runs its log channel over plain TCP.
//!
//! Needs root and `ip` (iproute2). The tests take turns (they measure
//! pauses, which a busy 2-core machine would spoil).

mod common;
#[path = "common/netns.rs"]
mod netns;

use common::{Guest, PROMPT};
use netns::Netns;
use std::io::{BufRead, BufReader};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

const FT_TIMEOUT_MS: u64 = 500;
/// Flow control (`--ft-max-lag`): a killed primary's backup first executes
/// what it lags behind, so the lag must fit the failover budget with room
/// to spare on a busy host (the default, 1 s of guest time, does not).
const MAX_LAG_MS: u64 = 300;
/// How long after a kill the backup must be live.
const FAILOVER_LIMIT: Duration = Duration::from_millis(FT_TIMEOUT_MS + 500);
/// Longest guest pause a re-sync may cost.
const SYNC_PAUSE_LIMIT_MS: f64 = 100.0;
const CLIENT_CIDR: &str = "10.77.0.1/24";
const GUEST_IP: &str = "10.77.0.2";
const LOG_PORT: u16 = 7400;
const SERVICE_PORT: u16 = 5000;
/// Numbers the client must read after a failover.
const AFTER_LIVE: usize = 50;
/// How long those may take (TCP retransmission backs off).
const RESUME_DEADLINE: Duration = Duration::from_secs(30);
const CONNECT_DEADLINE: Duration = Duration::from_secs(60);
/// Upper bound for things that take well under a second when all is well
/// (a line after an event, a process exiting): a bound, not a measurement.
const PATIENCE: Duration = Duration::from_secs(10);

/// One test at a time, even under a parallel `cargo test`.
static SERIAL: Mutex<()> = Mutex::new(());

/// The guest's counter service: one number per line, about 50 a second,
/// to the first client of SERVICE_PORT.
fn service_command() -> String {
    format!(
        "i=0; while true; do i=$((i+1)); echo $i; usleep 20000; done | nc -l -p {SERVICE_PORT} &"
    )
}

/// What sets one test's lockstep processes apart.
struct Plan {
    cpus: u8,
    /// Log channel over mutually authenticated TLS, each host with its own
    /// certificate (one CA).
    tls: bool,
    /// Every process keeps a backup on the other host (`--ft-standby`
    /// the other host's log address; the first primary gets its backup
    /// that way too). Otherwise the first primary gets `--ft-backup`.
    standby: bool,
}

/// `failover_chain`: 1 hart (`LOCKSTEP_FT_CHAIN_CPUS` overrides), TLS,
/// standby backups.
fn chain_plan() -> Plan {
    Plan {
        cpus: env_number("LOCKSTEP_FT_CHAIN_CPUS").unwrap_or(1),
        tls: env_number("LOCKSTEP_FT_CHAIN_TLS").unwrap_or(1) != 0,
        standby: true,
    }
}

/// `killing_the_backup_then_adding_one`: 2 harts, backups added by hand.
fn kill_backup_plan() -> Plan {
    Plan {
        cpus: 2,
        tls: false,
        standby: false,
    }
}

/// `cutting_the_log_channel`, run `run`: 2 harts then 1.
fn cut_plan(run: usize) -> Plan {
    Plan {
        cpus: if run == 0 { 2 } else { 1 },
        tls: false,
        standby: false,
    }
}

fn env_number<T: std::str::FromStr>(name: &str) -> Option<T> {
    std::env::var(name).ok().and_then(|s| s.parse().ok())
}

/// A host of the topology.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Host {
    A,
    B,
}

impl Host {
    fn other(self) -> Host {
        match self {
            Host::A => Host::B,
            Host::B => Host::A,
        }
    }

    fn letter(self) -> &'static str {
        match self {
            Host::A => "A",
            Host::B => "B",
        }
    }

    /// Where this host's FT backup listens (its end of the log link).
    fn log_addr(self) -> String {
        let ip = match self {
            Host::A => "10.78.0.1",
            Host::B => "10.78.0.2",
        };
        format!("{ip}:{LOG_PORT}")
    }

    fn log_cidr(self) -> String {
        let addr = self.log_addr();
        let ip = addr.split(':').next().unwrap_or_default();
        format!("{ip}/24")
    }

    fn log_link(self) -> String {
        format!("l{}", self.letter())
    }

    fn tap(self) -> String {
        format!("tap{}", self.letter())
    }
}

/// The three namespaces, wired as in the module comment.
struct Topology {
    host_a: Netns,
    host_b: Netns,
    client: Netns,
}

impl Topology {
    fn create(suffix: &str) -> Topology {
        let topology = Topology {
            host_a: Netns::create(&format!("lockstep-ft-hostA-{suffix}")),
            host_b: Netns::create(&format!("lockstep-ft-hostB-{suffix}")),
            client: Netns::create(&format!("lockstep-ft-client-{suffix}")),
        };
        let client = &topology.client;
        client.bridge("br0");
        client.address("br0", CLIENT_CIDR);
        for host in [Host::A, Host::B] {
            let ns = topology.host(host);
            let side = host.letter();
            let (bridge, uplink) = (format!("br{side}"), format!("v{side}"));
            client.veth(&format!("c{side}"), ns, &uplink);
            client.attach("br0", &format!("c{side}"));
            ns.bridge(&bridge);
            ns.attach(&bridge, &uplink);
            ns.tap(&host.tap());
            ns.attach(&bridge, &host.tap());
        }
        let (a, b) = (Host::A, Host::B);
        topology
            .host_a
            .veth(&a.log_link(), &topology.host_b, &b.log_link());
        topology.host_a.address(&a.log_link(), &a.log_cidr());
        topology.host_b.address(&b.log_link(), &b.log_cidr());
        topology
    }

    fn host(&self, host: Host) -> &Netns {
        match host {
            Host::A => &self.host_a,
            Host::B => &self.host_b,
        }
    }
}

/// A lockstep process on one host.
struct Node {
    guest: Guest,
    host: Host,
    control: PathBuf,
}

impl Node {
    fn pid(&self) -> u32 {
        self.guest.child.id()
    }

    /// kill -9; returns when it was sent.
    fn kill(mut self) -> Instant {
        self.guest.child.kill().expect("kill -9 a lockstep process");
        let at = Instant::now();
        let _ = self.guest.child.wait();
        at
    }

    /// `expect_stderr`, but the process is killed after `within`, so a
    /// line that never comes fails the test at once instead of hanging it.
    fn expect_stderr_within(&mut self, needle: &str, within: Duration) -> String {
        let _watchdog = Watchdog::start(self.pid(), within, needle);
        self.guest.expect_stderr(needle)
    }

    /// The backup lag `lockstep ft status` reports, in ms of guest time.
    fn backup_lag_ms(&self) -> f64 {
        let status = self.status();
        status
            .lines()
            .find_map(|l| l.strip_prefix("backup lag: "))
            .and_then(|rest| rest.split(" ms").next())
            .and_then(|ms| ms.trim().parse().ok())
            .unwrap_or_else(|| panic!("no backup lag in the status:\n{status}"))
    }

    /// `lockstep ft status` on this process's control socket.
    fn status(&self) -> String {
        let (ok, out, err) = lockstep(&["ft", "status", "--control", path_str(&self.control)]);
        assert!(ok, "lockstep ft status failed: {err}");
        out
    }
}

/// Kills a process (by its pid, which stays ours: it is an unreaped
/// child) if not disarmed in time; disarmed when dropped.
struct Watchdog {
    disarmed: Arc<Mutex<bool>>,
}

impl Watchdog {
    fn start(pid: u32, within: Duration, waiting_for: &str) -> Watchdog {
        let waiting_for = waiting_for.to_string();
        let disarmed = Arc::new(Mutex::new(false));
        let flag = Arc::clone(&disarmed);
        let deadline = Instant::now() + within;
        std::thread::spawn(move || {
            while Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
                if *flag.lock().unwrap_or_else(|e| e.into_inner()) {
                    return;
                }
            }
            // Holding the lock: the owner cannot reap the child meanwhile.
            let disarmed = flag.lock().unwrap_or_else(|e| e.into_inner());
            if !*disarmed {
                eprintln!("test: no {waiting_for:?} within {within:?}: killing lockstep {pid}");
                let pid = rustix::process::Pid::from_raw(pid as i32).expect("a child's pid");
                let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
            }
        });
        Watchdog { disarmed }
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        *self.disarmed.lock().unwrap_or_else(|e| e.into_inner()) = true;
    }
}

/// Run the lockstep binary in this namespace; (success, stdout, stderr).
fn lockstep(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_lockstep"))
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run lockstep {args:?}: {e}"));
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn path_str(path: &Path) -> &str {
    path.to_str().expect("utf-8 temp path")
}

/// One test's world: the topology, the shared arbiter, certificates, and
/// a directory for control sockets and disk replicas.
struct Cluster {
    plan: Plan,
    topology: Topology,
    dir: tempfile::TempDir,
    /// Processes started so far (names their sockets and replica dirs).
    started: usize,
}

impl Cluster {
    fn new(name: &str, plan: Plan) -> Cluster {
        let topology = Topology::create(&format!("{}-{name}", std::process::id()));
        let dir = tempfile::tempdir().expect("temp dir");
        let cluster = Cluster {
            plan,
            topology,
            dir,
            started: 0,
        };
        if cluster.plan.tls {
            let (a, b) = (cluster.tls_dir(Host::A), cluster.tls_dir(Host::B));
            let ca = cluster.dir.path().join("ca");
            for (dir, name) in [(&a, "host-a"), (&b, "host-b")] {
                let (ok, _, err) = lockstep(&[
                    "ft",
                    "tls-init",
                    path_str(dir),
                    "--ca",
                    path_str(&ca),
                    "--node-name",
                    name,
                ]);
                assert!(ok, "lockstep ft tls-init failed: {err}");
            }
        }
        cluster
    }

    fn tls_dir(&self, host: Host) -> PathBuf {
        self.dir.path().join(format!("tls-{}", host.letter()))
    }

    fn arbiter(&self) -> PathBuf {
        self.dir.path().join("arbiter")
    }

    /// Flags every FT process of this cluster on `host` takes.
    fn ft_flags(&self, host: Host, control: &Path) -> Vec<String> {
        let mut flags = vec![
            "--ft-arbiter".to_string(),
            path_str(&self.arbiter()).to_string(),
            "--ft-timeout".to_string(),
            format!("{FT_TIMEOUT_MS}ms"),
            "--ft-max-lag".to_string(),
            format!("{MAX_LAG_MS}ms"),
            "--ft-control".to_string(),
            path_str(control).to_string(),
        ];
        if self.plan.tls {
            flags.push("--ft-tls-dir".to_string());
            flags.push(path_str(&self.tls_dir(host)).to_string());
        }
        flags
    }

    fn launch(
        &mut self,
        host: Host,
        args: impl FnOnce(&Self, &Path, &Path) -> Vec<String>,
    ) -> Node {
        self.started += 1;
        let control = self
            .dir
            .path()
            .join(format!("control-{}.sock", self.started));
        let replicas = self.dir.path().join(format!("replicas-{}", self.started));
        let args = args(self, &control, &replicas);
        let prefix = self.topology.host(host).exec_prefix();
        let prefix: Vec<&str> = prefix.iter().map(String::as_str).collect();
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        Node {
            guest: Guest::launch(&prefix, &args),
            host,
            control,
        }
    }

    /// `lockstep ft backup` on `host`, listening on its log address.
    fn start_backup(&mut self, host: Host) -> Node {
        let mut node = self.launch(host, |cluster, control, replicas| {
            let mut args: Vec<String> = [
                "ft",
                "backup",
                "--listen",
                &host.log_addr(),
                "--net",
                &format!("tap={}", host.tap()),
                "--console",
                "stdio",
                "--replica-dir",
                path_str(replicas),
            ]
            .map(str::to_string)
            .to_vec();
            if cluster.plan.standby {
                args.extend(["--ft-standby".to_string(), host.other().log_addr()]);
            }
            args.extend(cluster.ft_flags(host, control));
            args
        });
        node.expect_stderr_within("listening on", PATIENCE);
        node
    }

    /// The first primary, booting on `host`, protected by the backup on
    /// the other host.
    fn start_primary(&mut self, host: Host) -> Node {
        self.launch(host, |cluster, control, _| {
            let append = format!("console=ttyS0 earlycon=sbi quiet lockstep.ip={GUEST_IP}/24");
            let protect = if cluster.plan.standby {
                "--ft-standby"
            } else {
                "--ft-backup"
            };
            let mut args: Vec<String> = [
                "run",
                "--memory",
                "512M",
                "--cpus",
                &cluster.plan.cpus.to_string(),
                "--console",
                "stdio",
                "--append",
                &append,
                "--net",
                &format!("tap={}", host.tap()),
                protect,
                &host.other().log_addr(),
            ]
            .map(str::to_string)
            .to_vec();
            args.extend(cluster.ft_flags(host, control));
            args
        })
    }

    /// A protected pair: backup on B, primary on A booted with the counter
    /// service running, and the client connected to it. Returns the
    /// initial sync's guest pause too.
    fn protected_pair(&mut self) -> (Node, Node, CounterClient, f64) {
        let mut backup = self.start_backup(Host::B);
        let mut primary = self.start_primary(Host::A);
        let pause = protected_pause(&mut primary);
        backup.expect_stderr_within("following the primary", PATIENCE);
        primary.guest.expect(PROMPT);
        primary.guest.send(&service_command());
        primary.guest.expect(PROMPT);
        let client = CounterClient::connect(&self.topology.client);
        (primary, backup, client, pause)
    }
}

/// Wait for `node` to report it is protected; returns the guest pause of
/// that sync, after checking it is within SYNC_PAUSE_LIMIT_MS.
fn protected_pause(node: &mut Node) -> f64 {
    let line = node.expect_stderr_within("protected by the backup", Duration::from_secs(120));
    let pause = guest_pause_ms(&line);
    assert!(
        pause <= SYNC_PAUSE_LIMIT_MS,
        "a sync paused the guest {pause} ms: {line}"
    );
    pause
}

/// The P of "guest paused P ms" in a sync report.
fn guest_pause_ms(line: &str) -> f64 {
    line.split("guest paused ")
        .nth(1)
        .and_then(|rest| rest.split(" ms").next())
        .and_then(|p| p.trim().parse().ok())
        .unwrap_or_else(|| panic!("no guest pause in {line:?}"))
}

/// Between 0.3 and 2 s, different each time.
fn random_delay() -> Duration {
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    Duration::from_millis(300 + u64::from(nanos / 1000) % 1700)
}

/// What the client's reader thread saw.
enum Event {
    Number(u64, Instant),
    Ended(String),
}

/// One TCP connection to the guest's counter, read on a thread inside
/// the client namespace; every number must be the previous one plus one.
struct CounterClient {
    events: Receiver<Event>,
    /// A handle on the socket, to shut it down when the test is done.
    socket: TcpStream,
    last: Option<(u64, Instant)>,
    /// The longest time between two numbers since `reset_pause`.
    longest_pause: Duration,
}

impl CounterClient {
    fn connect(client: &Netns) -> CounterClient {
        let addr = SocketAddr::new(GUEST_IP.parse().expect("an IP"), SERVICE_PORT);
        let (events_tx, events) = mpsc::channel();
        let (socket_tx, socket_rx) = mpsc::channel();
        client.spawn(move || {
            let stream = match connect_with_retries(addr) {
                Ok(stream) => stream,
                Err(e) => {
                    let _ = socket_tx.send(Err(e));
                    return;
                }
            };
            let handle = stream.try_clone().map_err(|e| e.to_string());
            if socket_tx.send(handle).is_err() {
                return;
            }
            let ended = read_numbers(stream, |event| events_tx.send(event).is_ok());
            let _ = events_tx.send(Event::Ended(ended));
        });
        let socket = socket_rx
            .recv()
            .expect("the client thread reports its connection")
            .unwrap_or_else(|e| panic!("the client cannot connect to {addr}: {e}"));
        CounterClient {
            events,
            socket,
            last: None,
            longest_pause: Duration::ZERO,
        }
    }

    /// Check and take the next number, waiting until `deadline`; None when
    /// the deadline passed first.
    fn next(&mut self, deadline: Instant) -> Option<(u64, Instant)> {
        let left = deadline.saturating_duration_since(Instant::now());
        let (n, at) = match self.events.recv_timeout(left) {
            Ok(Event::Number(n, at)) => (n, at),
            Ok(Event::Ended(why)) => panic!(
                "the counter connection ended after {:?}: {why}",
                self.last.map(|(n, _)| n)
            ),
            Err(RecvTimeoutError::Timeout) => return None,
            Err(RecvTimeoutError::Disconnected) => panic!("the client thread died"),
        };
        let expected = self.last.map_or(1, |(last, _)| last + 1);
        assert_eq!(
            n,
            expected,
            "the counter jumped from {:?} to {n} (gap, duplicate or reordering)",
            self.last.map(|(n, _)| n)
        );
        if let Some((_, before)) = self.last {
            self.longest_pause = self.longest_pause.max(at.saturating_duration_since(before));
        }
        self.last = Some((n, at));
        Some((n, at))
    }

    /// Read every number that arrives before `until`; returns how many.
    fn read_until(&mut self, until: Instant) -> usize {
        std::iter::from_fn(|| self.next(until)).count()
    }

    /// Read for `reading`, which must bring at least one number.
    fn read_for(&mut self, reading: Duration) -> usize {
        let count = self.read_until(Instant::now() + reading);
        assert!(
            count > 0,
            "no number in {reading:?} (last {})",
            self.last_number()
        );
        count
    }

    /// Read until `count` numbers that arrived at or after `since` have
    /// been seen; returns how many numbers that took in all.
    fn read_arrived_after(&mut self, since: Instant, count: usize) -> usize {
        let deadline = since + RESUME_DEADLINE;
        let (mut seen, mut total) = (0, 0);
        while seen < count {
            let Some((_, at)) = self.next(deadline) else {
                panic!(
                    "only {seen} of {count} numbers within {RESUME_DEADLINE:?} (last {})",
                    self.last_number()
                );
            };
            total += 1;
            if at >= since {
                seen += 1;
            }
        }
        total
    }

    fn last_number(&self) -> u64 {
        self.last.map_or(0, |(n, _)| n)
    }

    /// Start measuring the longest pause afresh; returns the old measure.
    fn reset_pause(&mut self) -> Duration {
        std::mem::take(&mut self.longest_pause)
    }
}

impl Drop for CounterClient {
    fn drop(&mut self) {
        let _ = self.socket.shutdown(Shutdown::Both);
    }
}

/// Connect, retrying while the guest's service is not listening yet.
fn connect_with_retries(addr: SocketAddr) -> Result<TcpStream, String> {
    let deadline = Instant::now() + CONNECT_DEADLINE;
    loop {
        match TcpStream::connect_timeout(&addr, Duration::from_secs(2)) {
            Ok(stream) => return Ok(stream),
            Err(e) if Instant::now() >= deadline => return Err(e.to_string()),
            Err(_) => std::thread::sleep(Duration::from_millis(200)),
        }
    }
}

/// Pass each line of `stream` to `deliver` as a number until it declines,
/// the stream ends or a line is not a number; returns why it stopped.
fn read_numbers(stream: TcpStream, mut deliver: impl FnMut(Event) -> bool) -> String {
    for line in BufReader::new(stream).lines() {
        let line = match line {
            Ok(line) => line,
            Err(e) => return format!("the connection broke: {e}"),
        };
        let Ok(n) = line.trim().parse() else {
            return format!("not a number: {line:?}");
        };
        if !deliver(Event::Number(n, Instant::now())) {
            return "the test stopped reading".to_string();
        }
    }
    "the guest closed the connection".to_string()
}

/// Kill the primary and check the backup goes live in time and the
/// counter goes on; returns the failover time and the longest pause the
/// client saw around it.
fn fail_over(primary: Node, backup: &mut Node, client: &mut CounterClient) -> (Duration, Duration) {
    client.reset_pause();
    let killed = primary.kill();
    let live_line = backup.expect_stderr_within("live at icount", PATIENCE);
    let live = Instant::now();
    let failover = live - killed;
    assert!(
        failover <= FAILOVER_LIMIT,
        "the backup went live {failover:?} after the kill: {live_line}"
    );
    client.read_arrived_after(live, AFTER_LIVE);
    (failover, client.reset_pause())
}

fn chain_length() -> usize {
    env_number("LOCKSTEP_FT_CHAIN").unwrap_or(10)
}

/// One guest, one client connection, and the primary killed N times: each
/// time on the host where the previous primary died a new backup starts,
/// and the new primary's `--ft-standby` adds it.
#[test]
fn failover_chain() {
    let _turn = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let plan = chain_plan();
    let (cpus, channel) = (plan.cpus, if plan.tls { "TLS" } else { "TCP" });
    let mut cluster = Cluster::new("chain", plan);
    let (mut primary, mut backup, mut client, mut pause) = cluster.protected_pair();
    let mut report = Vec::new();
    for round in 0..chain_length() {
        client.reset_pause();
        if round > 0 {
            pause = protected_pause(&mut primary);
            backup.expect_stderr_within("following the primary", PATIENCE);
        }
        let reading = random_delay();
        client.read_for(reading);
        let stall = client.reset_pause();
        let lag = primary.backup_lag_ms();
        let before_kill = client.last_number();
        let killed_host = primary.host;
        let (failover, longest) = fail_over(primary, &mut backup, &mut client);
        let line = format!(
            "round {round}: primary on host{}: sync paused the guest {pause:.1} ms (longest counter pause from \
             the previous failover to the kill {} ms); read {} ms, backup lag {lag:.1} ms; killed at {before_kill}; \
             backup live {} ms after the kill; counter on to {} (longest pause {} ms)",
            killed_host.letter(),
            stall.as_millis(),
            reading.as_millis(),
            failover.as_millis(),
            client.last_number(),
            longest.as_millis()
        );
        eprintln!("FT chain {line}");
        report.push(line);
        primary = backup;
        backup = cluster.start_backup(killed_host);
    }
    pause = protected_pause(&mut primary);
    client.read_for(Duration::from_millis(500));
    eprintln!(
        "FT chain ({cpus} harts, {channel}): {} failovers on one connection, counter 1..={}; final re-sync paused the guest {pause:.1} ms",
        report.len(),
        client.last_number()
    );
    for line in &report {
        eprintln!("  {line}");
    }
}

/// The backup dies; the primary runs on unprotected with no hiccup; a new
/// backup added with `lockstep ft add-backup` takes over when the primary
/// dies in turn.
#[test]
fn killing_the_backup_then_adding_one() {
    let _turn = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut cluster = Cluster::new("addbackup", kill_backup_plan());
    let (mut primary, backup, mut client, first_pause) = cluster.protected_pair();
    client.read_for(Duration::from_secs(1));

    client.reset_pause();
    let killed = backup.kill();
    let lost = primary.expect_stderr_within("running unprotected", PATIENCE);
    let noticed = killed.elapsed();
    assert!(lost.contains("backup lost"), "{lost}");
    client.read_until(killed + Duration::from_secs(3));
    let hiccup = client.reset_pause();
    assert!(
        hiccup <= Duration::from_millis(300),
        "the counter paused {hiccup:?} after the backup was killed"
    );
    let status = primary.status();
    assert!(status.contains("protection: unprotected"), "{status}");

    let mut backup = cluster.start_backup(Host::B);
    let addr = Host::B.log_addr();
    let (ok, out, err) = lockstep(&[
        "ft",
        "add-backup",
        "--ft-backup",
        &addr,
        "--control",
        path_str(&primary.control),
    ]);
    assert!(ok, "lockstep ft add-backup {addr} failed: {err}\n{out}");
    assert!(out.lines().any(|l| l.starts_with("round ")), "{out}");
    let done = out.lines().last().unwrap_or_default();
    assert!(
        done.starts_with(&format!("protected by the backup at {addr}")),
        "{out}"
    );
    let add_pause = guest_pause_ms(done);
    assert!(add_pause <= SYNC_PAUSE_LIMIT_MS, "{done}");
    backup.expect_stderr_within("following the primary", PATIENCE);
    let status = primary.status();
    assert!(
        status.contains(&format!("protection: protected by {addr}")),
        "{status}"
    );
    client.read_for(Duration::from_millis(500));
    let during_add = client.reset_pause();

    let (failover, longest) = fail_over(primary, &mut backup, &mut client);
    eprintln!(
        "FT kill the backup ({} harts): first sync paused {first_pause:.1} ms; backup loss noticed {} ms after kill -9, \
         longest counter pause then {} ms; add-backup paused the guest {add_pause:.1} ms (longest counter pause {} ms); \
         primary killed, new backup live {} ms later; counter 1..={} (longest pause {} ms)",
        cluster.plan.cpus,
        noticed.as_millis(),
        hiccup.as_millis(),
        during_add.as_millis(),
        failover.as_millis(),
        client.last_number(),
        longest.as_millis()
    );
}

/// Who survived a partition.
#[derive(Debug)]
enum Survivor {
    Primary,
    Backup,
}

/// Wait until one of the two processes exits; returns which one did
/// (`true`: the first) and its exit code.
fn first_to_exit(first: &mut Node, second: &mut Node, within: Duration) -> (bool, Option<i32>) {
    let deadline = Instant::now() + within;
    loop {
        for (is_first, node) in [(true, &mut *first), (false, &mut *second)] {
            if let Some(status) = node
                .guest
                .child
                .try_wait()
                .expect("poll a lockstep process")
            {
                return (is_first, status.code());
            }
        }
        assert!(
            Instant::now() < deadline,
            "neither side halted within {within:?} of the cut: both may be running"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn cut_run(run: usize) {
    let mut cluster = Cluster::new(&format!("cut{run}"), cut_plan(run));
    let (mut primary, mut backup, mut client, _) = cluster.protected_pair();
    client.read_for(Duration::from_secs(1));

    client.reset_pause();
    let link = Host::A.log_link();
    cluster
        .topology
        .host(Host::A)
        .ip(&["link", "set", &link, "down"]);
    let cut = Instant::now();
    let (primary_exited, code) = first_to_exit(&mut primary, &mut backup, PATIENCE);
    let decided = cut.elapsed();
    let (survivor, mut winner, mut loser) = if primary_exited {
        (Survivor::Backup, backup, primary)
    } else {
        (Survivor::Primary, primary, backup)
    };
    let (loser_says, winner_says) = match survivor {
        Survivor::Backup => {
            assert_eq!(code, Some(5), "the halted primary's exit code (fenced)");
            ("halting", "live at icount")
        }
        Survivor::Primary => {
            assert_eq!(code, Some(5), "the losing backup's exit code (fenced)");
            ("already claimed", "running unprotected")
        }
    };
    let halted = loser.guest.expect_stderr(loser_says);
    let won = winner.expect_stderr_within(winner_says, PATIENCE);
    if let Survivor::Backup = survivor {
        assert!(halted.contains("took over"), "{halted}");
    } else {
        assert!(halted.contains("lost the arbiter"), "{halted}");
        assert!(won.contains("won arbiter generation"), "{won}");
    }
    client.read_arrived_after(Instant::now(), AFTER_LIVE);
    assert!(
        winner
            .guest
            .child
            .try_wait()
            .expect("poll the survivor")
            .is_none(),
        "the surviving {survivor:?} exited too"
    );
    let status = winner.status();
    assert!(status.contains("protection: unprotected"), "{status}");
    eprintln!(
        "FT cut log channel, run {run} ({} harts): the {survivor:?} survived; the loser exited {decided:?} after the cut \
         ({halted:?}); counter 1..={} on one connection, longest pause {} ms",
        cluster.plan.cpus,
        client.last_number(),
        client.longest_pause.as_millis()
    );
}

/// The log link goes down with both sides running: each declares the
/// other dead, and the arbiter lets exactly one of them carry on.
#[test]
fn cutting_the_log_channel() {
    let _turn = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    for run in 0..2 {
        cut_run(run);
    }
}
