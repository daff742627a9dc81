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
