//! HTTP downloads from the mirror: checked against an expected size and SHA-256 while they
//! stream into a temp file, which is fsynced and renamed into place only when it matches.

use crate::cache::{atomic_write_with, hex, sha256_file};
use crate::release::FileSum;
use crate::ImageError;
use indicatif::{ProgressBar, ProgressStyle};
use sha2::{Digest, Sha256};
use std::io::{IsTerminal, Read, Write};
use std::path::Path;
use std::time::Duration;

/// The biggest InRelease we accept (trixie's is ~140 KiB).
const MAX_IN_RELEASE: u64 = 16 << 20;

/// How progress is shown on stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Report {
    Silent,
    /// One line per file (stderr is not a terminal).
    Lines,
    /// Progress bars.
    Bars,
}

impl Report {
    pub fn new(progress: bool) -> Self {
        match (progress, std::io::stderr().is_terminal()) {
            (false, _) => Report::Silent,
            (true, false) => Report::Lines,
            (true, true) => Report::Bars,
        }
    }

    pub fn line(self, msg: &str) {
        if self != Report::Silent {
            eprintln!("{msg}");
        }
    }

    fn bar(self, name: &str, total: Option<u64>) -> Option<ProgressBar> {
        if self != Report::Bars {
            return None;
        }
        let bar = ProgressBar::with_draw_target(total, indicatif::ProgressDrawTarget::stderr());
        // The bar takes the width the terminal leaves, so the line never wraps.
        let template = "{msg:24!} [{wide_bar}] {bytes:>10}/{total_bytes:<10} {eta:>3}";
        if let Ok(style) = ProgressStyle::with_template(template) {
            bar.set_style(style.progress_chars("=> "));
        }
        bar.set_message(name.to_string());
        Some(bar)
    }
}

/// Downloads files from one mirror.
pub struct Fetcher {
    agent: ureq::Agent,
    mirror: String,
    report: Report,
}

impl Fetcher {
    pub fn new(mirror: &str, report: Report) -> Result<Self, ImageError> {
        if !(mirror.starts_with("http://") || mirror.starts_with("https://")) {
            return Err(ImageError::malformed(
                "mirror URL",
                format!("{mirror:?} is not http:// or https://"),
            ));
        }
        let config = ureq::Agent::config_builder()
            .timeout_resolve(Some(Duration::from_secs(15)))
            .timeout_connect(Some(Duration::from_secs(15)))
            .timeout_recv_response(Some(Duration::from_secs(30)))
            .timeout_per_read(Some(Duration::from_secs(30)))
            .user_agent(concat!("lockstep-image/", env!("CARGO_PKG_VERSION")))
            .build();
        Ok(Fetcher {
            agent: config.new_agent(),
            mirror: mirror.trim_end_matches('/').to_string(),
            report,
        })
    }

    pub fn report(&self) -> Report {
        self.report
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}/{path}", self.mirror)
    }

    /// Fetches a small file (the InRelease) into memory.
    pub fn get_small(&self, path: &str) -> Result<Vec<u8>, ImageError> {
        let url = self.url(path);
        self.report.line(&format!("fetching {url}"));
        let mut body = self.open(&url)?;
        let mut out = Vec::new();
        (&mut body)
            .take(MAX_IN_RELEASE + 1)
            .read_to_end(&mut out)
            .map_err(|e| unreachable(&url, e))?;
        if out.len() as u64 > MAX_IN_RELEASE {
            return Err(ImageError::malformed(&url, "larger than 16 MiB"));
        }
        Ok(out)
    }

    /// Downloads `path` to `dest` unless `dest` already holds the expected bytes. A stored file
    /// with the wrong checksum is reported and fetched again. Nothing is written to `dest`
    /// unless the download matches `expect`.
    pub fn ensure(&self, path: &str, dest: &Path, expect: &FileSum) -> Result<(), ImageError> {
        if dest.exists() {
            let got = sha256_file(dest)?;
            if got == expect.sha256 {
                return Ok(());
            }
            self.report.line(&format!(
                "cached {} is corrupt (SHA-256 {got}, expected {}): fetching it again",
                dest.display(),
                expect.sha256
            ));
        }
        self.download(path, dest, expect)
    }

    fn download(&self, path: &str, dest: &Path, expect: &FileSum) -> Result<(), ImageError> {
        let url = self.url(path);
        let name = path.rsplit('/').next().unwrap_or(path);
        self.report.line(&format!(
            "downloading {url} ({:.1} MB)",
            expect.size as f64 / 1e6
        ));
        let mut body = self.open(&url)?;
        let bar = self.report.bar(name, Some(expect.size));
        let result = atomic_write_with(dest, |file| {
            copy_checked(&mut body, file, (&url, dest), expect, bar.as_ref())
        });
        if let Some(bar) = bar {
            bar.finish_and_clear();
        }
        result
    }

    fn open(&self, url: &str) -> Result<impl Read + '_, ImageError> {
        match self.agent.get(url).call() {
            Ok(response) => Ok(response.into_body().into_reader()),
            Err(ureq::Error::StatusCode(status)) => Err(ImageError::HttpStatus {
                url: url.to_string(),
                status,
            }),
            Err(e) => Err(unreachable(url, e)),
        }
    }
}

fn unreachable(url: &str, cause: impl std::fmt::Display) -> ImageError {
    ImageError::Unreachable {
        url: url.to_string(),
        cause: cause.to_string(),
    }
}

/// Copies the body to `out`, hashing it, and fails unless size and SHA-256 match.
fn copy_checked(
    body: &mut impl Read,
    out: &mut std::fs::File,
    (url, dest): (&str, &Path),
    expect: &FileSum,
    bar: Option<&ProgressBar>,
) -> Result<(), ImageError> {
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    let mut total: u64 = 0;
    loop {
        let n = body.read(&mut buf).map_err(|e| unreachable(url, e))?;
        if n == 0 {
            break;
        }
        total += n as u64;
        if total > expect.size {
            return Err(size_mismatch(url, expect.size, total));
        }
        hasher.update(&buf[..n]);
        out.write_all(&buf[..n]).map_err(ImageError::io(dest))?;
        if let Some(bar) = bar {
            bar.set_position(total);
        }
    }
    if total != expect.size {
        return Err(size_mismatch(url, expect.size, total));
    }
    let got = hex(&hasher.finalize());
    if got != expect.sha256 {
        return Err(ImageError::ChecksumMismatch {
            what: url.to_string(),
            expected: expect.sha256.clone(),
            got,
        });
    }
    Ok(())
}

fn size_mismatch(url: &str, expected: u64, got: u64) -> ImageError {
    ImageError::SizeMismatch {
        what: url.to_string(),
        expected,
        got,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::sha256_bytes;
    use std::io::BufRead;
    use std::net::TcpListener;

    /// Serves `body` over HTTP on 127.0.0.1 to exactly `requests` requests, then stops.
    fn serve(body: &'static [u8], requests: usize) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            for stream in listener.incoming().take(requests) {
                let mut stream = stream.unwrap();
                let mut reader = std::io::BufReader::new(stream.try_clone().unwrap());
                let mut line = String::new();
                while reader.read_line(&mut line).unwrap() > 0 && line != "\r\n" {
                    line.clear();
                }
                let head = format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                );
                stream.write_all(head.as_bytes()).unwrap();
                stream.write_all(body).unwrap();
            }
        });
        format!("http://{addr}/debian")
    }

    fn sum(bytes: &[u8]) -> FileSum {
        FileSum {
            sha256: sha256_bytes(bytes),
            size: bytes.len() as u64,
        }
    }

    #[test]
    fn checksum_mismatch_is_reported_and_nothing_is_stored() {
        let mirror = serve(b"tampered package", 1);
        let fetcher = Fetcher::new(&mirror, Report::Silent).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("p.deb");
        let expect = sum(b"original package");
        let err = fetcher.ensure("pool/p.deb", &dest, &expect).unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, ImageError::ChecksumMismatch { .. }), "{msg}");
        assert!(msg.contains("/debian/pool/p.deb"), "{msg}");
        assert!(msg.contains(&expect.sha256), "{msg}");
        assert!(msg.contains(&sha256_bytes(b"tampered package")), "{msg}");
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            0,
            "left files behind"
        );
    }

    #[test]
    fn size_mismatch_is_reported() {
        let mirror = serve(b"longer than announced", 1);
        let fetcher = Fetcher::new(&mirror, Report::Silent).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let expect = FileSum {
            sha256: sha256_bytes(b"short"),
            size: 5,
        };
        let err = fetcher
            .ensure("p", &dir.path().join("p"), &expect)
            .unwrap_err();
        assert!(
            matches!(err, ImageError::SizeMismatch { expected: 5, .. }),
            "{err}"
        );
    }

    #[test]
    fn corrupt_cached_file_is_fetched_again_and_intact_one_is_reused() {
        let mirror = serve(b"good bytes", 1);
        let fetcher = Fetcher::new(&mirror, Report::Silent).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("p.deb");
        std::fs::write(&dest, b"bad bytes!").unwrap();
        fetcher
            .ensure("pool/p.deb", &dest, &sum(b"good bytes"))
            .unwrap();
        assert_eq!(std::fs::read(&dest).unwrap(), b"good bytes");
        // The server is gone after one request: a second ensure must not need it.
        fetcher
            .ensure("pool/p.deb", &dest, &sum(b"good bytes"))
            .unwrap();
    }

    #[test]
    fn unreachable_mirror_names_the_url() {
        // Port 9 (discard) on loopback: nothing listens there.
        let fetcher = Fetcher::new("http://127.0.0.1:9/debian", Report::Silent).unwrap();
        let err = fetcher.get_small("dists/trixie/InRelease").unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.starts_with(
                "archive unreachable: http://127.0.0.1:9/debian/dists/trixie/InRelease: "
            ),
            "{msg}"
        );
        assert!(Fetcher::new("ftp://x", Report::Silent).is_err());
    }
}
