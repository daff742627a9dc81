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
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
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

/// Creates `dir` with a new CA (ca.pem, ca.key) and a node certificate
/// signed by it (node.pem, node.key). With `ca_from`, signs with that
/// directory's CA instead, copying its ca.pem but never its ca.key: that is
/// how a second host joins. Refuses to overwrite any of these files.
pub fn tls_init(dir: &Path, ca_from: Option<&Path>) -> Result<(), LinkError> {
    let mut outputs = vec!["ca.pem", "node.key", "node.pem"];
    if ca_from.is_none() {
        outputs.push("ca.key");
    }
    for name in &outputs {
        let path = dir.join(name);
        if path.symlink_metadata().is_ok() {
            return Err(LinkError::bad_file(
                path,
                "already exists; refusing to overwrite it",
            ));
        }
    }
    let (ca_pem, ca_key) = match ca_from {
        Some(src) => (
            read_text(&src.join("ca.pem"))?,
            read_ca_key(&src.join("ca.key"))?,
        ),
        None => {
            let key = KeyPair::generate()?;
            (ca_params().self_signed(&key)?.pem(), key)
        }
    };
    let node_key = KeyPair::generate()?;
    let node_pem = node_params()?
        .signed_by(&node_key, &Issuer::new(ca_params(), &ca_key))?
        .pem();
    verify_issued(&ca_pem, &node_pem, ca_from)?;

    if !dir.exists() {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(LinkError::io(format!("creating {}", dir.display())))?;
    }
    write_new(&dir.join("ca.pem"), ca_pem.as_bytes(), 0o644)?;
    if ca_from.is_none() {
        write_new(
            &dir.join("ca.key"),
            ca_key.serialize_pem().as_bytes(),
            0o600,
        )?;
    }
    write_new(
        &dir.join("node.key"),
        node_key.serialize_pem().as_bytes(),
        0o600,
    )?;
    write_new(&dir.join("node.pem"), node_pem.as_bytes(), 0o644)?;
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(LinkError::io(format!("syncing {}", dir.display())))
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

fn node_params() -> Result<CertificateParams, LinkError> {
    let mut params = CertificateParams::new(vec![SERVER_NAME.to_string()])?;
    params
        .distinguished_name
        .push(DnType::CommonName, "lockstep node");
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
fn verify_issued(ca_pem: &str, node_pem: &str, ca_from: Option<&Path>) -> Result<(), LinkError> {
    let src = ca_from.unwrap_or(Path::new("."));
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

/// Writes a file that must not exist yet: new temporary file, fsync, rename.
fn write_new(path: &Path, contents: &[u8], mode: u32) -> Result<(), LinkError> {
    let mut tmp_name = path.as_os_str().to_owned();
    tmp_name.push(".tmp");
    let tmp = PathBuf::from(tmp_name);
    // A leftover from an interrupted run; if removing fails, creating fails.
    let _ = fs::remove_file(&tmp);
    let context = format!("writing {}", path.display());
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&tmp)
        .and_then(|mut file| {
            file.write_all(contents)?;
            file.sync_all()
        })
        .and_then(|()| fs::rename(&tmp, path))
        .map_err(LinkError::io(context))
}
