//! The backup: builds the same machine as the primary, re-executes the
//! primary's log as it streams in (exactly as `replay::session::replay`
//! does with a file, never past the last record received), and keeps the
//! outputs the primary may not have released yet. When the primary fails
//! it wins the arbiter, re-emits those outputs and hands back a machine
//! ready to run live.

use crate::arbiter::{Arbiter, Claim};
use crate::primary::{describe, wait_message};
use crate::wire::{self, Hello, Message, MessageReader, Polled};
use crate::{garp, FtConfig, FtError};
use machine::{Machine, Output, OutputEvent};
use replay::session::{Follower, SharedWindows, TeeOutput};
use replay::{Control, Decoded, Decoder, Record, RecordKind, StopReason};
use std::collections::VecDeque;
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// How often the backup reports execution progress when it has some.
const ACK_PROGRESS_EVERY: Duration = Duration::from_millis(5);

/// What the network thread hands the executing thread, in order.
enum Event {
    Records(Vec<Record>),
    /// The primary has released every output up to this icount.
    Released(u64),
    /// The primary is gone (or misbehaved): why.
    PrimaryLost(String),
}

/// How following the primary ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The primary stopped the VM itself (power-off or host stop); the
    /// backup re-executed it to the end.
    Ended(StopReason),
    /// The primary failed: the backup should go live.
    PrimaryLost { reason: String, at: Instant },
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
    arbiter: Arbiter,
    /// The icount executed to, for the acks (the primary's flow control).
    executed: Arc<AtomicU64>,
    /// Re-executes the primary's records, checking its output windows.
    follower: Follower,
    /// The log channel, to close when this side stops following.
    link: TcpStream,
    /// Why this side stopped following (a divergence): it must not go live.
    failed: Option<String>,
}

/// Wait for a primary on `listener`, build its machine with `build` (from
/// the Hello's opaque setup; an `Err` is sent back as the refusal) and
/// check that it is the same machine. Returns the backup, following.
pub fn serve(
    listener: &TcpListener,
    arbiter: Arbiter,
    config: FtConfig,
    build: impl FnOnce(&Hello) -> Result<Machine, String>,
) -> Result<Backup, FtError> {
    let (mut stream, peer) = listener
        .accept()
        .map_err(FtError::io("accepting the primary's connection"))?;
    stream
        .set_nodelay(true)
        .and_then(|()| stream.set_read_timeout(Some(Duration::from_secs(60))))
        .map_err(FtError::io("configuring the socket"))?;
    wire::write_preamble(&mut stream)?;
    wire::read_preamble(&mut stream)?;
    let mut reader = MessageReader::default();
    let hello = match wait_message(&mut reader, &mut stream)? {
        Message::Hello(hello) => hello,
        other => {
            return Err(FtError::Handshake(format!(
                "expected the primary's Hello, got {}",
                describe(&other)
            )))
        }
    };
    let checked = check_hello(&hello, &arbiter).and_then(|()| {
        let mut machine = build(&hello)?;
        check_machine(&hello, &mut machine)?;
        Ok(machine)
    });
    let mut machine = match checked {
        Ok(machine) => machine,
        Err(reason) => {
            // Best effort: the primary learns why; this side reports it anyway.
            let _ = Message::Welcome(Err(reason.clone())).write_to(&mut stream);
            return Err(FtError::Handshake(format!(
                "refused the primary at {peer}: {reason}"
            )));
        }
    };
    Message::Welcome(Ok(())).write_to(&mut stream)?;
    let held = Arc::new(Mutex::new(HeldOutputs::default()));
    let macs = machine.nic_macs();
    let windows: SharedWindows = Arc::default();
    machine.replace_output(Box::new(TeeOutput::new(
        Box::new(BackupOutput {
            held: Arc::clone(&held),
            macs,
        }),
        Arc::clone(&windows),
    )));
    let link = stream
        .try_clone()
        .map_err(FtError::io("cloning the socket"))?;
    let (tx, events) = mpsc::channel();
    let start_icount = hello.start_icount;
    let executed = Arc::new(AtomicU64::new(start_icount));
    let progress = Arc::clone(&executed);
    std::thread::spawn(move || receive_loop(stream, reader, tx, start_icount, &progress, config));
    Ok(Backup {
        machine,
        hello,
        events,
        held,
        arbiter,
        executed,
        follower: Follower::new(windows),
        link,
        failed: None,
    })
}

fn check_hello(hello: &Hello, arbiter: &Arbiter) -> Result<(), String> {
    if hello.lockstep_version != wire::LOCKSTEP_VERSION {
        return Err(format!(
            "the primary runs lockstep {}, the backup {}",
            hello.lockstep_version,
            wire::LOCKSTEP_VERSION
        ));
    }
    let generation = arbiter.generation().map_err(|e| e.to_string())?;
    if generation != hello.generation {
        return Err(format!(
            "the primary runs under arbiter generation {} but {} holds {generation} (not the same arbiter file, or a stale primary)",
            hello.generation,
            arbiter.path().display()
        ));
    }
    Ok(())
}

fn check_machine(hello: &Hello, machine: &mut Machine) -> Result<(), String> {
    if machine.icount() != hello.start_icount {
        return Err(format!(
            "the primary starts at icount {}, the backup's machine at {}",
            hello.start_icount,
            machine.icount()
        ));
    }
    let hash = machine.state_hash().map_err(|e| e.to_string())?;
    if hash != hello.header.initial_state_hash {
        return Err("the backup's machine is not in the primary's initial state (different kernel, initrd, firmware or disks?)".into());
    }
    Ok(())
}

/// Receives batches, acks them, and watches for the primary's failure.
fn receive_loop(
    mut stream: TcpStream,
    mut reader: MessageReader,
    events: Sender<Event>,
    start_icount: u64,
    executed: &AtomicU64,
    config: FtConfig,
) {
    let heartbeat = config.heartbeat();
    // Short reads: execution progress is reported within a few ms.
    if let Err(e) = stream.set_read_timeout(Some(ACK_PROGRESS_EVERY.min(heartbeat))) {
        let _ = events.send(Event::PrimaryLost(format!(
            "cannot set a read timeout: {e}"
        )));
        return;
    }
    let mut decoder = Decoder::resume(0, start_icount, 0);
    let mut last_heard = Instant::now();
    let mut last_ack = Instant::now();
    let mut acked_executed = start_icount;
    let reason = loop {
        let ack_due = match reader.poll(&mut stream) {
            Ok(Polled::Message(Message::Batch { released, frames })) => {
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
                    let _ = ack(&mut stream, &decoder, executed);
                    return;
                }
                true
            }
            Ok(Polled::Message(other)) => {
                break format!("the primary sent {} after the handshake", describe(&other))
            }
            Ok(Polled::Nothing) if last_heard.elapsed() >= config.timeout => {
                break format!(
                    "no word from the primary for {} ms",
                    config.timeout.as_millis()
                )
            }
            Ok(Polled::Nothing) => {
                let since = last_ack.elapsed();
                since >= heartbeat
                    || (since >= ACK_PROGRESS_EVERY
                        && executed.load(Ordering::Acquire) != acked_executed)
            }
            Ok(Polled::Closed) => break "the primary closed the connection".to_string(),
            Err(e) => break e.to_string(),
        };
        if ack_due {
            match ack(&mut stream, &decoder, executed) {
                Ok(reported) => acked_executed = reported,
                Err(e) => break e.to_string(),
            }
            last_ack = Instant::now();
        }
    };
    let _ = stream.shutdown(std::net::Shutdown::Both);
    let _ = events.send(Event::PrimaryLost(reason));
}

/// Sends an ack; returns the executed icount it reported.
fn ack(stream: &mut TcpStream, decoder: &Decoder, executed: &AtomicU64) -> Result<u64, FtError> {
    let executed = executed.load(Ordering::Acquire);
    Message::Ack {
        next_lsn: decoder.next_lsn(),
        icount: decoder.last_icount(),
        executed,
    }
    .write_to(stream)?;
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
                return Err(FtError::Protocol(format!(
                    "a batch ends inside a frame (LSN {})",
                    decoder.next_lsn()
                )))
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
            return Err(FtError::NotFollowing(why.clone()));
        }
        let result = self.follow_log();
        if let Err(e) = &result {
            self.failed = Some(e.to_string());
            let _ = self.link.shutdown(std::net::Shutdown::Both);
        }
        result
    }

    fn follow_log(&mut self) -> Result<Outcome, FtError> {
        loop {
            let event = self
                .events
                .recv()
                .unwrap_or_else(|_| Event::PrimaryLost("the network thread stopped".into()));
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
                Event::PrimaryLost(reason) => {
                    return Ok(Outcome::PrimaryLost {
                        reason,
                        at: Instant::now(),
                    })
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
    pub fn go_live(mut self, mut live: Box<dyn Output>) -> Result<Live, FtError> {
        if let Some(why) = self.failed {
            return Err(FtError::NotFollowing(why));
        }
        let generation = match self.arbiter.claim(self.hello.generation)? {
            Claim::Won(generation) => generation,
            Claim::Lost(generation) => return Err(FtError::LostArbiter(generation)),
        };
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
        Ok(Live {
            anchor: instant_of_unix_ns(self.hello.anchor_unix_ns),
            machine: self.machine,
            generation,
            reemitted_bytes,
            announced,
        })
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
