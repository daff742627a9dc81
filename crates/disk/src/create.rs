//! Creating qcow2 images, crash-safely: the image is built under a temporary
//! name in its directory, synced, then linked to its final name (never
//! replacing a file already there): [`write_new`], which copies use too.

use crate::image::{imago_err, open_chain, BackingPolicy, Format, Mode, SECTOR_SIZE};
use crate::DiskError;
use imago::file::File as ImagoFile;
use imago::qcow2::Qcow2;
use imago::FormatCreateBuilder;
use std::ffi::OsStr;
use std::fs::File;
use std::path::{Component, Path, PathBuf};

/// qcow2 cluster size of new images (qemu-img's default).
pub const CLUSTER_SIZE: usize = 64 * 1024;
/// Largest virtual size: QEMU caps the L1 table at 32 MiB, which with
/// 64 KiB clusters maps 2 PiB; larger images would not open in QEMU.
pub const MAX_VIRTUAL_SIZE: u64 = 1 << 51;
/// qcow2 headers hold backing names of at most 1023 bytes.
const MAX_BACKING_NAME: usize = 1023;

/// Create a new qcow2 (v3, 64 KiB clusters) image of `size` bytes at
/// `path`, optionally on top of `backing` in the format the caller gives
/// (qcow2 or raw, never guessed from the base's header: a raw base was a
/// guest's disk; the format is recorded, and the name is stored relative
/// to the new image's directory so that the two can move together).
/// Refuses to replace an existing file.
pub fn create(path: &Path, size: u64, backing: Option<(&Path, Format)>) -> Result<(), DiskError> {
    create_with(path, size, backing, true)
}

/// [`create`] over a backing image this process has open for writing
/// (whose lock a validating open would collide with): its chain was
/// validated when it was opened, and only its name is recorded here. A
/// VM bundle makes the next top layer this way while the guest runs.
pub fn create_over_own(
    path: &Path,
    size: u64,
    backing: &Path,
    format: Format,
) -> Result<(), DiskError> {
    create_with(path, size, Some((backing, format)), false)
}

fn create_with(
    path: &Path,
    size: u64,
    backing: Option<(&Path, Format)>,
    check_backing: bool,
) -> Result<(), DiskError> {
    check_size(size)?;
    refuse_existing(path)?;
    let dir = parent_dir(path);
    let backing = backing
        .map(|(b, format)| backing_entry(&dir, b, format, check_backing))
        .transpose()?;
    write_new(path, |file, tmp| {
        format_qcow2(file, tmp, size, backing.as_ref())
    })
}

/// Callers check before any slow work; [`write_new`] checks again when it
/// links the file (something may appear in between).
pub(crate) fn refuse_existing(path: &Path) -> Result<(), DiskError> {
    if path.symlink_metadata().is_ok() {
        return Err(DiskError::Exists {
            path: path.to_path_buf(),
        });
    }
    Ok(())
}

/// Make a new file at `path` crash-safely: `build` fills a temporary file
/// in the same directory (given open, and by its path), which is then
/// synced, linked to `path` unless something is there already, and the
/// directory synced. If `build` fails (or panics) the temporary file is
/// removed; a crash leaves at most a hidden `.name.*.tmp` beside `path`,
/// never a partial `path`.
pub(crate) fn write_new<T>(
    path: &Path,
    build: impl FnOnce(&File, &Path) -> Result<T, DiskError>,
) -> Result<T, DiskError> {
    let name = path.file_name().unwrap_or(OsStr::new("disk"));
    let prefix = format!(".{}.", name.to_string_lossy());
    let options = durable::Options {
        mode: 0o666, // less the umask
        prefix: &prefix,
        suffix: ".tmp",
        replace: false,
        crash_points: true,
        what: "image",
    };
    durable::write_with(path, &options, |file, tmp| build(file, tmp)).map_err(|e| match e {
        durable::Error::Fill(e) => e,
        durable::Error::Exists { path } => DiskError::Exists { path },
        durable::Error::Create { dir: path, source } | durable::Error::Io { path, source, .. } => {
            DiskError::Io { path, source }
        }
    })
}

pub(crate) fn check_size(size: u64) -> Result<(), DiskError> {
    let reason = if size == 0 {
        "a disk cannot be empty"
    } else if !size.is_multiple_of(SECTOR_SIZE) {
        "it must be a whole number of 512-byte sectors"
    } else if size > MAX_VIRTUAL_SIZE {
        "the largest qcow2 image with 64 KiB clusters is 2 PiB"
    } else {
        return Ok(());
    };
    Err(DiskError::InvalidSize {
        size,
        reason: reason.into(),
    })
}

/// The directory a new file goes in ("." for a bare file name).
pub(crate) fn parent_dir(path: &Path) -> PathBuf {
    durable::parent(path).to_path_buf()
}

/// A backing file as the new header records it.
pub(crate) struct BackingEntry {
    name: String,
    format: Format,
}

pub(crate) fn backing_entry(
    dir: &Path,
    backing: &Path,
    format: Format,
    check: bool,
) -> Result<BackingEntry, DiskError> {
    // Opening the whole chain validates it before anything is written (the
    // user named this base: its own backing names may go anywhere).
    if check {
        open_chain(backing, false, Mode::Pinned(format, BackingPolicy::Any))?;
    }
    let canon = |p: &Path| {
        std::fs::canonicalize(p).map_err(|source| DiskError::Io {
            path: p.to_path_buf(),
            source,
        })
    };
    let rel = relative_path(&canon(dir)?, &canon(backing)?);
    let name = rel
        .to_str()
        .ok_or_else(|| DiskError::Unsupported {
            path: backing.to_path_buf(),
            what: "backing file names that are not UTF-8".into(),
        })?
        .to_string();
    if name.len() > MAX_BACKING_NAME {
        return Err(DiskError::Unsupported {
            path: backing.to_path_buf(),
            what: format!("backing file names longer than {MAX_BACKING_NAME} bytes"),
        });
    }
    Ok(BackingEntry { name, format })
}

/// `target` relative to directory `from` (both absolute and canonical).
fn relative_path(from: &Path, target: &Path) -> PathBuf {
    let from: Vec<Component> = from.components().collect();
    let to: Vec<Component> = target.components().collect();
    let common = from.iter().zip(&to).take_while(|(a, b)| a == b).count();
    let mut rel = PathBuf::new();
    for _ in common..from.len() {
        rel.push("..");
    }
    for c in &to[common..] {
        rel.push(c);
    }
    rel
}

pub(crate) fn format_qcow2(
    file: &File,
    path: &Path,
    size: u64,
    backing: Option<&BackingEntry>,
) -> Result<(), DiskError> {
    let io_err = |source| DiskError::Io {
        path: path.to_path_buf(),
        source,
    };
    let storage = ImagoFile::try_from(file.try_clone().map_err(io_err)?).map_err(io_err)?;
    let mut builder = Qcow2::<ImagoFile>::create_builder(storage)
        .size(size)
        .cluster_size(CLUSTER_SIZE);
    if let Some(b) = backing {
        builder = builder.backing(b.name.clone(), b.format.name().to_string());
    }
    builder.create().map_err(|e| imago_err(path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_paths_between_directories() {
        let p = |s: &str| PathBuf::from(s);
        assert_eq!(
            relative_path(&p("/a/b"), &p("/a/b/base.qcow2")),
            p("base.qcow2")
        );
        assert_eq!(relative_path(&p("/a/b"), &p("/a/b/l/x.img")), p("l/x.img"));
        assert_eq!(
            relative_path(&p("/a/b/c"), &p("/a/x/y.img")),
            p("../../x/y.img")
        );
        assert_eq!(relative_path(&p("/"), &p("/y.img")), p("y.img"));
    }

    fn names_in(dir: &Path) -> Vec<std::ffi::OsString> {
        let mut names: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn write_new_that_fails_before_persisting_leaves_nothing() {
        use std::io::Write;
        let dir = tempfile::TempDir::new().unwrap();
        let dst = dir.path().join("new.qcow2");
        let r: Result<(), _> = write_new(&dst, |mut file, tmp| {
            assert!(
                tmp.starts_with(dir.path()),
                "the temporary file is beside dst"
            );
            file.write_all(b"half an image").unwrap();
            Err(DiskError::ReadOnly)
        });
        assert!(matches!(r, Err(DiskError::ReadOnly)));
        assert!(
            names_in(dir.path()).is_empty(),
            "{:?}",
            names_in(dir.path())
        );

        // A panic while building (as a failing copy's callback may raise)
        // cleans up too.
        let caught = std::panic::catch_unwind(|| {
            let _ = write_new(&dst, |_, _| -> Result<(), DiskError> { panic!("crash") });
        });
        assert!(caught.is_err());
        assert!(
            names_in(dir.path()).is_empty(),
            "{:?}",
            names_in(dir.path())
        );
    }

    #[test]
    fn write_new_never_replaces_a_file_that_appeared_meanwhile() {
        use std::io::Write;
        let dir = tempfile::TempDir::new().unwrap();
        let dst = dir.path().join("new.qcow2");
        let r = write_new(&dst, |mut file, _| {
            std::fs::write(&dst, b"someone else's").unwrap();
            file.write_all(b"ours").unwrap();
            Ok(())
        });
        assert!(matches!(r, Err(DiskError::Exists { .. })));
        assert_eq!(std::fs::read(&dst).unwrap(), b"someone else's");
        assert_eq!(names_in(dir.path()), ["new.qcow2"]);

        let fresh = dir.path().join("fresh");
        let n = write_new(&fresh, |mut file, _| {
            file.write_all(b"ours").unwrap();
            Ok(4)
        });
        assert_eq!(n.unwrap(), 4);
        assert_eq!(std::fs::read(&fresh).unwrap(), b"ours");
    }

    #[test]
    fn sizes_are_checked() {
        assert!(check_size(512).is_ok());
        assert!(check_size(MAX_VIRTUAL_SIZE).is_ok());
        for bad in [0, 511, 513, MAX_VIRTUAL_SIZE + 512] {
            assert!(
                matches!(check_size(bad), Err(DiskError::InvalidSize { .. })),
                "{bad}"
            );
        }
    }
}
