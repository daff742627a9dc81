//! A VM on disk and its lifecycle (DESIGN §6): a *bundle* directory
//! `$LOCKSTEP_HOME/vms/NAME/` holding `vm.toml` (configuration and the
//! snapshot tree), `disks/` (qcow2 layer chains, readable by `qemu-img`)
//! and `console.log`.
//!
//! Every change to a bundle is crash-safe: new files are written and
//! synced first, then `vm.toml` is replaced by one rename (the one
//! pointer), then files no longer referenced are removed. A command that
//! finds leftovers of an interrupted one (layer files `vm.toml` does not
//! name, half-built bundles) removes them and says so ([`Vm::notes`]).
//! Commands on one VM are serialised by a lock file; a running VM's
//! process holds a second lock for its lifetime, so offline operations
//! refuse a running VM with its pid.
//!
//! The CLI (`lockstep vm …`, `lockstep snapshot …`) is a thin client of
//! this crate; the daemon will be another.

pub mod api;
mod config;
mod console;
pub mod control;
mod durable;
mod error;
mod home;
mod lock;
mod running;
pub mod session;
mod vm;

pub use config::{
    check_name, layer_name, Boot, Current, DiskConfig, FtSettings, LinkedTo, Mac, NicConfig,
    PowerState, Snapshot, VmConfig, FORMAT, MAX_CONFIG_BYTES, MAX_DESCRIPTION, MAX_MEMORY,
    MAX_NAME_LEN,
};
pub use console::{ConsoleLog, MAX_CONSOLE_LOG};
pub use control::{VmCommand, VmReply, CONTROL_SOCKET};
pub use durable::{rename_noreplace, replace_file, sync_dir};
pub use error::{ConfigError, MacError, Result, VmmError};
pub use home::{CloneFrom, CreateSpec, DiskSource, Home, RunState, VmSummary};
pub use lock::{try_lock, RunGuard, COMMAND_LOCK_WAIT};
pub use session::{Lifecycle, Outcome, Session, VmState};
pub use vm::{PendingSnapshot, Vm, CONSOLE_LOG, VM_LOG};

/// A running VM's console socket in its bundle (`lockstep vm console`, the API's WebSocket).
pub const CONSOLE_SOCKET: &str = "console.sock";

/// The kernel command line a VM gets unless it is given one.
pub const DEFAULT_APPEND: &str = "console=ttyS0 earlycon=sbi";

/// Progress of a long operation: what, bytes done, bytes in all.
pub type Progress<'a> = &'a mut dyn FnMut(&str, u64, u64);

/// Fill `buf` from the host's entropy source.
pub fn random_bytes(buf: &mut [u8]) -> Result<()> {
    use std::io::Read;
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(buf))
        .map_err(VmmError::Entropy)
}

/// A fresh generation id.
pub fn new_vmgenid() -> Result<[u8; 16]> {
    let mut id = [0u8; 16];
    random_bytes(&mut id)?;
    Ok(id)
}

/// Seconds since the Unix epoch.
pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// A Unix time as `2026-12-06 22:53:54 UTC`.
pub fn format_time(secs: u64) -> String {
    let format =
        time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]:[second] UTC");
    i64::try_from(secs)
        .ok()
        .and_then(|s| time::OffsetDateTime::from_unix_timestamp(s).ok())
        .and_then(|t| t.format(&format).ok())
        .unwrap_or_else(|| format!("@{secs}"))
}
