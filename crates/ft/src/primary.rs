//! The primary: runs the VM, and while a backup follows it ships every
//! input and enough `Progress` to it, holds outputs until the backup has
//! acknowledged a record at or past their icount (the output rule), and
//! watches the backup's heartbeats. Without a backup it runs unprotected
//! and can take one at any time ([`FtPrimary::add_backup`]): the machine is
//! sent over in pre-copy rounds while it runs ([`crate::sync`]), paused
//! only for the last round.
//!
//! Threads: the runner's thread calls the [`PrimaryJournal`] (it appends to
//! an outbox and copies sync rounds, never waiting for the network except
//! in the last sync round and under flow control); per backup, a writer
//! thread sends the outbox as batches (an empty batch is the heartbeat)
//! and a reader thread takes acks and releases held outputs itself, since
//! the runner may be asleep. If the backup fails, the reader claims the
//! arbiter: winning, it releases everything held and the VM runs on
//! unprotected; losing (the backup went live), nothing more leaves the VM
//! and the runner is told to stop.

use crate::arbiter::{Arbiter, Claim};
use crate::channel::{self, Got, Receiver, Sender};
use crate::sync::{SyncJob, SyncReport, SyncRequest, SyncUpdate};
use crate::wire::{DiskShape, Hello, Message, Purpose, MAX_BATCH};
use crate::{
    BackupFailure, BusyError, FtConfig, FtError, HandshakeError, MigrationError, SendError,
    SyncError,
};
use link::TlsIdentity;
use machine::{HostEvent, Journal, JournalError, Machine, Output, OutputEvent, RunEnd};
use replay::session::{log_input, OutputWindows, SharedWindows, TeeOutput};
use replay::{Control, Encoder, RecordKind, StopReason};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// How long the backup may take to accept the Hello, and to restore the
/// machine after the last sync round.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(60);
/// A migration hands the VM over once its target lags at most this many
/// instructions behind (1 ms at [`crate::INSTRUCTIONS_PER_MS`]): the
/// guest's pause at the hand-over is the target's catch-up.
const HANDOFF_LAG: u64 = crate::INSTRUCTIONS_PER_MS;
/// How long a migration target may take to catch up that far.
const CATCH_UP_WITHIN: Duration = Duration::from_secs(30);

/// An output waiting for the backup's ack.
enum Held {
    Console(Vec<u8>),
    Net { nic: usize, frame: Vec<u8> },
}

impl Held {
    fn len(&self) -> usize {
        match self {
            Held::Console(bytes) => bytes.len(),
            Held::Net { frame, .. } => frame.len(),
        }
    }
}

/// Where the pair stands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Protection {
    /// No backup: outputs leave at once.
    Unprotected,
    /// A backup is receiving the machine (outputs still leave at once).
    Syncing { backup: String },
    /// A backup follows: outputs wait for its acks.
    Protected { backup: String },
    /// A migration target follows (as a backup does) until the hand-over.
    Migrating { target: String },
    /// The VM was handed over to the migration target: this side is done
    /// and silent.
    Migrated { target: String },
    /// The backup won the arbiter (or a hand-over is in doubt): this side
    /// must stay silent.
    Fenced(String),
}

struct Hold {
    queue: VecDeque<(u64, Held)>,
    sink: Box<dyn Output>,
    state: Protection,
    /// Highest icount the backup acknowledged.
    acked: u64,
}

impl Hold {
    fn emit(&mut self, icount: u64, held: Held) {
        match held {
            Held::Console(bytes) => self.sink.emit(icount, OutputEvent::Console(&bytes)),
            Held::Net { nic, frame } => self
                .sink
                .emit(icount, OutputEvent::Net { nic, frame: &frame }),
        }
    }

    fn release_through(&mut self, icount: u64) {
        self.acked = self.acked.max(icount);
        while self.queue.front().is_some_and(|(c, _)| *c <= self.acked) {
            if let Some((c, held)) = self.queue.pop_front() {
                self.emit(c, held);
            }
        }
    }

    fn release_all(&mut self) {
        while let Some((c, held)) = self.queue.pop_front() {
            self.emit(c, held);
        }
    }

    /// A peer follows the log: outputs wait for its acks.
    fn protected(&self) -> bool {
        matches!(
            self.state,
            Protection::Protected { .. } | Protection::Migrating { .. }
        )
    }
}

/// Where the hand-over of a migration stands.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Handoff {
    Idle,
    /// `Handoff` is on its way: a failure now is no reason to resume.
    Sent,
    /// The target runs the VM.
    Taken,
    /// The target failed after `Handoff` was sent.
    Failed(String),
}

/// A hand-over for the journal to make: the target, and where the
/// guest's pause (or the failure) goes.
type HandoffRequest = (String, mpsc::Sender<Result<Duration, MigrationError>>);

/// What a migration took.
#[derive(Clone, Debug)]
pub struct MigrationReport {
    /// Sending the VM (pre-copy rounds; `sync.pause` is the guest's pause
    /// for the last round).
    pub sync: SyncReport,
    /// From the target being ready until it had caught up.
    pub catch_up: Duration,
    /// The guest's pause at the hand-over: from the last instruction here
    /// to the target's `Taken`.
    pub handoff_pause: Duration,
    /// The icount of the hand-over.
    pub icount: u64,
    /// From the command to the end.
    pub total: Duration,
}

/// The records for the current backup.
#[derive(Default)]
struct Outbox {
    /// Encoded frames, each chunk at most about [`MAX_BATCH`] bytes.
    chunks: VecDeque<Vec<u8>>,
    /// No more records will come (the run ended).
    closed: bool,
    /// The connection is gone (or none yet): records are dropped.
    dead: bool,
}

/// What is known about the VM for a backup's Hello.
pub struct VmShape {
    pub vm_uuid: [u8; 16],
    /// The CLI's VM setup, opaque here.
    pub setup: Vec<u8>,
    pub images_len: u64,
    pub memory: u64,
    pub disks: Vec<DiskShape>,
}

struct Shared {
    config: FtConfig,
    /// The span the primary was made in (the VM's): its threads log in it.
    span: tracing::Span,
    /// The VM's clock rate.
    rate: machine::InstructionsPerTick,
    /// `None`: the VM can be migrated but not protected.
    arbiter: Option<Arbiter>,
    tls: Option<TlsIdentity>,
    shape: VmShape,
    /// The arbiter generation this side runs under.
    generation: AtomicU64,
    /// Tells the runner to stop (fenced) or to step soon (sync work).
    events: Mutex<mpsc::Sender<HostEvent>>,
    hold: Mutex<Hold>,
    outbox: Mutex<Outbox>,
    outbox_ready: Condvar,
    /// A sync the journal should start at its next step.
    sync_request: Mutex<Option<SyncRequest>>,
    /// An output was held since the journal last shipped a record.
    output_pending: AtomicBool,
    /// Icount of the last record queued (acks may not claim more).
    queued_icount: AtomicU64,
    /// The run ended: the backup closing the connection is expected.
    ending: AtomicBool,
    /// Icount the backup reported having executed to.
    backup_executed: AtomicU64,
    /// The machine's icount at its last step (for status).
    icount: AtomicU64,
    /// Bumped for every backup, so threads of a lost one retire.
    session: AtomicU64,
    /// Log bytes sent to the current backup, and since when.
    log: Mutex<LogMeter>,
    /// What the current (or last) peer was sent the VM for.
    purpose: Mutex<Purpose>,
    /// The current peer's connection (to cancel a migration, and for the
    /// hand-over).
    link: Mutex<Option<Sender>>,
    /// A migration was cancelled.
    cancelled: AtomicBool,
    /// Why the last peer failed (for the migration's error).
    last_failure: Mutex<Option<String>>,
    /// A hand-over the journal should make at its next step, and where
    /// its result goes.
    handoff_request: Mutex<Option<HandoffRequest>>,
    handoff: Mutex<Handoff>,
    handoff_changed: Condvar,
    /// Flow control's bound on the peer's lag now: the configured one, or
    /// [`HANDOFF_LAG`] while a migration's target catches up (the guest is
    /// slowed to the target's pace, so the gap closes).
    max_lag: AtomicU64,
}

#[derive(Default)]
struct LogMeter {
    stats: Option<Arc<link::LinkStats>>,
    /// Link bytes already sent when protection began (the sync).
    base: u64,
    since: Option<Instant>,
    /// Guest icount when protection began.
    icount: u64,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // The data stays consistent at every point a panic could occur.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A VM that can be protected by a backup: the handle the CLI keeps
/// (status, adding a backup, whether it was fenced).
#[derive(Clone)]
pub struct FtPrimary {
    shared: Arc<Shared>,
    anchor: Instant,
}

/// What `lockstep ft status` shows.
#[derive(Clone, Debug)]
pub struct Status {
    pub protection: Protection,
    pub generation: u64,
    pub icount: u64,
    /// Instructions the backup has yet to execute.
    pub lag: u64,
    /// Flow control's limit on `lag`.
    pub max_lag: u64,
    /// The VM's clock rate (turns instructions into guest time).
    pub instructions_per_tick: machine::InstructionsPerTick,
    pub held_outputs: usize,
    pub held_bytes: usize,
    /// Log bytes sent to the current (or last) backup since it began
    /// protecting, over how long (host seconds) and how many instructions.
    pub log_bytes: u64,
    pub log_seconds: f64,
    pub log_instructions: u64,
}

/// The output sink of an FT-capable VM.
struct HoldOutput {
    shared: Arc<Shared>,
}

impl Output for HoldOutput {
    fn emit(&mut self, icount: u64, event: OutputEvent<'_>) {
        let mut hold = lock(&self.shared.hold);
        match hold.state {
            Protection::Unprotected | Protection::Syncing { .. } => hold.sink.emit(icount, event),
            Protection::Fenced(_) | Protection::Migrated { .. } => {}
            Protection::Protected { .. } | Protection::Migrating { .. }
                if hold.queue.is_empty() && icount <= hold.acked =>
            {
                hold.sink.emit(icount, event)
            }
            Protection::Protected { .. } | Protection::Migrating { .. } => {
                let held = match event {
                    OutputEvent::Console(bytes) => Held::Console(bytes.to_vec()),
                    OutputEvent::Net { nic, frame } => Held::Net {
                        nic,
                        frame: frame.to_vec(),
                    },
                };
                hold.queue.push_back((icount, held));
                self.shared.output_pending.store(true, Ordering::Relaxed);
            }
        }
    }
}

/// A backup that went live and runs on as a primary.
#[derive(Clone, Copy, Debug)]
pub struct Resumed {
    /// The arbiter generation it won.
    pub generation: u64,
    /// The host instant of guest `mtime` 0 on the old primary's clock
    /// ([`crate::Live::anchor`]), if usable here.
    pub anchor: Option<Instant>,
}

/// Make `machine` an FT-capable primary, unprotected until a backup is
/// added: under the arbiter's current generation, or `resumed`, a live
/// backup's. Its outputs go through the returned handle's hold from now
/// on; the journal must be the runner's, and the runner should pace from
/// [`FtPrimary::anchor`]. `events` reaches the runner.
pub fn protectable(
    machine: &mut Machine,
    arbiter: Option<Arbiter>,
    resumed: Option<Resumed>,
    shape: VmShape,
    config: FtConfig,
    tls: Option<TlsIdentity>,
    events: mpsc::Sender<HostEvent>,
) -> Result<(PrimaryJournal, FtPrimary), FtError> {
    let generation = match (resumed, &arbiter) {
        (Some(r), _) => r.generation,
        (None, Some(arbiter)) => arbiter.generation()?,
        (None, None) => 0,
    };
    let sink = machine.replace_output(Box::new(machine::NullOutput));
    let rate = machine.config().instructions_per_tick;
    let shared = Arc::new(Shared {
        span: tracing::Span::current(),
        rate,
        config,
        arbiter,
        tls,
        shape,
        generation: AtomicU64::new(generation),
        events: Mutex::new(events),
        hold: Mutex::new(Hold {
            queue: VecDeque::new(),
            sink,
            state: Protection::Unprotected,
            acked: 0,
        }),
        outbox: Mutex::new(Outbox {
            dead: true,
            ..Outbox::default()
        }),
        outbox_ready: Condvar::new(),
        sync_request: Mutex::new(None),
        output_pending: AtomicBool::new(false),
        queued_icount: AtomicU64::new(machine.icount()),
        ending: AtomicBool::new(false),
        backup_executed: AtomicU64::new(machine.icount()),
        icount: AtomicU64::new(machine.icount()),
        session: AtomicU64::new(0),
        log: Mutex::default(),
        purpose: Mutex::new(Purpose::Protect),
        link: Mutex::new(None),
        cancelled: AtomicBool::new(false),
        last_failure: Mutex::new(None),
        handoff_request: Mutex::new(None),
        handoff: Mutex::new(Handoff::Idle),
        handoff_changed: Condvar::new(),
        max_lag: AtomicU64::new(config.max_lag),
    });
    // Outputs are hashed in the order the machine emits them (before the
    // hold), exactly as a recording does, for the backup to compare.
    let windows: SharedWindows = Arc::default();
    machine.replace_output(Box::new(TeeOutput::new(
        Box::new(HoldOutput {
            shared: Arc::clone(&shared),
        }),
        Arc::clone(&windows),
    )));
    let guest = Duration::from_nanos(machine.mtime().saturating_mul(machine::NS_PER_TICK));
    let now = Instant::now();
    let journal = PrimaryJournal {
        shared: Arc::clone(&shared),
        encoder: Encoder::resume(0, machine.icount()),
        windows,
        next_checkpoint: u64::MAX,
        last_progress: now,
        sync: None,
    };
    let anchor = resumed
        .and_then(|r| r.anchor)
        .unwrap_or_else(|| now.checked_sub(guest).unwrap_or(now));
    let primary = FtPrimary { shared, anchor };
    Ok((journal, primary))
}

impl FtPrimary {
    /// The host instant of guest `mtime` 0 sent to backups: the runner
    /// should pace from it too, so a backup going live continues the same
    /// clock.
    pub fn anchor(&self) -> Instant {
        self.anchor
    }

    /// Why this side halted, if a backup took over.
    pub fn fenced(&self) -> Option<String> {
        match &lock(&self.shared.hold).state {
            Protection::Fenced(why) => Some(why.clone()),
            _ => None,
        }
    }

    /// Where the VM went, if it was migrated.
    pub fn migrated(&self) -> Option<String> {
        match &lock(&self.shared.hold).state {
            Protection::Migrated { target } => Some(target.clone()),
            _ => None,
        }
    }

    pub fn status(&self) -> Status {
        let s = &self.shared;
        let hold = lock(&s.hold);
        let icount = s.icount.load(Ordering::Acquire);
        let protected = hold.protected();
        let log = lock(&s.log);
        // The figures of the last backup stay until the next one joins.
        let (log_bytes, log_seconds, log_instructions) = match (&log.stats, log.since) {
            (Some(stats), Some(since)) => (
                stats.bytes_sent().saturating_sub(log.base),
                since.elapsed().as_secs_f64(),
                icount.saturating_sub(log.icount),
            ),
            _ => (0, 0.0, 0),
        };
        Status {
            protection: hold.state.clone(),
            generation: s.generation.load(Ordering::Acquire),
            icount,
            lag: if protected {
                icount.saturating_sub(s.backup_executed.load(Ordering::Acquire))
            } else {
                0
            },
            max_lag: s.max_lag.load(Ordering::Acquire),
            instructions_per_tick: s.rate,
            held_outputs: hold.queue.len(),
            held_bytes: hold.queue.iter().map(|(_, h)| h.len()).sum(),
            log_bytes,
            log_seconds,
            log_instructions,
        }
    }

    /// Connect a new backup at `addr` and send it the running machine;
    /// returns once it follows (or why not). `progress` hears about each
    /// round. The VM runs meanwhile, unprotected until the last round.
    pub fn add_backup(
        &self,
        addr: &str,
        progress: &mut dyn FnMut(&SyncUpdate),
    ) -> Result<SyncReport, FtError> {
        if self.shared.arbiter.is_none() {
            return Err(BusyError::NoArbiter.into());
        }
        self.begin_sync(addr, Purpose::Protect)?;
        self.sync_and_revert(addr, progress)
    }

    /// Claim the VM for a new peer at `addr` (it must be unprotected).
    fn begin_sync(&self, addr: &str, purpose: Purpose) -> Result<(), BusyError> {
        let s = &self.shared;
        let mut hold = lock(&s.hold);
        match &hold.state {
            Protection::Unprotected => {}
            Protection::Syncing { backup } => {
                return Err(BusyError::Syncing {
                    backup: backup.clone(),
                })
            }
            Protection::Protected { backup } => {
                return Err(BusyError::Protected {
                    backup: backup.clone(),
                })
            }
            Protection::Migrating { target } => {
                return Err(BusyError::Migrating {
                    target: target.clone(),
                })
            }
            Protection::Migrated { target } => {
                return Err(BusyError::Fenced {
                    why: format!("migrated to {target}"),
                })
            }
            Protection::Fenced(why) => return Err(BusyError::Fenced { why: why.clone() }),
        }
        hold.state = Protection::Syncing {
            backup: addr.to_string(),
        };
        *lock(&s.purpose) = purpose;
        *lock(&s.last_failure) = None;
        *lock(&s.handoff) = Handoff::Idle;
        s.cancelled.store(false, Ordering::Release);
        Ok(())
    }

    /// Send the VM to `addr`; on failure the VM is unprotected again.
    fn sync_and_revert(
        &self,
        addr: &str,
        progress: &mut dyn FnMut(&SyncUpdate),
    ) -> Result<SyncReport, FtError> {
        let s = &self.shared;
        let result = self.sync_to(addr, progress);
        if result.is_err() {
            let mut hold = lock(&s.hold);
            if matches!(hold.state, Protection::Syncing { .. }) {
                hold.state = Protection::Unprotected;
            }
            drop(hold);
            lock(&s.link).take();
        }
        result
    }

    /// Live migration: send the running VM to the migration target at
    /// `addr` (`lockstep ft backup --incoming`) as to a backup, let it
    /// follow until it has caught up, then stop the guest here and hand it
    /// over: the target runs it from the next instruction, and this side
    /// ends ([`FtPrimary::migrated`]). Until the hand-over, a failure (or
    /// [`FtPrimary::cancel_migration`]) leaves the VM running here.
    pub fn migrate(
        &self,
        addr: &str,
        progress: &mut dyn FnMut(&SyncUpdate),
    ) -> Result<MigrationReport, FtError> {
        let started = Instant::now();
        let s = &self.shared;
        self.begin_sync(addr, Purpose::Migrate)
            .map_err(MigrationError::Busy)?;
        let sync = match self.sync_and_revert(addr, progress) {
            Ok(report) => report,
            Err(_) if s.cancelled.load(Ordering::Acquire) => {
                return Err(MigrationError::Cancelled.into())
            }
            Err(e) => return Err(e),
        };
        let ready = Instant::now();
        // Catch up: the hand-over pauses the guest for as long as the
        // target needs to execute what it has not yet. Flow control holds
        // the guest to the target's pace meanwhile (a replay runs about as
        // fast as the guest: unthrottled, the gap would hardly close).
        s.max_lag.store(HANDOFF_LAG, Ordering::Release);
        let _restore = RestoreMaxLag(s);
        loop {
            let state = lock(&s.hold).state.clone();
            if !matches!(state, Protection::Migrating { .. }) {
                let why = lock(&s.last_failure)
                    .clone()
                    .unwrap_or_else(|| "it stopped following".into());
                return Err(self.migration_ended(addr, why));
            }
            if s.cancelled.load(Ordering::Acquire) {
                self.abandon("the migration was cancelled");
                return Err(MigrationError::Cancelled.into());
            }
            let icount = s.icount.load(Ordering::Acquire);
            if icount.saturating_sub(s.backup_executed.load(Ordering::Acquire)) <= HANDOFF_LAG {
                break;
            }
            if ready.elapsed() >= CATCH_UP_WITHIN {
                self.abandon("the target did not catch up");
                return Err(MigrationError::CatchUp {
                    target: addr.to_string(),
                    within: CATCH_UP_WITHIN,
                }
                .into());
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        let catch_up = ready.elapsed();
        let (reply, result) = mpsc::channel();
        *lock(&s.handoff_request) = Some((addr.to_string(), reply));
        let _ = lock(&s.events).send(HostEvent::Wake);
        let handoff_pause = match result.recv() {
            Ok(Ok(pause)) => pause,
            Ok(Err(e)) => return Err(e.into()),
            Err(_) => return Err(MigrationError::VmStopped.into()),
        };
        Ok(MigrationReport {
            sync,
            catch_up,
            handoff_pause,
            icount: s.icount.load(Ordering::Acquire),
            total: started.elapsed(),
        })
    }

    /// Cancel a migration before its hand-over (after it, too late: the
    /// hand-over takes milliseconds). The VM runs on here.
    pub fn cancel_migration(&self) -> Result<(), MigrationError> {
        let s = &self.shared;
        let state = lock(&s.hold).state.clone();
        match state {
            Protection::Syncing { .. } | Protection::Migrating { .. }
                if *lock(&s.purpose) == Purpose::Migrate =>
            {
                if *lock(&s.handoff) != Handoff::Idle {
                    return Err(MigrationError::Busy(BusyError::Fenced {
                        why: "the hand-over has begun".into(),
                    }));
                }
                s.cancelled.store(true, Ordering::Release);
                // Sync and catch-up notice the closed link.
                if let Some(link) = lock(&s.link).as_ref() {
                    link.close();
                }
                Ok(())
            }
            _ => Err(MigrationError::Busy(BusyError::Fenced {
                why: "no migration is under way".into(),
            })),
        }
    }

    /// The error for a migration whose target stopped following.
    fn migration_ended(&self, addr: &str, why: String) -> FtError {
        if self.shared.cancelled.load(Ordering::Acquire) {
            MigrationError::Cancelled.into()
        } else {
            MigrationError::TargetFailed {
                target: addr.to_string(),
                why,
            }
            .into()
        }
    }

    fn abandon(&self, why: &str) {
        abandon(&self.shared, why);
    }

    fn sync_to(
        &self,
        addr: &str,
        progress: &mut dyn FnMut(&SyncUpdate),
    ) -> Result<SyncReport, FtError> {
        let s = &self.shared;
        let (tx, mut rx) = channel::connect(addr, s.tls.as_ref()).map_err(|e| match e {
            FtError::Link(source) => FtError::Connect {
                addr: addr.to_string(),
                source,
            },
            other => other,
        })?;
        let hello = Hello {
            lockstep_version: crate::wire::LOCKSTEP_VERSION.to_string(),
            generation: s.generation.load(Ordering::Acquire),
            anchor_unix_ns: unix_ns_of(self.anchor),
            vm_uuid: s.shape.vm_uuid,
            images_len: s.shape.images_len,
            memory: s.shape.memory,
            instructions_per_tick: s.rate,
            disks: s.shape.disks.clone(),
            purpose: *lock(&s.purpose),
            setup: s.shape.setup.clone(),
        };
        *lock(&s.link) = Some(tx.clone());
        tx.send(&Message::Hello(hello))?;
        match rx.expect(HANDSHAKE_TIMEOUT, "Welcome")? {
            Message::Welcome(Ok(())) => {}
            Message::Welcome(Err(reason)) => {
                return Err(FtError::Refused {
                    backup: addr.to_string(),
                    reason,
                })
            }
            other => {
                return Err(HandshakeError::NotWelcome {
                    got: other.describe(),
                }
                .into())
            }
        }
        let (updates, updated) = mpsc::channel();
        *lock(&s.sync_request) = Some(SyncRequest {
            tx: tx.clone(),
            updates,
        });
        // The journal does the work at its steps: keep the runner stepping
        // even when the guest idles.
        let wake = || {
            let _ = lock(&s.events).send(HostEvent::Wake);
        };
        wake();
        let report = loop {
            match updated.recv_timeout(Duration::from_millis(5)) {
                Ok(SyncUpdate::Done(report)) => break report,
                Ok(SyncUpdate::Failed(SendError::VmStopped)) => {
                    tx.close();
                    return Err(SyncError::VmStopped.into());
                }
                Ok(SyncUpdate::Failed(why)) => {
                    tx.close();
                    return Err(SyncError::Send(why).into());
                }
                Ok(update) => progress(&update),
                Err(RecvTimeoutError::Timeout) => wake(),
                Err(RecvTimeoutError::Disconnected) => {
                    tx.close();
                    return Err(SyncError::VmStopped.into());
                }
            }
        };
        let ready = self.follow_backup(tx, rx, addr);
        match ready.recv_timeout(HANDSHAKE_TIMEOUT) {
            Ok(Ok(())) => Ok(report),
            Ok(Err(why)) => Err(SyncError::BackupNotReady(why).into()),
            Err(_) => Err(SyncError::NoReady.into()),
        }
    }

    /// The machine is with the backup and outputs are held from
    /// `report.icount`: start the threads that ship the log and take acks.
    /// The receiver hears whether the backup restored the machine.
    fn follow_backup(
        &self,
        tx: Sender,
        rx: Receiver,
        addr: &str,
    ) -> mpsc::Receiver<Result<(), BackupFailure>> {
        let s = &self.shared;
        let session = s.session.load(Ordering::Acquire);
        {
            let mut log = lock(&s.log);
            let stats = tx.stats();
            log.base = stats.bytes_sent();
            log.stats = Some(stats);
            log.since = Some(Instant::now());
            log.icount = s.icount.load(Ordering::Acquire);
        }
        let heartbeat = s.config.heartbeat();
        {
            let shared = Arc::clone(s);
            let tx = tx.clone();
            std::thread::spawn(move || {
                let _span = shared.span.clone().entered();
                send_loop(&tx, &shared, heartbeat, session)
            });
        }
        let shared = Arc::clone(s);
        let (ready_tx, ready) = mpsc::channel();
        let addr = addr.to_string();
        std::thread::spawn(move || {
            let _span = shared.span.clone().entered();
            ack_loop(&tx, rx, &shared, session, &addr, &ready_tx)
        });
        ready
    }
}

/// The UNIX time (ns) of the host instant `at`.
fn unix_ns_of(at: Instant) -> u64 {
    let ago = at.elapsed();
    SystemTime::now()
        .checked_sub(ago)
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

/// Sends the outbox as batches; an empty batch every `heartbeat` when
/// there is nothing else.
fn send_loop(tx: &Sender, shared: &Shared, heartbeat: Duration, session: u64) {
    loop {
        let frames = {
            let mut outbox = lock(&shared.outbox);
            if outbox.chunks.is_empty() && !outbox.closed && !outbox.dead {
                outbox = shared
                    .outbox_ready
                    .wait_timeout(outbox, heartbeat)
                    .unwrap_or_else(PoisonError::into_inner)
                    .0;
            }
            if outbox.dead || shared.session.load(Ordering::Acquire) != session {
                return;
            }
            match outbox.chunks.pop_front() {
                Some(chunk) => chunk,
                None if outbox.closed => return,
                None => Vec::new(),
            }
        };
        let released = lock(&shared.hold).acked;
        if tx.send(&Message::Batch { released, frames }).is_err() {
            // The reader thread notices the dead connection and acts.
            lock(&shared.outbox).dead = true;
            return;
        }
    }
}

/// Takes the backup's acks, releasing outputs, and its Ready; on the
/// backup's failure, arbitrates.
fn ack_loop(
    tx: &Sender,
    mut rx: Receiver,
    shared: &Shared,
    session: u64,
    addr: &str,
    ready: &mpsc::Sender<Result<(), BackupFailure>>,
) {
    let (failure, restored) = match follow_acks(&mut rx, shared, addr, ready) {
        AckEnd::Taken => {
            set_handoff(shared, Handoff::Taken);
            return;
        }
        AckEnd::Failed { why, restored } => (why, restored),
    };
    // The typed failure goes to whoever waits for Ready; the rest keep
    // its words (status, the journal's hand-over, the log).
    let why = failure.to_string();
    if !restored {
        let _ = ready.send(Err(failure));
    }
    let failure = why;
    if *lock(&shared.handoff) == Handoff::Sent {
        // The target may have gone live: the journal decides.
        tx.close();
        set_handoff(shared, Handoff::Failed(failure));
        return;
    }
    if shared.ending.load(Ordering::Acquire) || shared.session.load(Ordering::Acquire) != session {
        return;
    }
    tx.close();
    lock(&shared.outbox).dead = true;
    shared.outbox_ready.notify_all();
    *lock(&shared.last_failure) = Some(failure.clone());
    if *lock(&shared.purpose) == Purpose::Migrate {
        target_failed(shared, &failure);
    } else {
        backup_failed(shared, &failure);
    }
}

/// Puts flow control back to the configured bound when dropped.
struct RestoreMaxLag<'a>(&'a Shared);

impl Drop for RestoreMaxLag<'_> {
    fn drop(&mut self) {
        self.0
            .max_lag
            .store(self.0.config.max_lag, Ordering::Release);
    }
}

/// Drop the migration target before the hand-over: the VM runs on here,
/// unprotected.
fn abandon(s: &Shared, why: &str) {
    s.session.fetch_add(1, Ordering::AcqRel);
    if let Some(link) = lock(&s.link).take() {
        link.close();
    }
    lock(&s.outbox).dead = true;
    s.outbox_ready.notify_all();
    let mut hold = lock(&s.hold);
    hold.release_all();
    hold.state = Protection::Unprotected;
    tracing::info!(
        event = "migration_abandoned",
        why,
        "FT primary: migration abandoned"
    );
}

fn set_handoff(shared: &Shared, to: Handoff) {
    *lock(&shared.handoff) = to;
    shared.handoff_changed.notify_all();
}

/// A migration target that fails before the hand-over never goes live:
/// the VM runs on here, unprotected, without asking an arbiter.
fn target_failed(shared: &Shared, failure: &str) {
    let mut hold = lock(&shared.hold);
    hold.release_all();
    hold.state = Protection::Unprotected;
    drop(hold);
    shared.session.fetch_add(1, Ordering::AcqRel);
    lock(&shared.link).take();
    tracing::info!(
        event = "migration_failed",
        why = %failure,
        "FT primary: the migration target failed; the VM runs on here"
    );
}

/// How following the acks ended.
enum AckEnd {
    /// The migration target took the VM.
    Taken,
    /// The peer failed; whether it had said Ready.
    Failed { why: BackupFailure, restored: bool },
}

/// Acks (and the one Ready) until the backup fails (why it did, and
/// whether it had said Ready) or a migration target takes the VM.
fn follow_acks(
    rx: &mut Receiver,
    shared: &Shared,
    addr: &str,
    ready: &mpsc::Sender<Result<(), BackupFailure>>,
) -> AckEnd {
    let timeout = shared.config.timeout;
    let mut last_heard = Instant::now();
    let mut restored = false;
    loop {
        let failure = match rx.recv(shared.config.heartbeat()) {
            Ok(Got::Message(Message::Ack {
                icount, executed, ..
            })) => {
                let queued = shared.queued_icount.load(Ordering::Acquire);
                if icount > queued {
                    BackupFailure::AckedAhead { icount, queued }
                } else {
                    last_heard = Instant::now();
                    shared
                        .backup_executed
                        .store(executed.min(icount), Ordering::Release);
                    lock(&shared.hold).release_through(icount);
                    continue;
                }
            }
            Ok(Got::Message(Message::Alive)) if !restored => {
                last_heard = Instant::now();
                continue;
            }
            Ok(Got::Message(Message::Ready(Ok(())))) if !restored => {
                restored = true;
                last_heard = Instant::now();
                let _ = ready.send(Ok(()));
                continue;
            }
            Ok(Got::Message(Message::Ready(Err(why)))) if !restored => BackupFailure::NotReady {
                backup: addr.to_string(),
                reason: why,
            },
            Ok(Got::Message(Message::Taken)) if *lock(&shared.handoff) == Handoff::Sent => {
                return AckEnd::Taken
            }
            Ok(Got::Message(other)) => BackupFailure::Unexpected {
                got: other.describe(),
            },
            Ok(Got::Nothing) if last_heard.elapsed() >= timeout => {
                BackupFailure::Silent { within: timeout }
            }
            Ok(Got::Nothing) => continue,
            Ok(Got::Closed) => BackupFailure::Closed,
            Err(e) => BackupFailure::Channel(Box::new(e)),
        };
        return AckEnd::Failed {
            why: failure,
            restored,
        };
    }
}

fn backup_failed(shared: &Shared, failure: &str) {
    let halt = |why: String| {
        tracing::info!(event = "fenced", why = %why, "FT primary: halting");
        eprint!("\r\nlockstep: FT primary: {why}: halting\r\n");
        let mut hold = lock(&shared.hold);
        hold.queue.clear();
        hold.state = Protection::Fenced(why);
        drop(hold);
        let _ = lock(&shared.events).send(HostEvent::Stop);
    };
    let generation = shared.generation.load(Ordering::Acquire);
    let Some(arbiter) = &shared.arbiter else {
        // Only migration targets follow a VM without an arbiter.
        return halt(format!("backup lost ({failure}) and there is no arbiter"));
    };
    match arbiter.claim(generation) {
        Ok(Claim::Won(next)) => {
            shared.generation.store(next, Ordering::Release);
            let mut hold = lock(&shared.hold);
            hold.release_all();
            hold.state = Protection::Unprotected;
            drop(hold);
            shared.session.fetch_add(1, Ordering::AcqRel);
            tracing::info!(
                event = "backup_lost",
                why = %failure,
                arbiter = "won",
                generation = next,
                previous_generation = generation,
                "FT primary: backup lost; running unprotected"
            );
            eprint!("\r\nlockstep: FT primary: backup lost ({failure}); won arbiter generation {next}; running unprotected\r\n");
        }
        Ok(Claim::Lost(current)) => {
            tracing::info!(
                event = "backup_lost",
                why = %failure,
                arbiter = "lost",
                generation = current,
                previous_generation = generation,
                "FT primary: backup lost and it took over"
            );
            halt(format!(
                "backup lost ({failure}) and it took over (arbiter generation {current})"
            ))
        }
        Err(e) => halt(format!(
            "backup lost ({failure}) and the arbiter is unusable: {e}"
        )),
    }
}

/// The runner's journal on an FT-capable VM.
pub struct PrimaryJournal {
    shared: Arc<Shared>,
    encoder: Encoder,
    /// Output hashed since the last record, shipped as `Output` records.
    windows: SharedWindows,
    next_checkpoint: u64,
    last_progress: Instant,
    /// A sync in progress.
    sync: Option<SyncJob>,
}

impl PrimaryJournal {
    /// Queue one record, after the output windows it closes (as a
    /// recording does); `ship` wakes the writer.
    fn push(&mut self, icount: u64, kind: &RecordKind, ship: bool) -> Result<(), JournalError> {
        let windows = lock::<OutputWindows>(&self.windows).take();
        let mut outbox = lock(&self.shared.outbox);
        if outbox.dead {
            return Ok(());
        }
        for w in windows {
            let output = RecordKind::Output {
                channel: w.channel,
                len: w.len,
                hash: w.hash,
            };
            encode(&mut self.encoder, &mut outbox, icount, &output)?;
        }
        encode(&mut self.encoder, &mut outbox, icount, kind)?;
        self.shared.queued_icount.store(icount, Ordering::Release);
        drop(outbox);
        if ship {
            self.shared.outbox_ready.notify_one();
        }
        Ok(())
    }

    fn protected(&self) -> bool {
        lock(&self.shared.hold).protected()
    }

    /// Flow control: while the backup has executed more than `max_lag`
    /// instructions less than this side, wait for it (a lagging backup
    /// would take that long to go live). Never longer than the failure
    /// timeout at a time: failure detection is the ack thread's business.
    fn wait_for_backup(&self, icount: u64) {
        let max_lag = self.shared.max_lag.load(Ordering::Acquire);
        let lagging =
            || icount.saturating_sub(self.shared.backup_executed.load(Ordering::Acquire)) > max_lag;
        if !lagging() {
            return;
        }
        self.shared.outbox_ready.notify_one();
        let started = Instant::now();
        let deadline = started + self.shared.config.timeout;
        while lagging() && Instant::now() < deadline && !lock(&self.shared.outbox).dead {
            std::thread::sleep(Duration::from_millis(1));
        }
        tracing::debug!(
            event = "flow_control",
            icount,
            max_lag,
            backup_executed = self.shared.backup_executed.load(Ordering::Acquire),
            waited_us = started.elapsed().as_micros() as u64,
            "FT primary: waited for the backup to catch up"
        );
    }

    /// One slice of a sync in progress; at its end, protection begins.
    fn sync_step(&mut self, machine: &mut Machine) {
        if self.sync.is_none() {
            let request = lock(&self.shared.sync_request).take();
            if let Some(request) = request {
                let images_len = self.shared.shape.images_len;
                self.sync = Some(SyncJob::start(machine, request, images_len));
            }
        }
        let Some(job) = &mut self.sync else {
            return;
        };
        match job.step(machine, self.shared.shape.vm_uuid) {
            Ok(None) => {}
            Ok(Some(report)) => {
                if let Some(job) = self.sync.take() {
                    tracing::info!(
                        event = "protected",
                        rounds = report.rounds,
                        bytes = report.bytes,
                        pause_us = report.pause.as_micros() as u64,
                        total_ms = report.total.as_millis() as u64,
                        icount = report.icount,
                        "FT primary: protected"
                    );
                    self.begin_protection(machine);
                    job.done(machine, report);
                }
            }
            Err(why) => {
                if let Some(job) = self.sync.take() {
                    tracing::info!(event = "sync_failed", why = %why, "FT primary: sending the VM failed");
                    job.fail(machine, why);
                }
            }
        }
    }

    /// The backup has the machine as it is now: log from here, hold
    /// outputs from here.
    fn begin_protection(&mut self, machine: &mut Machine) {
        let icount = machine.icount();
        let s = &self.shared;
        s.session.fetch_add(1, Ordering::AcqRel);
        self.encoder = Encoder::resume(0, icount);
        lock::<OutputWindows>(&self.windows).take();
        let every = s.config.checkpoint_every.max(1);
        self.next_checkpoint = next_multiple(icount, every);
        s.queued_icount.store(icount, Ordering::Release);
        s.backup_executed.store(icount, Ordering::Release);
        s.icount.store(icount, Ordering::Release);
        s.ending.store(false, Ordering::Release);
        *lock(&s.outbox) = Outbox::default();
        let purpose = *lock(&s.purpose);
        let mut hold = lock(&s.hold);
        hold.acked = icount;
        if let Protection::Syncing { backup } = &hold.state {
            hold.state = match purpose {
                Purpose::Protect => Protection::Protected {
                    backup: backup.clone(),
                },
                Purpose::Migrate => Protection::Migrating {
                    target: backup.clone(),
                },
            };
        }
    }

    /// The hand-over of a migration, with the guest stopped (the runner's
    /// thread is here): a last checkpoint, every record acknowledged and
    /// every output released, then `Handoff`, and wait for `Taken`. Returns
    /// the guest's pause. A failure before `Handoff` left lets the VM run
    /// on here; one after it leaves the hand-over in doubt, and this side
    /// halts (the target may run the VM: two copies must never run).
    fn hand_off(
        &mut self,
        machine: &mut Machine,
        target: String,
    ) -> Result<Duration, MigrationError> {
        let paused = Instant::now();
        let s = Arc::clone(&self.shared);
        let failed = |why: String| MigrationError::TargetFailed {
            target: target.clone(),
            why,
        };
        let stopped_following = || {
            lock(&s.last_failure)
                .clone()
                .unwrap_or_else(|| "it stopped following".into())
        };
        if !matches!(lock(&s.hold).state, Protection::Migrating { .. }) {
            return Err(failed(stopped_following()));
        }
        let icount = machine.icount();
        let state_hash = machine
            .state_hash()
            .map_err(|e| failed(format!("the VM's state cannot be hashed: {e}")))?;
        self.push(icount, &RecordKind::Checkpoint { state_hash }, true)
            .map_err(|e| failed(e.to_string()))?;
        // Every record acknowledged (so every output up to here released).
        let deadline = Instant::now() + s.config.timeout;
        loop {
            let hold = lock(&s.hold);
            if !hold.protected() {
                drop(hold);
                return Err(failed(stopped_following()));
            }
            if hold.acked >= icount && hold.queue.is_empty() {
                break;
            }
            drop(hold);
            if Instant::now() >= deadline {
                abandon(&s, "the target did not acknowledge the last records");
                return Err(failed(format!(
                    "no acknowledgement of the last records within {} ms",
                    s.config.timeout.as_millis()
                )));
            }
            std::thread::sleep(Duration::from_micros(100));
        }
        let link = lock(&s.link).clone();
        let Some(link) = link else {
            return Err(failed("its connection is gone".into()));
        };
        // From here on a failure is no reason to resume.
        set_handoff(&s, Handoff::Sent);
        lock(&s.outbox).closed = true;
        s.outbox_ready.notify_all();
        if let Err(e) = link.send(&Message::Handoff {
            icount,
            released: icount,
        }) {
            // Not sent whole: the target cannot have taken it.
            set_handoff(&s, Handoff::Idle);
            abandon(&s, "the hand-over could not be sent");
            return Err(failed(e.to_string()));
        }
        let wait = s.config.timeout.max(Duration::from_secs(5));
        let mut handoff = lock(&s.handoff);
        let deadline = Instant::now() + wait;
        while *handoff == Handoff::Sent && Instant::now() < deadline {
            handoff = s
                .handoff_changed
                .wait_timeout(handoff, deadline.saturating_duration_since(Instant::now()))
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        let outcome = handoff.clone();
        drop(handoff);
        let pause = paused.elapsed();
        let mut hold = lock(&s.hold);
        hold.queue.clear();
        let result = match outcome {
            Handoff::Taken => {
                hold.state = Protection::Migrated {
                    target: target.clone(),
                };
                tracing::info!(
                    event = "migrated",
                    target = %target,
                    icount,
                    pause_us = pause.as_micros() as u64,
                    "FT primary: handed the VM over"
                );
                Ok(pause)
            }
            Handoff::Failed(why) => {
                hold.state =
                    Protection::Fenced(format!("the hand-over to {target} is in doubt: {why}"));
                Err(MigrationError::InDoubt { target, why })
            }
            Handoff::Sent | Handoff::Idle => {
                let why = format!("no Taken within {} ms", wait.as_millis());
                hold.state =
                    Protection::Fenced(format!("the hand-over to {target} is in doubt: {why}"));
                Err(MigrationError::InDoubt { target, why })
            }
        };
        drop(hold);
        link.close();
        s.session.fetch_add(1, Ordering::AcqRel);
        let _ = lock(&s.events).send(HostEvent::Stop);
        result
    }
}

/// Appends one record to the outbox's last chunk (or a new one).
fn encode(
    encoder: &mut Encoder,
    outbox: &mut Outbox,
    icount: u64,
    kind: &RecordKind,
) -> Result<(), JournalError> {
    if outbox.chunks.back().is_none_or(|c| c.len() >= MAX_BATCH) {
        outbox.chunks.push_back(Vec::new());
    }
    if let Some(chunk) = outbox.chunks.back_mut() {
        encoder.encode_next(icount, kind, chunk)?;
    }
    Ok(())
}

impl Journal for PrimaryJournal {
    fn input(&mut self, machine: &Machine, input: &machine::Input) -> Result<(), JournalError> {
        if !self.protected() {
            return Ok(());
        }
        let kind = RecordKind::Input(log_input(input)?);
        self.push(machine.icount(), &kind, false)
    }

    fn stepped(&mut self, machine: &mut Machine) -> Result<(), JournalError> {
        let icount = machine.icount();
        self.shared.icount.store(icount, Ordering::Release);
        self.sync_step(machine);
        let handoff = lock(&self.shared.handoff_request).take();
        if let Some((target, reply)) = handoff {
            let result = self.hand_off(machine, target);
            let _ = reply.send(result);
            return Ok(());
        }
        if !self.protected() {
            // Unprotected output windows are nobody's business.
            lock::<OutputWindows>(&self.windows).take();
            return Ok(());
        }
        if icount >= self.next_checkpoint {
            let every = self.shared.config.checkpoint_every.max(1);
            self.next_checkpoint = next_multiple(icount, every);
            let state_hash = machine.state_hash()?;
            self.push(icount, &RecordKind::Checkpoint { state_hash }, true)?;
        }
        let pending = self.shared.output_pending.swap(false, Ordering::Relaxed);
        let due = pending || self.last_progress.elapsed() >= self.shared.config.progress_every;
        if due {
            self.last_progress = Instant::now();
            if icount > self.encoder.last_icount() {
                self.push(icount, &RecordKind::Progress, true)?;
            } else {
                // The last record already covers this icount: just ship it.
                self.shared.outbox_ready.notify_one();
            }
        }
        self.wait_for_backup(icount);
        Ok(())
    }

    fn ended(&mut self, machine: &mut Machine, end: RunEnd) -> Result<(), JournalError> {
        let reason = match end {
            RunEnd::Poweroff(_) => StopReason::GuestPowerOff,
            // Ending at a reset is the host's choice (`--no-reboot`).
            RunEnd::Stopped | RunEnd::Reset => StopReason::HostStop,
            RunEnd::SaveRequested => return Ok(()),
        };
        if let Some(job) = self.sync.take() {
            job.fail(machine, SendError::VmStopped);
        }
        if let Some((_, reply)) = lock(&self.shared.handoff_request).take() {
            let _ = reply.send(Err(MigrationError::VmStopped));
        }
        if !self.protected() {
            return Ok(());
        }
        let icount = machine.icount();
        let state_hash = machine.state_hash()?;
        self.push(icount, &RecordKind::Checkpoint { state_hash }, false)?;
        self.push(
            icount,
            &RecordKind::Control(Control::PowerOff(reason)),
            true,
        )?;
        self.shared.ending.store(true, Ordering::Release);
        lock(&self.shared.outbox).closed = true;
        self.shared.outbox_ready.notify_all();
        // Give the backup a moment to acknowledge the end, so the last
        // outputs leave under the rule; then they leave regardless.
        let deadline = Instant::now() + Duration::from_secs(2);
        while Instant::now() < deadline {
            let hold = lock(&self.shared.hold);
            if hold.queue.is_empty() || !hold.protected() {
                return Ok(());
            }
            drop(hold);
            std::thread::sleep(Duration::from_millis(2));
        }
        let mut hold = lock(&self.shared.hold);
        if hold.protected() {
            hold.release_all();
        }
        Ok(())
    }
}

/// The first multiple of `every` (non-zero) after `icount`.
fn next_multiple(icount: u64, every: u64) -> u64 {
    (icount / every).saturating_add(1).saturating_mul(every)
}
