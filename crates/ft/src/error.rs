use std::path::PathBuf;
use std::time::Duration;

/// Everything that can go wrong on either side of an FT pair. Each message
/// is one line naming what failed; each kind is its own variant with the
/// fields a caller (the CLI, a control plane) acts on.
#[derive(Debug, thiserror::Error)]
pub enum FtError {
    #[error("FT log channel: bad message from the peer: {0}")]
    Protocol(#[from] ProtocolError),
    #[error("FT log channel: bad log frame from the primary: {0}")]
    Frame(#[from] replay::ReadError),
    #[error("FT log channel: {0}")]
    Encode(#[from] replay::WriteError),
    #[error("FT handshake: {0}")]
    Handshake(#[from] HandshakeError),
    #[error("FT log channel: {0}")]
    Link(#[from] link::LinkError),
    #[error("FT: cannot reach the backup at {addr}: {source}")]
    Connect {
        addr: String,
        source: link::LinkError,
    },
    #[error("FT log channel: plain TCP to {addr} is refused: without TLS anyone who reaches the port is trusted, so --ft-insecure-plaintext is for loopback addresses only")]
    PlaintextNotLoopback { addr: String },
    #[error("FT: cannot add a backup: {0}")]
    Busy(#[from] BusyError),
    #[error("migration: {0}")]
    Migration(#[from] MigrationError),
    #[error("FT sync: {0}")]
    Sync(#[from] SyncError),
    #[error("FT backup: disk replica {}: {source}", path.display())]
    Replica {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The backup's Welcome said no; `reason` is its own words (sent to
    /// an authenticated peer only).
    #[error("FT handshake: the backup at {backup} refused: {reason}")]
    Refused { backup: String, reason: String },
    #[error("FT arbiter {}: {what}: {source}", path.display())]
    Arbiter {
        path: PathBuf,
        what: &'static str,
        source: std::io::Error,
    },
    #[error("FT arbiter {}: {problem}", path.display())]
    ArbiterContent {
        path: PathBuf,
        problem: &'static str,
    },
    #[error("FT: lost the arbiter: the other side already claimed generation {0}; halting")]
    LostArbiter(u64),
    #[error("FT backup: {0}")]
    Machine(#[from] machine::MachineError),
    #[error("FT backup diverged from the primary {0}; it stopped following (the primary runs on unprotected)")]
    Diverged(#[from] replay::session::Divergence),
    /// An earlier error ended following; `since` is what it said.
    #[error("FT backup: no longer following the primary ({since}); it must not go live")]
    NotFollowing { since: String },
}

/// A message from the peer that is not one this side can take.
#[derive(Debug, thiserror::Error)]
pub enum ProtocolError {
    #[error("unknown message kind {0:#04x}")]
    UnknownKind(u8),
    #[error("{message}: message too short")]
    Short { message: &'static str },
    #[error("{message}: trailing bytes")]
    Trailing { message: &'static str },
    #[error("{message}: unknown status {status}")]
    Status { message: &'static str, status: u8 },
    #[error("Pages: {len} bytes is not a whole number of {entry}-byte pages")]
    Pages { len: usize, entry: usize },
    #[error("Hello: the lockstep version is not UTF-8")]
    VersionNotUtf8,
    #[error("Hello: {0}")]
    Rate(#[from] machine::BadRate),
    #[error("Hello: read-only flag {0}")]
    ReadOnlyFlag(u8),
    #[error("Hello: unknown purpose {0}")]
    Purpose(u8),
    #[error("Handoff: outputs released to icount {released}, past the hand-over at {icount}")]
    ReleasedAhead { icount: u64, released: u64 },
    #[error("Handoff at icount {announced}, but the log ends at {got}")]
    HandoffIcount { got: u64, announced: u64 },
    #[error("{got} while {during}")]
    Unexpected {
        got: &'static str,
        during: &'static str,
    },
    #[error("data for disk {disk} of {disks}")]
    NoSuchDisk { disk: usize, disks: usize },
    #[error("{len} bytes at {offset} on disk {disk} of {capacity} bytes")]
    DiskRange {
        disk: usize,
        offset: u64,
        len: usize,
        capacity: u64,
    },
    #[error("a batch ends inside a frame (LSN {lsn})")]
    SplitFrame { lsn: u64 },
    #[error("the VM's snapshot: {0}")]
    Assembly(#[from] machine::snapshot::SnapshotError),
}

/// The handshake that starts an FT session did not complete.
#[derive(Debug, thiserror::Error)]
pub enum HandshakeError {
    #[error("the peer closed the connection while this side waited for {expected}")]
    Closed { expected: &'static str },
    #[error("no {expected} from the peer within {} s", within.as_secs())]
    Silent {
        expected: &'static str,
        within: Duration,
    },
    #[error("the listening socket has no address: {0}")]
    NoLocalAddress(#[source] std::io::Error),
    #[error("refused {peer}: expected the primary's Hello, got {got}")]
    NotHello { peer: String, got: &'static str },
    #[error("expected the backup's Welcome, got {got}")]
    NotWelcome { got: &'static str },
    /// This side refused the primary (its reason was sent to it).
    #[error("refused the primary at {peer}: {reason}")]
    RefusedPrimary {
        peer: String,
        #[source]
        reason: Box<Refusal>,
    },
}

/// The caller's own reason to refuse a primary's VM (see
/// `BackupOptions::accept`).
pub type AcceptError = Box<dyn std::error::Error + Send + Sync>;

/// Why a backup refuses a primary's Hello: in full for this side's report
/// (and an authenticated primary); [`Refusal::public`] leaves out this
/// host's details for a peer nobody vouched for.
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    #[error("the primary runs lockstep {primary}, the backup {backup}")]
    Version {
        primary: String,
        backup: &'static str,
    },
    #[error("a VM of {memory} bytes of memory is beyond what this backup runs")]
    Memory { memory: u64 },
    #[error("{images_len} bytes of boot images do not fit the VM's {memory} bytes of memory")]
    Images { images_len: u64, memory: u64 },
    #[error("its disks need more room for replicas than this backup allows ({max} bytes; see --max-replica-size)")]
    ReplicaQuota { max: u64 },
    #[error("this backup has no arbiter: it cannot protect a VM")]
    NoArbiter,
    #[error("the primary migrates its VM, but this side is a backup (a migration's target is `lockstep ft backup --incoming`)")]
    MigrateToBackup,
    #[error("the primary wants a backup, but this side only receives migrations (--incoming)")]
    ProtectToTarget,
    #[error("{0}")]
    ArbiterUnreadable(#[source] Box<FtError>),
    #[error("the primary runs under arbiter generation {primary} but {} holds {held} (not the same arbiter file, or a stale primary)", arbiter.display())]
    Generation {
        primary: u64,
        arbiter: PathBuf,
        held: u64,
    },
    /// The caller's own check (`BackupOptions::accept`) said no.
    #[error("{0}")]
    NotAccepted(#[source] AcceptError),
    #[error("cannot create {}: {source}", dir.display())]
    CreateDir {
        dir: PathBuf,
        source: std::io::Error,
    },
    #[error("{} is not a directory", dir.display())]
    NotDirectory { dir: PathBuf },
    #[error("cannot look at {}: {source}", dir.display())]
    InspectDir {
        dir: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot receive the VM here: {0}")]
    Receive(#[source] machine::snapshot::SnapshotError),
    #[error("cannot create the disk replica {}: {source}", path.display())]
    CreateReplica {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl Refusal {
    /// The refusal without this host's details (the arbiter's path and
    /// generation), for a peer nobody vouched for.
    pub fn public(&self) -> String {
        match self {
            Refusal::ArbiterUnreadable(_) => "this backup cannot read its arbiter".into(),
            Refusal::Generation { .. } => {
                "the primary runs under another arbiter generation than this backup's arbiter holds"
                    .into()
            }
            other => other.to_string(),
        }
    }
}

/// Why the primary stopped following its backup (or migration target).
#[derive(Debug, thiserror::Error)]
pub enum BackupFailure {
    #[error("the backup acknowledged icount {icount}, but only {queued} was sent")]
    AckedAhead { icount: u64, queued: u64 },
    /// The backup's Ready said no, in its own words.
    #[error("the backup at {backup} could not take the VM: {reason}")]
    NotReady { backup: String, reason: String },
    #[error("the backup sent {got} after the handshake")]
    Unexpected { got: &'static str },
    #[error("no word from the backup for {} ms", within.as_millis())]
    Silent { within: Duration },
    #[error("the backup closed the connection")]
    Closed,
    #[error("{0}")]
    Channel(#[source] Box<FtError>),
}

/// A primary cannot take a new backup now.
#[derive(Debug, thiserror::Error)]
pub enum BusyError {
    #[error("already sending the VM to {backup}")]
    Syncing { backup: String },
    #[error("already protected by {backup}")]
    Protected { backup: String },
    #[error("halted: {why}")]
    Fenced { why: String },
    #[error("the VM runs without an arbiter (--ft-arbiter): it can be migrated, not protected")]
    NoArbiter,
    #[error("it is being migrated to {target}")]
    Migrating { target: String },
}

/// A live migration did not complete. Except for `InDoubt`, the VM runs
/// on where it was.
#[derive(Debug, thiserror::Error)]
pub enum MigrationError {
    #[error("cannot migrate now: {0}")]
    Busy(BusyError),
    #[error("the target at {target} failed before the hand-over ({why}); the VM runs on here")]
    TargetFailed { target: String, why: String },
    #[error("the target at {target} did not catch up with the VM within {} s; the VM runs on here", within.as_secs())]
    CatchUp { target: String, within: Duration },
    #[error("cancelled; the VM runs on here")]
    Cancelled,
    #[error("the VM stopped before the hand-over")]
    VmStopped,
    /// After the hand-over was sent the target fell silent: it may run the
    /// VM. This side stopped it (two copies must never run).
    #[error("the hand-over to {target} is in doubt ({why}): the VM was stopped here and may be running there")]
    InDoubt { target: String, why: String },
    /// A migration target does not go live on its own.
    #[error(
        "the source of the migration was lost before the hand-over ({why}); the VM stays with it"
    )]
    SourceLost { why: String },
}

/// The primary could not send the VM to its backup (its own side of a
/// sync: reading the VM, or the channel).
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    #[error("the sync already ended")]
    Ended,
    #[error("the VM stopped")]
    VmStopped,
    #[error("the connection to the peer is closed")]
    LinkDown,
    #[error("reading the boot images: {0}")]
    Images(#[source] machine::MachineError),
    #[error("reading disk {disk}: {source}")]
    Disk {
        disk: usize,
        source: disk::DiskError,
    },
    #[error("saving the VM's state: {0}")]
    State(#[source] machine::snapshot::SnapshotError),
    #[error("RAM page {index} does not fit a Pages message")]
    PageIndex { index: usize },
    #[error("disk {disk} does not fit a Disk message")]
    DiskIndex { disk: usize },
    #[error("sending: {0}")]
    Channel(#[source] Box<FtError>),
}

impl From<machine::snapshot::LiveSaveError<SendError>> for SendError {
    fn from(e: machine::snapshot::LiveSaveError<SendError>) -> Self {
        use machine::snapshot::LiveSaveError;
        match e {
            LiveSaveError::Disk { disk, source } => SendError::Disk { disk, source },
            LiveSaveError::Snapshot(e) => SendError::State(e),
            LiveSaveError::Sink(e) => e,
        }
    }
}

/// Sending the VM to a backup failed (either side).
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    /// The backup failed before it said Ready.
    #[error("the backup could not take the VM: {0}")]
    BackupNotReady(#[source] BackupFailure),
    #[error("the backup did not say it was ready")]
    NoReady,
    #[error("sending the VM: {0}")]
    Send(#[from] SendError),
    #[error("the VM stopped during the sync")]
    VmStopped,
    #[error("no word from the primary for {} s while receiving the VM", within.as_secs())]
    PrimarySilent { within: Duration },
    #[error("the primary closed the connection while sending the VM")]
    PrimaryClosed,
    #[error(transparent)]
    Restore(#[from] RestoreError),
}

/// The backup could not rebuild the VM it received.
#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    #[error("syncing the disk replica {}: {source}", path.display())]
    SyncReplica {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("opening a disk replica: {0}")]
    Replica(#[from] disk::DiskError),
    #[error("the machine received does not restore: {0}")]
    Snapshot(#[from] machine::snapshot::SnapshotError),
    #[error(
        "the machine received runs at {got} instructions per tick, the Hello announced {announced}"
    )]
    Rate { got: u64, announced: u64 },
    #[error("the machine received cannot be hashed: {0}")]
    Hash(#[from] machine::MachineError),
    #[error("the machine received does not hash like the primary's (damaged in transfer)")]
    HashMismatch,
    #[error("the state is at icount {got}, the primary said {announced}")]
    Icount { got: u64, announced: u64 },
}
