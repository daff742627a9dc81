//! A binary `Packages` index and the resolution of the packages the guest image needs.

use crate::deb822::stanzas;
use crate::release::parse_sha256_hex;
use crate::version::compare_versions;
use crate::ImageError;
use serde::{Deserialize, Serialize};
use std::cmp::Ordering;
use std::collections::BTreeMap;

/// A binary package as the index describes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Package {
    pub name: String,
    pub version: String,
    pub architecture: String,
    /// Raw `Depends` field (empty when absent).
    #[serde(skip)]
    pub depends: String,
    /// Raw `Pre-Depends` field (empty when absent).
    #[serde(skip)]
    pub pre_depends: String,
    /// Raw `Provides` field (empty when absent).
    #[serde(skip)]
    pub provides: String,
    /// `Priority` (empty when absent).
    #[serde(skip)]
    pub priority: String,
    /// Path of the .deb relative to the mirror root.
    pub filename: String,
    pub size: u64,
    pub sha256: String,
}

/// Packages by name; a name may have several versions.
#[derive(Debug, Default)]
pub struct PackageIndex {
    by_name: BTreeMap<String, Vec<Package>>,
}

impl PackageIndex {
    /// Parses a `Packages` file, keeping the packages built for `arch` or `all`.
    pub fn parse(text: &str, arch: &str) -> Result<Self, ImageError> {
        let mut index = PackageIndex::default();
        for stanza in stanzas(text) {
            let Some(name) = stanza.get("Package") else {
                return Err(ImageError::malformed("Packages", "stanza without Package"));
            };
            let field = |f: &str| {
                stanza.get(f).ok_or_else(|| {
                    ImageError::malformed("Packages", format!("package {name} has no {f}"))
                })
            };
            let architecture = field("Architecture")?;
            if architecture != arch && architecture != "all" {
                continue;
            }
            let size = field("Size")?;
            let sha256 = field("SHA256")?;
            let package = Package {
                name: name.to_string(),
                version: field("Version")?.to_string(),
                architecture: architecture.to_string(),
                depends: stanza.get("Depends").unwrap_or("").to_string(),
                pre_depends: stanza.get("Pre-Depends").unwrap_or("").to_string(),
                provides: stanza.get("Provides").unwrap_or("").to_string(),
                priority: stanza.get("Priority").unwrap_or("").to_string(),
                filename: checked_pool_path(name, field("Filename")?)?,
                size: size.parse().map_err(|_| {
                    ImageError::malformed("Packages", format!("package {name}: Size {size:?}"))
                })?,
                sha256: parse_sha256_hex(sha256).ok_or_else(|| {
                    ImageError::malformed("Packages", format!("package {name}: SHA256 {sha256:?}"))
                })?,
            };
            index
                .by_name
                .entry(package.name.clone())
                .or_default()
                .push(package);
        }
        Ok(index)
    }

    /// The newest version of `name` that satisfies `constraint`.
    pub fn find(&self, name: &str, constraint: Option<&Constraint>) -> Option<&Package> {
        self.by_name
            .get(name)?
            .iter()
            .filter(|p| constraint.is_none_or(|c| c.accepts(&p.version)))
            .max_by(|a, b| compare_versions(&a.version, &b.version))
    }

    /// The newest version of every package (each name once), in name order.
    pub fn newest(&self) -> impl Iterator<Item = &Package> {
        self.by_name.keys().filter_map(|name| self.find(name, None))
    }

    /// Like `find` without constraint, as an error when absent.
    pub fn require(&self, name: &str) -> Result<&Package, ImageError> {
        self.find(name, None)
            .ok_or_else(|| ImageError::PackageNotFound(name.to_string()))
    }

    /// The kernel package a metapackage such as `linux-image-riscv64` depends on: the first
    /// dependency whose name starts with `linux-image-`, at the version it asks for.
    pub fn resolve_kernel(&self, meta: &str) -> Result<&Package, ImageError> {
        let meta_pkg = self.require(meta)?;
        let deps = parse_depends(&meta_pkg.depends)?;
        let kernel_dep = deps
            .iter()
            .flatten()
            .find(|d| d.name.starts_with("linux-image-") && d.name != meta)
            .ok_or_else(|| {
                ImageError::PackageNotFound(format!(
                    "kernel package: {meta} {} depends on no linux-image-* package ({:?})",
                    meta_pkg.version, meta_pkg.depends
                ))
            })?;
        self.find(&kernel_dep.name, kernel_dep.constraint.as_ref())
            .ok_or_else(|| ImageError::PackageNotFound(kernel_dep.to_string()))
    }
}

/// Filenames are joined to the mirror URL and used as cache names: refuse anything that
/// could climb out of the pool.
pub(crate) fn checked_pool_path(package: &str, path: &str) -> Result<String, ImageError> {
    let ok = path.ends_with(".deb")
        && !path.starts_with('/')
        && path
            .split('/')
            .all(|seg| !seg.is_empty() && seg != "." && seg != "..")
        && path
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"+-._~/".contains(&b));
    if ok {
        Ok(path.to_string())
    } else {
        Err(ImageError::malformed(
            "Packages",
            format!("package {package}: Filename {path:?}"),
        ))
    }
}

/// A relation in a Depends field: `name (op version)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dependency {
    pub name: String,
    pub constraint: Option<Constraint>,
}

impl std::fmt::Display for Dependency {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.constraint {
            Some(c) => write!(f, "{} ({} {})", self.name, c.op.as_str(), c.version),
            None => f.write_str(&self.name),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Relation {
    Earlier,        // <<
    EarlierOrEqual, // <=
    Equal,          // =
    LaterOrEqual,   // >=
    Later,          // >>
}

impl Relation {
    fn parse(op: &str) -> Option<Self> {
        Some(match op {
            "<<" => Relation::Earlier,
            "<=" | "<" => Relation::EarlierOrEqual,
            "=" => Relation::Equal,
            ">=" | ">" => Relation::LaterOrEqual,
            ">>" => Relation::Later,
            _ => return None,
        })
    }

    fn as_str(self) -> &'static str {
        match self {
            Relation::Earlier => "<<",
            Relation::EarlierOrEqual => "<=",
            Relation::Equal => "=",
            Relation::LaterOrEqual => ">=",
            Relation::Later => ">>",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Constraint {
    pub op: Relation,
    pub version: String,
}

impl Constraint {
    pub fn accepts(&self, version: &str) -> bool {
        let ord = compare_versions(version, &self.version);
        match self.op {
            Relation::Earlier => ord == Ordering::Less,
            Relation::EarlierOrEqual => ord != Ordering::Greater,
            Relation::Equal => ord == Ordering::Equal,
            Relation::LaterOrEqual => ord != Ordering::Less,
            Relation::Later => ord == Ordering::Greater,
        }
    }
}

/// Parses `a (>= 1) | b, c:any` into clauses of alternatives.
pub fn parse_depends(field: &str) -> Result<Vec<Vec<Dependency>>, ImageError> {
    field
        .split(',')
        .map(str::trim)
        .filter(|clause| !clause.is_empty())
        .map(|clause| clause.split('|').map(parse_relation).collect())
        .collect()
}

fn parse_relation(text: &str) -> Result<Dependency, ImageError> {
    let text = text.trim();
    let bad = || ImageError::malformed("Depends", format!("relation {text:?}"));
    let name_end = text.find([' ', '\t', '(', '[', '<']).unwrap_or(text.len());
    let (name, mut rest) = (&text[..name_end], text[name_end..].trim_start());
    let mut constraint = None;
    if let Some(after_paren) = rest.strip_prefix('(') {
        let (inner, after) = after_paren.split_once(')').ok_or_else(bad)?;
        let inner = inner.trim();
        let op_len = inner.find(|c: char| !"<>=".contains(c)).ok_or_else(bad)?;
        let op = Relation::parse(&inner[..op_len]).ok_or_else(bad)?;
        let version = inner[op_len..].trim();
        if version.is_empty() || version.contains(char::is_whitespace) {
            return Err(bad());
        }
        constraint = Some(Constraint {
            op,
            version: version.to_string(),
        });
        rest = after.trim_start();
    }
    // Only architecture restrictions `[...]` and build profiles `<...>` may follow.
    if !(rest.is_empty() || rest.starts_with('[') || rest.starts_with('<')) {
        return Err(bad());
    }
    // `name:any` / `name:native` qualify the architecture, not the name.
    let name = name.split(':').next().unwrap_or("");
    if name.is_empty() {
        return Err(bad());
    }
    Ok(Dependency {
        name: name.to_string(),
        constraint,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stanza(name: &str, version: &str, arch: &str, depends: &str) -> String {
        let sha = "ab".repeat(32);
        // Debian's file names leave out the epoch.
        let file_version = version.split_once(':').map_or(version, |(_, v)| v);
        let depends = if depends.is_empty() {
            String::new()
        } else {
            format!("Depends: {depends}\n")
        };
        format!(
            "Package: {name}\nVersion: {version}\nArchitecture: {arch}\n{depends}\
             Filename: pool/main/x/{name}_{file_version}_{arch}.deb\nSize: 10\nSHA256: {sha}\n\
             Description: test\n a package\n\n"
        )
    }

    fn index() -> PackageIndex {
        let text = [
            stanza(
                "linux-image-6.12.1+deb13-riscv64",
                "6.12.1-1",
                "riscv64",
                "kmod",
            ),
            stanza(
                "linux-image-6.12.9+deb13-riscv64",
                "6.12.9-1",
                "riscv64",
                "kmod, initramfs-tools (>= 0.120+deb8u2) | linux-initramfs-tool",
            ),
            stanza(
                "linux-image-riscv64",
                "6.12.9-1",
                "riscv64",
                "linux-image-6.12.9+deb13-riscv64 (= 6.12.9-1)",
            ),
            stanza(
                "linux-image-riscv64",
                "6.12.1-1",
                "riscv64",
                "linux-image-6.12.1+deb13-riscv64 (= 6.12.1-1)",
            ),
            stanza("opensbi", "1.6-1", "all", ""),
            stanza("busybox-static", "1:1.37.0-6", "riscv64", ""),
            stanza("busybox-static", "1:1.37.0-6+b9", "riscv64", ""),
            stanza("busybox-static", "1:1.38.0-1", "amd64", ""),
        ]
        .concat();
        PackageIndex::parse(&text, "riscv64").unwrap()
    }

    #[test]
    fn kernel_is_resolved_through_the_metapackage() {
        let idx = index();
        let kernel = idx.resolve_kernel("linux-image-riscv64").unwrap();
        assert_eq!(kernel.name, "linux-image-6.12.9+deb13-riscv64");
        assert_eq!(kernel.version, "6.12.9-1");
        assert_eq!(
            kernel.filename,
            "pool/main/x/linux-image-6.12.9+deb13-riscv64_6.12.9-1_riscv64.deb"
        );
    }

    #[test]
    fn newest_version_of_the_right_architecture_wins() {
        let idx = index();
        assert_eq!(
            idx.require("busybox-static").unwrap().version,
            "1:1.37.0-6+b9"
        );
        assert_eq!(idx.require("opensbi").unwrap().architecture, "all");
        let err = idx.require("qemu").unwrap_err();
        assert!(
            matches!(err, ImageError::PackageNotFound(ref n) if n == "qemu"),
            "{err}"
        );
    }

    #[test]
    fn depends_are_parsed_with_alternatives_and_constraints() {
        let deps = parse_depends("kmod, initramfs-tools (>= 0.120+deb8u2) | linux-initramfs-tool, libc6:any (<< 3) [riscv64]").unwrap();
        assert_eq!(deps.len(), 3);
        assert_eq!(
            deps[0],
            vec![Dependency {
                name: "kmod".into(),
                constraint: None
            }]
        );
        assert_eq!(deps[1].len(), 2);
        assert_eq!(deps[1][0].to_string(), "initramfs-tools (>= 0.120+deb8u2)");
        assert_eq!(deps[1][1].name, "linux-initramfs-tool");
        assert_eq!(deps[2][0].to_string(), "libc6 (<< 3)");
        assert!(parse_depends("a (>= )").is_err());
        assert!(parse_depends("a (~ 1)").is_err());
        assert!(parse_depends("a b").is_err());
    }

    #[test]
    fn constraints_compare_debian_versions() {
        let c = |op, v: &str| Constraint {
            op,
            version: v.into(),
        };
        assert!(c(Relation::Equal, "6.12.9-1").accepts("6.12.9-1"));
        assert!(!c(Relation::Equal, "6.12.9-1").accepts("6.12.10-1"));
        assert!(c(Relation::LaterOrEqual, "0.120+deb8u2").accepts("0.147"));
        assert!(c(Relation::Earlier, "1.0").accepts("1.0~rc1"));
        assert!(!c(Relation::Later, "1:0.1").accepts("9.9"));
    }

    #[test]
    fn missing_metapackage_dependency_is_reported() {
        let text = stanza(
            "linux-image-riscv64",
            "1",
            "riscv64",
            "linux-image-9.9-riscv64 (= 1)",
        );
        let idx = PackageIndex::parse(&text, "riscv64").unwrap();
        let err = idx.resolve_kernel("linux-image-riscv64").unwrap_err();
        assert_eq!(
            err.to_string(),
            "package not found: linux-image-9.9-riscv64 (= 1)"
        );
    }

    #[test]
    fn hostile_filenames_and_bad_fields_are_rejected() {
        let good = format!(
            "Package: p\nVersion: 1\nArchitecture: all\nFilename: pool/x.deb\nSize: 10\nSHA256: {}\n",
            "00".repeat(32)
        );
        assert_eq!(
            PackageIndex::parse(&good, "riscv64")
                .unwrap()
                .require("p")
                .unwrap()
                .size,
            10
        );
        for (from, to) in [
            ("Filename: pool/x.deb", "Filename: ../../etc/x.deb"),
            ("Filename: pool/x.deb", "Filename: /pool/x.deb"),
            ("Filename: pool/x.deb", "Filename: pool/x y.deb"),
            ("Filename: pool/x.deb", "Filename: pool/x.tar"),
            ("Size: 10", "Size: -1"),
            ("SHA256: 00", "SHA256: zz"),
            ("Version: 1\n", ""),
        ] {
            let text = good.replace(from, to);
            let err = PackageIndex::parse(&text, "riscv64").unwrap_err();
            assert!(
                err.to_string().starts_with("malformed Packages: package p"),
                "{to}: {err}"
            );
        }
    }
}
