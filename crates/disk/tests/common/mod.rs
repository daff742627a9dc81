//! Shared by the disk tests: open and create images in the formats their
//! headers show.

use disk::DiskError;
use std::path::Path;

/// Open `path` in the format its header shows, following any backing name
/// (these tests exercise images, not the format-pinning policy, which
/// `pinned_formats_and_backing_names` covers).
pub fn open(path: &Path, read_only: bool) -> Result<Box<dyn disk::BlockDevice>, DiskError> {
    let format = disk::probe(path)?;
    let options = disk::OpenOptions {
        format,
        read_only,
        backing: disk::BackingPolicy::Any,
    };
    disk::open(path, &options)
}

/// Create `path`, on `backing` in the format its header shows.
pub fn create(path: &Path, size: u64, backing: Option<&Path>) -> Result<(), DiskError> {
    let backing = match backing {
        Some(b) => Some((b, disk::probe(b)?)),
        None => None,
    };
    disk::create(path, size, backing)
}
