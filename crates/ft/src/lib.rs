//! Fault-tolerant VMs (DESIGN §5): a primary runs the VM and streams its
//! input log to a backup on another host, which re-executes it and takes
//! over when the primary fails, with no output lost. A running VM takes a
//! new backup at any time (redundancy restored after a failover).
//!
//! # The log channel (protocol version 5)
//!
//! One connection, opened by the primary: TCP, or TLS with mutual
//! authentication (both sides present a certificate of one CA; see the
//! `link` crate, which also does the preamble — magic `LSTPFT\0\0` and
//! the protocol version, refused with an error naming both if they differ
//! — and the framing: `kind: u8, len: u32 LE, payload`, at most 64 MiB).
//! Integers are little-endian.
//!
//! | kind | message | direction | payload |
//! |------|---------|-----------|---------|
//! | 0x01 | `Hello`   | primary → backup | `vlen: u8, lockstep version, generation: u64, anchor: u64 (UNIX ns of guest mtime 0 on the primary's clock), vm uuid: 16 bytes, images_len: u64, memory: u64, instructions per tick: u64 (1 to 1000), disks: u8, per disk (capacity: u64, read_only: u8), purpose: u8 (0 protect, 1 migrate), setup (the rest; opaque here)` |
//! | 0x02 | `Welcome` | backup → primary | `0x00` accepted, or `0x01` then a UTF-8 reason for refusing |
//! | 0x03 | `Images`  | primary → backup | `offset: u64`, boot image bytes (firmware ‖ kernel ‖ initrd) |
//! | 0x04 | `Pages`   | primary → backup | entries of `page index: u32, 4096 bytes` |
//! | 0x05 | `Disk`    | primary → backup | `disk: u8, offset: u64`, bytes |
//! | 0x06 | `State`   | primary → backup | `icount: u64`, the machine's snapshot state section (postcard; `machine::snapshot`) |
//! | 0x07 | `Ready`   | backup → primary | as `Welcome`: the machine restored and verified, or why not |
//! | 0x10 | `Batch`   | primary → backup | `released: u64` (icount up to which the primary has released outputs), then zero or more whole log frames in the replay format (LSNs from 0, consecutive across batches; icount deltas from the `State`'s icount) |
//! | 0x11 | `Ack`     | backup → primary | `next_lsn: u64, icount: u64, executed: u64`: every record before `next_lsn` was received, the last was at `icount`; the backup has executed up to icount `executed` |
//! | 0x12 | `Alive`   | backup → primary | empty: the backup's heartbeat while it receives the VM |
//! | 0x13 | `Handoff` | primary → target | `icount: u64, released: u64`: migration only; the guest stopped at `icount` (the last record's), outputs released up to `released` (≤ icount) |
//! | 0x14 | `Taken`   | target → primary | empty: the target runs the VM |
//!
//! **Handshake and sync.** The primary sends `Hello`; the backup refuses
//! (in `Welcome`) if the lockstep versions differ, the arbiter generation
//! is not the one in its arbiter file, or it cannot create its disk
//! replicas. Then the primary sends the running machine ([`sync`]): the
//! boot images, RAM pages and disk data in pre-copy rounds while the guest
//! runs, then, with the guest paused, the last changes and the `State`.
//! The backup writes the pieces into a snapshot file and its own disk
//! replicas, restores the machine with every check a snapshot restore
//! makes (image and RAM chunk hashes, the state hash the primary computed)
//! and answers `Ready`. The primary holds outputs from the `State`'s
//! icount on, and logs from there.
//!
//! **Records.** The primary logs every input at the icount where it is
//! applied, a `Progress` after every step that produced output (so the
//! output can be released one round trip later) and at least every
//! `progress_every` otherwise, a `Checkpoint` with its state hash every
//! `checkpoint_every` instructions and when the run ends, and
//! `Control(PowerOff)` last. Before each record it ships the `Output`
//! windows (length and hash per channel) of what the machine emitted
//! since the previous record, exactly as a recording does.
//!
//! **Divergence.** The backup checks every `Output` window and
//! `Checkpoint` as a replay does. On a mismatch it reports the divergence,
//! closes the connection and never goes live (its state is not the
//! primary's); the primary, seeing the backup gone, runs on unprotected.
//! The backup never executes past the last record it has received.
//!
//! **Output rule.** An output stamped icount c leaves the primary only
//! after an `Ack` with icount ≥ c; execution never waits for acks (outputs
//! wait in a queue released by the thread that reads acks). An ack that
//! claims more than was sent is a protocol error.
//!
//! **Flow control.** The backup also acks within 5 ms whenever its
//! executed icount moved; the primary pauses (at most `timeout` at a
//! time) while it is more than `max_lag` instructions (default: 1 s at
//! [`INSTRUCTIONS_PER_MS`]) ahead of that, so the backup never has far to
//! catch up when it must go live.
//!
//! **Heartbeats and failure.** An empty `Batch` is the primary's heartbeat
//! and a repeated `Ack` the backup's (`Alive` while it receives the VM,
//! so the primary hears from it even while the last round is in
//! flight); each side sends one at least every `timeout / 5`. A peer is dead after `timeout` (default 500 ms) without
//! a message, on EOF, on a socket error, or on any malformed message or
//! frame (the channel is untrusted: decoding errors end it).
//!
//! **Failover.** The survivor claims the arbiter ([`arbiter`]): generation
//! g → g + 1. The backup, on winning, executes everything it received,
//! re-emits the outputs stamped after the primary's last reported
//! `released` icount (the only ones the primary may not have sent: so no
//! gap, and duplicates only from the last ack round trip), announces each
//! NIC's IPv4 address learned from the guest's own frames with a
//! gratuitous ARP, and runs live — as a primary without a backup, which
//! can take a new one. The primary, on winning, releases what it held and
//! runs on unprotected until a new backup is added; the loser of either
//! race halts.
//!
//! **Live migration** ([`FtPrimary::migrate`]) is the same sync and log to
//! a target whose Hello says `migrate` (`lockstep ft backup --incoming`;
//! each side refuses the other purpose, and no arbiter is involved). Once
//! the target's executed icount is within 1 ms of execution of the
//! primary's, the primary's runner stops the guest inside a step, logs a
//! last `Checkpoint`, waits until everything is acknowledged and every held
//! output released, and sends `Handoff`; the target executes to that icount
//! (checking the checkpoint), drops nothing (the primary released it all),
//! goes live (gratuitous ARPs as on failover) and answers `Taken`, and the
//! primary ends. The guest's pause is that hand-over. A target that fails
//! before `Handoff` leaves the VM running on the primary (it never goes
//! live on its own); a cancelled migration closes the channel. If the
//! channel fails after `Handoff` was sent and before `Taken`, the
//! hand-over is in doubt: the primary halts (fenced) rather than risk two
//! copies, and whoever manages the hosts looks at the target.

pub mod arbiter;
pub mod backup;
mod channel;
mod error;
pub mod garp;
pub mod primary;
pub mod sync;
pub mod wire;

pub use arbiter::{Arbiter, Claim};
pub use backup::{serve, serve_until_ready, Backup, BackupOptions, Live, Outcome};
pub use channel::check_loopback;
pub use error::{
    AcceptError, BackupFailure, BusyError, FtError, HandshakeError, MigrationError, ProtocolError,
    Refusal, RestoreError, SendError, SyncError,
};
pub use link::{tls_init, TlsIdentity, TlsInit};
pub use primary::{protectable, FtPrimary, PrimaryJournal, Protection, Resumed, Status, VmShape};
pub use sync::{SyncReport, SyncUpdate};
pub use wire::{DiskShape, Hello, Purpose};

use std::time::Duration;

/// Default time without word from the peer after which it is dead.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_millis(500);
/// Default flow-control limit on the backup's lag, in ms of guest time.
pub const DEFAULT_MAX_LAG_MS: u64 = 1000;
/// Instructions per ms of lag for flow control: the 160 MIPS of the
/// first clock rate, which is the order of the interpreter's speed. Not the
/// VM's clock rate: what the lag bounds is how long a backup needs to catch
/// up before going live, so it counts execution time; at a higher rate a
/// slower hart's guest time is mostly catch-up warps, which cost nothing to
/// replay.
pub const INSTRUCTIONS_PER_MS: u64 = 160_000;

/// Timing of an FT pair.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FtConfig {
    /// The peer is dead after this long without a message.
    pub timeout: Duration,
    /// Longest time between `Progress` records when the guest emits
    /// nothing (bounds how far the backup lags behind).
    pub progress_every: Duration,
    /// Flow control: the primary waits while the backup has executed more
    /// than this many instructions less than it (bounds the failover time
    /// when the backup's host is slower or busier).
    pub max_lag: u64,
    /// Instructions between `Checkpoint` records (state hashes the backup
    /// compares with its own).
    pub checkpoint_every: u64,
}

impl Default for FtConfig {
    fn default() -> Self {
        Self {
            timeout: DEFAULT_TIMEOUT,
            progress_every: Duration::from_millis(5),
            max_lag: DEFAULT_MAX_LAG_MS * INSTRUCTIONS_PER_MS,
            // About 6 s of guest time; a state hash costs a few ms.
            checkpoint_every: 1_000_000_000,
        }
    }
}

impl FtConfig {
    /// How often each side sends a heartbeat.
    pub fn heartbeat(&self) -> Duration {
        (self.timeout / 5).max(Duration::from_millis(1))
    }
}
