//! One run loop for every way a machine runs: a kept VM, an ad-hoc
//! `lockstep run`, an FT primary, an FT backup gone live. The caller
//! builds the machine and the [`Runner`] (its host inputs and journals:
//! an FT log, a recording); the [`Session`] runs it, answers the typed
//! commands of the control socket ([`VmCommand`]) at instruction
//! boundaries, and keeps the VM's state with checked transitions
//! ([`Lifecycle`]).

use crate::control::{Request, VmCommand, VmReply};
use crate::home::Home;
use crate::running::{start_snapshot, SnapshotCommand};
use machine::{Machine, RunEnd, RunError, Runner};
use serde::Serialize;
use std::sync::mpsc::{Receiver, TryRecvError};

/// Where a VM's process is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum VmState {
    /// Built, not yet run.
    Created,
    /// Running, unprotected.
    Running,
    /// Held at an instruction boundary by a `pause` command.
    Paused,
    /// Running as a fault-tolerant primary (protected or waiting for a
    /// backup).
    FtPrimary,
    /// Following a primary (not a run loop until it goes live).
    FtBackup,
    /// Its machine was saved to disk to be resumed later.
    Suspended,
    /// Powered off or stopped; the process is ending.
    Stopped,
}

impl std::fmt::Display for VmState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            VmState::Created => "created",
            VmState::Running => "running",
            VmState::Paused => "paused",
            VmState::FtPrimary => "FT primary",
            VmState::FtBackup => "FT backup",
            VmState::Suspended => "suspended",
            VmState::Stopped => "stopped",
        })
    }
}

/// A transition the lifecycle does not have.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the VM is {from}; it cannot become {to}")]
pub struct BadTransition {
    pub from: VmState,
    pub to: VmState,
}

/// A VM's state and the transitions it may take.
#[derive(Debug, Clone)]
pub struct Lifecycle {
    state: VmState,
    /// What running means for this VM (unprotected or FT primary): the
    /// state a pause returns to.
    running: VmState,
}

impl Lifecycle {
    pub fn new() -> Lifecycle {
        Lifecycle {
            state: VmState::Created,
            running: VmState::Running,
        }
    }

    pub fn state(&self) -> VmState {
        self.state
    }

    /// Whether `from` may become `to`.
    pub fn allowed(from: VmState, to: VmState) -> bool {
        use VmState::*;
        matches!(
            (from, to),
            (Created, Running | FtPrimary | FtBackup | Stopped)
                | (Running, Paused | FtPrimary | Suspended | Stopped)
                | (FtPrimary, Paused | Running | Suspended | Stopped)
                | (Paused, Running | FtPrimary | Suspended | Stopped)
                | (FtBackup, FtPrimary | Stopped)
                | (Suspended, Running | FtPrimary | Stopped)
        )
    }

    /// Become `to`, if the lifecycle has that transition.
    pub fn go(&mut self, to: VmState) -> Result<(), BadTransition> {
        if !Self::allowed(self.state, to) {
            return Err(BadTransition {
                from: self.state,
                to,
            });
        }
        if matches!(to, VmState::Running | VmState::FtPrimary) {
            self.running = to;
        }
        self.state = to;
        Ok(())
    }

    /// Back from a pause to what running was.
    fn unpause(&mut self) -> Result<(), BadTransition> {
        match self.state {
            VmState::Paused => self.go(self.running),
            from => Err(BadTransition {
                from,
                to: self.running,
            }),
        }
    }
}

impl Default for Lifecycle {
    fn default() -> Self {
        Self::new()
    }
}

/// How a session's run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The guest powered off with this code.
    Poweroff(u32),
    /// The host stopped it (a signal, `vm stop`, the terminal's quit key).
    Stopped,
    /// The guest reset the machine and the run was set to end there.
    Reset,
    /// A `suspend` command: the caller saves the machine and exits.
    Suspend,
}

/// A kept VM's control: its bundle (for snapshots) and its commands.
struct Control {
    home: Home,
    name: String,
    requests: Receiver<Request>,
}

/// A machine and its runner, run by the one loop.
pub struct Session {
    pub machine: Machine,
    pub runner: Runner,
    life: Lifecycle,
    control: Option<Control>,
    on_save: Option<OnSave>,
}

/// See [`Session::with_on_save`].
type OnSave = Box<dyn FnMut(&mut Machine)>;

/// What a command asks of the loop.
enum Next {
    Run,
    Pause,
    End(Outcome),
    /// The machine and its bundle no longer agree (a snapshot's disk
    /// switch failed half-way): the run must end.
    Fail(RunError),
}

impl Session {
    /// A session that runs `machine` as `state`: [`VmState::Running`] or
    /// [`VmState::FtPrimary`]; or [`VmState::FtBackup`], which must
    /// [`Session::go_live`] before it runs.
    pub fn new(machine: Machine, runner: Runner, state: VmState) -> Result<Session, BadTransition> {
        let mut life = Lifecycle::new();
        life.go(state)?;
        Ok(Session {
            machine,
            runner,
            life,
            control: None,
            on_save: None,
        })
    }

    /// Answer the commands of the kept VM `name` in `home` (its control
    /// socket's [`crate::control::ControlServer::serve`] channel; each
    /// command must also wake the runner with a `Save` event).
    pub fn with_commands(mut self, home: Home, name: &str, requests: Receiver<Request>) -> Session {
        self.control = Some(Control {
            home,
            name: name.to_string(),
            requests,
        });
        self
    }

    /// What a `Save` event without a command does (an ad-hoc run's
    /// save-while-running key or SIGUSR1).
    pub fn with_on_save(mut self, save: impl FnMut(&mut Machine) + 'static) -> Session {
        self.on_save = Some(Box::new(save));
        self
    }

    pub fn state(&self) -> VmState {
        self.life.state()
    }

    /// A backup that stopped following takes over as the primary.
    pub fn go_live(&mut self) -> Result<(), BadTransition> {
        self.life.go(VmState::FtPrimary)
    }

    /// Run until the guest powers off, the host stops it, or a command
    /// ends the run.
    pub fn run(&mut self) -> Result<Outcome, RunError> {
        if !matches!(self.life.state(), VmState::Running | VmState::FtPrimary) {
            return Err(RunError::Journal(
                format!("a {} VM cannot run", self.life.state()).into(),
            ));
        }
        let outcome = loop {
            match self.runner.run(&mut self.machine)? {
                RunEnd::Poweroff(code) => break Outcome::Poweroff(code),
                RunEnd::Stopped => break Outcome::Stopped,
                RunEnd::Reset => break Outcome::Reset,
                RunEnd::SaveRequested => {
                    if self.control.is_none() {
                        if let Some(save) = &mut self.on_save {
                            save(&mut self.machine);
                        }
                        continue;
                    }
                    match self.take_commands() {
                        Next::Run => {}
                        Next::End(outcome) => break outcome,
                        Next::Fail(e) => return Err(e),
                        Next::Pause => {
                            if let Some(outcome) = self.paused()? {
                                break outcome;
                            }
                        }
                    }
                }
            }
        };
        let end = match outcome {
            Outcome::Suspend => VmState::Suspended,
            _ => VmState::Stopped,
        };
        // Every running state may end both ways.
        let _ = self.life.go(end);
        Ok(outcome)
    }

    /// The commands waiting now (none may be: a wake-up can come late).
    fn take_commands(&mut self) -> Next {
        loop {
            let Some(control) = &self.control else {
                return Next::Run;
            };
            let request = match control.requests.try_recv() {
                Ok(r) => r,
                Err(TryRecvError::Empty | TryRecvError::Disconnected) => return Next::Run,
            };
            match self.command(request) {
                Next::Run => {}
                other => return other,
            }
        }
    }

    /// Held by a pause: wait for the commands that end it.
    fn paused(&mut self) -> Result<Option<Outcome>, RunError> {
        loop {
            let request = match &self.control {
                Some(c) => match c.requests.recv() {
                    Ok(r) => r,
                    Err(_) => return Ok(None),
                },
                None => return Ok(None),
            };
            match self.command(request) {
                Next::Run => {
                    if self.life.state() != VmState::Paused {
                        return Ok(None);
                    }
                }
                Next::Pause => {}
                Next::End(outcome) => return Ok(Some(outcome)),
                Next::Fail(e) => return Err(e),
            }
        }
    }

    fn command(&mut self, request: Request) -> Next {
        let reply = request.reply;
        let refuse = |e: BadTransition| VmReply::Error {
            message: e.to_string(),
        };
        match request.command {
            VmCommand::Status {} => {
                let _ = reply.send(VmReply::Status {
                    pid: std::process::id(),
                    icount: self.machine.icount(),
                    mtime: self.machine.mtime(),
                    state: self.life.state().to_string(),
                });
                if self.life.state() == VmState::Paused {
                    Next::Pause
                } else {
                    Next::Run
                }
            }
            VmCommand::Pause {} => match self.life.go(VmState::Paused) {
                Ok(()) => {
                    let _ = reply.send(VmReply::Accepted);
                    Next::Pause
                }
                Err(e) => {
                    let _ = reply.send(refuse(e));
                    self.keep_going()
                }
            },
            VmCommand::Unpause {} => match self.life.unpause() {
                Ok(()) => {
                    let _ = reply.send(VmReply::Accepted);
                    Next::Run
                }
                Err(e) => {
                    let _ = reply.send(refuse(e));
                    Next::Run
                }
            },
            VmCommand::Stop {} => {
                let _ = reply.send(VmReply::Accepted);
                Next::End(Outcome::Stopped)
            }
            VmCommand::Suspend {} => {
                if !Lifecycle::allowed(self.life.state(), VmState::Suspended) {
                    let _ = reply.send(refuse(BadTransition {
                        from: self.life.state(),
                        to: VmState::Suspended,
                    }));
                    return self.keep_going();
                }
                let _ = reply.send(VmReply::Accepted);
                Next::End(Outcome::Suspend)
            }
            VmCommand::Snapshot {
                name,
                description,
                disk_only,
            } => {
                if let Some(c) = &self.control {
                    let command = SnapshotCommand {
                        name,
                        description,
                        disk_only,
                    };
                    // A paused guest's is copied at once; a running one's
                    // while the guest runs (a task on the runner).
                    let paused = self.life.state() == VmState::Paused;
                    let started = start_snapshot(
                        &c.home,
                        &c.name,
                        &mut self.machine,
                        &mut self.runner,
                        command,
                        reply,
                        paused,
                    );
                    if let Err(e) = started {
                        return Next::Fail(RunError::Journal(e));
                    }
                }
                self.keep_going()
            }
        }
    }

    /// Run on, or stay paused.
    fn keep_going(&self) -> Next {
        if self.life.state() == VmState::Paused {
            Next::Pause
        } else {
            Next::Run
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lifecycle_takes_only_its_transitions() {
        use VmState::*;
        let mut life = Lifecycle::new();
        assert_eq!(life.state(), Created);
        assert!(life.go(Paused).is_err(), "nothing to pause yet");
        life.go(FtPrimary).unwrap();
        life.go(Paused).unwrap();
        let twice = life.go(Paused).unwrap_err();
        assert_eq!(
            twice.to_string(),
            "the VM is paused; it cannot become paused"
        );
        // A pause returns to what running was: here, the FT primary.
        life.unpause().unwrap();
        assert_eq!(life.state(), FtPrimary);
        assert!(life.unpause().is_err(), "not paused");
        life.go(Stopped).unwrap();
        for to in [Created, Running, Paused, FtPrimary, FtBackup, Suspended] {
            assert!(life.go(to).is_err(), "stopped is final, not {to}");
        }
        // A backup only goes live or stops.
        assert!(Lifecycle::allowed(FtBackup, FtPrimary));
        assert!(!Lifecycle::allowed(FtBackup, Running));
        assert!(!Lifecycle::allowed(FtBackup, Suspended));
        assert!(Lifecycle::allowed(Suspended, Running));
    }
}
