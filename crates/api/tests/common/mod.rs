//! What the lockstepd tests share: the daemon under test, API answers,
//! the console, waiting.
#![allow(dead_code)]

use api::client::{Client, ClientError};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Tests that boot VMs take turns (two cores).
pub static BOOTS: Mutex<()> = Mutex::new(());

pub fn boots() -> std::sync::MutexGuard<'static, ()> {
    BOOTS.lock().unwrap_or_else(|p| p.into_inner())
}

/// `lockstepd`, built for this test; `lockstep` next to it, built now if stale.
pub fn binaries() -> PathBuf {
    let daemon = PathBuf::from(env!("CARGO_BIN_EXE_lockstepd"));
    let dir = daemon.parent().unwrap().to_path_buf();
    static BUILT: std::sync::Once = std::sync::Once::new();
    BUILT.call_once(|| {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut cmd = Command::new(cargo);
        cmd.args(["build", "-q", "-p", "lockstep-cli", "--bin", "lockstep"]);
        if dir.ends_with("release") {
            cmd.arg("--release");
        }
        let status = cmd.status().expect("run cargo build for lockstep");
        assert!(status.success(), "building the lockstep binary failed");
    });
    assert!(
        dir.join("lockstep").is_file(),
        "no lockstep binary in {}",
        dir.display()
    );
    daemon
}

pub struct Daemon {
    pub child: Child,
    pub home: PathBuf,
    pub sock: PathBuf,
}

impl Daemon {
    pub fn start(home: &Path, extra: &[&str]) -> Daemon {
        Daemon::start_as(home, "host-a", extra)
    }

    pub fn start_as(home: &Path, host: &str, extra: &[&str]) -> Daemon {
        let daemon = binaries();
        let sock = home.join("lockstepd.sock");
        let _ = std::fs::create_dir_all(home);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(home.join("daemon.log"))
            .unwrap();
        let child = Command::new(daemon)
            .arg("--home")
            .arg(home)
            .args(["--host-name", host])
            .args(extra)
            .env_remove("LOCKSTEP_API")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        let started = Instant::now();
        while std::os::unix::net::UnixStream::connect(&sock).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "lockstepd did not come up: {}",
                std::fs::read_to_string(home.join("daemon.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Daemon {
            child,
            home: home.to_path_buf(),
            sock,
        }
    }

    pub fn api(&self) -> String {
        format!("unix:{}", self.sock.display())
    }

    pub fn client(&self, token: Option<String>) -> Client {
        Client::new(&self.api(), Some(token.unwrap_or_default())).unwrap()
    }

    pub fn login(&self, user: &str, password: &str) -> Client {
        let mut c = self.client(None);
        c.login(user, password).unwrap();
        c
    }

    pub fn admin(&self) -> Client {
        let password = std::fs::read_to_string(self.home.join("admin-password")).unwrap();
        self.login("admin", password.trim())
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// The pids of every VM process under this home.
    pub fn vm_pids(&self) -> Vec<u32> {
        let mut pids = Vec::new();
        for p in std::fs::read_dir(self.home.join("projects"))
            .into_iter()
            .flatten()
            .flatten()
        {
            let home = vmm::Home::at(p.path());
            if let Ok((vms, _)) = home.list() {
                for v in vms {
                    if let vmm::RunState::Running { pid, .. } = v.state {
                        pids.push(pid);
                    }
                }
            }
        }
        pids
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.kill();
        // VM processes outlive their daemon on purpose; not the test's.
        for pid in self.vm_pids() {
            let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
        }
    }
}

pub fn status(r: Result<Value, ClientError>) -> u16 {
    match r {
        Ok(_) => 200,
        Err(ClientError::Api { status, .. }) => status,
        Err(e) => panic!("not an API answer: {e}"),
    }
}

pub fn message(r: Result<Value, ClientError>) -> String {
    match r {
        Err(ClientError::Api { message, .. }) => message,
        other => panic!("expected an API error, got {other:?}"),
    }
}

/// Read the console WebSocket until `want` appears (typing `input` first).
pub fn console_until(c: &Client, vm: &str, input: &str, want: &str, timeout: Duration) -> String {
    let mut ws = c.console(vm).unwrap();
    ws.get_mut()
        .set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let started = Instant::now();
    let mut seen = String::new();
    let mut typed = Instant::now() - Duration::from_secs(10);
    loop {
        if !input.is_empty() && typed.elapsed() > Duration::from_secs(3) {
            ws.send(tungstenite::Message::Binary(
                input.as_bytes().to_vec().into(),
            ))
            .unwrap();
            typed = Instant::now();
        }
        match ws.read() {
            Ok(tungstenite::Message::Binary(b)) => seen.push_str(&String::from_utf8_lossy(&b)),
            Ok(_) => {}
            Err(tungstenite::Error::Io(e))
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(e) => panic!("console: {e}; seen so far: {seen}"),
        }
        if seen.contains(want) {
            return seen;
        }
        assert!(
            started.elapsed() < timeout,
            "no {want:?} on VM {vm}'s console in {timeout:?}; seen: {seen}"
        );
    }
}

pub fn wait_for(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let started = Instant::now();
    while !f() {
        assert!(
            started.elapsed() < timeout,
            "{what}: not within {timeout:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}
