//! Unpacking `.deb` files into a staging tree on the host, as `dpkg --unpack` would lay them
//! out, without running anything from them: the data archive's files with their modes and
//! owners, and the dpkg database (`/var/lib/dpkg/status` with every package `unpacked`, each
//! package's file list and maintainer scripts) so that `dpkg --configure -a` in the guest
//! finishes the installation.
//!
//! Paths are resolved inside the staging root as the guest will see them: a symlink in a
//! parent directory (the `/bin` → `usr/bin` of the merged-/usr layout, or a package's own) is
//! followed with an absolute target taken from the root, so nothing a package ships can
//! write outside it. Owners are set as the archive gives them (numeric ids), which needs
//! root on the host: `mke2fs -d` copies owners from the tree.

use crate::deb::decompressor;
use crate::ImageError;
use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufReader, Read};
use std::os::unix::fs::{lchown, symlink, PermissionsExt};
use std::path::{Component, Path, PathBuf};

/// The directories that trixie's merged /usr turns into symlinks, and their targets.
pub const USR_ALIASES: &[(&str, &str)] =
    &[("bin", "usr/bin"), ("lib", "usr/lib"), ("sbin", "usr/sbin")];

/// Maintainer files of the control archive that dpkg keeps in `/var/lib/dpkg/info`.
const INFO_FILES: &[&str] = &[
    "config",
    "md5sums",
    "postinst",
    "postrm",
    "preinst",
    "prerm",
    "shlibs",
    "symbols",
    "templates",
    "triggers",
];

/// What the dpkg database needs of one unpacked package.
#[derive(Debug)]
pub struct Unpacked {
    /// `control` as shipped.
    pub control: String,
    /// `name` or `name:arch` (Multi-Arch: same), as dpkg names its info files.
    pub info_name: String,
    /// Paths as dpkg lists them: `/.`, `/usr`, `/usr/bin/x`, …
    pub files: Vec<String>,
    /// Maintainer scripts and lists by file name (`postinst`, `md5sums`, …).
    pub info: BTreeMap<String, Vec<u8>>,
    /// The newest modification time in the data archive (seconds since 1970).
    pub mtime: u64,
}

/// Creates the merged-/usr symlinks (`/bin` → `usr/bin`, …) and their targets.
pub fn prepare_root(root: &Path) -> Result<(), ImageError> {
    for (alias, target) in USR_ALIASES {
        let dir = root.join(target);
        std::fs::create_dir_all(&dir).map_err(ImageError::io(&dir))?;
        let link = root.join(alias);
        if std::fs::symlink_metadata(&link).is_err() {
            symlink(target, &link).map_err(ImageError::io(&link))?;
        }
    }
    Ok(())
}

/// Unpacks one package's files into `root` and returns what its database entry needs.
pub fn unpack_deb(deb: &Path, root: &Path) -> Result<Unpacked, ImageError> {
    unpack_deb_filtered(deb, root, &|_| true)
}

/// As [`unpack_deb`], only the data archive's paths (`usr/bin/x`) that `keep` accepts.
pub fn unpack_deb_filtered(
    deb: &Path,
    root: &Path,
    keep: &dyn Fn(&str) -> bool,
) -> Result<Unpacked, ImageError> {
    let what = deb.display().to_string();
    let bad = |detail: String| ImageError::malformed(&what, detail);
    let file = File::open(deb).map_err(ImageError::io(deb))?;
    let mut archive = ar::Archive::new(BufReader::new(file));
    let mut control: Option<BTreeMap<String, Vec<u8>>> = None;
    let mut files = None;
    while let Some(member) = archive.next_entry() {
        let member = member.map_err(|e| bad(format!("ar archive: {e}")))?;
        let name = String::from_utf8_lossy(member.header().identifier()).into_owned();
        if name.starts_with("control.tar") {
            let tar = decompressor(&name, member).map_err(|e| bad(format!("{name}: {e}")))?;
            control = Some(
                crate::deb::read_tar(tar, &mut |path| !path.contains('/'))
                    .map_err(|e| bad(format!("{name}: {e}")))?,
            );
        } else if name.starts_with("data.tar") {
            let tar = decompressor(&name, member).map_err(|e| bad(format!("{name}: {e}")))?;
            files = Some(unpack_data(tar, root, &what, keep)?);
        }
    }
    let mut info = control.ok_or_else(|| bad("no control.tar member".into()))?;
    let (files, mtime) = files.ok_or_else(|| bad("no data.tar member".into()))?;
    let control = info
        .remove("control")
        .ok_or_else(|| bad("control.tar has no control file".into()))?;
    let control = String::from_utf8(control).map_err(|_| bad("control is not UTF-8".into()))?;
    let stanza = crate::deb822::Stanza::parse_first(&control)
        .ok_or_else(|| bad("empty control file".into()))?;
    let name = stanza
        .get("Package")
        .ok_or_else(|| bad("control has no Package".into()))?
        .to_string();
    let arch = stanza.get("Architecture").unwrap_or("all");
    let info_name = if stanza.get("Multi-Arch") == Some("same") {
        format!("{name}:{arch}")
    } else {
        name.clone()
    };
    info.retain(|k, _| INFO_FILES.contains(&k.as_str()));
    Ok(Unpacked {
        control,
        info_name,
        files,
        info,
        mtime,
    })
}

/// Unpacks the data archive; returns its paths in dpkg's list form and its newest mtime.
fn unpack_data(
    data: impl Read,
    root: &Path,
    what: &str,
    keep: &dyn Fn(&str) -> bool,
) -> Result<(Vec<String>, u64), ImageError> {
    let bad = |detail: String| ImageError::malformed(what, detail);
    let mut listed = Vec::new();
    let mut newest = 0;
    let mut archive = tar::Archive::new(data);
    let entries = archive
        .entries()
        .map_err(|e| bad(format!("data.tar: {e}")))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| bad(format!("data.tar: {e}")))?;
        let raw = entry
            .path()
            .map_err(|e| bad(format!("data.tar: {e}")))?
            .to_string_lossy()
            .into_owned();
        let rel = relative(&raw).ok_or_else(|| bad(format!("data.tar: unsafe path {raw:?}")))?;
        if rel.is_empty() {
            listed.push("/.".to_string());
            continue;
        }
        if !keep(&rel) {
            continue;
        }
        listed.push(format!("/{rel}"));
        let dest = host_path(root, &rel).map_err(|e| bad(format!("{rel}: {e}")))?;
        let header = entry.header();
        newest = newest.max(header.mtime().unwrap_or(0));
        let mode = header.mode().map_err(|e| bad(format!("{rel}: {e}")))? & 0o7777;
        let uid = header.uid().map_err(|e| bad(format!("{rel}: {e}")))?;
        let gid = header.gid().map_err(|e| bad(format!("{rel}: {e}")))?;
        let owner = |path: &Path| -> Result<(), ImageError> {
            let id = |v: u64| u32::try_from(v).map_err(|_| bad(format!("{rel}: owner id {v}")));
            lchown(path, Some(id(uid)?), Some(id(gid)?)).map_err(ImageError::io(path))
        };
        let chmod = |path: &Path| {
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
                .map_err(ImageError::io(path))
        };
        if let Some(parent) = dest.parent() {
            std::fs::create_dir_all(parent).map_err(ImageError::io(parent))?;
        }
        match header.entry_type() {
            tar::EntryType::Directory => {
                match std::fs::symlink_metadata(&dest) {
                    // A directory over a symlink keeps the link (dpkg does the same).
                    Ok(m) if m.file_type().is_symlink() => continue,
                    Ok(m) if m.is_dir() => {}
                    Ok(_) => {
                        std::fs::remove_file(&dest).map_err(ImageError::io(&dest))?;
                        std::fs::create_dir(&dest).map_err(ImageError::io(&dest))?;
                    }
                    Err(_) => std::fs::create_dir(&dest).map_err(ImageError::io(&dest))?,
                }
                owner(&dest)?;
                chmod(&dest)?;
            }
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                remove_non_dir(&dest)?;
                let mut out = File::create_new(&dest).map_err(ImageError::io(&dest))?;
                std::io::copy(&mut entry, &mut out).map_err(|e| match e.kind() {
                    std::io::ErrorKind::InvalidData | std::io::ErrorKind::UnexpectedEof => {
                        bad(format!("data.tar: {rel}: {e}"))
                    }
                    _ => ImageError::io(&dest)(e),
                })?;
                drop(out);
                owner(&dest)?;
                chmod(&dest)?;
            }
            tar::EntryType::Symlink => {
                let target = entry
                    .link_name()
                    .map_err(|e| bad(format!("{rel}: {e}")))?
                    .ok_or_else(|| bad(format!("{rel}: symlink without target")))?
                    .into_owned();
                // The merged-/usr aliases are made before any package: keep them.
                if std::fs::read_link(&dest).is_ok_and(|t| t == target) {
                    continue;
                }
                remove_non_dir(&dest)?;
                symlink(&target, &dest).map_err(ImageError::io(&dest))?;
                owner(&dest)?;
            }
            tar::EntryType::Link => {
                let target = entry
                    .link_name()
                    .map_err(|e| bad(format!("{rel}: {e}")))?
                    .ok_or_else(|| bad(format!("{rel}: hard link without target")))?;
                let target_raw = target.to_string_lossy().into_owned();
                let target_rel = relative(&target_raw)
                    .ok_or_else(|| bad(format!("{rel}: unsafe link target {target_raw:?}")))?;
                let source =
                    host_path(root, &target_rel).map_err(|e| bad(format!("{rel}: {e}")))?;
                remove_non_dir(&dest)?;
                std::fs::hard_link(&source, &dest).map_err(ImageError::io(&dest))?;
            }
            other => {
                return Err(bad(format!(
                "{rel}: unsupported entry type {other:?} (devices and FIFOs are made by the guest)"
            )))
            }
        }
    }
    Ok((listed, newest))
}

/// `./usr/bin/x` → `usr/bin/x`; `./` → ``; `None` for a path that climbs (`..`) or is
/// absolute after the `./`.
fn relative(raw: &str) -> Option<String> {
    let trimmed = raw.strip_prefix("./").unwrap_or(raw);
    let mut parts = Vec::new();
    for component in Path::new(trimmed).components() {
        match component {
            Component::Normal(part) => parts.push(part.to_str()?.to_string()),
            Component::CurDir => {}
            Component::ParentDir | Component::RootDir | Component::Prefix(_) => return None,
        }
    }
    Some(parts.join("/"))
}

/// Why a path in a package cannot be placed in the root file system.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    #[error("too many levels of symbolic links (more than {max})")]
    SymlinkLoop { max: u32 },
    #[error("path ends in {last:?}")]
    DotEnd { last: String },
}

/// Symbolic links a guest path may pass through.
const MAX_SYMLINKS: u32 = 40;

/// The host path of `rel` in `root` as the guest resolves it: symlinks in the parent
/// directories are followed (absolute targets from `root`, at most 40 of them), the last
/// component is not. The result never leaves `root`.
pub fn host_path(root: &Path, rel: &str) -> Result<PathBuf, PathError> {
    let mut pending: Vec<String> = rel.split('/').rev().map(str::to_string).collect();
    let Some(last) = pending.first().cloned() else {
        return Ok(root.to_path_buf());
    };
    pending.remove(0);
    let mut resolved: Vec<String> = Vec::new();
    let mut hops = 0;
    while let Some(part) = pending.pop() {
        match part.as_str() {
            "" | "." => continue,
            ".." => {
                resolved.pop();
                continue;
            }
            _ => {}
        }
        let here: PathBuf = resolved.iter().fold(root.to_path_buf(), |p, c| p.join(c));
        let candidate = here.join(&part);
        match std::fs::read_link(&candidate) {
            Ok(target) => {
                hops += 1;
                if hops > MAX_SYMLINKS {
                    return Err(PathError::SymlinkLoop { max: MAX_SYMLINKS });
                }
                let target = target.to_string_lossy().into_owned();
                if target.starts_with('/') {
                    resolved.clear();
                }
                pending.extend(target.split('/').rev().map(str::to_string));
            }
            Err(_) => resolved.push(part),
        }
    }
    if last == ".." || last == "." {
        return Err(PathError::DotEnd { last });
    }
    let parent: PathBuf = resolved.iter().fold(root.to_path_buf(), |p, c| p.join(c));
    Ok(parent.join(last))
}

/// Removes whatever non-directory is at `path` (a file or link a later package replaces).
fn remove_non_dir(path: &Path) -> Result<(), ImageError> {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => Err(ImageError::io(path)(std::io::Error::new(
            std::io::ErrorKind::AlreadyExists,
            "a directory is in the way of a file",
        ))),
        Ok(_) => std::fs::remove_file(path).map_err(ImageError::io(path)),
        Err(_) => Ok(()),
    }
}

/// Writes the dpkg database for `packages` (all `unpacked`) under `root`.
pub fn write_dpkg_database(root: &Path, packages: &[Unpacked]) -> Result<(), ImageError> {
    let db = root.join("var/lib/dpkg");
    let info_dir = db.join("info");
    for dir in [
        info_dir.clone(),
        db.join("updates"),
        db.join("triggers"),
        db.join("alternatives"),
        root.join("etc/alternatives"),
    ] {
        std::fs::create_dir_all(&dir).map_err(ImageError::io(&dir))?;
    }
    let mut status = String::new();
    for pkg in packages {
        let control = pkg.control.trim_end();
        let mut lines = control.lines();
        let first = lines.next().unwrap_or("");
        status.push_str(first);
        status.push_str("\nStatus: install ok unpacked\n");
        for line in lines {
            status.push_str(line);
            status.push('\n');
        }
        status.push('\n');
        let mut list = pkg.files.join("\n");
        list.push('\n');
        write_file(
            &info_dir.join(format!("{}.list", pkg.info_name)),
            list.as_bytes(),
            0o644,
        )?;
        for (kind, bytes) in &pkg.info {
            let executable = matches!(
                kind.as_str(),
                "config" | "postinst" | "postrm" | "preinst" | "prerm"
            );
            let mode = if executable { 0o755 } else { 0o644 };
            write_file(
                &info_dir.join(format!("{}.{kind}", pkg.info_name)),
                bytes,
                mode,
            )?;
        }
    }
    write_file(&db.join("status"), status.as_bytes(), 0o644)?;
    for empty in ["available", "diversions", "statoverride"] {
        write_file(&db.join(empty), b"", 0o644)?;
    }
    Ok(())
}

/// Writes a file of the staging tree (owned by root, as the guest expects).
pub fn write_file(path: &Path, bytes: &[u8], mode: u32) -> Result<(), ImageError> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(ImageError::io(parent))?;
    }
    remove_non_dir(path)?;
    std::fs::write(path, bytes).map_err(ImageError::io(path))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .map_err(ImageError::io(path))
}
