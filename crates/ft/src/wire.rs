//! The log channel's messages (see the crate documentation for the
//! layout; framing, preamble and TLS are the `link` crate's). Everything
//! decoded here comes from the network and is checked; a bad message is
//! an error, never a panic.

use crate::{FtError, ProtocolError};

/// First 8 bytes each side sends (after the TLS handshake, if any).
pub const MAGIC: [u8; 8] = *b"LSTPFT\0\0";
/// The one protocol version this build speaks.
/// Version 4: the Hello carries the VM's clock rate (instructions per
/// tick), and the machine state and its hash include it. Version 5: the
/// Hello says what the VM is sent for (a backup, or a migration), and a
/// migration ends with `Handoff` and `Taken`.
pub const PROTOCOL_VERSION: u16 = 5;
/// The lockstep version both sides must run (their machines must be the
/// same machine).
pub const LOCKSTEP_VERSION: &str = env!("CARGO_PKG_VERSION");
/// Largest message accepted (a `State` carries every written disk
/// cluster's hash, so it can be several MiB).
pub const MAX_MESSAGE: usize = 64 << 20;
/// Largest batch of frames the primary puts in one message.
pub const MAX_BATCH: usize = 1 << 20;
/// Bytes of one page in a `Pages` message: index (u32) and contents.
pub const PAGE_ENTRY: usize = 4 + PAGE;
const PAGE: usize = 4096;

/// How the log channel is framed ([`link`] does the framing).
pub fn link_config() -> link::LinkConfig {
    link::LinkConfig {
        magic: MAGIC,
        version: PROTOCOL_VERSION,
        max_frame: MAX_MESSAGE,
        name: "lockstep FT",
    }
}

mod kind {
    pub const HELLO: u8 = 0x01;
    pub const WELCOME: u8 = 0x02;
    pub const IMAGES: u8 = 0x03;
    pub const PAGES: u8 = 0x04;
    pub const DISK: u8 = 0x05;
    pub const STATE: u8 = 0x06;
    pub const READY: u8 = 0x07;
    pub const BATCH: u8 = 0x10;
    pub const ACK: u8 = 0x11;
    pub const ALIVE: u8 = 0x12;
    pub const HANDOFF: u8 = 0x13;
    pub const TAKEN: u8 = 0x14;
}

/// What the primary sends its VM for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Purpose {
    /// A backup that follows the VM and takes over when the primary fails
    /// (arbitrated by the arbiter both share).
    Protect,
    /// A migration target (`lockstep ft backup --incoming`): it follows
    /// the VM until the primary hands it over, and never goes live on its
    /// own (a failed migration leaves the VM where it was).
    Migrate,
}

impl Purpose {
    fn code(self) -> u8 {
        match self {
            Purpose::Protect => 0,
            Purpose::Migrate => 1,
        }
    }

    fn from_code(code: u8) -> Result<Purpose, FtError> {
        match code {
            0 => Ok(Purpose::Protect),
            1 => Ok(Purpose::Migrate),
            other => Err(ProtocolError::Purpose(other).into()),
        }
    }
}

/// A disk the backup keeps a replica of.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DiskShape {
    pub capacity: u64,
    pub read_only: bool,
}

/// The primary's opening message: what the backup needs to receive the
/// machine and to check it may follow it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hello {
    pub lockstep_version: String,
    /// The arbiter generation the pair runs under.
    pub generation: u64,
    /// The primary's host wall-clock time (UNIX ns) of guest `mtime` 0:
    /// a backup going live paces guest time from it.
    pub anchor_unix_ns: u64,
    pub vm_uuid: [u8; 16],
    /// Bytes of boot images and of RAM the sync will send.
    pub images_len: u64,
    pub memory: u64,
    /// Guest time's rate: the backup's replayed clock runs at it, and
    /// flow control's guest milliseconds are counted in it.
    pub instructions_per_tick: machine::InstructionsPerTick,
    /// The VM's disks, in slot order.
    pub disks: Vec<DiskShape>,
    /// A backup, or a migration.
    pub purpose: Purpose,
    /// The VM's configuration, opaque to this crate (the CLI's `VmSetup`).
    pub setup: Vec<u8>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Message {
    Hello(Hello),
    /// The backup's answer to the Hello: `Ok` or why it refused.
    Welcome(Result<(), String>),
    /// Boot image bytes at `offset` (sync).
    Images {
        offset: u64,
        bytes: Vec<u8>,
    },
    /// RAM pages (sync): [`PAGE_ENTRY`]-byte entries, index then bytes.
    Pages(Vec<u8>),
    /// Bytes of disk `disk` at `offset` (sync).
    Disk {
        disk: u8,
        offset: u64,
        bytes: Vec<u8>,
    },
    /// The machine's state section at the sync point (the last sync
    /// message; the log starts at `icount`).
    State {
        icount: u64,
        state: Vec<u8>,
    },
    /// The backup restored the machine (`Ok`) or could not.
    Ready(Result<(), String>),
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
    /// The backup's heartbeat while it receives the VM (it has no log to
    /// acknowledge yet).
    Alive,
    /// Migration: the primary has stopped the guest at `icount` (its last
    /// record's), released every output up to `released`, and hands the
    /// VM over: the target executes to `icount` and goes live.
    Handoff {
        icount: u64,
        released: u64,
    },
    /// Migration: the target runs the VM; the primary exits.
    Taken,
}

fn encode_result(payload: &mut Vec<u8>, answer: &Result<(), String>) {
    match answer {
        Ok(()) => payload.push(0),
        Err(reason) => {
            payload.push(1);
            payload.extend_from_slice(reason.as_bytes());
        }
    }
}

impl Message {
    /// The message's kind and payload.
    pub fn encode(&self) -> (u8, Vec<u8>) {
        let mut p = Vec::new();
        let kind = match self {
            Message::Hello(h) => {
                let version = h.lockstep_version.as_bytes();
                let len = version.len().min(255);
                p.push(len as u8);
                p.extend_from_slice(&version[..len]);
                for n in [h.generation, h.anchor_unix_ns] {
                    p.extend_from_slice(&n.to_le_bytes());
                }
                p.extend_from_slice(&h.vm_uuid);
                for n in [h.images_len, h.memory, h.instructions_per_tick.get()] {
                    p.extend_from_slice(&n.to_le_bytes());
                }
                // The board has fewer than 255 disk slots.
                p.push(h.disks.len().min(255) as u8);
                for d in h.disks.iter().take(255) {
                    p.extend_from_slice(&d.capacity.to_le_bytes());
                    p.push(u8::from(d.read_only));
                }
                p.push(h.purpose.code());
                p.extend_from_slice(&h.setup);
                kind::HELLO
            }
            Message::Welcome(answer) => {
                encode_result(&mut p, answer);
                kind::WELCOME
            }
            Message::Images { offset, bytes } => {
                p.extend_from_slice(&offset.to_le_bytes());
                p.extend_from_slice(bytes);
                kind::IMAGES
            }
            Message::Pages(entries) => {
                p.extend_from_slice(entries);
                kind::PAGES
            }
            Message::Disk {
                disk,
                offset,
                bytes,
            } => {
                p.push(*disk);
                p.extend_from_slice(&offset.to_le_bytes());
                p.extend_from_slice(bytes);
                kind::DISK
            }
            Message::State { icount, state } => {
                p.extend_from_slice(&icount.to_le_bytes());
                p.extend_from_slice(state);
                kind::STATE
            }
            Message::Ready(answer) => {
                encode_result(&mut p, answer);
                kind::READY
            }
            Message::Batch { released, frames } => {
                p.extend_from_slice(&released.to_le_bytes());
                p.extend_from_slice(frames);
                kind::BATCH
            }
            Message::Ack {
                next_lsn,
                icount,
                executed,
            } => {
                for n in [next_lsn, icount, executed] {
                    p.extend_from_slice(&n.to_le_bytes());
                }
                kind::ACK
            }
            Message::Alive => kind::ALIVE,
            Message::Handoff { icount, released } => {
                for n in [icount, released] {
                    p.extend_from_slice(&n.to_le_bytes());
                }
                kind::HANDOFF
            }
            Message::Taken => kind::TAKEN,
        };
        (kind, p)
    }

    /// Parses one message of kind `kind`.
    pub fn decode(kind: u8, payload: &[u8]) -> Result<Message, FtError> {
        let mut p = Fields(payload);
        let message = match kind {
            kind::HELLO => Message::Hello(decode_hello(&mut p)?),
            kind::WELCOME => Message::Welcome(p.result("Welcome")?),
            kind::IMAGES => Message::Images {
                offset: p.u64("Images")?,
                bytes: p.rest(),
            },
            kind::PAGES => {
                if p.0.is_empty() || p.0.len() % PAGE_ENTRY != 0 {
                    return Err(ProtocolError::Pages {
                        len: p.0.len(),
                        entry: PAGE_ENTRY,
                    }
                    .into());
                }
                Message::Pages(p.rest())
            }
            kind::DISK => Message::Disk {
                disk: p.u8("Disk")?,
                offset: p.u64("Disk")?,
                bytes: p.rest(),
            },
            kind::STATE => Message::State {
                icount: p.u64("State")?,
                state: p.rest(),
            },
            kind::READY => Message::Ready(p.result("Ready")?),
            kind::BATCH => Message::Batch {
                released: p.u64("Batch")?,
                frames: p.rest(),
            },
            kind::ACK => {
                let next_lsn = p.u64("Ack")?;
                let icount = p.u64("Ack")?;
                let executed = p.u64("Ack")?;
                p.end("Ack")?;
                Message::Ack {
                    next_lsn,
                    icount,
                    executed,
                }
            }
            kind::ALIVE => {
                p.end("Alive")?;
                Message::Alive
            }
            kind::HANDOFF => {
                let icount = p.u64("Handoff")?;
                let released = p.u64("Handoff")?;
                p.end("Handoff")?;
                if released > icount {
                    return Err(ProtocolError::ReleasedAhead { icount, released }.into());
                }
                Message::Handoff { icount, released }
            }
            kind::TAKEN => {
                p.end("Taken")?;
                Message::Taken
            }
            other => return Err(ProtocolError::UnknownKind(other).into()),
        };
        Ok(message)
    }

    /// A name for error messages.
    pub fn describe(&self) -> &'static str {
        match self {
            Message::Hello(_) => "a Hello",
            Message::Welcome(_) => "a Welcome",
            Message::Images { .. } => "an Images",
            Message::Pages(_) => "a Pages",
            Message::Disk { .. } => "a Disk",
            Message::State { .. } => "a State",
            Message::Ready(_) => "a Ready",
            Message::Batch { .. } => "a Batch",
            Message::Ack { .. } => "an Ack",
            Message::Alive => "an Alive",
            Message::Handoff { .. } => "a Handoff",
            Message::Taken => "a Taken",
        }
    }
}

fn decode_hello(p: &mut Fields<'_>) -> Result<Hello, FtError> {
    let what = "Hello";
    let len = usize::from(p.u8(what)?);
    let lockstep_version = String::from_utf8(p.take(len, what)?.to_vec())
        .map_err(|_| ProtocolError::VersionNotUtf8)?;
    let generation = p.u64(what)?;
    let anchor_unix_ns = p.u64(what)?;
    let mut vm_uuid = [0u8; 16];
    vm_uuid.copy_from_slice(p.take(16, what)?);
    let images_len = p.u64(what)?;
    let memory = p.u64(what)?;
    let instructions_per_tick =
        machine::InstructionsPerTick::new(p.u64(what)?).map_err(ProtocolError::Rate)?;
    let count = p.u8(what)?;
    let mut disks = Vec::new();
    for _ in 0..count {
        let capacity = p.u64(what)?;
        let read_only = match p.u8(what)? {
            0 => false,
            1 => true,
            other => return Err(ProtocolError::ReadOnlyFlag(other).into()),
        };
        disks.push(DiskShape {
            capacity,
            read_only,
        });
    }
    let purpose = Purpose::from_code(p.u8(what)?)?;
    Ok(Hello {
        lockstep_version,
        generation,
        anchor_unix_ns,
        vm_uuid,
        images_len,
        memory,
        instructions_per_tick,
        disks,
        purpose,
        setup: p.rest(),
    })
}

/// A cursor over a payload.
struct Fields<'a>(&'a [u8]);

impl<'a> Fields<'a> {
    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], FtError> {
        if self.0.len() < n {
            return Err(ProtocolError::Short { message: what }.into());
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn u8(&mut self, what: &'static str) -> Result<u8, FtError> {
        Ok(self.take(1, what)?[0])
    }

    fn u64(&mut self, what: &'static str) -> Result<u64, FtError> {
        let mut bytes = [0u8; 8];
        bytes.copy_from_slice(self.take(8, what)?);
        Ok(u64::from_le_bytes(bytes))
    }

    fn rest(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.0).to_vec()
    }

    fn end(&self, what: &'static str) -> Result<(), FtError> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(ProtocolError::Trailing { message: what }.into())
        }
    }

    fn result(&mut self, what: &'static str) -> Result<Result<(), String>, FtError> {
        match self.u8(what)? {
            0 => {
                self.end(what)?;
                Ok(Ok(()))
            }
            1 => Ok(Err(String::from_utf8_lossy(self.0).into_owned())),
            other => Err(ProtocolError::Status {
                message: what,
                status: other,
            }
            .into()),
        }
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
                anchor_unix_ns: 1_700_000_000_000_000_000,
                vm_uuid: [3; 16],
                images_len: 50 << 20,
                memory: 512 << 20,
                instructions_per_tick: machine::InstructionsPerTick::DEFAULT,
                disks: vec![
                    DiskShape {
                        capacity: 1 << 30,
                        read_only: false,
                    },
                    DiskShape {
                        capacity: 4096,
                        read_only: true,
                    },
                ],
                purpose: Purpose::Migrate,
                setup: b"{\"name\":\"vm\"}".to_vec(),
            }),
            Message::Welcome(Ok(())),
            Message::Welcome(Err("wrong generation".into())),
            Message::Images {
                offset: 4096,
                bytes: vec![1, 2, 3],
            },
            Message::Pages(vec![9; 2 * PAGE_ENTRY]),
            Message::Disk {
                disk: 1,
                offset: 65536,
                bytes: vec![5; 100],
            },
            Message::State {
                icount: 77,
                state: vec![1, 2, 3, 4],
            },
            Message::Ready(Ok(())),
            Message::Ready(Err("state hash differs".into())),
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
            Message::Alive,
            Message::Handoff {
                icount: 1 << 33,
                released: 1 << 32,
            },
            Message::Taken,
        ]
    }

    #[test]
    fn messages_round_trip() {
        for m in all_kinds() {
            let (kind, payload) = m.encode();
            assert_eq!(Message::decode(kind, &payload).expect("valid"), m);
        }
    }

    #[test]
    fn bad_messages_are_errors() {
        let (kind, mut ack) = Message::Ack {
            next_lsn: 1,
            icount: 2,
            executed: 1,
        }
        .encode();
        ack.push(0);
        let err = Message::decode(kind, &ack).unwrap_err();
        assert!(err.to_string().contains("Ack: trailing bytes"), "{err}");
        let err = Message::decode(kind, &ack[..20]).unwrap_err();
        assert!(err.to_string().contains("Ack: message too short"), "{err}");
        let err = Message::decode(0x77, &[]).unwrap_err();
        assert!(
            err.to_string().contains("unknown message kind 0x77"),
            "{err}"
        );
        let (kind, pages) = Message::Pages(vec![0; PAGE_ENTRY]).encode();
        let err = Message::decode(kind, &pages[1..]).unwrap_err();
        assert!(err.to_string().contains("whole number"), "{err}");
        let (kind, mut hello) = all_kinds()[0].encode();
        let rate = 1 + 5 + 16 + 16 + 16;
        let mut bad_rate = hello.clone();
        bad_rate[rate..rate + 8].copy_from_slice(&0u64.to_le_bytes());
        let err = Message::decode(kind, &bad_rate).unwrap_err();
        assert!(
            err.to_string()
                .contains("Hello: 0 instructions per tick is not a supported clock rate"),
            "{err}"
        );
        let flag = rate + 8 + 1 + 8;
        hello[flag] = 7;
        let err = Message::decode(kind, &hello).unwrap_err();
        assert!(err.to_string().contains("read-only flag 7"), "{err}");
        let purpose = flag + 1 + 8 + 1;
        let mut bad_purpose = all_kinds()[0].encode().1;
        bad_purpose[purpose] = 9;
        let err = Message::decode(kind, &bad_purpose).unwrap_err();
        assert!(err.to_string().contains("purpose 9"), "{err}");
        let (handoff, payload) = Message::Handoff {
            icount: 5,
            released: 6,
        }
        .encode();
        let err = Message::decode(handoff, &payload).unwrap_err();
        assert!(err.to_string().contains("released"), "{err}");
        let err = Message::decode(kind, &hello[..30]).unwrap_err();
        assert!(
            err.to_string().contains("Hello: message too short"),
            "{err}"
        );
        let (kind, _) = Message::Ready(Ok(())).encode();
        let err = Message::decode(kind, &[4]).unwrap_err();
        assert!(err.to_string().contains("Ready: unknown status 4"), "{err}");
        // Each kind is a typed variant a caller can match on.
        assert!(matches!(
            err,
            FtError::Protocol(ProtocolError::Status {
                message: "Ready",
                status: 4
            })
        ));
        assert!(matches!(
            Message::decode(0x77, &[]),
            Err(FtError::Protocol(ProtocolError::UnknownKind(0x77)))
        ));
        assert!(matches!(
            Message::decode(kind, &[]),
            Err(FtError::Protocol(ProtocolError::Short { message: "Ready" }))
        ));
    }
}
