use std::path::PathBuf;

/// Everything that can go wrong on either side of an FT pair. Each message
/// is one line naming what failed.
#[derive(Debug, thiserror::Error)]
pub enum FtError {
    #[error("FT log channel: bad message from the peer: {0}")]
    Protocol(String),
    #[error("FT log channel: bad log frame from the primary: {0}")]
    Frame(#[from] replay::ReadError),
    #[error("FT log channel: {0}")]
    Encode(#[from] replay::WriteError),
    #[error("FT handshake: {0}")]
    Handshake(String),
    #[error("FT log channel: {0}")]
    Link(#[from] link::LinkError),
    #[error("FT: cannot reach the backup at {addr}: {source}")]
    Connect {
        addr: String,
        source: link::LinkError,
    },
    #[error("FT log channel: plain TCP to {addr} is refused: without TLS anyone who reaches the port is trusted, so --ft-insecure-plaintext is for loopback addresses only")]
    PlaintextNotLoopback { addr: String },
    #[error("FT: cannot add a backup: {0}")]
    Busy(String),
    #[error("FT sync: {0}")]
    Sync(String),
    #[error("FT backup: disk replica {}: {source}", path.display())]
    Replica {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("FT handshake: the backup refused: {0}")]
    Refused(String),
    #[error("FT arbiter {}: {what}: {source}", path.display())]
    Arbiter {
        path: PathBuf,
        what: &'static str,
        source: std::io::Error,
    },
    #[error("FT arbiter {}: {problem}", path.display())]
    ArbiterContent { path: PathBuf, problem: String },
    #[error("FT: lost the arbiter: the other side already claimed generation {0}; halting")]
    LostArbiter(u64),
    #[error("FT backup: {0}")]
    Machine(#[from] machine::MachineError),
    #[error("FT backup diverged from the primary {0}; it stopped following (the primary runs on unprotected)")]
    Diverged(#[from] replay::session::Divergence),
    #[error("FT backup: no longer following the primary ({0}); it must not go live")]
    NotFollowing(String),
}
