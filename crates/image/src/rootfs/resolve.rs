//! The package set of a root file system: the variant's base packages and the ones asked
//! for, closed under `Depends` and `Pre-Depends` (Recommends are left out, as debootstrap
//! does). Alternatives and virtual packages are decided deterministically: a choice already
//! made wins, else the first alternative the index holds, else the first provider by name.

use crate::packages::{parse_depends, Dependency, Package, PackageIndex};
use crate::ImageError;
use std::collections::{BTreeMap, BTreeSet, VecDeque};

/// What a variant starts from before its dependencies are added.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Variant {
    /// `Priority: required`, plus [`BASE_PACKAGES`].
    Minbase,
    /// `Priority: required` and `important`, plus [`BASE_PACKAGES`].
    Standard,
}

impl Variant {
    pub fn name(self) -> &'static str {
        match self {
            Variant::Minbase => "minbase",
            Variant::Standard => "standard",
        }
    }

    fn priorities(self) -> &'static [&'static str] {
        match self {
            Variant::Minbase => &["required"],
            Variant::Standard => &["required", "important"],
        }
    }
}

impl std::str::FromStr for Variant {
    type Err = ImageError;
    fn from_str(s: &str) -> Result<Self, ImageError> {
        match s {
            "minbase" => Ok(Variant::Minbase),
            "standard" => Ok(Variant::Standard),
            _ => Err(ImageError::malformed(
                "variant",
                format!("{s:?} (minbase or standard)"),
            )),
        }
    }
}

/// What every variant adds to its priorities: an init system booting to a login, a network
/// configured by systemd-networkd (part of `systemd` in trixie), sshd, the package manager,
/// and kmod (the kernel's modules are on the disk: `modprobe`, `depmod`).
pub const BASE_PACKAGES: &[&str] = &[
    "apt",
    "ca-certificates",
    "dbus",
    "iproute2",
    "kmod",
    "libpam-systemd",
    "openssh-server",
    "systemd",
    "systemd-sysv",
    "udev",
];

/// The packages of `variant` plus `extra`, with all their dependencies, sorted by name.
/// A name in `extra` (or a dependency) that the index cannot satisfy is an error naming it.
pub fn resolve(
    index: &PackageIndex,
    variant: Variant,
    extra: &[String],
) -> Result<Vec<Package>, ImageError> {
    let mut roots: Vec<String> = index
        .newest()
        .filter(|p| variant.priorities().contains(&p.priority.as_str()))
        .map(|p| p.name.clone())
        .collect();
    roots.extend(BASE_PACKAGES.iter().map(|s| s.to_string()));
    for name in extra {
        if index.find(name, None).is_none() {
            return Err(ImageError::PackageNotFound(format!(
                "{name} (asked for with --packages; not in the suite's riscv64 index)"
            )));
        }
        roots.push(name.clone());
    }
    Resolver::new(index).run(roots)
}

struct Resolver<'a> {
    index: &'a PackageIndex,
    /// Virtual name → real packages that provide it, sorted.
    providers: BTreeMap<String, BTreeSet<String>>,
    chosen: BTreeMap<String, &'a Package>,
    /// Names the chosen packages provide.
    provided: BTreeSet<String>,
    queue: VecDeque<&'a Package>,
}

impl<'a> Resolver<'a> {
    fn new(index: &'a PackageIndex) -> Self {
        let mut providers: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for pkg in index.newest() {
            for dep in parse_depends(&pkg.provides)
                .unwrap_or_default()
                .iter()
                .flatten()
            {
                providers
                    .entry(dep.name.clone())
                    .or_default()
                    .insert(pkg.name.clone());
            }
        }
        Resolver {
            index,
            providers,
            chosen: BTreeMap::new(),
            provided: BTreeSet::new(),
            queue: VecDeque::new(),
        }
    }

    fn run(mut self, roots: Vec<String>) -> Result<Vec<Package>, ImageError> {
        for name in roots {
            let pkg = self.index.require(&name)?;
            self.choose(pkg);
        }
        while let Some(pkg) = self.queue.pop_front() {
            let fields = [&pkg.pre_depends, &pkg.depends];
            for field in fields {
                for clause in parse_depends(field)? {
                    if clause.iter().any(|d| self.satisfied(d)) {
                        continue;
                    }
                    let pick = self.pick(&clause).ok_or_else(|| {
                        let wanted: Vec<String> = clause.iter().map(|d| d.to_string()).collect();
                        ImageError::PackageNotFound(format!(
                            "{} (a dependency of {} {})",
                            wanted.join(" | "),
                            pkg.name,
                            pkg.version
                        ))
                    })?;
                    self.choose(pick);
                }
            }
        }
        Ok(self.chosen.into_values().cloned().collect())
    }

    fn choose(&mut self, pkg: &'a Package) {
        if self.chosen.contains_key(&pkg.name) {
            return;
        }
        self.chosen.insert(pkg.name.clone(), pkg);
        for dep in parse_depends(&pkg.provides)
            .unwrap_or_default()
            .iter()
            .flatten()
        {
            self.provided.insert(dep.name.clone());
        }
        self.queue.push_back(pkg);
    }

    fn satisfied(&self, dep: &Dependency) -> bool {
        match self.chosen.get(&dep.name) {
            Some(pkg) => dep
                .constraint
                .as_ref()
                .is_none_or(|c| c.accepts(&pkg.version)),
            None => dep.constraint.is_none() && self.provided.contains(&dep.name),
        }
    }

    fn pick(&self, clause: &[Dependency]) -> Option<&'a Package> {
        clause
            .iter()
            .find_map(|d| self.index.find(&d.name, d.constraint.as_ref()))
            .or_else(|| {
                clause.iter().find_map(|d| {
                    let names = self.providers.get(&d.name)?;
                    names.iter().find_map(|n| self.index.find(n, None))
                })
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stanza(name: &str, priority: &str, fields: &str) -> String {
        format!(
            "Package: {name}\nVersion: 1.0-1\nArchitecture: riscv64\nPriority: {priority}\n{fields}\
             Filename: pool/main/x/{name}_1.0-1_riscv64.deb\nSize: 10\nSHA256: {}\n\n",
            "ab".repeat(32)
        )
    }

    fn index(extra: &str) -> PackageIndex {
        let mut text = String::new();
        for base in BASE_PACKAGES {
            text.push_str(&stanza(base, "optional", ""));
        }
        text.push_str(&stanza("base-files", "required", "Pre-Depends: awk\n"));
        text.push_str(&stanza("mawk", "required", "Provides: awk\n"));
        text.push_str(&stanza("gawk", "optional", "Provides: awk\n"));
        text.push_str(&stanza(
            "bash",
            "required",
            "Depends: libc6 (>= 1.0), base-files | nothing\n",
        ));
        text.push_str(&stanza("libc6", "optional", ""));
        text.push_str(&stanza(
            "less",
            "important",
            "Depends: libtinfo6 | libncurses\n",
        ));
        text.push_str(&stanza("libtinfo6", "optional", ""));
        text.push_str(&stanza(
            "vim",
            "optional",
            "Depends: vim-common, mail-reader\n",
        ));
        text.push_str(&stanza("vim-common", "optional", ""));
        text.push_str(&stanza("mutt", "optional", "Provides: mail-reader\n"));
        text.push_str(&stanza("alpine", "optional", "Provides: mail-reader\n"));
        text.push_str(extra);
        PackageIndex::parse(&text, "riscv64").unwrap()
    }

    fn names(pkgs: &[Package]) -> Vec<&str> {
        pkgs.iter().map(|p| p.name.as_str()).collect()
    }

    #[test]
    fn minbase_is_required_plus_base_plus_dependencies() {
        let set = resolve(&index(""), Variant::Minbase, &[]).unwrap();
        let names = names(&set);
        for want in ["base-files", "mawk", "bash", "libc6", "systemd", "apt"] {
            assert!(names.contains(&want), "{want} missing from {names:?}");
        }
        // `awk` is provided by the chosen mawk: gawk is not pulled in; `less` is important.
        assert!(
            !names.contains(&"gawk") && !names.contains(&"less"),
            "{names:?}"
        );
        assert!(names.windows(2).all(|w| w[0] < w[1]), "sorted");
    }

    #[test]
    fn standard_adds_important_and_extras_pull_their_dependencies() {
        let set = resolve(&index(""), Variant::Standard, &["vim".into()]).unwrap();
        let names = names(&set);
        for want in ["less", "libtinfo6", "vim", "vim-common", "alpine"] {
            assert!(names.contains(&want), "{want} missing from {names:?}");
        }
        // The first provider by name of a virtual package, never two.
        assert!(!names.contains(&"mutt"), "{names:?}");
    }

    #[test]
    fn missing_packages_are_named() {
        let err = resolve(&index(""), Variant::Minbase, &["no-such-pkg".into()]).unwrap_err();
        assert!(err.to_string().contains("no-such-pkg"), "{err}");
        let broken = stanza("broken", "optional", "Depends: ghost (>= 2)\n");
        let err = resolve(&index(&broken), Variant::Minbase, &["broken".into()]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "package not found: ghost (>= 2) (a dependency of broken 1.0-1)"
        );
    }
}
