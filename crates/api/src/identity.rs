//! Identity: projects, users with roles, and bearer tokens.
//!
//! Passwords are kept as argon2id hashes (PHC strings). A token is
//! `ls1.PAYLOAD.MAC`: the payload (user, project, expiry, a nonce) in
//! base64url JSON and an HMAC-SHA256 over it under the daemon's token key
//! (`HOME/api/token-key`, 0600). Checking a token needs no lookup table,
//! so tokens survive a daemon restart; the user is looked up on every
//! call, so deleting a user ends their tokens.
//!
//! The first start creates project `admin` with user `admin` (role
//! `admin`) and writes its random password to `HOME/admin-password`
//! (0600) and nowhere else.

use crate::error::{ApiError, ApiResult};
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use utoipa::ToSchema;

/// The identity file's format.
const FORMAT: u32 = 1;
/// The identity file may not be larger than this.
const MAX_IDENTITY_BYTES: u64 = 16 << 20;
/// A token longer than this is refused unread.
pub const MAX_TOKEN_LEN: usize = 1024;
/// Passwords are 8 to this many bytes.
pub const MAX_PASSWORD_LEN: usize = 1024;
const MIN_PASSWORD_LEN: usize = 8;
/// The most users and projects one daemon keeps.
const MAX_USERS: usize = 10_000;
const MAX_PROJECTS: usize = 10_000;
/// The project and user made on the first start.
pub const ADMIN: &str = "admin";
/// Where the first admin password is written, under the daemon's home.
pub const ADMIN_PASSWORD_FILE: &str = "admin-password";

/// What a user may do in their project.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Everything, and users and projects.
    Admin,
    /// Create, change and delete the project's resources.
    Member,
    /// Read only.
    Reader,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Member => "member",
            Role::Reader => "reader",
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserRecord {
    name: String,
    project: String,
    role: Role,
    /// argon2id PHC string.
    password: String,
    created: u64,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct IdentityFile {
    format: u32,
    projects: Vec<String>,
    users: Vec<UserRecord>,
}

/// A user as the API shows them (never the hash).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct UserView {
    pub name: String,
    pub project: String,
    pub role: Role,
    pub created: u64,
}

/// Who makes a request: from a checked token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Caller {
    pub user: String,
    pub project: String,
    pub role: Role,
}

impl Caller {
    /// Refuse a reader's change.
    pub fn may_change(&self) -> ApiResult<()> {
        match self.role {
            Role::Admin | Role::Member => Ok(()),
            Role::Reader => Err(ApiError::Forbidden(format!(
                "user {:?} has role reader in project {:?}: it may only read",
                self.user, self.project
            ))),
        }
    }

    /// Refuse anyone but an admin.
    pub fn must_be_admin(&self) -> ApiResult<()> {
        match self.role {
            Role::Admin => Ok(()),
            r => Err(ApiError::Forbidden(format!(
                "user {:?} has role {}; this needs role admin",
                self.user,
                r.as_str()
            ))),
        }
    }
}

#[derive(Serialize, Deserialize)]
struct Claims {
    /// User.
    u: String,
    /// Project.
    p: String,
    /// Expiry, Unix seconds.
    e: u64,
    /// Nonce (base64url of 12 random bytes).
    n: String,
}

/// The daemon's users, projects and token key.
pub struct Identity {
    path: PathBuf,
    key: Mutex<[u8; 32]>,
    data: Mutex<IdentityFile>,
}

fn io_err(what: &str, path: &Path, e: impl std::fmt::Display) -> ApiError {
    ApiError::Internal(format!("{what} {}: {e}", path.display()))
}

pub(crate) fn random<const N: usize>() -> ApiResult<[u8; N]> {
    let mut buf = [0u8; N];
    vmm::random_bytes(&mut buf).map_err(|e| ApiError::Internal(e.to_string()))?;
    Ok(buf)
}

fn hash_password(password: &str) -> ApiResult<String> {
    let salt = SaltString::encode_b64(&random::<16>()?)
        .map_err(|e| ApiError::Internal(format!("password salt: {e}")))?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| ApiError::Internal(format!("hashing a password: {e}")))
}

/// Check a new password's length.
fn check_password(password: &str) -> ApiResult<()> {
    if password.len() < MIN_PASSWORD_LEN || password.len() > MAX_PASSWORD_LEN {
        return Err(ApiError::BadRequest(format!(
            "passwords are {MIN_PASSWORD_LEN} to {MAX_PASSWORD_LEN} bytes long"
        )));
    }
    Ok(())
}

fn check_name(what: &'static str, name: &str) -> ApiResult<()> {
    vmm::check_name(what, name).map_err(|e| ApiError::BadRequest(e.to_string()))
}

/// Write `bytes` to `path` (0600) crash-safely.
pub(crate) fn write_private(path: &Path, bytes: &[u8]) -> ApiResult<()> {
    durable::write(path, &durable::Options::default(), bytes)
        .map_err(|e| io_err("writing", path, e))
}

/// Create `dir` (0700) if missing.
pub(crate) fn private_dir(dir: &Path) -> ApiResult<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| io_err("creating", dir, e))
}

impl Identity {
    /// Open the identity kept under `home` (`api/identity.json`,
    /// `api/token-key`), making the first admin if there is none.
    pub fn open(home: &Path) -> ApiResult<Identity> {
        let dir = home.join("api");
        private_dir(&dir)?;
        let key_path = dir.join("token-key");
        let key = match std::fs::read(&key_path) {
            Ok(bytes) => <[u8; 32]>::try_from(bytes.as_slice()).map_err(|_| {
                ApiError::Internal(format!(
                    "{}: a token key is 32 bytes, this file has {}",
                    key_path.display(),
                    bytes.len()
                ))
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let key = random::<32>()?;
                write_private(&key_path, &key)?;
                key
            }
            Err(e) => return Err(io_err("reading", &key_path, e)),
        };
        let path = dir.join("identity.json");
        let data = match std::fs::File::open(&path) {
            Ok(f) => {
                let mut text = String::new();
                f.take(MAX_IDENTITY_BYTES + 1)
                    .read_to_string(&mut text)
                    .map_err(|e| io_err("reading", &path, e))?;
                if text.len() as u64 > MAX_IDENTITY_BYTES {
                    return Err(io_err("reading", &path, "larger than 16 MiB"));
                }
                let data: IdentityFile =
                    serde_json::from_str(&text).map_err(|e| io_err("reading", &path, e))?;
                if data.format > FORMAT {
                    return Err(io_err(
                        "reading",
                        &path,
                        format!(
                            "format {} is newer than this lockstepd reads ({FORMAT})",
                            data.format
                        ),
                    ));
                }
                data
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let password = B64.encode(random::<18>()?);
                let data = IdentityFile {
                    format: FORMAT,
                    projects: vec![ADMIN.to_string()],
                    users: vec![UserRecord {
                        name: ADMIN.to_string(),
                        project: ADMIN.to_string(),
                        role: Role::Admin,
                        password: hash_password(&password)?,
                        created: vmm::now(),
                    }],
                };
                write_private(
                    &home.join(ADMIN_PASSWORD_FILE),
                    format!("{password}\n").as_bytes(),
                )?;
                let bytes = serde_json::to_vec_pretty(&data)
                    .map_err(|e| ApiError::Internal(e.to_string()))?;
                write_private(&path, &bytes)?;
                tracing::info!(
                    "created user admin in project admin; its password is in {}",
                    home.join(ADMIN_PASSWORD_FILE).display()
                );
                data
            }
            Err(e) => return Err(io_err("reading", &path, e)),
        };
        Ok(Identity {
            path,
            key: Mutex::new(key),
            data: Mutex::new(data),
        })
    }

    fn data(&self) -> std::sync::MutexGuard<'_, IdentityFile> {
        self.data.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn save(&self, data: &IdentityFile) -> ApiResult<()> {
        let bytes =
            serde_json::to_vec_pretty(data).map_err(|e| ApiError::Internal(e.to_string()))?;
        write_private(&self.path, &bytes)
    }

    fn mac(&self, signed: &str) -> ApiResult<Hmac<Sha256>> {
        let mut mac = Hmac::<Sha256>::new_from_slice(&*self.key())
            .map_err(|e| ApiError::Internal(format!("token key: {e}")))?;
        mac.update(signed.as_bytes());
        Ok(mac)
    }

    /// Check `name`'s `password` (slow on purpose: argon2) and issue a
    /// token that expires `ttl` seconds from now.
    pub fn issue(&self, name: &str, password: &str, ttl: u64) -> ApiResult<(String, u64)> {
        let refused = || ApiError::Unauthorized("wrong user name or password".to_string());
        if password.len() > MAX_PASSWORD_LEN || name.len() > vmm::MAX_NAME_LEN {
            return Err(refused());
        }
        let (project, hash) = {
            let data = self.data();
            match data.users.iter().find(|u| u.name == name) {
                Some(u) => (u.project.clone(), u.password.clone()),
                None => return Err(refused()),
            }
        };
        let parsed = PasswordHash::new(&hash)
            .map_err(|e| ApiError::Internal(format!("user {name:?}'s password hash: {e}")))?;
        Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .map_err(|_| refused())?;
        let expires = vmm::now().saturating_add(ttl);
        Ok((self.sign(name, &project, expires)?, expires))
    }

    /// A token for `caller` that lasts `ttl` seconds: the daemon acting
    /// for its caller on another host of the cluster (copying an image).
    pub fn mint(&self, caller: &Caller, ttl: u64) -> ApiResult<String> {
        self.sign(
            &caller.user,
            &caller.project,
            vmm::now().saturating_add(ttl),
        )
    }

    fn sign(&self, user: &str, project: &str, expires: u64) -> ApiResult<String> {
        let claims = Claims {
            u: user.to_string(),
            p: project.to_string(),
            e: expires,
            n: B64.encode(random::<12>()?),
        };
        let payload = serde_json::to_vec(&claims).map_err(|e| ApiError::Internal(e.to_string()))?;
        let signed = format!("ls1.{}", B64.encode(payload));
        let mac = self.mac(&signed)?.finalize().into_bytes();
        Ok(format!("{signed}.{}", B64.encode(mac)))
    }

    /// Who holds `token`, if it is ours, unexpired, and its user exists.
    pub fn check(&self, token: &str) -> ApiResult<Caller> {
        let bad = |why: &str| ApiError::Unauthorized(format!("invalid token: {why}"));
        if token.len() > MAX_TOKEN_LEN {
            return Err(bad("too long"));
        }
        let (signed, mac) = token.rsplit_once('.').ok_or_else(|| bad("malformed"))?;
        let payload = signed
            .strip_prefix("ls1.")
            .ok_or_else(|| bad("malformed"))?;
        let mac = B64.decode(mac).map_err(|_| bad("malformed"))?;
        self.mac(signed)?
            .verify_slice(&mac)
            .map_err(|_| bad("not issued by this control plane"))?;
        let payload = B64.decode(payload).map_err(|_| bad("malformed"))?;
        let claims: Claims = serde_json::from_slice(&payload).map_err(|_| bad("malformed"))?;
        if claims.e <= vmm::now() {
            return Err(ApiError::Unauthorized(format!(
                "token expired at {}; get a new one (`lockstep login`)",
                vmm::format_time(claims.e)
            )));
        }
        let data = self.data();
        let user = data
            .users
            .iter()
            .find(|u| u.name == claims.u && u.project == claims.p)
            .ok_or_else(|| bad("its user no longer exists"))?;
        Ok(Caller {
            user: user.name.clone(),
            project: user.project.clone(),
            role: user.role,
        })
    }

    pub fn projects(&self) -> Vec<String> {
        self.data().projects.clone()
    }

    pub fn has_project(&self, name: &str) -> bool {
        self.data().projects.iter().any(|p| p == name)
    }

    pub fn users(&self) -> Vec<UserView> {
        self.data().users.iter().map(view).collect()
    }

    /// Make `change` here: checked, saved, then in effect.
    pub fn change(&self, change: &Change) -> ApiResult<Option<UserView>> {
        let mut data = self.data();
        let mut new = data.clone();
        let shown = change.apply(&mut new)?;
        self.save(&new)?;
        *data = new;
        Ok(shown)
    }

    /// The key and the users and projects, as a cluster shares them (in
    /// etcd): every host checks every host's tokens.
    pub fn shared(&self) -> ApiResult<Vec<u8>> {
        let shared = Shared {
            key: B64.encode(*self.key()),
            data: self.data().clone(),
        };
        serde_json::to_vec(&shared).map_err(|e| ApiError::Internal(e.to_string()))
    }

    /// Take on the cluster's key, users and projects (kept here too).
    pub fn adopt(&self, blob: &[u8]) -> ApiResult<()> {
        let shared = Shared::parse(blob)?;
        let key = shared.key()?;
        if *self.key() != key {
            write_private(&self.key_path(), &key)?;
            *self.key.lock().unwrap_or_else(|p| p.into_inner()) = key;
        }
        let mut data = self.data();
        self.save(&shared.data)?;
        *data = shared.data;
        Ok(())
    }

    /// Remove `home`'s admin password file when the password in it is no
    /// longer admin's (this host took on a cluster's identity): it would
    /// only mislead. True when it was removed.
    pub fn drop_stale_admin_password(&self, home: &Path) -> ApiResult<bool> {
        let path = home.join(ADMIN_PASSWORD_FILE);
        let password = match std::fs::read_to_string(&path) {
            Ok(p) => p,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(io_err("reading", &path, e)),
        };
        match self.issue(ADMIN, password.trim(), 1) {
            Ok(_) => Ok(false),
            Err(ApiError::Unauthorized(_)) => {
                std::fs::remove_file(&path).map_err(|e| io_err("removing", &path, e))?;
                Ok(true)
            }
            Err(e) => Err(e),
        }
    }

    fn key_path(&self) -> PathBuf {
        self.path.with_file_name("token-key")
    }

    fn key(&self) -> std::sync::MutexGuard<'_, [u8; 32]> {
        self.key.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// What a cluster keeps of its identity in etcd.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Shared {
    /// The token key, base64url.
    key: String,
    data: IdentityFile,
}

impl Shared {
    fn parse(blob: &[u8]) -> ApiResult<Shared> {
        if blob.len() as u64 > MAX_IDENTITY_BYTES {
            return Err(ApiError::Internal(
                "the cluster's identity record is larger than 16 MiB".into(),
            ));
        }
        let shared: Shared = serde_json::from_slice(blob)
            .map_err(|e| ApiError::Internal(format!("the cluster's identity record: {e}")))?;
        if shared.data.format > FORMAT {
            return Err(ApiError::Internal(format!(
                "the cluster's identity record has format {}, newer than this lockstepd reads ({FORMAT})",
                shared.data.format
            )));
        }
        Ok(shared)
    }

    fn key(&self) -> ApiResult<[u8; 32]> {
        B64.decode(&self.key)
            .ok()
            .and_then(|k| <[u8; 32]>::try_from(k.as_slice()).ok())
            .ok_or_else(|| {
                ApiError::Internal("the cluster's identity record: its key is not 32 bytes".into())
            })
    }
}

/// A change to the users and projects, made here or (in a cluster) to the
/// record in etcd.
#[derive(Clone, Debug)]
pub enum Change {
    AddProject(String),
    AddUser(Box<UserRecord>),
    DeleteUser { name: String, project: String },
}

impl Change {
    pub fn prepare_project(name: &str) -> ApiResult<Change> {
        check_name("project name", name)?;
        Ok(Change::AddProject(name.to_string()))
    }

    /// Check the name and password and hash the password (slow: argon2).
    pub fn prepare_user(
        name: &str,
        password: &str,
        project: &str,
        role: Role,
    ) -> ApiResult<Change> {
        check_name("user name", name)?;
        check_password(password)?;
        Ok(Change::AddUser(Box::new(UserRecord {
            name: name.to_string(),
            project: project.to_string(),
            role,
            password: hash_password(password)?,
            created: vmm::now(),
        })))
    }

    fn apply(&self, data: &mut IdentityFile) -> ApiResult<Option<UserView>> {
        match self {
            Change::AddProject(name) => {
                if data.projects.iter().any(|p| p == name) {
                    return Err(ApiError::Conflict(format!(
                        "project {name:?} exists already"
                    )));
                }
                if data.projects.len() >= MAX_PROJECTS {
                    return Err(ApiError::Conflict(format!(
                        "at most {MAX_PROJECTS} projects"
                    )));
                }
                data.projects.push(name.clone());
                Ok(None)
            }
            Change::AddUser(record) => {
                if !data.projects.contains(&record.project) {
                    return Err(ApiError::BadRequest(format!(
                        "no project named {:?}",
                        record.project
                    )));
                }
                if data.users.iter().any(|u| u.name == record.name) {
                    return Err(ApiError::Conflict(format!(
                        "user {:?} exists already",
                        record.name
                    )));
                }
                if data.users.len() >= MAX_USERS {
                    return Err(ApiError::Conflict(format!("at most {MAX_USERS} users")));
                }
                data.users.push((**record).clone());
                Ok(Some(view(record)))
            }
            Change::DeleteUser { name, project } => {
                if !data.users.iter().any(|u| u.name == *name) {
                    return Err(ApiError::not_found("user", name, project));
                }
                if name == ADMIN {
                    return Err(ApiError::Conflict("user admin cannot be deleted".into()));
                }
                data.users.retain(|u| u.name != *name);
                Ok(None)
            }
        }
    }

    /// Apply to the shared record `blob`: the new record and what to show.
    pub fn apply_shared(&self, blob: &[u8]) -> ApiResult<(Vec<u8>, Option<UserView>)> {
        let mut shared = Shared::parse(blob)?;
        let shown = self.apply(&mut shared.data)?;
        let bytes = serde_json::to_vec(&shared).map_err(|e| ApiError::Internal(e.to_string()))?;
        Ok((bytes, shown))
    }
}

fn view(u: &UserRecord) -> UserView {
    UserView {
        name: u.name.clone(),
        project: u.project.clone(),
        role: u.role,
        created: u.created,
    }
}
