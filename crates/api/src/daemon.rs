//! The daemon's state: its configuration, identity, the per-project VM
//! homes, the inventory of VMs it looks after (desired state and restart
//! policy, kept crash-safely in `HOME/api/inventory.json`), the event
//! stream, and the supervisor that starts, watches and restarts the
//! per-VM processes.
//!
//! Each project's VMs live in their own VM home, `HOME/projects/NAME/`
//! (bundles in `vms/`, networks in `networks/`), so one project cannot
//! name another's VMs. A VM's process is the `lockstep` binary's
//! `vm start NAME --foreground`, in its own process group with
//! `LOCKSTEP_HOME` set to the project's home: it outlives a daemon restart,
//! and a restarted daemon finds it again by the bundle's run lock.

use crate::error::{ApiError, ApiResult};
use crate::identity::{private_dir, write_private, Identity};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::broadcast;
use utoipa::ToSchema;
use vmm::{Home, RunState};

/// How lockstepd was started.
#[derive(Clone, Debug)]
pub struct Config {
    /// The daemon's home: identity, inventory, projects' VM homes.
    pub home: PathBuf,
    /// The Unix socket it serves on (0600).
    pub socket: PathBuf,
    /// Also serve HTTPS here.
    pub listen: Option<std::net::SocketAddr>,
    /// Its TLS certificate chain and key (`node.pem`, `node.key`).
    pub tls_dir: Option<PathBuf>,
    pub host_name: String,
    /// The `lockstep` binary that runs VMs.
    pub vm_binary: PathBuf,
    /// Tokens expire after this many seconds unless asked for less.
    pub token_ttl: u64,
    /// An uploaded image may not be larger than this.
    pub max_image_bytes: u64,
}

/// What happens when a VM's process ends without being asked to.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum RestartPolicy {
    /// Leave it stopped.
    No,
    /// Start it again when its process failed (a guest power-off is not a failure).
    #[default]
    OnFailure,
    /// Start it again whenever it stops unasked.
    Always,
}

/// What the daemon keeps of a VM beyond its bundle.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VmRecord {
    pub project: String,
    pub name: String,
    pub uuid: uuid::Uuid,
    /// The host it runs on.
    pub host: String,
    pub restart: RestartPolicy,
    /// It should be running (the supervisor keeps it so, per `restart`).
    pub desired_running: bool,
}

#[derive(Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct InventoryFile {
    format: u32,
    vms: Vec<VmRecord>,
}

const INVENTORY_FORMAT: u32 = 1;
const MAX_INVENTORY_BYTES: u64 = 64 << 20;

/// A change of state, as `/v1/events` streams it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Event {
    /// Increasing from 1 per daemon start.
    pub seq: u64,
    /// Unix seconds.
    pub time: u64,
    pub project: String,
    /// `vm`, `network`, `image`.
    pub kind: String,
    pub name: String,
    /// `created`, `starting`, `running`, `stopped`, `suspended`,
    /// `deleted`, `exited`, `restarting`, `gave-up`, …
    pub state: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub detail: String,
}

/// How a supervised child ended.
#[derive(Clone, Copy, Debug)]
struct Exit {
    success: bool,
}

/// The supervisor's view of one VM.
#[derive(Default)]
struct Watch {
    /// The pid of the process the daemon started, while it runs.
    child: Option<u32>,
    /// How the last child ended (unknown for adopted processes).
    exit: Option<Exit>,
    /// Restarts in the current window.
    restarts: Vec<Instant>,
    /// The state last reported in an event.
    seen: Option<String>,
}

/// At most this many restarts in [`RESTART_WINDOW`], then the supervisor gives up.
const MAX_RESTARTS: usize = 5;
const RESTART_WINDOW: Duration = Duration::from_secs(60);
/// How long a VM's process may take to start.
const START_TIMEOUT: Duration = Duration::from_secs(60);

pub struct Daemon {
    pub config: Config,
    pub identity: Identity,
    events: broadcast::Sender<Event>,
    seq: Mutex<u64>,
    inventory: Mutex<InventoryFile>,
    inventory_path: PathBuf,
    /// VMs with a change in progress (`project/name`).
    busy: Mutex<HashSet<String>>,
    watches: Mutex<HashMap<String, Watch>>,
    /// The cluster this host is part of (`--etcd`), once joined.
    #[cfg(feature = "etcd")]
    cluster: std::sync::OnceLock<Arc<crate::cluster::Cluster>>,
}

/// Holds a VM busy for one change; freed when dropped.
pub struct BusyGuard {
    daemon: Arc<Daemon>,
    key: String,
}

impl Drop for BusyGuard {
    fn drop(&mut self) {
        self.daemon
            .busy
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.key);
    }
}

fn key(project: &str, name: &str) -> String {
    format!("{project}/{name}")
}

impl Daemon {
    pub fn open(config: Config) -> ApiResult<Arc<Daemon>> {
        private_dir(&config.home)?;
        private_dir(&config.home.join("projects"))?;
        private_dir(&config.home.join("images"))?;
        let identity = Identity::open(&config.home)?;
        let inventory_path = config.home.join("api/inventory.json");
        let inventory = match std::fs::read(&inventory_path) {
            Ok(bytes) if bytes.len() as u64 > MAX_INVENTORY_BYTES => {
                return Err(ApiError::Internal(format!(
                    "{}: larger than {MAX_INVENTORY_BYTES} bytes",
                    inventory_path.display()
                )))
            }
            Ok(bytes) => {
                let inv: InventoryFile = serde_json::from_slice(&bytes).map_err(|e| {
                    ApiError::Internal(format!("{}: {e}", inventory_path.display()))
                })?;
                if inv.format > INVENTORY_FORMAT {
                    return Err(ApiError::Internal(format!(
                        "{}: format {} is newer than this lockstepd reads ({INVENTORY_FORMAT})",
                        inventory_path.display(),
                        inv.format
                    )));
                }
                inv
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => InventoryFile {
                format: INVENTORY_FORMAT,
                vms: Vec::new(),
            },
            Err(e) => {
                return Err(ApiError::Internal(format!(
                    "{}: {e}",
                    inventory_path.display()
                )))
            }
        };
        let (events, _) = broadcast::channel(1024);
        let daemon = Arc::new(Daemon {
            config,
            identity,
            events,
            seq: Mutex::new(0),
            inventory: Mutex::new(inventory),
            inventory_path,
            busy: Mutex::new(HashSet::new()),
            watches: Mutex::new(HashMap::new()),
            #[cfg(feature = "etcd")]
            cluster: std::sync::OnceLock::new(),
        });
        for p in daemon.identity.projects() {
            private_dir(&daemon.project_dir(&p))?;
        }
        Ok(daemon)
    }

    /// The cluster this host has joined, if any.
    #[cfg(feature = "etcd")]
    pub fn cluster(&self) -> Option<Arc<crate::cluster::Cluster>> {
        self.cluster.get().cloned()
    }

    /// Join the cluster whose etcd is at `endpoints`, as the host whose
    /// API is at `addr` (HTTPS, its certificate signed by the CA in `ca`),
    /// and beat for as long as the daemon runs.
    #[cfg(feature = "etcd")]
    pub async fn join(
        self: &Arc<Self>,
        endpoints: Vec<String>,
        addr: std::net::SocketAddr,
        ca: &std::path::Path,
    ) -> ApiResult<()> {
        let cluster = crate::cluster::Cluster::join(self, endpoints, addr, ca).await?;
        if self.cluster.set(cluster.clone()).is_err() {
            return Err(ApiError::Internal("joined a cluster twice".into()));
        }
        tokio::spawn(cluster.run(self.clone()));
        Ok(())
    }

    /// Change the users and projects: here, or the cluster's.
    pub async fn change_identity(
        self: &Arc<Self>,
        change: crate::identity::Change,
    ) -> ApiResult<Option<crate::identity::UserView>> {
        #[cfg(feature = "etcd")]
        if let Some(c) = self.cluster() {
            return c.change_identity(self, &change).await;
        }
        let d = self.clone();
        blocking(move || d.identity.change(&change)).await
    }

    /// Take the VM name `project/name` for this host in the cluster (a
    /// 409 names the host that has it); alone, names are this host's.
    pub async fn claim(&self, project: &str, name: &str) -> ApiResult<()> {
        #[cfg(feature = "etcd")]
        if let Some(c) = self.cluster() {
            return c.claim(project, name).await;
        }
        let _ = (project, name);
        Ok(())
    }

    /// Give the VM name back to the cluster (the VM is gone from here).
    pub async fn release(&self, project: &str, name: &str) {
        #[cfg(feature = "etcd")]
        if let Some(c) = self.cluster() {
            if let Err(e) = c.release(project, name).await {
                tracing::warn!(
                    "VM {project}/{name} is gone but its name stays taken in the cluster: {e}"
                );
            }
        }
        let _ = (project, name);
    }

    pub fn project_dir(&self, project: &str) -> PathBuf {
        self.config.home.join("projects").join(project)
    }

    /// The VM home of `project`.
    pub fn home(&self, project: &str) -> Home {
        Home::at(self.project_dir(project))
    }

    pub fn networks(&self, project: &str) -> net::Networks {
        net::Networks::at(self.project_dir(project).join("networks"))
    }

    pub fn images_dir(&self) -> PathBuf {
        self.config.home.join("images")
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.events.subscribe()
    }

    /// Tell event subscribers.
    pub fn event(&self, project: &str, kind: &str, name: &str, state: &str, detail: String) {
        let seq = {
            let mut seq = self.seq.lock().unwrap_or_else(|p| p.into_inner());
            *seq += 1;
            *seq
        };
        tracing::info!(project, kind, name, state, %detail, "event");
        let _ = self.events.send(Event {
            seq,
            time: vmm::now(),
            project: project.to_string(),
            kind: kind.to_string(),
            name: name.to_string(),
            state: state.to_string(),
            detail,
        });
    }

    /// Mark `project/name` busy for one change, or say it is.
    pub fn busy(self: &Arc<Self>, project: &str, name: &str, what: &str) -> ApiResult<BusyGuard> {
        let key = key(project, name);
        let mut busy = self.busy.lock().unwrap_or_else(|p| p.into_inner());
        if !busy.insert(key.clone()) {
            return Err(ApiError::Conflict(format!(
                "VM {name:?} is busy with another request; try {what} again when it is done"
            )));
        }
        Ok(BusyGuard {
            daemon: self.clone(),
            key,
        })
    }

    pub fn record(&self, project: &str, name: &str) -> Option<VmRecord> {
        let inv = self.inventory.lock().unwrap_or_else(|p| p.into_inner());
        inv.vms
            .iter()
            .find(|r| r.project == project && r.name == name)
            .cloned()
    }

    /// Change the inventory and write it out (new file, fsync, rename).
    pub fn update_inventory(&self, change: impl FnOnce(&mut Vec<VmRecord>)) -> ApiResult<()> {
        let mut inv = self.inventory.lock().unwrap_or_else(|p| p.into_inner());
        let mut vms = inv.vms.clone();
        change(&mut vms);
        let file = InventoryFile {
            format: INVENTORY_FORMAT,
            vms,
        };
        let bytes =
            serde_json::to_vec_pretty(&file).map_err(|e| ApiError::Internal(e.to_string()))?;
        write_private(&self.inventory_path, &bytes)?;
        *inv = file;
        Ok(())
    }

    pub fn set_desired(&self, project: &str, name: &str, running: bool) -> ApiResult<()> {
        self.update_inventory(|vms| {
            for r in vms.iter_mut() {
                if r.project == project && r.name == name {
                    r.desired_running = running;
                }
            }
        })
    }

    /// Start `name`'s process and wait until it answers on its control socket.
    pub async fn start_vm(self: &Arc<Self>, project: &str, name: &str) -> ApiResult<u32> {
        let home = self.home(project);
        let dir = home.bundle_dir(name);
        {
            let home = home.clone();
            let n = name.to_string();
            let state = blocking(move || Ok(home.open(&n)?.state()?)).await?;
            if let RunState::Running { pid, .. } = state {
                return Err(ApiError::Conflict(format!(
                    "VM {name:?} is already running (pid {pid})"
                )));
            }
        }
        let log_path = dir.join(vmm::VM_LOG);
        let open_log = || {
            use std::os::unix::fs::OpenOptionsExt;
            std::fs::OpenOptions::new()
                .append(true)
                .create(true)
                .mode(0o600)
                .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
                .open(&log_path)
                .map_err(|e| ApiError::Internal(format!("{}: {e}", log_path.display())))
        };
        let mut command = tokio::process::Command::new(&self.config.vm_binary);
        command
            .args(["vm", "start", name, "--foreground"])
            .env("LOCKSTEP_HOME", self.project_dir(project))
            .env_remove(crate::client::API_ENV)
            .stdin(std::process::Stdio::null())
            .stdout(open_log()?)
            .stderr(open_log()?)
            .process_group(0)
            .kill_on_drop(false);
        let mut child = command.spawn().map_err(|e| {
            ApiError::Internal(format!(
                "cannot run {}: {e}",
                self.config.vm_binary.display()
            ))
        })?;
        let pid = child.id().unwrap_or(0);
        let k = key(project, name);
        {
            let mut watches = self.watches.lock().unwrap_or_else(|p| p.into_inner());
            let w = watches.entry(k.clone()).or_default();
            w.child = Some(pid);
            w.exit = None;
        }
        self.event(project, "vm", name, "starting", format!("pid {pid}"));
        // Reap the child whenever it ends, and note how.
        let me = self.clone();
        let reaper_key = k.clone();
        let exited = Arc::new(tokio::sync::Notify::new());
        let exited2 = exited.clone();
        tokio::spawn(async move {
            let status = child.wait().await;
            let success = status.as_ref().map(|s| s.success()).unwrap_or(false);
            let mut watches = me.watches.lock().unwrap_or_else(|p| p.into_inner());
            let w = watches.entry(reaper_key).or_default();
            if w.child == Some(pid) {
                w.child = None;
                w.exit = Some(Exit { success });
            }
            drop(watches);
            exited2.notify_waiters();
            exited2.notify_one();
        });
        let started = Instant::now();
        loop {
            let ended = {
                let watches = self.watches.lock().unwrap_or_else(|p| p.into_inner());
                watches.get(&k).is_some_and(|w| w.child != Some(pid))
            };
            if ended {
                let text = std::fs::read_to_string(&log_path).unwrap_or_default();
                let last = text
                    .lines()
                    .rev()
                    .find(|l| !l.trim().is_empty())
                    .unwrap_or("")
                    .to_string();
                return Err(ApiError::Conflict(format!(
                    "VM {name:?} did not start: {last}"
                )));
            }
            let home2 = home.clone();
            let name2 = name.to_string();
            let up =
                blocking(move || Ok(home2.started(&name2, pid, Duration::from_millis(500))?))
                    .await?;
            if up {
                self.event(project, "vm", name, "running", format!("pid {pid}"));
                self.mark_seen(project, name, "running");
                return Ok(pid);
            }
            if started.elapsed() > START_TIMEOUT {
                return Err(ApiError::Internal(format!(
                    "VM {name:?}: its process (pid {pid}) has not started it in {} s; see {}",
                    START_TIMEOUT.as_secs(),
                    log_path.display()
                )));
            }
            let _ = tokio::time::timeout(Duration::from_millis(20), exited.notified()).await;
        }
    }

    fn mark_seen(&self, project: &str, name: &str, state: &str) {
        let mut watches = self.watches.lock().unwrap_or_else(|p| p.into_inner());
        watches.entry(key(project, name)).or_default().seen = Some(state.to_string());
    }

    /// Ask `name`'s process to stop (or suspend); wait up to `timeout`,
    /// then, with `force`, kill it.
    pub async fn stop_vm(
        &self,
        project: &str,
        name: &str,
        suspend: bool,
        timeout: Duration,
        force: bool,
    ) -> ApiResult<()> {
        let home = self.home(project);
        let name2 = name.to_string();
        blocking(move || {
            let vm = home.open(&name2)?;
            let pid = match vm.state()? {
                RunState::Running { pid, .. } => pid,
                RunState::Suspended if suspend => return Ok(()),
                _ => {
                    return Err(ApiError::Conflict(format!("VM {name2:?} is not running")));
                }
            };
            let path = vm.dir().join(vmm::CONTROL_SOCKET);
            let command = if suspend {
                vmm::VmCommand::Suspend {}
            } else {
                vmm::VmCommand::Stop {}
            };
            match vmm::control::request(&path, &command, Duration::from_secs(30)) {
                Ok(vmm::VmReply::Accepted) => {}
                Ok(vmm::VmReply::Error { message }) => {
                    return Err(ApiError::Conflict(format!("VM {name2:?}: {message}")))
                }
                _ => {
                    vm.signal(if suspend {
                        rustix::process::Signal::USR2
                    } else {
                        rustix::process::Signal::TERM
                    })?;
                }
            }
            drop(vm);
            let started = Instant::now();
            loop {
                match home.run_state(&name2)? {
                    RunState::Running { .. } if started.elapsed() < timeout => {
                        std::thread::sleep(Duration::from_millis(10))
                    }
                    RunState::Running { .. } if force => {
                        home.open(&name2)?.signal(rustix::process::Signal::KILL)?;
                        home.open(&name2)?.wait_stopped(Duration::from_secs(10))?;
                        return Ok(());
                    }
                    RunState::Running { .. } => {
                        return Err(ApiError::Conflict(format!(
                            "VM {name2:?} (pid {pid}) has not stopped in {} s; stop it with force",
                            timeout.as_secs()
                        )))
                    }
                    RunState::Off if suspend => {
                        return Err(ApiError::Internal(format!(
                        "VM {name2:?} (pid {pid}) stopped without saving its state; see its vm.log"
                    )))
                    }
                    _ => return Ok(()),
                }
            }
        })
        .await?;
        let state = if suspend { "suspended" } else { "stopped" };
        self.mark_seen(project, name, state);
        self.event(project, "vm", name, state, String::new());
        Ok(())
    }

    /// One pass of the supervisor: report state changes, restart VMs
    /// that should run and stopped unasked.
    async fn supervise_once(self: &Arc<Self>) {
        let records = {
            let inv = self.inventory.lock().unwrap_or_else(|p| p.into_inner());
            inv.vms.clone()
        };
        for r in records {
            if r.host != self.config.host_name {
                continue;
            }
            let k = key(&r.project, &r.name);
            if self
                .busy
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .contains(&k)
            {
                continue;
            }
            let home = self.home(&r.project);
            let Ok(state) = home.run_state(&r.name) else {
                continue;
            };
            let now = match state {
                RunState::Running { .. } => "running",
                RunState::Suspended => "suspended",
                RunState::Off => "stopped",
            };
            let (changed, exit) = {
                let mut watches = self.watches.lock().unwrap_or_else(|p| p.into_inner());
                let w = watches.entry(k.clone()).or_default();
                let changed = w.seen.as_deref() != Some(now);
                w.seen = Some(now.to_string());
                (changed, w.exit)
            };
            if !(r.desired_running && state == RunState::Off) {
                if changed {
                    self.event(&r.project, "vm", &r.name, now, String::new());
                }
                continue;
            }
            // It should run and does not: it stopped unasked.
            let failed = exit.map(|e| !e.success);
            let restart = match r.restart {
                RestartPolicy::No => false,
                RestartPolicy::Always => true,
                RestartPolicy::OnFailure => failed == Some(true),
            };
            let how = match failed {
                Some(true) => "its process failed",
                Some(false) => "the guest powered off",
                None => "its process ended",
            };
            if !restart {
                if changed {
                    self.event(&r.project, "vm", &r.name, "exited", how.to_string());
                }
                let _ = self.set_desired(&r.project, &r.name, false);
                continue;
            }
            let give_up = {
                let mut watches = self.watches.lock().unwrap_or_else(|p| p.into_inner());
                let w = watches.entry(k.clone()).or_default();
                w.restarts.retain(|t| t.elapsed() < RESTART_WINDOW);
                w.restarts.push(Instant::now());
                w.restarts.len() > MAX_RESTARTS
            };
            if give_up {
                self.event(
                    &r.project,
                    "vm",
                    &r.name,
                    "gave-up",
                    format!(
                        "{how}; {MAX_RESTARTS} restarts in {} s",
                        RESTART_WINDOW.as_secs()
                    ),
                );
                let _ = self.set_desired(&r.project, &r.name, false);
                continue;
            }
            self.event(&r.project, "vm", &r.name, "restarting", how.to_string());
            let Ok(_guard) = self.busy(&r.project, &r.name, "this") else {
                continue;
            };
            if let Err(e) = self.start_vm(&r.project, &r.name).await {
                self.event(
                    &r.project,
                    "vm",
                    &r.name,
                    "exited",
                    format!("restart failed: {e}"),
                );
            }
        }
    }

    /// Watch the VMs until the daemon ends.
    pub async fn supervise(self: Arc<Self>) {
        let mut tick = tokio::time::interval(Duration::from_millis(500));
        loop {
            tick.tick().await;
            self.supervise_once().await;
        }
    }

    /// Running VMs per project (for host load).
    pub fn running_counts(&self) -> BTreeMap<String, usize> {
        let inv = self.inventory.lock().unwrap_or_else(|p| p.into_inner());
        let mut out = BTreeMap::new();
        for r in &inv.vms {
            if matches!(
                self.home(&r.project).run_state(&r.name),
                Ok(RunState::Running { .. })
            ) {
                *out.entry(r.project.clone()).or_default() += 1;
            }
        }
        out
    }

    pub fn records(&self) -> Vec<VmRecord> {
        let inv = self.inventory.lock().unwrap_or_else(|p| p.into_inner());
        inv.vms.clone()
    }
}

/// Run blocking bundle work off the async threads.
pub async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> ApiResult<T> + Send + 'static,
) -> ApiResult<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ApiError::Internal(format!("a worker thread failed: {e}")))?
}

/// The `lockstep` binary next to this one, else on `PATH`.
pub fn default_vm_binary() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|d| d.join("lockstep")))
        .filter(|p| p.is_file())
        .unwrap_or_else(|| PathBuf::from("lockstep"))
}

/// This host's name (`uname -n`).
pub fn default_host_name() -> String {
    rustix::system::uname()
        .nodename()
        .to_string_lossy()
        .into_owned()
}
