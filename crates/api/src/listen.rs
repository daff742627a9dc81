//! Where lockstepd listens: its Unix socket (0600, the default) and,
//! optionally, TCP with TLS (rustls; `node.pem` and `node.key` from the
//! TLS directory, as `lockstep ft tls-init DIR --node-name HOST` makes
//! them; clients trust its `ca.pem`).

use crate::daemon::Daemon;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::service::TowerToHyperService;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// How long a TLS handshake may take.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Bind the Unix socket at `path`: a stale socket there is replaced,
/// anything else is refused; the socket is 0600.
pub fn bind_unix(path: &Path) -> io::Result<tokio::net::UnixListener> {
    let std = vmm::control::bind_private(path)?;
    std.set_nonblocking(true)?;
    tokio::net::UnixListener::from_std(std)
}

/// Why the HTTPS listener's certificate cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{}: {detail}", path.display())]
    File { path: PathBuf, detail: String },
    #[error("TLS: {0}")]
    Rustls(#[from] rustls::Error),
}

/// The rustls server configuration from `dir/node.pem` and `dir/node.key`.
pub fn tls_config(dir: &Path) -> Result<rustls::ServerConfig, TlsError> {
    let file = |path: &Path, detail: String| TlsError::File {
        path: path.to_path_buf(),
        detail,
    };
    let read = |name: &str| -> Result<(PathBuf, Vec<u8>), TlsError> {
        let p = dir.join(name);
        std::fs::read(&p)
            .map(|b| (p.clone(), b))
            .map_err(|e| file(&p, e.to_string()))
    };
    let (cert_path, cert) = read("node.pem")?;
    let (key_path, key) = read("node.key")?;
    let certs = rustls_pemfile::certs(&mut cert.as_slice())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| file(&cert_path, e.to_string()))?;
    if certs.is_empty() {
        return Err(file(&cert_path, "no certificate in it".into()));
    }
    let key = rustls_pemfile::private_key(&mut key.as_slice())
        .map_err(|e| file(&key_path, e.to_string()))?
        .ok_or_else(|| file(&key_path, "no private key in it".into()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| file(&cert_path, e.to_string()))
}

/// Serve `app` over TLS on `listener` until the process ends.
pub async fn serve_tls(
    listener: tokio::net::TcpListener,
    tls: rustls::ServerConfig,
    app: axum::Router,
) {
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));
    loop {
        let (tcp, peer) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!("accepting a TCP connection: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let acceptor = acceptor.clone();
        let app = app.clone();
        tokio::spawn(async move {
            let stream = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => {
                    tracing::debug!(%peer, "TLS handshake failed: {e}");
                    return;
                }
                Err(_) => {
                    tracing::debug!(%peer, "TLS handshake timed out");
                    return;
                }
            };
            let service = TowerToHyperService::new(app);
            if let Err(e) = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                .serve_connection_with_upgrades(TokioIo::new(stream), service)
                .await
            {
                tracing::debug!(%peer, "connection ended: {e}");
            }
        });
    }
}

/// The whole app: routes, limits, the OpenAPI document, 404s as JSON.
pub fn app(daemon: Arc<Daemon>) -> axum::Router {
    use axum::extract::DefaultBodyLimit;
    use axum::routing::get;
    let (router, doc) = crate::routes::router();
    let json = Arc::new(doc.to_pretty_json().unwrap_or_default());
    let router = router
        .route(
            "/v1/openapi.json",
            get(move || {
                let json = json.clone();
                async move {
                    (
                        [(axum::http::header::CONTENT_TYPE, "application/json")],
                        (*json).clone(),
                    )
                }
            }),
        )
        .fallback(|| async {
            crate::error::ApiError::NotFound {
                kind: "route",
                name: "this path".into(),
                project: "any".into(),
            }
        })
        .layer(DefaultBodyLimit::max(crate::routes::MAX_BODY));
    #[cfg(feature = "etcd")]
    let router = router.layer(axum::middleware::from_fn_with_state(
        daemon.clone(),
        crate::cluster::route,
    ));
    router.with_state(daemon)
}
