//! Kernel modules: which files the kernel package ships, which modules are built in, and the
//! load order of a set of modules with their dependencies (from each module's `.modinfo`).

use crate::deb::decompress;
use crate::ImageError;
use object::{Object, ObjectSection};
use std::collections::{BTreeMap, BTreeSet};

/// The modules the guest needs: virtio transport and devices, and ext4 (crc32c_generic is
/// a soft dependency of ext4/jbd2, requested through the crypto API, so it is named here).
pub const GUEST_MODULES: [&str; 6] = [
    "virtio_mmio",
    "virtio_rng",
    "virtio_blk",
    "virtio_net",
    "crc32c_generic",
    "ext4",
];

/// A decompressed module ready for `insmod`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Module {
    pub name: String,
    pub data: Vec<u8>,
}

/// The module files of one kernel.
pub struct ModuleTree {
    kernel_version: String,
    /// Module name → (path in the package, file as shipped, possibly compressed).
    files: BTreeMap<String, (String, Vec<u8>)>,
    builtin: BTreeSet<String>,
}

/// `kernel/fs/ext4/ext4.ko.xz` → `ext4`; `virtio-rng.ko` → `virtio_rng` (the kernel treats `-`
/// and `_` alike in module names).
pub fn module_name(path: &str) -> Option<String> {
    let file = path.rsplit('/').next()?;
    let stem = file.split_once(".ko")?.0;
    let rest = &file[stem.len() + 3..];
    let known_suffix = matches!(rest, "" | ".xz" | ".zst" | ".gz");
    (known_suffix && !stem.is_empty()).then(|| stem.replace('-', "_"))
}

impl ModuleTree {
    /// `files`: module files by path (anything not a module is ignored); `builtin`: the text of
    /// `modules.builtin`.
    pub fn new(kernel_version: &str, files: BTreeMap<String, Vec<u8>>, builtin: &str) -> Self {
        let files = files
            .into_iter()
            .filter_map(|(path, data)| module_name(&path).map(|name| (name, (path, data))))
            .collect();
        let builtin = builtin.lines().filter_map(module_name).collect();
        ModuleTree {
            kernel_version: kernel_version.to_string(),
            files,
            builtin,
        }
    }

    /// The modules `roots` need, each after its dependencies; built-in ones are left out.
    pub fn load_order(&self, roots: &[&str]) -> Result<Vec<Module>, ImageError> {
        let mut order = Vec::new();
        let mut done = BTreeSet::new();
        for root in roots {
            self.visit(
                &root.replace('-', "_"),
                &mut Vec::new(),
                &mut done,
                &mut order,
            )?;
        }
        Ok(order)
    }

    /// Depth-first, dependencies first; `path` holds the chain being visited to catch cycles.
    fn visit(
        &self,
        name: &str,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
        order: &mut Vec<Module>,
    ) -> Result<(), ImageError> {
        if done.contains(name) || self.builtin.contains(name) {
            return Ok(());
        }
        if path.iter().any(|p| p == name) {
            return Err(ImageError::malformed(
                "kernel modules",
                format!("dependency cycle {} -> {name}", path.join(" -> ")),
            ));
        }
        let module = self.load(name)?;
        let info = ModInfo::parse(&module)?;
        info.check(name, &self.kernel_version)?;
        path.push(name.to_string());
        for dep in &info.depends {
            self.visit(dep, path, done, order)?;
        }
        path.pop();
        done.insert(name.to_string());
        order.push(module);
        Ok(())
    }

    fn load(&self, name: &str) -> Result<Module, ImageError> {
        let (path, raw) = self.files.get(name).ok_or_else(|| {
            ImageError::PackageNotFound(format!(
                "kernel module {name} (neither shipped nor built into {})",
                self.kernel_version
            ))
        })?;
        let data = decompress(path, raw).map_err(|e| ImageError::malformed(path, e))?;
        Ok(Module {
            name: name.to_string(),
            data,
        })
    }
}

/// The `.modinfo` fields we check.
#[derive(Debug, Default, PartialEq, Eq)]
struct ModInfo {
    name: Option<String>,
    vermagic: Option<String>,
    depends: Vec<String>,
}

impl ModInfo {
    fn parse(module: &Module) -> Result<Self, ImageError> {
        let what = format!("kernel module {}", module.name);
        let elf =
            object::File::parse(&*module.data).map_err(|e| ImageError::malformed(&what, e))?;
        let section = elf
            .section_by_name(".modinfo")
            .ok_or_else(|| ImageError::malformed(&what, "no .modinfo section"))?;
        let data = section
            .data()
            .map_err(|e| ImageError::malformed(&what, e))?;
        let mut info = ModInfo::default();
        let entries = data.split(|&b| b == 0).map(String::from_utf8_lossy);
        for entry in entries {
            match entry.split_once('=') {
                Some(("name", v)) => info.name = Some(v.to_string()),
                Some(("vermagic", v)) => info.vermagic = Some(v.to_string()),
                Some(("depends", v)) => info.depends.extend(
                    v.split(',')
                        .filter(|d| !d.is_empty())
                        .map(|d| d.replace('-', "_")),
                ),
                _ => {}
            }
        }
        Ok(info)
    }

    /// The module must be the one we asked for and built for this kernel.
    fn check(&self, name: &str, kernel_version: &str) -> Result<(), ImageError> {
        let what = format!("kernel module {name}");
        if let Some(own) = &self.name {
            if own.replace('-', "_") != name {
                return Err(ImageError::malformed(what, format!("calls itself {own}")));
            }
        }
        let vermagic = self.vermagic.as_deref().unwrap_or("");
        if vermagic.split(' ').next() != Some(kernel_version) {
            return Err(ImageError::malformed(
                what,
                format!("built for {vermagic:?}, not {kernel_version}"),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
pub mod tests {
    use super::*;

    /// A minimal ELF relocatable object with a `.modinfo` section.
    pub fn fake_module(modinfo: &str) -> Vec<u8> {
        use object::write::{Object as WObject, StreamingBuffer};
        use object::{Architecture, BinaryFormat, Endianness, SectionKind};
        let mut obj = WObject::new(BinaryFormat::Elf, Architecture::Riscv64, Endianness::Little);
        let id = obj.add_section(Vec::new(), b".modinfo".to_vec(), SectionKind::ReadOnlyData);
        obj.append_section_data(id, modinfo.replace(';', "\0").as_bytes(), 1);
        let mut out = StreamingBuffer::new(Vec::new());
        obj.emit(&mut out).unwrap();
        out.into_inner()
    }

    fn tree() -> ModuleTree {
        let kv = "6.12.9+deb13-riscv64";
        let m = |name: &str, deps: &str| {
            fake_module(&format!(
                "depends={deps};name={name};vermagic={kv} SMP mod_unload;"
            ))
        };
        let mut files = BTreeMap::new();
        let mut add = |path: &str, data: Vec<u8>| {
            files.insert(format!("usr/lib/modules/{kv}/kernel/{path}"), data);
        };
        add("fs/ext4/ext4.ko", m("ext4", "jbd2,mbcache,crc16"));
        add("fs/jbd2/jbd2.ko", m("jbd2", ""));
        add("fs/mbcache.ko", m("mbcache", ""));
        add("lib/crc16.ko", m("crc16", ""));
        add("drivers/net/virtio_net.ko", m("virtio_net", "net_failover"));
        add("drivers/net/net_failover.ko", m("net_failover", "failover"));
        add("net/core/failover.ko", m("failover", ""));
        add(
            "drivers/char/hw_random/virtio-rng.ko",
            m("virtio_rng", "virtio_ring"),
        );
        add("drivers/x/loop_a.ko", m("loop_a", "loop_b"));
        add("drivers/x/loop_b.ko", m("loop_b", "loop_a"));
        add(
            "drivers/x/wrong.ko",
            fake_module("depends=;name=wrong;vermagic=5.10.0-1-riscv64 SMP;"),
        );
        add(
            "modules.builtin",
            b"kernel/drivers/virtio/virtio_ring.ko\n".to_vec(),
        );
        ModuleTree::new(
            kv,
            files,
            "kernel/drivers/virtio/virtio_ring.ko\nkernel/lib/crc32.ko\n",
        )
    }

    fn names(modules: &[Module]) -> Vec<&str> {
        modules.iter().map(|m| m.name.as_str()).collect()
    }

    #[test]
    fn dependencies_load_first_and_once() {
        let order = tree()
            .load_order(&["virtio_net", "ext4", "virtio-rng", "jbd2"])
            .unwrap();
        assert_eq!(
            names(&order),
            [
                "failover",
                "net_failover",
                "virtio_net",
                "jbd2",
                "mbcache",
                "crc16",
                "ext4",
                "virtio_rng"
            ]
        );
    }

    #[test]
    fn builtin_modules_are_skipped() {
        assert!(tree().load_order(&["crc32"]).unwrap().is_empty());
    }

    #[test]
    fn missing_module_is_named() {
        let err = tree().load_order(&["nonexistent"]).unwrap_err();
        assert!(
            err.to_string().contains("kernel module nonexistent"),
            "{err}"
        );
    }

    #[test]
    fn cycles_and_wrong_kernels_are_rejected() {
        let err = tree().load_order(&["loop_a"]).unwrap_err();
        assert!(
            err.to_string().contains("cycle loop_a -> loop_b -> loop_a"),
            "{err}"
        );
        let err = tree().load_order(&["wrong"]).unwrap_err();
        assert!(
            err.to_string()
                .contains("built for \"5.10.0-1-riscv64 SMP\""),
            "{err}"
        );
    }

    #[test]
    fn module_names_from_paths() {
        assert_eq!(
            module_name("kernel/fs/ext4/ext4.ko.xz").as_deref(),
            Some("ext4")
        );
        assert_eq!(
            module_name("a/virtio-rng.ko.zst").as_deref(),
            Some("virtio_rng")
        );
        assert_eq!(module_name("a/modules.builtin"), None);
        assert_eq!(module_name("a/x.kobj"), None);
    }
}
