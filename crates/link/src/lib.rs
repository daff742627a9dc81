//! A point-to-point framed message transport over TCP, optionally with
//! mutually authenticated TLS (rustls).
//!
//! Wire format, inside TLS when TLS is on: each side first sends a
//! preamble, `magic: [u8; 8], version: u16 LE` (from [`LinkConfig`]); then
//! frames, `kind: u8, len: u32 LE, payload[len]`.
//!
//! One pump thread per link owns the socket (and the TLS state) and moves
//! bytes both ways as soon as they are ready; [`LinkSender`] queues frames
//! for it and [`LinkReceiver`] takes the frames it has parsed.

mod error;
mod pump;
mod tls;

pub use error::{LinkError, StreamError};
#[doc(hidden)]
pub use pump::parse_stream;
pub use tls::{tls_init, TlsIdentity, TlsInit, SERVER_NAME};

use rustix::fd::OwnedFd;
use std::collections::VecDeque;
use std::net::{SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

/// Unsent bytes queued by senders above which [`LinkSender::send`] blocks;
/// also the received-but-unread bytes above which the pump stops reading
/// the socket, so a peer that does not read pushes back on its sender.
pub const HIGH_WATER: usize = 8 << 20;
/// `kind: u8, len: u32 LE`.
pub const FRAME_HEADER_LEN: usize = 5;
/// `magic: [u8; 8], version: u16 LE`.
pub const PREAMBLE_LEN: usize = 10;

/// What both ends of a link must agree on.
#[derive(Clone, Copy, Debug)]
pub struct LinkConfig {
    pub magic: [u8; 8],
    pub version: u16,
    /// Largest payload accepted (and sent).
    pub max_frame: usize,
    /// The protocol's name for messages, e.g. "lockstep FT".
    pub name: &'static str,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame {
    pub kind: u8,
    pub payload: Vec<u8>,
}

#[derive(Debug, PartialEq, Eq)]
pub enum Received {
    Frame(Frame),
    /// The timeout passed without a frame.
    Nothing,
    /// The link ended cleanly (at a frame boundary), or was closed here.
    Closed,
}

/// Frame bytes (header and payload, before TLS) moved by a link.
#[derive(Debug, Default)]
pub struct LinkStats {
    sent: AtomicU64,
    received: AtomicU64,
}

impl LinkStats {
    /// Bytes the pump has taken from the queue to send.
    pub fn bytes_sent(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }

    /// Bytes of complete frames received.
    pub fn bytes_received(&self) -> u64 {
        self.received.load(Ordering::Relaxed)
    }
}

/// Connects to `addr` and completes the handshake (TLS if `tls` is given,
/// then the preambles) within `timeout`.
pub fn connect(
    addr: &str,
    config: &LinkConfig,
    tls: Option<&TlsIdentity>,
    timeout: Duration,
) -> Result<Link, LinkError> {
    let deadline = Instant::now() + timeout;
    let stream = connect_tcp(addr, deadline)?;
    let session = tls.map(TlsIdentity::client_session).transpose()?;
    pump::start(stream, *config, session, deadline, timeout)
}

/// Accepts one connection on `listener` (blocking until one arrives) and
/// completes the handshake within `timeout` from then.
pub fn accept(
    listener: &TcpListener,
    config: &LinkConfig,
    tls: Option<&TlsIdentity>,
    timeout: Duration,
) -> Result<Link, LinkError> {
    let (stream, _) = listener
        .accept()
        .map_err(LinkError::io("accepting a connection"))?;
    let deadline = Instant::now() + timeout;
    let session = tls.map(TlsIdentity::server_session).transpose()?;
    pump::start(stream, *config, session, deadline, timeout)
}

fn connect_tcp(addr: &str, deadline: Instant) -> Result<TcpStream, LinkError> {
    let addrs = addr
        .to_socket_addrs()
        .map_err(LinkError::io(format!("resolving {addr}")))?;
    let mut last = std::io::Error::new(std::io::ErrorKind::NotFound, "no address");
    for candidate in addrs {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            last = std::io::ErrorKind::TimedOut.into();
            break;
        }
        match TcpStream::connect_timeout(&candidate, left) {
            Ok(stream) => return Ok(stream),
            Err(e) => last = e,
        }
    }
    Err(LinkError::io(format!("connecting to {addr}"))(last))
}

/// A connected, handshaken link; [`Link::split`] it to use it.
pub struct Link {
    sender: LinkSender,
    receiver: LinkReceiver,
}

impl Link {
    pub fn peer(&self) -> SocketAddr {
        self.sender.shared.peer
    }

    pub fn stats(&self) -> Arc<LinkStats> {
        self.sender.stats()
    }

    pub fn split(self) -> (LinkSender, LinkReceiver) {
        (self.sender, self.receiver)
    }
}

macro_rules! debug_by_peer {
    ($($t:ty),*) => {$(
        impl std::fmt::Debug for $t {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                write!(f, "{}({})", stringify!($t), self.peer())
            }
        }
    )*};
}
debug_by_peer!(Link, LinkSender, LinkReceiver);

/// State the pump shares with the link's handles.
pub(crate) struct Shared {
    peer: SocketAddr,
    max_frame: usize,
    out: Mutex<Outgoing>,
    /// Signalled when the queue drains below [`HIGH_WATER`] or the link goes down.
    space: Condvar,
    /// An eventfd that wakes the pump from `poll`.
    wake_fd: OwnedFd,
    /// Received frame bytes not yet taken by [`LinkReceiver::recv`].
    unread: AtomicUsize,
    senders_gone: AtomicBool,
    receiver_gone: AtomicBool,
    stats: Arc<LinkStats>,
}

#[derive(Default)]
struct Outgoing {
    bytes: VecDeque<u8>,
    /// Set once: why the link ended.
    down: Option<String>,
    /// [`LinkSender::close`] was called.
    closing: bool,
}

impl Shared {
    fn lock_out(&self) -> MutexGuard<'_, Outgoing> {
        self.out.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn wake(&self) {
        // An eventfd write only fails if the counter would overflow, and
        // then the pump is already due to wake.
        let _ = rustix::io::write(&self.wake_fd, &1u64.to_ne_bytes());
    }

    fn down_error(&self, reason: &str) -> LinkError {
        LinkError::Down {
            peer: self.peer.to_string(),
            reason: reason.to_string(),
        }
    }

    /// Takes up to `max` queued bytes for the pump to send.
    fn take(&self, max: usize) -> Vec<u8> {
        let mut out = self.lock_out();
        let n = out.bytes.len().min(max);
        let was_full = out.bytes.len() > HIGH_WATER;
        let (front, back) = out.bytes.as_slices();
        let from_front = front.len().min(n);
        let mut chunk = Vec::with_capacity(n);
        chunk.extend_from_slice(&front[..from_front]);
        chunk.extend_from_slice(&back[..n - from_front]);
        out.bytes.drain(..n);
        if out.bytes.is_empty() && out.bytes.capacity() > 2 * HIGH_WATER {
            out.bytes.shrink_to(HIGH_WATER);
        }
        drop(out);
        if was_full {
            self.space.notify_all();
        }
        self.stats.sent.fetch_add(n as u64, Ordering::Relaxed);
        chunk
    }

    fn closing(&self) -> bool {
        self.lock_out().closing
    }

    /// Nobody holds a handle any more: the pump may stop.
    fn abandoned(&self) -> bool {
        self.senders_gone.load(Ordering::Acquire) && self.receiver_gone.load(Ordering::Acquire)
    }

    fn mark_down(&self, reason: String) {
        self.lock_out().down.get_or_insert(reason);
        self.space.notify_all();
    }
}

/// The sending half; clones share one queue.
#[derive(Clone)]
pub struct LinkSender {
    shared: Arc<Shared>,
    _guard: Arc<SenderGuard>,
}

/// Tells the pump when the last sender is dropped.
struct SenderGuard(Arc<Shared>);

impl Drop for SenderGuard {
    fn drop(&mut self) {
        self.0.senders_gone.store(true, Ordering::Release);
        self.0.wake();
    }
}

impl LinkSender {
    /// Queues a frame. Blocks while more than [`HIGH_WATER`] bytes are
    /// queued and unsent, failing if the link goes down meanwhile; never
    /// blocks otherwise.
    pub fn send(&self, kind: u8, payload: &[u8]) -> Result<(), LinkError> {
        let shared = &self.shared;
        let len = u32::try_from(payload.len())
            .ok()
            .filter(|_| payload.len() <= shared.max_frame)
            .ok_or(LinkError::FrameTooLarge {
                kind,
                len: payload.len(),
                max: shared.max_frame,
            })?;
        let mut out = shared.lock_out();
        loop {
            if let Some(reason) = &out.down {
                return Err(shared.down_error(reason));
            }
            if out.bytes.len() <= HIGH_WATER {
                break;
            }
            out = shared
                .space
                .wait(out)
                .unwrap_or_else(PoisonError::into_inner);
        }
        out.bytes.push_back(kind);
        out.bytes.extend(len.to_le_bytes());
        out.bytes.extend(payload);
        drop(out);
        shared.wake();
        Ok(())
    }

    /// Bytes queued and not yet taken by the pump.
    pub fn queued_bytes(&self) -> usize {
        self.shared.lock_out().bytes.len()
    }

    /// Closes the connection both ways. Frames already queued are written
    /// as far as the socket takes them without waiting; later sends fail.
    pub fn close(&self) {
        let mut out = self.shared.lock_out();
        out.closing = true;
        out.down.get_or_insert_with(|| "closed by this side".into());
        drop(out);
        self.shared.space.notify_all();
        self.shared.wake();
    }

    pub fn is_dead(&self) -> bool {
        self.shared.lock_out().down.is_some()
    }

    pub fn peer(&self) -> SocketAddr {
        self.shared.peer
    }

    pub fn stats(&self) -> Arc<LinkStats> {
        self.shared.stats.clone()
    }
}

/// What the pump hands the receiver.
pub(crate) enum Event {
    Frame(Frame),
    Closed,
    Failed(LinkError),
}

/// The receiving half.
pub struct LinkReceiver {
    shared: Arc<Shared>,
    events: mpsc::Receiver<Event>,
}

impl LinkReceiver {
    /// The next frame, `Nothing` if none arrives within `timeout`, or
    /// `Closed` once the link has ended. A failure is returned once; after
    /// it the link is closed.
    pub fn recv(&mut self, timeout: Duration) -> Result<Received, LinkError> {
        match self.events.recv_timeout(timeout) {
            Ok(Event::Frame(frame)) => {
                self.consumed(FRAME_HEADER_LEN + frame.payload.len());
                Ok(Received::Frame(frame))
            }
            Ok(Event::Failed(e)) => Err(e),
            Ok(Event::Closed) | Err(mpsc::RecvTimeoutError::Disconnected) => Ok(Received::Closed),
            Err(mpsc::RecvTimeoutError::Timeout) => Ok(Received::Nothing),
        }
    }

    pub fn peer(&self) -> SocketAddr {
        self.shared.peer
    }

    pub fn stats(&self) -> Arc<LinkStats> {
        self.shared.stats.clone()
    }

    /// Wakes the pump if this read let it resume reading the socket.
    fn consumed(&self, n: usize) {
        let before = self.shared.unread.fetch_sub(n, Ordering::AcqRel);
        if before > HIGH_WATER && before - n <= HIGH_WATER {
            self.shared.wake();
        }
    }
}

impl Drop for LinkReceiver {
    fn drop(&mut self) {
        self.shared.receiver_gone.store(true, Ordering::Release);
        self.shared.wake();
    }
}
