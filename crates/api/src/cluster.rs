//! The cluster: lockstepds that share an etcd (`lockstepd --etcd URL…`).
//!
//! What lives in etcd, under `/lockstep/`:
//!
//! | key | value |
//! |---|---|
//! | `hosts/NAME` | [`HostRecord`]: the host's API address, capacity and load, rewritten every second under a lease of [`LEASE_TTL`] seconds (a host whose daemon stops beating drops out) |
//! | `vms/PROJECT/NAME` | [`Placement`]: the host that owns the VM; made with a compare-and-swap when the VM is created, so a name is taken once in the cluster |
//! | `identity` | the token key, users and projects, so a token from any host works on every host; changed by compare-and-swap |
//!
//! Any host's API takes any request: [`route`] (a layer in front of the
//! handlers) sends a request about a VM another host owns to that host,
//! lists VMs from every host, and places a new VM with the scheduler
//! ([`place`]): filters (free memory, harts, the project's networks, the
//! image on some host) then the least loaded host, each decision logged
//! with its reasons and a 409 naming what every host is short of when none
//! fits. When etcd cannot be reached the API answers 503 and VMs keep
//! running; when it is back the hosts register again.

use crate::daemon::Daemon;
use crate::error::{ApiError, ApiResult};
use crate::identity::{Caller, Change, UserView};
use axum::body::Body;
use axum::extract::FromRequestParts;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use etcd_client::{Client, Compare, CompareOp, ConnectOptions, GetOptions, PutOptions, Txn, TxnOp};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A host's lease lasts this many seconds without a heartbeat.
pub const LEASE_TTL: i64 = 5;
/// How often a host beats.
const BEAT: Duration = Duration::from_secs(1);
const PREFIX: &str = "/lockstep/";
/// A request one daemon sends another carries this header: the receiver
/// handles it itself rather than routing it again.
pub const FORWARDED: &str = "x-lockstep-forwarded";
/// The largest record read from etcd.
const MAX_RECORD: usize = 1 << 20;

/// A host as it registers itself.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HostRecord {
    pub name: String,
    /// Where its API listens (HTTPS; the certificate names the host).
    pub addr: std::net::SocketAddr,
    pub harts: u32,
    /// Bytes.
    pub memory_total: u64,
    /// Bytes the host can still give VMs.
    pub memory_free: u64,
    pub vms: usize,
    pub vms_running: usize,
    /// The 1-minute load average.
    pub load: f64,
    /// Disk images it holds (`GET /v1/images`).
    pub images: Vec<String>,
    /// Its networks, `PROJECT/NAME`.
    pub networks: Vec<String>,
    /// Unix seconds of the beat.
    pub updated: u64,
}

/// Who owns a VM.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Placement {
    pub host: String,
    /// Unix seconds.
    pub created: u64,
}

/// What a new VM needs of its host.
#[derive(Clone, Debug, Default)]
pub struct Need {
    pub memory: u64,
    pub cpus: u8,
    /// `PROJECT/NAME`.
    pub networks: Vec<String>,
    pub image: Option<String>,
    /// Hosts it may not go on (an FT backup's primary).
    pub avoid: Vec<String>,
}

/// The scheduler: filter `hosts` by `need`, then take the least loaded
/// (most memory free after placing, then fewest running VMs, then holding
/// the image, then by name). Ok: the host and one line per host saying why
/// it was or was not taken. Err: what every host is short of.
pub fn place(hosts: &[HostRecord], need: &Need) -> Result<(String, Vec<String>), String> {
    let image_somewhere = need
        .image
        .as_ref()
        .is_none_or(|i| hosts.iter().any(|h| h.images.contains(i)));
    let mut fit = Vec::new();
    let mut reasons = Vec::new();
    for h in hosts {
        let mut short = Vec::new();
        if h.memory_free < need.memory {
            short.push(format!(
                "{} MiB of memory free < {} MiB",
                h.memory_free >> 20,
                need.memory >> 20
            ));
        }
        if u64::from(need.cpus) > u64::from(h.harts) * 4 {
            short.push(format!(
                "{} harts cannot run {} CPUs (at most 4 per hart)",
                h.harts, need.cpus
            ));
        }
        for n in &need.networks {
            if !h.networks.contains(n) {
                short.push(format!("no network {n}"));
            }
        }
        if let Some(i) = &need.image {
            if !image_somewhere {
                short.push(format!("image {i:?} is on no host"));
            }
        }
        if need.avoid.contains(&h.name) {
            short.push("anti-affinity: holds the VM's other half".to_string());
        }
        if short.is_empty() {
            fit.push(h);
        } else {
            reasons.push(format!("{}: {}", h.name, short.join(", ")));
        }
    }
    if hosts.is_empty() {
        return Err("no host is registered in the cluster".to_string());
    }
    let has_image = |h: &HostRecord| need.image.as_ref().is_some_and(|i| h.images.contains(i));
    let best = fit
        .iter()
        .max_by(|a, b| {
            (a.memory_free - need.memory)
                .cmp(&(b.memory_free - need.memory))
                .then(b.vms_running.cmp(&a.vms_running))
                .then(has_image(a).cmp(&has_image(b)))
                .then(b.name.cmp(&a.name))
        })
        .map(|h| h.name.clone());
    match best {
        Some(best) => {
            for h in &fit {
                reasons.push(format!(
                    "{}: fits, {} MiB free after, {} running VMs{}{}",
                    h.name,
                    (h.memory_free - need.memory) >> 20,
                    h.vms_running,
                    if has_image(h) { ", has the image" } else { "" },
                    if h.name == best {
                        " (chosen: least loaded)"
                    } else {
                        ""
                    }
                ));
            }
            Ok((best, reasons))
        }
        None => Err(reasons.join("; ")),
    }
}

/// A daemon's hold on the cluster.
pub struct Cluster {
    client: Client,
    endpoints: Vec<String>,
    pub host: String,
    pub addr: std::net::SocketAddr,
    lease: tokio::sync::Mutex<Option<i64>>,
    /// The identity record's revision last taken on.
    identity_rev: Mutex<i64>,
    /// HTTPS clients for the other hosts, by host name.
    peers: Mutex<HashMap<String, reqwest::Client>>,
    /// TLS for talking to the other hosts: trusting the cluster's CA.
    tls: rustls::ClientConfig,
    /// etcd could not be reached at the last beat.
    down: Mutex<bool>,
}

fn unavailable(endpoints: &[String], e: impl std::fmt::Display) -> ApiError {
    ApiError::Unavailable(format!(
        "the cluster's store (etcd at {}) cannot be reached: {e}; VMs keep running, but the cluster's records cannot be read or changed until it is back",
        endpoints.join(", ")
    ))
}

fn key(rest: &str) -> String {
    format!("{PREFIX}{rest}")
}

impl Cluster {
    /// Connect to etcd at `endpoints` (it must answer now), take on the
    /// cluster's identity (or give it ours if it has none) and register.
    pub async fn join(
        daemon: &Arc<Daemon>,
        endpoints: Vec<String>,
        addr: std::net::SocketAddr,
        ca: &std::path::Path,
    ) -> ApiResult<Arc<Cluster>> {
        let options = ConnectOptions::new()
            .with_connect_timeout(Duration::from_secs(2))
            .with_timeout(Duration::from_secs(3));
        let client = Client::connect(&endpoints, Some(options))
            .await
            .map_err(|e| unavailable(&endpoints, e))?;
        let tls = crate::client::tls_trusting(ca).map_err(|e| ApiError::Internal(e.to_string()))?;
        let cluster = Arc::new(Cluster {
            client,
            endpoints,
            host: daemon.config.host_name.clone(),
            addr,
            lease: tokio::sync::Mutex::new(None),
            identity_rev: Mutex::new(0),
            peers: Mutex::new(HashMap::new()),
            tls,
            down: Mutex::new(false),
        });
        // Give the cluster our identity if it has none; then take on its.
        let blob = daemon.identity.shared()?;
        let txn = Txn::new()
            .when(vec![Compare::create_revision(
                key("identity"),
                CompareOp::Equal,
                0,
            )])
            .and_then(vec![TxnOp::put(key("identity"), blob, None)]);
        let made = cluster
            .client
            .clone()
            .txn(txn)
            .await
            .map_err(|e| cluster.unavailable(e))?
            .succeeded();
        if made {
            tracing::info!("the cluster had no identity: it takes this host's (its admin password is in this host's home)");
        }
        cluster.refresh_identity(daemon).await?;
        if !made {
            let d = daemon.clone();
            let dropped = crate::daemon::blocking(move || {
                d.identity.drop_stale_admin_password(&d.config.home)
            })
            .await?;
            if dropped {
                tracing::info!("this host took on the cluster's users, projects and token key; its own admin password is void and its file removed (the admin password is on the host that formed the cluster)");
            }
        }
        // This host's VMs are this host's.
        for r in daemon.records() {
            cluster.claim(&r.project, &r.name).await?;
        }
        cluster.beat(daemon).await?;
        Ok(cluster)
    }

    fn unavailable(&self, e: impl std::fmt::Display) -> ApiError {
        unavailable(&self.endpoints, e)
    }

    /// Register (again, if the lease was lost) and refresh this host's record.
    async fn beat(&self, daemon: &Arc<Daemon>) -> ApiResult<()> {
        let record = {
            let d = daemon.clone();
            let addr = self.addr;
            crate::daemon::blocking(move || Ok(host_record(&d, addr))).await?
        };
        let value = serde_json::to_vec(&record).map_err(|e| ApiError::Internal(e.to_string()))?;
        let mut client = self.client.clone();
        let mut lease = self.lease.lock().await;
        if let Some(id) = *lease {
            let alive = async {
                let (mut keeper, mut stream) = client.lease_keep_alive(id).await?;
                keeper.keep_alive().await?;
                Ok::<_, etcd_client::Error>(stream.message().await?.map(|r| r.ttl()))
            }
            .await
            .map_err(|e| self.unavailable(e))?;
            if alive.unwrap_or(0) <= 0 {
                tracing::warn!("this host's lease expired; registering again");
                *lease = None;
            }
        }
        let id = match *lease {
            Some(id) => id,
            None => {
                let id = client
                    .lease_grant(LEASE_TTL, None)
                    .await
                    .map_err(|e| self.unavailable(e))?
                    .id();
                *lease = Some(id);
                tracing::info!(host = %self.host, lease = id, "registered in the cluster");
                id
            }
        };
        client
            .put(
                key(&format!("hosts/{}", self.host)),
                value,
                Some(PutOptions::new().with_lease(id)),
            )
            .await
            .map_err(|e| self.unavailable(e))?;
        Ok(())
    }

    /// Beat every second for as long as the daemon runs; take on identity
    /// changes other hosts made.
    pub async fn run(self: Arc<Self>, daemon: Arc<Daemon>) {
        loop {
            tokio::time::sleep(BEAT).await;
            let result = async {
                self.beat(&daemon).await?;
                self.refresh_identity(&daemon).await
            }
            .await;
            let mut down = self.down.lock().unwrap_or_else(|p| p.into_inner());
            match result {
                Ok(()) if *down => {
                    tracing::info!("etcd answers again; this host is registered");
                    *down = false;
                }
                Ok(()) => {}
                Err(e) if !*down => {
                    tracing::warn!("{e}");
                    *down = true;
                }
                Err(_) => {}
            }
        }
    }

    async fn refresh_identity(&self, daemon: &Daemon) -> ApiResult<()> {
        let resp = self
            .client
            .clone()
            .get(key("identity"), None)
            .await
            .map_err(|e| self.unavailable(e))?;
        let Some(kv) = resp.kvs().first() else {
            return Err(ApiError::Internal(
                "the cluster's identity record is missing from etcd".into(),
            ));
        };
        let rev = kv.mod_revision();
        if *self.identity_rev.lock().unwrap_or_else(|p| p.into_inner()) == rev {
            return Ok(());
        }
        daemon.identity.adopt(kv.value())?;
        *self.identity_rev.lock().unwrap_or_else(|p| p.into_inner()) = rev;
        Ok(())
    }

    /// Change the cluster's users and projects (compare-and-swap, retried
    /// when another host changed them first), then take the change on here.
    pub async fn change_identity(
        &self,
        daemon: &Daemon,
        change: &Change,
    ) -> ApiResult<Option<UserView>> {
        let mut client = self.client.clone();
        for _ in 0..10 {
            let resp = client
                .get(key("identity"), None)
                .await
                .map_err(|e| self.unavailable(e))?;
            let kv = resp.kvs().first().ok_or_else(|| {
                ApiError::Internal("the cluster's identity record is missing from etcd".into())
            })?;
            let (blob, shown) = change.apply_shared(kv.value())?;
            let txn = Txn::new()
                .when(vec![Compare::mod_revision(
                    key("identity"),
                    CompareOp::Equal,
                    kv.mod_revision(),
                )])
                .and_then(vec![TxnOp::put(key("identity"), blob, None)]);
            if client
                .txn(txn)
                .await
                .map_err(|e| self.unavailable(e))?
                .succeeded()
            {
                self.refresh_identity(daemon).await?;
                return Ok(shown);
            }
        }
        Err(ApiError::Conflict(
            "the cluster's users and projects kept changing under this request; try again".into(),
        ))
    }

    /// The registered hosts (those whose lease holds).
    pub async fn hosts(&self) -> ApiResult<Vec<HostRecord>> {
        let resp = self
            .client
            .clone()
            .get(key("hosts/"), Some(GetOptions::new().with_prefix()))
            .await
            .map_err(|e| self.unavailable(e))?;
        let mut hosts = Vec::new();
        for kv in resp.kvs() {
            if kv.value().len() > MAX_RECORD {
                continue;
            }
            match serde_json::from_slice::<HostRecord>(kv.value()) {
                Ok(h) => hosts.push(h),
                Err(e) => tracing::warn!(
                    "etcd {}: not a host record: {e}",
                    kv.key_str().unwrap_or("?")
                ),
            }
        }
        hosts.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(hosts)
    }

    /// Who owns `project/name`.
    pub async fn owner(&self, project: &str, name: &str) -> ApiResult<Option<Placement>> {
        let resp = self
            .client
            .clone()
            .get(key(&format!("vms/{project}/{name}")), None)
            .await
            .map_err(|e| self.unavailable(e))?;
        match resp.kvs().first() {
            None => Ok(None),
            Some(kv) => serde_json::from_slice(kv.value()).map(Some).map_err(|e| {
                ApiError::Internal(format!("etcd record of VM {project}/{name}: {e}"))
            }),
        }
    }

    /// Take the name `project/name` for this host, or say which host has it.
    pub async fn claim(&self, project: &str, name: &str) -> ApiResult<()> {
        let k = key(&format!("vms/{project}/{name}"));
        let placement = Placement {
            host: self.host.clone(),
            created: vmm::now(),
        };
        let value =
            serde_json::to_vec(&placement).map_err(|e| ApiError::Internal(e.to_string()))?;
        let txn = Txn::new()
            .when(vec![Compare::create_revision(
                k.clone(),
                CompareOp::Equal,
                0,
            )])
            .and_then(vec![TxnOp::put(k, value, None)]);
        if self
            .client
            .clone()
            .txn(txn)
            .await
            .map_err(|e| self.unavailable(e))?
            .succeeded()
        {
            return Ok(());
        }
        match self.owner(project, name).await? {
            Some(p) if p.host == self.host => Ok(()),
            Some(p) => Err(ApiError::Conflict(format!(
                "a VM named {name:?} exists already in project {project:?}, on host {}",
                p.host
            ))),
            // Released in between: try once more.
            None => Box::pin(self.claim(project, name)).await,
        }
    }

    /// Give up the name `project/name` if this host holds it.
    pub async fn release(&self, project: &str, name: &str) -> ApiResult<()> {
        let k = key(&format!("vms/{project}/{name}"));
        let resp = self
            .client
            .clone()
            .get(k.clone(), None)
            .await
            .map_err(|e| self.unavailable(e))?;
        let Some(kv) = resp.kvs().first() else {
            return Ok(());
        };
        let mine =
            serde_json::from_slice::<Placement>(kv.value()).is_ok_and(|p| p.host == self.host);
        if mine {
            // Deleted only if nobody changed it since it was read.
            let txn = Txn::new()
                .when(vec![Compare::mod_revision(
                    k.clone(),
                    CompareOp::Equal,
                    kv.mod_revision(),
                )])
                .and_then(vec![TxnOp::delete(k, None)]);
            self.client
                .clone()
                .txn(txn)
                .await
                .map_err(|e| self.unavailable(e))?;
        }
        Ok(())
    }

    /// An HTTPS client for host `name` at `addr` (trusting the cluster's CA,
    /// checking the certificate names the host).
    fn peer(&self, name: &str, addr: std::net::SocketAddr) -> ApiResult<reqwest::Client> {
        let mut peers = self.peers.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = peers.get(name) {
            return Ok(c.clone());
        }
        let builder = reqwest::Client::builder()
            .resolve(name, addr)
            .connect_timeout(Duration::from_secs(3))
            .tls_backend_preconfigured(self.tls.clone());
        let client = builder
            .build()
            .map_err(|e| ApiError::Internal(format!("an HTTPS client for host {name}: {e}")))?;
        peers.insert(name.to_string(), client.clone());
        Ok(client)
    }

    /// The record of host `name`, if it is registered.
    pub async fn host_named(&self, name: &str) -> ApiResult<HostRecord> {
        self.hosts()
            .await?
            .into_iter()
            .find(|h| h.name == name)
            .ok_or_else(|| {
                ApiError::Unavailable(format!(
                    "host {name} is not registered in the cluster (its daemon is down or cut off); try again when it is back"
                ))
            })
    }

    /// Send `req` (its body at most `limit` bytes) to host `host` and
    /// return its answer.
    pub async fn forward(
        &self,
        host: &HostRecord,
        req: Request,
        limit: usize,
    ) -> ApiResult<Response> {
        let (parts, body) = req.into_parts();
        let body = axum::body::to_bytes(body, limit)
            .await
            .map_err(|_| ApiError::TooLarge {
                limit: limit as u64,
            })?;
        self.send(
            host,
            parts.method,
            parts
                .uri
                .path_and_query()
                .map(|p| p.as_str())
                .unwrap_or("/"),
            &parts.headers,
            body,
        )
        .await
    }

    async fn send(
        &self,
        host: &HostRecord,
        method: Method,
        path: &str,
        headers: &axum::http::HeaderMap,
        body: axum::body::Bytes,
    ) -> ApiResult<Response> {
        let client = self.peer(&host.name, host.addr)?;
        let url = format!("https://{}:{}{path}", host.name, host.addr.port());
        let mut request = client.request(method, &url).body(body);
        for name in [
            axum::http::header::AUTHORIZATION,
            axum::http::header::CONTENT_TYPE,
        ] {
            if let Some(v) = headers.get(&name) {
                request = request.header(name, v);
            }
        }
        request = request.header(
            FORWARDED,
            HeaderValue::from_str(&self.host).unwrap_or(HeaderValue::from_static("?")),
        );
        let answer = request.send().await.map_err(|e| {
            ApiError::Unavailable(format!(
                "host {} ({}) did not answer: {e}",
                host.name, host.addr
            ))
        })?;
        let status = answer.status();
        let content_type = answer
            .headers()
            .get(axum::http::header::CONTENT_TYPE)
            .cloned();
        let stream = answer.bytes_stream();
        let mut response = Response::new(Body::from_stream(stream));
        *response.status_mut() = status;
        if let Some(ct) = content_type {
            response
                .headers_mut()
                .insert(axum::http::header::CONTENT_TYPE, ct);
        }
        Ok(response)
    }

    /// A console WebSocket of a VM on `host`: opened there first (so its
    /// refusal is this answer), then relayed message by message.
    async fn console(&self, host: &HostRecord, req: Request) -> ApiResult<Response> {
        use tokio_tungstenite::tungstenite::client::IntoClientRequest;
        let path = req
            .uri()
            .path_and_query()
            .map(|p| p.as_str().to_string())
            .unwrap_or_default();
        let (mut parts, _) = req.into_parts();
        let upgrade = axum::extract::ws::WebSocketUpgrade::from_request_parts(&mut parts, &())
            .await
            .map_err(|e| ApiError::BadRequest(format!("console: {e}")))?;
        let unreachable = |e: &dyn std::fmt::Display| {
            ApiError::Unavailable(format!("host {} ({}): {e}", host.name, host.addr))
        };
        let tcp = tokio::net::TcpStream::connect(host.addr)
            .await
            .map_err(|e| unreachable(&e))?;
        let server = rustls::pki_types::ServerName::try_from(host.name.clone())
            .map_err(|e| unreachable(&e))?;
        let tls = tokio_rustls::TlsConnector::from(Arc::new(self.tls.clone()))
            .connect(server, tcp)
            .await
            .map_err(|e| unreachable(&e))?;
        let mut request = format!("wss://{}:{}{path}", host.name, host.addr.port())
            .into_client_request()
            .map_err(|e| unreachable(&e))?;
        if let Some(auth) = parts.headers.get(axum::http::header::AUTHORIZATION) {
            request
                .headers_mut()
                .insert(axum::http::header::AUTHORIZATION, auth.clone());
        }
        if let Ok(me) = HeaderValue::from_str(&self.host) {
            request.headers_mut().insert(FORWARDED, me);
        }
        let (remote, _) = match tokio_tungstenite::client_async(request, tls).await {
            Ok(pair) => pair,
            Err(tokio_tungstenite::tungstenite::Error::Http(answer)) => {
                let status = answer.status();
                let body = answer.into_body().unwrap_or_default();
                let mut response = Response::new(Body::from(body));
                *response.status_mut() = status;
                response.headers_mut().insert(
                    axum::http::header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json"),
                );
                return Ok(response);
            }
            Err(e) => return Err(unreachable(&e)),
        };
        Ok(upgrade.on_upgrade(move |socket| relay(socket, remote)))
    }

    /// GET `path` from host `host` as JSON.
    pub async fn get_json<T: serde::de::DeserializeOwned>(
        &self,
        host: &HostRecord,
        path: &str,
        token: &str,
    ) -> ApiResult<T> {
        let bytes = self
            .get_stream(host, path, token)
            .await?
            .bytes()
            .await
            .map_err(|e| ApiError::Unavailable(format!("host {}: {e}", host.name)))?;
        serde_json::from_slice(&bytes)
            .map_err(|e| ApiError::Internal(format!("host {} answered {path}: {e}", host.name)))
    }

    /// GET `path` from host `host`, streaming.
    pub async fn get_stream(
        &self,
        host: &HostRecord,
        path: &str,
        token: &str,
    ) -> ApiResult<reqwest::Response> {
        let client = self.peer(&host.name, host.addr)?;
        let url = format!("https://{}:{}{path}", host.name, host.addr.port());
        let answer = client
            .get(&url)
            .bearer_auth(token)
            .header(FORWARDED, &self.host)
            .send()
            .await
            .map_err(|e| {
                ApiError::Unavailable(format!("host {} did not answer: {e}", host.name))
            })?;
        if !answer.status().is_success() {
            return Err(ApiError::Unavailable(format!(
                "host {} answered {path} with {}",
                host.name,
                answer.status()
            )));
        }
        Ok(answer)
    }
}

/// Pass WebSocket messages both ways between a client and a host.
async fn relay<S>(
    client: axum::extract::ws::WebSocket,
    remote: tokio_tungstenite::WebSocketStream<S>,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    use axum::extract::ws::Message as A;
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message as T;
    let (mut client_tx, mut client_rx) = client.split();
    let (mut remote_tx, mut remote_rx) = remote.split();
    let out = async {
        while let Some(Ok(m)) = remote_rx.next().await {
            let m = match m {
                T::Binary(b) => A::Binary(b),
                T::Text(t) => A::Text(t.as_str().into()),
                T::Close(_) => break,
                _ => continue,
            };
            if client_tx.send(m).await.is_err() {
                break;
            }
        }
        let _ = client_tx.send(A::Close(None)).await;
    };
    let input = async {
        while let Some(Ok(m)) = client_rx.next().await {
            let m = match m {
                A::Binary(b) => T::Binary(b),
                A::Text(t) => T::Text(t.as_str().into()),
                A::Close(_) => break,
                _ => continue,
            };
            if remote_tx.send(m).await.is_err() {
                break;
            }
        }
        let _ = remote_tx.send(T::Close(None)).await;
    };
    tokio::select! {
        _ = out => {}
        _ = input => {}
    }
}

/// This host's record: capacity, load, images and networks.
pub fn host_record(d: &Daemon, addr: std::net::SocketAddr) -> HostRecord {
    let (total, free) = crate::routes::free_memory(d);
    let records = d.records();
    let running = d.running_counts().values().sum();
    let images = crate::images::list(d)
        .map(|l| {
            l.into_iter()
                .filter(|i| i.kind != "boot")
                .map(|i| i.name)
                .collect()
        })
        .unwrap_or_default();
    let mut networks = Vec::new();
    for p in d.identity.projects() {
        if let Ok(list) = d.networks(&p).list() {
            networks.extend(list.into_iter().map(|n| format!("{p}/{}", n.name)));
        }
    }
    HostRecord {
        name: d.config.host_name.clone(),
        addr,
        harts: crate::host::cpus() as u32,
        memory_total: total,
        memory_free: free,
        vms: records.len(),
        vms_running: running,
        load: crate::host::load1(),
        images,
        networks,
        updated: vmm::now(),
    }
}

/// The cluster's routing, in front of the handlers: requests about a VM
/// another host owns go to that host; `GET /v1/vms` lists every host's;
/// `POST /v1/vms` is placed by the scheduler.
pub async fn route(State(d): State<Arc<Daemon>>, req: Request, next: Next) -> Response {
    let Some(cluster) = d.cluster() else {
        return next.run(req).await;
    };
    if req.headers().contains_key(FORWARDED) {
        return next.run(req).await;
    }
    let path = req.uri().path().to_string();
    let Some(rest) = path.strip_prefix("/v1/vms") else {
        return next.run(req).await;
    };
    let (req, caller) = caller_of(&d, req).await;
    let caller = match caller {
        Some(c) => c,
        // The handler answers 401.
        None => return next.run(req).await,
    };
    let result = if rest.is_empty() || rest == "/" {
        match *req.method() {
            Method::POST => schedule(&cluster, &caller, req, next).await,
            Method::GET => list_everywhere(&cluster, req, next).await,
            _ => Ok(next.run(req).await),
        }
    } else {
        let name = rest.trim_start_matches('/').split('/').next().unwrap_or("");
        match cluster.owner(&caller.project, name).await {
            Err(e) => Err(e),
            Ok(Some(p)) if p.host != cluster.host => match cluster.host_named(&p.host).await {
                Ok(h) if req.headers().contains_key(axum::http::header::UPGRADE) => {
                    cluster.console(&h, req).await
                }
                Ok(h) => cluster.forward(&h, req, crate::routes::MAX_BODY).await,
                Err(e) => Err(e),
            },
            Ok(_) => Ok(next.run(req).await),
        }
    };
    result.unwrap_or_else(IntoResponse::into_response)
}

/// The caller, as the handlers' extractor finds it; None when the token is
/// missing or bad (the handler then answers 401).
async fn caller_of(d: &Arc<Daemon>, req: Request) -> (Request, Option<Caller>) {
    let (mut parts, body) = req.into_parts();
    let caller = Caller::from_request_parts(&mut parts, d).await.ok();
    (Request::from_parts(parts, body), caller)
}

/// Place a new VM: here (the handler makes it) or on the host the
/// scheduler chose (the request goes there).
async fn schedule(
    cluster: &Arc<Cluster>,
    caller: &Caller,
    req: Request,
    next: Next,
) -> ApiResult<Response> {
    let (parts, body) = req.into_parts();
    let limit = crate::routes::MAX_BODY;
    let bytes = axum::body::to_bytes(body, limit)
        .await
        .map_err(|_| ApiError::TooLarge {
            limit: limit as u64,
        })?;
    let rebuild = |bytes: axum::body::Bytes| Request::from_parts(parts.clone(), Body::from(bytes));
    // A request the handler will refuse goes to it for its answer.
    let Ok(create) = serde_json::from_slice::<crate::routes::VmCreate>(&bytes) else {
        return Ok(next.run(rebuild(bytes)).await);
    };
    let Ok((_, cpus, memory)) = crate::routes::sizing(&create) else {
        return Ok(next.run(rebuild(bytes)).await);
    };
    let need = Need {
        memory: if create.start { memory } else { 0 },
        cpus,
        networks: create
            .networks
            .iter()
            .map(|n| format!("{}/{n}", caller.project))
            .collect(),
        image: create.image.clone(),
        avoid: Vec::new(),
    };
    let hosts = cluster.hosts().await?;
    match place(&hosts, &need) {
        Err(why) => {
            tracing::info!(project = %caller.project, vm = %create.name, "no host fits: {why}");
            Err(ApiError::Conflict(format!(
                "no host fits VM {:?} ({} CPUs, {} MiB): {why}",
                create.name,
                cpus,
                memory >> 20
            )))
        }
        Ok((host, reasons)) => {
            tracing::info!(project = %caller.project, vm = %create.name, chosen = %host, "placed: {}", reasons.join("; "));
            if host == cluster.host {
                Ok(next.run(rebuild(bytes)).await)
            } else {
                let record = hosts
                    .iter()
                    .find(|h| h.name == host)
                    .ok_or_else(|| ApiError::Internal("the chosen host vanished".into()))?;
                let req = rebuild(bytes);
                cluster.forward(record, req, limit).await
            }
        }
    }
}

/// `GET /v1/vms` on every host, merged.
async fn list_everywhere(cluster: &Arc<Cluster>, req: Request, next: Next) -> ApiResult<Response> {
    let token = req
        .headers()
        .get(axum::http::header::AUTHORIZATION)
        .and_then(crate::routes::bearer)
        .unwrap_or("")
        .to_string();
    let hosts = cluster.hosts().await?;
    let here = next.run(req).await;
    if !here.status().is_success() {
        return Ok(here);
    }
    let bytes = axum::body::to_bytes(here.into_body(), 64 << 20)
        .await
        .map_err(|e| ApiError::Internal(format!("listing this host's VMs: {e}")))?;
    let mut list: crate::routes::VmList = serde_json::from_slice(&bytes)
        .map_err(|e| ApiError::Internal(format!("listing this host's VMs: {e}")))?;
    for h in hosts.iter().filter(|h| h.name != cluster.host) {
        match cluster
            .get_json::<crate::routes::VmList>(h, "/v1/vms", &token)
            .await
        {
            Ok(theirs) => list.vms.extend(theirs.vms),
            Err(e) => {
                tracing::warn!("listing VMs: {e}");
                list.unreachable.push(h.name.clone());
            }
        }
    }
    list.vms.sort_by(|a, b| a.name.cmp(&b.name));
    Ok((StatusCode::OK, axum::Json(list)).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(name: &str, free_mib: u64, running: usize) -> HostRecord {
        HostRecord {
            name: name.into(),
            addr: std::net::SocketAddr::from(([127, 0, 0, 1], 1)),
            harts: 2,
            memory_total: 8 << 30,
            memory_free: free_mib << 20,
            vms: running,
            vms_running: running,
            load: 0.0,
            images: Vec::new(),
            networks: Vec::new(),
            updated: 0,
        }
    }

    fn need(memory_mib: u64) -> Need {
        Need {
            memory: memory_mib << 20,
            cpus: 1,
            ..Need::default()
        }
    }

    #[test]
    fn the_least_loaded_host_that_fits_is_chosen() {
        let hosts = [host("a", 1000, 1), host("b", 3000, 2), host("c", 3000, 0)];
        let (chosen, reasons) = place(&hosts, &need(512))
            .map_err(|e| e.to_string())
            .unwrap_or_default();
        assert_eq!(
            chosen, "c",
            "most memory free, then fewest VMs: {reasons:?}"
        );
        assert_eq!(reasons.len(), 3);
        assert!(reasons
            .iter()
            .any(|r| r.starts_with("c:") && r.contains("chosen")));
        // Equal hosts: the first by name.
        let hosts = [host("b", 3000, 0), host("a", 3000, 0)];
        assert_eq!(place(&hosts, &need(512)).map(|p| p.0), Ok("a".to_string()));
        // Holding the image breaks a tie.
        let mut with = host("b", 3000, 0);
        with.images.push("disk".into());
        let hosts = [host("a", 3000, 0), with];
        let n = Need {
            image: Some("disk".into()),
            ..need(512)
        };
        assert_eq!(place(&hosts, &n).map(|p| p.0), Ok("b".to_string()));
    }

    #[test]
    fn filters_say_what_each_host_lacks() {
        let mut c = host("c", 4000, 0);
        c.networks.push("p/lan".into());
        let hosts = [host("a", 100, 0), host("b", 4000, 0), c];
        let n = Need {
            networks: vec!["p/lan".into()],
            ..need(512)
        };
        assert_eq!(place(&hosts, &n).map(|p| p.0), Ok("c".to_string()));
        let n = Need {
            cpus: 9,
            networks: vec!["p/wan".into()],
            image: Some("gone".into()),
            avoid: vec!["b".into()],
            ..need(512)
        };
        let why = place(&hosts, &n).err().unwrap_or_default();
        assert!(why.contains("a: 100 MiB of memory free < 512 MiB"), "{why}");
        assert!(why.contains("2 harts cannot run 9 CPUs"), "{why}");
        assert!(why.contains("no network p/wan"), "{why}");
        assert!(why.contains("image \"gone\" is on no host"), "{why}");
        assert!(
            why.contains("b: ") && why.contains("anti-affinity"),
            "{why}"
        );
        assert_eq!(
            place(&[], &need(1)).err().as_deref(),
            Some("no host is registered in the cluster")
        );
    }
}
