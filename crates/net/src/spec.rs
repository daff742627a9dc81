//! The `--net` command-line value: which host backend a NIC uses.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use crate::mac::{MacAddr, MacParseError};

/// Linux's IFNAMSIZ (16) minus the terminating NUL.
pub const MAX_TAP_NAME_LEN: usize = 15;

/// What is wrong with a `--net` value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpecError {
    /// A field that is not `key=value`.
    #[error(
        "bad --net value '{0}': expected network=NAME, tap=NAME or socket=DIR, then [,mac=MAC]"
    )]
    Syntax(String),
    /// The `tap:NAME` / `socket:DIR` form of earlier versions.
    #[error("bad --net value '{old}': the KIND:TARGET form is gone; write '{new}'")]
    OldForm {
        /// The value as given.
        old: String,
        /// The same NIC in today's form.
        new: String,
    },
    /// A key other than `network`, `tap`, `socket` or `mac`.
    #[error("bad --net value: unknown key '{0}' (expected network=, tap=, socket= or mac=)")]
    UnknownKey(String),
    /// No backend key, or two of them.
    #[error("bad --net value: give exactly one of network=NAME, tap=NAME or socket=DIR")]
    Backend,
    /// `tap=` or `socket=` with nothing after it.
    #[error("bad --net value: empty {0} after '{1}='")]
    Empty(&'static str, &'static str),
    /// A network name that cannot be one.
    #[error("bad --net value: {0}")]
    NetworkName(String),
    /// A TAP name the kernel would refuse.
    #[error("bad --net value: TAP name '{name}' {problem}")]
    TapName {
        /// The name as given.
        name: String,
        /// What the kernel would object to.
        problem: &'static str,
    },
    /// `mac=` given twice.
    #[error("bad --net value: mac= given more than once")]
    DuplicateMac,
    /// `mac=` with an unusable address.
    #[error("bad --net value: {0}")]
    Mac(#[from] MacParseError),
}

/// The host side a NIC is connected to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Backend {
    /// A Linux TAP interface, attached to if it exists (persistent TAP),
    /// created for the life of the VM otherwise.
    Tap {
        /// Interface name, at most [`MAX_TAP_NAME_LEN`] bytes.
        name: String,
    },
    /// A named network's switch (`lockstep net create`).
    Network {
        /// The network's name.
        name: String,
    },
    /// A shared segment: every NIC naming the same directory is on one hub.
    Socket {
        /// The segment's directory (created if missing).
        path: PathBuf,
    },
}

/// A parsed `--net` value, a list of `key=value` fields as Cloud
/// Hypervisor's device options are: `network=NAME[,mac=MAC]`,
/// `tap=NAME[,mac=MAC]` or `socket=DIR[,mac=MAC]`, in any order.
///
/// DIR cannot contain `,` (it separates fields).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetSpec {
    /// Where the NIC's frames go.
    pub backend: Backend,
    /// The guest NIC's address, if the user chose one.
    pub mac: Option<MacAddr>,
}

impl FromStr for NetSpec {
    type Err = SpecError;

    fn from_str(s: &str) -> Result<NetSpec, SpecError> {
        if let Some(new) = modern_form(s) {
            return Err(SpecError::OldForm {
                old: s.to_string(),
                new,
            });
        }
        let mut backend = None;
        let mut mac = None;
        for field in s.split(',') {
            let (key, value) = field
                .split_once('=')
                .ok_or_else(|| SpecError::Syntax(s.to_string()))?;
            let next = match key {
                "network" => {
                    crate::network::check_name(value)
                        .map_err(|e| SpecError::NetworkName(e.to_string()))?;
                    Backend::Network {
                        name: value.to_string(),
                    }
                }
                "tap" => Backend::Tap {
                    name: check_tap_name(value)?.to_string(),
                },
                "socket" if value.is_empty() => return Err(SpecError::Empty("path", "socket")),
                "socket" => Backend::Socket {
                    path: PathBuf::from(value),
                },
                "mac" if mac.is_some() => return Err(SpecError::DuplicateMac),
                "mac" => {
                    mac = Some(value.parse()?);
                    continue;
                }
                other => return Err(SpecError::UnknownKey(other.to_string())),
            };
            if backend.replace(next).is_some() {
                return Err(SpecError::Backend);
            }
        }
        let backend = backend.ok_or(SpecError::Backend)?;
        Ok(NetSpec { backend, mac })
    }
}

impl NetSpec {
    /// Reads a value in today's form or in the `tap:NAME[,mac=MAC]` /
    /// `socket:DIR[,mac=MAC]` form of earlier versions (VM bundles
    /// written by them hold it).
    pub fn parse_either(s: &str) -> Result<NetSpec, SpecError> {
        match modern_form(s) {
            Some(new) => new.parse(),
            None => s.parse(),
        }
    }
}

/// `tap:NAME…` / `socket:DIR…` rewritten as `tap=NAME…` / `socket=DIR…`;
/// `None` for anything else.
fn modern_form(s: &str) -> Option<String> {
    let (kind, rest) = s.split_once(':')?;
    let first = s.split(',').next().unwrap_or_default();
    // `mac=52:54:…` holds colons too; only a colon before any `=` in the
    // first field is the old separator.
    if first.contains('=') || !matches!(kind, "tap" | "socket" | "network") {
        return None;
    }
    Some(format!("{kind}={rest}"))
}

/// Applies the kernel's rules for interface names (`dev_valid_name`), plus
/// no `%` so that the name is the interface we get, not a template.
fn check_tap_name(name: &str) -> Result<&str, SpecError> {
    let problem = if name.is_empty() {
        return Err(SpecError::Empty("name", "tap"));
    } else if name.len() > MAX_TAP_NAME_LEN {
        "is longer than 15 bytes"
    } else if name == "." || name == ".." {
        "is not allowed"
    } else if name
        .chars()
        .any(|c| c == '/' || c == ':' || c == '%' || c == '\0' || c.is_whitespace())
    {
        "contains '/', ':', '%', NUL or whitespace"
    } else {
        return Ok(name);
    };
    Err(SpecError::TapName {
        name: name.to_string(),
        problem,
    })
}

impl fmt::Display for NetSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.backend {
            Backend::Tap { name } => write!(f, "tap={name}")?,
            Backend::Network { name } => write!(f, "network={name}")?,
            Backend::Socket { path } => write!(f, "socket={}", path.display())?,
        }
        match self.mac {
            Some(mac) => write!(f, ",mac={mac}"),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<NetSpec, SpecError> {
        s.parse()
    }

    fn tap(name: &str) -> Backend {
        Backend::Tap { name: name.into() }
    }

    #[test]
    fn parses_tap_and_socket() {
        let spec = parse("tap=tap0").unwrap();
        assert_eq!(
            spec,
            NetSpec {
                backend: tap("tap0"),
                mac: None
            }
        );
        let spec = parse("socket=/tmp/seg one,mac=52-54-00-00-00-01").unwrap();
        assert_eq!(
            spec.backend,
            Backend::Socket {
                path: PathBuf::from("/tmp/seg one")
            }
        );
        assert_eq!(spec.mac, Some("52:54:00:00:00:01".parse().unwrap()));
        assert_eq!(
            spec.to_string(),
            "socket=/tmp/seg one,mac=52:54:00:00:00:01"
        );
        assert_eq!(
            parse("tap=abcdefghijklmno").unwrap().backend,
            tap("abcdefghijklmno")
        );
        // Fields in any order.
        assert_eq!(
            parse("mac=52:54:00:00:00:01,tap=t0").unwrap(),
            parse("tap=t0,mac=52:54:00:00:00:01").unwrap()
        );
    }

    #[test]
    fn display_round_trips() {
        for text in ["tap=vm0", "tap=vm0,mac=52:54:00:aa:bb:cc", "socket=seg"] {
            assert_eq!(parse(text).unwrap().to_string(), text);
        }
    }

    #[test]
    fn the_old_form_is_refused_naming_the_new_and_read_by_parse_either() {
        for (old, new) in [
            ("tap:vm0", "tap=vm0"),
            (
                "socket:/s,mac=52:54:00:00:00:01",
                "socket=/s,mac=52:54:00:00:00:01",
            ),
        ] {
            let err = parse(old).unwrap_err();
            assert_eq!(
                err,
                SpecError::OldForm {
                    old: old.into(),
                    new: new.into()
                }
            );
            assert!(err.to_string().contains(&format!("write '{new}'")), "{err}");
            assert_eq!(NetSpec::parse_either(old).unwrap(), parse(new).unwrap());
            assert_eq!(NetSpec::parse_either(new).unwrap(), parse(new).unwrap());
        }
    }

    #[test]
    fn errors_name_the_problem() {
        let cases: &[(&str, SpecError, &str)] = &[
            (
                "tap0",
                SpecError::Syntax("tap0".into()),
                "expected network=NAME, tap=NAME",
            ),
            (
                "vde=x",
                SpecError::UnknownKey("vde".into()),
                "unknown key 'vde'",
            ),
            (
                "tap=",
                SpecError::Empty("name", "tap"),
                "empty name after 'tap='",
            ),
            (
                "tap=,mac=52:54:00:00:00:01",
                SpecError::Empty("name", "tap"),
                "empty name",
            ),
            (
                "socket=",
                SpecError::Empty("path", "socket"),
                "empty path after 'socket='",
            ),
            (
                "mac=52:54:00:00:00:01",
                SpecError::Backend,
                "exactly one of",
            ),
            ("tap=a,socket=/b", SpecError::Backend, "exactly one of"),
            (
                "tap=abcdefghijklmnop",
                SpecError::TapName {
                    name: "abcdefghijklmnop".into(),
                    problem: "is longer than 15 bytes",
                },
                "TAP name 'abcdefghijklmnop' is longer than 15 bytes",
            ),
            (
                "tap=a b",
                SpecError::TapName {
                    name: "a b".into(),
                    problem: "contains '/', ':', '%', NUL or whitespace",
                },
                "'a b' contains",
            ),
            (
                "tap=tap%d",
                SpecError::TapName {
                    name: "tap%d".into(),
                    problem: "contains '/', ':', '%', NUL or whitespace",
                },
                "'tap%d'",
            ),
            (
                "tap=..",
                SpecError::TapName {
                    name: "..".into(),
                    problem: "is not allowed",
                },
                "'..' is not allowed",
            ),
            (
                "tap=t0,queues=2",
                SpecError::UnknownKey("queues".into()),
                "unknown key 'queues'",
            ),
            (
                "tap=t0,",
                SpecError::Syntax("tap=t0,".into()),
                "expected network=NAME, tap=NAME",
            ),
            (
                "tap=t0,mac",
                SpecError::Syntax("tap=t0,mac".into()),
                "expected network=NAME, tap=NAME",
            ),
            (
                "tap=t0,mac=52:54:00:00:00:01,mac=52:54:00:00:00:02",
                SpecError::DuplicateMac,
                "more than once",
            ),
            (
                "tap=t0,mac=ff:ff:ff:ff:ff:ff",
                SpecError::Mac(MacParseError::Multicast("ff:ff:ff:ff:ff:ff".into())),
                "multicast",
            ),
            (
                "socket=/s,mac=52:54:00",
                SpecError::Mac(MacParseError::Syntax("52:54:00".into())),
                "bad MAC address '52:54:00'",
            ),
        ];
        for (text, expected, message) in cases {
            let err = parse(text).unwrap_err();
            assert_eq!(&err, expected, "{text:?}");
            let shown = err.to_string();
            assert!(shown.contains(message), "{text:?}: {shown}");
            assert!(!shown.contains('\n'), "{text:?}: {shown}");
        }
    }
}
