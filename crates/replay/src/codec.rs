//! Frame encoding and decoding on byte slices, without I/O: the writer and
//! reader build on these, and the FT log channel can batch frames with them.

use crate::error::{ReadError, WriteError};
use crate::record::{BodyError, Record, RecordKind};
use crate::varint::{self, Cursor};
use crate::{read_u32, FRAME_HEADER_LEN, HEADER_LEN, MAX_FRAME_BODY};

const LEN_MASK: u32 = 0x00ff_ffff;

/// Turns records into frames, enforcing consecutive LSNs and a
/// non-decreasing icount.
#[derive(Clone, Debug)]
pub struct Encoder {
    next_lsn: u64,
    last_icount: u64,
}

impl Default for Encoder {
    fn default() -> Self {
        Self::new()
    }
}

impl Encoder {
    /// For a new log: the first record gets LSN 0, icounts start at 0.
    pub fn new() -> Self {
        Self::resume(0, 0)
    }

    /// Continues a log whose next record is `next_lsn` and whose last record
    /// (if any) had icount `last_icount`.
    pub fn resume(next_lsn: u64, last_icount: u64) -> Self {
        Encoder {
            next_lsn,
            last_icount,
        }
    }

    pub fn next_lsn(&self) -> u64 {
        self.next_lsn
    }

    pub fn last_icount(&self) -> u64 {
        self.last_icount
    }

    /// Appends `record` as one frame to `out` and returns the frame's size.
    /// On error nothing is appended and the encoder is unchanged.
    pub fn encode(&mut self, record: &Record, out: &mut Vec<u8>) -> Result<usize, WriteError> {
        if record.lsn != self.next_lsn {
            return Err(WriteError::LsnOutOfOrder {
                expected: self.next_lsn,
                got: record.lsn,
            });
        }
        self.encode_next(record.icount, &record.kind, out)
            .map(|(_, size)| size)
    }

    /// Appends a frame for the next LSN and returns that LSN and the frame's
    /// size: for callers that let the encoder number the records.
    pub fn encode_next(
        &mut self,
        icount: u64,
        kind: &RecordKind,
        out: &mut Vec<u8>,
    ) -> Result<(u64, usize), WriteError> {
        let lsn = self.next_lsn;
        let Some(delta) = icount.checked_sub(self.last_icount) else {
            return Err(WriteError::IcountBackwards {
                lsn,
                previous: self.last_icount,
                got: icount,
            });
        };
        let start = out.len();
        out.extend_from_slice(&[0; FRAME_HEADER_LEN]);
        varint::put(out, lsn);
        varint::put(out, delta);
        kind.encode_payload(out);
        let body_len = out.len() - start - FRAME_HEADER_LEN;
        if body_len > MAX_FRAME_BODY {
            out.truncate(start);
            return Err(WriteError::RecordTooLarge {
                lsn,
                size: body_len,
                max: MAX_FRAME_BODY,
            });
        }
        // Fits in 24 bits: MAX_FRAME_BODY is far below 2^24.
        let word = (u32::from(kind.tag()) << 24) | body_len as u32;
        let word = word.to_le_bytes();
        let crc = frame_crc(word, &out[start + FRAME_HEADER_LEN..]);
        out[start..start + 4].copy_from_slice(&word);
        out[start + 4..start + FRAME_HEADER_LEN].copy_from_slice(&crc.to_le_bytes());
        self.next_lsn += 1;
        self.last_icount = icount;
        Ok((lsn, out.len() - start))
    }
}

/// The CRC covers the length/tag word and the body.
fn frame_crc(word: [u8; 4], body: &[u8]) -> u32 {
    crc32c::crc32c_append(crc32c::crc32c(&word), body)
}

/// What [`Decoder::decode`] found at the start of its input.
#[derive(Debug, PartialEq, Eq)]
pub enum Decoded {
    /// A valid record, taking `len` bytes of the input.
    Record { record: Record, len: usize },
    /// The input holds only part of a frame; the whole frame needs `need`
    /// bytes (a lower bound while fewer than 8 bytes are there).
    Incomplete { need: usize },
}

/// Checks and decodes frames one at a time, tracking the expected LSN, the
/// icount, and the byte offset for error messages.
#[derive(Clone, Debug)]
pub struct Decoder {
    next_lsn: u64,
    last_icount: u64,
    offset: u64,
}

impl Default for Decoder {
    fn default() -> Self {
        Self::new()
    }
}

impl Decoder {
    /// For a log read from its start: the first frame follows the header.
    pub fn new() -> Self {
        Self::resume(0, 0, HEADER_LEN as u64)
    }

    /// For frames that continue a log: the next frame must carry `next_lsn`,
    /// the last record had `last_icount`, and the next frame starts at byte
    /// `offset` of the log (used only in error messages).
    pub fn resume(next_lsn: u64, last_icount: u64, offset: u64) -> Self {
        Decoder {
            next_lsn,
            last_icount,
            offset,
        }
    }

    pub fn next_lsn(&self) -> u64 {
        self.next_lsn
    }

    pub fn last_icount(&self) -> u64 {
        self.last_icount
    }

    /// Byte offset of the next frame in the log.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// Decodes the frame at the start of `input`. On success the decoder
    /// moves past it; on `Incomplete` or an error it is unchanged.
    pub fn decode(&mut self, input: &[u8]) -> Result<Decoded, ReadError> {
        let Some(header) = input.get(..FRAME_HEADER_LEN) else {
            return Ok(Decoded::Incomplete {
                need: FRAME_HEADER_LEN,
            });
        };
        let word = read_u32(header);
        let body_len = (word & LEN_MASK) as usize;
        let tag = (word >> 24) as u8;
        if body_len > MAX_FRAME_BODY {
            return Err(ReadError::FrameTooLarge {
                offset: self.offset,
                lsn: self.next_lsn,
                len: body_len,
                max: MAX_FRAME_BODY,
            });
        }
        let len = FRAME_HEADER_LEN + body_len;
        let Some(body) = input.get(FRAME_HEADER_LEN..len) else {
            return Ok(Decoded::Incomplete { need: len });
        };
        let stored = read_u32(&header[4..]);
        let computed = frame_crc(word.to_le_bytes(), body);
        if stored != computed {
            return Err(ReadError::FrameChecksum {
                offset: self.offset,
                lsn: self.next_lsn,
                stored,
                computed,
            });
        }
        let record = self.decode_body(tag, body)?;
        self.next_lsn += 1;
        self.last_icount = record.icount;
        self.offset += len as u64;
        Ok(Decoded::Record { record, len })
    }

    fn decode_body(&self, tag: u8, body: &[u8]) -> Result<Record, ReadError> {
        let mut cursor = Cursor::new(body);
        let lsn = cursor.varint().map_err(|p| self.malformed(p))?;
        if lsn != self.next_lsn {
            return Err(ReadError::LsnGap {
                offset: self.offset,
                expected: self.next_lsn,
                found: lsn,
            });
        }
        let delta = cursor.varint().map_err(|p| self.malformed(p))?;
        let icount = self
            .last_icount
            .checked_add(delta)
            .ok_or(ReadError::IcountOverflow {
                offset: self.offset,
                lsn,
                previous: self.last_icount,
                delta,
            })?;
        let kind = RecordKind::decode_payload(tag, &mut cursor).map_err(|e| match e {
            BodyError::Malformed(problem) => self.malformed(problem),
            BodyError::UnknownTag { what, tag } => ReadError::UnknownKind {
                offset: self.offset,
                lsn,
                what,
                tag,
            },
        })?;
        if !cursor.is_empty() {
            return Err(self.malformed("bytes left over after the payload"));
        }
        Ok(Record { lsn, icount, kind })
    }

    fn malformed(&self, problem: &'static str) -> ReadError {
        ReadError::Malformed {
            offset: self.offset,
            lsn: self.next_lsn,
            problem,
        }
    }
}
