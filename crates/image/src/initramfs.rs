//! The guest initramfs: Debian's static busybox, the kernel modules the guest needs, a setup
//! script and an `/init`, as a gzip-compressed newc cpio archive.
//!
//! The archive is a pure function of its inputs (fixed order, inode numbers, times and
//! owners, and gzip header), so every build from the same packages is byte-identical.

use crate::cpio::{read_newc, write_newc, Entry};
use crate::modules::Module;
use crate::ImageError;
use flate2::read::MultiGzDecoder;
use flate2::write::GzEncoder;
use std::io::Read;

/// The default `/init`: runs the setup script, prints a banner, shell on the console.
pub const DEFAULT_INIT: &[u8] = include_bytes!("../assets/init.sh");
const SETUP_TEMPLATE: &str = include_str!("../assets/setup.sh");
const UDHCPC_SCRIPT: &[u8] = include_bytes!("../assets/udhcpc.script");

/// Where the setup script lives; custom `/init` scripts source it too.
/// A fingerprint of everything that shapes the default initramfs besides the
/// packages: the /init, the setup and DHCP scripts and the module list.
pub fn recipe() -> String {
    let mut all = Vec::new();
    for part in [DEFAULT_INIT, SETUP_TEMPLATE.as_bytes(), UDHCPC_SCRIPT] {
        all.extend_from_slice(&(part.len() as u64).to_le_bytes());
        all.extend_from_slice(part);
    }
    all.extend_from_slice(crate::modules::GUEST_MODULES.join(" ").as_bytes());
    crate::cache::sha256_bytes(&all)
}

pub const SETUP_PATH: &str = "etc/lockstep/setup.sh";
const INIT_PATH: &str = "init";

/// What goes into the initramfs besides `/init`.
pub struct Contents<'a> {
    pub kernel_version: &'a str,
    pub busybox: &'a [u8],
    /// In load order.
    pub modules: &'a [Module],
}

/// The archive's members, parents before children.
pub fn entries(contents: &Contents<'_>, init: &[u8]) -> Vec<Entry> {
    let kver = contents.kernel_version;
    let module_dir = format!("lib/modules/{kver}");
    let names: Vec<&str> = contents.modules.iter().map(|m| m.name.as_str()).collect();
    let setup = SETUP_TEMPLATE
        .replace("@KVER@", kver)
        .replace("@MODULES@", &names.join(" "));
    let mut entries: Vec<Entry> = [
        "bin",
        "dev",
        "etc",
        "etc/lockstep",
        "lib",
        "lib/modules",
        "mnt",
        "proc",
        "root",
        "run",
        "sbin",
        "sys",
        "tmp",
        "usr",
        "usr/bin",
        "usr/sbin",
        "usr/share",
        "usr/share/udhcpc",
    ]
    .into_iter()
    .map(Entry::dir)
    .collect();
    entries.extend([
        Entry::file("bin/busybox", 0o755, contents.busybox.to_vec()),
        // `/bin/sh` exists before `busybox --install` runs, so scripts can start with #!/bin/sh.
        Entry::symlink("bin/sh", "busybox"),
        // The kernel opens /dev/console for init before devtmpfs is mounted.
        Entry::char_dev("dev/console", 0o600, 5, 1),
        Entry::char_dev("dev/null", 0o666, 1, 3),
        Entry::file("etc/group", 0o644, b"root:x:0:\n".to_vec()),
        Entry::file(
            "etc/passwd",
            0o644,
            b"root:x:0:0:root:/root:/bin/sh\n".to_vec(),
        ),
        Entry::file(SETUP_PATH, 0o644, setup.into_bytes()),
        Entry::file(INIT_PATH, 0o755, init.to_vec()),
        Entry::dir(&module_dir),
        Entry::file(
            "usr/share/udhcpc/default.script",
            0o755,
            UDHCPC_SCRIPT.to_vec(),
        ),
    ]);
    for module in contents.modules {
        let path = format!("{module_dir}/{}.ko", module.name);
        entries.push(Entry::file(&path, 0o644, module.data.clone()));
    }
    entries.sort_by(|a, b| a.path.cmp(&b.path));
    entries
}

/// Serializes entries as a gzip-compressed newc archive.
pub fn to_gzip_cpio(entries: &[Entry]) -> Result<Vec<u8>, ImageError> {
    // Level 9 matches what Debian's own initramfs-tools would pick for gzip; the header
    // carries no time or name (flate2's default), keeping output reproducible.
    let mut gz = GzEncoder::new(Vec::new(), flate2::Compression::best());
    let fail = |e| ImageError::malformed("initramfs", e);
    write_newc(entries, &mut gz).map_err(fail)?;
    gz.finish().map_err(fail)
}

/// Reads a gzip-compressed newc archive (one we built).
pub fn from_gzip_cpio(bytes: &[u8]) -> Result<Vec<Entry>, ImageError> {
    let mut cpio = Vec::new();
    MultiGzDecoder::new(bytes)
        .read_to_end(&mut cpio)
        .map_err(|e| ImageError::malformed("initramfs (gzip)", e))?;
    read_newc(&cpio)
}

/// The same archive with `/init` replaced. Fails unless it is a lockstep initramfs.
pub fn replace_init(mut entries: Vec<Entry>, init: &[u8]) -> Result<Vec<Entry>, ImageError> {
    for required in ["bin/busybox", SETUP_PATH] {
        if !entries.iter().any(|e| e.path == required) {
            return Err(ImageError::malformed(
                "initramfs",
                format!("no /{required}: not built by lockstep-image"),
            ));
        }
    }
    entries.retain(|e| e.path != INIT_PATH);
    entries.push(Entry::file(INIT_PATH, 0o755, init.to_vec()));
    entries.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(entries)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn contents_entries(init: &[u8]) -> Vec<Entry> {
        let modules = [
            Module {
                name: "failover".into(),
                data: b"F".to_vec(),
            },
            Module {
                name: "virtio_net".into(),
                data: b"V".to_vec(),
            },
        ];
        let contents = Contents {
            kernel_version: "6.1-test",
            busybox: b"BUSYBOX",
            modules: &modules,
        };
        entries(&contents, init)
    }

    #[test]
    fn layout_has_busybox_modules_scripts_and_console() {
        let entries = contents_entries(DEFAULT_INIT);
        let get = |p: &str| {
            entries
                .iter()
                .find(|e| e.path == p)
                .unwrap_or_else(|| panic!("{p}"))
        };
        assert_eq!(get("bin/busybox").data, b"BUSYBOX");
        assert_eq!(get("bin/sh").data, b"busybox");
        assert_eq!(get("dev/console").rdev, (5, 1));
        assert_eq!(get("lib/modules/6.1-test/virtio_net.ko").data, b"V");
        assert_eq!(get("init").mode, crate::cpio::S_IFREG | 0o755);
        let setup = String::from_utf8(get(SETUP_PATH).data.clone()).unwrap();
        assert!(
            setup.contains("for m in failover virtio_net; do"),
            "{setup}"
        );
        assert!(
            setup.contains("insmod \"/lib/modules/6.1-test/$m.ko\""),
            "{setup}"
        );
        assert!(!setup.contains('@'), "unfilled placeholder in {setup}");
        // Parents precede children so the kernel can create every path.
        for (i, e) in entries.iter().enumerate() {
            if let Some((parent, _)) = e.path.rsplit_once('/') {
                let at = entries.iter().position(|p| p.path == parent).unwrap();
                assert!(at < i && entries[at].is_dir(), "{} before {parent}", e.path);
            }
        }
    }

    #[test]
    fn build_is_reproducible_and_round_trips() {
        let a = to_gzip_cpio(&contents_entries(DEFAULT_INIT)).unwrap();
        let b = to_gzip_cpio(&contents_entries(DEFAULT_INIT)).unwrap();
        assert_eq!(a, b);
        assert_eq!(from_gzip_cpio(&a).unwrap(), contents_entries(DEFAULT_INIT));
    }

    #[test]
    fn replacing_init_keeps_everything_else() {
        let original = contents_entries(DEFAULT_INIT);
        let replaced = replace_init(original.clone(), b"#!/bin/sh\necho bench\n").unwrap();
        assert_eq!(replaced, contents_entries(b"#!/bin/sh\necho bench\n"));
        let foreign = vec![Entry::file("init", 0o755, b"x".to_vec())];
        let err = replace_init(foreign, b"y").unwrap_err();
        assert!(
            err.to_string().contains("not built by lockstep-image"),
            "{err}"
        );
    }
}
