//! Crash-safe file changes (DESIGN §6), through the `durable` crate: write
//! new, fsync, switch one pointer by rename, fsync the directory.

use std::io;
use std::path::Path;

pub use durable::{remove_if_exists, rename_noreplace, sync_dir};

/// Replace `path` with `bytes` atomically: after a crash the file holds
/// either its old or its new contents, never a mix. New files are 0600.
pub fn replace_file(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let options = durable::Options {
        crash_points: true,
        ..durable::Options::default()
    };
    durable::write(path, &options, bytes).map_err(durable::Error::into_io)
}
