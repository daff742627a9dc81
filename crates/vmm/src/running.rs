//! The snapshot of a running VM, taken in the VM's own process when its
//! run loop ([`crate::session`]) is asked for one.
//!
//! # A snapshot of a running VM
//!
//! Memory is copied while the guest runs (the pre-copy of
//! [`machine::snapshot::LiveSave`], RAM only, into a new state file
//! through [`machine::snapshot::Assembler`]), a budget per run-loop step,
//! round after round, until what the guest dirtied since the round began
//! is small. Then, with the guest paused (inside one step): the last
//! dirty pages, the harts and devices, a flush of the disks, a switch of
//! every disk to a new empty qcow2 layer over its present top (made
//! before the pause), and `vm.toml` switched to name the snapshot and
//! the new layers. The guest then runs on, writing only to the new
//! layers, while the state file is completed (the identity of the frozen
//! layers is their digest, read after the pause) and renamed into place.
//! A process that dies before that leaves a snapshot naming a state file
//! that does not exist: the next command keeps it as a powered-off
//! snapshot of its disks ([`crate::Vm`]'s repair).

use crate::control::VmReply;
use crate::home::Home;
use crate::vm::{PendingSnapshot, Vm};
use machine::snapshot::{Assembler, LiveSave, LiveSaveError, Piece, SnapshotError};
use machine::{Input, Journal, JournalError, Machine, RunEnd, Runner};
use std::convert::Infallible;
use std::path::PathBuf;
use std::sync::mpsc::Sender;
use std::time::Instant;

/// RAM copied per run-loop step during the pre-copy.
const COPY_PER_STEP: usize = 8 << 20;
/// Pause for the last round once a round is at most this large.
const FINAL_ROUND_BYTES: u64 = 4 << 20;
/// Pause after this many rounds whatever is left (a guest dirtying memory
/// faster than it is copied never converges).
const MAX_ROUNDS: u32 = 8;

/// Start a snapshot of the running machine for `reply`: a disk-only one
/// at once (the guest paused for it), a full one as a task on `runner`.
pub(crate) fn start_snapshot(
    home: &Home,
    vm_name: &str,
    machine: &mut Machine,
    runner: &mut Runner,
    command: SnapshotCommand,
    reply: Sender<VmReply>,
    paused: bool,
) -> Result<(), JournalError> {
    let begun = home.open(vm_name).and_then(|mut vm| {
        let pending =
            vm.snapshot_begin_running(&command.name, &command.description, command.disk_only)?;
        Ok((vm, pending))
    });
    match begun {
        Ok((vm, pending)) if command.disk_only => {
            let (answer, fatal) = disk_only_snapshot(machine, vm, pending);
            let _ = reply.send(answer);
            if let Some(e) = fatal {
                return Err(e);
            }
        }
        Ok((vm, pending)) => {
            let mut task = SnapshotTask::new(machine, vm, pending, reply);
            if !paused {
                runner.add_journal(Box::new(task));
                return Ok(());
            }
            // Nothing runs meanwhile: copy it all now.
            while !task.done() {
                task.stepped(machine)?;
            }
        }
        Err(e) => {
            let _ = reply.send(VmReply::Error {
                message: e.to_string(),
            });
        }
    }
    Ok(())
}

/// A [`crate::VmCommand::Snapshot`]'s fields.
pub(crate) struct SnapshotCommand {
    pub name: String,
    pub description: String,
    pub disk_only: bool,
}

/// Switch every disk of `machine` to the pending snapshot's new layers
/// (flushing first) and commit the snapshot; the guest is paused
/// throughout. On failure before any disk switched, the snapshot is
/// abandoned and the machine untouched.
fn switch_disks(
    machine: &mut Machine,
    vm: &mut Vm,
    pending: &PendingSnapshot,
) -> Result<(), Fatal> {
    // Frozen, the present tops let the new layers over them open them.
    machine
        .set_disks_frozen(true)
        .map_err(|e| Fatal::Before(e.to_string()))?;
    let options = disk::OpenOptions {
        format: disk::Format::Qcow2,
        read_only: false,
        backing: disk::BackingPolicy::Any,
    };
    let mut tops = Vec::new();
    for top in &pending.tops {
        match disk::open(top, &options) {
            Ok(t) => tops.push(t),
            Err(e) => {
                drop(tops);
                return Err(match machine.set_disks_frozen(false) {
                    Ok(()) => Fatal::Before(e.to_string()),
                    Err(thaw) => Fatal::After(format!("{e}; then {thaw}")),
                });
            }
        }
    }
    for (i, top) in tops.into_iter().enumerate() {
        // Dropping the old backend closes the frozen layer's writable handle.
        machine
            .replace_disk(i, top)
            .map_err(|e| Fatal::After(e.to_string()))?;
    }
    vm.snapshot_commit(pending)
        .map_err(|e| Fatal::After(format!("recording the snapshot: {e}")))
}

/// Why switching disks failed: before anything changed (the snapshot is
/// given up, the guest runs on), or after (the machine's disks and the
/// bundle disagree: the run must end).
enum Fatal {
    Before(String),
    After(String),
}

/// A disk-only snapshot, taken at once: the answer, and the error that
/// must end the run if the machine and the bundle no longer agree.
fn disk_only_snapshot(
    machine: &mut Machine,
    mut vm: Vm,
    pending: PendingSnapshot,
) -> (VmReply, Option<JournalError>) {
    let started = Instant::now();
    match switch_disks(machine, &mut vm, &pending) {
        Ok(()) => (
            VmReply::Snapshot {
                name: pending.name.clone(),
                icount: machine.icount(),
                pause_us: started.elapsed().as_micros() as u64,
                total_ms: started.elapsed().as_millis() as u64,
                rounds: 0,
                ram_bytes: 0,
            },
            None,
        ),
        Err(Fatal::Before(message)) => {
            vm.snapshot_abandon(pending);
            (VmReply::Error { message }, None)
        }
        Err(Fatal::After(message)) => (
            VmReply::Error {
                message: format!("{message} (the VM stops: start it again)"),
            },
            Some(message.into()),
        ),
    }
}

/// A snapshot of the running machine in progress: a journal the runner
/// calls at every step (see the module docs); it is done once the guest
/// runs on the new layers.
struct SnapshotTask {
    job: Option<Job>,
    started: Instant,
}

struct Job {
    vm: Vm,
    pending: PendingSnapshot,
    save: LiveSave,
    file: Assembler,
    reply: Sender<VmReply>,
    ram_bytes: u64,
    uuid: [u8; 16],
    /// When progress was last reported.
    reported: Instant,
}

/// Progress goes to the client at most this often.
const PROGRESS_EVERY: std::time::Duration = std::time::Duration::from_millis(100);

impl SnapshotTask {
    fn new(
        machine: &mut Machine,
        vm: Vm,
        pending: PendingSnapshot,
        reply: Sender<VmReply>,
    ) -> Self {
        let started = Instant::now();
        let file = machine
            .boot_image_parts()
            .map_err(|e| e.to_string())
            .and_then(|parts| {
                let len = parts.iter().map(|p| p.len() as u64).sum();
                let mut file = Assembler::new(&pending.states, len, machine.config().memory)
                    .map_err(|e| e.to_string())?;
                let mut at = 0;
                for part in parts {
                    file.images(at, part).map_err(|e| e.to_string())?;
                    at += part.len() as u64;
                }
                Ok(file)
            });
        let file = match file {
            Ok(f) => f,
            Err(message) => {
                vm.snapshot_abandon(pending);
                let _ = reply.send(VmReply::Error { message });
                return SnapshotTask { job: None, started };
            }
        };
        let uuid = *vm.config().uuid.as_bytes();
        SnapshotTask {
            job: Some(Job {
                vm,
                pending,
                save: machine.live_save_ram(),
                file,
                reply,
                ram_bytes: 0,
                uuid,
                reported: Instant::now(),
            }),
            started,
        }
    }
}

/// Why a running VM's snapshot could not write its memory state.
#[derive(Debug, thiserror::Error)]
enum StateFileError {
    #[error(transparent)]
    File(#[from] SnapshotError),
    #[error("a RAM-only save sent disk data")]
    DiskData,
    #[error("reading disk {disk}: {source}")]
    Disk {
        disk: usize,
        source: disk::DiskError,
    },
    #[error("opening the frozen layer {}: {source}", path.display())]
    Layer {
        path: PathBuf,
        source: disk::DiskError,
    },
    #[error(transparent)]
    Place(#[from] durable::Error<Infallible>),
}

impl From<LiveSaveError<StateFileError>> for StateFileError {
    fn from(e: LiveSaveError<StateFileError>) -> Self {
        match e {
            LiveSaveError::Disk { disk, source } => StateFileError::Disk { disk, source },
            LiveSaveError::Snapshot(e) => StateFileError::File(e),
            LiveSaveError::Sink(e) => e,
        }
    }
}

/// Sends pages to the state file, counting bytes.
fn to_file<'a>(
    file: &'a mut Assembler,
    bytes: &'a mut u64,
) -> impl FnMut(Piece<'_>) -> Result<(), StateFileError> + 'a {
    move |piece| match piece {
        Piece::Page { index, bytes: page } => {
            *bytes += page.len() as u64;
            Ok(file.page(index as u64, page)?)
        }
        Piece::Disk { .. } => Err(StateFileError::DiskData),
    }
}

impl Job {
    /// Copy a step's budget; `Ok(true)` when it is time for the last round.
    fn precopy(&mut self, machine: &mut Machine) -> Result<bool, StateFileError> {
        let complete = {
            let mut sink = to_file(&mut self.file, &mut self.ram_bytes);
            self.save.copy(machine, COPY_PER_STEP, &mut sink)?
        };
        if self.reported.elapsed() >= PROGRESS_EVERY {
            self.reported = Instant::now();
            let total = machine.config().memory;
            let _ = self.reply.send(VmReply::Progress {
                what: format!("copying RAM (round {})", self.save.rounds()),
                done: self.ram_bytes.min(total),
                total,
            });
        }
        if !complete {
            return Ok(false);
        }
        let next = self.save.next_round(machine);
        Ok(next <= FINAL_ROUND_BYTES || self.save.rounds() >= MAX_ROUNDS)
    }

    /// The pause: last pages and state, then the disks switch. The state
    /// file is completed on a thread of its own.
    fn finish(self, machine: &mut Machine, started: Instant) -> Result<(), JournalError> {
        let Job {
            mut vm,
            pending,
            save,
            mut file,
            reply,
            mut ram_bytes,
            uuid,
            reported: _,
        } = self;
        let paused = Instant::now();
        let rounds = save.rounds();
        let state = {
            let mut sink = to_file(&mut file, &mut ram_bytes);
            save.finish(machine, Some(uuid), &mut sink)
        };
        let state = match state {
            Ok(s) => s,
            Err(e) => {
                vm.snapshot_abandon(pending);
                let _ = reply.send(VmReply::Error {
                    message: e.to_string(),
                });
                return Ok(());
            }
        };
        match switch_disks(machine, &mut vm, &pending) {
            Ok(()) => {}
            Err(Fatal::Before(message)) => {
                vm.snapshot_abandon(pending);
                let _ = reply.send(VmReply::Error { message });
                return Ok(());
            }
            Err(Fatal::After(message)) => {
                let _ = reply.send(VmReply::Error {
                    message: message.clone(),
                });
                return Err(message.into());
            }
        }
        let pause = paused.elapsed();
        let icount = machine.icount();
        std::thread::spawn(move || {
            let result = complete_state(file, &state, &pending);
            // The command lock is held until the state file is in place.
            drop(vm);
            let _ = reply.send(match result {
                Ok(()) => VmReply::Snapshot {
                    name: pending.name.clone(),
                    icount,
                    pause_us: pause.as_micros() as u64,
                    total_ms: started.elapsed().as_millis() as u64,
                    rounds,
                    ram_bytes,
                },
                Err(message) => VmReply::Error {
                    message: format!(
                        "snapshot {}: writing its memory state: {message} (it is kept as a snapshot of the disks)",
                        pending.name
                    ),
                },
            });
        });
        Ok(())
    }
}

/// Write the state file's last sections (with the frozen layers' identity)
/// and put it in place durably.
fn complete_state(
    file: Assembler,
    state: &[u8],
    pending: &PendingSnapshot,
) -> Result<(), StateFileError> {
    let Some(target) = &pending.state else {
        return Ok(());
    };
    let options = disk::OpenOptions {
        format: disk::Format::Qcow2,
        read_only: true,
        backing: disk::BackingPolicy::Any,
    };
    let mut frozen = Vec::new();
    for layer in &pending.frozen {
        let layer_err = |source| StateFileError::Layer {
            path: layer.clone(),
            source,
        };
        frozen.push(disk::open(layer, &options).map_err(layer_err)?);
    }
    let refs: Vec<&dyn disk::BlockDevice> = frozen.iter().map(|d| &**d).collect();
    let done = file.finish_frozen(state, &refs)?;
    let options = durable::Options {
        crash_points: true,
        what: "snapshot state",
        ..durable::Options::default()
    };
    Ok(durable::place::<Infallible>(done.path, target, &options)?)
}

impl Journal for SnapshotTask {
    fn input(&mut self, _: &Machine, _: &Input) -> Result<(), JournalError> {
        Ok(())
    }

    fn stepped(&mut self, machine: &mut Machine) -> Result<(), JournalError> {
        let Some(job) = &mut self.job else {
            return Ok(());
        };
        match job.precopy(machine) {
            Ok(false) => Ok(()),
            Ok(true) => match self.job.take() {
                Some(job) => job.finish(machine, self.started),
                None => Ok(()),
            },
            Err(e) => {
                if let Some(job) = self.job.take() {
                    job.save.cancel(machine);
                    job.vm.snapshot_abandon(job.pending);
                    let message = e.to_string();
                    let _ = job.reply.send(VmReply::Error { message });
                }
                Ok(())
            }
        }
    }

    fn ended(&mut self, machine: &mut Machine, _: RunEnd) -> Result<(), JournalError> {
        if let Some(job) = self.job.take() {
            job.save.cancel(machine);
            job.vm.snapshot_abandon(job.pending);
            let _ = job.reply.send(VmReply::Error {
                message: "the VM stopped before the snapshot was taken".into(),
            });
        }
        Ok(())
    }

    fn done(&self) -> bool {
        self.job.is_none()
    }
}
