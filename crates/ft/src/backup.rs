//! The backup: receives the primary's machine (boot images, RAM, disk
//! replicas of its own, state; see [`crate::sync`]), restores it,
//! re-executes the primary's log as it streams in (exactly as `replay::session::replay`
//! does with a file, never past the last record received), and keeps the
//! outputs the primary may not have released yet. When the primary fails
//! it wins the arbiter, re-emits those outputs and hands back a machine
//! ready to run live.

use crate::arbiter::{Arbiter, Claim};
use crate::channel::{self, Got, Sender};
use crate::wire::{self, DiskShape, Hello, Message, Purpose, PAGE_ENTRY};
use crate::{
    garp, AcceptError, FtConfig, FtError, HandshakeError, MigrationError, ProtocolError, Refusal,
    RestoreError, SyncError,
};
use disk::BlockDevice;
use link::TlsIdentity;
use machine::snapshot::{Assembler, RestoreOptions};
use machine::{Machine, Output, OutputEvent};
use replay::session::{Follower, SharedWindows, TeeOutput};
use replay::{Control, Decoded, Decoder, Record, RecordKind, StopReason};
use std::collections::VecDeque;
use std::fs::File;
use std::net::TcpListener;
use std::os::unix::fs::{DirBuilderExt, FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// How often the backup reports execution progress when it has some.
const ACK_PROGRESS_EVERY: Duration = Duration::from_millis(5);

/// What the network thread hands the executing thread, in order.
enum Event {
    Records(Vec<Record>),
    /// The primary has released every output up to this icount.
    Released(u64),
    /// The primary is gone (or misbehaved): why, and when it was noticed.
    PrimaryLost(String, Instant),
    /// Migration: the primary handed the VM over at `icount`.
    Handoff {
        icount: u64,
        released: u64,
    },
}

/// How following the primary ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The primary stopped the VM itself (power-off or host stop); the
    /// backup re-executed it to the end.
    Ended(StopReason),
    /// The primary failed: the backup should go live (a migration target
    /// must not: its source runs on).
    PrimaryLost { reason: String, at: Instant },
    /// Migration: the primary stopped the VM at `icount` and handed it
    /// over; [`Backup::take_over`] runs it here.
    HandedOff { icount: u64 },
}

/// An output the primary may not have released.
struct Held {
    icount: u64,
    event: OwnedEvent,
}

enum OwnedEvent {
    Console(Vec<u8>),
    Net { nic: usize, frame: Vec<u8> },
}

#[derive(Default)]
struct HeldOutputs {
    queue: VecDeque<Held>,
    released: u64,
    /// Per NIC, the IPv4 address the guest last used as a source.
    ips: Vec<Option<[u8; 4]>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The backup machine's sink: drops what the primary released, keeps the
/// rest for re-emission, and learns the guest's IP addresses.
struct BackupOutput {
    held: Arc<Mutex<HeldOutputs>>,
    macs: Vec<[u8; 6]>,
}

impl Output for BackupOutput {
    fn emit(&mut self, icount: u64, event: OutputEvent<'_>) {
        let mut held = lock(&self.held);
        let owned = match event {
            OutputEvent::Console(bytes) => OwnedEvent::Console(bytes.to_vec()),
            OutputEvent::Net { nic, frame } => {
                if let Some(ip) = self
                    .macs
                    .get(nic)
                    .and_then(|mac| garp::source_ip(frame, mac))
                {
                    if held.ips.len() <= nic {
                        held.ips.resize(nic + 1, None);
                    }
                    held.ips[nic] = Some(ip);
                }
                OwnedEvent::Net {
                    nic,
                    frame: frame.to_vec(),
                }
            }
        };
        if icount > held.released {
            held.queue.push_back(Held {
                icount,
                event: owned,
            });
        }
    }
}

/// A backup following a primary.
pub struct Backup {
    machine: Machine,
    hello: Hello,
    events: Receiver<Event>,
    held: Arc<Mutex<HeldOutputs>>,
    /// `None` for a migration target.
    arbiter: Option<Arbiter>,
    /// The icount executed to, for the acks (the primary's flow control).
    executed: Arc<AtomicU64>,
    /// Re-executes the primary's records, checking its output windows.
    follower: Follower,
    /// The log channel, to close when this side stops following.
    link: Sender,
    /// Why this side stopped following (a divergence): it must not go live.
    failed: Option<String>,
    /// The disk replicas the machine runs on.
    replicas: Vec<PathBuf>,
}

/// Where a backup keeps what it receives.
pub struct BackupOptions<'a> {
    pub tls: Option<&'a TlsIdentity>,
    /// Directory for the disk replicas (and the transfer's temporary
    /// snapshot).
    pub replica_dir: &'a Path,
    pub config: FtConfig,
    /// The caller's own check of the primary's VM (e.g. that this host
    /// has a backend for each of its NICs); an `Err` refuses it, in the
    /// error's own words.
    pub accept: Option<&'a AcceptFn<'a>>,
    /// The most bytes of disk replicas a primary's VM may need here.
    pub max_replica_bytes: u64,
    /// What this side takes a VM for: to protect it (a backup, with an
    /// arbiter), or as a migration's target.
    pub purpose: Purpose,
}

/// See [`BackupOptions::accept`].
pub type AcceptFn<'a> = dyn Fn(&Hello) -> Result<(), AcceptError> + 'a;

/// Wait for a primary on `listener`, receive its machine (boot images,
/// RAM, disk replicas, state) and restore it. Returns the backup,
/// following. A peer that fails before the VM is restored — a failed TLS
/// handshake, a stranger speaking HTTP, a forged or refused Hello (other
/// version, other arbiter generation, no room for the replicas), a
/// transfer that breaks off — is refused with the reason reported through
/// `progress` (the primary learns it too, in as much detail as its
/// authentication allows), its replicas are removed, and this side keeps
/// listening for the real primary.
pub fn serve_until_ready(
    listener: &TcpListener,
    arbiter: Option<&Arbiter>,
    options: &BackupOptions<'_>,
    progress: &mut dyn FnMut(&str),
) -> Result<Backup, FtError> {
    if options.tls.is_none() {
        let local = listener
            .local_addr()
            .map_err(HandshakeError::NoLocalAddress)?;
        channel::check_loopback(&local.to_string())?;
    }
    loop {
        match serve(listener, arbiter, options, progress) {
            Ok(backup) => return Ok(backup),
            Err(e) => {
                progress(&format!("{e}; still listening"));
                // A listener that fails at once must not spin.
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
}

/// One peer: accept, handshake, receive, restore; an error if it fails
/// (see [`serve_until_ready`]).
pub fn serve(
    listener: &TcpListener,
    arbiter: Option<&Arbiter>,
    options: &BackupOptions<'_>,
    progress: &mut dyn FnMut(&str),
) -> Result<Backup, FtError> {
    let (tx, mut rx) = channel::accept(listener, options.tls)?;
    let peer = tx.peer();
    let hello = match rx.expect(HANDSHAKE_TIMEOUT, "Hello")? {
        Message::Hello(hello) => hello,
        other => {
            return Err(HandshakeError::NotHello {
                peer: peer.to_string(),
                got: other.describe(),
            }
            .into())
        }
    };
    let prepared = check_hello(&hello, arbiter, options)
        .and_then(|()| {
            options.accept.map_or(Ok(()), |accept| {
                accept(&hello).map_err(Refusal::NotAccepted)
            })
        })
        .and_then(|()| Receiving::prepare(&hello, options.replica_dir));
    let receiving = match prepared {
        Ok(r) => r,
        Err(refusal) => {
            // Best effort: the primary learns why (the details only if it
            // is authenticated); this side reports it anyway.
            let told = if options.tls.is_some() {
                refusal.to_string()
            } else {
                refusal.public()
            };
            tx.send_last(&Message::Welcome(Err(told)));
            return Err(HandshakeError::RefusedPrimary {
                peer: peer.to_string(),
                reason: Box::new(refusal),
            }
            .into());
        }
    };
    let files = receiving.files();
    let received = receive_and_restore(receiving, tx, rx, arbiter, hello, options, progress);
    if received.is_err() {
        for path in files {
            let _ = std::fs::remove_file(path);
        }
    }
    received
}

fn receive_and_restore(
    mut receiving: Receiving,
    tx: Sender,
    mut rx: channel::Receiver,
    arbiter: Option<&Arbiter>,
    hello: Hello,
    options: &BackupOptions<'_>,
    progress: &mut dyn FnMut(&str),
) -> Result<Backup, FtError> {
    let peer = tx.peer();
    tx.send(&Message::Welcome(Ok(())))?;
    progress(&format!("receiving the VM from {peer}"));
    let (start_icount, state) = receiving.receive(&tx, &mut rx, &options.config)?;
    // Take (and acknowledge) the log from now on, while restoring: the
    // primary may release an output once its record is here.
    let (events_tx, events) = mpsc::channel();
    let executed = Arc::new(AtomicU64::new(start_icount));
    let progress_seen = Arc::clone(&executed);
    let config = options.config;
    let link = tx.clone();
    let purpose = hello.purpose;
    std::thread::spawn(move || {
        receive_loop(
            &link,
            rx,
            events_tx,
            start_icount,
            &progress_seen,
            config,
            purpose,
        )
    });
    progress("restoring the VM");
    let held = Arc::new(Mutex::new(HeldOutputs::default()));
    let windows: SharedWindows = Arc::default();
    let restored = receiving
        .restore(&state, held.clone(), windows.clone())
        .and_then(|(machine, replicas)| {
            if machine.icount() == start_icount {
                Ok((machine, replicas))
            } else {
                Err(RestoreError::Icount {
                    got: machine.icount(),
                    announced: start_icount,
                })
            }
        });
    let (machine, replicas) = match restored {
        Ok(done) => done,
        Err(reason) => {
            tx.send_last(&Message::Ready(Err(reason.to_string())));
            tx.close();
            return Err(SyncError::Restore(reason).into());
        }
    };
    tx.send(&Message::Ready(Ok(())))?;
    let link = tx;
    Ok(Backup {
        machine,
        hello,
        events,
        held,
        arbiter: arbiter.cloned(),
        executed,
        follower: Follower::new(windows),
        link,
        failed: None,
        replicas,
    })
}

/// Longest silence from the primary while it sends the machine.
const SYNC_SILENCE: Duration = Duration::from_secs(30);
/// How long the primary may take to answer the handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(60);

/// The machine as it arrives.
struct Receiving {
    assembler: Assembler,
    replicas: Vec<Replica>,
    /// The clock rate the Hello announced.
    rate: machine::InstructionsPerTick,
}

/// A disk replica being written.
struct Replica {
    path: PathBuf,
    file: File,
    shape: DiskShape,
}

impl Receiving {
    /// The replica files made for the VM.
    fn files(&self) -> Vec<PathBuf> {
        self.replicas.iter().map(|r| r.path.clone()).collect()
    }

    /// New replica files for the primary's disks and a snapshot to fill.
    fn prepare(hello: &Hello, dir: &Path) -> Result<Receiving, Refusal> {
        // Each VM's replicas in a directory of its own (its uuid), so that
        // backups of different VMs sharing `dir` never meet.
        let uuid: String = hello.vm_uuid.iter().map(|b| format!("{b:02x}")).collect();
        let dir = dir.join(&uuid);
        match std::fs::DirBuilder::new().mode(0o700).create(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(source) => return Err(Refusal::CreateDir { dir, source }),
        }
        match std::fs::symlink_metadata(&dir) {
            Ok(meta) if meta.is_dir() => {}
            Ok(_) => return Err(Refusal::NotDirectory { dir }),
            Err(source) => return Err(Refusal::InspectDir { dir, source }),
        }
        let assembler =
            Assembler::new(&dir, hello.images_len, hello.memory).map_err(Refusal::Receive)?;
        let mut replicas = Vec::new();
        for (n, &shape) in hello.disks.iter().enumerate() {
            let path = dir.join(format!("{uuid}-disk{n}.raw"));
            // Guest data: 0600, and never through a link planted in the
            // replica directory.
            let opened = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
                .open(&path)
                .and_then(|f| f.set_len(shape.capacity).map(|()| f));
            let file = match opened {
                Ok(file) => file,
                Err(source) => return Err(Refusal::CreateReplica { path, source }),
            };
            replicas.push(Replica { path, file, shape });
        }
        Ok(Receiving {
            assembler,
            replicas,
            rate: hello.instructions_per_tick,
        })
    }

    /// Take sync messages until the state; returns its icount and bytes.
    /// Sends `Alive` heartbeats meanwhile.
    fn receive(
        &mut self,
        tx: &Sender,
        rx: &mut channel::Receiver,
        config: &FtConfig,
    ) -> Result<(u64, Vec<u8>), FtError> {
        let heartbeat = config.heartbeat();
        let silence = config.timeout.max(SYNC_SILENCE);
        let mut last_heard = Instant::now();
        let mut last_alive = Instant::now();
        loop {
            if last_alive.elapsed() >= heartbeat {
                tx.send(&Message::Alive)?;
                last_alive = Instant::now();
            }
            let message = match rx.recv(heartbeat)? {
                Got::Message(m) => m,
                Got::Nothing if last_heard.elapsed() < silence => continue,
                Got::Nothing => return Err(SyncError::PrimarySilent { within: silence }.into()),
                Got::Closed => return Err(SyncError::PrimaryClosed.into()),
            };
            last_heard = Instant::now();
            match message {
                Message::Images { offset, bytes } => self
                    .assembler
                    .images(offset, &bytes)
                    .map_err(ProtocolError::Assembly)?,
                Message::Pages(entries) => {
                    for entry in entries.chunks_exact(PAGE_ENTRY) {
                        let index = u32::from_le_bytes([entry[0], entry[1], entry[2], entry[3]]);
                        self.assembler
                            .page(u64::from(index), &entry[4..])
                            .map_err(ProtocolError::Assembly)?;
                    }
                }
                Message::Disk {
                    disk,
                    offset,
                    bytes,
                } => self.write_disk(usize::from(disk), offset, &bytes)?,
                Message::State { icount, state } => return Ok((icount, state)),
                other => {
                    return Err(ProtocolError::Unexpected {
                        got: other.describe(),
                        during: "receiving the VM",
                    }
                    .into())
                }
            }
        }
    }

    fn write_disk(&self, disk: usize, offset: u64, bytes: &[u8]) -> Result<(), FtError> {
        let Some(replica) = self.replicas.get(disk) else {
            return Err(ProtocolError::NoSuchDisk {
                disk,
                disks: self.replicas.len(),
            }
            .into());
        };
        let capacity = replica.shape.capacity;
        if offset
            .checked_add(bytes.len() as u64)
            .is_none_or(|end| end > capacity)
        {
            return Err(ProtocolError::DiskRange {
                disk,
                offset,
                len: bytes.len(),
                capacity,
            }
            .into());
        }
        replica
            .file
            .write_all_at(bytes, offset)
            .map_err(|source| FtError::Replica {
                path: replica.path.clone(),
                source,
            })
    }

    /// Restore the machine from what arrived (lazily, checking its state
    /// hash against the one the primary computed), with outputs going to
    /// the backup's hold. Returns it and the replicas' paths.
    fn restore(
        self,
        state: &[u8],
        held: Arc<Mutex<HeldOutputs>>,
        windows: SharedWindows,
    ) -> Result<(Machine, Vec<PathBuf>), RestoreError> {
        let mut disks: Vec<Box<dyn BlockDevice>> = Vec::new();
        for r in &self.replicas {
            r.file
                .sync_all()
                .map_err(|source| RestoreError::SyncReplica {
                    path: r.path.clone(),
                    source,
                })?;
            // Replicas are raw files this side created: opened as raw,
            // never probed (the guest's bytes may look like any header).
            let options = disk::OpenOptions::new(disk::Format::Raw, r.shape.read_only);
            disks.push(disk::open(&r.path, &options)?);
        }
        let refs: Vec<&dyn BlockDevice> = disks.iter().map(|d| &**d).collect();
        let assembled = self.assembler.finish(state, &refs)?;
        let options = RestoreOptions::default();
        let mut machine = Machine::restore_snapshot_with(
            &assembled.path,
            Box::new(machine::NullOutput),
            disks,
            &options,
        )?;
        let rate = machine.config().instructions_per_tick;
        if rate != self.rate {
            return Err(RestoreError::Rate {
                got: rate.get(),
                announced: self.rate.get(),
            });
        }
        // End to end: every RAM page, register and device as the primary
        // hashed them.
        let hash = machine.state_hash()?;
        if hash != assembled.state_hash {
            return Err(RestoreError::HashMismatch);
        }
        let macs = machine.nic_macs();
        machine.replace_output(Box::new(TeeOutput::new(
            Box::new(BackupOutput { held, macs }),
            windows,
        )));
        Ok((machine, self.replicas.into_iter().map(|r| r.path).collect()))
    }
}

/// Everything in a Hello is the peer's word: the version must be ours,
/// the arbiter generation the one this side holds, and the sizes within
/// bounds (replicas within the quota, images within the VM's memory).
fn check_hello(
    hello: &Hello,
    arbiter: Option<&Arbiter>,
    options: &BackupOptions<'_>,
) -> Result<(), Refusal> {
    if hello.lockstep_version != wire::LOCKSTEP_VERSION {
        return Err(Refusal::Version {
            primary: hello.lockstep_version.clone(),
            backup: wire::LOCKSTEP_VERSION,
        });
    }
    if hello.memory == 0 || hello.memory > machine::MAX_MEMORY {
        return Err(Refusal::Memory {
            memory: hello.memory,
        });
    }
    if hello.images_len > hello.memory {
        return Err(Refusal::Images {
            images_len: hello.images_len,
            memory: hello.memory,
        });
    }
    let replicas = hello
        .disks
        .iter()
        .try_fold(0u64, |sum, d| sum.checked_add(d.capacity));
    match replicas {
        Some(total) if total <= options.max_replica_bytes => {}
        _ => {
            return Err(Refusal::ReplicaQuota {
                max: options.max_replica_bytes,
            })
        }
    }
    let arbiter = match (hello.purpose, options.purpose, arbiter) {
        (Purpose::Migrate, Purpose::Migrate, _) => return Ok(()),
        (Purpose::Protect, Purpose::Protect, Some(arbiter)) => arbiter,
        (Purpose::Protect, Purpose::Protect, None) => return Err(Refusal::NoArbiter),
        (Purpose::Migrate, Purpose::Protect, _) => return Err(Refusal::MigrateToBackup),
        (Purpose::Protect, Purpose::Migrate, _) => return Err(Refusal::ProtectToTarget),
    };
    let generation = arbiter
        .generation()
        .map_err(|e| Refusal::ArbiterUnreadable(Box::new(e)))?;
    if generation != hello.generation {
        return Err(Refusal::Generation {
            primary: hello.generation,
            arbiter: arbiter.path().to_path_buf(),
            held: generation,
        });
    }
    Ok(())
}

/// Receives batches, acks them, and watches for the primary's failure.
fn receive_loop(
    tx: &Sender,
    mut rx: channel::Receiver,
    events: mpsc::Sender<Event>,
    start_icount: u64,
    executed: &AtomicU64,
    config: FtConfig,
    purpose: Purpose,
) {
    let heartbeat = config.heartbeat();
    // After a hand-over the primary is silent: this side acks (its
    // heartbeat) until `take_over` says Taken and closes the link.
    let mut handed_off = false;
    // Short waits: execution progress is reported within a few ms.
    let wait = ACK_PROGRESS_EVERY.min(heartbeat);
    let mut decoder = Decoder::resume(0, start_icount, 0);
    let mut last_heard = Instant::now();
    let mut last_ack = Instant::now();
    let mut acked_executed = start_icount;
    let reason = loop {
        let ack_due = match rx.recv(wait) {
            Ok(Got::Message(Message::Batch { released, frames })) => {
                last_heard = Instant::now();
                let records = match decode_batch(&mut decoder, &frames) {
                    Ok(records) => records,
                    Err(e) => break e.to_string(),
                };
                let ended = records
                    .iter()
                    .any(|r| matches!(r.kind, RecordKind::Control(Control::PowerOff(_))));
                if (!records.is_empty() && events.send(Event::Records(records)).is_err())
                    || events.send(Event::Released(released)).is_err()
                {
                    return;
                }
                if ended {
                    let _ = ack(tx, &decoder, executed);
                    return;
                }
                true
            }
            Ok(Got::Message(Message::Handoff { icount, released }))
                if purpose == Purpose::Migrate && !handed_off =>
            {
                if decoder.last_icount() != icount {
                    break ProtocolError::HandoffIcount {
                        got: decoder.last_icount(),
                        announced: icount,
                    }
                    .to_string();
                }
                handed_off = true;
                if events.send(Event::Handoff { icount, released }).is_err() {
                    return;
                }
                true
            }
            Ok(Got::Message(other)) => {
                break format!("the primary sent {} after the handshake", other.describe())
            }
            Ok(Got::Nothing) if handed_off => last_ack.elapsed() >= heartbeat,
            Ok(Got::Nothing) if last_heard.elapsed() >= config.timeout => {
                break format!(
                    "no word from the primary for {} ms",
                    config.timeout.as_millis()
                )
            }
            Ok(Got::Nothing) => {
                let since = last_ack.elapsed();
                since >= heartbeat
                    || (since >= ACK_PROGRESS_EVERY
                        && executed.load(Ordering::Acquire) != acked_executed)
            }
            Ok(Got::Closed) if handed_off => return,
            Ok(Got::Closed) => break "the primary closed the connection".to_string(),
            Err(_) if handed_off => return,
            Err(e) => break e.to_string(),
        };
        if ack_due {
            match ack(tx, &decoder, executed) {
                Ok(reported) => acked_executed = reported,
                Err(e) => break e.to_string(),
            }
            last_ack = Instant::now();
        }
    };
    tx.close();
    let _ = events.send(Event::PrimaryLost(reason, Instant::now()));
}

/// Sends an ack; returns the executed icount it reported.
fn ack(tx: &Sender, decoder: &Decoder, executed: &AtomicU64) -> Result<u64, FtError> {
    let executed = executed.load(Ordering::Acquire);
    tx.send(&Message::Ack {
        next_lsn: decoder.next_lsn(),
        icount: decoder.last_icount(),
        executed,
    })?;
    Ok(executed)
}

/// Every frame of one batch; a batch holds whole frames only.
fn decode_batch(decoder: &mut Decoder, mut frames: &[u8]) -> Result<Vec<Record>, FtError> {
    let mut records = Vec::new();
    while !frames.is_empty() {
        match decoder.decode(frames)? {
            Decoded::Record { record, len } => {
                records.push(record);
                frames = &frames[len..];
            }
            Decoded::Incomplete { .. } => {
                return Err(ProtocolError::SplitFrame {
                    lsn: decoder.next_lsn(),
                }
                .into())
            }
        }
    }
    Ok(records)
}

/// The local instant of the UNIX time `ns` (hosts' clocks are assumed
/// synchronised, e.g. by NTP); `None` if it is not representable.
fn instant_of_unix_ns(ns: u64) -> Option<Instant> {
    let then = UNIX_EPOCH.checked_add(Duration::from_nanos(ns))?;
    let now = Instant::now();
    match SystemTime::now().duration_since(then) {
        Ok(ago) => now.checked_sub(ago),
        Err(ahead) => now.checked_add(ahead.duration()),
    }
}

/// The backup, live: a machine to run as the new primary.
pub struct Live {
    pub machine: Machine,
    /// The arbiter generation this side won.
    pub generation: u64,
    /// Console and network bytes re-emitted (held outputs).
    pub reemitted_bytes: usize,
    /// Gratuitous ARPs sent (NIC, IPv4 address).
    pub announced: Vec<(usize, [u8; 4])>,
    /// This host's instant of guest `mtime` 0 on the primary's clock: the
    /// live runner paces from it, so guest time catches up the failover
    /// gap (`None` if the primary's clock is unusable here).
    pub anchor: Option<Instant>,
}

impl Backup {
    /// The primary's opening message (its VM setup, generation, ...).
    pub fn hello(&self) -> &Hello {
        &self.hello
    }

    pub fn machine(&self) -> &Machine {
        &self.machine
    }

    /// Execute the primary's log with the translator (`true`) or the
    /// interpreter: both compute the same, to the instruction. Whether
    /// the translator is in use (there is none on some hosts).
    pub fn set_jit(&mut self, on: bool) -> bool {
        self.machine.set_jit(on)
    }

    /// The disk replicas the machine runs on, in slot order.
    pub fn replicas(&self) -> &[PathBuf] {
        &self.replicas
    }

    /// The icount executed to, updated as the backup follows (for status).
    pub fn executed(&self) -> Arc<AtomicU64> {
        Arc::clone(&self.executed)
    }

    /// Records re-executed so far.
    pub fn records(&self) -> u64 {
        self.follower.report.records
    }

    /// Re-execute the primary's log as it arrives, until the primary ends
    /// the run or fails. Every record received is executed before this
    /// returns. A divergence (or a machine error) is an error after which
    /// this side is no backup: it closes the log channel, so the primary
    /// runs on unprotected, and refuses to go live.
    pub fn follow(&mut self) -> Result<Outcome, FtError> {
        if let Some(why) = &self.failed {
            return Err(FtError::NotFollowing { since: why.clone() });
        }
        let result = self.follow_log();
        if let Err(e) = &result {
            self.failed = Some(e.to_string());
            self.link.close();
        }
        result
    }

    fn follow_log(&mut self) -> Result<Outcome, FtError> {
        loop {
            let event = self.events.recv().unwrap_or_else(|_| {
                Event::PrimaryLost("the network thread stopped".into(), Instant::now())
            });
            match event {
                Event::Records(records) => {
                    for record in records {
                        if let Some(end) = self.execute(record)? {
                            return Ok(Outcome::Ended(end));
                        }
                    }
                    self.executed
                        .store(self.machine.icount(), Ordering::Release);
                }
                Event::Released(icount) => {
                    let mut held = lock(&self.held);
                    held.released = held.released.max(icount);
                    while held.queue.front().is_some_and(|h| h.icount <= icount) {
                        held.queue.pop_front();
                    }
                }
                Event::PrimaryLost(reason, at) => return Ok(Outcome::PrimaryLost { reason, at }),
                Event::Handoff { icount, released } => {
                    if self.machine.icount() != icount {
                        return Err(ProtocolError::HandoffIcount {
                            got: self.machine.icount(),
                            announced: icount,
                        }
                        .into());
                    }
                    let mut held = lock(&self.held);
                    held.released = held.released.max(released);
                    while held.queue.front().is_some_and(|h| h.icount <= released) {
                        held.queue.pop_front();
                    }
                    return Ok(Outcome::HandedOff { icount });
                }
            }
        }
    }

    /// Run to the record's icount and apply it, as a replay does.
    fn execute(&mut self, record: Record) -> Result<Option<StopReason>, FtError> {
        self.follower.execute::<FtError>(&mut self.machine, &record)
    }

    /// After the primary failed: win the arbiter, re-emit the outputs the
    /// primary may not have released into `live`, and make `live` the
    /// machine's sink. Losing the arbiter is an error: the caller halts.
    pub fn go_live(self, live: Box<dyn Output>) -> Result<Live, FtError> {
        if let Some(why) = self.failed {
            return Err(FtError::NotFollowing { since: why });
        }
        let Some(arbiter) = &self.arbiter else {
            return Err(MigrationError::SourceLost {
                why: "a migration target goes live only when handed the VM".into(),
            }
            .into());
        };
        let generation = match arbiter.claim(self.hello.generation)? {
            Claim::Won(generation) => {
                tracing::info!(
                    event = "arbiter",
                    arbiter = "won",
                    generation,
                    previous_generation = self.hello.generation,
                    "FT backup: won the arbiter"
                );
                generation
            }
            Claim::Lost(generation) => {
                tracing::info!(
                    event = "arbiter",
                    arbiter = "lost",
                    generation,
                    previous_generation = self.hello.generation,
                    "FT backup: lost the arbiter; halting"
                );
                return Err(FtError::LostArbiter(generation));
            }
        };
        Ok(self.run_here(generation, live))
    }

    /// After the primary handed the VM over ([`Outcome::HandedOff`]):
    /// tell it the VM runs here, and make `live` the machine's sink (with
    /// any outputs the primary did not release, which a hand-over leaves
    /// none of). Runs under the primary's arbiter generation.
    pub fn take_over(self, live: Box<dyn Output>) -> Result<Live, FtError> {
        if let Some(why) = self.failed {
            return Err(FtError::NotFollowing { since: why });
        }
        let generation = self.hello.generation;
        let link = self.link.clone();
        let live = self.run_here(generation, live);
        // The primary stops when it hears this; if it does not, it halts
        // anyway (the hand-over is in doubt) and never runs the VM again.
        let told = link.send(&Message::Taken);
        link.close();
        if let Err(e) = told {
            tracing::warn!(error = %e, "migration: could not tell the source the VM runs here");
        }
        Ok(live)
    }

    fn run_here(mut self, generation: u64, mut live: Box<dyn Output>) -> Live {
        let held = std::mem::take(&mut *lock(&self.held));
        let mut reemitted_bytes = 0;
        for h in held.queue {
            match h.event {
                OwnedEvent::Console(bytes) => {
                    reemitted_bytes += bytes.len();
                    live.emit(h.icount, OutputEvent::Console(&bytes));
                }
                OwnedEvent::Net { nic, frame } => {
                    reemitted_bytes += frame.len();
                    live.emit(h.icount, OutputEvent::Net { nic, frame: &frame });
                }
            }
        }
        let icount = self.machine.icount();
        let macs = self.machine.nic_macs();
        let mut announced = Vec::new();
        for (nic, ip) in held.ips.iter().enumerate() {
            if let (Some(ip), Some(mac)) = (ip, macs.get(nic)) {
                live.emit(
                    icount,
                    OutputEvent::Net {
                        nic,
                        frame: &garp::announce(mac, ip),
                    },
                );
                announced.push((nic, *ip));
            }
        }
        self.machine.replace_output(live);
        Live {
            anchor: instant_of_unix_ns(self.hello.anchor_unix_ns),
            machine: self.machine,
            generation,
            reemitted_bytes,
            announced,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_unix_time_maps_to_the_local_instant() {
        let unix_now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("after 1970")
            .as_nanos() as u64;
        let ago = instant_of_unix_ns(unix_now - 3_000_000_000).expect("representable");
        let ahead = instant_of_unix_ns(unix_now + 2_000_000_000).expect("representable");
        let now = Instant::now();
        let ago = now.duration_since(ago);
        assert!(
            ago >= Duration::from_secs(3) && ago < Duration::from_millis(3_500),
            "{ago:?}"
        );
        let ahead = ahead.duration_since(now);
        assert!(
            ahead > Duration::from_millis(1_500) && ahead <= Duration::from_secs(2),
            "{ahead:?}"
        );
    }
}
