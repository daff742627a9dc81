//! One flag vocabulary, shared by the `lockstep` command and its
//! benchmarks (`lockstep-bench`): durations always with units (`500ms`,
//! `2s`), sizes always with units (`512M`) and shown in binary units
//! ([`human`]), device specs as `key=value` lists, and old spellings refused
//! with a message naming the new one.
//!
//! It owns the words of flags and their messages (clap value parsers,
//! returning a [`VocabError`], which clap's `value_parser` takes as any
//! `Error + Send + Sync`), nothing else: no clap types, no VM, no files.

use std::time::Duration;

/// Why a flag's value is refused; each message quotes the value as given.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum VocabError {
    #[error("'{given}' has no unit: give one, e.g. {given}ms or {given}s")]
    DurationNoUnit { given: String },
    #[error("invalid duration '{given}': {source} (e.g. 500ms, 2s)")]
    BadDuration {
        given: String,
        #[source]
        source: humantime::DurationError,
    },
    #[error("{given} is too short: at least {}", humantime::format_duration(*.min))]
    TooShort { given: String, min: Duration },
    #[error("'{given}' has no unit: give one, e.g. {given}M or {given}G")]
    SizeNoUnit { given: String },
    #[error("invalid size: {0}")]
    BadSize(#[source] ::disk::SizeError),
    #[error("{given} is not a whole number of {}", human(*.unit))]
    NotWholeUnits { given: String, unit: u64 },
    /// `min` and `max` in bytes.
    #[error("{given} is out of range: {} to {}", human(*.min), human(*.max))]
    SizeOutOfRange { given: String, min: u64, max: u64 },
    #[error("{given} is too large")]
    SizeTooLarge { given: String },
    #[error("invalid {what} '{spec}': '{field}' is not key=value (keys: {})", .keys.join(", "))]
    NotKeyValue {
        what: String,
        spec: String,
        field: String,
        keys: Vec<String>,
    },
    #[error("invalid {what} '{spec}': unknown key '{key}' (keys: {})", .keys.join(", "))]
    UnknownKey {
        what: String,
        spec: String,
        key: String,
        keys: Vec<String>,
    },
    #[error("invalid {what} '{spec}': {key}= given twice")]
    RepeatedKey {
        what: String,
        spec: String,
        key: String,
    },
    #[error("invalid {what}: {key}={value}: expected {key}=on or {key}=off")]
    NotOnOff {
        what: String,
        key: String,
        value: String,
    },
    #[error("renamed: give it as {new}")]
    Renamed { new: &'static str },
}

/// A duration with its unit: `500ms`, `2s`, `1m 30s` (humantime). A bare
/// number is refused: its unit would be a guess.
pub fn parse_duration(s: &str) -> Result<humantime::Duration, VocabError> {
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(VocabError::DurationNoUnit { given: s.into() });
    }
    s.parse::<humantime::Duration>()
        .map_err(|source| VocabError::BadDuration {
            given: s.into(),
            source,
        })
}

/// [`parse_duration`], at least `min`.
pub fn duration_at_least(
    min: Duration,
) -> impl Fn(&str) -> Result<humantime::Duration, VocabError> + Clone + Send + Sync + 'static {
    move |s| {
        let d = parse_duration(s)?;
        if *d < min {
            return Err(VocabError::TooShort {
                given: s.into(),
                min,
            });
        }
        Ok(d)
    }
}

/// A size with its unit (`512M`, `2G`; K/M/G/T are powers of 1024), as a
/// whole number of `unit`s within `range` of them: `--memory 512M` for a
/// field that counts MiB. A bare number is refused: its unit would be a
/// guess.
pub fn size_in<T>(
    unit: u64,
    range: std::ops::RangeInclusive<u64>,
) -> impl Fn(&str) -> Result<T, VocabError> + Clone + Send + Sync + 'static
where
    T: TryFrom<u64>,
{
    move |s| {
        if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
            return Err(VocabError::SizeNoUnit { given: s.into() });
        }
        let bytes = ::disk::parse_size(s).map_err(VocabError::BadSize)?;
        if !bytes.is_multiple_of(unit) {
            return Err(VocabError::NotWholeUnits {
                given: s.into(),
                unit,
            });
        }
        let n = bytes / unit;
        if !range.contains(&n) {
            return Err(VocabError::SizeOutOfRange {
                given: s.into(),
                min: range.start() * unit,
                max: range.end() * unit,
            });
        }
        T::try_from(n).map_err(|_| VocabError::SizeTooLarge { given: s.into() })
    }
}

/// A device spec's fields, Cloud Hypervisor style: `key=value` pairs
/// separated by commas, each key one of `keys` and given at most once.
/// (A value cannot hold a comma.)
pub fn fields<'a>(
    what: &str,
    s: &'a str,
    keys: &[&str],
) -> Result<Vec<(&'a str, &'a str)>, VocabError> {
    let keys_owned = || keys.iter().map(|k| k.to_string()).collect();
    let mut out: Vec<(&str, &str)> = Vec::new();
    for field in s.split(',') {
        let Some((key, value)) = field.split_once('=') else {
            return Err(VocabError::NotKeyValue {
                what: what.into(),
                spec: s.into(),
                field: field.into(),
                keys: keys_owned(),
            });
        };
        if !keys.contains(&key) {
            return Err(VocabError::UnknownKey {
                what: what.into(),
                spec: s.into(),
                key: key.into(),
                keys: keys_owned(),
            });
        }
        if out.iter().any(|(k, _)| *k == key) {
            return Err(VocabError::RepeatedKey {
                what: what.into(),
                spec: s.into(),
                key: key.into(),
            });
        }
        out.push((key, value));
    }
    Ok(out)
}

/// `on` or `off` (a device spec's switches).
pub fn on_off(what: &str, key: &str, value: &str) -> Result<bool, VocabError> {
    match value {
        "on" => Ok(true),
        "off" => Ok(false),
        _ => Err(VocabError::NotOnOff {
            what: what.into(),
            key: key.into(),
            value: value.into(),
        }),
    }
}

/// The value parser of a flag that was renamed: any use is refused with
/// the new spelling (exit 2, as every usage error).
pub fn renamed(
    new: &'static str,
) -> impl Fn(&str) -> Result<String, VocabError> + Clone + Send + Sync + 'static {
    move |_| Err(VocabError::Renamed { new })
}

/// "64 MiB"; exact units only, else one decimal.
pub fn human(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    let Some(i) = (0..UNITS.len())
        .rev()
        .find(|&i| bytes >= 1 << (10 * (i + 1)))
    else {
        return format!("{bytes} bytes");
    };
    let unit = 1u64 << (10 * (i + 1));
    if bytes.is_multiple_of(unit) {
        format!("{} {}", bytes / unit, UNITS[i])
    } else {
        format!("{:.1} {}", bytes as f64 / unit as f64, UNITS[i])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_show_in_binary_units() {
        assert_eq!(human(512), "512 bytes");
        assert_eq!(human(64 << 20), "64 MiB");
        assert_eq!(human(1536), "1.5 KiB");
        assert_eq!(human(10 << 30), "10 GiB");
    }

    /// The messages read as they did when they were strings.
    #[test]
    fn messages_name_the_value_and_the_fix() {
        let say = |r: Result<u32, VocabError>| r.unwrap_err().to_string();
        let mib = size_in::<u32>(1 << 20, 1..=4096);
        assert_eq!(
            say(mib("512")),
            "'512' has no unit: give one, e.g. 512M or 512G"
        );
        assert_eq!(say(mib("1536K")), "1536K is not a whole number of 1 MiB");
        assert_eq!(say(mib("8G")), "8G is out of range: 1 MiB to 4 GiB");
        assert!(say(mib("12X")).starts_with("invalid size: invalid size"));
        assert_eq!(
            parse_duration("5").unwrap_err().to_string(),
            "'5' has no unit: give one, e.g. 5ms or 5s"
        );
        assert!(parse_duration("fast")
            .unwrap_err()
            .to_string()
            .starts_with("invalid duration 'fast': "));
        assert_eq!(
            duration_at_least(Duration::from_millis(10))("5ms")
                .unwrap_err()
                .to_string(),
            "5ms is too short: at least 10ms"
        );
        assert_eq!(
            fields("disk", "path=/a,ro", &["path", "readonly"])
                .unwrap_err()
                .to_string(),
            "invalid disk 'path=/a,ro': 'ro' is not key=value (keys: path, readonly)"
        );
        assert_eq!(
            on_off("disk", "readonly", "yes").unwrap_err().to_string(),
            "invalid disk: readonly=yes: expected readonly=on or readonly=off"
        );
        assert_eq!(
            renamed("--size 64M")("1").unwrap_err().to_string(),
            "renamed: give it as --size 64M"
        );
    }

    #[test]
    fn durations_need_units() {
        assert_eq!(
            *parse_duration("500ms").unwrap(),
            Duration::from_millis(500)
        );
        assert_eq!(*parse_duration("2s").unwrap(), Duration::from_secs(2));
        assert!(parse_duration("500")
            .unwrap_err()
            .to_string()
            .contains("500ms"));
        assert!(parse_duration("fast").is_err());
        let at_least = duration_at_least(Duration::from_millis(10));
        assert!(at_least("5ms").unwrap_err().to_string().contains("10ms"));
        assert!(at_least("10ms").is_ok());
        let mib = size_in::<u32>(1 << 20, 1..=4096);
        assert_eq!(mib("512M"), Ok(512));
        assert_eq!(mib("1G"), Ok(1024));
        assert!(mib("512").unwrap_err().to_string().contains("512M"));
        assert!(mib("1536K")
            .unwrap_err()
            .to_string()
            .contains("whole number"));
        assert!(mib("8G").unwrap_err().to_string().contains("out of range"));
        assert!(mib("0M").unwrap_err().to_string().contains("out of range"));
        let f = fields("disk", "path=/a,readonly=on", &["path", "readonly"]).unwrap();
        assert_eq!(f, [("path", "/a"), ("readonly", "on")]);
        for (bad, says) in [
            ("path=/a,ro", "'ro' is not key=value"),
            ("path=/a,size=1", "unknown key 'size'"),
            ("path=/a,path=/b", "path= given twice"),
        ] {
            let err = fields("disk", bad, &["path", "readonly"])
                .unwrap_err()
                .to_string();
            assert!(err.contains(says), "{bad}: {err}");
        }
        assert_eq!(on_off("disk", "readonly", "on"), Ok(true));
        assert!(on_off("disk", "readonly", "yes")
            .unwrap_err()
            .to_string()
            .contains("readonly=on"));
        assert!(renamed("--ft-arbiter")("x")
            .unwrap_err()
            .to_string()
            .contains("--ft-arbiter"));
    }
}
