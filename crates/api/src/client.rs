//! A blocking client of lockstepd, for the `lockstep` CLI (`--api URL`)
//! and tests: `unix:/PATH` (or an absolute socket path) or
//! `https://HOST:PORT` (trusting the CA in `LOCKSTEP_API_CA`).
//!
//! Tokens from `lockstep login` are kept per API in
//! `$XDG_CONFIG_HOME/lockstep/tokens.json` (else `~/.config/…`), 0600;
//! `LOCKSTEP_TOKEN` overrides.

use crate::error::ErrorBody;
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

/// The environment variable naming the API.
pub const API_ENV: &str = "LOCKSTEP_API";
/// The environment variable holding a token.
pub const TOKEN_ENV: &str = "LOCKSTEP_TOKEN";
/// The CA certificate (PEM) an `https://` API is checked against.
pub const CA_ENV: &str = "LOCKSTEP_API_CA";

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The daemon answered with an error.
    #[error("{message} (HTTP {status}, {code})")]
    Api {
        status: u16,
        code: String,
        message: String,
    },
    #[error("cannot reach lockstepd at {api}: {detail}")]
    Transport { api: String, detail: String },
    #[error("bad API address {given:?}: {reason}")]
    BadUrl { given: String, reason: String },
    #[error("not logged in to {api}: run `lockstep login --api {api}` (or set LOCKSTEP_TOKEN)")]
    NoToken { api: String },
    #[error("{}: {detail}", path.display())]
    TokenStore { path: PathBuf, detail: String },
    #[error("the API's CA certificate{}: {detail}", path.as_ref().map(|p| format!(" {}", p.display())).unwrap_or_default())]
    Ca {
        path: Option<PathBuf>,
        detail: String,
    },
}

impl ClientError {
    /// The HTTP status of an API error.
    pub fn status(&self) -> Option<u16> {
        match self {
            ClientError::Api { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// Where the API is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Endpoint {
    Unix(PathBuf),
    Https(String),
}

impl Endpoint {
    pub fn parse(s: &str) -> Result<Endpoint, ClientError> {
        let bad = |reason: &str| ClientError::BadUrl {
            given: s.to_string(),
            reason: reason.to_string(),
        };
        if let Some(path) = s.strip_prefix("unix:") {
            let path = PathBuf::from(path);
            if !path.is_absolute() {
                return Err(bad("a unix: socket path must be absolute"));
            }
            return Ok(Endpoint::Unix(path));
        }
        if s.starts_with('/') {
            return Ok(Endpoint::Unix(PathBuf::from(s)));
        }
        if let Some(rest) = s.strip_prefix("https://") {
            if rest.is_empty() || rest.contains('/') && !rest.ends_with('/') {
                return Err(bad("write https://HOST:PORT"));
            }
            return Ok(Endpoint::Https(s.trim_end_matches('/').to_string()));
        }
        Err(bad(
            "write unix:/PATH/TO/lockstepd.sock or https://HOST:PORT",
        ))
    }
}

pub struct Client {
    api: String,
    base: String,
    http: reqwest::blocking::Client,
    token: Option<String>,
    endpoint: Endpoint,
}

/// The TLS client configuration trusting the CA in `LOCKSTEP_API_CA`;
/// `Err` says what is wrong with it.
fn tls_client_config() -> Result<rustls::ClientConfig, ClientError> {
    let ca = std::env::var_os(CA_ENV).ok_or_else(|| ClientError::Ca {
        path: None,
        detail: format!("set {CA_ENV} to the CA certificate (PEM) that signed lockstepd's"),
    })?;
    tls_trusting(std::path::Path::new(&ca))
}

/// A TLS client configuration trusting the CA certificate(s) in the PEM
/// file `path` (and nothing else).
pub fn tls_trusting(path: &std::path::Path) -> Result<rustls::ClientConfig, ClientError> {
    let bad = |detail: String| ClientError::Ca {
        path: Some(path.to_path_buf()),
        detail,
    };
    let pem = std::fs::read(path).map_err(|e| bad(e.to_string()))?;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
        let cert = cert.map_err(|e| bad(e.to_string()))?;
        roots.add(cert).map_err(|e| bad(e.to_string()))?;
    }
    if roots.is_empty() {
        return Err(bad("no certificate in it".into()));
    }
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| bad(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

impl Client {
    /// A client of `api` with `token` (else the stored one, if any).
    pub fn new(api: &str, token: Option<String>) -> Result<Client, ClientError> {
        let endpoint = Endpoint::parse(api)?;
        let transport = |detail: String| ClientError::Transport {
            api: api.to_string(),
            detail,
        };
        // reqwest's TLS needs a process-wide crypto provider even for a
        // Unix socket; ring is the one lockstep uses everywhere. (Already
        // installed is fine.)
        let _ = rustls::crypto::ring::default_provider().install_default();
        let builder = reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs(900))
            .connect_timeout(Duration::from_secs(10));
        let (http, base) = match &endpoint {
            Endpoint::Unix(path) => (
                builder.unix_socket(path.as_path()).build(),
                "http://lockstepd".to_string(),
            ),
            Endpoint::Https(url) => (
                builder
                    .tls_backend_preconfigured(tls_client_config()?)
                    .build(),
                url.clone(),
            ),
        };
        let http = http.map_err(|e| transport(e.to_string()))?;
        let token = match token.or_else(|| std::env::var(TOKEN_ENV).ok()) {
            Some(t) => Some(t),
            None => stored_token(api)?,
        };
        Ok(Client {
            api: api.to_string(),
            base,
            http,
            token,
            endpoint,
        })
    }

    pub fn api(&self) -> &str {
        &self.api
    }

    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    pub fn token(&self) -> Option<&str> {
        self.token.as_deref()
    }

    pub fn set_token(&mut self, token: String) {
        self.token = Some(token);
    }

    fn send<T: DeserializeOwned>(
        &self,
        request: reqwest::blocking::RequestBuilder,
        authenticated: bool,
    ) -> Result<Option<T>, ClientError> {
        let request = if authenticated {
            let token = self.token.as_ref().ok_or_else(|| ClientError::NoToken {
                api: self.api.clone(),
            })?;
            request.bearer_auth(token)
        } else {
            request
        };
        let response = request.send().map_err(|e| ClientError::Transport {
            api: self.api.clone(),
            detail: e.to_string(),
        })?;
        let status = response.status();
        let bytes = response.bytes().map_err(|e| ClientError::Transport {
            api: self.api.clone(),
            detail: e.to_string(),
        })?;
        if !status.is_success() {
            let body: ErrorBody = serde_json::from_slice(&bytes).unwrap_or(ErrorBody {
                code: "http".into(),
                message: String::from_utf8_lossy(&bytes).chars().take(200).collect(),
            });
            return Err(ClientError::Api {
                status: status.as_u16(),
                code: body.code,
                message: body.message,
            });
        }
        if bytes.is_empty() || status == reqwest::StatusCode::NO_CONTENT {
            return Ok(None);
        }
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| ClientError::Transport {
                api: self.api.clone(),
                detail: format!("unexpected answer: {e}"),
            })
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn need<T>(&self, v: Option<T>) -> Result<T, ClientError> {
        v.ok_or_else(|| ClientError::Transport {
            api: self.api.clone(),
            detail: "an empty answer".into(),
        })
    }

    pub fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        let v = self.send(self.http.get(self.url(path)), true)?;
        self.need(v)
    }

    pub fn post<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T, ClientError> {
        let v = self.send(self.http.post(self.url(path)).json(body), true)?;
        self.need(v)
    }

    /// A POST without the token (`/v1/auth/tokens`).
    pub fn post_unauthenticated<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T, ClientError> {
        let v = self.send(self.http.post(self.url(path)).json(body), false)?;
        self.need(v)
    }

    pub fn delete(&self, path: &str) -> Result<(), ClientError> {
        self.send::<serde_json::Value>(self.http.delete(self.url(path)), true)
            .map(drop)
    }

    /// `POST /v1/auth/tokens`; the token is kept for this client's next calls.
    pub fn login(
        &mut self,
        name: &str,
        password: &str,
    ) -> Result<crate::routes::TokenReply, ClientError> {
        let body = serde_json::json!({"name": name, "password": password});
        let reply: Option<crate::routes::TokenReply> = self.send(
            self.http.post(self.url("/v1/auth/tokens")).json(&body),
            false,
        )?;
        let reply = self.need(reply)?;
        self.token = Some(reply.token.clone());
        Ok(reply)
    }

    /// Open `/v1/vms/NAME/console` (Unix-socket APIs).
    pub fn console(
        &self,
        vm: &str,
    ) -> Result<tungstenite::WebSocket<std::os::unix::net::UnixStream>, ClientError> {
        let transport = |detail: String| ClientError::Transport {
            api: self.api.clone(),
            detail,
        };
        let Endpoint::Unix(path) = &self.endpoint else {
            return Err(transport(
                "the console is reached over the Unix socket only, for now".into(),
            ));
        };
        let token = self.token.as_ref().ok_or_else(|| ClientError::NoToken {
            api: self.api.clone(),
        })?;
        let stream =
            std::os::unix::net::UnixStream::connect(path).map_err(|e| transport(e.to_string()))?;
        use tungstenite::client::IntoClientRequest;
        let mut request = format!("ws://lockstepd/v1/vms/{vm}/console")
            .into_client_request()
            .map_err(|e| transport(e.to_string()))?;
        let value = format!("Bearer {token}")
            .parse()
            .map_err(|_| transport("the token is not a valid header value".into()))?;
        request.headers_mut().insert("authorization", value);
        match tungstenite::client(request, stream) {
            Ok((ws, _)) => Ok(ws),
            Err(tungstenite::HandshakeError::Failure(tungstenite::Error::Http(response))) => {
                let status = response.status().as_u16();
                let body: Option<ErrorBody> = response
                    .body()
                    .as_ref()
                    .and_then(|b| serde_json::from_slice(b).ok());
                let body = body.unwrap_or(ErrorBody {
                    code: "http".into(),
                    message: format!("HTTP {status}"),
                });
                Err(ClientError::Api {
                    status,
                    code: body.code,
                    message: body.message,
                })
            }
            Err(e) => Err(transport(e.to_string())),
        }
    }
}

fn tokens_path() -> Option<PathBuf> {
    let absolute = |v: &str| {
        std::env::var_os(v)
            .map(PathBuf::from)
            .filter(|p| p.is_absolute())
    };
    absolute("XDG_CONFIG_HOME")
        .or_else(|| absolute("HOME").map(|h| h.join(".config")))
        .map(|d| d.join("lockstep/tokens.json"))
}

#[derive(serde::Serialize, serde::Deserialize, Default)]
struct TokenFile {
    tokens: BTreeMap<String, StoredToken>,
}

#[derive(serde::Serialize, serde::Deserialize, Clone)]
struct StoredToken {
    token: String,
    expires_at: u64,
}

fn read_tokens(path: &std::path::Path) -> Result<TokenFile, ClientError> {
    match std::fs::read(path) {
        Ok(b) if b.len() > 1 << 20 => Err(ClientError::TokenStore {
            path: path.to_path_buf(),
            detail: "larger than 1 MiB".into(),
        }),
        Ok(b) => serde_json::from_slice(&b).map_err(|e| ClientError::TokenStore {
            path: path.to_path_buf(),
            detail: e.to_string(),
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(TokenFile::default()),
        Err(e) => Err(ClientError::TokenStore {
            path: path.to_path_buf(),
            detail: e.to_string(),
        }),
    }
}

/// The token `lockstep login` kept for `api`, if unexpired.
pub fn stored_token(api: &str) -> Result<Option<String>, ClientError> {
    let Some(path) = tokens_path() else {
        return Ok(None);
    };
    let file = read_tokens(&path)?;
    Ok(file
        .tokens
        .get(api)
        .filter(|t| t.expires_at > vmm::now())
        .map(|t| t.token.clone()))
}

/// Keep `token` for `api` (0600, written new and renamed); the file's path.
pub fn store_token(api: &str, token: &str, expires_at: u64) -> Result<PathBuf, ClientError> {
    let path = tokens_path().ok_or_else(|| ClientError::TokenStore {
        path: PathBuf::from("~/.config/lockstep/tokens.json"),
        detail: "no $XDG_CONFIG_HOME or $HOME".into(),
    })?;
    let err = |detail: String| ClientError::TokenStore {
        path: path.clone(),
        detail,
    };
    if let Some(dir) = path.parent() {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| err(e.to_string()))?;
    }
    let mut file = read_tokens(&path)?;
    let now = vmm::now();
    file.tokens.retain(|_, t| t.expires_at > now);
    file.tokens.insert(
        api.to_string(),
        StoredToken {
            token: token.to_string(),
            expires_at,
        },
    );
    let bytes = serde_json::to_vec_pretty(&file).map_err(|e| err(e.to_string()))?;
    durable::write(&path, &durable::Options::default(), &bytes).map_err(|e| err(e.to_string()))?;
    Ok(path)
}
