//! `/v1/hosts`: this host's resources, load and state.

use crate::daemon::Daemon;
use crate::error::{ApiResult, ErrorBody};
use crate::identity::Caller;
use axum::extract::State;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// Memory kept back for the host itself.
pub const RESERVE: u64 = 512 << 20;

fn meminfo(field: &str) -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|text| {
            text.lines()
                .find_map(|l| l.strip_prefix(field))
                .and_then(|rest| {
                    rest.trim()
                        .trim_end_matches("kB")
                        .trim()
                        .parse::<u64>()
                        .ok()
                })
        })
        .map(|kib| kib << 10)
        .unwrap_or(0)
}

pub fn mem_total() -> u64 {
    meminfo("MemTotal:")
}

pub fn cpus() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

pub fn load1() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|t| t.split_whitespace().next().and_then(|l| l.parse().ok()))
        .unwrap_or(0.0)
}

/// A host of the control plane.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct HostDoc {
    pub name: String,
    /// `up`.
    pub state: String,
    pub cpus: usize,
    /// Bytes.
    pub memory_total: u64,
    /// Bytes not yet given to running VMs (less a reserve for the host).
    pub memory_free: u64,
    /// The 1-minute load average.
    pub load: f64,
    /// Running VMs, of every project.
    pub vms_running: usize,
    /// Where its API listens, in a cluster.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
}

#[derive(Serialize, Deserialize, ToSchema)]
pub struct HostList {
    pub hosts: Vec<HostDoc>,
}

/// The hosts: this one when it runs alone, else those registered in the
/// cluster (their lease holds).
#[utoipa::path(get, path = "/v1/hosts", tag = "hosts",
    responses((status = 200, body = HostList), (status = 401, body = ErrorBody)))]
async fn list_hosts(
    State(d): State<Arc<Daemon>>,
    _caller: Caller,
) -> ApiResult<axum::Json<HostList>> {
    #[cfg(feature = "etcd")]
    if let Some(cluster) = d.cluster() {
        let hosts = cluster.hosts().await?;
        return Ok(axum::Json(HostList {
            hosts: hosts
                .into_iter()
                .map(|h| HostDoc {
                    name: h.name,
                    state: "up".into(),
                    cpus: h.harts as usize,
                    memory_total: h.memory_total,
                    memory_free: h.memory_free,
                    load: h.load,
                    vms_running: h.vms_running,
                    address: Some(h.addr.to_string()),
                })
                .collect(),
        }));
    }
    let host = crate::daemon::blocking(move || {
        let (total, free) = crate::routes::free_memory(&d);
        Ok(HostDoc {
            name: d.config.host_name.clone(),
            state: "up".into(),
            cpus: cpus(),
            memory_total: total,
            memory_free: free,
            load: load1(),
            vms_running: d.running_counts().values().sum(),
            address: None,
        })
    })
    .await?;
    Ok(axum::Json(HostList { hosts: vec![host] }))
}

pub fn routes() -> OpenApiRouter<Arc<Daemon>> {
    OpenApiRouter::new().routes(routes!(list_hosts))
}
