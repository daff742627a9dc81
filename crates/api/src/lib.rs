//! `lockstepd`, the per-host control plane (DESIGN §8): a REST/JSON API
//! over a Unix socket (0600) and optionally HTTPS, with users, projects,
//! roles and expiring bearer tokens; VMs, snapshots, clones, images,
//! networks, hosts and server-sent events; an OpenAPI 3 document made from
//! the handlers (`/v1/openapi.json`, checked in as `openapi.json`).
//!
//! It is a thin layer over `crates/vmm` (bundles and their lifecycle) and
//! `crates/net` (networks): each VM runs in its own process (`lockstep vm
//! start NAME --foreground`), which the daemon starts, watches and
//! restarts per the VM's restart policy, and finds again after a restart
//! of its own. It owns identity, the inventory and supervision; it must
//! not know how a VM executes.
//!
//! [`client`] is the blocking client the `lockstep` CLI uses with `--api`.

pub mod client;
#[cfg(feature = "etcd")]
pub mod cluster;
mod console;
pub mod daemon;
pub mod error;
pub mod host;
pub mod identity;
pub mod images;
pub mod listen;
pub mod networks;
pub mod routes;

pub use daemon::{Config, Daemon, Event, RestartPolicy};
pub use error::{ApiError, ErrorBody};
