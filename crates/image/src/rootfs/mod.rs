//! `lockstep image build debian`: a Debian root file system from the archive's packages.
//!
//! Stages, each resumable: resolve the package set from the verified index and fetch every
//! `.deb` (checked against the index's SHA-256, kept in `rootfs/pool/`); the host part
//! (unpack into a staging tree, the dpkg database, a few files of ours, `mke2fs -d`,
//! `qemu-img convert`: a reproducible `host.qcow2` whose hash is reported); the configure
//! stage (the image booted once under lockstep by the caller, `dpkg --configure -a` in the
//! guest, power-off). Only then is the image renamed into place, read-only, and its
//! manifest written last: an interrupted or failed build never leaves a half-built image as
//! the cached one. No riscv64 code runs on the host.

mod mkfs;
mod resolve;
mod unpack;

pub use resolve::{Variant, BASE_PACKAGES};

use crate::cache::{atomic_write, cache_root, ensure_writable, sha256_bytes, sha256_file};
use crate::fetch::{Fetcher, Report};
use crate::packages::Package;
use crate::release::FileSum;
use crate::{GuestImage, ImageError, PullOptions};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::Instant;

const CONFIGURE_INIT: &[u8] = include_bytes!("../../assets/rootfs/configure-init.sh");
const CONFIGURE_SCRIPT: &[u8] = include_bytes!("../../assets/rootfs/configure.sh");
const DHCP_NETWORK: &[u8] = include_bytes!("../../assets/rootfs/dhcp.network");
/// Bumped when what the host part writes changes (it enters every image's key).
const RECIPE: u32 = 1;
const MANIFEST_FORMAT: u32 = 1;

/// What to build.
#[derive(Debug, Clone)]
pub struct RootfsOptions {
    /// Cache, mirror, suite and progress, as for `image pull` (whose kernel boots the image).
    pub pull: PullOptions,
    pub variant: Variant,
    /// Packages added to the variant's set.
    pub packages: Vec<String>,
    /// Size of the ext4 file system (and the qcow2's virtual size), bytes.
    pub size: u64,
    /// Resolve and build again even when a cached image verifies.
    pub rebuild: bool,
    /// Stop after the host part (for reproducibility checks): no configure stage.
    pub host_only: bool,
}

/// The configure stage's boot, which the caller runs under lockstep: boot `kernel`,
/// `initrd`, `firmware` with `disk` (qcow2) as the only disk, console to `log`; the guest
/// powers off when done.
#[derive(Debug, Clone)]
pub struct ConfigureJob {
    pub kernel: PathBuf,
    pub initrd: PathBuf,
    pub firmware: PathBuf,
    pub disk: PathBuf,
    pub log: PathBuf,
}

/// A built root file system image.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RootfsImage {
    /// `debian-minbase`, `debian-standard`, or with `-<hash>` of the added packages.
    pub name: String,
    pub suite: String,
    pub variant: String,
    /// The configured image (qcow2, read-only), or with `host_only` the host part's.
    pub path: PathBuf,
    /// SHA-256 of `path`.
    pub sha256: String,
    /// SHA-256 of the host part's qcow2 (before the configure stage): reproducible.
    pub host_sha256: String,
    pub packages: Vec<String>,
    /// Virtual disk size, bytes.
    pub disk_size: u64,
    /// Bytes the qcow2 file takes.
    pub file_size: u64,
    /// Seconds spent on the host part (unpack, mke2fs, qemu-img; 0 when resumed).
    pub host_seconds: f64,
    /// Seconds of the configure stage under lockstep.
    pub configure_seconds: f64,
}

#[derive(Debug, Serialize, Deserialize)]
struct Manifest {
    format: u32,
    /// [`recipe`] of the build: another one (new scripts, another size) builds again.
    recipe: String,
    image: RootfsImage,
}

/// Builds (or finds in the cache) the image `opts` describes. `configure` runs the
/// configure stage's boot (see [`ConfigureJob`]).
pub fn build(
    opts: &RootfsOptions,
    configure: &mut dyn FnMut(&ConfigureJob) -> Result<(), ImageError>,
) -> Result<RootfsImage, ImageError> {
    let report = Report::new(opts.pull.progress);
    let guest = crate::pull(&opts.pull)?;
    let dir = cache_root(opts.pull.cache_dir.as_deref())?
        .join("debian")
        .join(&opts.pull.suite)
        .join("riscv64")
        .join("rootfs");
    ensure_writable(&dir)?;
    let name = image_name(opts);
    // One build of an image at a time: they would share the work directory.
    let lock_path = dir.join(format!(".{name}.lock"));
    let lock = std::fs::File::create(&lock_path).map_err(ImageError::io(&lock_path))?;
    match lock.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => return Err(ImageError::Busy { lock: lock_path }),
        Err(std::fs::TryLockError::Error(e)) => return Err(ImageError::io(&lock_path)(e)),
    }
    let manifest_path = dir.join(format!("{name}.json"));
    if !opts.rebuild && !opts.host_only {
        if let Some(image) = cached(&manifest_path, &recipe(opts.size))? {
            report.line(&format!("{name}: cached, verified"));
            return Ok(image);
        }
    }
    let mirror = match &opts.pull.mirror {
        Some(url) => url.clone(),
        None => crate::default_mirror()?,
    };
    let fetcher = Fetcher::new(&mirror, report)?;
    let index = crate::pull::verified_index(durable::parent(&dir), &fetcher, &opts.pull.suite)?;
    let set = resolve::resolve(&index, opts.variant, &opts.packages)?;
    let total: u64 = set.iter().map(|p| p.size).sum();
    report.line(&format!(
        "{name}: {} packages, {:.1} MB of .debs",
        set.len(),
        total as f64 / 1e6
    ));
    let pool = dir.join("pool");
    let mut debs = Vec::new();
    for pkg in &set {
        let file = pkg.filename.rsplit('/').next().unwrap_or(&pkg.filename);
        let dest = pool.join(file);
        let sum = FileSum {
            sha256: pkg.sha256.clone(),
            size: pkg.size,
        };
        fetcher.ensure(&pkg.filename, &dest, &sum)?;
        debs.push(dest);
    }

    // The kernel that boots the image is the pulled one: its modules go on the disk
    // (fetched again, and checked, if its package has left the cache).
    let (kernel, kernel_deb) = crate::pull::kernel_package(&opts.pull)?;
    let sum = FileSum {
        sha256: kernel.sha256.clone(),
        size: kernel.size,
    };
    fetcher.ensure(&kernel.filename, &kernel_deb, &sum)?;
    let kernel_sum = kernel.sha256;
    let work = dir.join(format!("work-{name}"));
    if opts.host_only && work.exists() {
        // A reproducibility check builds from scratch, never from an earlier build's output.
        std::fs::remove_dir_all(&work).map_err(ImageError::io(&work))?;
    }
    let key = sha256_bytes(format!("{} kernel {kernel_sum}", host_key(&set, opts.size)).as_bytes());
    let started = Instant::now();
    let inputs = HostInputs {
        set: &set,
        debs: &debs,
        kernel_deb: Some(&kernel_deb),
        size: opts.size,
        key: &key,
    };
    let host = host_part(&inputs, &work, report)?;
    let host_seconds = started.elapsed().as_secs_f64();
    let mut image = RootfsImage {
        name: name.clone(),
        suite: opts.pull.suite.clone(),
        variant: opts.variant.name().to_string(),
        path: host.clone(),
        sha256: String::new(),
        host_sha256: sha256_file(&host)?,
        packages: set
            .iter()
            .map(|p| format!("{}={}", p.name, p.version))
            .collect(),
        disk_size: opts.size,
        file_size: file_size(&host)?,
        host_seconds,
        configure_seconds: 0.0,
    };
    if opts.host_only {
        image.sha256 = image.host_sha256.clone();
        return Ok(image);
    }

    let started = Instant::now();
    let configured = configure_stage(&guest, &work, &host, configure, report)?;
    image.configure_seconds = started.elapsed().as_secs_f64();
    let final_path = dir.join(format!("{name}.qcow2"));
    report.line(&format!("{name}: compacting into {}", final_path.display()));
    if final_path.exists() {
        // The old image may be in use as a base; a new one replaces it by rename.
        let _ = std::fs::set_permissions(&final_path, permissions(0o644));
    }
    mkfs::to_qcow2(&configured, "qcow2", &final_path)?;
    std::fs::set_permissions(&final_path, permissions(0o444))
        .map_err(ImageError::io(&final_path))?;
    image.path = final_path.clone();
    image.sha256 = sha256_file(&final_path)?;
    image.file_size = file_size(&final_path)?;
    let manifest = Manifest {
        format: MANIFEST_FORMAT,
        recipe: recipe(opts.size),
        image: image.clone(),
    };
    let json =
        serde_json::to_vec_pretty(&manifest).map_err(|e| ImageError::malformed("manifest", e))?;
    atomic_write(&manifest_path, &json)?;
    // The guest's console of the configure stage stays beside the image.
    let _ = std::fs::rename(
        work.join("configure.log"),
        dir.join(format!("{name}.configure.log")),
    );
    let _ = std::fs::remove_dir_all(&work);
    Ok(image)
}

/// The images built into the cache, by name: those whose manifest this version reads.
pub fn list(cache_dir: Option<&Path>, suite: &str) -> Result<Vec<RootfsImage>, ImageError> {
    let dir = cache_root(cache_dir)?
        .join("debian")
        .join(suite)
        .join("riscv64")
        .join("rootfs");
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Ok(Vec::new());
    };
    let mut images = Vec::new();
    for entry in entries.flatten() {
        let path = entry.path();
        if path.extension().is_some_and(|e| e == "json") {
            if let Ok(Some(m)) = read_manifest(&path) {
                images.push(m.image);
            }
        }
    }
    images.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(images)
}

fn permissions(mode: u32) -> std::fs::Permissions {
    use std::os::unix::fs::PermissionsExt;
    std::fs::Permissions::from_mode(mode)
}

fn file_size(path: &Path) -> Result<u64, ImageError> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(path).map_err(ImageError::io(path))?;
    Ok(meta.blocks() * 512)
}

fn image_name(opts: &RootfsOptions) -> String {
    let base = format!("debian-{}", opts.variant.name());
    if opts.packages.is_empty() {
        return base;
    }
    let mut extra = opts.packages.clone();
    extra.sort();
    extra.dedup();
    format!("{base}-{}", &sha256_bytes(extra.join(",").as_bytes())[..8])
}

fn read_manifest(path: &Path) -> Result<Option<Manifest>, ImageError> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(ImageError::io(path)(e)),
    };
    let manifest: Manifest = serde_json::from_slice(&bytes)
        .map_err(|e| ImageError::malformed(path.display().to_string(), e))?;
    Ok((manifest.format == MANIFEST_FORMAT).then_some(manifest))
}

/// The cached image if its manifest reads, has this `recipe` and the image file matches it.
fn cached(manifest: &Path, recipe: &str) -> Result<Option<RootfsImage>, ImageError> {
    let Ok(Some(m)) = read_manifest(manifest) else {
        return Ok(None);
    };
    if m.recipe != recipe {
        return Ok(None);
    }
    match sha256_file(&m.image.path) {
        Ok(sum) if sum == m.image.sha256 => Ok(Some(m.image)),
        _ => Ok(None),
    }
}

/// How an image of `size` bytes is made besides its packages: this version's scripts.
fn recipe(size: u64) -> String {
    let mut text = format!("recipe {RECIPE} size {size}\n");
    for part in [CONFIGURE_SCRIPT, CONFIGURE_INIT, DHCP_NETWORK] {
        text.push_str(&format!("{}\n", sha256_bytes(part)));
    }
    sha256_bytes(text.as_bytes())
}

/// What the host part's output depends on: the recipe and every package's checksum.
fn host_key(set: &[Package], size: u64) -> String {
    let mut text = recipe(size);
    for p in set {
        text.push_str(&format!("\n{} {} {}", p.name, p.version, p.sha256));
    }
    sha256_bytes(text.as_bytes())
}

/// A UUID made from the first 16 bytes of a hex key.
fn uuid_from(key: &str) -> String {
    let k = |a: usize, b: usize| key.get(a..b).unwrap_or("0");
    format!(
        "{}-{}-{}-{}-{}",
        k(0, 8),
        k(8, 12),
        k(12, 16),
        k(16, 20),
        k(20, 32)
    )
}

/// What the host part is made from.
pub(crate) struct HostInputs<'a> {
    pub set: &'a [Package],
    pub debs: &'a [PathBuf],
    /// The kernel package whose modules go to /usr/lib/modules (not in dpkg's database).
    pub kernel_deb: Option<&'a Path>,
    pub size: u64,
    /// Hex digest of everything above: the UUID and the resume check come from it.
    pub key: &'a str,
}

/// The host part: `work/host.qcow2`, reused when `work/host.key` says it was made from the
/// same inputs.
fn host_part(inputs: &HostInputs<'_>, work: &Path, report: Report) -> Result<PathBuf, ImageError> {
    let host = work.join("host.qcow2");
    let key_path = work.join("host.key");
    if host.exists() && std::fs::read_to_string(&key_path).is_ok_and(|k| k == inputs.key) {
        report.line("host part: reusing the staged image of an interrupted build");
        return Ok(host);
    }
    let _ = std::fs::remove_file(&key_path);
    std::fs::create_dir_all(work).map_err(ImageError::io(work))?;
    make_host_image(inputs, work, report)?;
    atomic_write(&key_path, inputs.key.as_bytes())?;
    Ok(host)
}

/// Unpacks the packages into `work/staging`, makes `work/host.qcow2` from it, removes the
/// staging tree. The result depends only on the inputs.
pub(crate) fn make_host_image(
    inputs: &HostInputs<'_>,
    work: &Path,
    report: Report,
) -> Result<PathBuf, ImageError> {
    let HostInputs {
        set,
        debs,
        kernel_deb,
        size,
        key,
    } = *inputs;
    let staging = work.join("staging");
    let raw = work.join("rootfs.ext4");
    let result = (|| {
        if staging.exists() {
            std::fs::remove_dir_all(&staging).map_err(ImageError::io(&staging))?;
        }
        std::fs::create_dir_all(&staging).map_err(ImageError::io(&staging))?;
        // mke2fs -d copies owners from the tree: the packages' owners need root.
        std::os::unix::fs::lchown(&staging, Some(0), Some(0)).map_err(|e| {
            if e.kind() == std::io::ErrorKind::PermissionDenied {
                ImageError::NeedsRoot
            } else {
                ImageError::io(&staging)(e)
            }
        })?;
        unpack::prepare_root(&staging)?;
        let mut unpacked = Vec::new();
        for (i, deb) in debs.iter().enumerate() {
            if i % 25 == 0 || i + 1 == debs.len() {
                let name = set.get(i).map_or("", |p| p.name.as_str());
                report.line(&format!("unpacking [{}/{}] {name}", i + 1, debs.len()));
            }
            unpacked.push(unpack::unpack_deb(deb, &staging)?);
        }
        let mut epoch = unpacked.iter().map(|u| u.mtime).max().unwrap_or(0);
        if let Some(kernel) = kernel_deb {
            report.line("unpacking the kernel's modules");
            let modules =
                |p: &str| p.starts_with("usr/lib/modules/") || p.starts_with("lib/modules/");
            let k = unpack::unpack_deb_filtered(kernel, &staging, &modules)?;
            epoch = epoch.max(k.mtime);
        }
        unpack::write_dpkg_database(&staging, &unpacked)?;
        write_our_files(&staging, &unpacked)?;
        report.line(&format!(
            "mke2fs -d: a {:.1} GiB ext4 file system",
            size as f64 / (1u64 << 30) as f64
        ));
        mkfs::make_ext4(&staging, &raw, size, epoch, &uuid_from(key))?;
        mkfs::check_ext4(&raw)?;
        std::fs::remove_dir_all(&staging).map_err(ImageError::io(&staging))?;
        report.line("qemu-img convert -O qcow2");
        mkfs::to_qcow2(&raw, "raw", &work.join("host.qcow2"))
    })();
    let _ = std::fs::remove_file(&raw);
    if result.is_err() {
        let _ = std::fs::remove_dir_all(&staging);
    }
    result.map(|()| work.join("host.qcow2"))
}

/// fstab, host name, the network, the configure script and its
/// package order (base-passwd first: its preinst makes /etc/passwd).
fn write_our_files(root: &Path, unpacked: &[unpack::Unpacked]) -> Result<(), ImageError> {
    use unpack::write_file;
    for dir in ["proc", "sys", "dev", "run", "tmp", "root", "var/tmp"] {
        let path = root.join(dir);
        std::fs::create_dir_all(&path).map_err(ImageError::io(&path))?;
    }
    for (dir, mode) in [("tmp", 0o1777), ("var/tmp", 0o1777), ("root", 0o700)] {
        let path = root.join(dir);
        std::fs::set_permissions(&path, permissions(mode)).map_err(ImageError::io(&path))?;
    }
    write_file(
        &root.join("etc/fstab"),
        b"# <file system> <mount point> <type> <options> <dump> <pass>\n/dev/vda / ext4 rw,errors=remount-ro 0 1\n",
        0o644,
    )?;
    write_file(&root.join("etc/hostname"), b"debian\n", 0o644)?;
    write_file(
        &root.join("etc/hosts"),
        b"127.0.0.1\tlocalhost\n127.0.1.1\tdebian\n::1\tlocalhost ip6-localhost ip6-loopback\n",
        0o644,
    )?;
    write_file(
        &root.join("etc/systemd/network/80-lockstep-dhcp.network"),
        DHCP_NETWORK,
        0o644,
    )?;
    write_file(
        &root.join("var/lib/lockstep/configure.sh"),
        CONFIGURE_SCRIPT,
        0o755,
    )?;
    let mut order: Vec<&str> = unpacked.iter().map(|u| u.info_name.as_str()).collect();
    order.sort_by_key(|n| (*n != "base-passwd", *n));
    let mut list = order.join("\n");
    list.push('\n');
    write_file(
        &root.join("var/lib/lockstep/packages"),
        list.as_bytes(),
        0o644,
    )
}

/// Boots a copy of the host part once (by `configure`) and checks the guest's verdict.
fn configure_stage(
    guest: &GuestImage,
    work: &Path,
    host: &Path,
    configure: &mut dyn FnMut(&ConfigureJob) -> Result<(), ImageError>,
    report: Report,
) -> Result<PathBuf, ImageError> {
    let disk = work.join("configure.qcow2");
    let log = work.join("configure.log");
    std::fs::copy(host, &disk).map_err(ImageError::io(&disk))?;
    let _ = std::fs::remove_file(&log);
    let initrd = work.join("configure-initrd.img");
    crate::build_initramfs(guest, CONFIGURE_INIT, &initrd)?;
    report.line("configure stage: booting the image under lockstep (dpkg --configure -a)");
    let job = ConfigureJob {
        kernel: guest.kernel.clone(),
        initrd,
        firmware: guest.firmware.clone(),
        disk: disk.clone(),
        log: log.clone(),
    };
    let ran = configure(&job);
    let console = std::fs::read_to_string(&log).unwrap_or_default();
    let verdict = console
        .lines()
        .find_map(|l| l.trim().strip_prefix("lockstep-configure: exit "))
        .map(|s| s.trim().to_string());
    let fail = |detail: String| ImageError::Configure {
        log: log.clone(),
        detail,
    };
    ran?;
    match verdict.as_deref() {
        Some("0") => Ok(disk),
        Some(other) => {
            let tail: Vec<&str> = console.lines().rev().take(12).collect();
            Err(fail(format!(
                "the guest's configure script ended with {other}: {}",
                tail.into_iter().rev().collect::<Vec<_>>().join(" / ")
            )))
        }
        None => Err(fail("the guest powered off without a verdict".into())),
    }
}

#[cfg(test)]
mod tests;
