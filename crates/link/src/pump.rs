//! The per-link I/O thread: it owns the non-blocking socket (and the TLS
//! state), writes queued frames as soon as they are queued, parses incoming
//! bytes into frames and ends the link on the first error.

use crate::tls::TlsSession;
use crate::{
    Event, Frame, Link, LinkConfig, LinkError, LinkReceiver, LinkSender, Outgoing, SenderGuard,
    Shared, StreamError, FRAME_HEADER_LEN, HIGH_WATER, PREAMBLE_LEN,
};
use rustix::event::{eventfd, poll, EventfdFlags, PollFd, PollFlags};
use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::atomic::Ordering;
use std::sync::{mpsc, Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// Most bytes moved from the queue to the transport at once.
const CHUNK: usize = 256 << 10;
const READ_BUF: usize = 64 << 10;
/// Most bytes read from the socket before the pump turns to sending.
const READ_BUDGET: usize = 1 << 20;

/// Sets the link up and waits (until `deadline`) for the pump to finish
/// the handshake.
pub(crate) fn start(
    stream: TcpStream,
    config: LinkConfig,
    tls: Option<TlsSession>,
    deadline: Instant,
    timeout: Duration,
) -> Result<Link, LinkError> {
    let peer = stream
        .peer_addr()
        .map_err(LinkError::io("reading the peer's address"))?;
    let setup = |what: &str| LinkError::io(format!("{what} for {peer}"));
    stream
        .set_nodelay(true)
        .map_err(setup("setting TCP_NODELAY"))?;
    stream
        .set_nonblocking(true)
        .map_err(setup("making the socket non-blocking"))?;
    let wake_fd = eventfd(0, EventfdFlags::NONBLOCK | EventfdFlags::CLOEXEC)
        .map_err(|e| setup("creating an eventfd")(e.into()))?;
    let shared = Arc::new(Shared {
        peer,
        max_frame: config.max_frame,
        out: Mutex::new(Outgoing::default()),
        space: Condvar::new(),
        wake_fd,
        unread: Default::default(),
        senders_gone: Default::default(),
        receiver_gone: Default::default(),
        stats: Default::default(),
    });
    let (events_tx, events) = mpsc::channel();
    let (handshake_tx, handshake) = mpsc::channel();
    let mut pump = Pump {
        stream,
        transport: match tls {
            Some(session) => Transport::Tls(Box::new(session)),
            None => Transport::Plain {
                out: Vec::new(),
                pos: 0,
            },
        },
        shared: shared.clone(),
        config,
        inbuf: Vec::new(),
        scratch: vec![0; READ_BUF],
        handshake: Some(handshake_tx),
        events: events_tx,
        hung_up: false,
    };
    pump.queue_preamble()?;
    std::thread::Builder::new()
        .name(format!("link {peer}"))
        .spawn(move || pump.run())
        .map_err(setup("starting the I/O thread"))?;
    let link = Link {
        sender: LinkSender {
            shared: shared.clone(),
            _guard: Arc::new(SenderGuard(shared.clone())),
        },
        receiver: LinkReceiver {
            shared: shared.clone(),
            events,
        },
    };
    let left = deadline.saturating_duration_since(Instant::now());
    match handshake.recv_timeout(left) {
        Ok(Ok(())) => Ok(link),
        Ok(Err(e)) => Err(e),
        // Dropping `link` lets the pump stop.
        Err(mpsc::RecvTimeoutError::Timeout) => Err(LinkError::Timeout {
            peer: peer.to_string(),
            timeout,
        }),
        Err(mpsc::RecvTimeoutError::Disconnected) => Err(LinkError::Handshake {
            peer: peer.to_string(),
            reason: "the I/O thread ended during the handshake".into(),
        }),
    }
}

enum Transport {
    /// Bytes to write, of which `pos` are written.
    Plain {
        out: Vec<u8>,
        pos: usize,
    },
    Tls(Box<TlsSession>),
}

impl Transport {
    fn wants_write(&self) -> bool {
        match self {
            Transport::Plain { out, pos } => *pos < out.len(),
            Transport::Tls(s) => s.conn.wants_write(),
        }
    }

    /// Whether it takes more application bytes now: not while TLS output
    /// is pending or the TLS handshake is under way.
    fn ready_for_data(&self) -> bool {
        match self {
            Transport::Plain { .. } => !self.wants_write(),
            Transport::Tls(s) => !s.conn.wants_write() && !s.conn.is_handshaking(),
        }
    }

    fn push(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        match self {
            Transport::Plain { out, .. } => {
                out.extend_from_slice(bytes);
                Ok(())
            }
            Transport::Tls(s) => s.conn.writer().write_all(bytes),
        }
    }
}

/// How a link ended without an error.
enum End {
    PeerClosed,
    ClosedHere,
}

struct Pump {
    stream: TcpStream,
    transport: Transport,
    shared: Arc<Shared>,
    config: LinkConfig,
    /// Received application bytes not yet parsed.
    inbuf: Vec<u8>,
    scratch: Vec<u8>,
    /// Until the peer's preamble is checked: where the outcome goes.
    handshake: Option<mpsc::Sender<Result<(), LinkError>>>,
    events: mpsc::Sender<Event>,
    /// The socket reported POLLHUP/POLLERR.
    hung_up: bool,
}

impl Pump {
    fn run(mut self) {
        let result = self.pump();
        self.finish(result);
    }

    fn pump(&mut self) -> Result<End, LinkError> {
        loop {
            let reading = self.shared.unread.load(Ordering::Acquire) <= HIGH_WATER;
            if reading && self.read()? {
                return Ok(End::PeerClosed);
            }
            // Noted before taking the queue, so all queued before close() goes.
            let closing = self.shared.closing();
            self.send_queued()?;
            if closing || self.shared.abandoned() {
                self.say_goodbye();
                return Ok(End::ClosedHere);
            }
            self.wait(reading)?;
        }
    }

    fn peer(&self) -> String {
        self.shared.peer.to_string()
    }

    fn io_error(&self, doing: &str, e: std::io::Error) -> LinkError {
        LinkError::io(format!("{doing} {}", self.peer()))(e)
    }

    fn queue_preamble(&mut self) -> Result<(), LinkError> {
        let mut preamble = [0u8; PREAMBLE_LEN];
        preamble[..8].copy_from_slice(&self.config.magic);
        preamble[8..].copy_from_slice(&self.config.version.to_le_bytes());
        if let Transport::Tls(s) = &mut self.transport {
            // The preamble waits inside rustls until the handshake is done.
            s.conn.set_buffer_limit(None);
        }
        self.transport
            .push(&preamble)
            .map_err(LinkError::io(format!(
                "queueing the preamble for {}",
                self.peer()
            )))
    }

    /// Moves queued frames into the transport and the transport's bytes
    /// into the socket, until the socket is full or nothing is left.
    fn send_queued(&mut self) -> Result<(), LinkError> {
        loop {
            self.flush()?;
            if !self.transport.ready_for_data() {
                return Ok(());
            }
            let chunk = self.shared.take(CHUNK);
            if chunk.is_empty() {
                return Ok(());
            }
            self.transport
                .push(&chunk)
                .map_err(|e| self.io_error("encrypting for", e))?;
        }
    }

    /// Writes what the transport has ready, without blocking.
    fn flush(&mut self) -> Result<(), LinkError> {
        let result = match &mut self.transport {
            Transport::Plain { out, pos } => {
                let result = write_plain(&mut self.stream, out, pos);
                if *pos == out.len() {
                    out.clear();
                    *pos = 0;
                }
                result
            }
            Transport::Tls(s) => write_tls(&mut self.stream, s),
        };
        result.map_err(|e| self.io_error("sending to", e))
    }

    /// Reads what the socket has (up to the unread limit) and parses it.
    /// Returns true at the end of the stream.
    fn read(&mut self) -> Result<bool, LinkError> {
        // Bounded so that a busy inbound stream does not hold up sending.
        for _ in 0..READ_BUDGET / READ_BUF {
            let got = match &mut self.transport {
                Transport::Plain { .. } => read_plain(&mut self.stream, &mut self.scratch),
                Transport::Tls(s) => s.read(&mut self.stream, &mut self.scratch),
            };
            let got = got.map_err(|e| match e {
                ReadError::Io(e) => self.io_error("receiving from", e),
                ReadError::Tls(e) => self.tls_error(&e),
            })?;
            match got {
                Got::Bytes(n) => {
                    self.inbuf.extend_from_slice(&self.scratch[..n]);
                    self.parse()?;
                    if self.shared.unread.load(Ordering::Acquire) > HIGH_WATER {
                        return Ok(false);
                    }
                }
                Got::Nothing => return Ok(false),
                Got::End => {
                    self.parse()?;
                    return self.at_end().map(|()| true);
                }
            }
        }
        Ok(false)
    }

    fn tls_error(&self, e: &rustls::Error) -> LinkError {
        let reason = match &self.transport {
            Transport::Tls(s) => s.explain(e),
            Transport::Plain { .. } => e.to_string(),
        };
        LinkError::Tls {
            peer: self.peer(),
            reason,
        }
    }

    /// Checks the preamble, then hands over every complete frame.
    fn parse(&mut self) -> Result<(), LinkError> {
        let mut at = 0;
        if self.handshake.is_some() {
            let plain = matches!(self.transport, Transport::Plain { .. });
            if !check_preamble(&self.inbuf, &self.config, plain).map_err(|source| {
                LinkError::Stream {
                    peer: self.peer(),
                    source,
                }
            })? {
                return Ok(());
            }
            at = PREAMBLE_LEN;
            if let Some(done) = self.handshake.take() {
                let _ = done.send(Ok(()));
            }
        }
        while let Some(frame) =
            next_frame(&self.inbuf[at..], self.config.max_frame).map_err(|source| {
                LinkError::Stream {
                    peer: self.peer(),
                    source,
                }
            })?
        {
            let len = FRAME_HEADER_LEN + frame.payload.len();
            at += len;
            self.deliver(frame, len);
        }
        self.inbuf.drain(..at);
        Ok(())
    }

    fn deliver(&mut self, frame: Frame, len: usize) {
        let stats = &self.shared.stats;
        stats.received.fetch_add(len as u64, Ordering::Relaxed);
        // Count it unread before the receiver can see it.
        self.shared.unread.fetch_add(len, Ordering::AcqRel);
        if self.events.send(Event::Frame(frame)).is_err() {
            // Nobody reads any more: the frame is dropped.
            self.shared.unread.fetch_sub(len, Ordering::AcqRel);
        }
    }

    /// The peer ended the stream: clean only at a frame boundary.
    fn at_end(&self) -> Result<(), LinkError> {
        if self.handshake.is_some() {
            return Err(LinkError::Handshake {
                peer: self.peer(),
                reason: "the peer closed the connection during the handshake".into(),
            });
        }
        if !self.inbuf.is_empty() {
            return Err(LinkError::Protocol {
                peer: self.peer(),
                reason: format!(
                    "the connection closed in the middle of a frame ({} bytes of it received)",
                    self.inbuf.len()
                ),
            });
        }
        Ok(())
    }

    /// Sleeps until the socket or the wake eventfd is ready.
    fn wait(&mut self, reading: bool) -> Result<(), LinkError> {
        let mut flags = PollFlags::empty();
        if reading {
            flags |= PollFlags::IN;
        }
        if self.transport.wants_write() {
            flags |= PollFlags::OUT;
        }
        // A hung-up socket polls ready forever: watch it only when there
        // is something to do with it.
        let watch_socket = !self.hung_up || !flags.is_empty();
        let wake = PollFd::new(&self.shared.wake_fd, PollFlags::IN);
        let mut fds = [wake, PollFd::new(&self.stream, flags)];
        let fds = if watch_socket {
            &mut fds[..]
        } else {
            &mut fds[..1]
        };
        match poll(fds, None) {
            Ok(_) | Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(LinkError::io("waiting on the socket")(e.into())),
        }
        if fds
            .get(1)
            .is_some_and(|fd| fd.revents().intersects(PollFlags::HUP | PollFlags::ERR))
        {
            self.hung_up = true;
        }
        // Reset the eventfd; EAGAIN just means nobody woke us.
        let _ = rustix::io::read(&self.shared.wake_fd, &mut [0u8; 8]);
        Ok(())
    }

    /// Best effort on the way out: TLS close_notify, then FIN both ways.
    fn say_goodbye(&mut self) {
        if let Transport::Tls(s) = &mut self.transport {
            s.conn.send_close_notify();
        }
        let _ = self.flush();
        let _ = self.stream.shutdown(Shutdown::Both);
    }

    fn finish(mut self, result: Result<End, LinkError>) {
        let (reason, event) = match result {
            Ok(End::PeerClosed) => ("the peer closed the connection".to_string(), Event::Closed),
            Ok(End::ClosedHere) => ("closed by this side".to_string(), Event::Closed),
            Err(e) => {
                self.flush_alert();
                (e.to_string(), Event::Failed(e))
            }
        };
        self.shared.mark_down(reason);
        match (self.handshake.take(), event) {
            (Some(done), Event::Failed(e)) => {
                let _ = done.send(Err(e));
            }
            // The caller has given up on the handshake: nothing to report.
            (Some(_), _) => {}
            (None, event) => {
                let _ = self.events.send(event);
            }
        }
    }

    /// After an error, lets a TLS alert reach the peer before the socket
    /// closes: send it, then FIN, and read what the peer already sent so
    /// closing does not turn into a reset that could discard the alert.
    fn flush_alert(&mut self) {
        if self.flush().is_err() {
            return;
        }
        let _ = self.stream.shutdown(Shutdown::Write);
        for _ in 0..READ_BUDGET / READ_BUF {
            if !matches!(self.stream.read(&mut self.scratch), Ok(n) if n > 0) {
                break;
            }
        }
    }
}

enum Got {
    Bytes(usize),
    Nothing,
    End,
}

pub(crate) enum ReadError {
    Io(std::io::Error),
    Tls(rustls::Error),
}

impl TlsSession {
    /// Reads TLS records and returns the plaintext they hold.
    fn read(&mut self, stream: &mut TcpStream, buf: &mut [u8]) -> Result<Got, ReadError> {
        loop {
            match self.conn.reader().read(buf) {
                Ok(0) => return Ok(Got::End),
                Ok(n) => return Ok(Got::Bytes(n)),
                Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                // Closed without close_notify: the frame check tells
                // whether anything was cut off.
                Err(e) if e.kind() == ErrorKind::UnexpectedEof => return Ok(Got::End),
                Err(e) => return Err(ReadError::Io(e)),
            }
            match self.conn.read_tls(stream) {
                // At the end of the stream too: the reader then reports
                // Ok(0) or UnexpectedEof.
                Ok(_) => {
                    self.conn.process_new_packets().map_err(ReadError::Tls)?;
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(Got::Nothing),
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(ReadError::Io(e)),
            }
        }
    }
}

fn read_plain(stream: &mut TcpStream, buf: &mut [u8]) -> Result<Got, ReadError> {
    loop {
        return match stream.read(buf) {
            Ok(0) => Ok(Got::End),
            Ok(n) => Ok(Got::Bytes(n)),
            Err(e) if e.kind() == ErrorKind::WouldBlock => Ok(Got::Nothing),
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => Err(ReadError::Io(e)),
        };
    }
}

fn write_plain(stream: &mut TcpStream, out: &[u8], pos: &mut usize) -> std::io::Result<()> {
    while *pos < out.len() {
        match stream.write(&out[*pos..]) {
            Ok(0) => return Err(ErrorKind::WriteZero.into()),
            Ok(n) => *pos += n,
            Err(e) if e.kind() == ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

fn write_tls(stream: &mut TcpStream, session: &mut TlsSession) -> std::io::Result<()> {
    while session.conn.wants_write() {
        match session.conn.write_tls(stream) {
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Whether the peer's preamble is complete and matches; an error says how
/// it does not.
fn check_preamble(buf: &[u8], config: &LinkConfig, plain: bool) -> Result<bool, StreamError> {
    let endpoint = config.name;
    if plain && looks_like_tls(buf) && buf[..2] != config.magic[..2] {
        return Err(StreamError::UnexpectedTls { endpoint });
    }
    if buf.len() < PREAMBLE_LEN {
        return Ok(false);
    }
    let mut magic = [0u8; 8];
    magic.copy_from_slice(&buf[..8]);
    if magic != config.magic {
        return Err(StreamError::Magic { endpoint, magic });
    }
    let found = u16::from_le_bytes([buf[8], buf[9]]);
    if found != config.version {
        return Err(StreamError::Version {
            endpoint,
            found,
            supported: config.version,
        });
    }
    Ok(true)
}

/// A TLS record header: content type 20..=23, major version 3.
fn looks_like_tls(buf: &[u8]) -> bool {
    matches!(buf, [0x14..=0x17, 0x03, ..])
}

/// The first complete frame in `buf`, if there is one.
fn next_frame(buf: &[u8], max_frame: usize) -> Result<Option<Frame>, StreamError> {
    let Some(&[kind, a, b, c, d]) = buf.get(..FRAME_HEADER_LEN) else {
        return Ok(None);
    };
    let len = u32::from_le_bytes([a, b, c, d]) as usize;
    if len > max_frame {
        return Err(StreamError::FrameTooLarge {
            kind,
            len,
            max: max_frame,
        });
    }
    Ok(buf
        .get(FRAME_HEADER_LEN..FRAME_HEADER_LEN + len)
        .map(|payload| Frame {
            kind,
            payload: payload.to_vec(),
        }))
}

/// The receive side's parsing of a whole byte stream, for the fuzz target
/// in `fuzz/` (not a product API): the peer's preamble, then every
/// complete frame; the frames and the bytes left over (a partial frame),
/// or the error that would end the link.
#[doc(hidden)]
pub fn parse_stream(
    buf: &[u8],
    config: &LinkConfig,
    plain: bool,
) -> Result<(Vec<Frame>, usize), StreamError> {
    if !check_preamble(buf, config, plain)? {
        return Ok((Vec::new(), buf.len()));
    }
    let mut at = PREAMBLE_LEN;
    let mut frames = Vec::new();
    while let Some(frame) = next_frame(&buf[at..], config.max_frame)? {
        at += FRAME_HEADER_LEN + frame.payload.len();
        frames.push(frame);
    }
    Ok((frames, buf.len() - at))
}
