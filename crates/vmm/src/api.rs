//! The JSON documents `--json` prints, and the REST API will serve: one
//! schema, versioned as a whole by [`SCHEMA`]. Every document is an object
//! with `"schema": SCHEMA` first; a client checks it and refuses a newer
//! one. Within a version fields are only ever added (readers ignore what
//! they don't know); a field removed or changed in meaning bumps the
//! version.
//!
//! The types here are the wire format: plain data, `Serialize` and
//! `Deserialize`, owned, with no live objects behind them.

use crate::{RunState, Snapshot, VmConfig, VmSummary};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// The schema's version.
pub const SCHEMA: u32 = 1;

/// `lockstep vm list --json`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VmList {
    pub schema: u32,
    pub vms: Vec<VmSummary>,
}

/// `lockstep vm show NAME --json`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VmView {
    pub schema: u32,
    /// Whether its process runs (with its pid and start time).
    pub state: RunState,
    /// What a running VM's process says of itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub live: Option<LiveState>,
    /// The bundle directory.
    pub dir: PathBuf,
    /// The bundle's `vm.toml`, as it reads.
    pub config: VmConfig,
}

/// A running VM's own account: its lifecycle state (`running`, `paused`,
/// `snapshotting`, …) and where it is in its instruction stream.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LiveState {
    pub state: String,
    pub icount: u64,
}

/// `lockstep snapshot list VM --json`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotList {
    pub schema: u32,
    pub vm: String,
    pub snapshots: Vec<SnapshotView>,
}

/// `lockstep snapshot show VM SNAP --json`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotDoc {
    pub schema: u32,
    pub vm: String,
    #[serde(flatten)]
    pub snapshot: SnapshotView,
}

/// One snapshot of the tree, with what its ids mean.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotView {
    #[serde(flatten)]
    pub snapshot: Snapshot,
    pub parent_name: Option<String>,
    /// The VM runs from this snapshot (it is its current parent).
    pub current: bool,
}

impl SnapshotView {
    pub fn new(config: &VmConfig, snapshot: &Snapshot) -> SnapshotView {
        SnapshotView {
            snapshot: snapshot.clone(),
            parent_name: snapshot
                .parent
                .and_then(|p| config.snapshot_by_id(p))
                .map(|p| p.name.clone()),
            current: config.current.parent == Some(snapshot.id),
        }
    }
}

/// `lockstep disk info PATH --json`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiskInfoDoc {
    pub schema: u32,
    #[serde(flatten)]
    pub info: disk::DiskInfo,
}

/// `lockstep image pull --json`: the verified guest image's files.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageDoc {
    pub schema: u32,
    pub name: String,
    pub suite: String,
    /// `uname -r` of its kernel.
    pub kernel_version: String,
    pub kernel: PathBuf,
    pub initrd: PathBuf,
    pub firmware: PathBuf,
    pub fw_jump: PathBuf,
}

/// `lockstep image list --json`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageList {
    pub schema: u32,
    pub images: Vec<ImageDoc>,
    /// Root file systems made by `lockstep image build`.
    #[serde(default)]
    pub disks: Vec<DiskImageDoc>,
}

/// A root file system image made by `lockstep image build` (qcow2, read-only in the cache).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiskImageDoc {
    /// `debian-minbase`, `debian-standard`, with `-<hash>` when packages were added.
    pub name: String,
    pub suite: String,
    pub variant: String,
    pub path: PathBuf,
    /// SHA-256 of the image file.
    pub sha256: String,
    /// SHA-256 of the reproducible host part (before the guest configured the packages).
    pub host_sha256: String,
    pub packages: usize,
    /// Virtual size, bytes.
    pub disk_size: u64,
}

/// `lockstep ft status --json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FtStatusDoc {
    pub schema: u32,
    pub role: FtRole,
    /// `unprotected`, `syncing` (sending the VM to `backup`), `protected`
    /// (by `backup`), `fenced` (halted: `why`); a backup: `following`.
    pub protection: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub why: Option<String>,
    /// The arbiter generation it runs under.
    pub generation: u64,
    pub icount: u64,
    /// A primary's: what its backup has yet to execute, and flow
    /// control's bound on that, in instructions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lag_instructions: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_lag_instructions: Option<u64>,
    /// A primary's outputs held until the backup has the log.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub held_outputs: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub held_bytes: Option<u64>,
    /// Log sent to the current (or last) backup: bytes, host seconds,
    /// guest instructions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_bytes: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_seconds: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_instructions: Option<u64>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FtRole {
    Primary,
    Backup,
}

/// A document's `schema`, checked: `Err` names both versions when it is
/// newer than this build reads.
pub fn check_schema(found: u32) -> Result<(), NewerSchema> {
    if found > SCHEMA {
        return Err(NewerSchema {
            found,
            supported: SCHEMA,
        });
    }
    Ok(())
}

/// A JSON document of a schema newer than this build reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("JSON schema {found} is newer than this lockstep reads (up to {supported})")]
pub struct NewerSchema {
    pub found: u32,
    pub supported: u32,
}
