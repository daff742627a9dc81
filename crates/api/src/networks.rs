//! `/v1/networks`: the project's virtual networks (`lockstep net`'s,
//! kept in the project's home). Members make `nat` and `internal`
//! networks; `hostonly` and `bridged` ones change the host's interfaces,
//! so only an admin makes those.

use crate::daemon::{blocking, Daemon};
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::identity::Caller;
use crate::routes::{Body, P};
use axum::extract::State;
use axum::http::StatusCode;
use net::network::{Mode, NetworkConfig, Subnet};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

#[derive(Serialize, Deserialize, ToSchema)]
pub struct NetworkDoc {
    pub name: String,
    /// `nat`, `hostonly`, `bridged` or `internal`.
    pub mode: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subnet: Option<String>,
    /// The gateway's address (nat: `.2`, hostonly: the host's `.1`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<String>,
    pub dhcp: bool,
    pub mtu: u16,
}

#[derive(Serialize, Deserialize, ToSchema)]
pub struct NetworkList {
    pub networks: Vec<NetworkDoc>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NetworkCreate {
    pub name: String,
    /// `nat` (default), `internal`; `hostonly` and `bridged` need an admin.
    #[serde(default)]
    pub mode: Option<String>,
    /// `A.B.C.D/N`; a free /24 is picked when absent.
    #[serde(default)]
    pub subnet: Option<String>,
    /// The Linux bridge of a `bridged` network.
    #[serde(default)]
    pub bridge: Option<String>,
    #[serde(default)]
    pub dhcp: Option<bool>,
    #[serde(default)]
    pub mtu: Option<u16>,
}

fn doc(c: &NetworkConfig) -> NetworkDoc {
    NetworkDoc {
        name: c.name.clone(),
        mode: c.mode.to_string(),
        subnet: c.subnet.map(|s| s.to_string()),
        gateway: c.gateway().map(|g| g.to_string()),
        dhcp: c.dhcp,
        mtu: c.mtu,
    }
}

/// The project's networks.
#[utoipa::path(get, path = "/v1/networks", tag = "networks",
    responses((status = 200, body = NetworkList), (status = 401, body = ErrorBody)))]
async fn list_networks(
    State(d): State<Arc<Daemon>>,
    caller: Caller,
) -> ApiResult<axum::Json<NetworkList>> {
    let networks = blocking(move || {
        let store = d.networks(&caller.project);
        store.ensure()?;
        Ok(store.list()?.iter().map(doc).collect())
    })
    .await?;
    Ok(axum::Json(NetworkList { networks }))
}

/// One network.
#[utoipa::path(get, path = "/v1/networks/{name}", tag = "networks", params(("name" = String, Path)),
    responses((status = 200, body = NetworkDoc), (status = 404, body = ErrorBody)))]
async fn show_network(
    State(d): State<Arc<Daemon>>,
    caller: Caller,
    P(name): P<String>,
) -> ApiResult<axum::Json<NetworkDoc>> {
    let n = blocking(move || {
        let store = d.networks(&caller.project);
        store.ensure()?;
        match store.get(&name) {
            Err(net::NetworkError::NotFound(_)) => {
                Err(ApiError::not_found("network", &name, &caller.project))
            }
            other => Ok(doc(&other?)),
        }
    })
    .await?;
    Ok(axum::Json(n))
}

/// Make a network.
#[utoipa::path(post, path = "/v1/networks", tag = "networks", request_body = NetworkCreate,
    responses((status = 201, body = NetworkDoc), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn create_network(
    State(d): State<Arc<Daemon>>,
    caller: Caller,
    Body(req): Body<NetworkCreate>,
) -> ApiResult<(StatusCode, axum::Json<NetworkDoc>)> {
    caller.may_change()?;
    net::network::check_name(&req.name)?;
    let mode: Mode = match &req.mode {
        Some(m) => m
            .parse()
            .map_err(|e: net::network::UnknownMode| ApiError::BadRequest(format!("mode: {e}")))?,
        None => Mode::Nat,
    };
    if matches!(mode, Mode::Hostonly | Mode::Bridged) {
        caller.must_be_admin()?;
    }
    let subnet: Option<Subnet> = match &req.subnet {
        Some(s) => Some(s.parse()?),
        None => None,
    };
    let _busy = d.busy(&caller.project, &format!("net:{}", req.name), "the network")?;
    let n = blocking(move || {
        let store = d.networks(&caller.project);
        store.ensure()?;
        let subnet = match subnet {
            Some(s) => Some(s),
            None if mode == Mode::Bridged || mode == Mode::Internal => None,
            None => store.free_subnet(&req.name)?,
        };
        let mut config = NetworkConfig::new(&req.name, mode, subnet);
        if let Some(dhcp) = req.dhcp {
            config.dhcp = dhcp;
        }
        if let Some(mtu) = req.mtu {
            config.mtu = mtu;
        }
        config.bridge = req.bridge.clone();
        config.validate()?;
        store.create(&config)?;
        d.event(
            &caller.project,
            "network",
            &req.name,
            "created",
            String::new(),
        );
        Ok(doc(&config))
    })
    .await?;
    Ok((StatusCode::CREATED, axum::Json(n)))
}

/// Delete a network no VM uses.
#[utoipa::path(delete, path = "/v1/networks/{name}", tag = "networks", params(("name" = String, Path)),
    responses((status = 204), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn delete_network(
    State(d): State<Arc<Daemon>>,
    caller: Caller,
    P(name): P<String>,
) -> ApiResult<StatusCode> {
    caller.may_change()?;
    let _busy = d.busy(&caller.project, &format!("net:{name}"), "the network")?;
    blocking(move || {
        let store = d.networks(&caller.project);
        match store.remove(&name) {
            Err(net::NetworkError::NotFound(_)) => {
                Err(ApiError::not_found("network", &name, &caller.project))
            }
            other => {
                other?;
                d.event(&caller.project, "network", &name, "deleted", String::new());
                Ok(())
            }
        }
    })
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

pub fn routes() -> OpenApiRouter<Arc<Daemon>> {
    OpenApiRouter::new()
        .routes(routes!(list_networks, create_network))
        .routes(routes!(show_network, delete_network))
}
