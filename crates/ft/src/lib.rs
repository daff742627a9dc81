//! Fault-tolerant VMs (DESIGN §5): a primary runs the VM and streams its
//! input log to a backup on another host, which re-executes it and takes
//! over when the primary fails, with no output lost.
//!
//! # The log channel (protocol version 2)
//!
//! One TCP connection, opened by the primary. Integers are little-endian.
//!
//! 1. **Preamble**, both sides at once: `magic "LSTPFT\0\0" (8 bytes),
//!    protocol version: u16`. A different magic or version ends the
//!    connection with an error naming it.
//! 2. **Messages**, each `kind: u8, len: u32, payload (len bytes, at most
//!    4 MiB)`:
//!
//! | kind | message | direction | payload |
//! |------|---------|-----------|---------|
//! | 0x01 | `Hello`   | primary → backup | `vlen: u8, lockstep version (vlen bytes), generation: u64, start icount: u64, anchor: u64 (the primary's host wall-clock time, UNIX ns, of guest mtime 0), log header (62 bytes: the replay log header with VM uuid and initial state hash), VM setup (the rest; opaque here, the CLI's JSON VmSetup)` |
//! | 0x02 | `Welcome` | backup → primary | `0x00` accepted, or `0x01` then a UTF-8 reason for refusing |
//! | 0x10 | `Batch`   | primary → backup | `released: u64` (icount up to which the primary has released outputs), then zero or more whole log frames in the replay format (`replay` crate docs: LSNs from 0, consecutive across batches; icount deltas from `start icount`) |
//! | 0x11 | `Ack`     | backup → primary | `next_lsn: u64, icount: u64, executed: u64`: every record before `next_lsn` was received, the last was at `icount`; the backup has executed up to icount `executed` |
//!
//! **Handshake.** After the preambles the primary sends `Hello`. Both
//! sides boot from the same configuration, so no state is transferred: the
//! backup builds the machine from the setup, and refuses (with a reason in
//! `Welcome`) if the lockstep versions differ, the arbiter generation is
//! not the one in its arbiter file, or its machine's icount or state hash
//! differs from the Hello's.
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
//! time) while it is more than `max_lag` instructions ahead of that, so
//! the backup never has far to catch up when it must go live.
//!
//! **Heartbeats and failure.** An empty `Batch` is the primary's heartbeat
//! and a repeated `Ack` the backup's; each side sends one at least every
//! `timeout / 5`. A peer is dead after `timeout` (default 500 ms) without
//! a message, on EOF, on a socket error, or on any malformed message or
//! frame (the channel is untrusted: decoding errors end it).
//!
//! **Failover.** The survivor claims the arbiter ([`arbiter`]): generation
//! g → g + 1. The backup, on winning, executes everything it received,
//! re-emits the outputs stamped after the primary's last reported
//! `released` icount (the only ones the primary may not have sent: so no
//! gap, and duplicates only from the last ack round trip), announces each
//! NIC's IPv4 address learned from the guest's own frames with a
//! gratuitous ARP, and runs live. The primary, on winning, releases what
//! it held and runs on unprotected; the loser of either race halts.

pub mod arbiter;
pub mod backup;
mod error;
pub mod garp;
pub mod primary;
pub mod wire;

pub use arbiter::{Arbiter, Claim};
pub use backup::{serve, Backup, Live, Outcome};
pub use error::FtError;
pub use primary::{connect, PrimaryJournal, PrimaryLink};
pub use wire::Hello;

use std::time::Duration;

/// Default time without word from the peer after which it is dead.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_millis(500);

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
            // 100 ms of guest time at the 160 MIPS that mtime assumes.
            max_lag: 16_000_000,
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
