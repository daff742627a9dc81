//! Crash-safe file changes (DESIGN §6): write new, fsync, switch one
//! pointer by rename, fsync the directory.

use std::fs::{File, Permissions};
use std::io::{self, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

/// Replace `path` with `bytes` atomically: after a crash the file holds
/// either its old or its new contents, never a mix. New files are 0600.
pub fn replace_file(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let dir = parent(path);
    let mut tmp = tempfile::Builder::new()
        .prefix(".tmp-")
        .permissions(Permissions::from_mode(0o600))
        .tempfile_in(dir)?;
    tmp.write_all(bytes)?;
    disk::crash_point("file written");
    tmp.as_file().sync_all()?;
    disk::crash_point("file synced");
    tmp.persist(path).map_err(|e| e.error)?;
    disk::crash_point("file renamed into place");
    sync_dir(dir)?;
    disk::crash_point("directory synced");
    Ok(())
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

fn parent(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replace_and_noreplace() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("a");
        replace_file(&f, b"one").unwrap();
        replace_file(&f, b"two").unwrap();
        assert_eq!(std::fs::read(&f).unwrap(), b"two");
        let mode = std::fs::metadata(&f).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let (x, y) = (dir.path().join("x"), dir.path().join("y"));
        std::fs::create_dir(&x).unwrap();
        std::fs::create_dir(&y).unwrap();
        let err = rename_noreplace(&x, &y).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AlreadyExists);
        // Only the temporary files' absence shows nothing was left behind.
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 3, "{names:?}");
    }
}
