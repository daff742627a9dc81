//! The record of a completed pull, written last: which packages (with the checksums the signed
//! index gave them) the image was built from, and the checksum of every output file.

use crate::cache::sha256_file;
use crate::packages::{checked_pool_path, Package};
use crate::ImageError;
use serde::{Deserialize, Serialize};
use std::path::Path;

/// Bumped when the layout of the cache or of the initramfs changes, forcing a rebuild.
pub const FORMAT: u32 = 1;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub format: u32,
    /// Fingerprint of how the initramfs is made ([`crate::initramfs::recipe`]):
    /// a new /init, setup script or module list rebuilds the image.
    #[serde(default)]
    pub recipe: String,
    pub suite: String,
    pub kernel_version: String,
    /// How the kernel was shipped, e.g. "flat RISC-V Image".
    pub kernel_format: String,
    pub kernel: Package,
    pub busybox: Package,
    pub opensbi: Package,
    pub outputs: Outputs,
}

/// Output files, relative to the suite's cache dir.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Outputs {
    pub kernel: Output,
    pub initrd: Output,
    pub firmware: Output,
    pub fw_jump: Output,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Output {
    pub file: String,
    pub sha256: String,
}

impl Outputs {
    pub fn all(&self) -> [(&'static str, &Output); 4] {
        [
            ("kernel", &self.kernel),
            ("initrd", &self.initrd),
            ("firmware", &self.firmware),
            ("fw_jump", &self.fw_jump),
        ]
    }
}

impl Manifest {
    /// Reads `path`; `Ok(None)` when absent. A manifest that does not parse or names unsafe
    /// paths is an error (the caller rebuilds it).
    pub fn load(path: &Path, suite: &str) -> Result<Option<Self>, ImageError> {
        let bytes = match std::fs::read(path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(ImageError::io(path)(e)),
        };
        let bad = |detail: String| ImageError::malformed(path.display().to_string(), detail);
        let manifest: Manifest = serde_json::from_slice(&bytes).map_err(|e| bad(e.to_string()))?;
        if manifest.format != FORMAT || manifest.suite != suite {
            return Err(bad(format!(
                "format {} for suite {:?}",
                manifest.format, manifest.suite
            )));
        }
        if manifest.recipe != crate::initramfs::recipe() {
            return Err(bad("an initramfs built by an older lockstep".into()));
        }
        for pkg in [&manifest.kernel, &manifest.busybox, &manifest.opensbi] {
            checked_pool_path(&pkg.name, &pkg.filename)?;
        }
        for (role, out) in manifest.outputs.all() {
            let safe = out
                .file
                .split('/')
                .all(|s| !s.is_empty() && s != "." && s != "..");
            if !safe || out.file.starts_with('/') {
                return Err(bad(format!("{role} file {:?}", out.file)));
            }
        }
        Ok(Some(manifest))
    }

    /// Checks every output file under `dir` against its recorded checksum.
    pub fn verify_outputs(&self, dir: &Path) -> Result<(), ImageError> {
        for (role, out) in self.outputs.all() {
            let path = dir.join(&out.file);
            let got = sha256_file(&path)?;
            if got != out.sha256 {
                return Err(ImageError::ChecksumMismatch {
                    what: format!("cached {role} {}", path.display()),
                    expected: out.sha256.clone(),
                    got,
                });
            }
        }
        Ok(())
    }
}
