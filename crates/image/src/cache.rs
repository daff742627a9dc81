//! The on-disk cache: where it is, crash-safe writes into it, and checksums of what it holds.

use crate::ImageError;
use sha2::{Digest, Sha256};
use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

/// The cache root: `explicit` (`--cache-dir`), else `$LOCKSTEP_CACHE`, else
/// `$XDG_CACHE_HOME/lockstep`, else `~/.cache/lockstep`.
pub fn cache_root(explicit: Option<&Path>) -> Result<PathBuf, ImageError> {
    if let Some(dir) = explicit {
        return Ok(dir.to_path_buf());
    }
    if let Some(dir) = env_dir("LOCKSTEP_CACHE") {
        return Ok(dir);
    }
    // The XDG spec says to ignore relative paths in these variables.
    if let Some(dir) = env_dir("XDG_CACHE_HOME").filter(|d| d.is_absolute()) {
        return Ok(dir.join("lockstep"));
    }
    env_dir("HOME")
        .map(|home| home.join(".cache").join("lockstep"))
        .ok_or(ImageError::NoCacheDir)
}

fn env_dir(name: &str) -> Option<PathBuf> {
    std::env::var_os(name)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
}

/// Creates `dir` if needed and proves that files can be created in it.
pub fn ensure_writable(dir: &Path) -> Result<(), ImageError> {
    let not_writable = |cause| ImageError::CacheNotWritable {
        path: dir.to_path_buf(),
        cause,
    };
    std::fs::create_dir_all(dir).map_err(not_writable)?;
    tempfile::Builder::new()
        .prefix(".probe-")
        .tempfile_in(dir)
        .map_err(not_writable)?;
    Ok(())
}

/// Writes `dest` crash-safely: `fill` writes a temp file next to it, which is fsynced and
/// renamed over `dest` only if `fill` succeeds; then the directory is fsynced. `dest` is
/// either untouched or complete, never half-written.
pub fn atomic_write_with(
    dest: &Path,
    fill: impl FnOnce(&mut File) -> Result<(), ImageError>,
) -> Result<(), ImageError> {
    let dir = durable::parent(dest);
    let not_writable = |cause| ImageError::CacheNotWritable {
        path: dir.to_path_buf(),
        cause,
    };
    std::fs::create_dir_all(dir).map_err(not_writable)?;
    let options = durable::Options {
        prefix: ".partial-",
        // Cached files are plain data anyone may read, like files made
        // with the default umask.
        mode: 0o644,
        ..durable::Options::default()
    };
    durable::write_with(dest, &options, |file, _| fill(file)).map_err(|e| match e {
        durable::Error::Fill(e) => e,
        durable::Error::Create { source, .. } => not_writable(source),
        durable::Error::Io { path, source, .. } => ImageError::io(&path)(source),
        durable::Error::Exists { path } => {
            ImageError::io(&path)(std::io::ErrorKind::AlreadyExists.into())
        }
    })
}

pub fn atomic_write(dest: &Path, bytes: &[u8]) -> Result<(), ImageError> {
    atomic_write_with(dest, |file| {
        file.write_all(bytes).map_err(ImageError::io(dest))
    })
}

/// Lower-case hexadecimal, two digits a byte.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub fn sha256_bytes(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

pub fn sha256_file(path: &Path) -> Result<String, ImageError> {
    let mut file = File::open(path).map_err(ImageError::io(path))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf).map_err(ImageError::io(path))?;
        if n == 0 {
            return Ok(hex(&hasher.finalize()));
        }
        hasher.update(&buf[..n]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failed_fill_leaves_destination_untouched_and_no_temp_files() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("sub/file");
        atomic_write(&dest, b"old").unwrap();
        let err = atomic_write_with(&dest, |f| {
            f.write_all(b"half").unwrap();
            Err(ImageError::malformed("test", "interrupted"))
        })
        .unwrap_err();
        assert!(err.to_string().contains("interrupted"));
        assert_eq!(std::fs::read(&dest).unwrap(), b"old");
        let names: Vec<_> = std::fs::read_dir(dest.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["file"]);
    }

    #[test]
    fn file_hash_matches_known_vector() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("abc");
        atomic_write(&p, b"abc").unwrap();
        let want = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
        assert_eq!(sha256_file(&p).unwrap(), want);
        assert_eq!(sha256_bytes(b"abc"), want);
    }

    #[test]
    fn read_only_cache_dir_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("plain-file");
        std::fs::write(&file, b"x").unwrap();
        // A path below a regular file can never be created, even as root.
        let err = ensure_writable(&file.join("cache")).unwrap_err();
        assert!(matches!(err, ImageError::CacheNotWritable { .. }), "{err}");
        assert!(err.to_string().starts_with("cache dir "), "{err}");
    }
}
