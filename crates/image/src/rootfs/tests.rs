//! The host part with real files: .debs made here, unpacked as root (owners), and two
//! ext4/qcow2 builds from them compared byte for byte (needs mke2fs and qemu-img).

use super::unpack::{host_path, prepare_root, unpack_deb, write_dpkg_database};
use super::*;
use std::io::Write;
use std::os::unix::fs::MetadataExt;

enum Item<'a> {
    Dir(&'a str, u32),
    File(&'a str, u32, (u64, u64), &'a [u8]),
    Symlink(&'a str, &'a str),
    Hardlink(&'a str, &'a str),
}

fn tar_of(items: &[Item<'_>]) -> Vec<u8> {
    let mut tar = tar::Builder::new(Vec::new());
    for item in items {
        let mut h = tar::Header::new_gnu();
        h.set_mtime(1_700_000_000);
        h.set_uid(0);
        h.set_gid(0);
        match item {
            Item::Dir(path, mode) => {
                h.set_entry_type(tar::EntryType::Directory);
                h.set_mode(*mode);
                h.set_size(0);
                tar.append_data(&mut h, format!("./{path}"), &[][..])
                    .unwrap();
            }
            Item::File(path, mode, (uid, gid), data) => {
                h.set_mode(*mode);
                h.set_uid(*uid);
                h.set_gid(*gid);
                h.set_size(data.len() as u64);
                // Written raw: the tar crate itself refuses `..` in names.
                let name = format!("./{path}");
                let field = &mut h.as_gnu_mut().unwrap().name;
                field[..name.len()].copy_from_slice(name.as_bytes());
                h.set_cksum();
                tar.append(&h, *data).unwrap();
            }
            Item::Symlink(path, target) => {
                h.set_entry_type(tar::EntryType::Symlink);
                h.set_mode(0o777);
                h.set_size(0);
                tar.append_link(&mut h, format!("./{path}"), target)
                    .unwrap();
            }
            Item::Hardlink(path, target) => {
                h.set_entry_type(tar::EntryType::Link);
                h.set_mode(0o644);
                h.set_size(0);
                tar.append_link(&mut h, format!("./{path}"), format!("./{target}"))
                    .unwrap();
            }
        }
    }
    tar.into_inner().unwrap()
}

fn compress(ext: &str, data: &[u8]) -> Vec<u8> {
    match ext {
        "xz" => {
            let mut e = liblzma::write::XzEncoder::new(Vec::new(), 1);
            e.write_all(data).unwrap();
            e.finish().unwrap()
        }
        "zst" => zstd::encode_all(data, 1).unwrap(),
        _ => {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            e.write_all(data).unwrap();
            e.finish().unwrap()
        }
    }
}

/// A .deb of package `name` with `items` in a data.tar.`ext`.
fn make_deb(path: &Path, name: &str, multi_arch: bool, ext: &str, items: &[Item<'_>]) {
    let ma = if multi_arch { "Multi-Arch: same\n" } else { "" };
    let control = format!(
        "Package: {name}\nVersion: 1.0-1\nArchitecture: riscv64\n{ma}Maintainer: t\nDescription: test\n"
    );
    let control_tar = tar_of(&[
        Item::File("control", 0o644, (0, 0), control.as_bytes()),
        Item::File("postinst", 0o755, (0, 0), b"#!/bin/sh\nexit 0\n"),
        Item::File("md5sums", 0o644, (0, 0), b"00  usr/bin/x\n"),
    ]);
    let members = [
        ("debian-binary".to_string(), b"2.0\n".to_vec()),
        ("control.tar.gz".to_string(), compress("gz", &control_tar)),
        (format!("data.tar.{ext}"), compress(ext, &tar_of(items))),
    ];
    let mut ar = ar::Builder::new(std::fs::File::create(path).unwrap());
    for (member, data) in members {
        let header = ar::Header::new(member.into_bytes(), data.len() as u64);
        ar.append(&header, &data[..]).unwrap();
    }
}

/// Three packages exercising every entry kind and compression.
fn sample_debs(dir: &Path) -> Vec<PathBuf> {
    let a = dir.join("a.deb");
    make_deb(
        &a,
        "pkg-a",
        false,
        "xz",
        &[
            Item::Dir("", 0o755),
            Item::Dir("usr", 0o755),
            Item::Dir("usr/bin", 0o755),
            Item::File("usr/bin/tool", 0o4755, (0, 0), b"#!/bin/sh\n"),
            Item::File("usr/bin/shadowed", 0o2755, (0, 42), b"group owned"),
            Item::Hardlink("usr/bin/tool-again", "usr/bin/tool"),
            Item::Symlink("usr/bin/rel", "tool"),
            // Shipped under the aliased /bin: lands in /usr/bin.
            Item::Dir("bin", 0o755),
            Item::File("bin/legacy", 0o755, (0, 0), b"old path"),
        ],
    );
    let b = dir.join("b.deb");
    make_deb(
        &b,
        "libb",
        true,
        "zst",
        &[
            Item::Dir("etc", 0o755),
            Item::File("etc/b.conf", 0o640, (0, 0), b"conf"),
            // An absolute link to a directory, then a file through it: stays in the root.
            Item::Dir("var", 0o755),
            Item::Symlink("etc/linked", "/var/real"),
            Item::Dir("var/real", 0o700),
            Item::File("etc/linked/inside", 0o600, (1, 1), b"through the link"),
        ],
    );
    let c = dir.join("c.deb");
    make_deb(
        &c,
        "pkg-c",
        false,
        "gz",
        &[Item::File("usr/bin/rel", 0o755, (0, 0), b"replaces a link")],
    );
    vec![a, b, c]
}

#[test]
fn debs_unpack_with_modes_owners_links_and_merged_usr() {
    let dir = tempfile::tempdir().unwrap();
    let debs = sample_debs(dir.path());
    let root = dir.path().join("root");
    prepare_root(&root).unwrap();
    let unpacked: Vec<_> = debs.iter().map(|d| unpack_deb(d, &root).unwrap()).collect();
    let meta = |p: &str| std::fs::symlink_metadata(root.join(p)).unwrap();

    assert_eq!(
        std::fs::read_link(root.join("bin")).unwrap(),
        Path::new("usr/bin")
    );
    assert_eq!(
        std::fs::read(root.join("usr/bin/legacy")).unwrap(),
        b"old path"
    );
    assert_eq!(meta("usr/bin/tool").mode() & 0o7777, 0o4755);
    assert_eq!(meta("usr/bin/shadowed").mode() & 0o7777, 0o2755);
    assert_eq!(meta("usr/bin/shadowed").gid(), 42);
    assert_eq!(meta("usr/bin/tool").ino(), meta("usr/bin/tool-again").ino());
    assert_eq!(meta("etc/b.conf").mode() & 0o7777, 0o640);
    // pkg-c's file replaced pkg-a's symlink.
    assert!(meta("usr/bin/rel").is_file());
    let inside = root.join("var/real/inside");
    assert_eq!(std::fs::read(&inside).unwrap(), b"through the link");
    assert_eq!(
        (
            meta("var/real/inside").uid(),
            meta("var/real").mode() & 0o777
        ),
        (1, 0o700)
    );

    assert_eq!(unpacked[1].info_name, "libb:riscv64");
    assert_eq!(unpacked[0].files[..3], ["/.", "/usr", "/usr/bin"]);
    assert_eq!(unpacked[0].mtime, 1_700_000_000);
    write_dpkg_database(&root, &unpacked).unwrap();
    let status = std::fs::read_to_string(root.join("var/lib/dpkg/status")).unwrap();
    assert!(
        status.starts_with("Package: pkg-a\nStatus: install ok unpacked\nVersion: 1.0-1\n"),
        "{status}"
    );
    assert_eq!(status.matches("Status: install ok unpacked").count(), 3);
    let info = root.join("var/lib/dpkg/info");
    assert!(info.join("libb:riscv64.list").exists());
    assert_eq!(
        std::fs::metadata(info.join("pkg-a.postinst"))
            .unwrap()
            .mode()
            & 0o777,
        0o755
    );
    assert!(info.join("pkg-a.md5sums").exists());
}

#[test]
fn hostile_paths_never_leave_the_root() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    prepare_root(&root).unwrap();
    std::os::unix::fs::symlink("/", root.join("up")).unwrap();
    std::os::unix::fs::symlink("../../../..", root.join("usr/climb")).unwrap();
    for rel in ["up/etc/passwd", "usr/climb/etc/passwd"] {
        let p = host_path(&root, rel).unwrap();
        assert!(p.starts_with(&root), "{rel} -> {}", p.display());
    }
    let evil = dir.path().join("evil.deb");
    make_deb(
        &evil,
        "evil",
        false,
        "gz",
        &[Item::File("../outside", 0o644, (0, 0), b"x")],
    );
    let err = unpack_deb(&evil, &root).unwrap_err();
    assert!(err.to_string().contains("unsafe path"), "{err}");
    assert!(!dir.path().join("outside").exists());
}

#[test]
fn truncated_deb_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let debs = sample_debs(dir.path());
    let bytes = std::fs::read(&debs[0]).unwrap();
    std::fs::write(&debs[0], &bytes[..bytes.len() - 40]).unwrap();
    let root = dir.path().join("root");
    let err = unpack_deb(&debs[0], &root).unwrap_err();
    assert!(err.to_string().starts_with("malformed "), "{err}");
}

fn package(name: &str) -> Package {
    Package {
        name: name.into(),
        version: "1.0-1".into(),
        architecture: "riscv64".into(),
        depends: String::new(),
        pre_depends: String::new(),
        provides: String::new(),
        priority: String::new(),
        filename: format!("pool/{name}.deb"),
        size: 1,
        sha256: "00".repeat(32),
    }
}

#[test]
fn host_image_is_reproducible() {
    let dir = tempfile::tempdir().unwrap();
    let debs = sample_debs(dir.path());
    let set: Vec<Package> = ["pkg-a", "libb", "pkg-c"].map(package).to_vec();
    let key = host_key(&set, 64 << 20);
    let mut sums = Vec::new();
    for run in ["one", "two"] {
        let work = dir.path().join(run);
        std::fs::create_dir_all(&work).unwrap();
        // Time passes between the builds: host ctimes differ, the images must not.
        std::thread::sleep(std::time::Duration::from_millis(1100));
        let inputs = HostInputs {
            set: &set,
            debs: &debs,
            kernel_deb: None,
            size: 64 << 20,
            key: &key,
        };
        let out = make_host_image(&inputs, &work, Report::Silent).unwrap();
        sums.push(sha256_file(&out).unwrap());
        assert!(!work.join("staging").exists() && !work.join("rootfs.ext4").exists());
    }
    assert_eq!(sums[0], sums[1]);
}

#[test]
fn image_names_and_uuids() {
    let mut opts = RootfsOptions {
        pull: PullOptions::default(),
        variant: Variant::Minbase,
        packages: Vec::new(),
        size: 1 << 30,
        rebuild: false,
        host_only: false,
    };
    assert_eq!(image_name(&opts), "debian-minbase");
    opts.packages = vec!["vim".into(), "gcc".into()];
    let a = image_name(&opts);
    opts.packages = vec!["gcc".into(), "vim".into(), "gcc".into()];
    assert_eq!(image_name(&opts), a);
    assert!(a.starts_with("debian-minbase-") && a.len() == "debian-minbase-".len() + 8);
    assert_eq!(
        uuid_from(&"ab".repeat(32)),
        "abababab-abab-abab-abab-abababababab"
    );
}

#[test]
fn a_filter_keeps_only_the_paths_it_accepts() {
    let dir = tempfile::tempdir().unwrap();
    let debs = sample_debs(dir.path());
    let root = dir.path().join("root");
    prepare_root(&root).unwrap();
    let keep = |p: &str| p.starts_with("usr/bin/t");
    super::unpack::unpack_deb_filtered(&debs[0], &root, &keep).unwrap();
    assert!(root.join("usr/bin/tool").exists() && root.join("usr/bin/tool-again").exists());
    assert!(!root.join("usr/bin/shadowed").exists() && !root.join("usr/bin/legacy").exists());
}
