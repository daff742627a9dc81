//! The host side of running a machine: everything that depends on real
//! time, sleeping or the outside world lives here, never in [`Machine`].
//!
//! The runner decides the machine's inputs (DESIGN §3.2–3.3): console bytes
//! (fed at slice boundaries, as fast as the UART takes them) and clock
//! warps: an idle skip when every hart waits in WFI (sleep in real time
//! until the next timer deadline or console input, then warp guest time to
//! it, so an idle guest costs no host CPU) and catch-up when guest time
//! falls behind real time. Later, record/replay logs exactly these calls.

use crate::machine::{Machine, MachineError, Step};
use crate::Input;
use std::collections::VecDeque;
use std::sync::mpsc::{Receiver, RecvTimeoutError, TryRecvError};
use std::time::{Duration, Instant};

/// Nanoseconds per `mtime` tick (10 MHz).
const NS_PER_TICK: u64 = 100;
/// Catch up only when guest time is behind real time by more than this
/// (in ticks: 1 ms), so warps stay few.
const CATCH_UP_SLACK: u64 = 10_000;
/// Received frames a NIC may have waiting for guest buffers; more are
/// dropped, as a switch port's queue would.
const NET_BACKLOG: usize = 1024;

/// Something from the host side for the running machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostEvent {
    /// Bytes typed on the console.
    Console(Vec<u8>),
    /// A frame received for NIC `nic`.
    Net { nic: usize, frame: Vec<u8> },
    /// Stop running (the user quit).
    Stop,
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

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunEnd {
    /// The guest powered off with this exit code.
    Poweroff(u32),
    /// The host asked to stop ([`HostEvent::Stop`]).
    Stopped,
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Machine(#[from] MachineError),
    #[error("guest hart {hart} is stuck taking traps at pc {pc:#x} (cause {cause:#x})")]
    TrapStorm { hart: usize, pc: u64, cause: u64 },
    #[error("the guest hung: every hart waits for an interrupt, with no timer armed and no input possible")]
    Hung,
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
    /// The host instant that corresponds to `mtime` 0.
    anchor: Instant,
}

impl Runner {
    pub fn new(events: Receiver<HostEvent>, pacing: Pacing) -> Self {
        Self {
            events,
            pacing,
            events_open: true,
            pending: VecDeque::new(),
            frames: Vec::new(),
            anchor: Instant::now(),
        }
    }

    /// Run until the guest powers off, the host stops it, or it fails.
    pub fn run(&mut self, machine: &mut Machine) -> Result<RunEnd, RunError> {
        self.anchor =
            Instant::now() - Duration::from_nanos(machine.mtime().saturating_mul(NS_PER_TICK));
        loop {
            if self.poll_events() {
                return Ok(RunEnd::Stopped);
            }
            self.feed_console(machine);
            self.feed_net(machine);
            match machine.step()? {
                Step::Ran => self.catch_up(machine),
                Step::Idle => {
                    if let Some(end) = self.idle(machine)? {
                        return Ok(end);
                    }
                }
                Step::Reset => self.anchor = Instant::now(),
                Step::Poweroff(code) => return Ok(RunEnd::Poweroff(code)),
                Step::TrapStorm { hart, pc, cause } => {
                    return Err(RunError::TrapStorm { hart, pc, cause })
                }
            }
        }
    }

    /// Take whatever events are waiting; true if asked to stop.
    fn poll_events(&mut self) -> bool {
        while self.events_open {
            match self.events.try_recv() {
                Ok(event) => {
                    if self.accept(event) {
                        return true;
                    }
                }
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => self.events_open = false,
            }
        }
        false
    }

    /// Queue one event; true if it asks to stop.
    fn accept(&mut self, event: HostEvent) -> bool {
        match event {
            HostEvent::Console(bytes) => {
                self.pending.extend(bytes);
                false
            }
            HostEvent::Net { nic, frame } => {
                if self.frames.len() <= nic {
                    self.frames.resize_with(nic + 1, VecDeque::new);
                }
                if self.frames[nic].len() < NET_BACKLOG {
                    self.frames[nic].push_back(frame);
                }
                false
            }
            HostEvent::Stop => true,
        }
    }

    /// Give each NIC the waiting frames it has receive buffers for.
    fn feed_net(&mut self, machine: &mut Machine) {
        for (nic, queue) in self.frames.iter_mut().enumerate() {
            while !queue.is_empty() && machine.net_rx_ready(nic) {
                if let Some(frame) = queue.pop_front() {
                    machine.input(Input::Net { nic, frame });
                }
            }
        }
    }

    /// Give the UART as many pending bytes as it has room for.
    fn feed_console(&mut self, machine: &mut Machine) {
        let n = machine.console_room().min(self.pending.len());
        if n > 0 {
            let bytes: Vec<u8> = self.pending.drain(..n).collect();
            machine.input(Input::Console(bytes));
        }
    }

    /// Guest time that real time has reached, in ticks.
    fn host_ticks(&self) -> u64 {
        let ns = self.anchor.elapsed().as_nanos() / u128::from(NS_PER_TICK);
        u64::try_from(ns).unwrap_or(u64::MAX)
    }

    fn catch_up(&self, machine: &mut Machine) {
        if self.pacing != Pacing::RealTime {
            return;
        }
        let (host, guest) = (self.host_ticks(), machine.mtime());
        if host > guest.saturating_add(CATCH_UP_SLACK) {
            machine.input(Input::ClockWarp(host - guest));
        }
    }

    /// Every hart waits: wait for the next deadline or an event, then warp
    /// guest time forward to when it happened.
    fn idle(&mut self, machine: &mut Machine) -> Result<Option<RunEnd>, RunError> {
        let deadline = machine.next_deadline();
        let wait = match (self.pacing, deadline) {
            (Pacing::FastForward, Some(_)) => Some(Duration::ZERO),
            (Pacing::RealTime, Some(d)) => {
                let at = self.anchor + Duration::from_nanos(d.saturating_mul(NS_PER_TICK));
                Some(at.saturating_duration_since(Instant::now()))
            }
            (_, None) => None,
        };
        match self.wait_event(wait) {
            Waited::Stop => return Ok(Some(RunEnd::Stopped)),
            Waited::Event => {
                // Input arrived before the deadline: guest time moves to now.
                let target = match deadline {
                    Some(d) => self.host_ticks().min(d),
                    None => self.host_ticks(),
                };
                if self.pacing == Pacing::RealTime {
                    warp_to(machine, target);
                }
            }
            Waited::Timeout => {
                if let Some(d) = deadline {
                    warp_to(machine, d);
                }
            }
            Waited::Never => return Err(RunError::Hung),
        }
        Ok(None)
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
                    return if self.accept(event) {
                        Waited::Stop
                    } else {
                        Waited::Event
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
    Stop,
    Timeout,
    /// No deadline and no event can ever come.
    Never,
}

/// Warp guest time forward to `target` ticks (never backwards).
fn warp_to(machine: &mut Machine, target: u64) {
    let now = machine.mtime();
    if target > now {
        machine.input(Input::ClockWarp(target - now));
    }
}
