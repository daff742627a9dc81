//! Reading files out of a .deb: an `ar` archive whose `data.tar[.xz|.zst|.gz]` member holds the
//! package's files.

use crate::ImageError;
use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufReader, Read};
use std::path::Path;

/// Regular files of the package's data archive whose path (without the leading `./`) `want`
/// accepts, by path.
pub fn read_files(
    deb: &Path,
    mut want: impl FnMut(&str) -> bool,
) -> Result<BTreeMap<String, Vec<u8>>, ImageError> {
    let what = deb.display().to_string();
    let bad = |detail: String| ImageError::malformed(&what, detail);
    let file = File::open(deb).map_err(ImageError::io(deb))?;
    let mut archive = ar::Archive::new(BufReader::new(file));
    while let Some(member) = archive.next_entry() {
        let member = member.map_err(|e| bad(format!("ar archive: {e}")))?;
        let name = String::from_utf8_lossy(member.header().identifier()).into_owned();
        if !name.starts_with("data.tar") {
            continue;
        }
        let data = decompressor(&name, member).map_err(|e| bad(format!("{name}: {e}")))?;
        return read_tar(data, &mut want).map_err(|e| bad(format!("{name}: {e}")));
    }
    Err(bad("no data.tar member".into()))
}

/// A reader that decompresses according to the file name's extension.
pub fn decompressor<'a>(name: &str, raw: impl Read + 'a) -> std::io::Result<Box<dyn Read + 'a>> {
    Ok(match name.rsplit_once('.').map(|(_, ext)| ext) {
        Some("xz") => Box::new(liblzma::read::XzDecoder::new_multi_decoder(raw)),
        Some("zst") => Box::new(zstd::stream::read::Decoder::new(raw)?),
        Some("gz") => Box::new(flate2::read::MultiGzDecoder::new(raw)),
        Some("tar") | Some("ko") => Box::new(raw),
        _ => {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("unknown compression of {name}"),
            ))
        }
    })
}

/// Decompresses a whole buffer by the file name's extension.
pub fn decompress(name: &str, data: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut out = Vec::new();
    decompressor(name, data)?.read_to_end(&mut out)?;
    Ok(out)
}

/// Regular files of a tar stream whose path (without the leading `./`)
/// `want` accepts, by path.
pub(crate) fn read_tar(
    data: impl Read,
    want: &mut impl FnMut(&str) -> bool,
) -> std::io::Result<BTreeMap<String, Vec<u8>>> {
    let mut files = BTreeMap::new();
    let mut archive = tar::Archive::new(data);
    for entry in archive.entries()? {
        let mut entry = entry?;
        if entry.header().entry_type() != tar::EntryType::Regular {
            continue;
        }
        let path = entry.path()?.to_string_lossy().into_owned();
        let path = path.trim_start_matches("./").to_string();
        if want(&path) {
            let mut bytes = Vec::with_capacity(usize::try_from(entry.size()).unwrap_or(0));
            entry.read_to_end(&mut bytes)?;
            files.insert(path, bytes);
        }
    }
    Ok(files)
}

#[cfg(test)]
pub mod tests {
    use super::*;
    use std::io::Write;

    /// Builds a .deb with the given files in a data.tar.xz.
    pub fn make_deb(path: &Path, files: &[(&str, &[u8])]) {
        let mut tar = tar::Builder::new(Vec::new());
        for (name, data) in files {
            let mut header = tar::Header::new_gnu();
            header.set_size(data.len() as u64);
            header.set_mode(0o644);
            header.set_cksum();
            tar.append_data(&mut header, format!("./{name}"), *data)
                .unwrap();
        }
        let mut symlink = tar::Header::new_gnu();
        symlink.set_entry_type(tar::EntryType::Symlink);
        symlink.set_size(0);
        tar.append_link(&mut symlink, "./usr/link", "target")
            .unwrap();
        let tar = tar.into_inner().unwrap();
        let mut xz = liblzma::write::XzEncoder::new(Vec::new(), 6);
        xz.write_all(&tar).unwrap();
        let xz = xz.finish().unwrap();
        let mut ar = ar::Builder::new(File::create(path).unwrap());
        for (name, data) in [("debian-binary", &b"2.0\n"[..]), ("data.tar.xz", &xz[..])] {
            let header = ar::Header::new(name.as_bytes().to_vec(), data.len() as u64);
            ar.append(&header, data).unwrap();
        }
    }

    #[test]
    fn reads_selected_regular_files() {
        let dir = tempfile::tempdir().unwrap();
        let deb = dir.path().join("t.deb");
        make_deb(
            &deb,
            &[("usr/bin/busybox", b"BB"), ("usr/share/doc/x", b"doc")],
        );
        let files = read_files(&deb, |p| p.starts_with("usr/")).unwrap();
        assert_eq!(
            files.keys().collect::<Vec<_>>(),
            ["usr/bin/busybox", "usr/share/doc/x"]
        );
        assert_eq!(files["usr/bin/busybox"], b"BB");
        let none = read_files(&deb, |p| p.starts_with("boot/")).unwrap();
        assert!(none.is_empty());
    }

    #[test]
    fn truncated_deb_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        let deb = dir.path().join("t.deb");
        make_deb(&deb, &[("usr/bin/busybox", &[7u8; 5000])]);
        let bytes = std::fs::read(&deb).unwrap();
        std::fs::write(&deb, &bytes[..bytes.len() - 200]).unwrap();
        let err = read_files(&deb, |_| true).unwrap_err();
        assert!(err.to_string().starts_with("malformed "), "{err}");
    }

    #[test]
    fn decompresses_by_extension() {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(b"module").unwrap();
        assert_eq!(
            decompress("a.ko.gz", &gz.finish().unwrap()).unwrap(),
            b"module"
        );
        assert_eq!(decompress("a.ko", b"plain").unwrap(), b"plain");
        assert!(decompress("a.ko.bz2", b"x").is_err());
    }
}
