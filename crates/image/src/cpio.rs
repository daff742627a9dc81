//! The "newc" cpio format that Linux unpacks as an initramfs
//! (Documentation/driver-api/early-userspace/buffer-format.rst): a 110-byte ASCII-hex header,
//! the NUL-terminated name and the data, each padded to 4 bytes, closed by `TRAILER!!!`.
//!
//! Archives are written deterministically: inode numbers count up, times and owners are 0.

use crate::ImageError;
use std::io::Write;

const MAGIC: &[u8; 6] = b"070701";
const HEADER_LEN: usize = 110;
const TRAILER: &str = "TRAILER!!!";

pub const S_IFDIR: u32 = 0o040000;
pub const S_IFREG: u32 = 0o100000;
pub const S_IFLNK: u32 = 0o120000;
pub const S_IFCHR: u32 = 0o020000;
const S_IFMT: u32 = 0o170000;

/// One archive member. `data` is the file's contents, or a symlink's target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub path: String,
    pub mode: u32,
    pub data: Vec<u8>,
    /// Device number (major, minor) of a device node.
    pub rdev: (u32, u32),
}

impl Entry {
    pub fn dir(path: &str) -> Self {
        Self::new(path, S_IFDIR | 0o755, Vec::new())
    }
    pub fn file(path: &str, perm: u32, data: Vec<u8>) -> Self {
        Self::new(path, S_IFREG | perm, data)
    }
    pub fn symlink(path: &str, target: &str) -> Self {
        Self::new(path, S_IFLNK | 0o777, target.as_bytes().to_vec())
    }
    pub fn char_dev(path: &str, perm: u32, major: u32, minor: u32) -> Self {
        Entry {
            rdev: (major, minor),
            ..Self::new(path, S_IFCHR | perm, Vec::new())
        }
    }
    fn new(path: &str, mode: u32, data: Vec<u8>) -> Self {
        Entry {
            path: path.to_string(),
            mode,
            data,
            rdev: (0, 0),
        }
    }
    pub fn is_dir(&self) -> bool {
        self.mode & S_IFMT == S_IFDIR
    }
}

/// Writes `entries` in order, then the trailer.
pub fn write_newc(entries: &[Entry], out: &mut impl Write) -> std::io::Result<()> {
    let mut offset = 0usize;
    for (ino, entry) in (1u32..).zip(entries) {
        let nlink = if entry.is_dir() { 2 } else { 1 };
        offset += write_member(out, offset, ino, entry, nlink)?;
    }
    let trailer = Entry::new(TRAILER, 0, Vec::new());
    write_member(out, offset, 0, &trailer, 1)?;
    Ok(())
}

fn write_member(
    out: &mut impl Write,
    offset: usize,
    ino: u32,
    entry: &Entry,
    nlink: u32,
) -> std::io::Result<usize> {
    let too_big = |what| std::io::Error::new(std::io::ErrorKind::InvalidInput, what);
    let size = u32::try_from(entry.data.len()).map_err(|_| too_big("file over 4 GiB"))?;
    let namesize = u32::try_from(entry.path.len() + 1).map_err(|_| too_big("name too long"))?;
    let fields = [
        ino,
        entry.mode,
        0,
        0,
        nlink,
        0,
        size,
        0,
        0,
        entry.rdev.0,
        entry.rdev.1,
        namesize,
        0,
    ];
    let mut header = Vec::with_capacity(HEADER_LEN + entry.path.len() + 4);
    header.extend_from_slice(MAGIC);
    for field in fields {
        header.extend_from_slice(format!("{field:08X}").as_bytes());
    }
    header.extend_from_slice(entry.path.as_bytes());
    header.push(0);
    header.resize(header.len() + pad4(offset + header.len()), 0);
    out.write_all(&header)?;
    out.write_all(&entry.data)?;
    let data_pad = pad4(offset + header.len() + entry.data.len());
    out.write_all(&[0u8; 3][..data_pad])?;
    Ok(header.len() + entry.data.len() + data_pad)
}

fn pad4(len: usize) -> usize {
    (4 - len % 4) % 4
}

/// Reads a newc archive up to its trailer.
pub fn read_newc(mut bytes: &[u8]) -> Result<Vec<Entry>, ImageError> {
    let bad = |detail: String| ImageError::malformed("cpio archive", detail);
    let total = bytes.len();
    let mut entries = Vec::new();
    loop {
        let offset = total - bytes.len();
        let header = bytes
            .get(..HEADER_LEN)
            .ok_or_else(|| bad(format!("truncated header at byte {offset}")))?;
        if &header[..6] != MAGIC {
            return Err(bad(format!("no newc magic at byte {offset}")));
        }
        let field = |i: usize| {
            let hex = &header[6 + 8 * i..14 + 8 * i];
            std::str::from_utf8(hex)
                .ok()
                .and_then(|s| u32::from_str_radix(s, 16).ok())
                .ok_or_else(|| bad(format!("bad header field at byte {offset}")))
        };
        let (mode, size, namesize) = (field(1)?, field(6)? as usize, field(11)? as usize);
        let rdev = (field(9)?, field(10)?);
        let name_end = HEADER_LEN + namesize;
        let data_start = name_end + pad4(offset + name_end);
        let data_end = data_start + size;
        let name = bytes
            .get(HEADER_LEN..name_end.saturating_sub(1))
            .filter(|_| namesize > 0)
            .ok_or_else(|| bad(format!("truncated name at byte {offset}")))?;
        let name = String::from_utf8_lossy(name).into_owned();
        if name == TRAILER {
            return Ok(entries);
        }
        let data = bytes
            .get(data_start..data_end)
            .ok_or_else(|| bad(format!("truncated data of {name}")))?;
        entries.push(Entry {
            path: name,
            mode,
            data: data.to_vec(),
            rdev,
        });
        let next = (data_end + pad4(offset + data_end)).min(bytes.len());
        bytes = &bytes[next..];
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    fn sample() -> Vec<Entry> {
        vec![
            Entry::dir("bin"),
            Entry::file("bin/hello", 0o755, b"#!/bin/sh\necho hi\n".to_vec()),
            Entry::symlink("bin/sh", "hello"),
            Entry::dir("dev"),
            Entry::char_dev("dev/console", 0o600, 5, 1),
            Entry::file("empty", 0o644, Vec::new()),
            Entry::file("odd-size", 0o600, vec![0xAB; 4097]),
        ]
    }

    fn archive() -> Vec<u8> {
        let mut out = Vec::new();
        write_newc(&sample(), &mut out).unwrap();
        out
    }

    #[test]
    fn round_trips_through_own_reader() {
        let bytes = archive();
        assert_eq!(bytes.len() % 4, 0);
        assert_eq!(read_newc(&bytes).unwrap(), sample());
    }

    #[test]
    fn gnu_cpio_lists_what_we_wrote() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.cpio");
        std::fs::write(&path, archive()).unwrap();
        let out = Command::new("cpio")
            .args(["-t", "-v", "--quiet", "-F"])
            .arg(&path)
            .output()
            .expect("run cpio (Debian package cpio)");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let listing = String::from_utf8(out.stdout).unwrap();
        let lines: Vec<&str> = listing.lines().collect();
        assert_eq!(lines.len(), 7, "{listing}");
        assert!(lines[0].starts_with("drwxr-xr-x") && lines[0].ends_with(" bin"));
        assert!(lines[1].starts_with("-rwxr-xr-x") && lines[1].ends_with(" bin/hello"));
        assert!(lines[2].starts_with("lrwxrwxrwx") && lines[2].ends_with(" bin/sh -> hello"));
        assert!(
            lines[4].starts_with("crw-------") && lines[4].contains(" 5,   1 "),
            "{}",
            lines[4]
        );
        assert!(lines[6].starts_with("-rw-------") && lines[6].contains(" 4097 "));
    }

    #[test]
    fn gnu_cpio_extracts_what_we_wrote() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.cpio");
        let files: Vec<Entry> = sample()
            .into_iter()
            .filter(|e| e.path != "dev/console")
            .collect();
        let mut bytes = Vec::new();
        write_newc(&files, &mut bytes).unwrap();
        std::fs::write(&path, bytes).unwrap();
        let root = dir.path().join("root");
        std::fs::create_dir(&root).unwrap();
        let status = Command::new("cpio")
            .args(["-i", "-d", "--quiet", "-F"])
            .arg(&path)
            .current_dir(&root)
            .status()
            .expect("run cpio (Debian package cpio)");
        assert!(status.success());
        assert_eq!(
            std::fs::read(root.join("bin/hello")).unwrap(),
            b"#!/bin/sh\necho hi\n"
        );
        assert_eq!(
            std::fs::read_link(root.join("bin/sh")).unwrap().to_str(),
            Some("hello")
        );
        assert_eq!(
            std::fs::read(root.join("odd-size")).unwrap(),
            vec![0xAB; 4097]
        );
        assert_eq!(std::fs::read(root.join("empty")).unwrap(), b"");
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(root.join("bin/hello"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o755);
    }

    #[test]
    fn truncated_and_garbage_archives_are_rejected() {
        let bytes = archive();
        for cut in [0, 50, 115, 200, bytes.len() - 120] {
            let err = read_newc(&bytes[..cut]).unwrap_err();
            assert!(
                err.to_string()
                    .starts_with("malformed cpio archive: truncated"),
                "{cut}: {err}"
            );
        }
        let mut garbage = bytes.clone();
        garbage[0] = b'1';
        assert!(read_newc(&garbage)
            .unwrap_err()
            .to_string()
            .contains("no newc magic"));
    }
}
