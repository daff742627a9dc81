//! The verified text of a suite's `InRelease`: which suite it describes and the checksums of
//! its index files.

use crate::deb822::Stanza;
use crate::ImageError;
use std::collections::BTreeMap;

/// Checksum and size of one file that a Release file lists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileSum {
    pub sha256: String,
    pub size: u64,
}

/// The fields of a Release file that we use.
#[derive(Debug)]
pub struct Release {
    pub codename: String,
    pub suite: String,
    pub valid_until: Option<String>,
    /// Path relative to `dists/<suite>/` → checksum.
    pub sha256: BTreeMap<String, FileSum>,
}

impl Release {
    /// Parses the (already verified) text of a Release file.
    pub fn parse(text: &str) -> Result<Self, ImageError> {
        let stanza = Stanza::parse_first(text)
            .ok_or_else(|| ImageError::malformed("InRelease", "no fields"))?;
        let field = |name: &str| {
            stanza
                .get(name)
                .map(str::to_string)
                .ok_or_else(|| ImageError::malformed("InRelease", format!("no {name} field")))
        };
        let mut sha256 = BTreeMap::new();
        for line in field("SHA256")?.lines().filter(|l| !l.trim().is_empty()) {
            let (path, sum) = parse_sum_line(line)?;
            sha256.insert(path, sum);
        }
        Ok(Release {
            codename: field("Codename")?,
            suite: field("Suite")?,
            valid_until: stanza.get("Valid-Until").map(str::to_string),
            sha256,
        })
    }

    /// True when `name` is this release's codename (`trixie`) or suite (`stable`).
    pub fn is_named(&self, name: &str) -> bool {
        self.codename == name || self.suite == name
    }

    /// Refuses a Release whose `Valid-Until` has passed (a replayed, stale archive).
    pub fn check_fresh(&self, now: chrono::DateTime<chrono::Utc>) -> Result<(), ImageError> {
        let Some(until) = &self.valid_until else {
            return Ok(());
        };
        let parsed = parse_release_date(until)?;
        if parsed < now {
            return Err(ImageError::Signature(format!(
                "InRelease expired: Valid-Until {until} has passed"
            )));
        }
        Ok(())
    }
}

/// Release dates look like `Thu, 03 Dec 2026 02:14:46 UTC` (RFC 2822 with a zone name).
fn parse_release_date(date: &str) -> Result<chrono::DateTime<chrono::Utc>, ImageError> {
    let rfc2822 = match date.strip_suffix(" UTC") {
        Some(head) => format!("{head} +0000"),
        None => date.to_string(),
    };
    chrono::DateTime::parse_from_rfc2822(&rfc2822)
        .map(|d| d.with_timezone(&chrono::Utc))
        .map_err(|e| ImageError::malformed("InRelease", format!("date {date:?}: {e}")))
}

/// ` <sha256> <size> <path>`
fn parse_sum_line(line: &str) -> Result<(String, FileSum), ImageError> {
    let bad = || ImageError::malformed("InRelease", format!("checksum line {line:?}"));
    let mut parts = line.split_whitespace();
    let (Some(sha), Some(size), Some(path), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(bad());
    };
    let sha256 = parse_sha256_hex(sha).ok_or_else(bad)?;
    let size = size.parse().map_err(|_| bad())?;
    Ok((path.to_string(), FileSum { sha256, size }))
}

/// A lower-case 64-digit hex SHA-256, or None.
pub fn parse_sha256_hex(s: &str) -> Option<String> {
    let ok = s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit());
    ok.then(|| s.to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = concat!(
        "Origin: Debian\n",
        "Suite: stable\n",
        "Codename: trixie\n",
        "Date: Sat, 21 Nov 2026 09:15:44 UTC\n",
        "Valid-Until: Thu, 03 Dec 2026 02:14:46 UTC\n",
        "MD5Sum:\n",
        " 576c5642117fbf5e949c05740c8aa3eb  9387120 main/binary-riscv64/Packages.xz\n",
        "SHA256:\n",
        " 3643ca12102052dd475472ad4a26f0c9918ac0866e95eeb875f3922a0bf457f2 12912086 main/binary-riscv64/Packages.gz\n",
        " F60294DC64D700AFA90C1833CDA096D8B8DE1F033E99AB2969A99FB9EA4AFF1B  9387120 main/binary-riscv64/Packages.xz\n",
    );

    #[test]
    fn parses_suite_and_sha256_section() {
        let r = Release::parse(SAMPLE).unwrap();
        assert_eq!(r.codename, "trixie");
        assert!(r.is_named("stable") && r.is_named("trixie") && !r.is_named("sid"));
        assert_eq!(r.sha256.len(), 2);
        let xz = &r.sha256["main/binary-riscv64/Packages.xz"];
        assert_eq!(xz.size, 9387120);
        assert_eq!(
            xz.sha256,
            "f60294dc64d700afa90c1833cda096d8b8de1f033e99ab2969a99fb9ea4aff1b"
        );
    }

    #[test]
    fn valid_until_is_enforced() {
        let r = Release::parse(SAMPLE).unwrap();
        let before = parse_release_date("Wed, 02 Dec 2026 00:00:00 UTC").unwrap();
        let after = parse_release_date("Fri, 04 Dec 2026 00:00:00 UTC").unwrap();
        r.check_fresh(before).unwrap();
        let err = r.check_fresh(after).unwrap_err();
        assert!(err.to_string().contains("expired"), "{err}");
    }

    #[test]
    fn bad_checksum_lines_are_rejected() {
        for bad in [
            "SHA256:\n abc 12 main/x\n",
            "SHA256:\n f60294dc64d700afa90c1833cda096d8b8de1f033e99ab2969a99fb9ea4aff1b twelve main/x\n",
            "SHA256:\n f60294dc64d700afa90c1833cda096d8b8de1f033e99ab2969a99fb9ea4aff1b 12\n",
        ] {
            let text = format!("Suite: stable\nCodename: trixie\n{bad}");
            let err = Release::parse(&text).unwrap_err();
            assert!(err.to_string().contains("checksum line"), "{err}");
        }
        let err = Release::parse("Suite: stable\nSHA256:\n").unwrap_err();
        assert!(err.to_string().contains("Codename"), "{err}");
    }
}
