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

/// A file's length and blake3, as a log records a boot image: a replay
/// reads only a regular file of that length and checks its bytes before
/// boot (a log naming `/dev/zero` must not read until memory runs out).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileDigest {
    pub len: u64,
    pub blake3: [u8; 32],
}

impl FileDigest {
    pub fn of(bytes: &[u8]) -> Self {
        FileDigest {
            len: bytes.len() as u64,
            blake3: *blake3::hash(bytes).as_bytes(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageDigests {
    pub firmware: FileDigest,
    pub kernel: FileDigest,
    pub initrd: FileDigest,
}

/// Every choice that shapes the machine, host-made ones included (seed,
/// boot time, generation id, MACs).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VmSetup {
    pub name: String,
    pub images: ImagePaths,
    /// The images' contents (filled in by record mode).
    pub image_digests: Option<ImageDigests>,
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

/// The longest VM name.
pub const MAX_NAME_LEN: usize = 64;

/// Why a VM name is refused; each message quotes it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    /// `shown`: the name as given, shortened to 80 characters.
    #[error("{shown:?} must be 1 to {max} characters long")]
    Length { shown: String, max: usize },
    #[error("{name:?} must not start with '.' or '-'")]
    Leading { name: String },
    #[error("{name:?} holds {found:?}; names are letters, digits, '.', '_' and '-'")]
    BadChar { name: String, found: char },
}

/// VM names end up in file and socket paths: 1 to 64 letters, digits,
/// `.`, `_` and `-`, not starting with `.` or `-`.
pub fn check_name(name: &str) -> Result<(), NameError> {
    if name.is_empty() || name.len() > MAX_NAME_LEN {
        return Err(NameError::Length {
            shown: name.chars().take(80).collect(),
            max: MAX_NAME_LEN,
        });
    }
    if name.starts_with(['.', '-']) {
        return Err(NameError::Leading { name: name.into() });
    }
    if let Some(found) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Err(NameError::BadChar {
            name: name.into(),
            found,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::check_name;

    #[test]
    fn names() {
        for good in ["vm1", "web.prod-2", "a_b", "X"] {
            assert!(check_name(good).is_ok(), "{good}");
        }
        let long = "a".repeat(200);
        for bad in [
            "",
            "../x",
            "a/b",
            ".hidden",
            "-x",
            "sp ace",
            "nul\0",
            long.as_str(),
            "é",
        ] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
        let say = |name: &str| check_name(name).unwrap_err().to_string();
        assert_eq!(say(""), "\"\" must be 1 to 64 characters long");
        assert_eq!(say("-x"), "\"-x\" must not start with '.' or '-'");
        assert_eq!(
            say("a/b"),
            "\"a/b\" holds '/'; names are letters, digits, '.', '_' and '-'"
        );
    }
}
