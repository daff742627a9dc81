//! `vm.toml`: a VM's configuration and its snapshot tree, in one file so
//! that every change to a bundle switches exactly one pointer (DESIGN §6).
//! The format is versioned (`format`); README "VM bundles" documents it.

use crate::error::{ConfigError, MacError, Result, VmmError};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use uuid::Uuid;

/// The bundle format this build writes and the newest it reads.
pub const FORMAT: u64 = 2;
/// The longest VM or snapshot name.
pub const MAX_NAME_LEN: usize = 64;
/// `vm.toml` larger than this is refused unread.
pub const MAX_CONFIG_BYTES: u64 = 1 << 20;
/// Snapshots per VM.
pub const MAX_SNAPSHOTS: usize = 1000;
/// Disks and NICs per VM (the board has 8 virtio slots, one is the RNG).
pub const MAX_DEVICES: usize = 7;
/// Largest guest RAM (as the machine accepts).
pub const MAX_MEMORY: u64 = 1 << 40;
/// Longest snapshot description.
pub const MAX_DESCRIPTION: usize = 4096;
/// The longest kernel command line a bundle holds, in bytes.
pub const MAX_APPEND: usize = 4096;

/// A VM: what it is built from, and where its disks and snapshots are.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VmConfig {
    /// The bundle format ([`FORMAT`]).
    pub format: u64,
    pub name: String,
    pub uuid: Uuid,
    /// Unix time of creation (seconds).
    pub created: u64,
    pub cpus: u8,
    /// Guest RAM in bytes.
    pub memory: u64,
    /// Kernel command line.
    pub append: String,
    /// Guest time's rate (`--instructions-per-tick`).
    pub instructions_per_tick: u64,
    /// The virtual machine generation id the guest sees (new on clone
    /// and revert, so the guest reseeds what it must not repeat).
    #[serde(with = "hex16")]
    pub vmgenid: [u8; 16],
    pub boot: Boot,
    /// The next id for a snapshot or a disk layer file.
    pub next_id: u64,
    #[serde(default, rename = "disk")]
    pub disks: Vec<DiskConfig>,
    #[serde(default, rename = "nic")]
    pub nics: Vec<NicConfig>,
    /// Fault tolerance: where the backup listens, the arbiter file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ft: Option<FtSettings>,
    /// A linked clone: whose frozen layers its disks stand on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub linked: Option<LinkedTo>,
    /// Layers of deleted snapshots that saved machine states stand on
    /// (merging them would change the disks those states recorded): kept
    /// in `disks/` as the backing files they are. Format 2.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub retired_layers: Vec<String>,
    /// The VM's present disks and their place in the tree.
    pub current: Current,
    #[serde(default, rename = "snapshot")]
    pub snapshots: Vec<Snapshot>,
}

/// The boot images (the pulled Debian image's files unless given).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Boot {
    pub kernel: PathBuf,
    pub initrd: PathBuf,
    pub firmware: PathBuf,
    /// They came from `lockstep image pull` (re-pulled if missing).
    #[serde(default)]
    pub pulled: bool,
}

/// One virtio disk (vda, vdb, …): always a qcow2 chain in the bundle.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DiskConfig {
    /// Virtual size in bytes.
    pub size: u64,
}

/// One NIC (eth0, eth1, …).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NicConfig {
    /// Where it attaches, as `--net` takes it without `mac=` (`socket=DIR`,
    /// `tap=NAME`; `socket:DIR`/`tap:NAME` from earlier versions are read
    /// as these).
    pub net: String,
    pub mac: Mac,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FtSettings {
    /// Where the backup listens (`lockstep ft backup --listen`).
    pub backup: String,
    /// The arbiter file, on storage both hosts share.
    pub arbiter: PathBuf,
    /// The node's TLS directory [default: lockstep's].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_dir: Option<PathBuf>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LinkedTo {
    /// The source VM's uuid and name when the clone was made.
    pub vm: Uuid,
    pub name: String,
    /// The snapshot whose layers this clone's disks stand on.
    pub snapshot: u64,
}

/// Where the VM is now: the snapshot it descends from and its writable
/// top layers (one per disk, file names in `disks/`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Current {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<u64>,
    pub layers: Vec<String>,
    /// Suspended: the machine state file (in `states/`) it resumes from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
}

impl Current {
    /// A new VM's: no parent, no layers yet, not suspended.
    pub fn empty() -> Current {
        Current {
            parent: None,
            layers: Vec::new(),
            state: None,
        }
    }
}

/// A node of the snapshot tree.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Snapshot {
    pub id: u64,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<u64>,
    /// Unix time (seconds).
    pub created: u64,
    pub power: PowerState,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    /// The disk layers it froze (file names in `disks/`), one per disk.
    pub layers: Vec<String>,
    /// A running or suspended snapshot's machine state (memory, devices,
    /// the instruction it stopped at): a file in `states/`. Format 2.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
}

/// A snapshot's power state: what a revert to it comes back as.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PowerState {
    Off,
    Running,
    Suspended,
}

impl std::fmt::Display for PowerState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            PowerState::Off => "powered off",
            PowerState::Running => "running",
            PowerState::Suspended => "suspended",
        })
    }
}

/// A MAC address, written `52:54:00:12:34:56`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Mac(pub [u8; 6]);

impl Mac {
    /// A random locally administered unicast address.
    pub fn random() -> Result<Mac> {
        let mut b = [0u8; 6];
        crate::random_bytes(&mut b)?;
        b[0] = (b[0] & 0xfc) | 0x02;
        Ok(Mac(b))
    }
}

impl std::fmt::Display for Mac {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let b = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            b[0], b[1], b[2], b[3], b[4], b[5]
        )
    }
}

impl std::str::FromStr for Mac {
    type Err = MacError;
    fn from_str(s: &str) -> std::result::Result<Self, MacError> {
        let syntax = || MacError::Syntax(s.to_string());
        let mut out = [0u8; 6];
        let mut parts = s.split(':');
        for byte in &mut out {
            let part = parts.next().ok_or_else(syntax)?;
            if part.len() != 2 {
                return Err(syntax());
            }
            *byte = u8::from_str_radix(part, 16).map_err(|_| syntax())?;
        }
        if parts.next().is_some() {
            return Err(syntax());
        }
        if out[0] & 1 != 0 {
            return Err(MacError::Multicast(s.to_string()));
        }
        Ok(Mac(out))
    }
}

impl Serialize for Mac {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Mac {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

mod hex16 {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8; 16], s: S) -> Result<S::Ok, S::Error> {
        let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        s.serialize_str(&hex)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[u8; 16], D::Error> {
        let s = String::deserialize(d)?;
        let bad = || serde::de::Error::custom("expected 32 hex digits");
        if s.len() != 32 || !s.is_ascii() {
            return Err(bad());
        }
        let mut out = [0u8; 16];
        for (i, byte) in out.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).map_err(|_| bad())?;
        }
        Ok(out)
    }
}

/// Names end up in paths: 1 to 64 letters, digits, `.`, `_` and `-`, not
/// starting with `.` or `-`.
pub fn check_name(what: &'static str, name: &str) -> Result<()> {
    let refuse = |reason: String| {
        Err(VmmError::BadName {
            what,
            shown: name.chars().take(80).collect(),
            reason,
        })
    };
    if name.is_empty() || name.len() > MAX_NAME_LEN {
        return refuse(format!("names are 1 to {MAX_NAME_LEN} characters long"));
    }
    if name.starts_with(['.', '-']) {
        return refuse("names must not start with '.' or '-'".into());
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return refuse(format!(
            "it holds {c:?}; names are letters, digits, '.', '_' and '-'"
        ));
    }
    Ok(())
}

/// A layer file name as the bundle writes them: `d<disk>-<id>.qcow2`.
pub fn layer_name(disk: usize, id: u64) -> String {
    format!("d{disk}-{id}.qcow2")
}

/// A machine state's file name: `suspend-<digits>.state` (a suspended
/// VM's, or a snapshot taken while it was suspended) or
/// `snap-<digits>.state` (a snapshot taken while it ran).
pub(crate) fn is_state_name(name: &str) -> bool {
    name.strip_prefix("suspend-")
        .or_else(|| name.strip_prefix("snap-"))
        .and_then(|rest| rest.strip_suffix(".state"))
        .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

fn is_layer_name(name: &str) -> bool {
    name.strip_prefix('d')
        .and_then(|rest| rest.strip_suffix(".qcow2"))
        .and_then(|rest| rest.split_once('-'))
        .is_some_and(|(disk, id)| {
            !disk.is_empty()
                && !id.is_empty()
                && disk.bytes().all(|b| b.is_ascii_digit())
                && id.bytes().all(|b| b.is_ascii_digit())
        })
}

impl VmConfig {
    /// Parse and check `vm.toml`'s text. A newer format is refused by
    /// its number before anything else is looked at.
    pub fn parse(path: &Path, text: &str) -> Result<VmConfig> {
        let bad = |reason: ConfigError| VmmError::BadConfig {
            path: path.to_path_buf(),
            reason: Box::new(reason),
        };
        let table: toml::Table = toml::from_str(text).map_err(|e| bad(ConfigError::Syntax(e)))?;
        match table.get("format") {
            Some(toml::Value::Integer(n)) if *n >= 1 && (*n as u64) <= FORMAT => {}
            Some(toml::Value::Integer(n)) if *n > 0 => {
                return Err(VmmError::NewerFormat {
                    path: path.to_path_buf(),
                    found: *n as u64,
                    supported: FORMAT,
                })
            }
            _ => return Err(bad(ConfigError::NoFormat)),
        }
        let mut config: VmConfig = toml::from_str(text).map_err(|e| bad(ConfigError::Syntax(e)))?;
        config.check().map_err(bad)?;
        // Bundles written before device specs became key=value lists hold
        // `socket:DIR` / `tap:NAME`: read as today's form.
        for nic in &mut config.nics {
            if let Ok(spec) = net::NetSpec::parse_either(&nic.net) {
                nic.net = spec.to_string();
            }
        }
        Ok(config)
    }

    /// The file's text. (Plain data always serialises; should it ever
    /// not, the caller writes nothing rather than an empty file.)
    pub fn to_toml(&self, path: &Path) -> Result<String> {
        // Format 1 readers take any bundle without snapshot states.
        let mut out = self.clone();
        out.format = if self.snapshots.iter().any(|s| s.state.is_some())
            || !self.retired_layers.is_empty()
        {
            FORMAT
        } else {
            1
        };
        toml::to_string_pretty(&out).map_err(|e| VmmError::BadConfig {
            path: path.to_path_buf(),
            reason: Box::new(ConfigError::Unwritable(e)),
        })
    }

    /// Everything a hand-edited or damaged file could get wrong.
    pub fn check(&self) -> std::result::Result<(), ConfigError> {
        check_name("VM name", &self.name)?;
        if !(1..=4).contains(&self.cpus) {
            return Err(ConfigError::Cpus(self.cpus));
        }
        if self.memory < (16 << 20) || self.memory > MAX_MEMORY || !self.memory.is_multiple_of(4096)
        {
            return Err(ConfigError::Memory(self.memory));
        }
        if !(1..=1000).contains(&self.instructions_per_tick) {
            return Err(ConfigError::InstructionsPerTick(self.instructions_per_tick));
        }
        if self.append.len() > MAX_APPEND {
            return Err(ConfigError::AppendTooLong {
                len: self.append.len(),
                max: MAX_APPEND,
            });
        }
        if self.disks.len() + self.nics.len() > MAX_DEVICES {
            return Err(ConfigError::TooManyDevices {
                disks: self.disks.len(),
                nics: self.nics.len(),
                max: MAX_DEVICES,
            });
        }
        for (index, nic) in self.nics.iter().enumerate() {
            let spec = net::NetSpec::parse_either(&nic.net)
                .map_err(|source| ConfigError::BadNic { index, source })?;
            if spec.mac.is_some() {
                return Err(ConfigError::MacInNet {
                    index,
                    net: nic.net.clone(),
                });
            }
        }
        if self.snapshots.len() > MAX_SNAPSHOTS {
            return Err(ConfigError::TooManySnapshots { max: MAX_SNAPSHOTS });
        }
        let check_layers = |place: &dyn Fn() -> String, layers: &[String]| {
            if layers.len() != self.disks.len() {
                return Err(ConfigError::LayerCount {
                    place: place(),
                    layers: layers.len(),
                    disks: self.disks.len(),
                });
            }
            match layers.iter().find(|l| !is_layer_name(l)) {
                Some(l) => Err(ConfigError::BadLayerName {
                    place: place(),
                    layer: l.clone(),
                }),
                None => Ok(()),
            }
        };
        check_layers(&|| "current".into(), &self.current.layers)?;
        if let Some(state) = &self.current.state {
            if !is_state_name(state) {
                return Err(ConfigError::BadCurrentState(state.clone()));
            }
        }
        let mut ids = BTreeMap::new();
        let mut names = BTreeSet::new();
        let mut files = BTreeSet::new();
        for l in &self.current.layers {
            files.insert(l.as_str());
        }
        for l in &self.retired_layers {
            if !is_layer_name(l) || !files.insert(l.as_str()) {
                return Err(ConfigError::BadRetiredLayer(l.clone()));
            }
        }
        for s in &self.snapshots {
            check_name("snapshot name", &s.name)?;
            if s.description.len() > MAX_DESCRIPTION {
                return Err(ConfigError::DescriptionTooLong {
                    snapshot: s.name.clone(),
                });
            }
            check_layers(&|| format!("snapshot {:?}", s.name), &s.layers)?;
            match (&s.state, s.power) {
                (None, PowerState::Off) => {}
                (Some(state), PowerState::Running | PowerState::Suspended)
                    if is_state_name(state) => {}
                (Some(state), PowerState::Running | PowerState::Suspended) => {
                    return Err(ConfigError::BadSnapshotState {
                        snapshot: s.name.clone(),
                        state: state.clone(),
                    })
                }
                (None, power) => {
                    return Err(ConfigError::NoState {
                        snapshot: s.name.clone(),
                        power,
                    })
                }
                (Some(_), power) => {
                    return Err(ConfigError::UnexpectedState {
                        snapshot: s.name.clone(),
                        power,
                    })
                }
            }
            if ids.insert(s.id, s.parent).is_some() {
                return Err(ConfigError::DuplicateId(s.id));
            }
            if !names.insert(s.name.as_str()) {
                return Err(ConfigError::DuplicateName(s.name.clone()));
            }
            if s.id >= self.next_id {
                return Err(ConfigError::IdNotBelowNext(s.id));
            }
            for l in &s.layers {
                if !files.insert(l.as_str()) {
                    return Err(ConfigError::SharedLayer(l.clone()));
                }
            }
        }
        // Parents exist, and following them ends (no cycles).
        let parents = self
            .snapshots
            .iter()
            .map(|s| s.parent)
            .chain([self.current.parent]);
        for start in parents {
            let mut at = start;
            let mut steps = 0;
            while let Some(id) = at {
                at = *ids.get(&id).ok_or(ConfigError::NoParent(id))?;
                steps += 1;
                if steps > self.snapshots.len() {
                    return Err(ConfigError::Cycle);
                }
            }
        }
        if let Some(ft) = &self.ft {
            if ft.backup.is_empty() || ft.backup.len() > 255 {
                return Err(ConfigError::FtBackup);
            }
            if !ft.arbiter.is_absolute() {
                return Err(ConfigError::FtArbiter);
            }
        }
        if let Some(linked) = &self.linked {
            check_name("VM name", &linked.name)?;
        }
        Ok(())
    }

    pub fn snapshot(&self, name: &str) -> Option<&Snapshot> {
        self.snapshots.iter().find(|s| s.name == name)
    }

    pub fn snapshot_by_id(&self, id: u64) -> Option<&Snapshot> {
        self.snapshots.iter().find(|s| s.id == id)
    }

    /// A fresh id (snapshots and layer files share the counter).
    pub fn take_id(&mut self) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        id
    }

    /// Every layer file the tree references.
    pub fn layer_files(&self) -> BTreeSet<&str> {
        self.current
            .layers
            .iter()
            .chain(self.snapshots.iter().flat_map(|s| &s.layers))
            .chain(&self.retired_layers)
            .map(String::as_str)
            .collect()
    }

    /// The ids of `id`'s subtree, `id` first, parents before children.
    pub fn subtree(&self, id: u64) -> Vec<u64> {
        let mut out = vec![id];
        let mut i = 0;
        while i < out.len() {
            let at = out[i];
            out.extend(
                self.snapshots
                    .iter()
                    .filter(|s| s.parent == Some(at))
                    .map(|s| s.id),
            );
            i += 1;
        }
        out
    }

    /// `id` and its ancestors, nearest first.
    pub fn ancestors(&self, mut at: Option<u64>) -> Vec<u64> {
        let mut out = Vec::new();
        while let Some(id) = at {
            out.push(id);
            at = self.snapshot_by_id(id).and_then(|s| s.parent);
            if out.len() > self.snapshots.len() {
                break; // checked acyclic on load; never loop regardless
            }
        }
        out
    }
}

/// TOML's message for `e` on one line (it spans several, with a caret
/// under the place).
pub(crate) fn one_line(e: &toml::de::Error) -> String {
    e.to_string()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for good in ["vm1", "web.prod-2", "a_b", "X"] {
            assert!(check_name("VM name", good).is_ok(), "{good}");
        }
        let long = "a".repeat(200);
        for bad in [
            "", "../x", "a/b", ".hidden", "-x", "sp ace", "nul\0", &long, "é", "..",
        ] {
            assert!(check_name("VM name", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn layer_names() {
        assert!(is_layer_name("d0-12.qcow2"));
        for bad in [
            "d0-.qcow2",
            "d-1.qcow2",
            "../d0-1.qcow2",
            "d0-1.qcow2/x",
            "d0-1",
            "x",
        ] {
            assert!(!is_layer_name(bad), "{bad}");
        }
    }

    #[test]
    fn macs() {
        let m: Mac = "02:aa:bb:cc:dd:0e".parse().unwrap();
        assert_eq!(m.to_string(), "02:aa:bb:cc:dd:0e");
        for bad in [
            "01:00:00:00:00:00",
            "02:aa",
            "02:aa:bb:cc:dd:ee:ff",
            "zz:aa:bb:cc:dd:ee",
        ] {
            assert!(bad.parse::<Mac>().is_err(), "{bad}");
        }
        assert_eq!(
            "02:aa".parse::<Mac>(),
            Err(MacError::Syntax("02:aa".into()))
        );
        assert_eq!(
            "01:00:00:00:00:00".parse::<Mac>().unwrap_err().to_string(),
            "\"01:00:00:00:00:00\" is a multicast address"
        );
        let r = Mac::random().unwrap();
        assert_eq!(r.0[0] & 3, 2);
    }
}
