use std::io;
use std::path::PathBuf;
use std::time::Duration;

/// Everything that can go wrong on a link, each with what was being done
/// and with whom (or with which file).
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    /// An operating-system call failed; `context` says what was being done.
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: io::Error,
    },
    /// The peer is not a matching endpoint (magic, version, TLS vs plain),
    /// or hung up before the handshake finished.
    #[error("{peer}: {reason}")]
    Handshake { peer: String, reason: String },
    /// The TLS layer refused the peer, or the peer refused this host.
    #[error("{peer}: TLS: {reason}")]
    Tls { peer: String, reason: String },
    /// The peer broke the framing after the handshake.
    #[error("{peer}: {reason}")]
    Protocol { peer: String, reason: String },
    /// The peer's byte stream breaks the preamble or the framing.
    #[error("{peer}: {source}")]
    Stream {
        peer: String,
        #[source]
        source: StreamError,
    },
    #[error("{peer}: no handshake within {timeout:?}")]
    Timeout { peer: String, timeout: Duration },
    /// The link has ended; `reason` says how.
    #[error("the link to {peer} is down: {reason}")]
    Down { peer: String, reason: String },
    #[error("a frame of kind {kind:#04x} is {len} bytes, over the {max}-byte limit")]
    FrameTooLarge { kind: u8, len: usize, max: usize },
    /// A certificate, key or directory is unusable.
    #[error("{}: {reason}", path.display())]
    BadFile { path: PathBuf, reason: String },
    #[error("generating certificates: {0}")]
    Generate(#[from] rcgen::Error),
}

/// How a peer's byte stream is not a matching endpoint's: its preamble
/// (TLS against plain, magic, version) or a frame's length.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StreamError {
    #[error("the peer speaks TLS, but TLS is not configured here ({endpoint} endpoint)")]
    UnexpectedTls { endpoint: &'static str },
    #[error("the peer is not a {endpoint} endpoint (magic {magic:02x?})")]
    Magic {
        endpoint: &'static str,
        magic: [u8; 8],
    },
    #[error(
        "the peer speaks {endpoint} protocol version {found}, this endpoint speaks {supported}"
    )]
    Version {
        endpoint: &'static str,
        found: u16,
        supported: u16,
    },
    #[error("the peer sent a frame of kind {kind:#04x} of {len} bytes, over the {max}-byte limit")]
    FrameTooLarge { kind: u8, len: usize, max: usize },
}

impl LinkError {
    pub(crate) fn io(context: impl Into<String>) -> impl FnOnce(io::Error) -> LinkError {
        let context = context.into();
        move |source| LinkError::Io { context, source }
    }

    pub(crate) fn bad_file(path: impl Into<PathBuf>, reason: impl Into<String>) -> LinkError {
        LinkError::BadFile {
            path: path.into(),
            reason: reason.into(),
        }
    }
}
