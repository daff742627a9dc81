//! A detached kept VM's console on a Unix socket in its bundle
//! (`console.sock`, 0600 inside the 0700 bundle): `lockstep vm console
//! NAME` attaches to it. One client at a time (a new one takes over, as
//! virsh's `console --force`); peers are checked with `SO_PEERCRED`.
//! Console output goes to the client as it comes (and always to
//! `console.log`); what the client types is console input.

use machine::HostEvent;
use std::io::{self, Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::mpsc::Sender;
use std::sync::{Arc, Mutex};

/// The console socket's file name in a bundle.
pub const CONSOLE_SOCKET: &str = vmm::CONSOLE_SOCKET;

/// The attached client and its number (to tell it from a later one).
type Client = Arc<Mutex<Option<(u64, UnixStream)>>>;

/// The listening socket and the attached client, if any.
pub struct ConsoleServer {
    listener: UnixListener,
    path: PathBuf,
    client: Client,
}

impl std::fmt::Debug for ConsoleServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ConsoleServer({})", self.path.display())
    }
}

impl ConsoleServer {
    /// Listen at `path` (a stale socket there is replaced; anything else
    /// is refused).
    pub fn bind(path: &Path) -> io::Result<ConsoleServer> {
        Ok(ConsoleServer {
            listener: vmm::control::bind_private(path)?,
            path: path.to_path_buf(),
            client: Arc::default(),
        })
    }

    /// What console output is written to: the attached client, if any.
    pub fn writer(&self) -> ClientWriter {
        ClientWriter(self.client.clone())
    }

    /// Accept clients from now on; what they type goes to `events`.
    pub fn serve(&self, events: Sender<HostEvent>) -> io::Result<()> {
        let listener = self.listener.try_clone()?;
        let client = self.client.clone();
        std::thread::spawn(move || {
            for (id, conn) in (0u64..).zip(listener.incoming()) {
                let Ok(conn) = conn else { continue };
                if let Err(why) = vmm::control::check_peer(&conn) {
                    let mut conn = conn;
                    let _ = writeln!(conn, "lockstep: {why}");
                    continue;
                }
                let Ok(reader) = conn.try_clone() else {
                    continue;
                };
                if let Ok(mut slot) = client.lock() {
                    if let Some((_, old)) = slot.replace((id, conn)) {
                        let _ = old.shutdown(std::net::Shutdown::Both);
                    }
                }
                let events = events.clone();
                let client = client.clone();
                std::thread::spawn(move || forward_input(id, reader, events, client));
            }
        });
        Ok(())
    }
}

impl Drop for ConsoleServer {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// A client's keystrokes become console input until it goes.
fn forward_input(id: u64, mut conn: UnixStream, events: Sender<HostEvent>, client: Client) {
    let mut buf = [0u8; 256];
    loop {
        match conn.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if events.send(HostEvent::Console(buf[..n].to_vec())).is_err() {
                    break;
                }
            }
        }
    }
    // Gone: stop writing to it (unless another client took its place).
    if let Ok(mut slot) = client.lock() {
        if slot.as_ref().is_some_and(|(current, _)| *current == id) {
            *slot = None;
        }
    }
}

/// Console output to the attached client; a client that cannot take it
/// is dropped (the guest never waits for a client).
#[derive(Clone)]
pub struct ClientWriter(Client);

impl Write for ClientWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if let Ok(mut slot) = self.0.lock() {
            if let Some((_, conn)) = slot.as_mut() {
                let _ = conn.set_write_timeout(Some(std::time::Duration::from_millis(200)));
                if conn.write_all(buf).is_err() {
                    *slot = None;
                }
            }
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// `lockstep vm console`: copy the terminal to the socket and back until
/// Ctrl-] (on a terminal) or the end of input.
pub fn attach(path: &Path, name: &str) -> Result<(), Box<dyn std::error::Error>> {
    let conn = UnixStream::connect(path).map_err(|e| {
        format!("VM {name} has no console to attach to ({e}): is it running detached (`lockstep vm start {name}`)?")
    })?;
    let mut output = conn.try_clone()?;
    let interactive = io::IsTerminal::is_terminal(&io::stdin());
    let _raw = if interactive {
        eprintln!("lockstep: connected to {name}'s console; Ctrl-] detaches");
        Some(crate::run::RawTerminal::enter()?)
    } else {
        None
    };
    std::thread::spawn(move || {
        let mut stdout = io::stdout();
        let mut buf = [0u8; 4096];
        while let Ok(n) = output.read(&mut buf) {
            if n == 0 || stdout.write_all(&buf[..n]).is_err() {
                break;
            }
            let _ = stdout.flush();
        }
    });
    let mut input = conn;
    let mut stdin = io::stdin().lock();
    let mut buf = [0u8; 256];
    loop {
        let n = match stdin.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => break,
        };
        let bytes = &buf[..n];
        if interactive {
            if let Some(at) = bytes.iter().position(|&b| b == 0x1d) {
                input.write_all(&bytes[..at])?;
                break;
            }
        }
        input.write_all(bytes)?;
    }
    drop(_raw);
    if interactive {
        eprintln!("\r\nlockstep: detached from {name}'s console (it runs on)");
    }
    Ok(())
}
