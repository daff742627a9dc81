//! The REST API's handlers and its OpenAPI document.
//!
//! Every route but `POST /v1/auth/tokens` and `GET /v1/openapi.json`
//! needs `Authorization: Bearer TOKEN`; every resource is the caller's
//! project's. Request bodies are JSON with unknown fields refused, at most
//! [`MAX_BODY`] bytes (image uploads excepted); errors are
//! [`ErrorBody`] with the status that fits.

use crate::daemon::{blocking, Daemon, Event, RestartPolicy, VmRecord};
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::identity::{Caller, Role, UserView, MAX_PASSWORD_LEN};
use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::response::sse::{KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::Duration;
use utoipa::{IntoParams, OpenApi, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use vmm::RunState;

/// A JSON request body may not be larger than this.
pub const MAX_BODY: usize = 1 << 20;

type D = State<Arc<Daemon>>;

/// A JSON body; malformed, mistyped or too large is an [`ApiError`].
#[derive(FromRequest)]
#[from_request(via(axum::Json), rejection(ApiError))]
pub struct Body<T>(pub T);

/// A path parameter.
#[derive(FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(ApiError))]
pub struct P<T>(pub T);

/// Query parameters.
#[derive(FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(ApiError))]
pub struct Q<T>(pub T);

impl From<JsonRejection> for ApiError {
    fn from(r: JsonRejection) -> ApiError {
        if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
            return ApiError::TooLarge {
                limit: MAX_BODY as u64,
            };
        }
        ApiError::BadRequest(format!("request body: {}", r.body_text()))
    }
}

impl From<PathRejection> for ApiError {
    fn from(r: PathRejection) -> ApiError {
        ApiError::BadRequest(format!("path: {}", r.body_text()))
    }
}

impl From<QueryRejection> for ApiError {
    fn from(r: QueryRejection) -> ApiError {
        ApiError::BadRequest(format!("query: {}", r.body_text()))
    }
}

/// The caller, from the `Authorization: Bearer` header.
impl FromRequestParts<Arc<Daemon>> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, d: &Arc<Daemon>) -> ApiResult<Caller> {
        let header = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .ok_or_else(|| {
                ApiError::Unauthorized(
                    "no token: send `Authorization: Bearer TOKEN` (POST /v1/auth/tokens gives one; `lockstep login`)"
                        .into(),
                )
            })?;
        let token = bearer(header).ok_or_else(|| {
            ApiError::Unauthorized("the Authorization header is not `Bearer TOKEN`".into())
        })?;
        d.identity.check(token)
    }
}

/// The token in an `Authorization: Bearer TOKEN` header.
pub fn bearer(header: &axum::http::HeaderValue) -> Option<&str> {
    header
        .to_str()
        .ok()
        .and_then(|h| h.strip_prefix("Bearer "))
        .map(str::trim)
}

fn bad_name(e: vmm::VmmError) -> ApiError {
    ApiError::BadRequest(e.to_string())
}

/// `name` in `caller`'s project, or 404.
fn open_vm(d: &Daemon, caller: &Caller, name: &str) -> ApiResult<vmm::Vm> {
    vmm::check_name("VM name", name).map_err(bad_name)?;
    match d.home(&caller.project).open(name) {
        Err(vmm::VmmError::NoSuchVm { .. }) => {
            Err(ApiError::not_found("VM", name, &caller.project))
        }
        other => Ok(other?),
    }
}

// ---------------------------------------------------------------- auth

/// `POST /v1/auth/tokens`'s body.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TokenRequest {
    pub name: String,
    pub password: String,
    /// Seconds until it expires (at most, and by default, the daemon's `--token-ttl`).
    #[serde(default)]
    pub expires_in: Option<u64>,
}

#[derive(Serialize, Deserialize, ToSchema)]
pub struct TokenReply {
    pub token: String,
    /// Unix seconds.
    pub expires_at: u64,
    pub user: String,
    pub project: String,
    pub role: Role,
}

/// Get a bearer token for a user name and password.
#[utoipa::path(post, path = "/v1/auth/tokens", tag = "identity", request_body = TokenRequest,
    responses((status = 201, body = TokenReply), (status = 401, body = ErrorBody)))]
async fn create_token(
    State(d): D,
    Body(req): Body<TokenRequest>,
) -> ApiResult<(StatusCode, axum::Json<TokenReply>)> {
    let ttl = req
        .expires_in
        .unwrap_or(d.config.token_ttl)
        .clamp(1, d.config.token_ttl);
    let d2 = d.clone();
    let name = req.name.clone();
    let (token, expires_at) =
        blocking(move || d2.identity.issue(&req.name, &req.password, ttl)).await?;
    let caller = d.identity.check(&token)?;
    tracing::info!(user = %name, "token issued");
    Ok((
        StatusCode::CREATED,
        axum::Json(TokenReply {
            token,
            expires_at,
            user: caller.user,
            project: caller.project,
            role: caller.role,
        }),
    ))
}

#[derive(Serialize, Deserialize, ToSchema)]
pub struct WhoAmI {
    pub user: String,
    pub project: String,
    pub role: Role,
}

/// Who the token belongs to.
#[utoipa::path(get, path = "/v1/auth/whoami", tag = "identity",
    responses((status = 200, body = WhoAmI), (status = 401, body = ErrorBody)))]
async fn whoami(caller: Caller) -> axum::Json<WhoAmI> {
    axum::Json(WhoAmI {
        user: caller.user,
        project: caller.project,
        role: caller.role,
    })
}

#[derive(Serialize, Deserialize, ToSchema)]
pub struct ProjectList {
    pub projects: Vec<String>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProjectCreate {
    pub name: String,
}

/// The projects (admin only).
#[utoipa::path(get, path = "/v1/projects", tag = "identity",
    responses((status = 200, body = ProjectList), (status = 403, body = ErrorBody)))]
async fn list_projects(State(d): D, caller: Caller) -> ApiResult<axum::Json<ProjectList>> {
    caller.must_be_admin()?;
    Ok(axum::Json(ProjectList {
        projects: d.identity.projects(),
    }))
}

/// Make a project (admin only).
#[utoipa::path(post, path = "/v1/projects", tag = "identity", request_body = ProjectCreate,
    responses((status = 201, body = ProjectList), (status = 403, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn create_project(
    State(d): D,
    caller: Caller,
    Body(req): Body<ProjectCreate>,
) -> ApiResult<(StatusCode, axum::Json<ProjectList>)> {
    caller.must_be_admin()?;
    d.change_identity(crate::identity::Change::prepare_project(&req.name)?)
        .await?;
    crate::identity::private_dir(&d.project_dir(&req.name))?;
    Ok((
        StatusCode::CREATED,
        axum::Json(ProjectList {
            projects: d.identity.projects(),
        }),
    ))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UserCreate {
    pub name: String,
    pub password: String,
    pub project: String,
    pub role: Role,
}

#[derive(Serialize, Deserialize, ToSchema)]
pub struct UserList {
    pub users: Vec<UserView>,
}

/// The users (admin only).
#[utoipa::path(get, path = "/v1/users", tag = "identity",
    responses((status = 200, body = UserList), (status = 403, body = ErrorBody)))]
async fn list_users(State(d): D, caller: Caller) -> ApiResult<axum::Json<UserList>> {
    caller.must_be_admin()?;
    Ok(axum::Json(UserList {
        users: d.identity.users(),
    }))
}

/// Make a user (admin only).
#[utoipa::path(post, path = "/v1/users", tag = "identity", request_body = UserCreate,
    responses((status = 201, body = UserView), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn create_user(
    State(d): D,
    caller: Caller,
    Body(req): Body<UserCreate>,
) -> ApiResult<(StatusCode, axum::Json<UserView>)> {
    caller.must_be_admin()?;
    if req.password.len() > MAX_PASSWORD_LEN {
        return Err(ApiError::BadRequest(format!(
            "passwords are at most {MAX_PASSWORD_LEN} bytes"
        )));
    }
    let change = blocking(move || {
        crate::identity::Change::prepare_user(&req.name, &req.password, &req.project, req.role)
    })
    .await?;
    let user = d
        .change_identity(change)
        .await?
        .ok_or_else(|| ApiError::Internal("adding a user showed no user".into()))?;
    Ok((StatusCode::CREATED, axum::Json(user)))
}

/// Delete a user (admin only); their tokens stop working.
#[utoipa::path(delete, path = "/v1/users/{name}", tag = "identity", params(("name" = String, Path)),
    responses((status = 204), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn delete_user(State(d): D, caller: Caller, P(name): P<String>) -> ApiResult<StatusCode> {
    caller.must_be_admin()?;
    d.change_identity(crate::identity::Change::DeleteUser {
        name,
        project: caller.project.clone(),
    })
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

// ---------------------------------------------------------------- VMs

/// A machine size.
#[derive(Clone, Serialize, Deserialize, ToSchema)]
pub struct Flavor {
    pub name: String,
    pub cpus: u8,
    /// Bytes.
    pub memory: u64,
    /// The root disk's size in bytes when the VM gets an empty one.
    pub disk: u64,
}

#[derive(Serialize, Deserialize, ToSchema)]
pub struct FlavorList {
    pub flavors: Vec<Flavor>,
}

pub fn flavors() -> Vec<Flavor> {
    let f = |name: &str, cpus, mib: u64, gib: u64| Flavor {
        name: name.into(),
        cpus,
        memory: mib << 20,
        disk: gib << 30,
    };
    vec![
        f("tiny", 1, 256, 1),
        f("small", 1, 512, 8),
        f("medium", 2, 1024, 16),
        f("large", 4, 2048, 32),
    ]
}

/// The machine sizes `POST /v1/vms` takes as `flavor`.
#[utoipa::path(get, path = "/v1/flavors", tag = "vms",
    responses((status = 200, body = FlavorList)))]
async fn list_flavors(_caller: Caller) -> axum::Json<FlavorList> {
    axum::Json(FlavorList { flavors: flavors() })
}

/// `POST /v1/vms`'s body.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VmCreate {
    pub name: String,
    /// `tiny`, `small`, `medium`, `large` (`GET /v1/flavors`); `cpus`/`memory_mib` override it.
    #[serde(default)]
    pub flavor: Option<String>,
    #[serde(default)]
    pub cpus: Option<u8>,
    #[serde(default)]
    pub memory_mib: Option<u64>,
    /// A disk image (`GET /v1/images`) copied in as the first disk; the VM boots from it.
    #[serde(default)]
    pub image: Option<String>,
    /// An empty disk of this many GiB (the first disk when there is no image).
    #[serde(default)]
    pub disk_gib: Option<u64>,
    /// Networks of the project (`GET /v1/networks`), one NIC each.
    #[serde(default)]
    pub networks: Vec<String>,
    /// Protected by a backup on another host.
    #[serde(default)]
    pub ft: bool,
    /// Start it once made [default: true].
    #[serde(default = "yes")]
    pub start: bool,
    #[serde(default)]
    pub restart: RestartPolicy,
    /// The kernel command line.
    #[serde(default)]
    pub append: Option<String>,
}

fn yes() -> bool {
    true
}

#[derive(Serialize, Deserialize, ToSchema)]
pub struct NicDoc {
    /// `network=NAME`.
    pub net: String,
    pub mac: String,
}

/// A VM as the API shows it.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct VmDoc {
    pub name: String,
    pub uuid: String,
    pub project: String,
    pub host: String,
    /// `running`, `suspended`, `stopped`.
    pub state: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
    pub cpus: u8,
    /// Bytes.
    pub memory: u64,
    /// Disk sizes in bytes.
    pub disks: Vec<u64>,
    pub nics: Vec<NicDoc>,
    pub restart: RestartPolicy,
    pub snapshots: usize,
    /// Unix seconds.
    pub created: u64,
    /// What a running VM's process says: its lifecycle state and instruction count.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub live: Option<LiveDoc>,
}

#[derive(Serialize, Deserialize, ToSchema)]
pub struct LiveDoc {
    pub state: String,
    pub icount: u64,
}

#[derive(Serialize, Deserialize, ToSchema)]
pub struct VmList {
    pub vms: Vec<VmDoc>,
    /// In a cluster: hosts that did not answer; their VMs are missing here.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unreachable: Vec<String>,
}

fn state_name(s: RunState) -> (&'static str, Option<u32>) {
    match s {
        RunState::Running { pid, .. } => ("running", Some(pid)),
        RunState::Suspended => ("suspended", None),
        RunState::Off => ("stopped", None),
    }
}

fn vm_doc(d: &Daemon, project: &str, vm: &vmm::Vm, live: bool) -> ApiResult<VmDoc> {
    let c = vm.config();
    let (state, pid) = state_name(vm.state()?);
    let record = d.record(project, &c.name);
    let live = if live && pid.is_some() {
        match vmm::control::request(
            &vm.dir().join(vmm::CONTROL_SOCKET),
            &vmm::VmCommand::Status {},
            Duration::from_secs(2),
        ) {
            Ok(vmm::VmReply::Status { state, icount, .. }) => Some(LiveDoc { state, icount }),
            _ => None,
        }
    } else {
        None
    };
    Ok(VmDoc {
        name: c.name.clone(),
        uuid: c.uuid.to_string(),
        project: project.to_string(),
        host: record
            .as_ref()
            .map(|r| r.host.clone())
            .unwrap_or_else(|| d.config.host_name.clone()),
        state: state.to_string(),
        pid,
        cpus: c.cpus,
        memory: c.memory,
        disks: c.disks.iter().map(|x| x.size).collect(),
        nics: c
            .nics
            .iter()
            .map(|n| NicDoc {
                net: n.net.clone(),
                mac: n.mac.to_string(),
            })
            .collect(),
        restart: record.map(|r| r.restart).unwrap_or_default(),
        snapshots: c.snapshots.len(),
        created: c.created,
        live,
    })
}

/// The project's VMs.
#[utoipa::path(get, path = "/v1/vms", tag = "vms",
    responses((status = 200, body = VmList), (status = 401, body = ErrorBody)))]
async fn list_vms(State(d): D, caller: Caller) -> ApiResult<axum::Json<VmList>> {
    let vms = blocking(move || {
        let home = d.home(&caller.project);
        let (summaries, _) = home.list()?;
        let mut vms = Vec::new();
        for s in summaries {
            // A VM deleted meanwhile is left out.
            if let Ok(vm) = home.open(&s.name) {
                vms.push(vm_doc(&d, &caller.project, &vm, false)?);
            }
        }
        Ok(vms)
    })
    .await?;
    Ok(axum::Json(VmList {
        vms,
        unreachable: Vec::new(),
    }))
}

/// One VM (a running one's own account of itself included).
#[utoipa::path(get, path = "/v1/vms/{name}", tag = "vms", params(("name" = String, Path)),
    responses((status = 200, body = VmDoc), (status = 404, body = ErrorBody)))]
async fn show_vm(State(d): D, caller: Caller, P(name): P<String>) -> ApiResult<axum::Json<VmDoc>> {
    let doc = blocking(move || {
        let vm = open_vm(&d, &caller, &name)?;
        vm_doc(&d, &caller.project, &vm, true)
    })
    .await?;
    Ok(axum::Json(doc))
}

/// Memory the host can still give VMs: its total less what running VMs
/// were given, less a reserve for itself.
pub fn free_memory(d: &Daemon) -> (u64, u64) {
    let total = crate::host::mem_total();
    let mut given = 0u64;
    for r in d.records() {
        if let Ok(vm) = d.home(&r.project).open(&r.name) {
            if matches!(vm.state(), Ok(RunState::Running { .. })) {
                given = given.saturating_add(vm.config().memory);
            }
        }
    }
    (
        total,
        total
            .saturating_sub(given)
            .saturating_sub(crate::host::RESERVE),
    )
}

fn check_room(d: &Daemon, memory: u64, cpus: u8) -> ApiResult<()> {
    let (total, free) = free_memory(d);
    if memory > free {
        return Err(ApiError::Conflict(format!(
            "no host has room: the VM needs {} MiB of memory, host {} has {} MiB free of {} MiB",
            memory >> 20,
            d.config.host_name,
            free >> 20,
            total >> 20
        )));
    }
    let harts = crate::host::cpus();
    if usize::from(cpus) > harts.max(1) * 4 {
        return Err(ApiError::Conflict(format!(
            "no host has room: the VM wants {cpus} CPUs, host {} has {harts}",
            d.config.host_name
        )));
    }
    Ok(())
}

fn flavor_of(req: &VmCreate) -> ApiResult<Option<Flavor>> {
    Ok(match &req.flavor {
        Some(f) => Some(
            flavors()
                .into_iter()
                .find(|x| &x.name == f)
                .ok_or_else(|| {
                    ApiError::BadRequest(format!(
                        "no flavor named {:?}; there are tiny, small, medium and large",
                        f.chars().take(80).collect::<String>()
                    ))
                })?,
        ),
        None => None,
    })
}

/// The flavor `req` names, and the CPUs and memory (bytes) it asks for:
/// its flavor's, or its own.
pub fn sizing(req: &VmCreate) -> ApiResult<(Option<Flavor>, u8, u64)> {
    let flavor = flavor_of(req)?;
    let cpus = req.cpus.or(flavor.as_ref().map(|f| f.cpus)).unwrap_or(1);
    if !(1..=8).contains(&cpus) {
        return Err(ApiError::BadRequest(format!(
            "cpus: {cpus} is out of range (1 to 8)"
        )));
    }
    let memory = match req.memory_mib {
        Some(m) if !(64..=(vmm::MAX_MEMORY >> 20)).contains(&m) => {
            return Err(ApiError::BadRequest(format!(
                "memory_mib: {m} is out of range (64 to {})",
                (vmm::MAX_MEMORY >> 20)
            )))
        }
        Some(m) => m << 20,
        None => flavor.as_ref().map(|f| f.memory).unwrap_or(512 << 20),
    };
    Ok((flavor, cpus, memory))
}

/// Make a VM (and start it unless `start` is false).
#[utoipa::path(post, path = "/v1/vms", tag = "vms", request_body = VmCreate,
    responses((status = 201, body = VmDoc), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn create_vm(
    State(d): D,
    caller: Caller,
    Body(req): Body<VmCreate>,
) -> ApiResult<(StatusCode, axum::Json<VmDoc>)> {
    caller.may_change()?;
    vmm::check_name("VM name", &req.name).map_err(bad_name)?;
    let (flavor, cpus, memory) = sizing(&req)?;
    if req.ft {
        return Err(ApiError::Conflict(
            "ft: placing fault-tolerant VMs through the API is not built yet; make one with `lockstep vm create … --ft-backup ADDR --ft-arbiter PATH` on its host".into(),
        ));
    }
    if req.networks.len() > 4 {
        return Err(ApiError::BadRequest("at most 4 networks per VM".into()));
    }
    if let Some(a) = &req.append {
        if a.len() > 4096 {
            return Err(ApiError::BadRequest("append: at most 4096 bytes".into()));
        }
    }
    let disk_bytes = match req.disk_gib {
        Some(g) if g == 0 || g > 1024 => {
            return Err(ApiError::BadRequest(format!(
                "disk_gib: {g} is out of range (1 to 1024)"
            )))
        }
        Some(g) => Some(g << 30),
        None => None,
    };
    if req.start {
        check_room(&d, memory, cpus)?;
    }
    let _busy = d.busy(&caller.project, &req.name, "create")?;
    if d.home(&caller.project).bundle_dir(&req.name).exists() {
        return Err(ApiError::Conflict(format!(
            "a VM named {:?} exists already",
            req.name
        )));
    }
    d.claim(&caller.project, &req.name).await?;
    if let Some(image) = &req.image {
        if let Err(e) = crate::images::ensure(&d, &caller, image).await {
            d.release(&caller.project, &req.name).await;
            return Err(e);
        }
    }
    let d2 = d.clone();
    let project = caller.project.clone();
    let name = req.name.clone();
    let restart = req.restart;
    let made = blocking(move || {
        let d = d2;
        let home = d.home(&project);
        let mut nics = Vec::new();
        let networks = d.networks(&project);
        for n in &req.networks {
            net::network::check_name(n).map_err(ApiError::from)?;
            networks.get(n).map_err(ApiError::from)?;
            nics.push((format!("network={n}"), None));
        }
        let mut disks = Vec::new();
        let mut append = req.append.clone();
        if let Some(image) = &req.image {
            let (path, format) = crate::images::resolve(&d, image)?;
            disks.push(vmm::DiskSource::Import {
                path,
                format,
                backing: disk::BackingPolicy::default(),
            });
            append.get_or_insert_with(|| {
                format!(
                    "{} quiet root=/dev/vda rw systemd.hostname={}",
                    vmm::DEFAULT_APPEND,
                    req.name
                )
            });
        }
        if let Some(bytes) =
            disk_bytes.or(flavor.as_ref().filter(|_| disks.is_empty()).map(|f| f.disk))
        {
            disks.push(vmm::DiskSource::Empty(bytes));
        }
        if disks.is_empty() {
            disks.push(vmm::DiskSource::Empty(8 << 30));
        }
        let boot = guest_image::pull(&guest_image::PullOptions::default()).map_err(|e| {
            ApiError::Unavailable(format!(
                "the boot image (kernel, initrd, firmware) is not available on this host: {e}"
            ))
        })?;
        let spec = vmm::CreateSpec {
            name: req.name.clone(),
            cpus,
            memory,
            append: append.unwrap_or_else(|| vmm::DEFAULT_APPEND.to_string()),
            instructions_per_tick: machine::DEFAULT_INSTRUCTIONS_PER_TICK,
            boot: vmm::Boot {
                kernel: boot.kernel,
                initrd: boot.initrd,
                firmware: boot.firmware,
                pulled: true,
            },
            disks,
            nics,
            ft: None,
        };
        let config = home.create(&spec, &mut |_, _, _| {})?;
        d.update_inventory(|vms| {
            vms.retain(|r| !(r.project == project && r.name == config.name));
            vms.push(VmRecord {
                project: project.clone(),
                name: config.name.clone(),
                uuid: config.uuid,
                host: d.config.host_name.clone(),
                restart,
                desired_running: false,
            });
        })?;
        d.event(&project, "vm", &config.name, "created", String::new());
        Ok(())
    })
    .await;
    if let Err(e) = made {
        d.release(&caller.project, &name).await;
        return Err(e);
    }
    if req.start {
        d.start_vm(&caller.project, &name).await?;
        d.set_desired(&caller.project, &name, true)?;
    }
    let d2 = d.clone();
    let doc = blocking(move || {
        let vm = open_vm(&d2, &caller, &name)?;
        vm_doc(&d2, &caller.project, &vm, false)
    })
    .await?;
    Ok((StatusCode::CREATED, axum::Json(doc)))
}

#[derive(Deserialize, IntoParams, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StopParams {
    /// Kill it if it has not stopped in `timeout` seconds.
    #[serde(default)]
    pub force: bool,
    /// Seconds to wait [default: 30].
    #[serde(default)]
    pub timeout: Option<u64>,
}

async fn reshow(d: Arc<Daemon>, caller: Caller, name: String) -> ApiResult<axum::Json<VmDoc>> {
    let doc = blocking(move || {
        let vm = open_vm(&d, &caller, &name)?;
        vm_doc(&d, &caller.project, &vm, false)
    })
    .await?;
    Ok(axum::Json(doc))
}

async fn exists(d: &Arc<Daemon>, caller: &Caller, name: &str) -> ApiResult<()> {
    let (d, caller, name) = (d.clone(), caller.clone(), name.to_string());
    blocking(move || open_vm(&d, &caller, &name).map(drop)).await
}

/// Start a VM (a suspended one resumes).
#[utoipa::path(post, path = "/v1/vms/{name}/start", tag = "vms", params(("name" = String, Path)),
    responses((status = 200, body = VmDoc), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn start_vm(State(d): D, caller: Caller, P(name): P<String>) -> ApiResult<axum::Json<VmDoc>> {
    caller.may_change()?;
    let config = {
        let (d, c, n) = (d.clone(), caller.clone(), name.clone());
        blocking(move || Ok(open_vm(&d, &c, &n)?.config().clone())).await?
    };
    check_room(&d, config.memory, config.cpus)?;
    let _busy = d.busy(&caller.project, &name, "start")?;
    ensure_record(&d, &caller.project, &name)?;
    d.start_vm(&caller.project, &name).await?;
    d.set_desired(&caller.project, &name, true)?;
    reshow(d, caller, name).await
}

/// Resume a suspended VM (the same as start).
#[utoipa::path(post, path = "/v1/vms/{name}/resume", tag = "vms", params(("name" = String, Path)),
    responses((status = 200, body = VmDoc), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn resume_vm(state: D, caller: Caller, name: P<String>) -> ApiResult<axum::Json<VmDoc>> {
    start_vm(state, caller, name).await
}

/// A VM made outside the API (by `lockstep vm create` in the project's home) gets a record.
fn ensure_record(d: &Daemon, project: &str, name: &str) -> ApiResult<()> {
    if d.record(project, name).is_some() {
        return Ok(());
    }
    let vm = d.home(project).open(name)?;
    let uuid = vm.config().uuid;
    d.update_inventory(|vms| {
        vms.push(VmRecord {
            project: project.to_string(),
            name: name.to_string(),
            uuid,
            host: d.config.host_name.clone(),
            restart: RestartPolicy::default(),
            desired_running: false,
        })
    })
}

/// Stop a VM (its disks flushed); with `force`, kill it after `timeout`.
#[utoipa::path(post, path = "/v1/vms/{name}/stop", tag = "vms", params(("name" = String, Path), StopParams),
    responses((status = 200, body = VmDoc), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn stop_vm(
    State(d): D,
    caller: Caller,
    P(name): P<String>,
    Q(q): Q<StopParams>,
) -> ApiResult<axum::Json<VmDoc>> {
    caller.may_change()?;
    exists(&d, &caller, &name).await?;
    let _busy = d.busy(&caller.project, &name, "stop")?;
    ensure_record(&d, &caller.project, &name)?;
    d.set_desired(&caller.project, &name, false)?;
    let timeout = Duration::from_secs(q.timeout.unwrap_or(30).min(3600));
    d.stop_vm(&caller.project, &name, false, timeout, q.force)
        .await?;
    reshow(d, caller, name).await
}

/// Save a running VM's state into its bundle and stop it.
#[utoipa::path(post, path = "/v1/vms/{name}/suspend", tag = "vms", params(("name" = String, Path)),
    responses((status = 200, body = VmDoc), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn suspend_vm(
    State(d): D,
    caller: Caller,
    P(name): P<String>,
) -> ApiResult<axum::Json<VmDoc>> {
    caller.may_change()?;
    exists(&d, &caller, &name).await?;
    let _busy = d.busy(&caller.project, &name, "suspend")?;
    ensure_record(&d, &caller.project, &name)?;
    d.set_desired(&caller.project, &name, false)?;
    d.stop_vm(
        &caller.project,
        &name,
        true,
        Duration::from_secs(600),
        false,
    )
    .await?;
    reshow(d, caller, name).await
}

#[derive(Deserialize, IntoParams, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DeleteParams {
    /// Stop (kill) a running VM first.
    #[serde(default)]
    pub force: bool,
}

/// Delete a VM and its disks; a running one only with `force`.
#[utoipa::path(delete, path = "/v1/vms/{name}", tag = "vms", params(("name" = String, Path), DeleteParams),
    responses((status = 204), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn delete_vm(
    State(d): D,
    caller: Caller,
    P(name): P<String>,
    Q(q): Q<DeleteParams>,
) -> ApiResult<StatusCode> {
    caller.may_change()?;
    exists(&d, &caller, &name).await?;
    let _busy = d.busy(&caller.project, &name, "delete")?;
    let (d2, project, n) = (d.clone(), caller.project.clone(), name.clone());
    let running = blocking(move || Ok(d2.home(&project).run_state(&n)?)).await?;
    if let RunState::Running { pid, .. } = running {
        if !q.force {
            return Err(ApiError::Conflict(format!(
                "VM {name:?} is running (pid {pid}); stop it first or delete with force=true"
            )));
        }
        d.set_desired(&caller.project, &name, false)?;
        d.stop_vm(&caller.project, &name, false, Duration::from_secs(10), true)
            .await?;
    }
    let (d2, project, n) = (d.clone(), caller.project.clone(), name.clone());
    blocking(move || {
        d2.home(&project).delete(&n, false)?;
        d2.update_inventory(|vms| vms.retain(|r| !(r.project == project && r.name == n)))?;
        Ok(())
    })
    .await?;
    d.release(&caller.project, &name).await;
    d.event(&caller.project, "vm", &name, "deleted", String::new());
    Ok(StatusCode::NO_CONTENT)
}

// ---------------------------------------------------------------- snapshots

#[derive(Serialize, Deserialize, ToSchema)]
pub struct SnapshotDoc {
    pub id: u64,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<String>,
    pub description: String,
    /// Unix seconds.
    pub created: u64,
    /// `running` (memory and devices saved) or `off` (disks only).
    pub power: String,
    /// The VM runs on from this snapshot.
    pub current: bool,
}

#[derive(Serialize, Deserialize, ToSchema)]
pub struct SnapshotList {
    pub vm: String,
    pub snapshots: Vec<SnapshotDoc>,
}

/// `vm`'s snapshot tree, as the API shows it.
fn snapshot_list(name: String, vm: &vmm::Vm) -> SnapshotList {
    let c = vm.config();
    let snapshots = c
        .snapshots
        .iter()
        .map(|s| {
            let v = vmm::api::SnapshotView::new(c, s);
            SnapshotDoc {
                id: s.id,
                name: s.name.clone(),
                parent: v.parent_name,
                description: s.description.clone(),
                created: s.created,
                power: match s.power {
                    vmm::PowerState::Off => "off",
                    vmm::PowerState::Running => "running",
                    vmm::PowerState::Suspended => "suspended",
                }
                .to_string(),
                current: v.current,
            }
        })
        .collect();
    SnapshotList {
        vm: name,
        snapshots,
    }
}

/// The VM's snapshot tree (each snapshot names its parent).
#[utoipa::path(get, path = "/v1/vms/{name}/snapshots", tag = "snapshots", params(("name" = String, Path)),
    responses((status = 200, body = SnapshotList), (status = 404, body = ErrorBody)))]
async fn list_snapshots(
    State(d): D,
    caller: Caller,
    P(name): P<String>,
) -> ApiResult<axum::Json<SnapshotList>> {
    let list = blocking(move || {
        let vm = open_vm(&d, &caller, &name)?;
        Ok(snapshot_list(name, &vm))
    })
    .await?;
    Ok(axum::Json(list))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SnapshotCreate {
    pub name: String,
    #[serde(default)]
    pub description: String,
}

/// Take a snapshot (of a running VM: memory, devices and disks at one instruction).
#[utoipa::path(post, path = "/v1/vms/{name}/snapshots", tag = "snapshots", params(("name" = String, Path)), request_body = SnapshotCreate,
    responses((status = 201, body = SnapshotList), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn create_snapshot(
    State(d): D,
    caller: Caller,
    P(name): P<String>,
    Body(req): Body<SnapshotCreate>,
) -> ApiResult<(StatusCode, axum::Json<SnapshotList>)> {
    caller.may_change()?;
    vmm::check_name("snapshot name", &req.name).map_err(bad_name)?;
    if req.description.len() > vmm::MAX_DESCRIPTION {
        return Err(ApiError::BadRequest(format!(
            "description: at most {} bytes",
            vmm::MAX_DESCRIPTION
        )));
    }
    exists(&d, &caller, &name).await?;
    let _busy = d.busy(&caller.project, &name, "the snapshot")?;
    let d2 = d.clone();
    let c2 = caller.clone();
    let list = blocking(move || {
        let mut vm = open_vm(&d2, &c2, &name)?;
        match vm.state()? {
            RunState::Running { .. } => {
                let path = vm.dir().join(vmm::CONTROL_SOCKET);
                drop(vm);
                let command = vmm::VmCommand::Snapshot {
                    name: req.name.clone(),
                    description: req.description.clone(),
                    disk_only: false,
                };
                match vmm::control::request(&path, &command, Duration::from_secs(600)) {
                    Ok(vmm::VmReply::Snapshot { .. }) => {}
                    Ok(vmm::VmReply::Error { message }) => {
                        return Err(ApiError::Conflict(format!("VM {name:?}: {message}")))
                    }
                    Ok(other) => {
                        return Err(ApiError::Internal(format!(
                            "VM {name:?} answered {other:?} to a snapshot"
                        )))
                    }
                    Err(e) => return Err(ApiError::Internal(format!("VM {name:?}: {e}"))),
                }
                vm = open_vm(&d2, &c2, &name)?;
            }
            _ => {
                vm.snapshot_create(&req.name, &req.description)?;
            }
        }
        d2.event(&c2.project, "vm", &name, "snapshot", req.name.clone());
        Ok(snapshot_list(name, &vm))
    })
    .await?;
    Ok((StatusCode::CREATED, axum::Json(list)))
}

/// Go back to a snapshot (the VM must not be running).
#[utoipa::path(post, path = "/v1/vms/{name}/snapshots/{snapshot}/revert", tag = "snapshots",
    params(("name" = String, Path), ("snapshot" = String, Path)),
    responses((status = 200, body = SnapshotList), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn revert_snapshot(
    State(d): D,
    caller: Caller,
    P((name, snap)): P<(String, String)>,
) -> ApiResult<axum::Json<SnapshotList>> {
    caller.may_change()?;
    exists(&d, &caller, &name).await?;
    let _busy = d.busy(&caller.project, &name, "the revert")?;
    let list = blocking(move || {
        let mut vm = open_vm(&d, &caller, &name)?;
        snapshot_exists(&vm, &caller, &snap)?;
        vm.snapshot_revert(&snap)?;
        d.event(&caller.project, "vm", &name, "reverted", snap.clone());
        Ok(snapshot_list(name, &vm))
    })
    .await?;
    Ok(axum::Json(list))
}

fn snapshot_exists(vm: &vmm::Vm, caller: &Caller, snap: &str) -> ApiResult<()> {
    if vm.config().snapshot(snap).is_none() {
        return Err(ApiError::not_found(
            "snapshot",
            &format!("{}/{snap}", vm.config().name),
            &caller.project,
        ));
    }
    Ok(())
}

#[derive(Deserialize, IntoParams, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SnapshotDeleteParams {
    /// Delete its descendants too.
    #[serde(default)]
    pub children: bool,
}

/// Delete a snapshot (its children move to its parent unless `children`).
#[utoipa::path(delete, path = "/v1/vms/{name}/snapshots/{snapshot}", tag = "snapshots",
    params(("name" = String, Path), ("snapshot" = String, Path), SnapshotDeleteParams),
    responses((status = 200, body = SnapshotList), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn delete_snapshot(
    State(d): D,
    caller: Caller,
    P((name, snap)): P<(String, String)>,
    Q(q): Q<SnapshotDeleteParams>,
) -> ApiResult<axum::Json<SnapshotList>> {
    caller.may_change()?;
    exists(&d, &caller, &name).await?;
    let _busy = d.busy(&caller.project, &name, "the snapshot deletion")?;
    let list = blocking(move || {
        let mut vm = open_vm(&d, &caller, &name)?;
        snapshot_exists(&vm, &caller, &snap)?;
        vm.snapshot_delete(&snap, q.children, &mut |_, _, _| {})?;
        Ok(snapshot_list(name, &vm))
    })
    .await?;
    Ok(axum::Json(list))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CloneRequest {
    /// The new VM's name.
    pub name: String,
    /// Share the source's frozen layers instead of copying them.
    #[serde(default)]
    pub linked: bool,
    /// From this snapshot (else the source's present state).
    #[serde(default)]
    pub snapshot: Option<String>,
}

/// Clone a VM (full or linked, from its present state or a snapshot).
#[utoipa::path(post, path = "/v1/vms/{name}/clone", tag = "vms", params(("name" = String, Path)), request_body = CloneRequest,
    responses((status = 201, body = VmDoc), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn clone_vm(
    State(d): D,
    caller: Caller,
    P(name): P<String>,
    Body(req): Body<CloneRequest>,
) -> ApiResult<(StatusCode, axum::Json<VmDoc>)> {
    caller.may_change()?;
    vmm::check_name("VM name", &req.name).map_err(bad_name)?;
    exists(&d, &caller, &name).await?;
    let _busy = d.busy(&caller.project, &name, "the clone")?;
    let _busy2 = d.busy(&caller.project, &req.name, "the clone")?;
    if d.home(&caller.project).bundle_dir(&req.name).exists() {
        return Err(ApiError::Conflict(format!(
            "a VM named {:?} exists already",
            req.name
        )));
    }
    d.claim(&caller.project, &req.name).await?;
    let (d2, project, dst) = (d.clone(), caller.project.clone(), req.name.clone());
    let doc = blocking(move || {
        let home = d.home(&caller.project);
        let from = vmm::CloneFrom {
            linked: req.linked,
            snapshot: req.snapshot.clone(),
        };
        let config = home.clone_vm(&name, &req.name, &from, &mut |_, _, _| {})?;
        d.update_inventory(|vms| {
            vms.push(VmRecord {
                project: caller.project.clone(),
                name: config.name.clone(),
                uuid: config.uuid,
                host: d.config.host_name.clone(),
                restart: RestartPolicy::default(),
                desired_running: false,
            })
        })?;
        d.event(
            &caller.project,
            "vm",
            &config.name,
            "created",
            format!("clone of {name}"),
        );
        let vm = home.open(&config.name)?;
        vm_doc(&d, &caller.project, &vm, false)
    })
    .await;
    match doc {
        Ok(doc) => Ok((StatusCode::CREATED, axum::Json(doc))),
        Err(e) => {
            d2.release(&project, &dst).await;
            Err(e)
        }
    }
}

/// The VM's console: a WebSocket carrying console output (binary
/// messages) out and keyboard input (binary or text messages) in. One
/// client at a time; a new one takes over.
#[utoipa::path(get, path = "/v1/vms/{name}/console", tag = "vms", params(("name" = String, Path)),
    responses((status = 101, description = "WebSocket"), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn console(
    State(d): D,
    caller: Caller,
    P(name): P<String>,
    ws: axum::extract::ws::WebSocketUpgrade,
) -> ApiResult<Response> {
    let (d2, c2, n2) = (d.clone(), caller.clone(), name.clone());
    let dir = blocking(move || {
        let vm = open_vm(&d2, &c2, &n2)?;
        match vm.state()? {
            RunState::Running { .. } => Ok(vm.dir().to_path_buf()),
            _ => Err(ApiError::Conflict(format!("VM {n2:?} is not running"))),
        }
    })
    .await?;
    let sock = tokio::net::UnixStream::connect(dir.join(vmm::CONSOLE_SOCKET))
        .await
        .map_err(|e| ApiError::Conflict(format!("VM {name:?} has no console socket: {e}")))?;
    Ok(ws
        .max_message_size(64 << 10)
        .on_upgrade(move |socket| crate::console::relay(socket, sock)))
}

// ---------------------------------------------------------------- events

#[derive(Deserialize, IntoParams, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EventParams {}

/// Server-sent events: each a JSON [`Event`] of the caller's project as it happens.
#[utoipa::path(get, path = "/v1/events", tag = "events",
    responses((status = 200, description = "text/event-stream of Event", body = Event)))]
async fn events(State(d): D, caller: Caller) -> impl IntoResponse {
    use futures_util::StreamExt;
    let rx = d.subscribe();
    let project = caller.project.clone();
    let admin = caller.role == Role::Admin && caller.project == crate::identity::ADMIN;
    let stream = tokio_stream::wrappers::BroadcastStream::new(rx).filter_map(move |e| {
        let project = project.clone();
        async move {
            match e {
                Ok(e) if admin || e.project == project => Some(Ok::<_, std::convert::Infallible>(
                    axum::response::sse::Event::default()
                        .event(e.kind.clone())
                        .json_data(&e)
                        .unwrap_or_default(),
                )),
                Ok(_) => None,
                Err(_) => Some(Ok(axum::response::sse::Event::default()
                    .event("lagged")
                    .data("events were dropped: this client reads too slowly"))),
            }
        }
    });
    Sse::new(stream).keep_alive(KeepAlive::default())
}

// ---------------------------------------------------------------- router

#[derive(OpenApi)]
#[openapi(
    info(title = "lockstepd", description = "Lockstep's control plane: VMs, snapshots, images, networks, hosts and events of one project per token.", version = "1"),
    components(schemas(ErrorBody, Event)),
    modifiers(&BearerAuth),
    security(("bearer" = [])),
    tags((name = "identity"), (name = "vms"), (name = "snapshots"), (name = "images"), (name = "networks"), (name = "hosts"), (name = "events")),
)]
struct ApiDoc;

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// The routes and the OpenAPI document they make.
pub fn router() -> (axum::Router<Arc<Daemon>>, utoipa::openapi::OpenApi) {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(create_token))
        .routes(routes!(whoami))
        .routes(routes!(list_projects, create_project))
        .routes(routes!(list_users, create_user))
        .routes(routes!(delete_user))
        .routes(routes!(list_flavors))
        .routes(routes!(list_vms, create_vm))
        .routes(routes!(show_vm, delete_vm))
        .routes(routes!(start_vm))
        .routes(routes!(stop_vm))
        .routes(routes!(suspend_vm))
        .routes(routes!(resume_vm))
        .routes(routes!(clone_vm))
        .routes(routes!(console))
        .routes(routes!(list_snapshots, create_snapshot))
        .routes(routes!(revert_snapshot))
        .routes(routes!(delete_snapshot))
        .routes(routes!(events))
        .merge(crate::images::routes())
        .merge(crate::networks::routes())
        .merge(crate::host::routes())
        .split_for_parts()
}

/// The OpenAPI document, as `/v1/openapi.json` serves it.
pub fn openapi_json() -> String {
    let (_, doc) = router();
    doc.to_pretty_json().unwrap_or_default()
}
