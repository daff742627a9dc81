//! The Debian riscv64 guest image: kernel, OpenSBI firmware and an initramfs built from
//! Debian's own packages, fetched from the archive, verified against its signed metadata and
//! cached.
//!
//! Trust chain: `InRelease` must carry a valid OpenPGP signature by a Debian archive key
//! compiled into this crate → the SHA-256 of `Packages.xz` comes from it → the SHA-256 of
//! every `.deb` comes from `Packages`. Files enter the cache only after they matched; a later
//! [`pull`] re-checks the cached outputs against the checksums recorded then and needs no
//! network when they match.

mod cache;
mod cpio;
mod deb;
mod deb822;
mod error;
mod fetch;
#[doc(hidden)]
pub mod fuzzing;
mod initramfs;
mod manifest;
mod mirror;
mod modules;
mod packages;
mod pull;
mod release;
pub mod rootfs;
mod signature;
mod version;

pub use error::ImageError;
pub use initramfs::DEFAULT_INIT;
pub use mirror::{default_mirror, MIRROR_ENV};
pub use pull::{build_initramfs, list, pull};

use std::path::PathBuf;

/// The Debian suite used when none is given.
pub const DEFAULT_SUITE: &str = "trixie";
/// Path inside the initramfs of the setup script (mounts, modules, DHCP, `/dev/vda` on
/// `/mnt`); a custom `/init` given to [`build_initramfs`] can source it with
/// `. /etc/lockstep/setup.sh`.
pub const SETUP_SCRIPT: &str = "/etc/lockstep/setup.sh";

/// A ready-to-boot guest: every path points into the cache and was verified by [`pull`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuestImage {
    /// Flat RISC-V `Image` (the Linux boot header at offset 0, EFI stub included): load it
    /// 2 MiB above the start of RAM.
    pub kernel: PathBuf,
    /// gzip-compressed newc cpio initramfs.
    pub initrd: PathBuf,
    /// OpenSBI generic `fw_dynamic.bin`.
    pub firmware: PathBuf,
    /// OpenSBI generic `fw_jump.bin`.
    pub fw_jump: PathBuf,
    /// `uname -r` of the kernel, e.g. `6.12.117+deb13-riscv64`.
    pub kernel_version: String,
}

/// Where and how [`pull`] works.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PullOptions {
    /// Cache root; `None`: `$LOCKSTEP_CACHE`, else `$XDG_CACHE_HOME/lockstep`, else
    /// `~/.cache/lockstep`.
    pub cache_dir: Option<PathBuf>,
    /// Debian mirror root URL (http or https); `None`: [`default_mirror`]
    /// (`LOCKSTEP_MIRROR`, else this host's apt sources), looked up only
    /// if something must be fetched.
    pub mirror: Option<String>,
    /// Debian suite or codename, e.g. `trixie`.
    pub suite: String,
    /// Show download progress on stderr (bars on a terminal, one line per file otherwise).
    pub progress: bool,
}

impl Default for PullOptions {
    fn default() -> Self {
        PullOptions {
            cache_dir: None,
            mirror: None,
            suite: DEFAULT_SUITE.to_string(),
            progress: true,
        }
    }
}
