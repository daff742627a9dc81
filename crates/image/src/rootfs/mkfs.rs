//! The staging tree → an ext4 file system (`mke2fs -d` from e2fsprogs) → a qcow2 image
//! (`qemu-img convert`), reproducibly: our own mke2fs configuration (the host's
//! `/etc/mke2fs.conf` does not decide the features), a fixed UUID and directory hash seed,
//! `root_owner=0:0`, the superblock's times from `E2FSPROGS_FAKE_TIME`, and every inode's
//! times set to one epoch afterwards with `debugfs` (mke2fs copies the host's ctime, which
//! no one can set).

use crate::ImageError;
use std::path::Path;
use std::process::Command;

/// The mke2fs configuration used instead of the host's: ext4 as trixie's kernel reads it.
const MKE2FS_CONF: &str = "[defaults]
\tbase_features = sparse_super,large_file,filetype,resize_inode,dir_index,ext_attr
\tdefault_mntopts = acl,user_xattr
\tenable_periodic_fsck = 0
\tblocksize = 4096
\tinode_size = 256
\tinode_ratio = 16384

[fs_types]
\text4 = {
\t\tfeatures = has_journal,extent,huge_file,flex_bg,metadata_csum,64bit,dir_nlink,extra_isize
\t}
";

/// Runs a host tool; a failure names the tool and carries its stderr.
pub fn run_tool(command: &mut Command) -> Result<String, ImageError> {
    let tool = command.get_program().to_string_lossy().into_owned();
    let output = command.output().map_err(|e| ImageError::Tool {
        tool: tool.clone(),
        detail: if e.kind() == std::io::ErrorKind::NotFound {
            format!("not found ({e}); install e2fsprogs and qemu-utils")
        } else {
            e.to_string()
        },
    })?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let stdout = String::from_utf8_lossy(&output.stdout);
        let text = format!("{stderr}{stdout}");
        let tail: Vec<&str> = text.lines().rev().take(6).collect();
        return Err(ImageError::Tool {
            tool,
            detail: format!(
                "{}: {}",
                output.status,
                tail.into_iter().rev().collect::<Vec<_>>().join(" / ")
            ),
        });
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// e2fsprogs' tools live in /sbin; a non-root PATH often lacks it.
fn e2fs(tool: &str) -> Command {
    for dir in ["/usr/sbin", "/sbin"] {
        let path = Path::new(dir).join(tool);
        if path.exists() {
            return Command::new(path);
        }
    }
    Command::new(tool)
}

/// Makes `out` (a raw ext4 image of `size` bytes) from `staging`, all times `epoch`.
pub fn make_ext4(
    staging: &Path,
    out: &Path,
    size: u64,
    epoch: u64,
    uuid: &str,
) -> Result<(), ImageError> {
    let conf = out.with_extension("mke2fs.conf");
    std::fs::write(&conf, MKE2FS_CONF).map_err(ImageError::io(&conf))?;
    let _ = std::fs::remove_file(out);
    let file = std::fs::File::create(out).map_err(ImageError::io(out))?;
    file.set_len(size).map_err(ImageError::io(out))?;
    drop(file);
    let result = run_tool(
        e2fs("mke2fs")
            .env("MKE2FS_CONFIG", &conf)
            .env("E2FSPROGS_FAKE_TIME", epoch.to_string())
            .args(["-q", "-F", "-t", "ext4", "-L", "debian", "-U", uuid])
            .arg("-E")
            .arg(format!("root_owner=0:0,hash_seed={uuid}"))
            .arg("-d")
            .arg(staging)
            .arg(out),
    );
    let _ = std::fs::remove_file(&conf);
    result?;
    set_inode_times(out, epoch)
}

/// Sets atime, mtime, ctime and crtime of every inode in use to `epoch`. mke2fs -d on a
/// fresh file system takes inodes in order, so the ones in use are 1..=used.
fn set_inode_times(image: &Path, epoch: u64) -> Result<(), ImageError> {
    let header = run_tool(e2fs("dumpe2fs").arg("-h").arg(image))?;
    let field = |name: &str| -> Result<u64, ImageError> {
        header
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().parse().ok())
            .ok_or_else(|| ImageError::Tool {
                tool: "dumpe2fs".into(),
                detail: format!("no {name:?} in its output"),
            })
    };
    let used = field("Inode count:")?.saturating_sub(field("Free inodes:")?);
    let mut script = String::new();
    let inodes = std::iter::once(2).chain(11..=used);
    for ino in inodes {
        for f in ["atime", "mtime", "ctime", "crtime"] {
            script.push_str(&format!(
                "sif <{ino}> {f} {epoch}\nsif <{ino}> {f}_extra 0\n"
            ));
        }
    }
    let path = image.with_extension("debugfs");
    std::fs::write(&path, script).map_err(ImageError::io(&path))?;
    let result = run_tool(
        e2fs("debugfs")
            .env("E2FSPROGS_FAKE_TIME", epoch.to_string())
            .arg("-w")
            .arg("-f")
            .arg(&path)
            .arg(image),
    );
    let _ = std::fs::remove_file(&path);
    let out = result?;
    // debugfs reports bad commands on stdout/stderr but exits 0.
    if let Some(line) = out
        .lines()
        .find(|l| l.contains("rror") || l.contains("nvalid"))
    {
        return Err(ImageError::Tool {
            tool: "debugfs".into(),
            detail: line.to_string(),
        });
    }
    Ok(())
}

/// `qemu-img convert -O qcow2`; `out` appears complete or not at all.
pub fn to_qcow2(raw: &Path, format: &str, out: &Path) -> Result<(), ImageError> {
    let tmp = out.with_extension("qcow2.partial");
    let _ = std::fs::remove_file(&tmp);
    let result = run_tool(
        Command::new("qemu-img")
            .args(["convert", "-f", format, "-O", "qcow2"])
            .arg(raw)
            .arg(&tmp),
    )
    .and_then(|_| {
        std::fs::File::open(&tmp)
            .and_then(|f| f.sync_all())
            .map_err(ImageError::io(&tmp))
    })
    .and_then(|_| std::fs::rename(&tmp, out).map_err(ImageError::io(out)))
    .and_then(|_| durable::sync_dir(durable::parent(out)).map_err(ImageError::io(out)));
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// `e2fsck -fn` on a raw image: read-only, fails on any problem.
pub fn check_ext4(raw: &Path) -> Result<(), ImageError> {
    run_tool(e2fs("e2fsck").arg("-fn").arg(raw)).map(|_| ())
}
