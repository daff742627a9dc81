//! What a VM is built from, as `lockstep run` decided it: enough to build
//! the same machine again (a replay log starts with it).

use crate::run::DiskArg;
use machine::{BootImages, InstructionsPerTick, MachineConfig, VirtioSpec};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImagePaths {
    pub kernel: PathBuf,
    pub initrd: PathBuf,
    pub firmware: PathBuf,
}

/// Every choice that shapes the machine, host-made ones included (seed,
/// boot time, generation id, MACs).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VmSetup {
    pub name: String,
    pub images: ImagePaths,
    pub append: String,
    pub cpus: u8,
    pub memory: u64,
    pub disks: Vec<DiskArg>,
    /// The disks as they were when the run started (filled in by record
    /// mode, which needs them unchanged for a replay).
    pub disk_identities: Vec<disk::DiskIdentity>,
    pub rng_seed: [u8; 32],
    pub boot_wall_ns: u64,
    pub vmgenid: [u8; 16],
    pub macs: Vec<[u8; 6]>,
    /// Guest time's rate (`--instructions-per-tick`).
    pub instructions_per_tick: InstructionsPerTick,
}

/// The part of a setup that [`crate::bench_record`] reads from a log.
#[derive(Deserialize)]
pub struct SetupRate {
    pub instructions_per_tick: InstructionsPerTick,
}

impl std::fmt::Debug for VmSetup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The RNG seed is a VM secret.
        f.debug_struct("VmSetup")
            .field("name", &self.name)
            .field("images", &self.images)
            .field("cpus", &self.cpus)
            .field("memory", &self.memory)
            .field("disks", &self.disks)
            .field("macs", &self.macs)
            .field("instructions_per_tick", &self.instructions_per_tick)
            .finish_non_exhaustive()
    }
}

impl VmSetup {
    /// The machine configuration; `block_and_rng` are the disks' and the
    /// RNG's virtio specs (the NICs follow them).
    pub fn machine_config(&self, images: BootImages, mut virtio: Vec<VirtioSpec>) -> MachineConfig {
        virtio.extend(self.macs.iter().map(|&mac| VirtioSpec::Net { mac }));
        MachineConfig {
            cpus: usize::from(self.cpus),
            memory: self.memory,
            images,
            bootargs: self.append.clone(),
            boot_wall_ns: self.boot_wall_ns,
            vmgenid: self.vmgenid,
            virtio,
            instructions_per_tick: self.instructions_per_tick,
        }
    }

    /// The VM's uuid in logs: derived from its name.
    pub fn uuid(&self) -> [u8; 16] {
        let mut id = [0u8; 16];
        id.copy_from_slice(&blake3::hash(self.name.as_bytes()).as_bytes()[..16]);
        id
    }
}
