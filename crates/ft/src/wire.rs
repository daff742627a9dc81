//! The log channel's byte format: the preamble and the messages (see the
//! crate documentation for the layout). Everything read here comes from
//! the network and is checked; a bad message is an error, never a panic.

use crate::FtError;
use replay::{Header, HEADER_LEN};
use std::io::{ErrorKind, Read, Write};

/// First 8 bytes each side sends.
pub const MAGIC: [u8; 8] = *b"LSTPFT\0\0";
/// The one protocol version this build speaks.
pub const PROTOCOL_VERSION: u16 = 2;
/// The lockstep version both sides must run (their machines must be the
/// same machine).
pub const LOCKSTEP_VERSION: &str = env!("CARGO_PKG_VERSION");
/// Largest message payload accepted.
pub const MAX_MESSAGE: usize = 4 << 20;
/// Largest batch of frames the primary puts in one message.
pub const MAX_BATCH: usize = 1 << 20;
const PREAMBLE_LEN: usize = 10;
const MESSAGE_HEADER_LEN: usize = 5;

mod kind {
    pub const HELLO: u8 = 0x01;
    pub const WELCOME: u8 = 0x02;
    pub const BATCH: u8 = 0x10;
    pub const ACK: u8 = 0x11;
}

/// The primary's opening message: everything the backup needs to build
/// the identical machine and to check that it did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hello {
    pub lockstep_version: String,
    /// The arbiter generation the pair runs under.
    pub generation: u64,
    /// The machine's icount when the log starts (LSN 0 follows it).
    pub start_icount: u64,
    /// The primary's host wall-clock time (UNIX ns) of guest `mtime` 0:
    /// a backup going live paces guest time from it.
    pub anchor_unix_ns: u64,
    /// VM uuid and the machine's state hash at `start_icount`.
    pub header: Header,
    /// The VM's configuration, opaque to this crate (the CLI's `VmSetup`).
    pub setup: Vec<u8>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Message {
    Hello(Hello),
    /// The backup's answer: `Ok` or why it refused.
    Welcome(Result<(), String>),
    /// Log frames (possibly none: then it is a heartbeat), and the icount
    /// up to which the primary has released outputs.
    Batch {
        released: u64,
        frames: Vec<u8>,
    },
    /// The backup has received every record before `next_lsn`; the last
    /// of them is at `icount`; it has executed up to icount `executed`.
    /// Repeated as the backup's heartbeat.
    Ack {
        next_lsn: u64,
        icount: u64,
        executed: u64,
    },
}

/// Sends this side's preamble.
pub fn write_preamble(w: &mut impl Write) -> Result<(), FtError> {
    let mut bytes = [0u8; PREAMBLE_LEN];
    bytes[..8].copy_from_slice(&MAGIC);
    bytes[8..].copy_from_slice(&PROTOCOL_VERSION.to_le_bytes());
    w.write_all(&bytes)
        .map_err(FtError::io("sending the preamble"))
}

/// Reads and checks the peer's preamble (blocking).
pub fn read_preamble(r: &mut impl Read) -> Result<(), FtError> {
    let mut bytes = [0u8; PREAMBLE_LEN];
    r.read_exact(&mut bytes)
        .map_err(FtError::io("reading the peer's preamble"))?;
    if bytes[..8] != MAGIC {
        return Err(FtError::Handshake(format!(
            "the peer is not a lockstep FT endpoint (magic {:02x?})",
            &bytes[..8]
        )));
    }
    let version = u16::from_le_bytes([bytes[8], bytes[9]]);
    if version != PROTOCOL_VERSION {
        return Err(FtError::Handshake(format!(
            "the peer speaks FT protocol version {version}, this build speaks {PROTOCOL_VERSION}"
        )));
    }
    Ok(())
}

impl Message {
    /// The message as bytes on the wire.
    pub fn encode(&self) -> Vec<u8> {
        let mut payload = Vec::new();
        let kind = match self {
            Message::Hello(h) => {
                let version = h.lockstep_version.as_bytes();
                let len = version.len().min(255);
                payload.push(len as u8);
                payload.extend_from_slice(&version[..len]);
                payload.extend_from_slice(&h.generation.to_le_bytes());
                payload.extend_from_slice(&h.start_icount.to_le_bytes());
                payload.extend_from_slice(&h.anchor_unix_ns.to_le_bytes());
                payload.extend_from_slice(&h.header.encode());
                payload.extend_from_slice(&h.setup);
                kind::HELLO
            }
            Message::Welcome(answer) => {
                match answer {
                    Ok(()) => payload.push(0),
                    Err(reason) => {
                        payload.push(1);
                        payload.extend_from_slice(reason.as_bytes());
                    }
                }
                kind::WELCOME
            }
            Message::Batch { released, frames } => {
                payload.extend_from_slice(&released.to_le_bytes());
                payload.extend_from_slice(frames);
                kind::BATCH
            }
            Message::Ack {
                next_lsn,
                icount,
                executed,
            } => {
                payload.extend_from_slice(&next_lsn.to_le_bytes());
                payload.extend_from_slice(&icount.to_le_bytes());
                payload.extend_from_slice(&executed.to_le_bytes());
                kind::ACK
            }
        };
        let mut out = Vec::with_capacity(MESSAGE_HEADER_LEN + payload.len());
        out.push(kind);
        // Payloads are bounded well below 4 GiB by MAX_BATCH and the setup.
        out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        out.extend_from_slice(&payload);
        out
    }

    pub fn write_to(&self, w: &mut impl Write) -> Result<(), FtError> {
        w.write_all(&self.encode())
            .map_err(FtError::io("sending to the peer"))
    }

    /// Parses one message body of kind `kind`.
    fn decode(kind: u8, payload: &[u8]) -> Result<Message, FtError> {
        let mut p = Fields(payload);
        let message = match kind {
            kind::HELLO => {
                let len = usize::from(p.u8("Hello")?);
                let version = p.take(len, "Hello")?;
                let lockstep_version = String::from_utf8(version.to_vec())
                    .map_err(|_| bad("Hello: the lockstep version is not UTF-8"))?;
                let generation = p.u64("Hello")?;
                let start_icount = p.u64("Hello")?;
                let anchor_unix_ns = p.u64("Hello")?;
                let header = Header::decode(p.take(HEADER_LEN, "Hello")?)
                    .map_err(|e| bad(&format!("Hello: log header: {e}")))?;
                Message::Hello(Hello {
                    lockstep_version,
                    generation,
                    start_icount,
                    anchor_unix_ns,
                    header,
                    setup: p.0.to_vec(),
                })
            }
            kind::WELCOME => match p.u8("Welcome")? {
                0 if p.0.is_empty() => Message::Welcome(Ok(())),
                1 => Message::Welcome(Err(String::from_utf8_lossy(p.0).into_owned())),
                _ => return Err(bad("Welcome: unknown status or trailing bytes")),
            },
            kind::BATCH => Message::Batch {
                released: p.u64("Batch")?,
                frames: p.0.to_vec(),
            },
            kind::ACK => {
                let next_lsn = p.u64("Ack")?;
                let icount = p.u64("Ack")?;
                let executed = p.u64("Ack")?;
                if !p.0.is_empty() {
                    return Err(bad("Ack: trailing bytes"));
                }
                Message::Ack {
                    next_lsn,
                    icount,
                    executed,
                }
            }
            other => return Err(bad(&format!("unknown message kind {other:#04x}"))),
        };
        Ok(message)
    }
}

fn bad(problem: &str) -> FtError {
    FtError::Protocol(problem.to_string())
}

/// A cursor over a payload.
struct Fields<'a>(&'a [u8]);

impl<'a> Fields<'a> {
    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], FtError> {
        if self.0.len() < n {
            return Err(bad(&format!("{what}: message too short")));
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn u8(&mut self, what: &str) -> Result<u8, FtError> {
        Ok(self.take(1, what)?[0])
    }

    fn u64(&mut self, what: &str) -> Result<u64, FtError> {
        let mut bytes = [0u8; 8];
        bytes.copy_from_slice(self.take(8, what)?);
        Ok(u64::from_le_bytes(bytes))
    }
}

/// What [`MessageReader::poll`] saw.
#[derive(Debug, PartialEq, Eq)]
pub enum Polled {
    Message(Message),
    /// The read timed out with no complete message.
    Nothing,
    /// The peer closed the connection at a message boundary.
    Closed,
}

/// Reads messages from a socket with a read timeout: bytes of a message
/// that arrive over several reads are kept, so a timeout never loses data.
#[derive(Default)]
pub struct MessageReader {
    buf: Vec<u8>,
}

impl MessageReader {
    /// The next message, reading at most once from `r`.
    pub fn poll(&mut self, r: &mut impl Read) -> Result<Polled, FtError> {
        if let Some(m) = self.parse()? {
            return Ok(Polled::Message(m));
        }
        let mut chunk = [0u8; 64 * 1024];
        match r.read(&mut chunk) {
            Ok(0) if self.buf.is_empty() => Ok(Polled::Closed),
            Ok(0) => Err(bad("the connection closed in the middle of a message")),
            Ok(n) => {
                self.buf.extend_from_slice(&chunk[..n]);
                Ok(self.parse()?.map_or(Polled::Nothing, Polled::Message))
            }
            Err(e)
                if matches!(
                    e.kind(),
                    ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted
                ) =>
            {
                Ok(Polled::Nothing)
            }
            Err(e) => Err(FtError::Io {
                context: "receiving from the peer".into(),
                source: e,
            }),
        }
    }

    /// A complete message from the buffer, if there is one.
    fn parse(&mut self) -> Result<Option<Message>, FtError> {
        let Some(header) = self.buf.get(..MESSAGE_HEADER_LEN) else {
            return Ok(None);
        };
        let kind = header[0];
        let len = u32::from_le_bytes([header[1], header[2], header[3], header[4]]) as usize;
        if len > MAX_MESSAGE {
            return Err(bad(&format!(
                "a message of kind {kind:#04x} claims {len} bytes, more than the {MAX_MESSAGE}-byte maximum"
            )));
        }
        let Some(payload) = self.buf.get(MESSAGE_HEADER_LEN..MESSAGE_HEADER_LEN + len) else {
            return Ok(None);
        };
        let message = Message::decode(kind, payload)?;
        self.buf.drain(..MESSAGE_HEADER_LEN + len);
        Ok(Some(message))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all_kinds() -> Vec<Message> {
        vec![
            Message::Hello(Hello {
                lockstep_version: "0.1.0".into(),
                generation: 7,
                start_icount: 0,
                anchor_unix_ns: 1_700_000_000_000_000_000,
                header: Header {
                    vm_uuid: [3; 16],
                    initial_state_hash: [9; 32],
                },
                setup: b"{\"name\":\"vm\"}".to_vec(),
            }),
            Message::Welcome(Ok(())),
            Message::Welcome(Err("wrong generation".into())),
            Message::Batch {
                released: 42,
                frames: vec![1, 2, 3],
            },
            Message::Batch {
                released: 0,
                frames: Vec::new(),
            },
            Message::Ack {
                next_lsn: 5,
                icount: 1 << 40,
                executed: 1,
            },
        ]
    }

    #[test]
    fn messages_round_trip_even_one_byte_at_a_time() {
        let bytes: Vec<u8> = all_kinds().iter().flat_map(Message::encode).collect();
        let mut reader = MessageReader::default();
        let mut got = Vec::new();
        for b in &bytes {
            match reader.poll(&mut &[*b][..]).expect("valid") {
                Polled::Message(m) => got.push(m),
                Polled::Nothing => {}
                Polled::Closed => panic!("not closed"),
            }
        }
        assert_eq!(got, all_kinds());
        assert_eq!(
            reader.poll(&mut &[][..]).expect("clean end"),
            Polled::Closed
        );
    }

    #[test]
    fn bad_messages_are_errors() {
        let mut ack = Message::Ack {
            next_lsn: 1,
            icount: 2,
            executed: 1,
        }
        .encode();
        ack.push(0);
        ack[1] += 1; // a trailing byte inside the payload
        let err = MessageReader::default().poll(&mut &ack[..]).unwrap_err();
        assert!(err.to_string().contains("Ack: trailing bytes"), "{err}");

        let huge = [kind::BATCH, 0xff, 0xff, 0xff, 0x7f];
        let err = MessageReader::default().poll(&mut &huge[..]).unwrap_err();
        assert!(err.to_string().contains("maximum"), "{err}");

        let unknown = [0x77, 0, 0, 0, 0];
        let err = MessageReader::default()
            .poll(&mut &unknown[..])
            .unwrap_err();
        assert!(
            err.to_string().contains("unknown message kind 0x77"),
            "{err}"
        );

        let torn = &Message::Ack {
            next_lsn: 1,
            icount: 2,
            executed: 1,
        }
        .encode()[..9];
        let mut reader = MessageReader::default();
        assert_eq!(
            reader.poll(&mut &torn[..]).expect("partial"),
            Polled::Nothing
        );
        let err = reader.poll(&mut &[][..]).unwrap_err();
        assert!(err.to_string().contains("middle of a message"), "{err}");

        let mut hello = all_kinds()[0].encode();
        hello[5 + 1 + 5 + 24 + 8] ^= 0xff; // inside the log header
        let err = MessageReader::default().poll(&mut &hello[..]).unwrap_err();
        assert!(err.to_string().contains("Hello: log header"), "{err}");
    }

    #[test]
    fn preambles_are_checked() {
        let mut ours = Vec::new();
        write_preamble(&mut ours).expect("to a vec");
        read_preamble(&mut &ours[..]).expect("our own preamble");
        let mut other = ours.clone();
        other[8] = 9;
        let err = read_preamble(&mut &other[..]).unwrap_err();
        assert!(err.to_string().contains("protocol version 9"), "{err}");
        let err = read_preamble(&mut &b"GET / HTTP/1.1"[..]).unwrap_err();
        assert!(
            err.to_string().contains("not a lockstep FT endpoint"),
            "{err}"
        );
    }
}
