//! Recording a running machine and replaying a recording (DESIGN §4).
//!
//! **Recording.** A [`Recorder`] is the runner's [`Journal`]: it logs every
//! input at the icount where it is applied, a `Checkpoint` with the state
//! hash every `checkpoint_every` instructions, and how the run ended. The
//! machine's outputs pass through a [`TeeOutput`] that hashes them into
//! per-channel windows; a window is logged as one `Output` record (length
//! and hash) whenever another record is written, so the log stays small
//! however chatty the console is.
//!
//! **Replaying.** [`replay`] runs a machine built from the same initial
//! state with no live inputs: it stops exactly at each record's icount
//! ([`Machine::step_until`]), applies inputs, and compares output windows
//! and state hashes with the recorded ones. The first difference is a
//! [`Divergence`] naming the icount and what differed.

use crate::record::{
    Control, Input as LogInput, OutputChannel, OutputHash, Record, RecordKind, StopReason,
};
use crate::{LogReader, LogWriter, ReadError, WriteError};
use machine::{Input, Journal, JournalError, Machine, MachineError, Output, OutputEvent};
use machine::{RunEnd, Step};
use std::collections::BTreeMap;
use std::fs::File;
use std::io::Read;
use std::sync::{Arc, Mutex, PoisonError};

/// Default distance between checkpoints, in instructions.
pub const CHECKPOINT_EVERY: u64 = 100_000_000;

/// Output hashed since the last window was taken, per channel.
#[derive(Default)]
pub struct OutputWindows {
    windows: BTreeMap<ChannelKey, (blake3::Hasher, u64)>,
}

/// Orders channels: console first, then NICs by number.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum ChannelKey {
    Console,
    Net(u8),
}

impl ChannelKey {
    fn channel(self) -> OutputChannel {
        match self {
            ChannelKey::Console => OutputChannel::Console,
            ChannelKey::Net(nic) => OutputChannel::Net { nic },
        }
    }
}

/// One closed window: what a channel emitted between two records.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Window {
    pub channel: OutputChannel,
    pub len: u64,
    pub hash: OutputHash,
}

impl OutputWindows {
    fn add(&mut self, key: ChannelKey, bytes: &[u8]) {
        let (hasher, len) = self.windows.entry(key).or_default();
        hasher.update(bytes);
        *len += bytes.len() as u64;
    }

    /// The windows with output since the last call, console first.
    pub fn take(&mut self) -> Vec<Window> {
        std::mem::take(&mut self.windows)
            .into_iter()
            .map(|(key, (hasher, len))| {
                let full = hasher.finalize();
                let mut hash = [0u8; 16];
                hash.copy_from_slice(&full.as_bytes()[..16]);
                Window {
                    channel: key.channel(),
                    len,
                    hash: OutputHash(hash),
                }
            })
            .collect()
    }
}

pub type SharedWindows = Arc<Mutex<OutputWindows>>;

fn lock(windows: &SharedWindows) -> std::sync::MutexGuard<'_, OutputWindows> {
    // A panic elsewhere cannot leave the windows half-updated in a way
    // that matters more than the panic itself.
    windows.lock().unwrap_or_else(PoisonError::into_inner)
}

/// An output sink that hashes everything into windows, then passes it on.
pub struct TeeOutput {
    inner: Box<dyn Output>,
    windows: SharedWindows,
}

impl TeeOutput {
    pub fn new(inner: Box<dyn Output>, windows: SharedWindows) -> Self {
        Self { inner, windows }
    }
}

impl Output for TeeOutput {
    fn emit(&mut self, icount: u64, event: OutputEvent<'_>) {
        {
            let mut w = lock(&self.windows);
            match event {
                OutputEvent::Console(bytes) => w.add(ChannelKey::Console, bytes),
                OutputEvent::Net { nic, frame } => {
                    // Frame boundaries matter: hash the length too.
                    let key = ChannelKey::Net(nic as u8);
                    w.add(key, &(frame.len() as u32).to_le_bytes());
                    w.add(key, frame);
                }
            }
        }
        self.inner.emit(icount, event);
    }
}

/// Converts a machine input to its log form.
pub fn log_input(input: &Input) -> Result<LogInput, JournalError> {
    Ok(match input {
        Input::Console(bytes) => LogInput::ConsoleInput(bytes.clone()),
        Input::Net { nic, frame } => LogInput::NetFrame {
            nic: u8::try_from(*nic).map_err(|_| format!("NIC {nic} cannot be logged"))?,
            frame: frame.clone(),
        },
        Input::ClockWarp(ticks) => LogInput::ClockWarp { ticks: *ticks },
        Input::VmGenId(_) => return Err("a VM generation id change cannot be recorded".into()),
    })
}

/// Converts a logged input back; `None` for inputs the machine has no
/// use for in this version (entropy, host commands).
pub fn machine_input(input: &LogInput) -> Option<Input> {
    match input {
        LogInput::ConsoleInput(bytes) => Some(Input::Console(bytes.clone())),
        LogInput::NetFrame { nic, frame } => Some(Input::Net {
            nic: usize::from(*nic),
            frame: frame.clone(),
        }),
        LogInput::ClockWarp { ticks } => Some(Input::ClockWarp(*ticks)),
        LogInput::Entropy(_) | LogInput::HostCommand(_) => None,
    }
}

/// What a recording wrote.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RecordStats {
    pub inputs: u64,
    pub checkpoints: u64,
    pub outputs: u64,
}

/// The runner's journal in record mode.
pub struct Recorder {
    writer: LogWriter<File>,
    windows: SharedWindows,
    checkpoint_every: u64,
    next_checkpoint: u64,
    stats: Arc<Mutex<RecordStats>>,
}

impl Recorder {
    /// Record into `writer` (header already written); `windows` must be the
    /// ones the machine's [`TeeOutput`] fills.
    pub fn new(writer: LogWriter<File>, windows: SharedWindows, checkpoint_every: u64) -> Self {
        let every = checkpoint_every.max(1);
        Self {
            writer,
            windows,
            checkpoint_every: every,
            next_checkpoint: every,
            stats: Arc::default(),
        }
    }

    /// Counters that stay readable after the runner took the recorder.
    pub fn stats(&self) -> Arc<Mutex<RecordStats>> {
        Arc::clone(&self.stats)
    }

    fn append(&mut self, icount: u64, kind: &RecordKind) -> Result<(), WriteError> {
        self.writer.append_next(icount, kind).map(|_| ())
    }

    /// Log the output windows closed at `icount`.
    fn flush_windows(&mut self, icount: u64) -> Result<(), WriteError> {
        let windows = lock(&self.windows).take();
        for w in windows {
            let kind = RecordKind::Output {
                channel: w.channel,
                len: w.len,
                hash: w.hash,
            };
            self.append(icount, &kind)?;
            self.bump(|s| s.outputs += 1);
        }
        Ok(())
    }

    fn bump(&self, f: impl FnOnce(&mut RecordStats)) {
        f(&mut self.stats.lock().unwrap_or_else(PoisonError::into_inner));
    }
}

impl Journal for Recorder {
    fn input(&mut self, machine: &Machine, input: &Input) -> Result<(), JournalError> {
        let icount = machine.icount();
        let record = RecordKind::Input(log_input(input)?);
        self.flush_windows(icount)?;
        self.append(icount, &record)?;
        self.bump(|s| s.inputs += 1);
        Ok(())
    }

    fn stepped(&mut self, machine: &mut Machine) -> Result<(), JournalError> {
        let icount = machine.icount();
        if icount < self.next_checkpoint {
            return Ok(());
        }
        self.next_checkpoint = (icount / self.checkpoint_every + 1) * self.checkpoint_every;
        let state_hash = machine.state_hash()?;
        self.flush_windows(icount)?;
        self.append(icount, &RecordKind::Checkpoint { state_hash })?;
        self.bump(|s| s.checkpoints += 1);
        Ok(())
    }

    fn ended(&mut self, machine: &mut Machine, end: RunEnd) -> Result<(), JournalError> {
        let icount = machine.icount();
        let state_hash = machine.state_hash()?;
        self.flush_windows(icount)?;
        self.append(icount, &RecordKind::Checkpoint { state_hash })?;
        let reason = match end {
            RunEnd::Poweroff(_) => StopReason::GuestPowerOff,
            // Ending at a reset is the host's choice (`--no-reboot`).
            RunEnd::Stopped | RunEnd::Reset => StopReason::HostStop,
            // The run goes on after a snapshot.
            RunEnd::SaveRequested => return Ok(()),
        };
        self.append(icount, &RecordKind::Control(Control::PowerOff(reason)))?;
        self.writer.sync()?;
        Ok(())
    }
}

/// Where a replay first differed from its recording.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Divergence {
    #[error("at icount {icount}: {channel:?} output differs from the recording ({recorded} bytes recorded, {replayed} replayed)")]
    Output {
        icount: u64,
        channel: OutputChannel,
        recorded: u64,
        replayed: u64,
    },
    #[error("at icount {icount}: the replay produced {channel:?} output the recording does not have ({replayed} bytes)")]
    ExtraOutput {
        icount: u64,
        channel: OutputChannel,
        replayed: u64,
    },
    #[error("at icount {icount}: machine state hash differs from the recording")]
    State { icount: u64 },
    #[error(
        "the guest powered off at icount {icount}, but the recording goes on to icount {expected}"
    )]
    EarlyPoweroff { icount: u64, expected: u64 },
    #[error("the machine went idle at icount {icount}, but the recording's next record is at icount {expected}")]
    Idle { icount: u64, expected: u64 },
    #[error("the recording ends with a guest power-off at icount {icount}, but the guest did not power off there")]
    NoPoweroff { icount: u64 },
    #[error("guest hart {hart} is stuck taking traps at pc {pc:#x}, icount {icount}")]
    TrapStorm { icount: u64, hart: usize, pc: u64 },
}

#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error(transparent)]
    Log(#[from] ReadError),
    #[error(transparent)]
    Machine(#[from] MachineError),
    #[error("replay diverged {0}")]
    Diverged(#[from] Divergence),
    #[error(
        "the log ends at icount {icount} without saying how the run ended (a recording cut short?)"
    )]
    Unfinished { icount: u64 },
}

/// What a replay checked.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReplayReport {
    pub records: u64,
    pub inputs: u64,
    pub checkpoints: u64,
    pub output_windows: u64,
    pub icount: u64,
    pub end: Option<StopReason>,
}

/// Re-execute the recording `reader` on `machine` (built from the same
/// initial state, its output a [`TeeOutput`] filling `windows`), checking
/// every output window and checkpoint on the way.
pub fn replay<R: Read>(
    machine: &mut Machine,
    windows: &SharedWindows,
    reader: &mut LogReader<R>,
) -> Result<ReplayReport, ReplayError> {
    let mut follower = Follower::new(windows.clone());
    while let Some(record) = reader.next_record()? {
        if follower.execute::<ReplayError>(machine, &record)?.is_some() {
            return Ok(follower.report);
        }
    }
    Err(ReplayError::Unfinished {
        icount: machine.icount(),
    })
}

/// Re-executes records one by one, checking output windows and
/// checkpoints: the core of `replay` and of an FT backup.
pub struct Follower {
    windows: SharedWindows,
    /// Windows closed at the current record's icount, not yet matched
    /// against Output records.
    closed: Option<(u64, Vec<Window>)>,
    /// The icount at which the guest powered off, if it did.
    powered_off: Option<u64>,
    pub report: ReplayReport,
}

impl Follower {
    /// `windows` are the ones the machine's [`TeeOutput`] fills.
    pub fn new(windows: SharedWindows) -> Self {
        Self {
            windows,
            closed: None,
            powered_off: None,
            report: ReplayReport::default(),
        }
    }

    /// Run `machine` to the record's icount and apply or check the record.
    /// Returns how the run ended when the record says it ended.
    pub fn execute<E>(
        &mut self,
        machine: &mut Machine,
        record: &Record,
    ) -> Result<Option<StopReason>, E>
    where
        E: From<Divergence> + From<MachineError>,
    {
        self.report.records += 1;
        let at = record.icount;
        match self.powered_off {
            Some(icount) if at > icount => {
                return Err(Divergence::EarlyPoweroff {
                    icount,
                    expected: at,
                }
                .into())
            }
            Some(_) => {}
            None => self.powered_off = run_to::<E>(machine, at)?,
        }
        if !matches!(record.kind, RecordKind::Output { .. }) {
            check_no_unmatched(&mut self.closed, &self.windows, at)?;
        }
        match &record.kind {
            RecordKind::Output { channel, len, hash } => {
                let windows = &self.windows;
                let pending = self
                    .closed
                    .get_or_insert_with(|| (at, lock(windows).take()));
                match_window(&mut pending.1, at, *channel, *len, *hash)?;
                self.report.output_windows += 1;
            }
            RecordKind::Input(input) => {
                if let Some(input) = machine_input(input) {
                    machine.input(input);
                }
                self.report.inputs += 1;
            }
            RecordKind::Checkpoint { state_hash } => {
                if machine.state_hash()? != *state_hash {
                    return Err(Divergence::State { icount: at }.into());
                }
                self.report.checkpoints += 1;
            }
            RecordKind::Control(Control::PowerOff(reason)) => {
                if *reason == StopReason::GuestPowerOff && self.powered_off.is_none() {
                    return Err(Divergence::NoPoweroff { icount: at }.into());
                }
                self.report.end = Some(*reason);
                self.report.icount = machine.icount();
                return Ok(Some(*reason));
            }
            RecordKind::Progress | RecordKind::Control(Control::ConfigChange(_)) => {}
        }
        Ok(None)
    }
}

/// Run until icount `target`, which a faithful replay (or an FT backup)
/// always reaches. Returns the icount if the guest powered off exactly
/// there; anything else that stops the run early is a [`Divergence`].
pub fn run_to<E>(machine: &mut Machine, target: u64) -> Result<Option<u64>, E>
where
    E: From<Divergence> + From<MachineError>,
{
    while machine.icount() < target {
        match machine.step_until(target)? {
            Step::Ran | Step::Reset => {}
            Step::Idle => {
                return Err(Divergence::Idle {
                    icount: machine.icount(),
                    expected: target,
                }
                .into())
            }
            Step::Poweroff(_) if machine.icount() == target => return Ok(Some(target)),
            Step::Poweroff(_) => {
                return Err(Divergence::EarlyPoweroff {
                    icount: machine.icount(),
                    expected: target,
                }
                .into())
            }
            Step::TrapStorm { hart, pc, .. } => {
                return Err(Divergence::TrapStorm {
                    icount: machine.icount(),
                    hart,
                    pc,
                }
                .into())
            }
        }
    }
    Ok(None)
}

/// Match one recorded `Output` window against the windows the replay
/// closed at `icount` (removing it from `pending`).
pub fn match_window(
    pending: &mut Vec<Window>,
    icount: u64,
    channel: OutputChannel,
    len: u64,
    hash: OutputHash,
) -> Result<(), Divergence> {
    let Some(pos) = pending.iter().position(|w| w.channel == channel) else {
        return Err(Divergence::Output {
            icount,
            channel,
            recorded: len,
            replayed: 0,
        });
    };
    let w = pending.remove(pos);
    if w.len != len || w.hash != hash {
        return Err(Divergence::Output {
            icount,
            channel,
            recorded: len,
            replayed: w.len,
        });
    }
    Ok(())
}

/// Before any non-output record: every output the replay produced must
/// have been matched by an Output record.
pub fn check_no_unmatched(
    closed: &mut Option<(u64, Vec<Window>)>,
    windows: &SharedWindows,
    at: u64,
) -> Result<(), Divergence> {
    let (icount, rest) = closed.take().unwrap_or_else(|| (at, lock(windows).take()));
    match rest.first() {
        Some(w) => Err(Divergence::ExtraOutput {
            icount,
            channel: w.channel,
            replayed: w.len,
        }),
        None => Ok(()),
    }
}
