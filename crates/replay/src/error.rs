use std::path::PathBuf;

/// Why a log (a file, a stream, or a batch of frames) was rejected. Offsets
/// are byte offsets from the start of the log (the header is at 0); `lsn` in
/// a frame error is the LSN the frame was expected to carry.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("replay log: cannot open {}: {source}", path.display())]
    Open {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("replay log: read failed at offset {offset}: {source}")]
    Io { offset: u64, source: std::io::Error },
    #[error("replay log: truncated header: {have} of {need} bytes")]
    TruncatedHeader { have: usize, need: usize },
    #[error("replay log: bad magic {found:02x?} at offset 0: not a lockstep replay log")]
    BadMagic { found: [u8; 8] },
    #[error("replay log: unsupported format version {found} at offset 8 (this build reads version {supported})")]
    UnsupportedVersion { found: u16, supported: u16 },
    #[error(
        "replay log: header checksum mismatch (stored {stored:#010x}, computed {computed:#010x})"
    )]
    HeaderChecksum { stored: u32, computed: u32 },
    #[error("replay log: truncated frame at offset {offset} (LSN {lsn}): {have} of {need} bytes, the log ends with a torn frame")]
    TruncatedFrame {
        offset: u64,
        lsn: u64,
        have: usize,
        need: usize,
    },
    #[error("replay log: frame checksum mismatch at offset {offset} (LSN {lsn}): stored {stored:#010x}, computed {computed:#010x}")]
    FrameChecksum {
        offset: u64,
        lsn: u64,
        stored: u32,
        computed: u32,
    },
    #[error("replay log: frame at offset {offset} (LSN {lsn}) claims a {len}-byte body, more than the {max}-byte maximum")]
    FrameTooLarge {
        offset: u64,
        lsn: u64,
        len: usize,
        max: usize,
    },
    #[error("replay log: LSN gap at offset {offset}: expected LSN {expected}, found {found} (records missing, repeated or reordered)")]
    LsnGap {
        offset: u64,
        expected: u64,
        found: u64,
    },
    #[error(
        "replay log: icount overflows 64 bits at offset {offset} (LSN {lsn}): {previous} + {delta}"
    )]
    IcountOverflow {
        offset: u64,
        lsn: u64,
        previous: u64,
        delta: u64,
    },
    #[error("replay log: unknown {what} tag {tag:#04x} at offset {offset} (LSN {lsn})")]
    UnknownKind {
        offset: u64,
        lsn: u64,
        what: &'static str,
        tag: u8,
    },
    #[error("replay log: malformed frame at offset {offset} (LSN {lsn}): {problem}")]
    Malformed {
        offset: u64,
        lsn: u64,
        problem: &'static str,
    },
}

/// Why a record could not be appended. LSN and icount order errors are bugs
/// in the caller, reported instead of written.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error("replay log writer: record LSN {got} out of order (the next LSN is {expected})")]
    LsnOutOfOrder { expected: u64, got: u64 },
    #[error("replay log writer: icount goes backwards at LSN {lsn}: {got} after {previous}")]
    IcountBackwards { lsn: u64, previous: u64, got: u64 },
    #[error("replay log writer: record at LSN {lsn} needs a {size}-byte frame body, more than the {max}-byte maximum (split it)")]
    RecordTooLarge { lsn: u64, size: usize, max: usize },
    #[error("replay log writer: {context}: {source}")]
    Io {
        context: String,
        source: std::io::Error,
    },
    #[error("replay log writer: an earlier write failed, the log's tail is unknown; refusing to write more")]
    Failed,
}
