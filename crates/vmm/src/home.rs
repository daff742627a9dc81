//! The VM store: `$LOCKSTEP_HOME/vms/`, one bundle directory per VM.
//! Bundles are built under a hidden name (`.NAME.new-…`) and renamed into
//! place; removed ones are renamed away (`.NAME.old-…`) first, so a crash
//! never leaves a half bundle under a VM's name.

use crate::config::{
    check_name, layer_name, Boot, Current, DiskConfig, FtSettings, LinkedTo, Mac, NicConfig,
    VmConfig, FORMAT, MAX_CONFIG_BYTES, MAX_DEVICES,
};
use crate::durable::{rename_noreplace, replace_file, sync_dir};
use crate::error::{io_at, ConfigError, Result, VmmError};
use crate::lock::{self, COMMAND_LOCK};
use crate::vm::{Vm, CONFIG_FILE, DISKS_DIR, STATES_DIR};
use crate::Progress;
use serde::{Deserialize, Serialize};
use std::fs::DirBuilder;
use std::io::Read;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use uuid::Uuid;

/// Where VMs live.
#[derive(Clone, Debug)]
pub struct Home {
    root: PathBuf,
}

/// What `vm create` makes.
#[derive(Clone, Debug)]
pub struct CreateSpec {
    pub name: String,
    pub cpus: u8,
    pub memory: u64,
    pub append: String,
    pub instructions_per_tick: u64,
    pub boot: Boot,
    pub disks: Vec<DiskSource>,
    /// `--net` specs, each with its MAC if given (else a random one).
    pub nics: Vec<(String, Option<Mac>)>,
    /// Fault tolerance: protected by a backup from its start.
    pub ft: Option<FtSettings>,
}

/// Where a new VM's disk comes from.
#[derive(Clone, Debug)]
pub enum DiskSource {
    /// A fresh empty disk of this many bytes.
    Empty(u64),
    /// A copy of an existing image (flattened into the bundle), in the
    /// format the user pinned, following backing files as `backing` allows.
    Import {
        path: PathBuf,
        format: disk::Format,
        backing: disk::BackingPolicy,
    },
}

/// What a clone is made from.
#[derive(Clone, Debug, Default)]
pub struct CloneFrom {
    /// Share the source's frozen layers instead of copying them.
    pub linked: bool,
    /// From this snapshot (else the source's present state: a linked
    /// clone then takes a snapshot of a powered-off source first).
    pub snapshot: Option<String>,
}

/// A VM as `vm list` shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VmSummary {
    pub name: String,
    pub state: RunState,
    pub cpus: u8,
    pub memory: u64,
    pub snapshots: usize,
}

/// Whether a VM's process runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "lowercase")]
pub enum RunState {
    Off,
    Suspended,
    Running { pid: u32, since: u64 },
}

impl std::fmt::Display for RunState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RunState::Off => f.write_str("powered off"),
            RunState::Suspended => f.write_str("suspended"),
            RunState::Running { .. } => f.write_str("running"),
        }
    }
}

impl Home {
    /// `$LOCKSTEP_HOME`, else `$XDG_DATA_HOME/lockstep`, else
    /// `~/.local/share/lockstep` (absolute paths only).
    pub fn from_env() -> Result<Home> {
        let absolute = |var| {
            std::env::var_os(var)
                .map(PathBuf::from)
                .filter(|p| p.is_absolute())
        };
        let root = absolute("LOCKSTEP_HOME")
            .or_else(|| absolute("XDG_DATA_HOME").map(|d| d.join("lockstep")))
            .or_else(|| absolute("HOME").map(|h| h.join(".local/share/lockstep")))
            .ok_or(VmmError::NoHome)?;
        Ok(Home { root })
    }

    pub fn at(root: impl Into<PathBuf>) -> Home {
        Home { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The directory of all bundles.
    pub fn vms_dir(&self) -> PathBuf {
        self.root.join("vms")
    }

    pub fn bundle_dir(&self, name: &str) -> PathBuf {
        self.vms_dir().join(name)
    }

    /// The store's directory, created private (0700) if missing.
    pub(crate) fn ensure_vms_dir(&self) -> Result<PathBuf> {
        let dir = self.vms_dir();
        DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)
            .map_err(io_at(&dir))?;
        Ok(dir)
    }

    /// Whether VM `name` runs (no lock taken: for waiting on a start).
    pub fn run_state(&self, name: &str) -> Result<RunState> {
        check_name("VM name", name)?;
        let dir = self.bundle_dir(name);
        if !dir.join(CONFIG_FILE).exists() {
            return Err(VmmError::NoSuchVm {
                name: name.to_string(),
            });
        }
        run_state(&dir, &read_config(&dir.join(CONFIG_FILE))?)
    }

    /// Whether VM `name`'s process `pid` holds its run lock and answers on
    /// its control socket within `timeout`: it has started.
    pub fn started(&self, name: &str, pid: u32, timeout: std::time::Duration) -> Result<bool> {
        if !matches!(self.run_state(name)?, RunState::Running { pid: p, .. } if p == pid) {
            return Ok(false);
        }
        let path = self.bundle_dir(name).join(crate::CONTROL_SOCKET);
        Ok(crate::control::request(&path, &crate::VmCommand::Status {}, timeout).is_ok())
    }

    /// Open a VM for a command, taking its command lock (waiting up to
    /// [`crate::COMMAND_LOCK_WAIT`] for another command to finish).
    pub fn open(&self, name: &str) -> Result<Vm> {
        check_name("VM name", name)?;
        Vm::open(self, name, crate::COMMAND_LOCK_WAIT)
    }

    /// As [`Home::open`], refusing at once if another command holds it.
    pub fn try_open(&self, name: &str) -> Result<Vm> {
        check_name("VM name", name)?;
        Vm::open(self, name, std::time::Duration::ZERO)
    }

    /// The VMs, by name, after removing what interrupted creations and
    /// deletions left (each removal is a note).
    pub fn list(&self) -> Result<(Vec<VmSummary>, Vec<String>)> {
        let mut notes = self.sweep()?;
        let mut out = Vec::new();
        for name in self.names()? {
            let dir = self.bundle_dir(&name);
            match read_config(&dir.join(CONFIG_FILE)) {
                Ok(config) => out.push(VmSummary {
                    state: run_state(&dir, &config)?,
                    name,
                    cpus: config.cpus,
                    memory: config.memory,
                    snapshots: config.snapshots.len(),
                }),
                Err(e) => notes.push(format!("skipped {name}: {e}")),
            }
        }
        Ok((out, notes))
    }

    /// Names of the bundles (directories not starting with '.').
    pub(crate) fn names(&self) -> Result<Vec<String>> {
        let dir = self.vms_dir();
        let entries = match std::fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io_at(&dir)(e)),
        };
        let mut names = Vec::new();
        for entry in entries {
            let entry = entry.map_err(io_at(&dir))?;
            let Ok(name) = entry.file_name().into_string() else {
                continue;
            };
            if check_name("VM name", &name).is_ok() && entry.path().is_dir() {
                names.push(name);
            }
        }
        names.sort();
        Ok(names)
    }

    /// Remove abandoned `.NAME.new-…` and `.NAME.old-…` directories (their
    /// lock file free: no command is building or removing them).
    fn sweep(&self) -> Result<Vec<String>> {
        let dir = self.vms_dir();
        let Ok(entries) = std::fs::read_dir(&dir) else {
            return Ok(Vec::new());
        };
        let mut notes = Vec::new();
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some(rest) = name.strip_prefix('.') else {
                continue;
            };
            let what = if rest.contains(".new-") {
                "an interrupted create or clone"
            } else if rest.contains(".old-") {
                "an interrupted delete"
            } else {
                continue;
            };
            let path = entry.path();
            let free = match lock::try_lock(&path.join(COMMAND_LOCK), true) {
                Ok(held) => held.is_some(),
                Err(_) => true, // no lock file: never got that far
            };
            if free {
                std::fs::remove_dir_all(&path).map_err(io_at(&path))?;
                notes.push(format!("removed {} left by {what}", path.display()));
            }
        }
        Ok(notes)
    }

    /// Create a VM.
    pub fn create(&self, spec: &CreateSpec, progress: Progress) -> Result<VmConfig> {
        check_name("VM name", &spec.name)?;
        if spec.disks.len() + spec.nics.len() > MAX_DEVICES {
            return Err(VmmError::OutOfRange {
                what: "disks and NICs",
                value: (spec.disks.len() + spec.nics.len()) as u64,
                range: "at most 7 together",
            });
        }
        self.ensure_vms_dir()?;
        if self.bundle_dir(&spec.name).exists() {
            return Err(VmmError::VmExists {
                name: spec.name.clone(),
            });
        }
        let nics = spec
            .nics
            .iter()
            .map(|(net, mac)| {
                Ok(NicConfig {
                    net: net.clone(),
                    mac: match mac {
                        Some(m) => *m,
                        None => Mac::random()?,
                    },
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let mut config = VmConfig {
            format: FORMAT,
            name: spec.name.clone(),
            uuid: new_uuid()?,
            created: crate::now(),
            cpus: spec.cpus,
            memory: spec.memory,
            append: spec.append.clone(),
            instructions_per_tick: spec.instructions_per_tick,
            vmgenid: crate::new_vmgenid()?,
            boot: spec.boot.clone(),
            next_id: 1,
            disks: Vec::new(),
            nics,
            ft: spec.ft.clone(),
            linked: None,
            retired_layers: Vec::new(),
            current: Current::empty(),
            snapshots: Vec::new(),
        };
        let staging = Staging::new(self, &spec.name)?;
        for (i, source) in spec.disks.iter().enumerate() {
            let id = config.take_id();
            let layer = staging.disks.join(layer_name(i, id));
            let size = match source {
                DiskSource::Empty(size) => {
                    disk::create(&layer, *size, None)?;
                    *size
                }
                DiskSource::Import {
                    path,
                    format,
                    backing,
                } => {
                    let options = disk::OpenOptions {
                        format: *format,
                        read_only: true,
                        backing: *backing,
                    };
                    let what = format!("importing {}", path.display());
                    let stats = disk::copy(path, &options, &layer, None, &mut |d, t| {
                        progress(&what, d, t)
                    })?;
                    stats.virtual_size
                }
            };
            config.disks.push(DiskConfig { size });
            config.current.layers.push(layer_name(i, id));
        }
        staging.commit(&config)?;
        Ok(config)
    }

    /// Delete a VM: refused while it runs (unless `force`: it is killed)
    /// or while linked clones stand on its layers.
    pub fn delete(&self, name: &str, force: bool) -> Result<()> {
        let vm = self.open(name)?;
        let clones = self.linked_clones(vm.config().uuid, None)?;
        if !clones.is_empty() {
            return Err(VmmError::HasLinkedClones {
                vm: name.to_string(),
                clones: clones.join(", "),
            });
        }
        let _guard = match vm.run_guard("stop it first, or delete it with --force") {
            Ok(g) => g,
            Err(VmmError::Running { pid, .. }) if force => {
                vm.kill_and_wait(pid)?;
                vm.run_guard("it did not stop")?
            }
            Err(e) => return Err(e),
        };
        let dir = vm.dir().to_path_buf();
        let away = self
            .vms_dir()
            .join(format!(".{name}.old-{}", short_random()?));
        std::fs::rename(&dir, &away).map_err(io_at(&dir))?;
        disk::crash_point("bundle renamed away");
        sync_dir(&self.vms_dir()).map_err(io_at(self.vms_dir()))?;
        drop(vm);
        std::fs::remove_dir_all(&away).map_err(io_at(&away))
    }

    /// Rename a powered-off VM. Refused while linked clones stand on it
    /// (their disks name its directory).
    pub fn rename(&self, old: &str, new: &str) -> Result<()> {
        check_name("VM name", new)?;
        let mut vm = self.open(old)?;
        let clones = self.linked_clones(vm.config().uuid, None)?;
        if !clones.is_empty() {
            return Err(VmmError::HasLinkedClones {
                vm: old.to_string(),
                clones: clones.join(", "),
            });
        }
        let _guard = vm.run_guard("stop it first")?;
        vm.refuse_suspended("resume it first (its saved state names its disk files)")?;
        let to = self.bundle_dir(new);
        rename_noreplace(vm.dir(), &to).map_err(|e| {
            if e.kind() == std::io::ErrorKind::AlreadyExists {
                VmmError::VmExists {
                    name: new.to_string(),
                }
            } else {
                io_at(vm.dir())(e)
            }
        })?;
        sync_dir(&self.vms_dir()).map_err(io_at(self.vms_dir()))?;
        // A crash here leaves the old name inside: the next open fixes it.
        vm.moved_to(to, new)
    }

    /// Clone `src` as `dst`: a full clone copies the disks (flattened), a
    /// linked one stands on `src`'s frozen layers. Either gets a new uuid,
    /// MACs and generation id.
    pub fn clone_vm(
        &self,
        src: &str,
        dst: &str,
        from: &CloneFrom,
        progress: Progress,
    ) -> Result<VmConfig> {
        check_name("VM name", dst)?;
        if self.bundle_dir(dst).exists() {
            return Err(VmmError::VmExists {
                name: dst.to_string(),
            });
        }
        let mut source = self.open(src)?;
        let (layers, snapshot) = match &from.snapshot {
            Some(snap) => {
                let s = source
                    .config()
                    .snapshot(snap)
                    .ok_or_else(|| VmmError::NoSuchSnapshot {
                        vm: src.to_string(),
                        snapshot: snap.clone(),
                    })?;
                (s.layers.clone(), Some(s.id))
            }
            None if from.linked => {
                // A linked clone needs frozen layers: snapshot the source.
                let name = source.free_snapshot_name(&format!("clone-{dst}"));
                let s = source.snapshot_create(&name, &format!("taken to link clone {dst}"))?;
                (s.layers.clone(), Some(s.id))
            }
            None => {
                // The present disks, held still by the run lock meanwhile.
                let layers = source.config().current.layers.clone();
                (layers, None)
            }
        };
        let _still = match snapshot {
            None => {
                let guard = source.run_guard("clone one of its snapshots (--from-snapshot)")?;
                source.refuse_suspended("clone one of its snapshots (--from-snapshot)")?;
                Some(guard)
            }
            Some(_) => None,
        };
        let src_config = source.config().clone();
        let mut config = VmConfig {
            name: dst.to_string(),
            uuid: new_uuid()?,
            created: crate::now(),
            vmgenid: crate::new_vmgenid()?,
            next_id: 1,
            ft: None,
            linked: None,
            retired_layers: Vec::new(),
            current: Current::empty(),
            snapshots: Vec::new(),
            nics: src_config
                .nics
                .iter()
                .map(|n| {
                    Ok(NicConfig {
                        net: n.net.clone(),
                        mac: Mac::random()?,
                    })
                })
                .collect::<Result<_>>()?,
            ..src_config.clone()
        };
        let staging = Staging::new(self, dst)?;
        for (i, layer) in layers.iter().enumerate() {
            let id = config.take_id();
            let path = staging.disks.join(layer_name(i, id));
            let from_path = source.layer_path(layer);
            if from.linked {
                disk::create(
                    &path,
                    src_config.disks[i].size,
                    Some((&from_path, disk::Format::Qcow2)),
                )?;
            } else {
                let options = source.layer_options(&from_path, true)?;
                let what = format!("copying disk {i}");
                disk::copy(&from_path, &options, &path, None, &mut |d, t| {
                    progress(&what, d, t)
                })?;
            }
            config.current.layers.push(layer_name(i, id));
        }
        if from.linked {
            config.linked = Some(LinkedTo {
                vm: src_config.uuid,
                name: src.to_string(),
                snapshot: snapshot.unwrap_or_default(),
            });
        }
        staging.commit(&config)?;
        Ok(config)
    }

    /// The linked clones standing on VM `uuid` (on snapshot `snapshot`, or
    /// any), by name.
    pub fn linked_clones(&self, uuid: Uuid, snapshot: Option<&[u64]>) -> Result<Vec<String>> {
        let mut out = Vec::new();
        for name in self.names()? {
            let Ok(config) = read_config(&self.bundle_dir(&name).join(CONFIG_FILE)) else {
                continue;
            };
            if let Some(linked) = &config.linked {
                if linked.vm == uuid && snapshot.is_none_or(|ids| ids.contains(&linked.snapshot)) {
                    out.push(name);
                }
            }
        }
        Ok(out)
    }
}

/// The power state of the bundle in `dir`.
pub(crate) fn run_state(dir: &Path, config: &VmConfig) -> Result<RunState> {
    Ok(match lock::running(dir)? {
        Some((pid, since)) => RunState::Running { pid, since },
        None if config.current.state.is_some() => RunState::Suspended,
        None => RunState::Off,
    })
}

/// Read and check a `vm.toml` (bounded size, regular file).
pub(crate) fn read_config(path: &Path) -> Result<VmConfig> {
    let file = std::fs::File::open(path).map_err(io_at(path))?;
    let meta = file.metadata().map_err(io_at(path))?;
    if !meta.is_file() {
        return Err(VmmError::BadConfig {
            path: path.to_path_buf(),
            reason: Box::new(ConfigError::NotAFile),
        });
    }
    if meta.len() > MAX_CONFIG_BYTES {
        return Err(VmmError::BadConfig {
            path: path.to_path_buf(),
            reason: Box::new(ConfigError::TooLarge {
                bytes: meta.len(),
                max: MAX_CONFIG_BYTES,
            }),
        });
    }
    let mut text = String::new();
    file.take(MAX_CONFIG_BYTES)
        .read_to_string(&mut text)
        .map_err(|e| VmmError::BadConfig {
            path: path.to_path_buf(),
            reason: Box::new(ConfigError::Unreadable(e)),
        })?;
    VmConfig::parse(path, &text)
}

/// A bundle being built under a hidden name, moved into place by
/// [`Staging::commit`] (or removed when dropped).
struct Staging {
    dir: PathBuf,
    disks: PathBuf,
    target: PathBuf,
    name: String,
    vms: PathBuf,
    _lock: std::fs::File,
    done: bool,
}

impl Staging {
    fn new(home: &Home, name: &str) -> Result<Staging> {
        let vms = home.ensure_vms_dir()?;
        let dir = vms.join(format!(".{name}.new-{}", short_random()?));
        let private = |p: &Path| DirBuilder::new().mode(0o700).create(p).map_err(io_at(p));
        private(&dir)?;
        let lock =
            lock::try_lock(&dir.join(COMMAND_LOCK), true)?.ok_or_else(|| VmmError::Busy {
                name: name.to_string(),
            })?;
        let disks = dir.join(DISKS_DIR);
        private(&disks)?;
        private(&dir.join(STATES_DIR))?;
        Ok(Staging {
            target: home.bundle_dir(name),
            disks,
            dir,
            name: name.to_string(),
            vms,
            _lock: lock,
            done: false,
        })
    }

    fn commit(mut self, config: &VmConfig) -> Result<()> {
        let path = self.dir.join(CONFIG_FILE);
        replace_file(&path, config.to_toml(&path)?.as_bytes()).map_err(io_at(&path))?;
        sync_dir(&self.disks).map_err(io_at(&self.disks))?;
        rename_noreplace(&self.dir, &self.target).map_err(|e| {
            if e.kind() == std::io::ErrorKind::AlreadyExists {
                VmmError::VmExists {
                    name: self.name.clone(),
                }
            } else {
                io_at(&self.dir)(e)
            }
        })?;
        self.done = true;
        disk::crash_point("bundle renamed into place");
        sync_dir(&self.vms).map_err(io_at(&self.vms))
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        if !self.done {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

fn new_uuid() -> Result<Uuid> {
    let mut b = [0u8; 16];
    crate::random_bytes(&mut b)?;
    Ok(uuid::Builder::from_random_bytes(b).into_uuid())
}

fn short_random() -> Result<String> {
    let mut b = [0u8; 6];
    crate::random_bytes(&mut b)?;
    Ok(b.iter().map(|x| format!("{x:02x}")).collect())
}
