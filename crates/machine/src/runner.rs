//! The host side of running a machine: everything that depends on real
//! time, sleeping or the outside world lives here, never in [`Machine`].
//!
//! The runner decides the machine's inputs (DESIGN §3.2–3.3): console bytes
//! (fed at slice boundaries, as fast as the UART takes them) and clock
//! warps: an idle skip when every hart waits in WFI (sleep in real time
//! until the next timer deadline or console input, then warp guest time to
//! it, so an idle guest costs no host CPU) and catch-up when guest time
//! falls behind real time; when the guest runs faster than `mtime`'s
//! nominal rate (its instructions per tick × 10 MHz, see [`crate::clock`]),
//! the runner waits for real time instead. Every input
//! passes one [`Journal`] hook, which is what record mode logs.

use crate::machine::{Machine, MachineError, Step};
use crate::Input;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, TryRecvError};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Nanoseconds per `mtime` tick (10 MHz).
pub const NS_PER_TICK: u64 = 100;
/// Catch up only when guest time is behind real time by more than this
/// (in ticks: 10 ms): each warp is a logged input, and a busy guest slower
/// than real time would otherwise log one every millisecond (then 96% of a
/// replay log). 10 ms keeps guest time well inside its 100 ms budget.
const CATCH_UP_SLACK: u64 = 100_000;
/// Wait for real time only when guest time is ahead by more than this (in
/// ticks: 2 ms), so the waits are few and long enough to be worth a sleep.
const AHEAD_SLACK: u64 = 20_000;
/// Received frames a NIC may have waiting for guest buffers; more are
/// dropped, as a switch port's queue would.
const NET_BACKLOG: usize = 1024;

/// Something from the host side for the running machine.
#[derive(Debug, PartialEq, Eq)]
pub enum HostEvent {
    /// Bytes typed on the console.
    Console(Vec<u8>),
    /// A frame received for NIC `nic`, holding its place in its reader's
    /// bounded queue until the runner takes it.
    Net {
        nic: usize,
        frame: Vec<u8>,
        credit: Credit,
    },
    /// Stop running (the user quit).
    Stop,
    /// Pause for a snapshot: [`Runner::run`] returns
    /// [`RunEnd::SaveRequested`]; call it again to carry on.
    Save,
    /// Nothing for the machine: end an idle wait so the journal's
    /// `stepped` runs soon (host-side work such as an FT sync waits on it).
    Wake,
}

/// A place in a bounded queue of host events (e.g. a NIC reader's frames
/// not yet taken by the runner): given back when dropped, which the runner
/// does as it takes the event. A reader that finds no room drops its input
/// and counts it, so a flood while the runner is busy cannot grow memory.
#[derive(Debug)]
pub struct Credit {
    queued: Arc<AtomicUsize>,
    bytes: usize,
}

/// The shared account behind [`Credit`]s: bytes queued, and a bound.
#[derive(Debug, Clone)]
pub struct CreditPool {
    queued: Arc<AtomicUsize>,
    max_bytes: usize,
}

impl CreditPool {
    pub fn new(max_bytes: usize) -> Self {
        CreditPool {
            queued: Arc::default(),
            max_bytes,
        }
    }

    /// A credit for `bytes`, or `None` if they would pass the bound.
    pub fn take(&self, bytes: usize) -> Option<Credit> {
        let mut now = self.queued.load(Ordering::Acquire);
        loop {
            let next = now.checked_add(bytes).filter(|&n| n <= self.max_bytes)?;
            match self
                .queued
                .compare_exchange_weak(now, next, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => {
                    return Some(Credit {
                        queued: Arc::clone(&self.queued),
                        bytes,
                    })
                }
                Err(seen) => now = seen,
            }
        }
    }

    /// Bytes queued now.
    pub fn queued(&self) -> usize {
        self.queued.load(Ordering::Acquire)
    }
}

/// Credits compare by what they hold, not by their pool (events compare
/// in tests).
impl PartialEq for Credit {
    fn eq(&self, other: &Self) -> bool {
        self.bytes == other.bytes
    }
}

impl Eq for Credit {}

impl Drop for Credit {
    fn drop(&mut self) {
        self.queued.fetch_sub(self.bytes, Ordering::AcqRel);
    }
}

/// How guest time relates to host time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pacing {
    /// Guest time keeps up with real time: idle waits sleep, and a guest
    /// running slower than real time is caught up.
    RealTime,
    /// Idle waits end at once (warped straight to the deadline); no
    /// catch-up. Guest time runs as fast as the host can go.
    FastForward,
}

/// What the runner did to keep guest time with real time: host-side
/// counters for reports and benchmarks, never guest-visible.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PacingStats {
    /// Host time spent waiting because guest time ran ahead of real time:
    /// the hart was faster than the clock rate, which capped it.
    pub ahead_wait: Duration,
    /// Catch-up warps (guest time behind real time) and their ticks.
    pub catch_up_warps: u64,
    pub catch_up_ticks: u64,
    /// Idle skips (every hart in WFI) and their ticks.
    pub idle_warps: u64,
    pub idle_ticks: u64,
}

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunEnd {
    /// The guest powered off with this exit code.
    Poweroff(u32),
    /// The host asked to stop ([`HostEvent::Stop`]).
    Stopped,
    /// The guest reset the machine and the runner was told to end there
    /// ([`Runner::with_exit_on_reset`]); the machine is already reset.
    Reset,
    /// The host asked for a snapshot ([`HostEvent::Save`]); the machine is
    /// at an instruction boundary and the run can go on.
    SaveRequested,
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Machine(#[from] MachineError),
    #[error("guest hart {hart} is stuck taking traps at pc {pc:#x} (cause {cause:#x})")]
    TrapStorm { hart: usize, pc: u64, cause: u64 },
    #[error("the guest hung: every hart waits for an interrupt, with no timer armed and no input possible")]
    Hung,
    #[error("{0}")]
    Journal(JournalError),
}

/// Errors of a [`Journal`]; they stop the run.
pub type JournalError = Box<dyn std::error::Error + Send + Sync>;

/// Sees everything the runner feeds the machine, in order (record mode;
/// later the FT primary's log channel).
pub trait Journal {
    /// `input` is about to be applied at the machine's current icount.
    fn input(&mut self, machine: &Machine, input: &Input) -> Result<(), JournalError>;
    /// A step (slice) ended at the machine's current icount.
    fn stepped(&mut self, machine: &mut Machine) -> Result<(), JournalError>;
    /// The run ended (the guest powered off or the host stopped it).
    fn ended(&mut self, machine: &mut Machine, end: RunEnd) -> Result<(), JournalError>;
    /// True once the journal has nothing more to do: the runner drops it
    /// after the step that finished it (a task such as a snapshot's
    /// pre-copy, not a log that must see the whole run).
    fn done(&self) -> bool {
        false
    }
}

pub struct Runner {
    events: Receiver<HostEvent>,
    pacing: Pacing,
    /// False once every event sender is gone (e.g. stdin reached EOF).
    events_open: bool,
    /// Console bytes received but not yet taken by the UART.
    pending: VecDeque<u8>,
    /// Frames received per NIC, waiting for a guest receive buffer.
    frames: Vec<VecDeque<Vec<u8>>>,
    /// The host instant that corresponds to `mtime` 0 (set when the first
    /// run starts; kept across pauses, so guest time catches up after one).
    anchor: Option<Instant>,
    /// Every input and step is reported to each, in the order added (an
    /// FT primary's log and a recording at once).
    journals: Vec<Box<dyn Journal>>,
    stats: PacingStats,
    /// End the run when the guest resets (`--no-reboot`).
    exit_on_reset: bool,
}

impl Runner {
    pub fn new(events: Receiver<HostEvent>, pacing: Pacing) -> Self {
        Self {
            events,
            pacing,
            events_open: true,
            pending: VecDeque::new(),
            frames: Vec::new(),
            anchor: None,
            journals: Vec::new(),
            stats: PacingStats::default(),
            exit_on_reset: false,
        }
    }

    /// End the run with [`RunEnd::Reset`] when the guest resets, rather
    /// than booting again (QEMU's `-no-reboot`).
    pub fn with_exit_on_reset(mut self, exit: bool) -> Self {
        self.exit_on_reset = exit;
        self
    }

    /// What pacing did so far (over every [`Runner::run`] call).
    pub fn stats(&self) -> PacingStats {
        self.stats
    }

    /// Pace guest time from `anchor`, the host instant of `mtime` 0,
    /// instead of from the first run (an FT backup going live continues
    /// the primary's clock, so guest time catches up the failover gap).
    pub fn with_anchor(mut self, anchor: Instant) -> Self {
        self.anchor = Some(anchor);
        self
    }

    /// Report every input and step to `journal` too (record mode, an FT
    /// primary's log; both at once compose).
    pub fn with_journal(mut self, journal: Box<dyn Journal>) -> Self {
        self.journals.push(journal);
        self
    }

    /// [`Runner::with_journal`] between runs (e.g. a snapshot's pre-copy,
    /// which the runner drops once it is [`Journal::done`]).
    pub fn add_journal(&mut self, journal: Box<dyn Journal>) {
        self.journals.push(journal);
    }

    /// Journals reporting now.
    pub fn journals(&self) -> usize {
        self.journals.len()
    }

    /// The one way the runner changes the machine: through the journals.
    fn apply(&mut self, machine: &mut Machine, input: Input) -> Result<(), RunError> {
        for journal in &mut self.journals {
            journal.input(machine, &input).map_err(RunError::Journal)?;
        }
        machine.input(input);
        Ok(())
    }

    fn end(&mut self, machine: &mut Machine, end: RunEnd) -> Result<RunEnd, RunError> {
        if end == RunEnd::SaveRequested {
            return Ok(end);
        }
        for journal in &mut self.journals {
            journal.ended(machine, end).map_err(RunError::Journal)?;
        }
        Ok(end)
    }

    /// Run until the guest powers off, the host stops it or asks for a
    /// snapshot, or it fails.
    pub fn run(&mut self, machine: &mut Machine) -> Result<RunEnd, RunError> {
        if self.anchor.is_none() {
            let guest = Duration::from_nanos(machine.mtime().saturating_mul(NS_PER_TICK));
            self.anchor = Some(Instant::now() - guest);
        }
        loop {
            if let Some(end) = self.poll_events() {
                return self.end(machine, end);
            }
            self.feed_console(machine)?;
            self.feed_net(machine)?;
            let step = machine.step()?;
            for journal in &mut self.journals {
                journal.stepped(machine).map_err(RunError::Journal)?;
            }
            self.journals.retain(|j| !j.done());
            match step {
                Step::Ran => {
                    if let Some(end) = self.pace(machine)? {
                        return self.end(machine, end);
                    }
                }
                Step::Idle => {
                    if let Some(end) = self.idle(machine)? {
                        return self.end(machine, end);
                    }
                }
                Step::Reset if self.exit_on_reset => return self.end(machine, RunEnd::Reset),
                Step::Reset => self.anchor = Some(Instant::now()),
                Step::Poweroff(code) => return self.end(machine, RunEnd::Poweroff(code)),
                Step::TrapStorm { hart, pc, cause } => {
                    return Err(RunError::TrapStorm { hart, pc, cause })
                }
            }
        }
    }

    /// Take whatever events are waiting; `Some` if one ends the run.
    fn poll_events(&mut self) -> Option<RunEnd> {
        while self.events_open {
            match self.events.try_recv() {
                Ok(event) => {
                    if let Some(end) = self.accept(event) {
                        return Some(end);
                    }
                }
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => self.events_open = false,
            }
        }
        None
    }

    /// Queue one event; `Some` if it ends the run.
    fn accept(&mut self, event: HostEvent) -> Option<RunEnd> {
        match event {
            HostEvent::Console(bytes) => {
                self.pending.extend(bytes);
                None
            }
            HostEvent::Net { nic, frame, credit } => {
                drop(credit);
                if self.frames.len() <= nic {
                    self.frames.resize_with(nic + 1, VecDeque::new);
                }
                if self.frames[nic].len() < NET_BACKLOG {
                    self.frames[nic].push_back(frame);
                }
                None
            }
            HostEvent::Stop => Some(RunEnd::Stopped),
            HostEvent::Save => Some(RunEnd::SaveRequested),
            HostEvent::Wake => None,
        }
    }

    /// Give each NIC the waiting frames it has receive buffers for.
    fn feed_net(&mut self, machine: &mut Machine) -> Result<(), RunError> {
        for nic in 0..self.frames.len() {
            while machine.net_rx_ready(nic) {
                let Some(frame) = self.frames[nic].pop_front() else {
                    break;
                };
                self.apply(machine, Input::Net { nic, frame })?;
            }
        }
        Ok(())
    }

    /// Give the UART as many pending bytes as it has room for.
    fn feed_console(&mut self, machine: &mut Machine) -> Result<(), RunError> {
        let n = machine.console_room().min(self.pending.len());
        if n > 0 {
            let bytes: Vec<u8> = self.pending.drain(..n).collect();
            self.apply(machine, Input::Console(bytes))?;
        }
        Ok(())
    }

    /// Guest time that real time has reached, in ticks.
    fn host_ticks(&self) -> u64 {
        let anchor = self.anchor.unwrap_or_else(Instant::now);
        let ns = anchor.elapsed().as_nanos() / u128::from(NS_PER_TICK);
        u64::try_from(ns).unwrap_or(u64::MAX)
    }

    /// Keep guest time with real time: warp it forward when the guest runs
    /// slower than real time; when it runs faster (than the VM's instructions
    /// per tick × 10 MHz, the rate `mtime` assumes), wait for real time to catch up, taking any
    /// host events meanwhile.
    fn pace(&mut self, machine: &mut Machine) -> Result<Option<RunEnd>, RunError> {
        if self.pacing != Pacing::RealTime {
            return Ok(None);
        }
        let (host, guest) = (self.host_ticks(), machine.mtime());
        if host > guest.saturating_add(CATCH_UP_SLACK) {
            self.stats.catch_up_warps += 1;
            self.stats.catch_up_ticks += host - guest;
            self.apply(machine, Input::ClockWarp(host - guest))?;
        } else if guest > host.saturating_add(AHEAD_SLACK) {
            let ahead = Duration::from_nanos((guest - host).saturating_mul(NS_PER_TICK));
            let waiting = Instant::now();
            let waited = self.wait_event(Some(ahead));
            self.stats.ahead_wait += waiting.elapsed();
            if let Waited::End(end) = waited {
                return Ok(Some(end));
            }
        }
        Ok(None)
    }

    /// Every hart waits: wait for the next deadline or an event, then warp
    /// guest time forward to when it happened.
    fn idle(&mut self, machine: &mut Machine) -> Result<Option<RunEnd>, RunError> {
        let deadline = machine.next_deadline();
        let wait = match (self.pacing, deadline) {
            (Pacing::FastForward, Some(_)) => Some(Duration::ZERO),
            (Pacing::RealTime, Some(d)) => {
                let anchor = self.anchor.unwrap_or_else(Instant::now);
                let at = anchor + Duration::from_nanos(d.saturating_mul(NS_PER_TICK));
                Some(at.saturating_duration_since(Instant::now()))
            }
            (_, None) => None,
        };
        match self.wait_event(wait) {
            Waited::End(end) => return Ok(Some(end)),
            Waited::Event => {
                // Input arrived before the deadline: guest time moves to now.
                let target = match deadline {
                    Some(d) => self.host_ticks().min(d),
                    None => self.host_ticks(),
                };
                if self.pacing == Pacing::RealTime {
                    self.warp_to(machine, target)?;
                }
            }
            Waited::Timeout => {
                if let Some(d) = deadline {
                    self.warp_to(machine, d)?;
                }
            }
            Waited::Never => return Err(RunError::Hung),
        }
        Ok(None)
    }

    /// Warp guest time forward to `target` ticks (never backwards).
    fn warp_to(&mut self, machine: &mut Machine, target: u64) -> Result<(), RunError> {
        let now = machine.mtime();
        if target > now {
            self.stats.idle_warps += 1;
            self.stats.idle_ticks += target - now;
            self.apply(machine, Input::ClockWarp(target - now))?;
        }
        Ok(())
    }

    /// Block for an event for up to `wait` (forever if `None`).
    fn wait_event(&mut self, wait: Option<Duration>) -> Waited {
        loop {
            if !self.events_open {
                return match wait {
                    Some(d) => {
                        std::thread::sleep(d);
                        Waited::Timeout
                    }
                    None => Waited::Never,
                };
            }
            let got = match wait {
                Some(d) => self.events.recv_timeout(d),
                None => self
                    .events
                    .recv()
                    .map_err(|_| RecvTimeoutError::Disconnected),
            };
            match got {
                Ok(event) => {
                    return match self.accept(event) {
                        Some(end) => Waited::End(end),
                        None => Waited::Event,
                    };
                }
                Err(RecvTimeoutError::Timeout) => return Waited::Timeout,
                Err(RecvTimeoutError::Disconnected) => self.events_open = false,
            }
        }
    }
}

enum Waited {
    Event,
    End(RunEnd),
    Timeout,
    /// No deadline and no event can ever come.
    Never,
}
