//! Reading a log from any `std::io::Read`: a file, a socket, a byte slice.

use std::fmt;
use std::fs::File;
use std::io::{BufReader, ErrorKind, Read};
use std::path::Path;

use crate::codec::{Decoded, Decoder};
use crate::error::ReadError;
use crate::record::{Record, RecordKind};
use crate::{Header, HEADER_LEN};

/// What to do when the log ends in the middle of a frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TailPolicy {
    /// A torn last frame is an error ([`ReadError::TruncatedFrame`]): for
    /// logs that were closed properly, and for [`validate`].
    Strict,
    /// A torn last frame ends the log, reported by [`LogReader::end`] as
    /// [`LogEnd::Torn`]: what a crash of a live recorder leaves behind.
    AllowTornTail,
}

/// A last frame that the log holds only part of.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TornTail {
    /// Where the torn frame starts.
    pub offset: u64,
    /// The LSN it would have had.
    pub lsn: u64,
    pub have: usize,
    /// Bytes the frame needs (only its fixed part, 8, if fewer were there).
    pub need: usize,
}

impl fmt::Display for TornTail {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "log ends with a torn frame at offset {} (LSN {}: {} of {} bytes)",
            self.offset, self.lsn, self.have, self.need
        )
    }
}

/// How a log that was read to its end ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LogEnd {
    /// At a frame boundary, `offset` bytes into the log.
    Clean { offset: u64 },
    /// In the middle of a frame (only with [`TailPolicy::AllowTornTail`]).
    Torn(TornTail),
}

/// Reads and checks a log record by record. The header is read and checked
/// when the reader is made.
pub struct LogReader<R> {
    inner: R,
    header: Header,
    decoder: Decoder,
    policy: TailPolicy,
    frame: Vec<u8>,
    end: Option<LogEnd>,
    failed: bool,
}

impl LogReader<BufReader<File>> {
    pub fn open(path: &Path, policy: TailPolicy) -> Result<Self, ReadError> {
        let file = File::open(path).map_err(|source| ReadError::Open {
            path: path.to_owned(),
            source,
        })?;
        LogReader::new(BufReader::with_capacity(64 * 1024, file), policy)
    }
}

impl<R: Read> LogReader<R> {
    /// Reads and checks the header from `inner`.
    pub fn new(mut inner: R, policy: TailPolicy) -> Result<Self, ReadError> {
        let mut bytes = [0u8; HEADER_LEN];
        let have = read_full(&mut inner, &mut bytes, 0)?;
        let header = Header::decode(&bytes[..have])?;
        Ok(LogReader {
            inner,
            header,
            decoder: Decoder::new(),
            policy,
            frame: Vec::new(),
            end: None,
            failed: false,
        })
    }

    pub fn header(&self) -> &Header {
        &self.header
    }

    /// The next record, or `None` at the end of the log (see [`Self::end`]
    /// for how it ended). After an error the reader stays stopped.
    pub fn next_record(&mut self) -> Result<Option<Record>, ReadError> {
        if self.failed || self.end.is_some() {
            return Ok(None);
        }
        let next = self.read_frame();
        self.failed = next.is_err();
        next
    }

    /// How the log ended, once `next_record` has returned `None`.
    pub fn end(&self) -> Option<&LogEnd> {
        self.end.as_ref()
    }

    /// The LSN the next record must carry.
    pub fn next_lsn(&self) -> u64 {
        self.decoder.next_lsn()
    }

    /// Icount of the last record read (0 before the first).
    pub fn last_icount(&self) -> u64 {
        self.decoder.last_icount()
    }

    /// Bytes of the log consumed by complete frames and the header.
    pub fn offset(&self) -> u64 {
        self.decoder.offset()
    }

    pub fn into_inner(self) -> R {
        self.inner
    }

    fn read_frame(&mut self) -> Result<Option<Record>, ReadError> {
        let offset = self.decoder.offset();
        self.frame.clear();
        loop {
            match self.decoder.decode(&self.frame)? {
                Decoded::Record { record, .. } => return Ok(Some(record)),
                Decoded::Incomplete { need } => {
                    let have = self.frame.len();
                    self.frame.resize(need, 0);
                    let got = read_full(
                        &mut self.inner,
                        &mut self.frame[have..],
                        offset + have as u64,
                    )?;
                    if have + got == 0 {
                        self.end = Some(LogEnd::Clean { offset });
                        return Ok(None);
                    }
                    if have + got < need {
                        return self.torn(offset, have + got, need);
                    }
                }
            }
        }
    }

    fn torn(&mut self, offset: u64, have: usize, need: usize) -> Result<Option<Record>, ReadError> {
        let lsn = self.decoder.next_lsn();
        match self.policy {
            TailPolicy::Strict => Err(ReadError::TruncatedFrame {
                offset,
                lsn,
                have,
                need,
            }),
            TailPolicy::AllowTornTail => {
                self.end = Some(LogEnd::Torn(TornTail {
                    offset,
                    lsn,
                    have,
                    need,
                }));
                Ok(None)
            }
        }
    }
}

impl<R: Read> Iterator for LogReader<R> {
    type Item = Result<Record, ReadError>;

    fn next(&mut self) -> Option<Self::Item> {
        self.next_record().transpose()
    }
}

/// Reads until `buf` is full or the input ends; returns the bytes read.
fn read_full(inner: &mut impl Read, buf: &mut [u8], offset: u64) -> Result<usize, ReadError> {
    let mut filled = 0;
    while filled < buf.len() {
        match inner.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(source) => {
                return Err(ReadError::Io {
                    offset: offset + filled as u64,
                    source,
                })
            }
        }
    }
    Ok(filled)
}

/// What a whole, valid log holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogSummary {
    pub header: Header,
    pub records: u64,
    pub inputs: u64,
    pub outputs: u64,
    /// Icount of the last record (0 for an empty log).
    pub last_icount: u64,
    /// Size of the log in bytes.
    pub bytes: u64,
}

/// Checks a whole log file before anything executes: header, every frame's
/// checksum, structure, LSN and icount order, and a clean end.
pub fn validate(path: &Path) -> Result<LogSummary, ReadError> {
    summarize(LogReader::open(path, TailPolicy::Strict)?)
}

/// [`validate`] for a log from any reader.
pub fn validate_reader(inner: impl Read) -> Result<LogSummary, ReadError> {
    summarize(LogReader::new(inner, TailPolicy::Strict)?)
}

fn summarize<R: Read>(mut reader: LogReader<R>) -> Result<LogSummary, ReadError> {
    let (mut records, mut inputs, mut outputs) = (0, 0, 0);
    while let Some(record) = reader.next_record()? {
        records += 1;
        match record.kind {
            RecordKind::Input(_) => inputs += 1,
            RecordKind::Output { .. } => outputs += 1,
            RecordKind::Progress | RecordKind::Control(_) | RecordKind::Checkpoint { .. } => {}
        }
    }
    Ok(LogSummary {
        header: reader.header.clone(),
        records,
        inputs,
        outputs,
        last_icount: reader.last_icount(),
        bytes: reader.offset(),
    })
}
