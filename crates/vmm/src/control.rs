//! Commanding a running VM's process: one typed command enum
//! ([`VmCommand`]) that the CLI sends over the bundle's control socket
//! (`control.sock`, 0600 inside the 0700 bundle; peers checked with
//! `SO_PEERCRED`) and the daemon will send the same way. The protocol is
//! one JSON line each way per connection: the command, then its reply
//! ([`VmReply`]), which comes when the command is done (a snapshot's
//! after its state file is complete).
//!
//! The VM's process hands each command to its run loop (through
//! [`ControlServer::serve`]'s channel, waking the loop with the caller's
//! `wake`), which answers at an instruction boundary.

use serde::{Deserialize, Serialize};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver, Sender};
use std::time::Duration;

/// The control socket's file name in a bundle.
pub const CONTROL_SOCKET: &str = "control.sock";
/// A command line longer than this is refused.
pub const MAX_COMMAND_BYTES: u64 = 64 << 10;

/// What a running VM's process can be asked to do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "command", rename_all = "kebab-case", deny_unknown_fields)]
pub enum VmCommand {
    /// Where it is: icount, guest time, pid.
    Status {},
    /// Take a snapshot: memory, devices and disks at one instruction
    /// (with `disk_only`, the disks alone, as after a power loss).
    Snapshot {
        name: String,
        #[serde(default)]
        description: String,
        #[serde(default)]
        disk_only: bool,
    },
    /// Hold the guest at an instruction boundary (in memory; `vm pause`).
    Pause {},
    /// Let a paused guest run on (`vm unpause`).
    Unpause {},
    /// Save the machine into the bundle and exit (`vm suspend`).
    Suspend {},
    /// Stop running (the disks are flushed; `vm stop`).
    Stop {},
}

/// The answer to a [`VmCommand`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "reply", rename_all = "kebab-case", deny_unknown_fields)]
pub enum VmReply {
    Status {
        pid: u32,
        icount: u64,
        /// Guest time in `mtime` ticks (10 MHz).
        mtime: u64,
        /// Its [`crate::session::VmState`], as shown.
        state: String,
    },
    Snapshot {
        name: String,
        /// The instruction count it was taken at.
        icount: u64,
        /// How long the guest was paused for it, in microseconds.
        pause_us: u64,
        /// From the command's arrival to the state file's completion.
        total_ms: u64,
        /// Pre-copy rounds of RAM while the guest ran.
        rounds: u32,
        /// RAM bytes written to the state file.
        ram_bytes: u64,
    },
    /// Work in progress (a snapshot's RAM copy): bytes done of about
    /// `total`; the answer follows.
    Progress {
        what: String,
        done: u64,
        total: u64,
    },
    /// The command was taken; the process acts on it and exits.
    Accepted,
    Error {
        message: String,
    },
}

/// A command from a client, and where its answer goes.
pub struct Request {
    pub command: VmCommand,
    pub reply: Sender<VmReply>,
}

/// The listening socket (removed when dropped).
pub struct ControlServer {
    listener: UnixListener,
    path: PathBuf,
}

impl ControlServer {
    /// Listen at `path` (a stale socket there is replaced; anything else
    /// is refused).
    pub fn bind(path: &Path) -> io::Result<ControlServer> {
        Ok(ControlServer {
            listener: bind_private(path)?,
            path: path.to_path_buf(),
        })
    }

    /// Accept clients from now on: each command goes to the returned
    /// channel, after which `wake` is called so the run loop looks.
    pub fn serve(&self, wake: impl Fn() + Send + Sync + 'static) -> io::Result<Receiver<Request>> {
        let listener = self.listener.try_clone()?;
        let (tx, rx) = mpsc::channel();
        let wake = std::sync::Arc::new(wake);
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { continue };
                let (tx, wake) = (tx.clone(), wake.clone());
                std::thread::spawn(move || serve_one(conn, &tx, &*wake));
            }
        });
        Ok(rx)
    }
}

impl Drop for ControlServer {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Listen on a Unix socket at `path`, mode 0600 (a stale socket there is
/// replaced; anything else is refused): a bundle's control and console
/// sockets.
pub fn bind_private(path: &Path) -> io::Result<UnixListener> {
    if let Ok(meta) = path.symlink_metadata() {
        if !meta.file_type().is_socket() {
            return Err(io::Error::other(format!(
                "{} exists and is not a socket",
                path.display()
            )));
        }
        std::fs::remove_file(path)?;
    }
    let listener = UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    Ok(listener)
}

/// Only this user (or root) may command the VM: the peer's credentials
/// as the kernel gives them (SO_PEERCRED), not what it claims.
pub fn check_peer(conn: &UnixStream) -> Result<(), PeerError> {
    let cred = rustix::net::sockopt::socket_peercred(conn).map_err(PeerError::Credentials)?;
    let peer = cred.uid.as_raw();
    let me = rustix::process::getuid().as_raw();
    if peer == me || peer == 0 {
        Ok(())
    } else {
        Err(PeerError::Foreign { peer, owner: me })
    }
}

/// Why a peer may not command the VM.
#[derive(Debug, thiserror::Error)]
pub enum PeerError {
    #[error("cannot read the peer's credentials: {0}")]
    Credentials(#[source] rustix::io::Errno),
    #[error("uid {peer} may not control this VM (it belongs to uid {owner})")]
    Foreign { peer: u32, owner: u32 },
}

fn serve_one(conn: UnixStream, commands: &Sender<Request>, wake: &(dyn Fn() + Send + Sync)) {
    let Ok(mut out) = conn.try_clone() else {
        return;
    };
    let mut answer = |reply: &VmReply| {
        if let Ok(mut line) = serde_json::to_string(reply) {
            line.push('\n');
            let _ = out.write_all(line.as_bytes());
        }
    };
    let refuse = |message: String| VmReply::Error { message };
    if let Err(why) = check_peer(&conn) {
        return answer(&refuse(why.to_string()));
    }
    let _ = conn.set_read_timeout(Some(Duration::from_secs(10)));
    let mut line = String::new();
    let read = BufReader::new((&conn).take(MAX_COMMAND_BYTES)).read_line(&mut line);
    let command = match read {
        Ok(_) if !line.ends_with('\n') => {
            return answer(&refuse(format!(
                "a command is one JSON line of at most {MAX_COMMAND_BYTES} bytes"
            )))
        }
        Ok(_) => match serde_json::from_str::<VmCommand>(&line) {
            Ok(c) => c,
            Err(e) => return answer(&refuse(format!("not a command: {e}"))),
        },
        Err(e) => return answer(&refuse(format!("reading the command: {e}"))),
    };
    let (reply, replies) = mpsc::channel();
    if commands.send(Request { command, reply }).is_err() {
        return answer(&refuse("the VM is stopping".into()));
    }
    wake();
    loop {
        match replies.recv() {
            Ok(r @ VmReply::Progress { .. }) => answer(&r),
            Ok(r) => return answer(&r),
            Err(_) => {
                return answer(&refuse(
                    "the VM stopped before it answered (see its vm.log)".into(),
                ))
            }
        }
    }
}

/// Why a command could not be delivered.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("{path}: {source} (is the VM running?)")]
    Connect { path: PathBuf, source: io::Error },
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("{path}: the VM's answer is not valid: {reason}")]
    BadReply { path: PathBuf, reason: String },
}

/// Send `command` to the VM whose control socket is `path` and wait up to
/// `timeout` for its answer.
pub fn request(
    path: &Path,
    command: &VmCommand,
    timeout: Duration,
) -> Result<VmReply, ControlError> {
    request_with_progress(path, command, timeout, &mut |_, _, _| {})
}

/// [`request`], with what the VM reports of its progress meanwhile
/// (`progress(what, done, total)`); `timeout` applies between messages.
pub fn request_with_progress(
    path: &Path,
    command: &VmCommand,
    timeout: Duration,
    progress: &mut dyn FnMut(&str, u64, u64),
) -> Result<VmReply, ControlError> {
    let io = |source| ControlError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut conn = UnixStream::connect(path).map_err(|source| ControlError::Connect {
        path: path.to_path_buf(),
        source,
    })?;
    conn.set_read_timeout(Some(timeout)).map_err(io)?;
    let mut line = serde_json::to_string(command).map_err(|e| ControlError::BadReply {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    line.push('\n');
    conn.write_all(line.as_bytes()).map_err(io)?;
    let mut reader = BufReader::new(&conn);
    loop {
        let mut answer = String::new();
        (&mut reader)
            .take(MAX_COMMAND_BYTES)
            .read_line(&mut answer)
            .map_err(io)?;
        let reply = serde_json::from_str(&answer).map_err(|e| ControlError::BadReply {
            path: path.to_path_buf(),
            reason: if answer.is_empty() {
                "the connection closed without one".into()
            } else {
                e.to_string()
            },
        })?;
        match reply {
            VmReply::Progress { what, done, total } => progress(&what, done, total),
            reply => return Ok(reply),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_are_one_json_line_each_and_strict() {
        let c = VmCommand::Snapshot {
            name: "s1".into(),
            description: String::new(),
            disk_only: false,
        };
        let text = serde_json::to_string(&c).unwrap();
        assert_eq!(
            text,
            r#"{"command":"snapshot","name":"s1","description":"","disk_only":false}"#
        );
        assert_eq!(serde_json::from_str::<VmCommand>(&text).unwrap(), c);
        let short: VmCommand =
            serde_json::from_str(r#"{"command":"snapshot","name":"s"}"#).unwrap();
        assert!(matches!(
            short,
            VmCommand::Snapshot {
                disk_only: false,
                ..
            }
        ));
        assert!(serde_json::from_str::<VmCommand>(r#"{"command":"status","x":1}"#).is_err());
        assert!(serde_json::from_str::<VmCommand>(r#"{"command":"format-disk"}"#).is_err());
    }

    #[test]
    fn a_served_socket_answers_and_refuses_garbage() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(CONTROL_SOCKET);
        let server = ControlServer::bind(&path).unwrap();
        let requests = server.serve(|| {}).unwrap();
        std::thread::spawn(move || {
            for r in requests {
                let _ = r.reply.send(VmReply::Status {
                    pid: 1,
                    icount: 42,
                    mtime: 2,
                    state: "running".into(),
                });
            }
        });
        let reply = request(&path, &VmCommand::Status {}, Duration::from_secs(5)).unwrap();
        assert_eq!(
            reply,
            VmReply::Status {
                pid: 1,
                icount: 42,
                mtime: 2,
                state: "running".into(),
            }
        );
        let mut raw = UnixStream::connect(&path).unwrap();
        raw.write_all(b"{\"command\":\"reboot-host\"}\n").unwrap();
        let mut answer = String::new();
        BufReader::new(&raw).read_line(&mut answer).unwrap();
        assert!(answer.contains("not a command"), "{answer}");
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        drop(server);
        assert!(!path.exists());
    }
}
