//! The two locks of a bundle: `lock`, held by a command while it changes
//! the bundle, and `run.lock`, held by the VM's process while it runs (its
//! pid and start time in `run.pid`).

use crate::error::{io_at, Result, VmmError};
use rustix::fs::{flock, FlockOperation};
use std::fs::{File, OpenOptions};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

pub(crate) const COMMAND_LOCK: &str = "lock";
pub(crate) const RUN_LOCK: &str = "run.lock";
pub(crate) const RUN_PID: &str = "run.pid";

fn open_lock_file(path: &Path) -> Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
        .open(path)
        .map_err(io_at(path))
}

/// Try to take `path`'s lock (a 0600 file, never through a link);
/// `Ok(None)` if someone holds it.
pub fn try_lock(path: &Path, exclusive: bool) -> Result<Option<File>> {
    let file = open_lock_file(path)?;
    let op = if exclusive {
        FlockOperation::NonBlockingLockExclusive
    } else {
        FlockOperation::NonBlockingLockShared
    };
    match flock(&file, op) {
        Ok(()) => Ok(Some(file)),
        Err(rustix::io::Errno::WOULDBLOCK) => Ok(None),
        Err(e) => Err(VmmError::Io {
            path: path.to_path_buf(),
            source: e.into(),
        }),
    }
}

/// How long a command waits for another on the same VM to finish.
pub const COMMAND_LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// The command lock of the bundle in `dir`, waiting up to `wait` for a
/// command holding it (commands are short: a VM starting holds it only
/// until its process is recorded).
pub(crate) fn command_lock(dir: &Path, name: &str, wait: std::time::Duration) -> Result<File> {
    let started = std::time::Instant::now();
    loop {
        if let Some(file) = try_lock(&dir.join(COMMAND_LOCK), true)? {
            return Ok(file);
        }
        if started.elapsed() >= wait {
            return Err(VmmError::Busy {
                name: name.to_string(),
            });
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}

/// Whether the VM in `dir` runs, and since when, by its process's lock.
pub(crate) fn running(dir: &Path) -> Result<Option<(u32, u64)>> {
    if try_lock(&dir.join(RUN_LOCK), false)?.is_some() {
        return Ok(None);
    }
    // Held: the pid file is written right after the lock is taken; a
    // reader racing that sees pid 0.
    let text = std::fs::read_to_string(dir.join(RUN_PID)).unwrap_or_default();
    let mut words = text.split_whitespace();
    let pid = words.next().and_then(|w| w.parse().ok()).unwrap_or(0);
    let since = words.next().and_then(|w| w.parse().ok()).unwrap_or(0);
    Ok(Some((pid, since)))
}

/// The run lock, held: by the VM's process for its lifetime (see
/// [`crate::Vm::start`]), or by an offline operation for its duration.
#[derive(Debug)]
pub struct RunGuard {
    _file: File,
    pid_file: Option<PathBuf>,
}

impl RunGuard {
    /// Take the run lock of the bundle in `dir`, or say who holds it.
    pub(crate) fn take(dir: &Path, name: &str, what: &'static str) -> Result<RunGuard> {
        match try_lock(&dir.join(RUN_LOCK), true)? {
            Some(file) => Ok(RunGuard {
                _file: file,
                pid_file: None,
            }),
            None => {
                let pid = running(dir)?.map(|(pid, _)| pid).unwrap_or(0);
                Err(VmmError::Running {
                    name: name.to_string(),
                    pid,
                    what,
                })
            }
        }
    }

    /// Record this process as the VM's (removed again when dropped).
    pub(crate) fn publish(&mut self, dir: &Path) -> Result<()> {
        let path = dir.join(RUN_PID);
        let text = format!("{} {}\n", std::process::id(), crate::now());
        crate::durable::replace_file(&path, text.as_bytes()).map_err(io_at(&path))?;
        self.pid_file = Some(path);
        Ok(())
    }
}

impl Drop for RunGuard {
    fn drop(&mut self) {
        if let Some(path) = &self.pid_file {
            let _ = std::fs::remove_file(path);
        }
    }
}
