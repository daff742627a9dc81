use std::path::PathBuf;

/// Everything a bundle operation can refuse or fail with; each message is
/// one line that names the VM, snapshot or file concerned.
#[derive(Debug, thiserror::Error)]
pub enum VmmError {
    #[error("no VM named {name:?} (`lockstep vm list` shows them)")]
    NoSuchVm { name: String },
    #[error("a VM named {name:?} already exists")]
    VmExists { name: String },
    #[error("invalid {what} {shown:?}: {reason}")]
    BadName {
        what: &'static str,
        /// The name as given, shortened to 80 characters.
        shown: String,
        reason: String,
    },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: not a valid VM bundle file: {reason}")]
    BadConfig { path: PathBuf, reason: String },
    #[error("{path}: bundle format {found} is newer than this lockstep reads (up to {supported}); use a newer lockstep")]
    NewerFormat {
        path: PathBuf,
        found: u64,
        supported: u64,
    },
    #[error("VM {name:?} is busy: another lockstep command is changing it")]
    Busy { name: String },
    #[error("VM {name:?} is running (pid {pid}); {what}")]
    Running {
        name: String,
        pid: u32,
        what: &'static str,
    },
    #[error("VM {name:?} is suspended; {what}")]
    Suspended { name: String, what: &'static str },
    #[error("VM {name:?} is not running")]
    NotRunning { name: String },
    #[error(
        "VM {vm:?} has no snapshot named {snapshot:?} (`lockstep snapshot list {vm}` shows them)"
    )]
    NoSuchSnapshot { vm: String, snapshot: String },
    #[error("VM {vm:?} already has a snapshot named {snapshot:?}")]
    SnapshotExists { vm: String, snapshot: String },
    #[error("snapshot {snapshot:?} of VM {vm:?} holds the disks of linked clone(s) {clones}; delete those first")]
    SnapshotUsedByClones {
        vm: String,
        snapshot: String,
        clones: String,
    },
    #[error("VM {vm:?} has linked clones ({clones}); delete them first")]
    HasLinkedClones { vm: String, clones: String },
    #[error("{layer}: the disk chain reaches {file}, which is not a qcow2 layer inside the VM store {root}")]
    ChainOutside {
        layer: PathBuf,
        file: PathBuf,
        root: PathBuf,
    },
    #[error("{what}: {value} is out of range ({range})")]
    OutOfRange {
        what: &'static str,
        value: u64,
        range: &'static str,
    },
    #[error("no place for lockstep's VMs: set $LOCKSTEP_HOME, $XDG_DATA_HOME or $HOME to an absolute path")]
    NoHome,
    #[error("cannot read /dev/urandom: {0}")]
    Entropy(std::io::Error),
    #[error(transparent)]
    Disk(#[from] disk::DiskError),
}

pub type Result<T, E = VmmError> = std::result::Result<T, E>;

/// `map_err` helper: an I/O error about `path`.
pub(crate) fn io_at(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> VmmError {
    let path = path.into();
    move |source| VmmError::Io { path, source }
}
