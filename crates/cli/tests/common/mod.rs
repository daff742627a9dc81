//! Shared by the boot tests: a `lockstep run` guest whose serial console
//! we read as a byte stream (the shell prompt has no newline) and type into.
// Each test binary uses a different part of the harness.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::time::{Duration, Instant};

pub const TIMEOUT: Duration = Duration::from_secs(600);
pub const PROMPT: &str = "/ # ";

/// `lockstep ARGS` with `$LOCKSTEP_HOME` at `home`.
pub fn lockstep_in(home: &std::path::Path, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_lockstep"))
        .env("LOCKSTEP_HOME", home)
        .args(args)
        .output()
        .expect("run lockstep")
}

/// `lockstep ARGS` with `$LOCKSTEP_HOME` at `home`, which must succeed;
/// its stdout.
pub fn ok_in(home: &std::path::Path, args: &[&str]) -> String {
    let out = lockstep_in(home, args);
    assert!(
        out.status.success(),
        "lockstep {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A booted guest; `boot` adds `extra` flags to `lockstep run`.
pub struct Guest {
    pub child: Child,
    chunks: Receiver<Vec<u8>>,
    /// lockstep's own messages (also echoed to the test's stderr).
    stderr_lines: Receiver<String>,
    pub console: String,
    /// Everything before this offset has been matched already.
    seen: usize,
}

impl Guest {
    pub fn boot(extra: &[&str]) -> Guest {
        Self::boot_with(&[], "", extra)
    }

    /// Boot with `lockstep run` started through `prefix` (e.g. `ip netns
    /// exec NS`), `append` added to the kernel command line.
    pub fn boot_with(prefix: &[&str], append: &str, extra: &[&str]) -> Guest {
        let append = format!("console=ttyS0 quiet {append}");
        let mut args = vec!["run", "--memory", "512M", "--console", "stdio"];
        args.extend_from_slice(&["--append", &append]);
        args.extend_from_slice(extra);
        Self::launch(prefix, &args)
    }

    /// Start `lockstep` with exactly `args` (through `prefix`).
    pub fn launch(prefix: &[&str], args: &[&str]) -> Guest {
        Self::launch_env(prefix, args, &[])
    }

    /// As [`Guest::launch`], with environment variables set for lockstep.
    pub fn launch_env(prefix: &[&str], args: &[&str], env: &[(&str, &std::path::Path)]) -> Guest {
        let lockstep = env!("CARGO_BIN_EXE_lockstep");
        let mut command = match prefix.split_first() {
            Some((program, rest)) => {
                let mut c = Command::new(program);
                c.args(rest).arg(lockstep);
                c
            }
            None => Command::new(lockstep),
        };
        for (key, value) in env {
            command.env(key, value);
        }
        let mut child = command
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start lockstep");
        let stderr = child.stderr.take().expect("piped stderr");
        let (err_tx, stderr_lines) = mpsc::channel();
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                eprintln!("{line}");
                if err_tx.send(line).is_err() {
                    break;
                }
            }
        });
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
            stderr_lines,
            console: String::new(),
            seen: 0,
        }
    }

    /// Wait until `needle` appears after what was already matched; returns
    /// the console text between the previous match and this one.
    pub fn expect(&mut self, needle: &str) -> String {
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

    /// Wait for a line from lockstep itself (not the guest) containing
    /// `needle`; returns it.
    pub fn expect_stderr(&mut self, needle: &str) -> String {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.stderr_lines.recv_timeout(left) {
                Ok(line) if line.contains(needle) => return line,
                Ok(_) => {}
                Err(_) => {
                    let _ = self.child.kill();
                    panic!("no {needle:?} from lockstep; console:\n{}", self.console);
                }
            }
        }
    }

    /// lockstep's messages not yet matched, up to its exit.
    #[allow(dead_code)]
    pub fn stderr_to_end(&mut self) -> Vec<String> {
        let mut lines = Vec::new();
        while let Ok(line) = self.stderr_lines.recv_timeout(TIMEOUT) {
            lines.push(line);
        }
        lines
    }

    /// Everything the console printed until lockstep closed its stdout
    /// (it exited or was killed).
    pub fn read_to_end(&mut self) -> &str {
        while let Ok(bytes) = self.chunks.recv_timeout(TIMEOUT) {
            self.console.push_str(&String::from_utf8_lossy(&bytes));
        }
        &self.console
    }

    pub fn send(&mut self, line: &str) {
        let stdin = self.child.stdin.as_mut().expect("piped stdin");
        stdin
            .write_all(format!("{line}\n").as_bytes())
            .expect("type into the guest console");
        stdin.flush().expect("flush the guest console");
    }

    /// Type a command at the prompt and return its output (without the echo).
    pub fn run(&mut self, cmd: &str) -> String {
        self.send(cmd);
        self.expect(cmd);
        self.expect(PROMPT).trim().to_string()
    }
}

/// A failed test must not leave its VM running.
impl Drop for Guest {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
