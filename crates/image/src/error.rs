//! The one error type of this crate: each variant names what went wrong and where.

use std::path::PathBuf;

/// Everything that can go wrong while fetching, verifying, unpacking or building the guest image.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("no Debian mirror: pass --mirror URL, set LOCKSTEP_MIRROR, or add a Debian archive to this host's apt sources")]
    NoMirror,

    #[error("archive unreachable: {url}: {cause}")]
    Unreachable { url: String, cause: String },

    #[error("{url}: HTTP status {status}")]
    HttpStatus { url: String, status: u16 },

    #[error("signature invalid: {0}")]
    Signature(String),

    #[error("checksum mismatch for {what}: expected SHA-256 {expected}, got {got}")]
    ChecksumMismatch {
        what: String,
        expected: String,
        got: String,
    },

    #[error("size mismatch for {what}: expected {expected} bytes, got {got}")]
    SizeMismatch {
        what: String,
        expected: u64,
        got: u64,
    },

    #[error("package not found: {0}")]
    PackageNotFound(String),

    #[error("malformed {what}: {detail}")]
    Malformed { what: String, detail: String },

    #[error("cache dir {} not writable: {cause}", path.display())]
    CacheNotWritable {
        path: PathBuf,
        cause: std::io::Error,
    },

    #[error("no cache dir: set $XDG_CACHE_HOME, $HOME or LOCKSTEP_CACHE, or pass --cache-dir")]
    NoCacheDir,

    #[error("another build of this image is running (it holds {})", lock.display())]
    Busy { lock: PathBuf },

    #[error("image build needs root: the packages' files have owners (root, shadow, …) that mke2fs -d copies from the staging tree")]
    NeedsRoot,

    #[error("{tool} failed: {detail}")]
    Tool { tool: String, detail: String },

    #[error("configure stage failed: {detail} (guest console log: {})", log.display())]
    Configure { log: PathBuf, detail: String },

    #[error("{}: {cause}", path.display())]
    Io {
        path: PathBuf,
        cause: std::io::Error,
    },
}

impl ImageError {
    pub(crate) fn malformed(what: impl Into<String>, detail: impl std::fmt::Display) -> Self {
        ImageError::Malformed {
            what: what.into(),
            detail: detail.to_string(),
        }
    }

    pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.into();
        move |cause| ImageError::Io { path, cause }
    }
}
