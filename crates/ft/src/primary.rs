//! The primary: ships every input and enough `Progress` to the backup,
//! holds outputs until the backup has acknowledged a record at or past
//! their icount (the output rule), and watches the backup's heartbeats.
//!
//! Three threads share the work. The runner's thread calls the
//! [`PrimaryJournal`] (it only appends to an outbox and never waits for the
//! network); a writer thread sends the outbox as batches (an empty batch
//! is the heartbeat); a reader thread takes acks and releases held outputs
//! itself, since the runner may be asleep waiting for a timer. If the
//! backup fails, the reader thread claims the arbiter: if it wins, it
//! releases everything held and the VM runs on unprotected; if it loses
//! (the backup went live), nothing more leaves the VM and the runner is
//! told to stop.

use crate::arbiter::{Arbiter, Claim};
use crate::wire::{self, Hello, Message, MessageReader, Polled, MAX_BATCH};
use crate::{FtConfig, FtError};
use machine::{HostEvent, Journal, JournalError, Machine, Output, OutputEvent, RunEnd};
use replay::session::{log_input, OutputWindows, SharedWindows, TeeOutput};
use replay::{Control, Encoder, Header, RecordKind, StopReason};
use std::collections::VecDeque;
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::Sender;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// How long the handshake may take (the backup builds and hashes the VM).
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(60);

/// An output waiting for the backup's ack.
enum Held {
    Console(Vec<u8>),
    Net { nic: usize, frame: Vec<u8> },
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum State {
    Protected,
    Unprotected,
    /// The backup won the arbiter: this side must stay silent.
    Fenced(String),
}

struct Hold {
    queue: VecDeque<(u64, Held)>,
    sink: Box<dyn Output>,
    state: State,
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
}

#[derive(Default)]
struct Outbox {
    /// Encoded frames, each chunk at most about [`MAX_BATCH`] bytes.
    chunks: VecDeque<Vec<u8>>,
    /// No more records will come (the run ended).
    closed: bool,
    /// The connection is gone: records are dropped.
    dead: bool,
}

struct Shared {
    hold: Mutex<Hold>,
    outbox: Mutex<Outbox>,
    outbox_ready: Condvar,
    /// An output was held since the journal last shipped a record.
    output_pending: AtomicBool,
    /// Icount of the last record queued (acks may not claim more).
    queued_icount: AtomicU64,
    /// The run ended: the backup closing the connection is expected.
    ending: AtomicBool,
    /// Icount the backup reported having executed to.
    backup_executed: AtomicU64,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // The data stays consistent at every point a panic could occur.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The primary side of the log channel, for the CLI to ask about after
/// the run.
#[derive(Clone)]
pub struct PrimaryLink {
    shared: Arc<Shared>,
    anchor: Instant,
}

impl PrimaryLink {
    /// The host instant of guest `mtime` 0 sent to the backup: the
    /// primary's runner should pace from it too, so a backup going live
    /// continues the same clock.
    pub fn anchor(&self) -> Instant {
        self.anchor
    }

    /// Why this side halted, if the backup took over.
    pub fn fenced(&self) -> Option<String> {
        match &lock(&self.shared.hold).state {
            State::Fenced(why) => Some(why.clone()),
            _ => None,
        }
    }
}

/// The output sink of a protected VM.
struct HoldOutput {
    shared: Arc<Shared>,
}

impl Output for HoldOutput {
    fn emit(&mut self, icount: u64, event: OutputEvent<'_>) {
        let mut hold = lock(&self.shared.hold);
        match hold.state {
            State::Unprotected => hold.sink.emit(icount, event),
            State::Fenced(_) => {}
            State::Protected if hold.queue.is_empty() && icount <= hold.acked => {
                hold.sink.emit(icount, event)
            }
            State::Protected => {
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

/// Connect to the backup at `addr`, hand it the VM (`setup`, opaque here)
/// and start protecting `machine`, whose outputs from now on wait for the
/// backup. `stop` tells the runner to stop if the backup takes over.
pub fn connect(
    addr: &str,
    arbiter: Arbiter,
    setup: Vec<u8>,
    vm_uuid: [u8; 16],
    machine: &mut Machine,
    config: FtConfig,
    stop: Sender<HostEvent>,
) -> Result<(PrimaryJournal, PrimaryLink), FtError> {
    let generation = arbiter.generation()?;
    let mut stream = dial(addr)?;
    stream
        .set_read_timeout(Some(HANDSHAKE_TIMEOUT))
        .map_err(FtError::io("setting a read timeout"))?;
    wire::write_preamble(&mut stream)?;
    wire::read_preamble(&mut stream)?;
    let (anchor, anchor_unix_ns) = clock_anchor(machine.mtime());
    let hello = Hello {
        lockstep_version: wire::LOCKSTEP_VERSION.to_string(),
        generation,
        start_icount: machine.icount(),
        anchor_unix_ns,
        header: Header {
            vm_uuid,
            initial_state_hash: machine.state_hash()?,
        },
        setup,
    };
    Message::Hello(hello).write_to(&mut stream)?;
    let mut reader = MessageReader::default();
    match wait_message(&mut reader, &mut stream)? {
        Message::Welcome(Ok(())) => {}
        Message::Welcome(Err(reason)) => return Err(FtError::Refused(reason)),
        other => {
            return Err(FtError::Handshake(format!(
                "expected the backup's Welcome, got {}",
                describe(&other)
            )))
        }
    }
    let sink = machine.replace_output(Box::new(machine::NullOutput));
    let shared = Arc::new(Shared {
        hold: Mutex::new(Hold {
            queue: VecDeque::new(),
            sink,
            state: State::Protected,
            acked: 0,
        }),
        outbox: Mutex::default(),
        outbox_ready: Condvar::new(),
        output_pending: AtomicBool::new(false),
        queued_icount: AtomicU64::new(machine.icount()),
        ending: AtomicBool::new(false),
        backup_executed: AtomicU64::new(machine.icount()),
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
    let writer = stream
        .try_clone()
        .map_err(FtError::io("cloning the socket"))?;
    let heartbeat = config.heartbeat();
    stream
        .set_read_timeout(Some(heartbeat))
        .map_err(FtError::io("setting a read timeout"))?;
    {
        let shared = Arc::clone(&shared);
        std::thread::spawn(move || send_loop(writer, &shared, heartbeat));
    }
    {
        let shared = Arc::clone(&shared);
        let watch = Watch {
            arbiter,
            generation,
            timeout: config.timeout,
            stop,
        };
        std::thread::spawn(move || ack_loop(stream, reader, &shared, watch));
    }
    let journal = PrimaryJournal {
        shared: Arc::clone(&shared),
        encoder: Encoder::resume(0, machine.icount()),
        windows,
        checkpoint_every: config.checkpoint_every.max(1),
        next_checkpoint: next_multiple(machine.icount(), config.checkpoint_every.max(1)),
        last_progress: Instant::now(),
        progress_every: config.progress_every,
        max_lag: config.max_lag,
        lag_wait: config.timeout,
    };
    Ok((journal, PrimaryLink { shared, anchor }))
}

/// The host instant and wall-clock time (UNIX ns) at which guest time
/// was 0: now minus the guest time elapsed.
fn clock_anchor(mtime: u64) -> (Instant, u64) {
    let guest = Duration::from_nanos(mtime.saturating_mul(machine::NS_PER_TICK));
    let now = Instant::now();
    let unix_now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
    let unix = unix_now.saturating_sub(u64::try_from(guest.as_nanos()).unwrap_or(u64::MAX));
    (now.checked_sub(guest).unwrap_or(now), unix)
}

fn dial(addr: &str) -> Result<TcpStream, FtError> {
    let context = || format!("cannot connect to the backup at {addr}");
    let addrs = addr.to_socket_addrs().map_err(FtError::io(context()))?;
    let mut last = None;
    for a in addrs {
        match TcpStream::connect_timeout(&a, Duration::from_secs(10)) {
            Ok(s) => {
                s.set_nodelay(true)
                    .map_err(FtError::io("setting TCP_NODELAY"))?;
                return Ok(s);
            }
            Err(e) => last = Some(e),
        }
    }
    Err(FtError::Io {
        context: context(),
        source: last.unwrap_or_else(|| std::io::Error::other("the address resolves to nothing")),
    })
}

/// Blocks (within the stream's read timeout) for one message.
pub(crate) fn wait_message(
    reader: &mut MessageReader,
    stream: &mut TcpStream,
) -> Result<Message, FtError> {
    let deadline = Instant::now() + HANDSHAKE_TIMEOUT;
    loop {
        match reader.poll(stream)? {
            Polled::Message(m) => return Ok(m),
            Polled::Closed => {
                return Err(FtError::Handshake("the peer closed the connection".into()))
            }
            Polled::Nothing if Instant::now() >= deadline => {
                return Err(FtError::Handshake("the peer did not answer in time".into()))
            }
            Polled::Nothing => {}
        }
    }
}

pub(crate) fn describe(m: &Message) -> &'static str {
    match m {
        Message::Hello(_) => "a Hello",
        Message::Welcome(_) => "a Welcome",
        Message::Batch { .. } => "a Batch",
        Message::Ack { .. } => "an Ack",
    }
}

/// Sends the outbox as batches; an empty batch every `heartbeat` when
/// there is nothing else.
fn send_loop(mut stream: TcpStream, shared: &Shared, heartbeat: Duration) {
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
            if outbox.dead {
                return;
            }
            match outbox.chunks.pop_front() {
                Some(chunk) => chunk,
                None if outbox.closed => return,
                None => Vec::new(),
            }
        };
        let released = lock(&shared.hold).acked;
        let batch = Message::Batch { released, frames };
        if batch.write_to(&mut stream).is_err() {
            // The reader thread notices the dead connection and acts.
            lock(&shared.outbox).dead = true;
            return;
        }
    }
}

struct Watch {
    arbiter: Arbiter,
    generation: u64,
    timeout: Duration,
    stop: Sender<HostEvent>,
}

/// Takes acks and releases outputs; on the backup's failure, arbitrates.
fn ack_loop(mut stream: TcpStream, mut reader: MessageReader, shared: &Shared, watch: Watch) {
    let mut last_heard = Instant::now();
    let failure = loop {
        match reader.poll(&mut stream) {
            Ok(Polled::Message(Message::Ack {
                icount, executed, ..
            })) => {
                let queued = shared.queued_icount.load(Ordering::Acquire);
                if icount > queued {
                    break format!(
                        "the backup acknowledged icount {icount}, but only {queued} was sent"
                    );
                }
                last_heard = Instant::now();
                shared
                    .backup_executed
                    .store(executed.min(icount), Ordering::Release);
                lock(&shared.hold).release_through(icount);
            }
            Ok(Polled::Message(other)) => {
                break format!("the backup sent {} after the handshake", describe(&other))
            }
            Ok(Polled::Nothing) if last_heard.elapsed() >= watch.timeout => {
                break format!(
                    "no word from the backup for {} ms",
                    watch.timeout.as_millis()
                )
            }
            Ok(Polled::Nothing) => {}
            Ok(Polled::Closed) => break "the backup closed the connection".to_string(),
            Err(e) => break e.to_string(),
        }
    };
    if shared.ending.load(Ordering::Acquire) {
        return;
    }
    let _ = stream.shutdown(std::net::Shutdown::Both);
    lock(&shared.outbox).dead = true;
    shared.outbox_ready.notify_all();
    backup_failed(shared, &watch, &failure);
}

fn backup_failed(shared: &Shared, watch: &Watch, failure: &str) {
    let halt = |why: String| {
        eprint!("\r\nlockstep: FT primary: {why}: halting\r\n");
        let mut hold = lock(&shared.hold);
        hold.queue.clear();
        hold.state = State::Fenced(why);
        drop(hold);
        let _ = watch.stop.send(HostEvent::Stop);
    };
    match watch.arbiter.claim(watch.generation) {
        Ok(Claim::Won(generation)) => {
            let mut hold = lock(&shared.hold);
            hold.release_all();
            hold.state = State::Unprotected;
            drop(hold);
            eprint!("\r\nlockstep: FT primary: backup lost ({failure}); won arbiter generation {generation}; running unprotected\r\n");
        }
        Ok(Claim::Lost(generation)) => halt(format!(
            "backup lost ({failure}) and it took over (arbiter generation {generation})"
        )),
        Err(e) => halt(format!(
            "backup lost ({failure}) and the arbiter is unusable: {e}"
        )),
    }
}

/// The runner's journal on a protected VM.
pub struct PrimaryJournal {
    shared: Arc<Shared>,
    encoder: Encoder,
    /// Output hashed since the last record, shipped as `Output` records.
    windows: SharedWindows,
    checkpoint_every: u64,
    next_checkpoint: u64,
    last_progress: Instant,
    progress_every: Duration,
    max_lag: u64,
    /// Longest single wait for a lagging backup.
    lag_wait: Duration,
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

impl PrimaryJournal {
    /// Flow control: while the backup has executed more than `max_lag`
    /// instructions less than this side, wait for it (a lagging backup
    /// would take that long to go live). Never longer than `lag_wait` at a
    /// time: failure detection is the ack thread's business.
    fn wait_for_backup(&self, icount: u64) {
        let lagging = || {
            icount.saturating_sub(self.shared.backup_executed.load(Ordering::Acquire))
                > self.max_lag
        };
        if !lagging() {
            return;
        }
        self.shared.outbox_ready.notify_one();
        let deadline = Instant::now() + self.lag_wait;
        while lagging() && Instant::now() < deadline && !lock(&self.shared.outbox).dead {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

impl Journal for PrimaryJournal {
    fn input(&mut self, machine: &Machine, input: &machine::Input) -> Result<(), JournalError> {
        let kind = RecordKind::Input(log_input(input)?);
        self.push(machine.icount(), &kind, false)
    }

    fn stepped(&mut self, machine: &mut Machine) -> Result<(), JournalError> {
        let icount = machine.icount();
        if icount >= self.next_checkpoint {
            self.next_checkpoint = next_multiple(icount, self.checkpoint_every);
            let state_hash = machine.state_hash()?;
            self.push(icount, &RecordKind::Checkpoint { state_hash }, true)?;
        }
        let pending = self.shared.output_pending.swap(false, Ordering::Relaxed);
        let due = pending || self.last_progress.elapsed() >= self.progress_every;
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
            RunEnd::Stopped => StopReason::HostStop,
            RunEnd::SaveRequested => return Ok(()),
        };
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
            if hold.queue.is_empty() || hold.state != State::Protected {
                return Ok(());
            }
            drop(hold);
            std::thread::sleep(Duration::from_millis(2));
        }
        let mut hold = lock(&self.shared.hold);
        if hold.state == State::Protected {
            hold.release_all();
        }
        Ok(())
    }
}

/// The first multiple of `every` (non-zero) after `icount`.
fn next_multiple(icount: u64, every: u64) -> u64 {
    (icount / every).saturating_add(1).saturating_mul(every)
}
