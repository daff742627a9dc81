//! The bytes of a boot image: owned (read from a file the user named), or
//! a read-only mapping of a snapshot's boot images section.
//!
//! A restored machine needs its images again only when the guest resets
//! and when it is saved, so restore maps the section instead of reading
//! and checksumming ~50 MiB up front. The section's checksum is then
//! checked on first use: [`BootImages::verify`], which loading the images
//! (power-on, reset) and saving call first, so corrupt bytes are refused
//! before they reach guest RAM or a new snapshot.
//!
//! [`BootImages::verify`]: crate::BootImages::verify

use memmap2::{Mmap, MmapOptions};
use std::fmt;
use std::fs::File;
use std::io;
use std::ops::{Deref, Range};
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

/// A snapshot's boot images section failed its checksum on first use.
#[derive(Debug, Clone, thiserror::Error)]
#[error(
    "{}: checksum mismatch in the boot images section: the firmware, kernel and initrd it holds \
     are corrupt and were not loaded",
    path.display()
)]
pub struct CorruptImages {
    /// The snapshot file the images were restored from.
    pub path: PathBuf,
}

/// Image bytes, cheap to clone (shared). Dereferences to the bytes; bytes
/// from a snapshot are unchecked until [`ImageBytes::verify`] succeeds.
#[derive(Clone)]
pub struct ImageBytes(Repr);

#[derive(Clone)]
enum Repr {
    Owned(Arc<Vec<u8>>),
    Mapped {
        section: Arc<MappedSection>,
        range: Range<usize>,
    },
}

impl ImageBytes {
    /// `range` of a mapped section (within it: the caller checked).
    pub(crate) fn mapped(section: &Arc<MappedSection>, range: Range<usize>) -> Self {
        ImageBytes(Repr::Mapped {
            section: Arc::clone(section),
            range,
        })
    }

    /// Check the bytes against the checksum of the section they came from
    /// (once per section; owned bytes need no check).
    pub fn verify(&self) -> Result<(), CorruptImages> {
        match &self.0 {
            Repr::Owned(_) => Ok(()),
            Repr::Mapped { section, .. } => section.verify(),
        }
    }
}

impl From<Vec<u8>> for ImageBytes {
    fn from(bytes: Vec<u8>) -> Self {
        ImageBytes(Repr::Owned(Arc::new(bytes)))
    }
}

impl Deref for ImageBytes {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match &self.0 {
            Repr::Owned(bytes) => bytes,
            Repr::Mapped { section, range } => &section.map[range.clone()],
        }
    }
}

impl AsRef<[u8]> for ImageBytes {
    fn as_ref(&self) -> &[u8] {
        self
    }
}

/// The length and origin, not the (megabytes of) content.
impl fmt::Debug for ImageBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("ImageBytes");
        d.field("len", &self.len());
        if let Repr::Mapped { section, .. } = &self.0 {
            d.field("snapshot", &section.path);
        }
        d.finish()
    }
}

/// A snapshot's boot images section, mapped read-only, with the checksum
/// its bytes must have.
pub(crate) struct MappedSection {
    map: Mmap,
    path: PathBuf,
    hash: [u8; 32],
    /// Whether the bytes matched `hash`, once checked.
    matched: OnceLock<bool>,
}

impl MappedSection {
    /// Map `len` (> 0) bytes of `file` at `offset`; the caller checked that
    /// they lie inside the file.
    pub(crate) fn map(
        file: &File,
        path: &Path,
        offset: u64,
        len: usize,
        hash: [u8; 32],
    ) -> io::Result<Arc<Self>> {
        // SAFETY: a read-only mapping of a range of a regular file that
        // exists (checked by the caller); any bytes are a valid `[u8]`.
        // The hazard left, the file being truncated or rewritten while
        // mapped, is excluded by the snapshot files' write-once contract
        // (the same one guest RAM mapped from the file relies on).
        let map = unsafe { MmapOptions::new().offset(offset).len(len).map(file)? };
        Ok(Arc::new(MappedSection {
            map,
            path: path.to_path_buf(),
            hash,
            matched: OnceLock::new(),
        }))
    }

    pub(crate) fn verify(&self) -> Result<(), CorruptImages> {
        let matched = *self
            .matched
            .get_or_init(|| blake3::hash(&self.map).as_bytes() == &self.hash);
        if matched {
            Ok(())
        } else {
            Err(CorruptImages {
                path: self.path.clone(),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn section_file(bytes: &[u8]) -> tempfile::NamedTempFile {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(bytes).unwrap();
        f
    }

    #[test]
    fn owned_bytes_need_no_check() {
        let image = ImageBytes::from(vec![1, 2, 3]);
        assert_eq!(&image[..], [1, 2, 3]);
        image.verify().unwrap();
        assert_eq!(format!("{image:?}"), "ImageBytes { len: 3 }");
    }

    #[test]
    fn mapped_parts_share_one_lazy_check() {
        let bytes: Vec<u8> = (0..10_000u32).map(|i| (i * 31) as u8).collect();
        let f = section_file(&bytes);
        // An unaligned offset: the section need not start on a page.
        let hash = *blake3::hash(&bytes[100..]).as_bytes();
        let section = MappedSection::map(f.as_file(), f.path(), 100, 9_900, hash).unwrap();
        let first = ImageBytes::mapped(&section, 0..5);
        let rest = ImageBytes::mapped(&section, 5..9_900);
        assert_eq!(&first[..], &bytes[100..105]);
        assert_eq!(&rest[..], &bytes[105..]);
        assert!(section.matched.get().is_none(), "nothing checked yet");
        first.verify().unwrap();
        assert_eq!(section.matched.get(), Some(&true));
        rest.verify().unwrap();
    }

    #[test]
    fn a_mismatch_names_the_file_and_stays_an_error() {
        let f = section_file(&[7; 64]);
        let hash = *blake3::hash(&[8; 64]).as_bytes();
        let section = MappedSection::map(f.as_file(), f.path(), 0, 64, hash).unwrap();
        let image = ImageBytes::mapped(&section, 0..64);
        for _ in 0..2 {
            let e = image.verify().unwrap_err();
            assert_eq!(e.path, f.path());
            let msg = e.to_string();
            assert!(msg.contains("boot images section"), "{msg}");
            assert!(msg.contains(&f.path().display().to_string()), "{msg}");
        }
    }
}
