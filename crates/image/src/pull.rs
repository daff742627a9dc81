//! `pull`: reuse the cached image when it verifies, otherwise resolve, fetch, verify, unpack
//! and build it.

use crate::cache::{atomic_write, cache_root, ensure_writable, sha256_bytes};
use crate::deb::{decompress, read_files};
use crate::fetch::{Fetcher, Report};
use crate::initramfs::{self, Contents, DEFAULT_INIT};
use crate::manifest::{Manifest, Output, Outputs, FORMAT};
use crate::modules::{ModuleTree, GUEST_MODULES};
use crate::packages::{Package, PackageIndex};
use crate::release::{FileSum, Release};
use crate::signature::{verify_clearsigned, Keyring};
use crate::{GuestImage, ImageError, PullOptions};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

const ARCH: &str = "riscv64";
const KERNEL_METAPACKAGE: &str = "linux-image-riscv64";
const OPENSBI_DIR: &str = "usr/lib/riscv64-linux-gnu/opensbi/generic";

/// Fetches (or reuses from the cache) and verifies Debian's riscv64 kernel, OpenSBI and
/// busybox, and builds the default initramfs. With a complete, verified cache this touches
/// no network.
pub fn pull(opts: &PullOptions) -> Result<GuestImage, ImageError> {
    let store = Store::open(opts)?;
    let mirror = || match &opts.mirror {
        Some(url) => Ok(url.clone()),
        None => crate::default_mirror(),
    };
    let report = Report::new(opts.progress);
    match Manifest::load(&store.manifest_path(), &opts.suite) {
        Ok(Some(manifest)) => {
            match manifest.verify_outputs(&store.dir) {
                Ok(()) => return Ok(store.image(&manifest)),
                Err(problem) => report.line(&format!("{problem}: rebuilding")),
            }
            let fetcher = Fetcher::new(&mirror()?, report)?;
            let selection = [manifest.kernel, manifest.busybox, manifest.opensbi];
            match store.build(&fetcher, selection) {
                Ok(image) => return Ok(image),
                Err(e) => report.line(&format!("{e}: resolving the packages again")),
            }
        }
        Ok(None) => {}
        Err(problem) => report.line(&format!("{problem}: ignoring the cached image")),
    }
    let fetcher = Fetcher::new(&mirror()?, report)?;
    let selection = resolve(&store, &fetcher, &opts.suite)?;
    store.build(&fetcher, selection)
}

/// The images pulled into the cache (`cache_dir`, or the default cache),
/// one per suite, by suite name: those whose manifest reads as this
/// version writes it. Output files are not re-hashed (`pull` does that);
/// a suite whose manifest is missing, older or damaged is left out.
/// An absent cache lists nothing.
pub fn list(cache_dir: Option<&Path>) -> Result<Vec<(String, GuestImage)>, ImageError> {
    let debian = cache_root(cache_dir)?.join("debian");
    let entries = match std::fs::read_dir(&debian) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(ImageError::io(&debian)(e)),
    };
    let mut images = Vec::new();
    for entry in entries {
        let entry = entry.map_err(ImageError::io(&debian))?;
        let Some(suite) = entry.file_name().to_str().map(str::to_string) else {
            continue;
        };
        let store = Store {
            dir: entry.path().join(ARCH),
            suite,
        };
        if let Ok(Some(manifest)) = Manifest::load(&store.manifest_path(), &store.suite) {
            images.push((store.suite.clone(), store.image(&manifest)));
        }
    }
    images.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(images)
}

/// The kernel package `pull` used (as its verified index described it) and where the
/// cache keeps it: the root file systems of `image build` get its modules.
pub(crate) fn kernel_package(opts: &PullOptions) -> Result<(Package, PathBuf), ImageError> {
    let store = Store::open(opts)?;
    let manifest = Manifest::load(&store.manifest_path(), &opts.suite)?.ok_or_else(|| {
        ImageError::PackageNotFound(format!(
            "kernel package: no image pulled for {}",
            opts.suite
        ))
    })?;
    let path = store.deb_path(&manifest.kernel);
    Ok((manifest.kernel, path))
}

/// Writes to `out` the initramfs of `image` with `init_script` as `/init`: the same busybox,
/// modules and setup script (`. /etc/lockstep/setup.sh` does what the default `/init` does
/// before its shell).
pub fn build_initramfs(
    image: &GuestImage,
    init_script: &[u8],
    out: &Path,
) -> Result<(), ImageError> {
    let bytes = std::fs::read(&image.initrd).map_err(ImageError::io(&image.initrd))?;
    let entries = initramfs::from_gzip_cpio(&bytes)?;
    let entries = initramfs::replace_init(entries, init_script)?;
    atomic_write(out, &initramfs::to_gzip_cpio(&entries)?)
}

/// Asks the archive which packages to use: InRelease (signature) → Packages (checksum).
fn resolve(store: &Store, fetcher: &Fetcher, suite: &str) -> Result<[Package; 3], ImageError> {
    let index = verified_index(&store.dir, fetcher, suite)?;
    let kernel = index.resolve_kernel(KERNEL_METAPACKAGE)?.clone();
    let busybox = index.require("busybox-static")?.clone();
    let opensbi = index.require("opensbi")?.clone();
    Ok([kernel, busybox, opensbi])
}

/// The suite's package index, verified: InRelease's signature, then the checksum it gives
/// `Packages.xz` (kept in `dir`).
pub(crate) fn verified_index(
    dir: &Path,
    fetcher: &Fetcher,
    suite: &str,
) -> Result<PackageIndex, ImageError> {
    let in_release = fetcher.get_small(&format!("dists/{suite}/InRelease"))?;
    let text = verify_clearsigned(&in_release, &Keyring::debian()?)?;
    let release = Release::parse(&text)?;
    if !release.is_named(suite) {
        return Err(ImageError::Signature(format!(
            "InRelease of {suite} describes {} ({})",
            release.codename, release.suite
        )));
    }
    release.check_fresh(chrono::Utc::now())?;
    fetch_index(dir, fetcher, suite, &release)
}

fn fetch_index(
    dir: &Path,
    fetcher: &Fetcher,
    suite: &str,
    release: &Release,
) -> Result<PackageIndex, ImageError> {
    let base = format!("main/binary-{ARCH}/Packages");
    let (name, sum) = [".xz", ".gz"]
        .iter()
        .find_map(|ext| {
            let name = format!("{base}{ext}");
            release.sha256.get(&name).map(|sum| (name, sum))
        })
        .ok_or_else(|| ImageError::PackageNotFound(format!("{base}.xz in {suite} InRelease")))?;
    let file_name = name.rsplit('/').next().unwrap_or(&name);
    let dest = dir.join(file_name);
    fetcher.ensure(&format!("dists/{suite}/{name}"), &dest, sum)?;
    let raw = std::fs::read(&dest).map_err(ImageError::io(&dest))?;
    let text = decompress(&name, &raw).map_err(|e| ImageError::malformed(&name, e))?;
    PackageIndex::parse(&String::from_utf8_lossy(&text), ARCH)
}

/// The suite's directory in the cache:
/// `<root>/debian/<suite>/riscv64/{manifest.json, Packages.xz, pool/*.deb, image/<kver>/*}`.
struct Store {
    dir: PathBuf,
    suite: String,
}

impl Store {
    fn open(opts: &PullOptions) -> Result<Self, ImageError> {
        let suite_ok = !opts.suite.is_empty()
            && !opts.suite.starts_with('.')
            && opts
                .suite
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-._".contains(&b));
        if !suite_ok {
            return Err(ImageError::malformed(
                "suite name",
                format!("{:?}", opts.suite),
            ));
        }
        let dir = cache_root(opts.cache_dir.as_deref())?
            .join("debian")
            .join(&opts.suite)
            .join(ARCH);
        ensure_writable(&dir)?;
        Ok(Store {
            dir,
            suite: opts.suite.clone(),
        })
    }

    fn manifest_path(&self) -> PathBuf {
        self.dir.join("manifest.json")
    }

    fn image(&self, manifest: &Manifest) -> GuestImage {
        let outputs = &manifest.outputs;
        GuestImage {
            kernel: self.dir.join(&outputs.kernel.file),
            initrd: self.dir.join(&outputs.initrd.file),
            firmware: self.dir.join(&outputs.firmware.file),
            fw_jump: self.dir.join(&outputs.fw_jump.file),
            kernel_version: manifest.kernel_version.clone(),
        }
    }

    fn deb_path(&self, pkg: &Package) -> PathBuf {
        let name = pkg.filename.rsplit('/').next().unwrap_or(&pkg.filename);
        self.dir.join("pool").join(name)
    }

    /// Fetches the packages (unless cached and intact), unpacks them, writes the outputs, and
    /// finally the manifest that vouches for them.
    fn build(&self, fetcher: &Fetcher, packages: [Package; 3]) -> Result<GuestImage, ImageError> {
        for pkg in &packages {
            let sum = FileSum {
                sha256: pkg.sha256.clone(),
                size: pkg.size,
            };
            fetcher.ensure(&pkg.filename, &self.deb_path(pkg), &sum)?;
        }
        let [kernel_pkg, busybox_pkg, opensbi_pkg] = packages;
        fetcher.report().line(&format!(
            "unpacking {} {} and building the initramfs",
            kernel_pkg.name, kernel_pkg.version
        ));
        let kernel = unpack_kernel(&self.deb_path(&kernel_pkg))?;
        let busybox = unpack_busybox(&self.deb_path(&busybox_pkg))?;
        let firmware = unpack_opensbi(&self.deb_path(&opensbi_pkg))?;
        let modules = kernel.modules.load_order(&GUEST_MODULES)?;
        let contents = Contents {
            kernel_version: &kernel.version,
            busybox: &busybox,
            modules: &modules,
        };
        let initrd = initramfs::to_gzip_cpio(&initramfs::entries(&contents, DEFAULT_INIT))?;
        let manifest = Manifest {
            format: FORMAT,
            recipe: initramfs::recipe(),
            suite: self.suite.clone(),
            kernel_version: kernel.version.clone(),
            kernel_format: kernel.format.to_string(),
            kernel: kernel_pkg,
            busybox: busybox_pkg,
            opensbi: opensbi_pkg,
            outputs: self.write_outputs(&kernel, &initrd, &firmware)?,
        };
        let json = serde_json::to_vec_pretty(&manifest)
            .map_err(|e| ImageError::malformed("manifest", e))?;
        atomic_write(&self.manifest_path(), &json)?;
        self.prune(&manifest);
        Ok(self.image(&manifest))
    }

    /// Writes the boot files to `image/<kernel version>/`, recording their checksums.
    fn write_outputs(
        &self,
        kernel: &Kernel,
        initrd: &[u8],
        firmware: &Firmware,
    ) -> Result<Outputs, ImageError> {
        let write = |name: &str, bytes: &[u8]| -> Result<Output, ImageError> {
            let file = format!("image/{}/{name}", kernel.version);
            atomic_write(&self.dir.join(&file), bytes)?;
            Ok(Output {
                file,
                sha256: sha256_bytes(bytes),
            })
        };
        Ok(Outputs {
            kernel: write("Image", &kernel.image)?,
            initrd: write("initrd.img", initrd)?,
            firmware: write("fw_dynamic.bin", &firmware.dynamic)?,
            fw_jump: write("fw_jump.bin", &firmware.jump)?,
        })
    }

    /// Removes packages and images that the new manifest no longer uses. Best effort: a file
    /// that cannot be removed only costs space.
    fn prune(&self, manifest: &Manifest) {
        let keep_debs: Vec<PathBuf> = [&manifest.kernel, &manifest.busybox, &manifest.opensbi]
            .into_iter()
            .map(|p| self.deb_path(p))
            .collect();
        let keep_image = self.dir.join("image").join(&manifest.kernel_version);
        let stale = |dir: PathBuf, keep: &dyn Fn(&Path) -> bool| {
            let Ok(entries) = std::fs::read_dir(dir) else {
                return;
            };
            for path in entries.flatten().map(|e| e.path()) {
                if !keep(&path) {
                    let _ = std::fs::remove_dir_all(&path).or_else(|_| std::fs::remove_file(&path));
                }
            }
        };
        stale(self.dir.join("pool"), &|p| keep_debs.iter().any(|k| k == p));
        stale(self.dir.join("image"), &|p| p == keep_image);
    }
}

struct Kernel {
    version: String,
    image: Vec<u8>,
    format: &'static str,
    modules: ModuleTree,
}

/// The kernel image from `/boot` and the module files of that kernel version.
fn unpack_kernel(deb: &Path) -> Result<Kernel, ImageError> {
    let wanted = |p: &str| {
        p.starts_with("boot/vmlinu")
            || ((p.starts_with("usr/lib/modules/") || p.starts_with("lib/modules/"))
                && (p.contains(".ko") || p.ends_with("/modules.builtin")))
    };
    let mut files = read_files(deb, wanted)?;
    let boot: Vec<String> = files
        .keys()
        .filter(|p| p.starts_with("boot/"))
        .cloned()
        .collect();
    let [boot_path] = boot.as_slice() else {
        return Err(ImageError::malformed(
            deb.display().to_string(),
            format!("expected one /boot/vmlinu* kernel, found {boot:?}"),
        ));
    };
    let version = boot_path
        .trim_start_matches("boot/vmlinux-")
        .trim_start_matches("boot/vmlinuz-")
        .to_string();
    let raw = files.remove(boot_path).unwrap_or_default();
    let (image, format) = flat_kernel_image(boot_path, raw)?;
    let module_dirs = [
        format!("usr/lib/modules/{version}/"),
        format!("lib/modules/{version}/"),
    ];
    let files: BTreeMap<String, Vec<u8>> = files
        .into_iter()
        .filter(|(p, _)| module_dirs.iter().any(|d| p.starts_with(d)))
        .collect();
    let builtin = module_dirs
        .iter()
        .find_map(|d| files.get(&format!("{d}modules.builtin")))
        .map(|b| String::from_utf8_lossy(b).into_owned())
        .unwrap_or_default();
    let modules = ModuleTree::new(&version, files, &builtin);
    Ok(Kernel {
        version,
        image,
        format,
        modules,
    })
}

/// Offset and value of the RISC-V Linux image header's second magic ("RSC\x05").
const RISCV_IMAGE_MAGIC2: (usize, &[u8; 4]) = (0x38, b"RSC\x05");

/// Returns the flat RISC-V `Image` that boot loaders load, and what it was shipped as.
/// Debian ships the flat image (with an EFI stub) as `vmlinux-*`; a gzip-compressed one
/// (`vmlinuz-*`) is decompressed.
fn flat_kernel_image(name: &str, raw: Vec<u8>) -> Result<(Vec<u8>, &'static str), ImageError> {
    let (image, format) = if raw.starts_with(&[0x1f, 0x8b]) {
        let image = decompress(".gz", &raw).map_err(|e| ImageError::malformed(name, e))?;
        (image, "gzip-compressed RISC-V Image")
    } else {
        (raw, "flat RISC-V Image")
    };
    let (at, magic) = RISCV_IMAGE_MAGIC2;
    if image.get(at..at + magic.len()) == Some(&magic[..]) {
        return Ok((image, format));
    }
    let kind = if image.starts_with(b"\x7fELF") {
        "an ELF vmlinux"
    } else {
        "of unknown format"
    };
    Err(ImageError::malformed(
        name,
        format!("kernel is {kind}, not a RISC-V Image"),
    ))
}

fn unpack_busybox(deb: &Path) -> Result<Vec<u8>, ImageError> {
    let mut files = read_files(deb, |p| p == "usr/bin/busybox" || p == "bin/busybox")?;
    let busybox = files.pop_first().map(|(_, data)| data);
    busybox.ok_or_else(|| ImageError::malformed(deb.display().to_string(), "no busybox binary"))
}

struct Firmware {
    dynamic: Vec<u8>,
    jump: Vec<u8>,
}

fn unpack_opensbi(deb: &Path) -> Result<Firmware, ImageError> {
    let dynamic_path = format!("{OPENSBI_DIR}/fw_dynamic.bin");
    let jump_path = format!("{OPENSBI_DIR}/fw_jump.bin");
    let mut files = read_files(deb, |p| p == dynamic_path || p == jump_path)?;
    let mut take = |path: &str| {
        files
            .remove(path)
            .ok_or_else(|| ImageError::malformed(deb.display().to_string(), format!("no /{path}")))
    };
    Ok(Firmware {
        dynamic: take(&dynamic_path)?,
        jump: take(&jump_path)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_formats_are_recognised() {
        let mut image = vec![0u8; 0x40];
        image[0x38..0x3c].copy_from_slice(b"RSC\x05");
        let (flat, format) = flat_kernel_image("vmlinux", image.clone()).unwrap();
        assert_eq!(
            (flat.as_slice(), format),
            (image.as_slice(), "flat RISC-V Image")
        );

        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut gz, &image).unwrap();
        let (flat, format) = flat_kernel_image("vmlinuz", gz.finish().unwrap()).unwrap();
        assert_eq!(
            (flat.as_slice(), format),
            (image.as_slice(), "gzip-compressed RISC-V Image")
        );

        let err = flat_kernel_image("vmlinux", b"\x7fELF\x02\x01\x01".to_vec()).unwrap_err();
        assert!(err.to_string().contains("an ELF vmlinux"), "{err}");
    }

    #[test]
    fn hostile_suite_names_are_refused() {
        for suite in ["", "..", "../x", "a/b", ".hidden"] {
            let opts = PullOptions {
                cache_dir: Some(std::env::temp_dir()),
                suite: suite.into(),
                ..PullOptions::default()
            };
            let err = Store::open(&opts).err().unwrap();
            assert!(err.to_string().starts_with("malformed suite name"), "{err}");
        }
    }
}
