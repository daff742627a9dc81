//! The `network=NAME` backend: a VM NIC's port on its network's switch
//! (see [`crate::switch`]), the switch started on demand.

use std::io;
use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::network::{NetworkError, Networks};
use crate::seqpacket;
use crate::switch::{RunDir, SwitchError};
use crate::{wait_readable, FrameRx, FrameTx, MacAddr};

/// How long a VM waits for a switch it started to answer.
const SWITCH_START: Duration = Duration::from_secs(10);

/// Starts the switch of a network (`lockstep net serve NAME`, detached),
/// given the network's name. Supplied by the program, which knows how to
/// run itself.
pub type Launcher = dyn Fn(&str) -> io::Result<()> + Send + Sync;

/// Why a port could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum PortError {
    /// The network's definition.
    #[error(transparent)]
    Network(#[from] NetworkError),
    /// The switch.
    #[error(transparent)]
    Switch(#[from] SwitchError),
    /// The switch did not come up.
    #[error("network {name}: its switch did not start within {secs} s (see {log})")]
    NoSwitch {
        /// The network.
        name: String,
        /// How long we waited.
        secs: u64,
        /// The switch's log.
        log: PathBuf,
    },
    /// The switch could not be started.
    #[error("network {name}: cannot start its switch: {source}")]
    Launch {
        /// The network.
        name: String,
        /// The system's error.
        #[source]
        source: io::Error,
    },
    /// Where the networks are kept is unknown (no launcher or store was
    /// given to this program).
    #[error("network {0}: this program cannot join named networks")]
    Unsupported(String),
}

/// What a program gives [`crate::open`] so that NICs can join named
/// networks: where they are kept, and how to start a switch.
#[derive(Clone)]
pub struct NetworkAccess {
    /// The store.
    pub networks: Networks,
    /// Starts a switch.
    pub launch: Arc<Launcher>,
}

impl std::fmt::Debug for NetworkAccess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NetworkAccess")
            .field("networks", &self.networks)
            .finish_non_exhaustive()
    }
}

/// The first message on a port's connection: this magic, then the NIC's
/// MAC address.
pub const HELLO_MAGIC: &[u8; 14] = b"lockstep-port\x01";

struct Shared {
    /// The connection; replaced when the switch went away and another was
    /// started.
    link: Mutex<Arc<OwnedFd>>,
    mac: MacAddr,
    name: String,
    access: NetworkAccess,
}

impl Shared {
    fn link(&self) -> Arc<OwnedFd> {
        let guard = self.link.lock().unwrap_or_else(|p| p.into_inner());
        Arc::clone(&guard)
    }
}

/// The transmit half of a port.
pub struct PortTx(Arc<Shared>);

/// The receive half.
pub struct PortRx(Arc<Shared>);

/// Joins network `name` with a port for `mac`, starting its switch if
/// none runs.
pub fn open(
    access: &NetworkAccess,
    name: &str,
    mac: MacAddr,
) -> Result<(PortTx, PortRx), PortError> {
    access.networks.get(name)?;
    RunDir::of(&access.networks, name).ensure(name)?;
    let link = join(access, name, mac)?;
    let shared = Arc::new(Shared {
        link: Mutex::new(Arc::new(link)),
        mac,
        name: name.to_string(),
        access: access.clone(),
    });
    Ok((PortTx(Arc::clone(&shared)), PortRx(shared)))
}

/// Connects to the switch, starting it first if none answers, and says
/// which NIC this is.
fn join(access: &NetworkAccess, name: &str, mac: MacAddr) -> Result<OwnedFd, PortError> {
    let run = RunDir::of(&access.networks, name);
    let socket = run.switch_socket();
    let _lock = run.lock("spawn.lock", name)?;
    let link = match seqpacket::connect(&socket) {
        Ok(link) => link,
        Err(_) => {
            (access.launch)(name).map_err(|source| PortError::Launch {
                name: name.to_string(),
                source,
            })?;
            let deadline = Instant::now() + SWITCH_START;
            loop {
                if let Ok(link) = seqpacket::connect(&socket) {
                    break link;
                }
                if Instant::now() >= deadline {
                    return Err(PortError::NoSwitch {
                        name: name.to_string(),
                        secs: SWITCH_START.as_secs(),
                        log: run.log(),
                    });
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    };
    let mut hello = HELLO_MAGIC.to_vec();
    hello.extend_from_slice(&mac.octets());
    seqpacket::send(&link, &hello).map_err(|source| SwitchError::Io {
        name: name.to_string(),
        what: "greeting the switch",
        source,
    })?;
    Ok(link)
}

impl FrameTx for PortTx {
    /// Sends `frame` to the switch. A full queue loses the frame, as a
    /// congested link would; so does a switch that went away (the receive
    /// half reconnects).
    fn send(&mut self, frame: &[u8]) -> io::Result<()> {
        // An empty message would read as the connection's end.
        if frame.is_empty() {
            return Ok(());
        }
        match seqpacket::send(&*self.0.link(), frame) {
            Ok(_) => Ok(()),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::BrokenPipe
                        | io::ErrorKind::ConnectionReset
                        | io::ErrorKind::NotConnected
                ) =>
            {
                Ok(())
            }
            Err(e) => Err(e),
        }
    }
}

impl FrameRx for PortRx {
    fn recv(&mut self, buf: &mut [u8], timeout: Duration) -> io::Result<Option<usize>> {
        let link = self.0.link();
        if !wait_readable(&*link, timeout)? {
            return Ok(None);
        }
        match seqpacket::recv(&*link, buf) {
            Ok(Some(0)) | Err(_) => {
                // The switch went away (it crashed, or exited just as we
                // joined): start another and join it.
                match join(&self.0.access, &self.0.name, self.0.mac) {
                    Ok(new) => {
                        *self.0.link.lock().unwrap_or_else(|p| p.into_inner()) = Arc::new(new);
                    }
                    Err(e) => {
                        tracing::warn!(network = %self.0.name, error = %e, "cannot rejoin the network");
                        std::thread::sleep(Duration::from_millis(500));
                    }
                }
                Ok(None)
            }
            Ok(len) => Ok(len),
        }
    }
}
