//! The narrowest entry points into this crate's parsers of untrusted bytes,
//! for the fuzz targets in `fuzz/` (not a product API: the parsers stay
//! private). Each returns whether the input was accepted, so a target can
//! tell the paths apart; none may panic on any input.

use crate::packages::{parse_depends, PackageIndex};
use crate::release::Release;
use crate::signature::{verify_clearsigned, Keyring};
use crate::version::compare_versions;
use std::cmp::Ordering;
use std::path::Path;
use std::sync::OnceLock;

/// `read_newc` (initramfs and module archives); a read archive must
/// write back to the same entries.
pub fn cpio(bytes: &[u8]) -> bool {
    let Ok(entries) = crate::cpio::read_newc(bytes) else {
        return false;
    };
    let mut again = Vec::new();
    if crate::cpio::write_newc(&entries, &mut again).is_ok() {
        let reread = crate::cpio::read_newc(&again).map(|e| e.len());
        assert_eq!(reread.ok(), Some(entries.len()), "cpio: rewritten archive");
    }
    true
}

/// A `.deb` file: the `ar` archive, its `data.tar*` member and the tar.
pub fn deb(path: &Path) -> bool {
    crate::deb::read_files(path, |_| true).is_ok()
}

/// A `Release` text, a `Packages` index (riscv64) with its dependency
/// fields and the kernel resolution `pull` does, and Debian version
/// comparison over the versions found.
pub fn deb822(text: &str) -> bool {
    let mut accepted = false;
    if let Ok(release) = Release::parse(text) {
        accepted = true;
        let _ = release.is_named("trixie");
    }
    let _ = crate::deb822::stanzas(text)
        .filter(|s| s.get("Package").is_some())
        .count();
    if let Ok(index) = PackageIndex::parse(text, "riscv64") {
        accepted = true;
        let _ = index.resolve_kernel("linux-image-riscv64");
        let _ = index.require("busybox-static");
    }
    let mut versions = Vec::new();
    for stanza in crate::deb822::stanzas(text) {
        if let Some(depends) = stanza.get("Depends") {
            let _ = parse_depends(depends);
        }
        if let Some(version) = stanza.get("Version") {
            versions.push(version.to_string());
        }
    }
    for pair in versions.windows(2) {
        let (a, b) = (pair[0].as_str(), pair[1].as_str());
        // An order: antisymmetric.
        assert_eq!(
            compare_versions(a, b),
            compare_versions(b, a).reverse(),
            "versions {a:?} and {b:?}"
        );
        assert_eq!(compare_versions(a, a), Ordering::Equal, "version {a:?}");
    }
    accepted
}

/// An `InRelease` file: the clearsigned document checked against Debian's
/// archive keys, then the signed text parsed as a `Release`.
pub fn inrelease(bytes: &[u8]) -> bool {
    static KEYS: OnceLock<Option<Keyring>> = OnceLock::new();
    let Some(keys) = KEYS.get_or_init(|| Keyring::debian().ok()) else {
        return false;
    };
    match verify_clearsigned(bytes, keys) {
        Ok(text) => Release::parse(&text).is_ok(),
        Err(_) => false,
    }
}
