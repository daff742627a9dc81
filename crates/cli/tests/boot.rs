//! Boots the pulled Debian image (kernel, OpenSBI, busybox initramfs) under
//! `lockstep run` and drives its console like a user: `uname -m`, the hart
//! count from /proc/cpuinfo, then `poweroff -f`. Run with `--release`: the
//! guest executes a few billion instructions.

use std::io::{Read, Write};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::time::{Duration, Instant};

const TIMEOUT: Duration = Duration::from_secs(600);
const PROMPT: &str = "/ # ";

/// A guest whose console we read as a byte stream (the shell prompt has no
/// newline) and type into.
struct Guest {
    child: Child,
    chunks: Receiver<Vec<u8>>,
    console: String,
    /// Everything before this offset has been matched already.
    seen: usize,
}

impl Guest {
    fn boot(cpus: u32) -> Guest {
        let mut child = Command::new(env!("CARGO_BIN_EXE_lockstep"))
            .args(["run", "--cpus", &cpus.to_string(), "--memory", "512M"])
            .args(["--append", "console=ttyS0 quiet", "--console", "stdio"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start lockstep run");
        let mut stdout = child.stdout.take().expect("piped stdout");
        let (tx, chunks) = mpsc::channel();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = stdout.read(&mut buf) {
                if n == 0 || tx.send(buf[..n].to_vec()).is_err() {
                    break;
                }
            }
        });
        Guest {
            child,
            chunks,
            console: String::new(),
            seen: 0,
        }
    }

    /// Wait until `needle` appears after what was already matched; returns
    /// the console text between the previous match and this one.
    fn expect(&mut self, needle: &str) -> String {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            if let Some(pos) = self.console[self.seen..].find(needle) {
                let start = self.seen;
                self.seen += pos + needle.len();
                return self.console[start..start + pos].to_string();
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match self.chunks.recv_timeout(left) {
                Ok(bytes) => self.console.push_str(&String::from_utf8_lossy(&bytes)),
                Err(_) => {
                    let _ = self.child.kill();
                    panic!(
                        "timed out waiting for {needle:?}; console:\n{}",
                        self.console
                    );
                }
            }
        }
    }

    fn send(&mut self, line: &str) {
        let stdin = self.child.stdin.as_mut().expect("piped stdin");
        stdin
            .write_all(format!("{line}\n").as_bytes())
            .expect("type into the guest console");
        stdin.flush().expect("flush the guest console");
    }

    /// Type a command at the prompt and return its output (without the echo).
    fn run(&mut self, cmd: &str) -> String {
        self.send(cmd);
        self.expect(cmd);
        self.expect(PROMPT).trim().to_string()
    }
}

fn boot_and_check(cpus: u32) {
    let mut g = Guest::boot(cpus);
    g.expect("lockstep guest ready");
    g.expect(PROMPT);
    assert_eq!(g.run("uname -m"), "riscv64");
    let harts = g.run("grep -c processor /proc/cpuinfo");
    assert_eq!(
        harts,
        cpus.to_string(),
        "guest sees the wrong number of harts"
    );
    g.send("poweroff -f");
    let status = g.child.wait().expect("wait for lockstep");
    assert!(
        status.success(),
        "lockstep run ended with {status} after poweroff; console:\n{}",
        g.console
    );
}

#[test]
fn boots_debian_to_a_shell_on_one_hart() {
    boot_and_check(1);
}

#[test]
fn boots_debian_to_a_shell_on_two_harts() {
    boot_and_check(2);
}
