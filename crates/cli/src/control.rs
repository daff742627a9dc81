//! A running VM's control socket: a Unix stream socket (mode 0600 in a
//! 0700 directory: only its user can talk to it) that takes one command
//! line per connection and answers with lines of text, the last `ok` (or
//! `ok: DETAIL`) or `error: WHY`.
//!
//! Commands: `status` (a primary's or backup's FT state) and, on a
//! primary, `add-backup ADDR` (progress lines, then the result).

use crate::ft::{describe_status, describe_sync, describe_update, BackupStatus};
use ::ft::FtPrimary;
use std::error::Error;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Longest command line accepted.
const MAX_COMMAND: u64 = 4096;

enum Target {
    Primary(FtPrimary),
    Backup(BackupStatus),
}

/// Serves a control socket until dropped (then removes it).
pub struct ControlServer {
    path: PathBuf,
    stop: Arc<AtomicBool>,
}

impl ControlServer {
    pub fn start(path: &Path, primary: FtPrimary) -> Result<Self, Box<dyn Error>> {
        Self::start_with(path, Target::Primary(primary))
    }

    pub fn start_backup(path: &Path, status: BackupStatus) -> Result<Self, Box<dyn Error>> {
        Self::start_with(path, Target::Backup(status))
    }

    fn start_with(path: &Path, target: Target) -> Result<Self, Box<dyn Error>> {
        let listener = bind(path)?;
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = Arc::clone(&stop);
        let target = Arc::new(target);
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if stopping.load(Ordering::Acquire) {
                    return;
                }
                if let Ok(conn) = conn {
                    let target = Arc::clone(&target);
                    std::thread::spawn(move || serve(conn, &target));
                }
            }
        });
        Ok(ControlServer {
            path: path.to_path_buf(),
            stop,
        })
    }
}

impl Drop for ControlServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        // Wake the accepting thread so it sees the stop.
        let _ = UnixStream::connect(&self.path);
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Bind `path`, replacing a stale socket but never a live one.
fn bind(path: &Path) -> Result<UnixListener, Box<dyn Error>> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    }
    if path.exists() {
        if UnixStream::connect(path).is_ok() {
            return Err(format!(
                "another VM answers on the control socket {} (give this one another --name or --control)",
                path.display()
            )
            .into());
        }
        std::fs::remove_file(path).map_err(|e| {
            format!(
                "cannot remove the stale control socket {}: {e}",
                path.display()
            )
        })?;
    }
    let listener = UnixListener::bind(path)
        .map_err(|e| format!("cannot create the control socket {}: {e}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| format!("cannot restrict the control socket {}: {e}", path.display()))?;
    Ok(listener)
}

fn serve(conn: UnixStream, target: &Target) {
    let _ = conn.set_read_timeout(Some(Duration::from_secs(10)));
    let Ok(mut out) = conn.try_clone() else {
        return;
    };
    let mut line = String::new();
    let read = BufReader::new(conn.take(MAX_COMMAND)).read_line(&mut line);
    let answer = match read {
        Ok(_) => execute(line.trim(), target, &mut out),
        Err(e) => Err(format!("cannot read the command: {e}")),
    };
    let last = match answer {
        Ok(detail) if detail.is_empty() => "ok".to_string(),
        Ok(detail) => format!("ok: {detail}"),
        Err(why) => format!("error: {why}"),
    };
    let _ = writeln!(out, "{last}");
}

fn execute(command: &str, target: &Target, out: &mut UnixStream) -> Result<String, String> {
    let mut words = command.split_whitespace();
    match (words.next(), words.next(), words.next(), target) {
        (Some("status"), None, _, Target::Primary(p)) => {
            let _ = writeln!(out, "{}", describe_status(&p.status()));
            Ok(String::new())
        }
        (Some("status"), None, _, Target::Backup(b)) => {
            let _ = writeln!(out, "{}", b.describe());
            Ok(String::new())
        }
        (Some("add-backup"), Some(addr), None, Target::Primary(p)) => {
            let report = p
                .add_backup(addr, &mut |update| {
                    if let Some(line) = describe_update(update) {
                        let _ = writeln!(out, "{line}");
                    }
                })
                .map_err(|e| e.to_string())?;
            Ok(format!(
                "protected by the backup at {addr} ({})",
                describe_sync(&report)
            ))
        }
        (Some("add-backup"), _, _, Target::Backup(_)) => {
            Err("this VM is a backup; add backups to its primary".into())
        }
        _ => Err(format!(
            "unknown command {command:?} (expected: status, add-backup ADDR)"
        )),
    }
}

/// Send `command` to the VM at `path`; print its answer.
pub fn request(path: &Path, command: &str) -> Result<ExitCode, Box<dyn Error>> {
    let mut conn = UnixStream::connect(path).map_err(|e| {
        format!(
            "cannot reach the VM's control socket {}: {e} (is it running with --arbiter? see --control and --name)",
            path.display()
        )
    })?;
    writeln!(conn, "{command}")?;
    let mut last = String::new();
    for line in BufReader::new(conn).lines() {
        let line = line?;
        if !last.is_empty() {
            println!("{last}");
        }
        last = line;
    }
    if let Some(why) = last.strip_prefix("error: ") {
        return Err(why.to_string().into());
    }
    match last.strip_prefix("ok") {
        Some(detail) => {
            let detail = detail.trim_start_matches(": ");
            if !detail.is_empty() {
                println!("{detail}");
            }
            Ok(ExitCode::SUCCESS)
        }
        None => Err(format!(
            "the VM closed its control socket without an answer (last line {last:?})"
        )
        .into()),
    }
}
