//! Sending a running machine to a new backup (the primary's side of the
//! sync): boot images, then RAM and disk replicas in pre-copy rounds
//! ([`machine::snapshot::LiveSave`]), a slice at each runner step while
//! the guest runs, then the last round and the state with the guest
//! paused. The backup assembles them into a snapshot and restores it.
//!
//! Each step copies at most 2 MiB, and none while more than 4 MiB wait to
//! be sent, so the guest is slowed but never stalled by a slow network. A
//! round that ends with at most 4 MiB changed since it began (or the
//! 12th) is followed by the paused last round.

use crate::channel::Sender;
use crate::error::{FtError, SendError};
use crate::wire::{Message, PAGE_ENTRY};
use machine::snapshot::{LiveSave, Piece};
use machine::Machine;
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Bytes copied per runner step while the guest runs.
const STEP_BUDGET: usize = 2 << 20;
/// No copying while this much is queued for the network.
const QUEUE_LIMIT: usize = 4 << 20;
/// A round this small is sent with the guest paused.
const FINAL_BYTES: u64 = 4 << 20;
/// The guest dirties memory faster than the network takes it: stop
/// iterating and pause for whatever is left.
const MAX_ROUNDS: u32 = 12;
/// RAM pages hashed ahead per step, so the state hash in the paused last
/// round has little left to do.
const PREHASH_PAGES: usize = 2048;
/// Pages per `Pages` message.
const PAGES_PER_MESSAGE: usize = 256;
/// Bytes of boot images per `Images` message.
const IMAGES_CHUNK: usize = 1 << 20;

/// A request from [`crate::FtPrimary::add_backup`] to the journal.
pub(crate) struct SyncRequest {
    pub tx: Sender,
    pub updates: mpsc::Sender<SyncUpdate>,
}

/// How a sync goes, for whoever asked for it.
#[derive(Debug)]
pub enum SyncUpdate {
    /// Round `round` was sent; the next has `next_bytes` to send.
    Round {
        round: u32,
        next_bytes: u64,
    },
    Done(SyncReport),
    Failed(SendError),
}

#[derive(Clone, Debug, PartialEq)]
pub struct SyncReport {
    pub rounds: u32,
    /// Bytes sent, boot images included.
    pub bytes: u64,
    /// How long the guest was paused for the last round.
    pub pause: Duration,
    /// From the start of the sync to the end of the last round.
    pub total: Duration,
    /// Where the backup's log begins.
    pub icount: u64,
}

pub(crate) struct SyncJob {
    /// `None` once the last round took it.
    save: Option<LiveSave>,
    tx: Sender,
    updates: mpsc::Sender<SyncUpdate>,
    images_sent: u64,
    images_len: u64,
    pages: Vec<u8>,
    bytes: u64,
    started: Instant,
}

impl SyncJob {
    /// `images_len`: the boot images' size, as the Hello announced it.
    pub fn start(machine: &mut Machine, request: SyncRequest, images_len: u64) -> SyncJob {
        SyncJob {
            save: Some(machine.live_save()),
            tx: request.tx,
            updates: request.updates,
            images_sent: 0,
            images_len,
            pages: Vec::new(),
            bytes: 0,
            started: Instant::now(),
        }
    }

    /// One slice; `Some` when the machine is with the backup (the last
    /// round and the state went out during this call).
    pub fn step(
        &mut self,
        machine: &mut Machine,
        vm_uuid: [u8; 16],
    ) -> Result<Option<SyncReport>, SendError> {
        let hashed = machine.prehash_state(PREHASH_PAGES);
        // A closed channel (the peer failed, or a migration was cancelled)
        // never drains its queue: without this the sync would wait forever.
        if self.tx.is_dead() {
            return Err(SendError::LinkDown);
        }
        if self.tx.queued_bytes() > QUEUE_LIMIT {
            return Ok(None);
        }
        if self.images_sent < self.images_len {
            self.send_images(machine)?;
            return Ok(None);
        }
        let Some(save) = &mut self.save else {
            return Err(SendError::Ended);
        };
        let mut sink = PieceSink {
            tx: &self.tx,
            pages: &mut self.pages,
            bytes: &mut self.bytes,
        };
        let round_done = save.copy(machine, STEP_BUDGET, &mut |p| sink.take(p))?;
        sink.flush()?;
        if !round_done || !hashed {
            // A finished round waits for the hashing to catch up too.
            return Ok(None);
        }
        let round = save.rounds();
        let next_bytes = save.next_round(machine);
        let _ = self.updates.send(SyncUpdate::Round { round, next_bytes });
        if next_bytes > FINAL_BYTES && round < MAX_ROUNDS {
            return Ok(None);
        }
        self.last_round(machine, vm_uuid).map(Some)
    }

    fn send_images(&mut self, machine: &Machine) -> Result<(), SendError> {
        let parts = machine.boot_image_parts().map_err(SendError::Images)?;
        let mut at = 0u64;
        for part in parts {
            let end = at + part.len() as u64;
            while self.images_sent < end && self.tx.queued_bytes() <= QUEUE_LIMIT {
                let from = (self.images_sent - at) as usize;
                let to = (from + IMAGES_CHUNK).min(part.len());
                let bytes = part[from..to].to_vec();
                let n = bytes.len() as u64;
                self.tx
                    .send(&Message::Images {
                        offset: self.images_sent,
                        bytes,
                    })
                    .map_err(channel)?;
                self.images_sent += n;
                self.bytes += n;
            }
            at = end;
        }
        Ok(())
    }

    /// The paused part: the rest of what changed, then the state.
    fn last_round(
        &mut self,
        machine: &mut Machine,
        vm_uuid: [u8; 16],
    ) -> Result<SyncReport, SendError> {
        let paused = Instant::now();
        let Some(save) = self.save.take() else {
            return Err(SendError::Ended);
        };
        let mut sink = PieceSink {
            tx: &self.tx,
            pages: &mut self.pages,
            bytes: &mut self.bytes,
        };
        let rounds = save.rounds();
        let state = save.finish(machine, Some(vm_uuid), &mut |p| sink.take(p))?;
        sink.flush()?;
        self.bytes += state.len() as u64;
        self.tx
            .send(&Message::State {
                icount: machine.icount(),
                state,
            })
            .map_err(channel)?;
        Ok(SyncReport {
            rounds,
            bytes: self.bytes,
            pause: paused.elapsed(),
            total: self.started.elapsed(),
            icount: machine.icount(),
        })
    }

    pub fn done(self, machine: &mut Machine, report: SyncReport) {
        if let Some(save) = self.save {
            save.cancel(machine);
        }
        let _ = self.updates.send(SyncUpdate::Done(report));
    }

    pub fn fail(self, machine: &mut Machine, why: SendError) {
        if let Some(save) = self.save {
            save.cancel(machine);
        }
        self.tx.close();
        let _ = self.updates.send(SyncUpdate::Failed(why));
    }
}

/// Batches pages into `Pages` messages; sends disk pieces as they come.
struct PieceSink<'a> {
    tx: &'a Sender,
    pages: &'a mut Vec<u8>,
    bytes: &'a mut u64,
}

impl PieceSink<'_> {
    fn take(&mut self, piece: Piece<'_>) -> Result<(), SendError> {
        match piece {
            Piece::Page { index, bytes } => {
                let index = u32::try_from(index).map_err(|_| SendError::PageIndex { index })?;
                self.pages.extend_from_slice(&index.to_le_bytes());
                self.pages.extend_from_slice(bytes);
                if self.pages.len() >= PAGES_PER_MESSAGE * PAGE_ENTRY {
                    self.flush()?;
                }
            }
            Piece::Disk {
                disk,
                offset,
                bytes,
            } => {
                let disk = u8::try_from(disk).map_err(|_| SendError::DiskIndex { disk })?;
                *self.bytes += bytes.len() as u64;
                self.tx
                    .send(&Message::Disk {
                        disk,
                        offset,
                        bytes: bytes.to_vec(),
                    })
                    .map_err(channel)?;
            }
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), SendError> {
        if self.pages.is_empty() {
            return Ok(());
        }
        let pages = std::mem::take(self.pages);
        *self.bytes += pages.len() as u64;
        self.tx.send(&Message::Pages(pages)).map_err(channel)
    }
}

fn channel(e: FtError) -> SendError {
    SendError::Channel(Box::new(e))
}
