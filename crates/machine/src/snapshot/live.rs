//! Saving a running machine in rounds (pre-copy), for an FT backup that
//! joins a running VM (DESIGN §5) and later for migration.
//!
//! Round 0 sends every non-zero page of RAM and every non-zero cluster of
//! each disk while the guest runs; each later round sends what the guest
//! changed since the previous round began (RAM through a [`DirtyTracker`]
//! of its own, disks through [`TrackedDisk`]'s change log), until the
//! caller decides the rest is small enough and calls [`LiveSave::finish`]
//! with the machine paused: the last changes and the state section. The
//! receiver puts them together with [`super::Assembler`] into a snapshot
//! it restores. All copying happens on the machine's own thread, a budget
//! at a time, so the guest is paused only for the final round.

use super::{SnapshotError, PAGE};
use crate::machine::{Machine, MachineError};
use crate::tracked_disk::CLUSTER;
use disk::{BlockDevice, DiskError};
use riscv::ram::DirtyTracker;
use riscv::Hart;
use std::collections::VecDeque;

/// A piece of the machine for the receiver.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Piece<'a> {
    /// Page `index` of RAM (`PAGE_SIZE` bytes, possibly all zero).
    Page { index: usize, bytes: &'a [u8] },
    /// Bytes of disk `disk` (the n-th attached disk, in slot order) at
    /// `offset`: whole clusters (the last may be short), possibly zero.
    Disk {
        disk: usize,
        offset: u64,
        bytes: &'a [u8],
    },
}

/// Why a live save failed.
#[derive(Debug, thiserror::Error)]
pub enum LiveSaveError<E> {
    #[error("reading disk {disk} for the transfer: {source}")]
    Disk { disk: usize, source: DiskError },
    #[error(transparent)]
    Snapshot(#[from] SnapshotError),
    /// The receiver of the pieces failed (e.g. the connection broke).
    #[error("{0}")]
    Sink(E),
}

/// What is left to send of the current round.
#[derive(Default)]
struct Round {
    /// Round 0: the next page to look at (every page is a candidate).
    scan: Option<usize>,
    pages: VecDeque<usize>,
    /// Per disk: runs of clusters `[first, end)` still to send.
    clusters: Vec<VecDeque<(u64, u64)>>,
    /// Round 0 sends only non-zero data: the receiver starts from zeroes.
    skip_zero: bool,
}

/// A save in progress; see the module docs.
pub struct LiveSave {
    tracker: DirtyTracker,
    round: Round,
    rounds: u32,
    /// Disks are sent too (not for a save whose disks are kept another
    /// way, e.g. a bundle's frozen layers: [`Machine::live_save_ram`]).
    disks: bool,
}

impl Machine {
    /// Start a live save: from now on the machine logs what changes.
    pub fn live_save(&mut self) -> LiveSave {
        let tracker = self.ram.track_dirty();
        let mut clusters = Vec::new();
        for disk in self.board.disks.iter_mut().flatten() {
            disk.start_change_log();
            clusters.push(VecDeque::from([(0, disk.capacity_clusters())]));
        }
        LiveSave {
            tracker,
            round: Round {
                scan: Some(0),
                pages: VecDeque::new(),
                clusters,
                skip_zero: true,
            },
            rounds: 0,
            disks: true,
        }
    }

    /// Start a live save of RAM only: the pieces are pages, and the disks
    /// are left alone (their contents are saved another way, such as
    /// switching to new overlay layers while the machine is paused).
    pub fn live_save_ram(&mut self) -> LiveSave {
        LiveSave {
            tracker: self.ram.track_dirty(),
            round: Round {
                scan: Some(0),
                skip_zero: true,
                ..Round::default()
            },
            rounds: 0,
            disks: false,
        }
    }

    /// The boot images as a snapshot stores them (firmware ‖ kernel ‖
    /// initrd), checked first if they came from a snapshot.
    pub fn boot_image_parts(&self) -> Result<Vec<&[u8]>, MachineError> {
        let images = &self.config.images;
        images.verify()?;
        let mut parts = vec![&*images.firmware, &*images.kernel];
        parts.extend(images.initrd.as_deref());
        Ok(parts)
    }
}

impl LiveSave {
    /// Rounds started so far (round 0 included).
    pub fn rounds(&self) -> u32 {
        self.rounds + 1
    }

    /// Send up to about `budget` bytes of the current round through
    /// `sink`. Returns true when the round is complete.
    pub fn copy<E>(
        &mut self,
        machine: &mut Machine,
        budget: usize,
        sink: &mut dyn FnMut(Piece<'_>) -> Result<(), E>,
    ) -> Result<bool, LiveSaveError<E>> {
        let mut left = budget;
        self.copy_pages(machine, &mut left, sink)?;
        self.copy_clusters(machine, &mut left, sink)?;
        Ok(self.round.scan.is_none()
            && self.round.pages.is_empty()
            && self.round.clusters.iter().all(VecDeque::is_empty))
    }

    fn copy_pages<E>(
        &mut self,
        machine: &mut Machine,
        left: &mut usize,
        sink: &mut dyn FnMut(Piece<'_>) -> Result<(), E>,
    ) -> Result<(), LiveSaveError<E>> {
        let ram = machine.ram.as_slice();
        let pages = ram.len() / PAGE;
        while *left > 0 {
            let index = match &mut self.round.scan {
                Some(next) if *next < pages => {
                    *next += 1;
                    *next - 1
                }
                Some(_) => {
                    self.round.scan = None;
                    continue;
                }
                None => match self.round.pages.pop_front() {
                    Some(index) if index < pages => index,
                    Some(_) => continue,
                    None => return Ok(()),
                },
            };
            let bytes = &ram[index * PAGE..(index + 1) * PAGE];
            if self.round.skip_zero && super::is_zero(bytes) {
                *left = left.saturating_sub(64); // scanning costs too
                continue;
            }
            sink(Piece::Page { index, bytes }).map_err(LiveSaveError::Sink)?;
            *left = left.saturating_sub(PAGE);
        }
        Ok(())
    }

    fn copy_clusters<E>(
        &mut self,
        machine: &mut Machine,
        left: &mut usize,
        sink: &mut dyn FnMut(Piece<'_>) -> Result<(), E>,
    ) -> Result<(), LiveSaveError<E>> {
        let mut buf = vec![0u8; CLUSTER as usize];
        let disks = machine.board.disks.iter_mut().flatten();
        for (disk, (runs, tracked)) in self.round.clusters.iter_mut().zip(disks).enumerate() {
            let capacity = tracked.capacity_clusters();
            while *left > 0 {
                let Some((a, b)) = runs.pop_front() else {
                    break;
                };
                if a + 1 < b {
                    runs.push_front((a + 1, b));
                }
                if a >= capacity {
                    continue;
                }
                let len = tracked.cluster_bytes(a) as usize;
                let bytes = &mut buf[..len];
                tracked
                    .read_at(a * CLUSTER, bytes)
                    .map_err(|source| LiveSaveError::Disk { disk, source })?;
                if self.round.skip_zero && super::is_zero(bytes) {
                    *left = left.saturating_sub(len / 64);
                    continue;
                }
                let offset = a * CLUSTER;
                sink(Piece::Disk {
                    disk,
                    offset,
                    bytes,
                })
                .map_err(LiveSaveError::Sink)?;
                *left = left.saturating_sub(len);
            }
        }
        Ok(())
    }

    /// Begin the next round: everything changed since the current one
    /// began (anything not yet sent of the current one is included).
    /// Returns the round's size in bytes.
    pub fn next_round(&mut self, machine: &mut Machine) -> u64 {
        self.rounds += 1;
        let mut pages: Vec<usize> = match machine.ram.take_dirty(&self.tracker) {
            Some(dirty) => dirty,
            None => {
                // The RAM was replaced (a guest reset): send all of it.
                self.tracker = machine.ram.track_dirty();
                (0..machine.ram.pages()).collect()
            }
        };
        if self.round.scan.is_some() {
            // Round 0 unfinished: the unscanned rest is still to send.
            let from = self.round.scan.take().unwrap_or(0);
            pages.extend(from..machine.ram.pages());
        }
        pages.extend(self.round.pages.drain(..));
        pages.sort_unstable();
        pages.dedup();
        let mut bytes = (pages.len() * PAGE) as u64;
        self.round.pages = pages.into();
        let disks = machine.board.disks.iter_mut().flatten();
        for (runs, tracked) in self.round.clusters.iter_mut().zip(disks) {
            let mut merged: Vec<(u64, u64)> = runs.drain(..).collect();
            merged.extend(tracked.take_change_log());
            merged.sort_unstable();
            let mut joined: VecDeque<(u64, u64)> = VecDeque::new();
            for (a, b) in merged {
                match joined.back_mut() {
                    Some((_, end)) if *end >= a => *end = (*end).max(b),
                    _ => joined.push_back((a, b)),
                }
            }
            bytes += joined.iter().map(|(a, b)| (b - a) * CLUSTER).sum::<u64>();
            *runs = joined;
        }
        self.round.skip_zero = false;
        bytes
    }

    /// The last round, with the machine paused (not running between the
    /// call and its return): what changed since the current round began,
    /// then the state section ([`super::Assembler::finish`] takes it).
    /// The machine goes on unchanged (only its hart caches are emptied,
    /// as a restored machine's are).
    pub fn finish<E>(
        mut self,
        machine: &mut Machine,
        vm_uuid: Option<[u8; 16]>,
        sink: &mut dyn FnMut(Piece<'_>) -> Result<(), E>,
    ) -> Result<Vec<u8>, LiveSaveError<E>> {
        self.next_round(machine);
        while !self.copy(machine, usize::MAX, sink)? {}
        let state = machine.state_section(vm_uuid)?;
        self.cancel(machine);
        Ok(state)
    }

    /// Stop the save: the machine no longer logs changes for it.
    pub fn cancel(self, machine: &mut Machine) {
        machine.ram.untrack_dirty(self.tracker);
        if self.disks {
            for disk in machine.board.disks.iter_mut().flatten() {
                disk.stop_change_log();
            }
        }
    }
}

impl Machine {
    /// The state section of a snapshot of this machine, as bytes.
    pub(super) fn state_section(
        &mut self,
        vm_uuid: Option<[u8; 16]>,
    ) -> Result<Vec<u8>, SnapshotError> {
        let save_err = |source| SnapshotError::Save {
            path: "(transfer)".into(),
            source,
        };
        self.harts.iter_mut().for_each(Hart::drop_caches);
        let state_hash = self.state_hash().map_err(save_err)?;
        let disk_clusters = self.disk_clusters(std::path::Path::new("(transfer)"))?;
        let state = self.state_out(vm_uuid, state_hash, disk_clusters);
        postcard::to_stdvec(&state).map_err(|e| save_err(MachineError::Serialize(e)))
    }
}
