//! `console.log`: every byte the guest writes to its console, appended,
//! bounded: past [`MAX_CONSOLE_LOG`] the file moves to `console.log.1`
//! (replacing the one before) and a new one starts.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// Bytes kept per console log file (two files at most).
pub const MAX_CONSOLE_LOG: u64 = 8 << 20;

/// An appending, rotating console log.
pub struct ConsoleLog {
    path: PathBuf,
    file: File,
    len: u64,
    max: u64,
}

impl ConsoleLog {
    /// Open (or create, 0600, never through a symbolic link) for appending.
    pub fn open(path: &Path, max: u64) -> io::Result<ConsoleLog> {
        let file = open_append(path)?;
        let len = file.metadata()?.len();
        Ok(ConsoleLog {
            path: path.to_path_buf(),
            file,
            len,
            max: max.max(1),
        })
    }

    fn rotate(&mut self) -> io::Result<()> {
        let mut old = self.path.clone().into_os_string();
        old.push(".1");
        std::fs::rename(&self.path, &old)?;
        self.file = open_append(&self.path)?;
        self.len = 0;
        Ok(())
    }
}

fn open_append(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o600)
        .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
        .open(path)
}

impl Write for ConsoleLog {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.len >= self.max {
            self.rotate()?;
        }
        let room = usize::try_from(self.max - self.len).unwrap_or(usize::MAX);
        let n = self.file.write(&buf[..buf.len().min(room)])?;
        self.len += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotates_and_bounds() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("console.log");
        let mut log = ConsoleLog::open(&path, 100).unwrap();
        for _ in 0..25 {
            log.write_all(b"0123456789").unwrap();
        }
        log.flush().unwrap();
        let cur = std::fs::metadata(&path).unwrap().len();
        let old = std::fs::metadata(dir.path().join("console.log.1"))
            .unwrap()
            .len();
        assert_eq!((old, cur), (100, 50));
        // Reopening appends where it was.
        let mut log = ConsoleLog::open(&path, 100).unwrap();
        log.write_all(b"abc").unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 53);
    }
}
