//! Writing a log to any `std::io::Write`, buffered.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use crate::codec::Encoder;
use crate::error::WriteError;
use crate::record::{Record, RecordKind};
use crate::Header;

/// Buffered bytes are written out once they reach this size.
const WRITE_OUT_AT: usize = 64 * 1024;

/// Appends records to a log. Records are encoded into an in-memory buffer
/// that goes to the underlying writer when it fills, on [`flush`], on
/// [`sync`] and (best effort) on drop.
///
/// After a failed write the log's tail is unknown, so the writer refuses
/// further work with [`WriteError::Failed`].
///
/// [`flush`]: LogWriter::flush
/// [`sync`]: LogWriter::sync
pub struct LogWriter<W: Write> {
    /// `Some` until `into_inner` takes it.
    inner: Option<W>,
    buf: Vec<u8>,
    encoder: Encoder,
    failed: bool,
}

impl LogWriter<File> {
    /// Creates a new log file (never overwriting one) and makes its header
    /// durable: the file is fsynced, and so is the directory entry.
    pub fn create(path: &Path, header: &Header) -> Result<Self, WriteError> {
        let io_error = |what: &str| {
            let context = format!("{what} {}", path.display());
            move |source| WriteError::Io { context, source }
        };
        // A log holds the VM's RNG seed and every keystroke: 0600, and
        // never through a link (create_new refuses an existing one).
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .map_err(io_error("cannot create"))?;
        file.write_all(&header.encode())
            .map_err(io_error("cannot write the header of"))?;
        file.sync_all().map_err(io_error("cannot sync"))?;
        let dir = match path.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir,
            _ => Path::new("."),
        };
        File::open(dir)
            .and_then(|dir| dir.sync_all())
            .map_err(io_error("cannot sync the directory of"))?;
        Ok(LogWriter::continuing(file, Encoder::new()))
    }

    /// Writes out everything appended so far and fsyncs it.
    pub fn sync(&mut self) -> Result<(), WriteError> {
        self.flush()?;
        self.inner_mut()
            .sync_data()
            .map_err(|source| self.fail("cannot sync the log", source))
    }
}

impl<W: Write> LogWriter<W> {
    /// A new log on `inner`: the header is the first thing written.
    pub fn new(inner: W, header: &Header) -> Self {
        let mut writer = LogWriter::continuing(inner, Encoder::new());
        writer.buf.extend_from_slice(&header.encode());
        writer
    }

    /// Frames only, continuing where `encoder` stands: for a stream whose
    /// header was sent already, or a log being appended to.
    pub fn continuing(inner: W, encoder: Encoder) -> Self {
        LogWriter {
            inner: Some(inner),
            buf: Vec::with_capacity(WRITE_OUT_AT + 1024),
            encoder,
            failed: false,
        }
    }

    /// Appends `record`, which must carry the next LSN and an icount no
    /// lower than the last record's.
    pub fn append(&mut self, record: &Record) -> Result<(), WriteError> {
        self.check_usable()?;
        self.encoder.encode(record, &mut self.buf)?;
        self.write_out_if_full()
    }

    /// Appends a record with the next LSN and returns that LSN.
    pub fn append_next(&mut self, icount: u64, kind: &RecordKind) -> Result<u64, WriteError> {
        self.check_usable()?;
        let (lsn, _) = self.encoder.encode_next(icount, kind, &mut self.buf)?;
        self.write_out_if_full()?;
        Ok(lsn)
    }

    /// Writes out the buffer and flushes the underlying writer.
    pub fn flush(&mut self) -> Result<(), WriteError> {
        self.write_out()?;
        self.inner_mut()
            .flush()
            .map_err(|source| self.fail("cannot flush the log", source))
    }

    pub fn next_lsn(&self) -> u64 {
        self.encoder.next_lsn()
    }

    pub fn last_icount(&self) -> u64 {
        self.encoder.last_icount()
    }

    /// Bytes appended but not yet handed to the underlying writer.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    pub fn get_ref(&self) -> &W {
        self.inner
            .as_ref()
            .expect("inner is present until into_inner")
    }

    /// Flushes and returns the underlying writer.
    pub fn into_inner(mut self) -> Result<W, WriteError> {
        self.flush()?;
        Ok(self
            .inner
            .take()
            .expect("inner is present until into_inner"))
    }

    fn inner_mut(&mut self) -> &mut W {
        self.inner
            .as_mut()
            .expect("inner is present until into_inner")
    }

    fn check_usable(&self) -> Result<(), WriteError> {
        if self.failed {
            return Err(WriteError::Failed);
        }
        Ok(())
    }

    fn write_out_if_full(&mut self) -> Result<(), WriteError> {
        if self.buf.len() >= WRITE_OUT_AT {
            self.write_out()?;
        }
        Ok(())
    }

    fn write_out(&mut self) -> Result<(), WriteError> {
        self.check_usable()?;
        if self.buf.is_empty() {
            return Ok(());
        }
        let Some(inner) = self.inner.as_mut() else {
            return Ok(());
        };
        let result = inner.write_all(&self.buf);
        match result {
            Ok(()) => {
                self.buf.clear();
                Ok(())
            }
            Err(source) => Err(self.fail("cannot write the log", source)),
        }
    }

    fn fail(&mut self, context: &str, source: std::io::Error) -> WriteError {
        self.failed = true;
        WriteError::Io {
            context: context.to_owned(),
            source,
        }
    }
}

impl<W: Write> Drop for LogWriter<W> {
    /// Best effort, like `BufWriter`: call `flush` or `sync` to see errors.
    fn drop(&mut self) {
        if self.inner.is_some() {
            let _ = self.flush();
        }
    }
}
