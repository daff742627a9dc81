//! A running VM's control socket: a Unix stream socket (mode 0600 in a
//! 0700 directory: only its user can talk to it) that takes one command
//! line per connection and answers with lines of text, the last `ok` (or
//! `ok: DETAIL`) or `error: WHY`.
//!
//! Commands: `status` (a primary's or backup's FT state) and, on a
//! primary, `add-backup ADDR` and `migrate ADDR` (progress lines, then
//! the result) and `cancel-migration`.

use crate::ft::{describe_status, describe_sync, describe_update, BackupStatus};
use ::ft::FtPrimary;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// What goes wrong with a control socket, on either end; the serving
/// side answers `error: ` and the message.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("cannot create {}: {source}", dir.display())]
    CreateDir {
        dir: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot inspect {}: {source}", path.display())]
    Inspect {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{} is a {kind}, not a directory; refusing to put a control socket there", dir.display())]
    NotDirectory { dir: PathBuf, kind: &'static str },
    #[error("{} belongs to uid {owner}, not to this user (uid {uid}); refusing to put a control socket there", dir.display())]
    NotOwner { dir: PathBuf, owner: u32, uid: u32 },
    /// `default`: the default directory, which must be exactly 0700.
    #[error("{} has mode {mode:o}; a control socket's directory must be {} (chmod 700 it)", dir.display(), if *default { "0700" } else { "writable by its owner only" })]
    OpenMode {
        dir: PathBuf,
        mode: u32,
        default: bool,
    },
    #[error("{} exists and is not a socket (a {kind}); refusing to replace it", path.display())]
    NotSocket { path: PathBuf, kind: &'static str },
    #[error("another VM answers on the control socket {} (give this one another --name or --ft-control)", path.display())]
    InUse { path: PathBuf },
    #[error("cannot remove the stale control socket {}: {source}", path.display())]
    RemoveStale {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot create the control socket {}: {source}", path.display())]
    Bind {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot restrict the control socket {}: {source}", path.display())]
    Restrict {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot read the command: {0}")]
    ReadCommand(#[source] std::io::Error),
    #[error("{0}")]
    Json(#[source] serde_json::Error),
    #[error("{0}")]
    Ft(#[source] ::ft::FtError),
    #[error("{0}")]
    Cancel(#[source] ::ft::MigrationError),
    #[error("this VM is a backup; add backups to its primary")]
    BackupCannotAdd,
    #[error("this VM is a backup; migrate its primary")]
    BackupCannotMigrate,
    #[error("cannot reach the VM's control socket {}: {source} (is it running with --ft-arbiter or --ft-control? see --control and --name)", path.display())]
    Connect {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Talk(#[from] std::io::Error),
    /// The VM's answer was `error: `; `why` is its words.
    #[error("{why}")]
    Refused { why: String },
    #[error("the VM closed its control socket without an answer (last line {last:?})")]
    NoAnswer { last: String },
    #[error("unknown command {command:?} (expected: status, status-json, add-backup ADDR, migrate ADDR, cancel-migration)")]
    UnknownCommand { command: String },
}

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
    pub fn start(path: &Path, primary: FtPrimary) -> Result<Self, ControlError> {
        Self::start_with(path, Target::Primary(primary))
    }

    pub fn start_backup(path: &Path, status: BackupStatus) -> Result<Self, ControlError> {
        Self::start_with(path, Target::Backup(status))
    }

    fn start_with(path: &Path, target: Target) -> Result<Self, ControlError> {
        let listener = bind(path)?;
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = Arc::clone(&stop);
        let target = Arc::new(target);
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if stopping.load(Ordering::Acquire) {
                    return;
                }
                if let Ok(mut conn) = conn {
                    if let Err(why) = vmm::control::check_peer(&conn) {
                        let _ = writeln!(conn, "error: {why}");
                        continue;
                    }
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

/// Bind `path`, replacing a stale socket but never a live one. Its
/// directory is made 0700 if new, and refused if it is anything but a
/// directory of this user's that nobody else can enter (a socket in a
/// directory another user controls could be swapped under us); a symbolic
/// link or another kind of file at `path` is refused, not followed.
fn bind(path: &Path) -> Result<UnixListener, ControlError> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|source| ControlError::CreateDir {
                dir: dir.to_path_buf(),
                source,
            })?;
        check_private_dir(dir, dir == crate::ft::default_control_dir())?;
    }
    match std::fs::symlink_metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(source) => {
            return Err(ControlError::Inspect {
                path: path.to_path_buf(),
                source,
            })
        }
        Ok(meta) if !meta.file_type().is_socket() => {
            return Err(ControlError::NotSocket {
                path: path.to_path_buf(),
                kind: describe_type(&meta),
            })
        }
        Ok(_) => {
            if UnixStream::connect(path).is_ok() {
                return Err(ControlError::InUse {
                    path: path.to_path_buf(),
                });
            }
            std::fs::remove_file(path).map_err(|source| ControlError::RemoveStale {
                path: path.to_path_buf(),
                source,
            })?;
        }
    }
    let listener = UnixListener::bind(path).map_err(|source| ControlError::Bind {
        path: path.to_path_buf(),
        source,
    })?;
    // In a directory only this user can enter, nobody can swap the socket
    // for a link between the bind and this chmod.
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(|source| {
        ControlError::Restrict {
            path: path.to_path_buf(),
            source,
        }
    })?;
    Ok(listener)
}

/// `dir` must be a real directory (not a link) owned by this user that no
/// one else can write; the default directory (shared `/tmp`'s fallback)
/// must be exactly 0700, as this side makes it.
pub fn check_private_dir(dir: &Path, default: bool) -> Result<(), ControlError> {
    let meta = std::fs::symlink_metadata(dir).map_err(|source| ControlError::Inspect {
        path: dir.to_path_buf(),
        source,
    })?;
    let uid = rustix::process::getuid().as_raw();
    if !meta.is_dir() {
        return Err(ControlError::NotDirectory {
            dir: dir.to_path_buf(),
            kind: describe_type(&meta),
        });
    }
    if meta.uid() != uid {
        return Err(ControlError::NotOwner {
            dir: dir.to_path_buf(),
            owner: meta.uid(),
            uid,
        });
    }
    let others = if default { 0o077 } else { 0o022 };
    if meta.mode() & others != 0 {
        return Err(ControlError::OpenMode {
            dir: dir.to_path_buf(),
            mode: meta.mode() & 0o7777,
            default,
        });
    }
    Ok(())
}

fn describe_type(meta: &std::fs::Metadata) -> &'static str {
    let t = meta.file_type();
    if t.is_symlink() {
        "symbolic link"
    } else if t.is_dir() {
        "directory"
    } else if t.is_file() {
        "regular file"
    } else {
        "special file"
    }
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
        Err(e) => Err(ControlError::ReadCommand(e)),
    };
    let last = match answer {
        Ok(detail) if detail.is_empty() => "ok".to_string(),
        Ok(detail) => format!("ok: {detail}"),
        Err(why) => format!("error: {why}"),
    };
    let _ = writeln!(out, "{last}");
}

fn execute(command: &str, target: &Target, out: &mut UnixStream) -> Result<String, ControlError> {
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
        (Some("status-json"), None, _, target) => {
            let doc = match target {
                Target::Primary(p) => crate::ft::status_doc(&p.status()),
                Target::Backup(b) => b.doc(),
            };
            let json = serde_json::to_string(&doc).map_err(ControlError::Json)?;
            let _ = writeln!(out, "{json}");
            Ok(String::new())
        }
        (Some("add-backup"), Some(addr), None, Target::Primary(p)) => {
            let report = p
                .add_backup(addr, &mut |update| {
                    if let Some(line) = describe_update(update) {
                        let _ = writeln!(out, "{line}");
                    }
                })
                .map_err(ControlError::Ft)?;
            Ok(format!(
                "protected by the backup at {addr} ({})",
                describe_sync(&report)
            ))
        }
        (Some("add-backup"), _, _, Target::Backup(_)) => Err(ControlError::BackupCannotAdd),
        (Some("migrate"), Some(addr), None, Target::Primary(p)) => {
            let _ = writeln!(out, "sending the VM to {addr}");
            let report = p
                .migrate(addr, &mut |update| {
                    if let Some(line) = describe_update(update) {
                        let _ = writeln!(out, "{line}");
                    }
                })
                .map_err(ControlError::Ft)?;
            Ok(format!(
                "migrated to {addr}: {}; the target caught up in {} ms; guest paused {:.1} ms at the hand-over (icount {}); {} ms in all",
                describe_sync(&report.sync),
                report.catch_up.as_millis(),
                report.handoff_pause.as_secs_f64() * 1e3,
                report.icount,
                report.total.as_millis()
            ))
        }
        (Some("cancel-migration"), None, _, Target::Primary(p)) => {
            p.cancel_migration().map_err(ControlError::Cancel)?;
            Ok("cancelled: the VM runs on here".into())
        }
        (Some("migrate" | "cancel-migration"), _, _, Target::Backup(_)) => {
            Err(ControlError::BackupCannotMigrate)
        }
        _ => Err(ControlError::UnknownCommand {
            command: command.to_string(),
        }),
    }
}

/// Send `command` to the VM at `path`; print its answer.
pub fn request(path: &Path, command: &str) -> Result<ExitCode, ControlError> {
    let mut conn = UnixStream::connect(path).map_err(|source| ControlError::Connect {
        path: path.to_path_buf(),
        source,
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
        return Err(ControlError::Refused {
            why: why.to_string(),
        });
    }
    match last.strip_prefix("ok") {
        Some(detail) => {
            let detail = detail.trim_start_matches(": ");
            if !detail.is_empty() {
                println!("{detail}");
            }
            Ok(ExitCode::SUCCESS)
        }
        None => Err(ControlError::NoAnswer { last }),
    }
}

#[cfg(test)]
mod tests {
    use super::check_private_dir;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn control_directories() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let mode = |m| std::fs::set_permissions(d, std::fs::Permissions::from_mode(m)).unwrap();
        mode(0o700);
        assert!(check_private_dir(d, true).is_ok());
        mode(0o755);
        assert!(check_private_dir(d, false).is_ok());
        assert!(check_private_dir(d, true)
            .unwrap_err()
            .to_string()
            .contains("has mode 755"));
        mode(0o777);
        assert!(check_private_dir(d, false)
            .unwrap_err()
            .to_string()
            .contains("has mode 777"));
        let link = d.join("link");
        std::os::unix::fs::symlink(d, &link).unwrap();
        assert!(check_private_dir(&link, false)
            .unwrap_err()
            .to_string()
            .contains("symbolic link"));
    }
}
