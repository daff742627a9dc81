//! The arbiter (DESIGN §5, split brain): a generation number in a file on
//! storage both hosts share. Before a side goes live (the backup) or runs on
//! alone (the primary), it must move the generation from the one the pair
//! started under to the next: an atomic test-and-set under `flock(2)` on a
//! lock file beside it. Exactly one side wins; the other halts.
//!
//! The generation file is replaced by write-new, fsync, rename, fsync of
//! the directory, so a crash leaves the old or the new number, never a
//! torn one.

use crate::FtError;
use rustix::fs::{flock, FlockOperation};
use std::fs::{File, OpenOptions};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

const PREFIX: &str = "lockstep-ft-generation ";

/// Who won a [`Arbiter::claim`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Claim {
    /// This side moved the generation to this number: it may act.
    Won(u64),
    /// Someone else already moved it (to this number): halt.
    Lost(u64),
}

#[derive(Clone, Debug)]
pub struct Arbiter {
    path: PathBuf,
}

/// Holds the arbiter's lock until dropped (closing the file unlocks it).
struct Locked(#[allow(dead_code)] File);

impl Arbiter {
    /// The arbiter at `path`; the file is created with generation 0 if it
    /// does not exist yet.
    pub fn open(path: &Path) -> Result<Arbiter, FtError> {
        let arbiter = Arbiter {
            path: path.to_path_buf(),
        };
        let _lock = arbiter.lock()?;
        if !path.exists() {
            arbiter.write(0)?;
        }
        Ok(arbiter)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The current generation.
    pub fn generation(&self) -> Result<u64, FtError> {
        let _lock = self.lock()?;
        self.read()
    }

    /// Atomically: if the generation is still `expected`, make it
    /// `expected + 1` and win; otherwise lose.
    pub fn claim(&self, expected: u64) -> Result<Claim, FtError> {
        let _lock = self.lock()?;
        let current = self.read()?;
        if current != expected {
            return Ok(Claim::Lost(current));
        }
        let next = expected
            .checked_add(1)
            .ok_or_else(|| self.bad("the generation cannot grow past 2^64 - 1"))?;
        self.write(next)?;
        Ok(Claim::Won(next))
    }

    fn lock(&self) -> Result<Locked, FtError> {
        let lock_path = with_suffix(&self.path, ".lock");
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
            .open(&lock_path)
            .map_err(|source| self.error("cannot open its lock file", source))?;
        flock(&file, FlockOperation::LockExclusive)
            .map_err(|e| self.error("cannot lock it", e.into()))?;
        Ok(Locked(file))
    }

    fn read(&self) -> Result<u64, FtError> {
        let text = std::fs::read_to_string(&self.path)
            .map_err(|source| self.error("cannot read it", source))?;
        text.strip_prefix(PREFIX)
            .and_then(|rest| rest.strip_suffix('\n'))
            .and_then(|n| n.parse().ok())
            .ok_or_else(|| self.bad("not an FT arbiter file (expected 'lockstep-ft-generation N')"))
    }

    fn write(&self, generation: u64) -> Result<(), FtError> {
        // A new file of this process's own (0600, a random name: two
        // writers never share one), fsynced, renamed over the arbiter,
        // the directory fsynced.
        let name = self
            .path
            .file_name()
            .map(|n| format!(".{}.new-", n.to_string_lossy()))
            .unwrap_or_else(|| ".arbiter.new-".into());
        let options = durable::Options {
            prefix: &name,
            ..durable::Options::default()
        };
        durable::write(
            &self.path,
            &options,
            format!("{PREFIX}{generation}\n").as_bytes(),
        )
        .map_err(|e| match e {
            durable::Error::Fill(source) => self.error("cannot write a new version", source),
            durable::Error::Create { source, .. } => {
                self.error("cannot create a new version", source)
            }
            durable::Error::Io { step, source, .. } => self.error(step, source),
            durable::Error::Exists { .. } => self.error(
                "cannot replace it",
                std::io::ErrorKind::AlreadyExists.into(),
            ),
        })
    }

    fn error(&self, what: &'static str, source: std::io::Error) -> FtError {
        FtError::Arbiter {
            path: self.path.clone(),
            what,
            source,
        }
    }

    fn bad(&self, problem: &'static str) -> FtError {
        FtError::ArbiterContent {
            path: self.path.clone(),
            problem,
        }
    }
}

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exactly_one_claimant_wins_a_generation() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("arbiter");
        let a = Arbiter::open(&path).expect("create");
        assert_eq!(a.generation().expect("read"), 0);
        let b = Arbiter::open(&path).expect("open existing");
        // Many racing claimants for generation 1: exactly one wins.
        let winners: Vec<Claim> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..8)
                .map(|_| {
                    let b = b.clone();
                    s.spawn(move || b.claim(0).expect("claim"))
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("no panic"))
                .collect()
        });
        assert_eq!(winners.iter().filter(|c| **c == Claim::Won(1)).count(), 1);
        assert_eq!(winners.iter().filter(|c| **c == Claim::Lost(1)).count(), 7);
        assert_eq!(a.claim(1).expect("claim"), Claim::Won(2));
        assert_eq!(a.claim(1).expect("stale"), Claim::Lost(2));
        assert_eq!(a.generation().expect("read"), 2);
    }

    #[test]
    fn a_foreign_file_is_refused() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("arbiter");
        std::fs::write(&path, "hello\n").expect("write");
        let a = Arbiter::open(&path).expect("exists");
        let err = a.claim(0).unwrap_err().to_string();
        assert!(err.contains("not an FT arbiter file"), "{err}");
        assert!(err.contains("arbiter"), "{err}");
    }
}
