//! Mutual TLS: loading a node's certificates, making them, and explaining
//! rustls's refusals in words an operator can act on.

use crate::LinkError;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls::client::danger::ServerCertVerifier;
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::{AlertDescription, CertificateError, ClientConfig, RootCertStore, ServerConfig};
use std::fs;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The DNS name every node certificate carries and every client checks,
/// so that peers are identified by their CA, not by their address.
pub const SERVER_NAME: &str = "lockstep-node";
const CA_NAME: &str = "lockstep CA";

/// A node's loaded certificates: what it presents and which CA it trusts.
#[derive(Clone)]
pub struct TlsIdentity {
    inner: Arc<Identity>,
}

struct Identity {
    client: Arc<ClientConfig>,
    server: Arc<ServerConfig>,
    ca_path: PathBuf,
}

impl std::fmt::Debug for TlsIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TlsIdentity(CA {})", self.inner.ca_path.display())
    }
}

/// One connection's TLS state, owned by its pump.
pub(crate) struct TlsSession {
    pub(crate) conn: rustls::Connection,
    ca_path: PathBuf,
}

impl TlsIdentity {
    /// Loads `dir`: ca.pem (the CA that signs every node), node.pem (this
    /// node's certificate chain) and node.key (its PKCS#8 key).
    pub fn load(dir: &Path) -> Result<TlsIdentity, LinkError> {
        let ca_path = dir.join("ca.pem");
        let chain_path = dir.join("node.pem");
        let key_path = dir.join("node.key");
        let roots = Arc::new(root_store(&ca_path)?);
        let chain = read_certs(&chain_path)?;
        let key = PrivateKeyDer::from_pem_file(&key_path)
            .map_err(|e| pem_error(&key_path, "private key", e))?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let server_verifier = server_verifier(roots.clone(), &provider, &ca_path)?;
        check_chain(&server_verifier, &chain).map_err(|e| {
            LinkError::bad_file(
                &chain_path,
                format!(
                    "is not a node certificate signed by {}: {e}",
                    ca_path.display()
                ),
            )
        })?;
        let key_error = |e: rustls::Error| {
            let chain = chain_path.display();
            let reason = match e {
                rustls::Error::InconsistentKeys(_) => format!("is not the key of {chain}"),
                other => format!("unusable with {chain}: {other}"),
            };
            LinkError::bad_file(&key_path, reason)
        };
        let client = ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(key_error)?
            .with_webpki_verifier(server_verifier)
            .with_client_auth_cert(chain.clone(), key.clone_key())
            .map_err(key_error)?;
        let client_verifier = WebPkiClientVerifier::builder_with_provider(roots, provider.clone())
            .build()
            .map_err(|e| LinkError::bad_file(&ca_path, format!("unusable as a CA: {e}")))?;
        let server = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(key_error)?
            .with_client_cert_verifier(client_verifier)
            .with_single_cert(chain, key)
            .map_err(key_error)?;
        Ok(TlsIdentity {
            inner: Arc::new(Identity {
                client: Arc::new(client),
                server: Arc::new(server),
                ca_path,
            }),
        })
    }

    pub(crate) fn client_session(&self) -> Result<TlsSession, LinkError> {
        let name = ServerName::try_from(SERVER_NAME).map_err(|e| LinkError::Tls {
            peer: SERVER_NAME.into(),
            reason: e.to_string(),
        })?;
        let conn = rustls::ClientConnection::new(self.inner.client.clone(), name)
            .map_err(|e| self.setup_error(e))?;
        Ok(self.session(conn.into()))
    }

    pub(crate) fn server_session(&self) -> Result<TlsSession, LinkError> {
        let conn = rustls::ServerConnection::new(self.inner.server.clone())
            .map_err(|e| self.setup_error(e))?;
        Ok(self.session(conn.into()))
    }

    fn session(&self, conn: rustls::Connection) -> TlsSession {
        TlsSession {
            conn,
            ca_path: self.inner.ca_path.clone(),
        }
    }

    fn setup_error(&self, e: rustls::Error) -> LinkError {
        LinkError::bad_file(&self.inner.ca_path, format!("TLS setup failed: {e}"))
    }
}

impl TlsSession {
    /// A one-line account of a TLS failure.
    pub(crate) fn explain(&self, e: &rustls::Error) -> String {
        let ca = self.ca_path.display();
        match e {
            rustls::Error::InvalidCertificate(
                CertificateError::UnknownIssuer | CertificateError::BadSignature,
            ) => format!("the peer's certificate is not signed by this host's CA ({ca})"),
            rustls::Error::InvalidCertificate(CertificateError::NotValidForName)
            | rustls::Error::InvalidCertificate(CertificateError::NotValidForNameContext {
                ..
            }) => {
                format!("the peer's certificate is not for {SERVER_NAME}")
            }
            rustls::Error::InvalidCertificate(other) => {
                format!("the peer's certificate is invalid: {other:?}")
            }
            rustls::Error::NoCertificatesPresented => "the peer presented no certificate".into(),
            rustls::Error::AlertReceived(
                alert @ (AlertDescription::UnknownCA
                | AlertDescription::BadCertificate
                | AlertDescription::CertificateUnknown
                | AlertDescription::DecryptError),
            ) => format!(
                "the peer rejected this host's certificate ({alert:?}); \
                 is this host's node.pem signed by the peer's CA?"
            ),
            rustls::Error::InvalidMessage(_) | rustls::Error::InappropriateMessage { .. } => {
                format!("the peer does not speak TLS (a plain endpoint?): {e}")
            }
            other => other.to_string(),
        }
    }
}

fn root_store(ca_path: &Path) -> Result<RootCertStore, LinkError> {
    let mut roots = RootCertStore::empty();
    for cert in read_certs(ca_path)? {
        roots.add(cert).map_err(|e| {
            LinkError::bad_file(ca_path, format!("is not a usable CA certificate: {e}"))
        })?;
    }
    Ok(roots)
}

fn server_verifier(
    roots: Arc<RootCertStore>,
    provider: &Arc<CryptoProvider>,
    ca_path: &Path,
) -> Result<Arc<WebPkiServerVerifier>, LinkError> {
    WebPkiServerVerifier::builder_with_provider(roots, provider.clone())
        .build()
        .map_err(|e| LinkError::bad_file(ca_path, format!("unusable as a CA: {e}")))
}

/// Checks that `chain` is a node certificate the CA vouches for.
fn check_chain(
    verifier: &WebPkiServerVerifier,
    chain: &[CertificateDer<'static>],
) -> Result<(), rustls::Error> {
    let (leaf, intermediates) = chain
        .split_first()
        .ok_or(rustls::Error::NoCertificatesPresented)?;
    let name =
        ServerName::try_from(SERVER_NAME).map_err(|e| rustls::Error::General(e.to_string()))?;
    verifier
        .verify_server_cert(leaf, intermediates, &name, &[], UnixTime::now())
        .map(|_| ())
}

fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, LinkError> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| pem_error(path, "certificate", e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_error(path, "certificate", e))?;
    if certs.is_empty() {
        return Err(LinkError::bad_file(path, "holds no PEM certificate"));
    }
    Ok(certs)
}

fn pem_error(path: &Path, what: &str, e: pem::Error) -> LinkError {
    match e {
        pem::Error::Io(e) => LinkError::io(format!("reading {}", path.display()))(e),
        pem::Error::NoItemsFound => LinkError::bad_file(path, format!("holds no PEM {what}")),
        other => LinkError::bad_file(path, format!("is not a valid PEM {what} file: {other}")),
    }
}

/// What [`tls_init`] makes.
#[derive(Debug, Clone)]
pub struct TlsInit<'a> {
    /// The node directory to create: ca.pem (the CA's certificate, to
    /// trust), node.pem and node.key. Never the CA's key.
    pub node_dir: &'a Path,
    /// The CA's directory (ca.pem, ca.key): used if it holds a CA, made
    /// (0700) with a new CA if not. Keep it off the nodes.
    pub ca_dir: &'a Path,
    /// This node's name, its certificate's common name: one identity per
    /// node (every node certificate also names [`SERVER_NAME`], which
    /// peers check, so peers are identified by their CA; a host name or
    /// address is also a subject alternative name, for HTTPS clients).
    pub node_name: &'a str,
    /// How long the node certificate is valid, from now.
    pub days: u32,
}

/// Validity of a new CA.
const CA_DAYS: i64 = 3650;

/// Creates a node directory ([`TlsInit`]), with a new CA in the CA
/// directory if it holds none. Refuses to overwrite any file. Returns
/// whether the CA was new.
pub fn tls_init(init: &TlsInit<'_>) -> Result<bool, LinkError> {
    let dir = init.node_dir;
    for name in ["ca.pem", "node.key", "node.pem", "ca.key"] {
        let path = dir.join(name);
        if path.symlink_metadata().is_ok() {
            return Err(LinkError::bad_file(
                path,
                "already exists; refusing to overwrite it",
            ));
        }
    }
    if init.days == 0 || init.node_name.is_empty() || init.node_name.len() > 64 {
        return Err(LinkError::bad_file(
            dir,
            "needs a node name of 1 to 64 bytes and a validity of at least a day",
        ));
    }
    let ca_pem_path = init.ca_dir.join("ca.pem");
    let ca_key_path = init.ca_dir.join("ca.key");
    let new_ca = ca_key_path.symlink_metadata().is_err();
    let (ca_pem, ca_key) = if new_ca {
        let key = KeyPair::generate()?;
        let mut params = ca_params();
        let now = time::OffsetDateTime::now_utc();
        params.not_before = now - time::Duration::hours(1);
        params.not_after = now + time::Duration::days(CA_DAYS);
        (params.self_signed(&key)?.pem(), key)
    } else {
        (read_text(&ca_pem_path)?, read_ca_key(&ca_key_path)?)
    };
    let node_key = KeyPair::generate()?;
    let node_pem = node_params(init.node_name, init.days)?
        .signed_by(&node_key, &Issuer::new(ca_params(), &ca_key))?
        .pem();
    verify_issued(&ca_pem, &node_pem, init.ca_dir)?;

    if new_ca {
        make_dir(init.ca_dir)?;
        write_new(&ca_key_path, ca_key.serialize_pem().as_bytes(), 0o600)?;
        write_new(&ca_pem_path, ca_pem.as_bytes(), 0o644)?;
    }
    make_dir(dir)?;
    write_new(&dir.join("ca.pem"), ca_pem.as_bytes(), 0o644)?;
    write_new(
        &dir.join("node.key"),
        node_key.serialize_pem().as_bytes(),
        0o600,
    )?;
    write_new(&dir.join("node.pem"), node_pem.as_bytes(), 0o644)?;
    Ok(new_ca)
}

fn make_dir(dir: &Path) -> Result<(), LinkError> {
    if dir.exists() {
        return Ok(());
    }
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(LinkError::io(format!("creating {}", dir.display())))
}

/// The CA's identity. It is the same for every CA this crate makes, so a
/// CA loaded back from ca.key signs with the subject its ca.pem carries.
fn ca_params() -> CertificateParams {
    let mut params = CertificateParams::default();
    params.distinguished_name.push(DnType::CommonName, CA_NAME);
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params
}

fn node_params(name: &str, days: u32) -> Result<CertificateParams, LinkError> {
    // Peers check SERVER_NAME; the node's own name (a host name or an
    // address) is there too, for clients that reach it by that name (the
    // control plane's HTTPS).
    let mut names = vec![SERVER_NAME.to_string()];
    let host_like = !name.is_empty()
        && name != SERVER_NAME
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b':'));
    if host_like {
        names.push(name.to_string());
    }
    let mut params = CertificateParams::new(names)?;
    params.distinguished_name.push(DnType::CommonName, name);
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::hours(1);
    params.not_after = now + time::Duration::days(i64::from(days));
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    params.use_authority_key_identifier_extension = true;
    Ok(params)
}

fn read_text(path: &Path) -> Result<String, LinkError> {
    fs::read_to_string(path).map_err(LinkError::io(format!("reading {}", path.display())))
}

fn read_ca_key(path: &Path) -> Result<KeyPair, LinkError> {
    KeyPair::from_pem(&read_text(path)?)
        .map_err(|e| LinkError::bad_file(path, format!("is not a usable private key: {e}")))
}

/// Checks that the new node certificate chains to `ca_pem`: it does not if
/// the source directory's ca.key and ca.pem do not belong together.
fn verify_issued(ca_pem: &str, node_pem: &str, src: &Path) -> Result<(), LinkError> {
    let ca_path = src.join("ca.pem");
    let bad = |reason: String| LinkError::bad_file(&ca_path, reason);
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        let cert = cert.map_err(|e| bad(format!("is not a valid PEM certificate file: {e}")))?;
        roots
            .add(cert)
            .map_err(|e| bad(format!("is not a usable CA certificate: {e}")))?;
    }
    let node = CertificateDer::from_pem_slice(node_pem.as_bytes())
        .map_err(|e| bad(format!("generated an unreadable certificate: {e}")))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = server_verifier(Arc::new(roots), &provider, &ca_path)?;
    check_chain(&verifier, &[node]).map_err(|e| {
        bad(format!(
            "does not match {} (certificates signed with it fail: {e})",
            src.join("ca.key").display()
        ))
    })
}

/// Writes a file that must not exist yet, crash-safely (`durable`: new
/// temporary file, fsync, link, fsync the directory).
fn write_new(path: &Path, contents: &[u8], mode: u32) -> Result<(), LinkError> {
    let options = durable::Options {
        mode,
        replace: false,
        ..durable::Options::default()
    };
    durable::write(path, &options, contents).map_err(|e| match e {
        durable::Error::Exists { path } => {
            LinkError::bad_file(path, "already exists; refusing to overwrite it")
        }
        e => LinkError::io(format!("writing {}", path.display()))(e.into_io()),
    })
}
