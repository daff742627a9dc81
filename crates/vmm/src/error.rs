use std::path::PathBuf;

use crate::config::PowerState;

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
    BadConfig {
        path: PathBuf,
        /// Boxed: it is rare, and keeps every `Result` of this crate small.
        #[source]
        reason: Box<ConfigError>,
    },
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

/// Why a `vm.toml` is not a valid bundle file (the reason of
/// [`VmmError::BadConfig`]): unreadable, not TOML, or a value
/// [`crate::VmConfig::check`] refuses. Each message names the field.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("not a regular file")]
    NotAFile,
    #[error("{bytes} bytes; at most {max}")]
    TooLarge { bytes: u64, max: u64 },
    #[error("unreadable: {0}")]
    Unreadable(#[source] std::io::Error),
    /// TOML's message, on one line.
    #[error("{}", crate::config::one_line(.0))]
    Syntax(#[source] toml::de::Error),
    #[error("no valid `format` number")]
    NoFormat,
    #[error("cannot be written: {0}")]
    Unwritable(#[source] toml::ser::Error),
    /// A VM or snapshot name [`crate::check_name`] refuses.
    #[error(transparent)]
    Name(Box<VmmError>),
    #[error("cpus = {0}: 1 to 4")]
    Cpus(u8),
    #[error("memory = {0}: a multiple of 4 KiB from 16 MiB to 1 TiB")]
    Memory(u64),
    #[error("instructions_per_tick: 1 to 1000")]
    InstructionsPerTick(u64),
    #[error("append: longer than {max} bytes")]
    AppendTooLong { len: usize, max: usize },
    #[error("{disks} disks and {nics} NICs: at most {max} devices")]
    TooManyDevices {
        disks: usize,
        nics: usize,
        max: usize,
    },
    #[error("nic {index} (eth{index}): {source}")]
    BadNic {
        index: usize,
        #[source]
        source: net::SpecError,
    },
    #[error("nic {index} (eth{index}): net = '{net}' holds a MAC: it goes in `mac`")]
    MacInNet { index: usize, net: String },
    #[error("more than {max} snapshots")]
    TooManySnapshots { max: usize },
    /// `place`: `current` or `snapshot "NAME"`.
    #[error("{place}: {layers} layers for {disks} disks")]
    LayerCount {
        place: String,
        layers: usize,
        disks: usize,
    },
    #[error("{place}: {layer:?} is not a layer file name")]
    BadLayerName { place: String, layer: String },
    #[error("current state {0:?} is not a state file name")]
    BadCurrentState(String),
    #[error("retired layer {0:?}: not a layer name, or named twice")]
    BadRetiredLayer(String),
    #[error("snapshot {snapshot:?}: description too long")]
    DescriptionTooLong { snapshot: String },
    #[error("snapshot {snapshot:?}: {state:?} is not a state file name")]
    BadSnapshotState { snapshot: String, state: String },
    #[error("snapshot {snapshot:?}: {power} but no state")]
    NoState { snapshot: String, power: PowerState },
    #[error("snapshot {snapshot:?}: {power} with a state")]
    UnexpectedState { snapshot: String, power: PowerState },
    #[error("two snapshots have id {0}")]
    DuplicateId(u64),
    #[error("two snapshots are named {0:?}")]
    DuplicateName(String),
    #[error("snapshot id {0} is not below next_id")]
    IdNotBelowNext(u64),
    #[error("layer {0:?} belongs to two places in the tree")]
    SharedLayer(String),
    #[error("parent snapshot id {0} does not exist")]
    NoParent(u64),
    #[error("the snapshot tree has a cycle")]
    Cycle,
    #[error("ft.backup: an address of 1 to 255 characters")]
    FtBackup,
    #[error("ft.arbiter: an absolute path")]
    FtArbiter,
}

impl From<VmmError> for ConfigError {
    fn from(e: VmmError) -> ConfigError {
        ConfigError::Name(Box::new(e))
    }
}

/// Why a text is not a [`crate::Mac`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MacError {
    #[error("{0:?} is not a MAC address")]
    Syntax(String),
    #[error("{0:?} is a multicast address")]
    Multicast(String),
}

pub type Result<T, E = VmmError> = std::result::Result<T, E>;

/// `map_err` helper: an I/O error about `path`.
pub(crate) fn io_at(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> VmmError {
    let path = path.into();
    move |source| VmmError::Io { path, source }
}
