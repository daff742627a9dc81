//! Which Debian mirror to fetch from when none is given: `LOCKSTEP_MIRROR`,
//! else the first Debian archive in this host's own apt sources. No
//! mirror's name is built in.

use crate::ImageError;
use std::path::{Path, PathBuf};

/// The environment variable naming a mirror (a Debian archive root URL).
pub const MIRROR_ENV: &str = "LOCKSTEP_MIRROR";

/// Where apt keeps its sources, in the order apt reads them.
const APT_SOURCES: &str = "/etc/apt/sources.list";
const APT_SOURCES_DIR: &str = "/etc/apt/sources.list.d";
/// Bound on what is read of one sources file.
const MAX_SOURCES_BYTES: u64 = 1 << 20;

/// The mirror to use: `LOCKSTEP_MIRROR` if set, else this host's apt
/// sources' first Debian archive.
pub fn default_mirror() -> Result<String, ImageError> {
    if let Ok(url) = std::env::var(MIRROR_ENV) {
        if !url.trim().is_empty() {
            return Ok(url.trim().to_string());
        }
    }
    let mut files = vec![PathBuf::from(APT_SOURCES)];
    if let Ok(dir) = std::fs::read_dir(APT_SOURCES_DIR) {
        let mut more: Vec<PathBuf> = dir
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.extension()
                    .is_some_and(|ext| ext == "list" || ext == "sources")
            })
            .collect();
        more.sort();
        files.extend(more);
    }
    files
        .iter()
        .find_map(|path| read_bounded(path).and_then(|text| debian_archive(path, &text)))
        .ok_or(ImageError::NoMirror)
}

fn read_bounded(path: &Path) -> Option<String> {
    use std::io::Read;
    let mut text = String::new();
    std::fs::File::open(path)
        .ok()?
        .take(MAX_SOURCES_BYTES)
        .read_to_string(&mut text)
        .ok()?;
    Some(text)
}

/// The first Debian archive URL in one sources file: one-line style
/// (`deb [opts] URL suite comp…`) or deb822 (`URIs: URL …`). A Debian
/// archive's path ends in `/debian`.
fn debian_archive(path: &Path, text: &str) -> Option<String> {
    let deb822 = path.extension().is_some_and(|e| e == "sources");
    text.lines()
        .map(str::trim)
        .filter(|l| !l.starts_with('#'))
        .flat_map(|line| {
            let urls: Vec<&str> = if deb822 {
                match line.split_once(':') {
                    Some((key, rest)) if key.trim().eq_ignore_ascii_case("uris") => {
                        rest.split_whitespace().collect()
                    }
                    _ => Vec::new(),
                }
            } else if line.starts_with("deb ") {
                line.split_whitespace()
                    .skip(1)
                    .filter(|w| w.contains("://"))
                    .take(1)
                    .collect()
            } else {
                Vec::new()
            };
            urls
        })
        .find(|url| {
            (url.starts_with("http://") || url.starts_with("https://"))
                && url.trim_end_matches('/').ends_with("/debian")
        })
        .map(|url| url.trim_end_matches('/').to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_debian_archive_in_either_style() {
        let list = "# comment\ndeb [arch=amd64] http://m.example/debian/ bookworm main\n\
                    deb http://m.example/debian-security bookworm-security main\n";
        assert_eq!(
            debian_archive(Path::new("x.list"), list).as_deref(),
            Some("http://m.example/debian")
        );
        let sources = "Types: deb\nURIs: https://m.example/debian-security\n\n\
                       Types: deb\nURIs: https://m.example/debian\nSuites: trixie\n";
        assert_eq!(
            debian_archive(Path::new("debian.sources"), sources).as_deref(),
            Some("https://m.example/debian")
        );
        assert_eq!(
            debian_archive(Path::new("x.list"), "deb file:/debian x y\n"),
            None
        );
        assert_eq!(
            debian_archive(Path::new("x.sources"), "URIs: ftp://a/debian\n"),
            None
        );
    }
}
