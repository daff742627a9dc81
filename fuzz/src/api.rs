//! The control plane's request parsers: one request through lockstepd's
//! whole router (path and query extraction, the bearer token check, JSON
//! bodies with unknown fields refused, the body limit), as a reader or
//! with a forged or missing token, so nothing can change on the host.

use std::sync::{Arc, OnceLock};

struct Fixture {
    runtime: tokio::runtime::Runtime,
    app: axum::Router,
    reader: String,
    _dir: tempfile::TempDir,
}

fn fixture() -> Option<&'static Fixture> {
    static FIXTURE: OnceLock<Option<Fixture>> = OnceLock::new();
    FIXTURE
        .get_or_init(|| {
            let dir = tempfile::tempdir().ok()?;
            let config = api::Config {
                home: dir.path().to_path_buf(),
                socket: dir.path().join("lockstepd.sock"),
                listen: None,
                tls_dir: None,
                host_name: "fuzz".into(),
                vm_binary: "/nonexistent/lockstep".into(),
                token_ttl: 3600,
                max_image_bytes: 1 << 20,
            };
            let daemon = api::Daemon::open(config).ok()?;
            use api::identity::{Change, Role};
            let project = Change::prepare_project("p").ok()?;
            daemon.identity.change(&project).ok()?;
            let reader = Change::prepare_user("r", "reader-password", "p", Role::Reader).ok()?;
            daemon.identity.change(&reader).ok()?;
            let (reader, _) = daemon.identity.issue("r", "reader-password", 3600).ok()?;
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            let app = api::listen::app(Arc::clone(&daemon));
            Some(Fixture {
                runtime,
                app,
                reader,
                _dir: dir,
            })
        })
        .as_ref()
}

const ROUTES: &[&str] = &[
    "/v1/auth/tokens",
    "/v1/vms",
    "/v1/vms/a",
    "/v1/vms/a/start",
    "/v1/vms/a/stop",
    "/v1/vms/a/snapshots",
    "/v1/vms/a/snapshots/s/revert",
    "/v1/vms/a/clone",
    "/v1/networks",
    "/v1/images/x",
    "/v1/users",
    "/v1/projects",
    "/v1/hosts",
];

/// Input: byte 0 picks the method, byte 1 the route and the token (none,
/// the reader's, a forged one); then a line that is the path's tail and
/// query, then the body.
pub fn api_requests(data: &[u8]) {
    use tower::ServiceExt;
    let Some(f) = fixture() else { return };
    let [m, r, rest @ ..] = data else { return };
    let method = ["GET", "POST", "PUT", "DELETE"][usize::from(m & 3)];
    let route = ROUTES[usize::from(*r) % ROUTES.len()];
    let (tail, body) = match rest.iter().position(|&b| b == b'\n') {
        Some(i) => (&rest[..i], &rest[i + 1..]),
        None => (&[][..], rest),
    };
    let tail: String = String::from_utf8_lossy(tail)
        .chars()
        .filter(|c| c.is_ascii_graphic())
        .collect();
    let mut builder = axum::http::Request::builder()
        .method(method)
        .uri(format!("{route}{tail}"))
        .header("content-type", "application/json");
    match r >> 6 {
        1 => builder = builder.header("authorization", format!("Bearer {}", f.reader)),
        2 => {
            let mut forged = f.reader.clone();
            forged.pop();
            forged.push('x');
            builder = builder.header("authorization", format!("Bearer {forged}"));
        }
        3 => builder = builder.header("authorization", tail.clone()),
        _ => {}
    }
    let Ok(request) = builder.body(axum::body::Body::from(body.to_vec())) else {
        return;
    };
    let response = f
        .runtime
        .block_on(f.app.clone().oneshot(request))
        .unwrap_or_else(|e| match e {});
    let status = response.status();
    assert!(
        !status.is_server_error(),
        "{method} {route}{tail}: {status} for a request lockstepd should refuse or answer"
    );
    if status.is_client_error() && status != axum::http::StatusCode::METHOD_NOT_ALLOWED {
        let bytes = f
            .runtime
            .block_on(axum::body::to_bytes(response.into_body(), 1 << 20))
            .unwrap_or_default();
        let body: Result<api::ErrorBody, _> = serde_json::from_slice(&bytes);
        assert!(
            body.is_ok(),
            "{method} {route}{tail}: {status} without a JSON error body: {:?}",
            String::from_utf8_lossy(&bytes)
        );
    }
}
