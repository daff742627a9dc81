//! The `network=NAME` backend: a VM NIC's port on its network's switch
//! (see [`crate::switch`]), the switch started on demand.

use std::io;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::network::{NetworkError, Networks};
use crate::segment::{bind_port, port_file_name};
use crate::switch::{RunDir, SwitchError, KEEPALIVE};
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
    /// The port's socket.
    #[error(transparent)]
    Segment(#[from] crate::SegmentError),
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

struct Shared {
    socket: UnixDatagram,
    switch: PathBuf,
    name: String,
    access: NetworkAccess,
}

/// The transmit half of a port.
pub struct PortTx(Arc<Shared>);

/// The receive half; its socket file is removed on drop.
pub struct PortRx {
    shared: Arc<Shared>,
    path: PathBuf,
    last_keepalive: Instant,
}

/// Joins network `name` with a port for `mac`, starting its switch if
/// none runs.
pub fn open(
    access: &NetworkAccess,
    name: &str,
    mac: MacAddr,
) -> Result<(PortTx, PortRx), PortError> {
    access.networks.get(name)?;
    let run = RunDir::of(&access.networks, name);
    run.ensure(name)?;
    let ports = run.ports_dir();
    let path = ports.join(port_file_name(mac));
    let socket = bind_port(&ports, &path, mac)?;
    let shared = Arc::new(Shared {
        socket,
        switch: run.switch_socket(),
        name: name.to_string(),
        access: access.clone(),
    });
    let rx = PortRx {
        shared: Arc::clone(&shared),
        path,
        last_keepalive: Instant::now(),
    };
    rx.shared
        .socket
        .set_nonblocking(true)
        .map_err(|source| SwitchError::Io {
            name: name.to_string(),
            what: "configuring the port socket",
            source,
        })?;
    join(&shared)?;
    Ok((PortTx(shared), rx))
}

/// Says hello to the switch, starting it first if none answers.
fn join(shared: &Shared) -> Result<(), PortError> {
    let run = RunDir::of(&shared.access.networks, &shared.name);
    let _lock = run.lock("spawn.lock", &shared.name)?;
    if hello(shared).is_ok() {
        return Ok(());
    }
    (shared.access.launch)(&shared.name).map_err(|source| PortError::Launch {
        name: shared.name.clone(),
        source,
    })?;
    let deadline = Instant::now() + SWITCH_START;
    while Instant::now() < deadline {
        if hello(shared).is_ok() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Err(PortError::NoSwitch {
        name: shared.name.clone(),
        secs: SWITCH_START.as_secs(),
        log: run.log(),
    })
}

fn hello(shared: &Shared) -> io::Result<()> {
    match shared.socket.send_to(&[], &shared.switch) {
        Ok(_) => Ok(()),
        // A full switch queue still means a live switch.
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(()),
        Err(e) => Err(e),
    }
}

impl FrameTx for PortTx {
    /// Sends `frame` to the switch. A full switch queue loses the frame,
    /// as a congested link would; a switch that went away is restarted by
    /// the receive half's next keepalive.
    fn send(&mut self, frame: &[u8]) -> io::Result<()> {
        match self.0.socket.send_to(frame, &self.0.switch) {
            Ok(_) => Ok(()),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock
                        | io::ErrorKind::NotFound
                        | io::ErrorKind::ConnectionRefused
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
        if self.last_keepalive.elapsed() >= KEEPALIVE {
            self.last_keepalive = Instant::now();
            if hello(&self.shared).is_err() {
                // The switch is gone (it crashed, or exited as we joined):
                // start another.
                if let Err(e) = join(&self.shared) {
                    tracing::warn!(network = %self.shared.name, error = %e, "cannot rejoin the network");
                }
            }
        }
        let wait = timeout.min(KEEPALIVE);
        if !wait_readable(&self.shared.socket, wait)? {
            return Ok(None);
        }
        match self.shared.socket.recv_from(buf) {
            Ok((len, from)) => {
                // Only the switch speaks to a port.
                if from.as_pathname() != Some(Path::new(&self.shared.switch)) {
                    return Ok(None);
                }
                Ok(Some(len))
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(None),
            Err(e) => Err(e),
        }
    }
}

impl Drop for PortRx {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}
