//! The lockstep record/replay log (DESIGN §4): the on-disk and on-wire
//! format, a writer, a reader and whole-log validation.
//!
//! A VM's execution is a pure function of its initial state and its input
//! events (DESIGN §3). The log holds those inputs, stamped with the icount at
//! which each was applied, plus `Progress` and `Output` records that let a
//! replayer (or an FT backup) know how far it may run and check that it
//! produces the same outputs. The same bytes go to a file
//! (`lockstep run --record`) and over the FT log channel, so every piece
//! works on `std::io::Read`/`Write` and, for batching, on plain byte slices
//! ([`Encoder`], [`Decoder`]).
//!
//! # Format, version 2
//!
//! All integers are little-endian. `varint` is unsigned LEB128 in its
//! shortest form (a longer encoding of the same value is rejected).
//!
//! ```text
//! header (62 bytes, once)
//! +---------+---------+-----------+-------------------+---------+
//! | magic   | version | VM uuid   | initial-state     | crc32c  |
//! | 8 bytes | u16     | 16 bytes  | hash, 32 bytes    | u32     |
//! |"LSTPLOG\0"| = 2   |           | (blake3)          | of 0..58|
//! +---------+---------+-----------+-------------------+---------+
//!
//! frame (repeated; LSN 0, 1, 2, ...)
//! +------------------------+---------+--------------------------------+
//! | word: u32              | crc32c  | body (len bytes, <= 128 KiB)   |
//! | bits 0..24  len        | u32     |                                |
//! | bits 24..32 kind tag   | of word |                                |
//! |                        | ++ body |                                |
//! +------------------------+---------+--------------------------------+
//!
//! body
//! +-------------+-------------------+-------------------------------+
//! | lsn: varint | icount delta:     | payload (depends on the tag,  |
//! | (absolute)  | varint (from the  | self-delimiting: must end     |
//! |             | previous record)  | exactly at the end of body)   |
//! +-------------+-------------------+-------------------------------+
//! ```
//!
//! Kind tags and payloads (stable: a tag is never reused for anything else):
//!
//! | tag  | record | payload |
//! |------|--------|---------|
//! | 0x01 | input `ConsoleInput`  | `len: varint, bytes` |
//! | 0x02 | input `NetFrame`      | `nic: u8, len: varint, frame bytes` |
//! | 0x03 | input `ClockWarp`     | `ticks: varint` |
//! | 0x04 | input `Entropy`       | `len: varint, bytes` |
//! | 0x05 | input `HostCommand`   | `command: u8` then: 0x01 `PowerButton` (nothing); 0x02 `LinkState` `nic: u8, up: u8 (0/1)`; 0x03 `DeviceAttach` `slot: u8, len: varint, spec bytes`; 0x04 `DeviceDetach` `slot: u8` |
//! | 0x40 | `Progress`            | nothing: no input occurs before this record's icount |
//! | 0x42 | `Checkpoint`          | `state_hash: 32 bytes` (blake3 state hash of the machine at this icount) |
//! | 0x41 | `Output`              | `channel: u8` (0x00 console; 0x01 net, then `nic: u8`), `len: varint` (output length in bytes), `hash: 16 bytes` (blake3 of the output, truncated) |
//! | 0x80 | `Control`             | `control: u8` then: 0x01 `PowerOff` `reason: u8` (0x01 guest power-off, 0x02 guest reset, 0x03 host stop); 0x02 `ConfigChange` `len: varint, bytes` |
//!
//! Tag 0x00 is never valid, so a zero-filled tail is rejected.
//!
//! # Why this shape
//!
//! * **Fixed 8-byte frame header.** The body length sits at a fixed place and
//!   the body is self-delimiting, so a corrupted length is caught with
//!   certainty (the body then either ends early or has bytes left over), and
//!   the CRC catches every flip inside the word, the CRC or the body. Together:
//!   every single flipped byte is detected, never by luck. A varint length
//!   would save 3 bytes but a flip in its continuation bit moves the body,
//!   leaving detection to the CRC's 2^-32 odds. The kind tag shares the word,
//!   so the fixed overhead is 8 bytes including the tag.
//! * **CRC-32C, not truncated blake3.** CRC-32C is guaranteed to catch every
//!   error burst of up to 32 bits (so any one corrupt byte), where a truncated
//!   cryptographic hash only makes it likely; it runs at memory speed with the
//!   SSE4.2 / ARMv8 CRC instructions. The log needs integrity against
//!   accidents, not against an attacker: the FT channel has TLS for that.
//! * **Absolute LSN, delta icount.** The LSN is stored whole (a varint, 1–3
//!   bytes for realistic logs) because a lost frame must be noticed: with LSN
//!   deltas every remaining frame would still look valid. The icount is
//!   stored as an unsigned delta from the previous record: small (a varint of
//!   1–4 bytes for typical gaps), and an icount that goes backwards cannot be
//!   expressed at all; overflow past `u64::MAX` is rejected instead. Because
//!   a lost frame is caught by its LSN, the deltas cannot silently drift.
//! * **Maximum frame body 128 KiB** ([`MAX_FRAME_BODY`]): a 64 KiB network
//!   frame fits with room; a reader never allocates more than that for one
//!   frame, whatever the length field says.
//!
//! Typical sizes (see the `sizes` test): a `Progress` or `ClockWarp` is 13–16
//! bytes, a typed console byte 15, an `Output` 31.

mod codec;
mod error;
mod reader;
mod record;
pub mod session;
mod varint;
mod writer;

pub use codec::{Decoded, Decoder, Encoder};
pub use error::{ReadError, WriteError};
pub use reader::{validate, validate_reader, LogEnd, LogReader, LogSummary, TailPolicy, TornTail};
pub use record::{
    Control, HostCommand, Input, OutputChannel, OutputHash, Record, RecordKind, StopReason,
};
pub use writer::LogWriter;

/// First 8 bytes of every log.
pub const MAGIC: [u8; 8] = *b"LSTPLOG\0";
/// The one format version this build reads and writes. Version 2 has the
/// framing of version 1; what changed is the machine the hashes and the
/// setup describe: its clock rate (instructions per tick) is a setting
/// that the state hashes cover. A version 1 log (recorded at 16
/// instructions per tick, hashed without it) would replay to different
/// hashes, so it is refused by version, up front.
///
/// The state hashes a log carries (initial state, checkpoints) are over
/// the machine's state types (`HartState`, the device states), encoded as
/// the snapshot format stores them; that encoding is pinned by a test in
/// `crates/machine/tests/snapshot.rs`. Snapshot format 5 (state types
/// apart from the live structs) kept it byte for byte, so logs did not
/// change; a change to it needs a new version here too.
pub const FORMAT_VERSION: u16 = 2;
/// Size of the header in bytes.
pub const HEADER_LEN: usize = 62;
/// Size of a frame's fixed part (length/tag word and CRC) in bytes.
pub const FRAME_HEADER_LEN: usize = 8;
/// Largest frame body a writer produces or a reader accepts.
pub const MAX_FRAME_BODY: usize = 128 * 1024;

/// The log header: which VM the log belongs to and the state it starts from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Header {
    pub vm_uuid: [u8; 16],
    /// blake3 of the machine state at LSN 0 (`Machine::state_hash`).
    pub initial_state_hash: [u8; 32],
}

const HEADER_CRC_AT: usize = HEADER_LEN - 4;

impl Header {
    /// The header's 62 bytes, checksum included.
    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let mut out = [0u8; HEADER_LEN];
        out[0..8].copy_from_slice(&MAGIC);
        out[8..10].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
        out[10..26].copy_from_slice(&self.vm_uuid);
        out[26..58].copy_from_slice(&self.initial_state_hash);
        let crc = crc32c::crc32c(&out[..HEADER_CRC_AT]);
        out[HEADER_CRC_AT..].copy_from_slice(&crc.to_le_bytes());
        out
    }

    /// Parses and checks a header. `bytes` may be short: the error then says
    /// so, after checking whatever magic and version bytes are there.
    pub fn decode(bytes: &[u8]) -> Result<Header, ReadError> {
        let have = bytes.len().min(HEADER_LEN);
        let magic_part = &bytes[..have.min(MAGIC.len())];
        if magic_part != &MAGIC[..magic_part.len()] {
            let mut found = [0u8; 8];
            found[..magic_part.len()].copy_from_slice(magic_part);
            return Err(ReadError::BadMagic { found });
        }
        if let Some(v) = bytes.get(8..10) {
            let found = u16::from_le_bytes([v[0], v[1]]);
            if found != FORMAT_VERSION {
                return Err(ReadError::UnsupportedVersion {
                    found,
                    supported: FORMAT_VERSION,
                });
            }
        }
        let Some(bytes) = bytes.get(..HEADER_LEN) else {
            return Err(ReadError::TruncatedHeader {
                have,
                need: HEADER_LEN,
            });
        };
        let stored = read_u32(&bytes[HEADER_CRC_AT..]);
        let computed = crc32c::crc32c(&bytes[..HEADER_CRC_AT]);
        if stored != computed {
            return Err(ReadError::HeaderChecksum { stored, computed });
        }
        let mut header = Header {
            vm_uuid: [0; 16],
            initial_state_hash: [0; 32],
        };
        header.vm_uuid.copy_from_slice(&bytes[10..26]);
        header.initial_state_hash.copy_from_slice(&bytes[26..58]);
        Ok(header)
    }
}

/// Little-endian u32 from the first four bytes; callers check the length.
fn read_u32(bytes: &[u8]) -> u32 {
    let mut word = [0u8; 4];
    word.copy_from_slice(&bytes[..4]);
    u32::from_le_bytes(word)
}
