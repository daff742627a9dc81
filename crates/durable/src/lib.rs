//! Crash-safe file changes (DESIGN §6), the one place lockstep writes a
//! file so that a power cut leaves either the old contents or the new,
//! never a mix: write a new file beside the target, fsync it, rename it
//! into place (or link it, refusing to replace anything), fsync the
//! directory. Every crate that keeps state on disk (disk images, VM
//! bundles, snapshots, the image cache, the FT arbiter, TLS identities)
//! writes through [`write_with`].
//!
//! Also here: [`crash_point`], the crash injection the power-loss tests
//! use, and the small directory operations that go with a durable change
//! ([`sync_dir`], [`rename_noreplace`], [`remove_if_exists`]).
//!
//! This crate knows nothing of what the files hold.

mod crash;

pub use crash::crash_point;

use std::fs::{File, Permissions};
use std::io::{self, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// How [`write_with`] makes the new file and puts it in place.
#[derive(Clone, Copy, Debug)]
pub struct Options<'a> {
    /// The new file's mode (less the umask): 0600 for guest data and
    /// secrets, the default.
    pub mode: u32,
    /// The temporary name's prefix (a random part follows).
    pub prefix: &'a str,
    /// The temporary name's suffix.
    pub suffix: &'a str,
    /// Replace what is at the path (rename), or refuse to
    /// ([`Error::Exists`]; link, then unlink the temporary name).
    pub replace: bool,
    /// Report each step as a [`crash_point`] (the power-loss tests count
    /// and kill at them), named after `what` ("image written", …).
    pub crash_points: bool,
    /// What the file is, in crash point names.
    pub what: &'a str,
}

impl Default for Options<'_> {
    fn default() -> Self {
        Options {
            mode: 0o600,
            prefix: ".tmp-",
            suffix: "",
            replace: true,
            crash_points: false,
            what: "file",
        }
    }
}

/// What went wrong in [`write_with`].
#[derive(Debug, thiserror::Error)]
pub enum Error<E> {
    /// The caller's `fill` failed; nothing was put in place.
    #[error(transparent)]
    Fill(E),
    /// No new file could be made in `dir` (not writable, full, …).
    #[error("cannot create a new file in {}: {source}", dir.display())]
    Create {
        dir: PathBuf,
        #[source]
        source: io::Error,
    },
    /// A file operation failed at `path` during `step`.
    #[error("{step} {}: {source}", path.display())]
    Io {
        step: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// `replace: false` and something is at the path already.
    #[error("{} already exists", path.display())]
    Exists { path: PathBuf },
}

impl Error<io::Error> {
    /// As one `io::Error` (for callers whose fill does plain I/O).
    pub fn into_io(self) -> io::Error {
        match self {
            Error::Fill(e) | Error::Create { source: e, .. } | Error::Io { source: e, .. } => e,
            Error::Exists { path } => io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("{} already exists", path.display()),
            ),
        }
    }
}

/// Writes `path` crash-safely: `fill` writes a new temporary file beside
/// it (given the file and its temporary path), which is fsynced and put in
/// place only if `fill` succeeds; then the directory is fsynced. On any
/// error the temporary file is removed and `path` is untouched.
pub fn write_with<T, E>(
    path: &Path,
    options: &Options<'_>,
    fill: impl FnOnce(&mut File, &Path) -> Result<T, E>,
) -> Result<T, Error<E>> {
    let dir = parent(path);
    let mut tmp = tempfile::Builder::new()
        .prefix(options.prefix)
        .suffix(options.suffix)
        .permissions(Permissions::from_mode(options.mode))
        .tempfile_in(dir)
        .map_err(|source| Error::Create {
            dir: dir.to_path_buf(),
            source,
        })?;
    let tmp_path = tmp.path().to_path_buf();
    let out = fill(tmp.as_file_mut(), &tmp_path).map_err(Error::Fill)?;
    if options.crash_points {
        crash_point(&format!("{} written", options.what));
    }
    place(tmp.into_temp_path(), path, options)?;
    Ok(out)
}

/// Puts a finished temporary file (made in `path`'s directory) in place,
/// durably: fsync it, rename it over `path` (or link it, refusing to
/// replace anything, if `options.replace` is off), fsync the directory.
/// The second half of [`write_with`], for files built over a longer
/// time (a snapshot assembled while a VM runs). On error the temporary
/// file is removed.
pub fn place<E>(
    tmp: tempfile::TempPath,
    path: &Path,
    options: &Options<'_>,
) -> Result<(), Error<E>> {
    let step = |done: &str| {
        if options.crash_points {
            crash_point(&format!("{} {done}", options.what))
        }
    };
    let io_at = |step: &'static str, path: &Path| {
        let path = path.to_path_buf();
        move |source| Error::Io { step, path, source }
    };
    File::open(&tmp)
        .and_then(|f| f.sync_all())
        .map_err(io_at("syncing", &tmp))?;
    step("synced");
    let placed = if options.replace {
        tmp.persist(path)
            .map_err(|e| io_at("renaming a new file to", path)(e.error))?;
        "renamed into place"
    } else {
        tmp.persist_noclobber(path).map_err(|e| {
            if e.error.kind() == io::ErrorKind::AlreadyExists {
                Error::Exists {
                    path: path.to_path_buf(),
                }
            } else {
                io_at("linking a new file to", path)(e.error)
            }
        })?;
        "linked"
    };
    step(placed);
    let dir = parent(path);
    sync_dir(dir).map_err(io_at("syncing the directory", dir))?;
    step("directory synced");
    Ok(())
}

/// [`write_with`] of `bytes`.
pub fn write(path: &Path, options: &Options<'_>, bytes: &[u8]) -> Result<(), Error<io::Error>> {
    write_with(path, options, |file, _| file.write_all(bytes))
}

/// Make a directory's entries (new names, renames, removals) durable.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Rename `from` to `to`, failing with `AlreadyExists` rather than
/// replacing anything at `to` (directories included: a plain rename
/// replaces an empty directory).
pub fn rename_noreplace(from: &Path, to: &Path) -> io::Result<()> {
    rustix::fs::renameat_with(
        rustix::fs::CWD,
        from,
        rustix::fs::CWD,
        to,
        rustix::fs::RenameFlags::NOREPLACE,
    )
    .map_err(io::Error::from)
}

/// Remove a file if it exists.
pub fn remove_if_exists(path: &Path) -> io::Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        r => r,
    }
}

/// The directory `path` is in (`.` for a bare name).
pub fn parent(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn replaces_whole_or_not_at_all() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        write(&path, &Options::default(), b"one").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"one");
        assert_eq!(std::fs::metadata(&path).unwrap().mode() & 0o777, 0o600);
        write(&path, &Options::default(), b"two").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"two");
        // A fill that fails leaves the old contents and no temporary file.
        let err = write_with(&path, &Options::default(), |file, _| {
            file.write_all(b"half")?;
            Err::<(), _>(io::Error::other("no"))
        })
        .unwrap_err();
        assert!(matches!(err, Error::Fill(_)));
        assert_eq!(std::fs::read(&path).unwrap(), b"two");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn no_replace_refuses_an_existing_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let options = Options {
            replace: false,
            mode: 0o644,
            ..Options::default()
        };
        write(&path, &options, b"one").unwrap();
        let err = write(&path, &options, b"two").unwrap_err();
        assert!(matches!(err, Error::Exists { .. }), "{err}");
        assert_eq!(std::fs::read(&path).unwrap(), b"one");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
