//! One VM's bundle, opened for a command: its configuration, snapshot
//! tree and disks, changed crash-safely.

use crate::config::{layer_name, PowerState, Snapshot, VmConfig};
use crate::durable::{remove_if_exists, replace_file, sync_dir};
use crate::error::{io_at, Result, VmmError};
use crate::home::{read_config, run_state, Home, RunState};
use crate::lock::{self, RunGuard};
use crate::Progress;
use std::collections::BTreeSet;
use std::fs::File;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

pub(crate) const CONFIG_FILE: &str = "vm.toml";
pub(crate) const DISKS_DIR: &str = "disks";
/// Suspended machine states.
pub(crate) const STATES_DIR: &str = "states";
/// The guest's console output, appended by the running VM.
pub const CONSOLE_LOG: &str = "console.log";
/// The VM process's own messages (a detached VM's stderr).
pub const VM_LOG: &str = "vm.log";

/// A snapshot of a running VM between [`Vm::snapshot_begin_running`] and
/// [`Vm::snapshot_commit`].
#[derive(Debug)]
pub struct PendingSnapshot {
    pub name: String,
    /// The new top layers (made), one per disk, in disk order.
    pub tops: Vec<PathBuf>,
    /// The layers the snapshot freezes (the present tops), in disk order.
    pub frozen: Vec<PathBuf>,
    /// Where the machine state goes (`None`: a disk-only snapshot).
    pub state: Option<PathBuf>,
    /// The bundle's `states/` (for the state file's temporary).
    pub states: PathBuf,
    config: VmConfig,
}

/// A VM opened for a command; its command lock is held until dropped.
#[derive(Debug)]
pub struct Vm {
    home: Home,
    dir: PathBuf,
    config: VmConfig,
    notes: Vec<String>,
    _lock: File,
}

impl Vm {
    pub(crate) fn open(home: &Home, name: &str, wait: std::time::Duration) -> Result<Vm> {
        let dir = home.bundle_dir(name);
        if !dir.join(CONFIG_FILE).exists() {
            return Err(VmmError::NoSuchVm {
                name: name.to_string(),
            });
        }
        let lock = lock::command_lock(&dir, name, wait)?;
        let config = read_config(&dir.join(CONFIG_FILE))?;
        let mut vm = Vm {
            home: home.clone(),
            dir,
            config,
            notes: Vec::new(),
            _lock: lock,
        };
        vm.repair(name)?;
        Ok(vm)
    }

    /// Finish or roll back what an interrupted command left: a rename
    /// whose new name is not yet inside `vm.toml` is completed; layer
    /// files `vm.toml` does not name (new layers of an operation that
    /// never switched the pointer, or old ones it had not yet removed)
    /// are removed.
    fn repair(&mut self, name: &str) -> Result<()> {
        if self.config.name != name {
            self.notes.push(format!(
                "completed an interrupted rename from {:?}",
                self.config.name
            ));
            self.config.name = name.to_string();
            self.save()?;
        }
        // A running VM's process may be writing new files (its suspended
        // state): leftovers are looked for only while it is not running.
        if lock::running(&self.dir)?.is_some() {
            return Ok(());
        }
        self.repair_states()?;
        let referenced = self.referenced_files();
        for sub in [DISKS_DIR, STATES_DIR] {
            let dir = self.dir.join(sub);
            let entries = match std::fs::read_dir(&dir) {
                Ok(e) => e,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound && sub == STATES_DIR => continue,
                Err(e) => return Err(io_at(&dir)(e)),
            };
            let mut removed = Vec::new();
            for entry in entries {
                let entry = entry.map_err(io_at(&dir))?;
                let file = entry.file_name().to_string_lossy().into_owned();
                if !referenced.contains(&file) {
                    let path = entry.path();
                    remove_if_exists(&path).map_err(io_at(&path))?;
                    removed.push(file);
                }
            }
            if !removed.is_empty() {
                sync_dir(&dir).map_err(io_at(&dir))?;
                self.notes.push(format!(
                    "removed {} file(s) from {sub}/ left by an interrupted operation: {}",
                    removed.len(),
                    removed.join(", ")
                ));
            }
        }
        Ok(())
    }

    /// A snapshot of a running VM names its state file before the file is
    /// complete (the guest runs on while it is written): if the VM's
    /// process died first, the snapshot keeps its disks (consistent as
    /// after a power loss) and becomes a powered-off one.
    fn repair_states(&mut self) -> Result<()> {
        let states = self.dir.join(STATES_DIR);
        let missing = |s: &Option<String>| s.as_ref().is_some_and(|f| !states.join(f).is_file());
        let mut config = self.config.clone();
        let mut notes = Vec::new();
        for snap in &mut config.snapshots {
            if missing(&snap.state) {
                notes.push(format!(
                    "snapshot {:?}: its memory state was not completely written (the VM's process ended first); kept as a powered-off snapshot of its disks",
                    snap.name
                ));
                snap.state = None;
                snap.power = PowerState::Off;
            }
        }
        if missing(&config.current.state) {
            notes.push(
                "its saved state is missing: it starts from its disks, as after a power loss"
                    .into(),
            );
            config.current.state = None;
        }
        if !notes.is_empty() {
            self.switch(config)?;
            self.notes.extend(notes);
        }
        Ok(())
    }

    /// Every file in `disks/` and `states/` the configuration names.
    fn referenced_files(&self) -> BTreeSet<String> {
        self.config
            .layer_files()
            .into_iter()
            .map(str::to_string)
            .chain(self.config.current.state.clone())
            .chain(self.config.snapshots.iter().filter_map(|s| s.state.clone()))
            .collect()
    }

    pub fn config(&self) -> &VmConfig {
        &self.config
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// What opening repaired (one line each).
    pub fn notes(&self) -> &[String] {
        &self.notes
    }

    pub fn state(&self) -> Result<RunState> {
        run_state(&self.dir, &self.config)
    }

    /// Refuse what a suspended VM cannot do.
    pub(crate) fn refuse_suspended(&self, what: &'static str) -> Result<()> {
        match self.config.current.state {
            Some(_) => Err(VmmError::Suspended {
                name: self.config.name.clone(),
                what,
            }),
            None => Ok(()),
        }
    }

    /// The saved state a suspended VM resumes from.
    pub fn suspended_state(&self) -> Option<PathBuf> {
        self.config
            .current
            .state
            .as_ref()
            .map(|s| self.dir.join(STATES_DIR).join(s))
    }

    /// Where a run of this VM saves its state if it is suspended (the
    /// `states/` directory made if missing).
    pub fn suspend_target(&self) -> Result<(String, PathBuf)> {
        let dir = self.states_dir()?;
        let name = format!("suspend-{}.state", self.config.next_id);
        Ok((name.clone(), dir.join(name)))
    }

    /// Set (or with `None` clear) the VM's fault-tolerance settings; they
    /// take effect at its next start.
    pub fn set_ft(&mut self, ft: Option<crate::FtSettings>) -> Result<()> {
        let mut config = self.config.clone();
        config.ft = ft;
        config.check().map_err(|reason| VmmError::BadConfig {
            path: self.dir.join(CONFIG_FILE),
            reason: Box::new(reason),
        })?;
        self.switch(config)
    }

    /// Record that the VM is suspended in `state` (a file in `states/`
    /// its process wrote while it held the run lock).
    pub fn set_suspended(&mut self, state: &str) -> Result<()> {
        if !crate::config::is_state_name(state) {
            return Err(VmmError::BadName {
                what: "state file",
                shown: state.chars().take(80).collect(),
                reason: "not a suspend-N.state name".into(),
            });
        }
        let mut config = self.config.clone();
        config.take_id();
        config.current.state = Some(state.to_string());
        self.switch(config)
    }

    /// The VM resumed: its saved state is gone (the disks move on).
    pub fn clear_suspended(&mut self) -> Result<()> {
        let mut config = self.config.clone();
        config.current.state = None;
        self.switch(config)
    }

    /// A layer file's path.
    pub fn layer_path(&self, layer: &str) -> PathBuf {
        self.dir.join(DISKS_DIR).join(layer)
    }

    /// The VM's disks as they are now: each top layer's path and how to
    /// open it. Every file of each chain is checked to lie in the VM
    /// store (a bundle's layers name only bundle files), so the chain may
    /// then be opened following `..` names (linked clones).
    pub fn disks(&self) -> Result<Vec<(PathBuf, disk::OpenOptions)>> {
        self.config
            .current
            .layers
            .iter()
            .map(|l| {
                let path = self.layer_path(l);
                let options = self.layer_options(&path, false)?;
                Ok((path, options))
            })
            .collect()
    }

    /// How to open a layer of this bundle, after checking its chain.
    pub(crate) fn layer_options(&self, path: &Path, read_only: bool) -> Result<disk::OpenOptions> {
        let root = self.home.vms_dir();
        let root = std::fs::canonicalize(&root).map_err(io_at(&root))?;
        let info = disk::info(path)?;
        let files = std::iter::once((info.path.clone(), info.format)).chain(
            info.backing_chain
                .iter()
                .map(|l| (l.path.clone(), l.format)),
        );
        for (file, format) in files {
            let canon = std::fs::canonicalize(&file).map_err(io_at(&file))?;
            if !canon.starts_with(&root) || format != disk::Format::Qcow2 {
                return Err(VmmError::ChainOutside {
                    layer: path.to_path_buf(),
                    file: canon,
                    root,
                });
            }
        }
        Ok(disk::OpenOptions {
            format: disk::Format::Qcow2,
            read_only,
            backing: disk::BackingPolicy::Any,
        })
    }

    /// Replace `vm.toml` with the configuration held (the one pointer).
    fn save(&self) -> Result<()> {
        let path = self.dir.join(CONFIG_FILE);
        replace_file(&path, self.config.to_toml(&path)?.as_bytes()).map_err(io_at(&path))
    }

    /// Switch to `config` (written, synced, renamed), then remove the
    /// layer files it no longer references.
    fn switch(&mut self, config: VmConfig) -> Result<()> {
        let before = self.referenced_files();
        self.config = config;
        self.save()?;
        let after = self.referenced_files();
        for old in before.difference(&after) {
            let sub = if old.ends_with(".state") {
                STATES_DIR
            } else {
                DISKS_DIR
            };
            let path = self.dir.join(sub).join(old);
            // Left behind on failure: the next command removes it.
            let _ = remove_if_exists(&path);
            disk::crash_point("old file removed");
        }
        let disks = self.dir.join(DISKS_DIR);
        sync_dir(&disks).map_err(io_at(&disks))
    }

    /// A new snapshot's name must be valid and free, its description short.
    fn check_new_snapshot(&self, name: &str, description: &str) -> Result<()> {
        crate::check_name("snapshot name", name)?;
        if description.len() > crate::MAX_DESCRIPTION {
            return Err(VmmError::OutOfRange {
                what: "description length",
                value: description.len() as u64,
                range: "at most 4096 bytes",
            });
        }
        if self.config.snapshot(name).is_some() {
            return Err(VmmError::SnapshotExists {
                vm: self.config.name.clone(),
                snapshot: name.to_string(),
            });
        }
        Ok(())
    }

    /// A snapshot name not yet taken, from `base`.
    pub(crate) fn free_snapshot_name(&self, base: &str) -> String {
        let base: String = base.chars().take(crate::MAX_NAME_LEN - 4).collect();
        if self.config.snapshot(&base).is_none() {
            return base;
        }
        (2..)
            .map(|n| format!("{base}-{n}"))
            .find(|n| self.config.snapshot(n).is_none())
            .unwrap_or(base)
    }

    fn find(&self, snapshot: &str) -> Result<Snapshot> {
        self.config
            .snapshot(snapshot)
            .cloned()
            .ok_or_else(|| VmmError::NoSuchSnapshot {
                vm: self.config.name.clone(),
                snapshot: snapshot.to_string(),
            })
    }

    /// New empty top layers over `below` (one per disk).
    fn new_tops(&self, config: &mut VmConfig, below: &[String]) -> Result<Vec<String>> {
        let mut tops = Vec::new();
        for (i, layer) in below.iter().enumerate() {
            let name = layer_name(i, config.take_id());
            disk::create(
                &self.layer_path(&name),
                config.disks[i].size,
                Some((&self.layer_path(layer), disk::Format::Qcow2)),
            )?;
            tops.push(name);
        }
        Ok(tops)
    }

    /// Take a snapshot of the powered-off VM: its present layers freeze
    /// into the snapshot, and new empty layers over them become current.
    pub fn snapshot_create(&mut self, name: &str, description: &str) -> Result<&Snapshot> {
        self.check_new_snapshot(name, description)?;
        let _guard = self
            .run_guard("its process takes snapshots of it (`lockstep snapshot create` asks it)")?;
        let mut config = self.config.clone();
        let id = config.take_id();
        let frozen = config.current.layers.clone();
        let tops = self.new_tops(&mut config, &frozen)?;
        // A suspended VM's snapshot shares its saved state: both resume
        // from it, the present on new layers over the frozen ones.
        let state = config.current.state.clone();
        config.snapshots.push(Snapshot {
            id,
            name: name.to_string(),
            parent: config.current.parent,
            created: crate::now(),
            power: match state {
                Some(_) => PowerState::Suspended,
                None => PowerState::Off,
            },
            description: description.to_string(),
            layers: frozen,
            state,
        });
        config.current.parent = Some(id);
        config.current.layers = tops;
        self.switch(config)?;
        self.config
            .snapshot(name)
            .ok_or_else(|| VmmError::NoSuchSnapshot {
                vm: self.config.name.clone(),
                snapshot: name.to_string(),
            })
    }

    /// Begin a snapshot of the VM this process runs (holding its run
    /// lock): the new top layers are made now; [`Vm::snapshot_commit`]
    /// switches to them with the guest paused, after the machine's disks
    /// were flushed. Unless `disk_only`, the snapshot names a state file
    /// (`states/snap-N.state`) the caller completes after the commit; if
    /// it never does, the next command keeps the snapshot as a powered-off
    /// one.
    pub fn snapshot_begin_running(
        &mut self,
        name: &str,
        description: &str,
        disk_only: bool,
    ) -> Result<PendingSnapshot> {
        self.check_new_snapshot(name, description)?;
        match lock::running(&self.dir)? {
            Some((pid, _)) if pid == std::process::id() => {}
            _ => {
                return Err(VmmError::NotRunning {
                    name: self.config.name.clone(),
                })
            }
        }
        let states = self.states_dir()?;
        let mut config = self.config.clone();
        let id = config.take_id();
        let frozen = config.current.layers.clone();
        // The running process holds the present tops open (and locked).
        let mut tops: Vec<String> = Vec::new();
        for (i, layer) in frozen.iter().enumerate() {
            let name = layer_name(i, config.take_id());
            let made = disk::create_over_own(
                &self.layer_path(&name),
                config.disks[i].size,
                &self.layer_path(layer),
                disk::Format::Qcow2,
            );
            if let Err(e) = made {
                for t in &tops {
                    let _ = remove_if_exists(&self.layer_path(t));
                }
                return Err(e.into());
            }
            tops.push(name);
        }
        let state = (!disk_only).then(|| format!("snap-{id}.state"));
        config.snapshots.push(Snapshot {
            id,
            name: name.to_string(),
            parent: config.current.parent,
            created: crate::now(),
            power: if disk_only {
                PowerState::Off
            } else {
                PowerState::Running
            },
            description: description.to_string(),
            layers: frozen.clone(),
            state: state.clone(),
        });
        config.current.parent = Some(id);
        config.current.layers = tops.clone();
        Ok(PendingSnapshot {
            name: name.to_string(),
            tops: tops.iter().map(|l| self.layer_path(l)).collect(),
            frozen: frozen.iter().map(|l| self.layer_path(l)).collect(),
            state: state.map(|s| states.join(s)),
            states,
            config,
        })
    }

    /// Switch `vm.toml` to the begun snapshot: from now on the VM's disks
    /// are its new top layers (the caller's machine must already write to
    /// them, or write nothing until it does).
    pub fn snapshot_commit(&mut self, pending: &PendingSnapshot) -> Result<()> {
        self.switch(pending.config.clone())
    }

    /// Give up a begun snapshot before its commit: its new layers go.
    pub fn snapshot_abandon(&self, pending: PendingSnapshot) {
        for top in &pending.tops {
            let _ = remove_if_exists(top);
        }
    }

    /// `states/`, made if missing.
    fn states_dir(&self) -> Result<PathBuf> {
        let dir = self.dir.join(STATES_DIR);
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&dir)
            .or_else(|e| match e.kind() {
                std::io::ErrorKind::AlreadyExists => Ok(()),
                _ => Err(e),
            })
            .map_err(io_at(&dir))?;
        Ok(dir)
    }

    /// Go back to a snapshot: the present disks are discarded, new empty
    /// layers over the snapshot's become current, with a new generation id
    /// (the guest must not repeat what it did after the snapshot).
    pub fn snapshot_revert(&mut self, name: &str) -> Result<PowerState> {
        let snap = self.find(name)?;
        let _guard = self.run_guard("stop it first")?;
        let mut config = self.config.clone();
        let tops = self.new_tops(&mut config, &snap.layers)?;
        config.current.parent = Some(snap.id);
        config.current.layers = tops;
        // The present's suspended state goes with it; a running or
        // suspended snapshot's becomes the present's, resumed at the next
        // start (a running one's at once: the caller starts it).
        config.current.state = snap.state.clone();
        config.vmgenid = crate::new_vmgenid()?;
        self.switch(config)?;
        Ok(snap.power)
    }

    /// Delete a snapshot, merging its disk layers into its children (and
    /// the present state, if it descends directly from it); with
    /// `children`, its whole subtree goes (the present state's ancestors
    /// merged into it as they go).
    pub fn snapshot_delete(
        &mut self,
        name: &str,
        children: bool,
        progress: Progress,
    ) -> Result<()> {
        let snap = self.find(name)?;
        let subtree = if children {
            self.config.subtree(snap.id)
        } else {
            vec![snap.id]
        };
        let clones = self.home.linked_clones(self.config.uuid, Some(&subtree))?;
        if !clones.is_empty() {
            return Err(VmmError::SnapshotUsedByClones {
                vm: self.config.name.clone(),
                snapshot: name.to_string(),
                clones: clones.join(", "),
            });
        }
        let _guard = self.run_guard("stop it first")?;
        // Children before parents: each deletion is its own transaction.
        for id in subtree.into_iter().rev() {
            self.delete_one(id, progress)?;
        }
        Ok(())
    }

    fn delete_one(&mut self, id: u64, progress: Progress) -> Result<()> {
        let Some(snap) = self.config.snapshot_by_id(id).cloned() else {
            return Ok(());
        };
        let mut config = self.config.clone();
        if self.states_stand_on(id) {
            // Merging would rewrite the disks a saved state recorded: the
            // layers stay as backing files, the node goes.
            for child in config.snapshots.iter_mut().filter(|s| s.parent == Some(id)) {
                child.parent = snap.parent;
            }
            if config.current.parent == Some(id) {
                config.current.parent = snap.parent;
            }
            config.retired_layers.extend(snap.layers.iter().cloned());
            config.snapshots.retain(|s| s.id != id);
            self.notes.push(format!(
                "kept the disk layers of snapshot {:?} ({}): saved machine states stand on them",
                snap.name,
                snap.layers.join(", ")
            ));
            return self.switch(config);
        }
        // What each of its layers stood on: the merged layers stand there.
        let mut bases = Vec::new();
        for layer in &snap.layers {
            let info = disk::info(&self.layer_path(layer))?;
            bases.push(info.backing_chain.first().map(|l| l.path.clone()));
        }
        let children: Vec<u64> = config
            .snapshots
            .iter()
            .filter(|s| s.parent == Some(id))
            .map(|s| s.id)
            .collect();
        // Each child's layers (and the present ones, if S is their
        // parent) take in S's data in place: rebuilt over S's base and
        // renamed over themselves, so their contents never change and
        // whatever stands on them (grandchildren) keeps its backing name.
        for child in &children {
            let layers = self.config.snapshot_by_id(*child).map(|s| s.layers.clone());
            self.merge(&mut config, &layers.unwrap_or_default(), &bases, progress)?;
            if let Some(s) = config.snapshots.iter_mut().find(|s| s.id == *child) {
                s.parent = snap.parent;
            }
        }
        if config.current.parent == Some(id) {
            let layers = config.current.layers.clone();
            self.merge(&mut config, &layers, &bases, progress)?;
            config.current.parent = snap.parent;
        }
        config.snapshots.retain(|s| s.id != id);
        self.switch(config)
    }

    /// Whether a saved machine state (a running or suspended snapshot
    /// below snapshot `id`, or the present's) records disks whose chain
    /// holds `id`'s layers.
    fn states_stand_on(&self, id: u64) -> bool {
        let c = &self.config;
        let below = |at: Option<u64>| c.ancestors(at).contains(&id);
        c.snapshots
            .iter()
            .any(|s| s.id != id && s.state.is_some() && below(Some(s.id)))
            || (c.current.state.is_some() && below(c.current.parent))
    }

    /// Rebuild each of `layers` to hold its own data and what it stood
    /// on down to `bases` (its chain with one link cut out), and rename
    /// the result over it. Before and after the rename the file reads
    /// the same; a crash in between leaves an unreferenced new file (the
    /// next command removes it).
    fn merge(
        &self,
        config: &mut VmConfig,
        layers: &[String],
        bases: &[Option<PathBuf>],
        progress: Progress,
    ) -> Result<()> {
        for (i, layer) in layers.iter().enumerate() {
            let src = self.layer_path(layer);
            let tmp = self.layer_path(&layer_name(i, config.take_id()));
            let options = self.layer_options(&src, true)?;
            let base = bases
                .get(i)
                .and_then(|b| b.as_deref())
                .map(|b| (b, disk::Format::Qcow2));
            let what = format!("merging disk {i}");
            disk::copy(&src, &options, &tmp, base, &mut |d, t| {
                progress(&what, d, t)
            })?;
            std::fs::rename(&tmp, &src).map_err(io_at(&src))?;
            disk::crash_point("merged layer renamed over the old one");
            let disks = self.dir.join(DISKS_DIR);
            sync_dir(&disks).map_err(io_at(&disks))?;
        }
        Ok(())
    }

    /// After the bundle directory was renamed: record the new name.
    pub(crate) fn moved_to(&mut self, dir: PathBuf, name: &str) -> Result<()> {
        self.dir = dir;
        self.config.name = name.to_string();
        self.save()
    }

    /// Offline operations hold the run lock: the VM cannot start meanwhile.
    pub(crate) fn run_guard(&self, what: &'static str) -> Result<RunGuard> {
        RunGuard::take(&self.dir, &self.config.name, what)
    }

    /// Take the run lock for this process as the VM's: held until the
    /// guard drops (the process exits). Refused if the VM runs.
    pub fn start(&self) -> Result<RunGuard> {
        let mut guard = self.run_guard("it is already running")?;
        guard.publish(&self.dir)?;
        Ok(guard)
    }

    /// Send `signal` to the running VM's process.
    pub fn signal(&self, signal: rustix::process::Signal) -> Result<u32> {
        match self.state()? {
            RunState::Running { pid, .. } if pid != 0 => {
                let p = rustix::process::Pid::from_raw(pid as i32).ok_or(VmmError::NotRunning {
                    name: self.config.name.clone(),
                })?;
                rustix::process::kill_process(p, signal).map_err(|e| VmmError::Io {
                    path: self.dir.join(lock::RUN_PID),
                    source: e.into(),
                })?;
                Ok(pid)
            }
            _ => Err(VmmError::NotRunning {
                name: self.config.name.clone(),
            }),
        }
    }

    /// Wait up to `timeout` for the VM's process to end; whether it did.
    pub fn wait_stopped(&self, timeout: Duration) -> Result<bool> {
        let start = Instant::now();
        loop {
            if self.state()? == RunState::Off {
                return Ok(true);
            }
            if start.elapsed() >= timeout {
                return Ok(false);
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    pub(crate) fn kill_and_wait(&self, _pid: u32) -> Result<()> {
        self.signal(rustix::process::Signal::KILL)?;
        self.wait_stopped(Duration::from_secs(10))?;
        Ok(())
    }

    /// The snapshot tree as indented lines: name, time, power state; the
    /// present state shown as `you are here` under its parent.
    pub fn tree_lines(&self) -> Vec<String> {
        let mut out = Vec::new();
        self.draw(None, "", &mut out);
        out
    }

    fn draw(&self, parent: Option<u64>, indent: &str, out: &mut Vec<String>) {
        enum Node<'a> {
            Snap(&'a Snapshot),
            Here,
        }
        let mut nodes: Vec<Node> = self
            .config
            .snapshots
            .iter()
            .filter(|s| s.parent == parent)
            .map(Node::Snap)
            .collect();
        if self.config.current.parent == parent {
            nodes.push(Node::Here);
        }
        let count = nodes.len();
        for (i, node) in nodes.into_iter().enumerate() {
            let last = i + 1 == count;
            let (branch, next) = if last {
                ("└─ ", "   ")
            } else {
                ("├─ ", "│  ")
            };
            match node {
                Node::Snap(s) => {
                    out.push(format!(
                        "{indent}{branch}{}  ({}, {})",
                        s.name,
                        crate::format_time(s.created),
                        s.power
                    ));
                    self.draw(Some(s.id), &format!("{indent}{next}"), out);
                }
                Node::Here => out.push(format!("{indent}{branch}* you are here")),
            }
        }
    }
}
