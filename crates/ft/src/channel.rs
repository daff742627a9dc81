//! The log channel as [`Message`]s over a [`link`] (framing, preamble,
//! optional mutually authenticated TLS).

use crate::wire::{link_config, Message};
use crate::{FtError, HandshakeError};
use link::{LinkReceiver, LinkSender, LinkStats, Received, TlsIdentity};
use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long connecting and the TLS handshake may take.
pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// What [`Receiver::recv`] saw.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Got {
    Message(Message),
    /// Nothing within the timeout.
    Nothing,
    /// The peer closed the connection at a message boundary.
    Closed,
}

/// The sending half; cheap to clone.
#[derive(Clone)]
pub(crate) struct Sender(LinkSender);

impl Sender {
    /// Queue a message (blocks only while several MiB are unsent).
    pub fn send(&self, message: &Message) -> Result<(), FtError> {
        let (kind, payload) = message.encode();
        Ok(self.0.send(kind, &payload)?)
    }

    /// Send `message` and wait (at most a second) until it has left: the
    /// last word before this side closes the connection.
    pub fn send_last(&self, message: &Message) {
        if self.send(message).is_ok() {
            let deadline = Instant::now() + Duration::from_secs(1);
            while self.0.queued_bytes() > 0 && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
    }

    pub fn queued_bytes(&self) -> usize {
        self.0.queued_bytes()
    }

    /// The connection is closed (by either side): nothing more leaves.
    pub fn is_dead(&self) -> bool {
        self.0.is_dead()
    }

    pub fn close(&self) {
        self.0.close();
    }

    pub fn stats(&self) -> Arc<LinkStats> {
        self.0.stats()
    }

    pub fn peer(&self) -> SocketAddr {
        self.0.peer()
    }
}

pub(crate) struct Receiver(LinkReceiver);

impl Receiver {
    /// The next message, waiting at most `timeout`. A frame that is not a
    /// valid message is an error (the channel is untrusted).
    pub fn recv(&mut self, timeout: Duration) -> Result<Got, FtError> {
        match self.0.recv(timeout)? {
            Received::Frame(frame) => {
                Ok(Got::Message(Message::decode(frame.kind, &frame.payload)?))
            }
            Received::Nothing => Ok(Got::Nothing),
            Received::Closed => Ok(Got::Closed),
        }
    }

    /// One message within `timeout`, for handshakes: silence or a close
    /// is an error naming `expected`.
    pub fn expect(
        &mut self,
        timeout: Duration,
        expected: &'static str,
    ) -> Result<Message, FtError> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.recv(left.min(Duration::from_millis(200)))? {
                Got::Message(m) => return Ok(m),
                Got::Closed => return Err(HandshakeError::Closed { expected }.into()),
                Got::Nothing if left.is_zero() => {
                    return Err(HandshakeError::Silent {
                        expected,
                        within: timeout,
                    }
                    .into())
                }
                Got::Nothing => {}
            }
        }
    }
}

/// Connect to the backup at `addr`. Plain TCP only to loopback.
pub(crate) fn connect(
    addr: &str,
    tls: Option<&TlsIdentity>,
) -> Result<(Sender, Receiver), FtError> {
    if tls.is_none() {
        check_loopback(addr)?;
    }
    let link = link::connect(addr, &link_config(), tls, CONNECT_TIMEOUT)?;
    let (tx, rx) = link.split();
    Ok((Sender(tx), Receiver(rx)))
}

/// Plain TCP is for loopback only: every address `addr` names must be
/// a loopback one.
pub fn check_loopback(addr: &str) -> Result<(), FtError> {
    use std::net::ToSocketAddrs;
    let refused = || FtError::PlaintextNotLoopback {
        addr: addr.to_string(),
    };
    let addrs: Vec<SocketAddr> = addr.to_socket_addrs().map_err(|_| refused())?.collect();
    if addrs.is_empty() || !addrs.iter().all(|a| a.ip().is_loopback()) {
        return Err(refused());
    }
    Ok(())
}

/// Accept a primary's connection on `listener`.
pub(crate) fn accept(
    listener: &TcpListener,
    tls: Option<&TlsIdentity>,
) -> Result<(Sender, Receiver), FtError> {
    let link = link::accept(listener, &link_config(), tls, CONNECT_TIMEOUT)?;
    let (tx, rx) = link.split();
    Ok((Sender(tx), Receiver(rx)))
}
