//! One flag vocabulary, shared by the `lockstep` command and its
//! benchmarks (`lockstep-bench`): durations always with units (`500ms`,
//! `2s`), sizes always with units (`512M`) and shown in binary units
//! ([`human`]), device specs as `key=value` lists, and old spellings refused
//! with a message naming the new one.
//!
//! It owns the words of flags and their messages (clap value parsers,
//! returning `String` as clap's `value_parser` takes them), nothing else: no
//! clap types, no VM, no files.

use std::time::Duration;

/// A duration with its unit: `500ms`, `2s`, `1m 30s` (humantime). A bare
/// number is refused: its unit would be a guess.
pub fn parse_duration(s: &str) -> Result<humantime::Duration, String> {
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("'{s}' has no unit: give one, e.g. {s}ms or {s}s"));
    }
    s.parse::<humantime::Duration>()
        .map_err(|e| format!("invalid duration '{s}': {e} (e.g. 500ms, 2s)"))
}

/// [`parse_duration`], at least `min`.
pub fn duration_at_least(
    min: Duration,
) -> impl Fn(&str) -> Result<humantime::Duration, String> + Clone + Send + Sync + 'static {
    move |s| {
        let d = parse_duration(s)?;
        if *d < min {
            return Err(format!(
                "{s} is too short: at least {}",
                humantime::format_duration(min)
            ));
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
) -> impl Fn(&str) -> Result<T, String> + Clone + Send + Sync + 'static
where
    T: TryFrom<u64>,
{
    move |s| {
        if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
            return Err(format!("'{s}' has no unit: give one, e.g. {s}M or {s}G"));
        }
        let bytes = ::disk::parse_size(s).map_err(|e| format!("invalid size: {e}"))?;
        let name = human;
        if !bytes.is_multiple_of(unit) {
            return Err(format!("{s} is not a whole number of {}", name(unit)));
        }
        let n = bytes / unit;
        if !range.contains(&n) {
            return Err(format!(
                "{s} is out of range: {} to {}",
                name(range.start() * unit),
                name(range.end() * unit)
            ));
        }
        T::try_from(n).map_err(|_| format!("{s} is too large"))
    }
}

/// A device spec's fields, Cloud Hypervisor style: `key=value` pairs
/// separated by commas, each key one of `keys` and given at most once.
/// (A value cannot hold a comma.)
pub fn fields<'a>(
    what: &str,
    s: &'a str,
    keys: &[&str],
) -> Result<Vec<(&'a str, &'a str)>, String> {
    let mut out: Vec<(&str, &str)> = Vec::new();
    for field in s.split(',') {
        let Some((key, value)) = field.split_once('=') else {
            return Err(format!(
                "invalid {what} '{s}': '{field}' is not key=value (keys: {})",
                keys.join(", ")
            ));
        };
        if !keys.contains(&key) {
            return Err(format!(
                "invalid {what} '{s}': unknown key '{key}' (keys: {})",
                keys.join(", ")
            ));
        }
        if out.iter().any(|(k, _)| *k == key) {
            return Err(format!("invalid {what} '{s}': {key}= given twice"));
        }
        out.push((key, value));
    }
    Ok(out)
}

/// `on` or `off` (a device spec's switches).
pub fn on_off(what: &str, key: &str, value: &str) -> Result<bool, String> {
    match value {
        "on" => Ok(true),
        "off" => Ok(false),
        _ => Err(format!(
            "invalid {what}: {key}={value}: expected {key}=on or {key}=off"
        )),
    }
}

/// The value parser of a flag that was renamed: any use is refused with
/// the new spelling (exit 2, as every usage error).
pub fn renamed(
    new: &'static str,
) -> impl Fn(&str) -> Result<String, String> + Clone + Send + Sync + 'static {
    move |_| Err(format!("renamed: give it as {new}"))
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

    #[test]
    fn durations_need_units() {
        assert_eq!(
            *parse_duration("500ms").unwrap(),
            Duration::from_millis(500)
        );
        assert_eq!(*parse_duration("2s").unwrap(), Duration::from_secs(2));
        assert!(parse_duration("500").unwrap_err().contains("500ms"));
        assert!(parse_duration("fast").is_err());
        let at_least = duration_at_least(Duration::from_millis(10));
        assert!(at_least("5ms").unwrap_err().contains("10ms"));
        assert!(at_least("10ms").is_ok());
        let mib = size_in::<u32>(1 << 20, 1..=4096);
        assert_eq!(mib("512M"), Ok(512));
        assert_eq!(mib("1G"), Ok(1024));
        assert!(mib("512").unwrap_err().contains("512M"));
        assert!(mib("1536K").unwrap_err().contains("whole number"));
        assert!(mib("8G").unwrap_err().contains("out of range"));
        assert!(mib("0M").unwrap_err().contains("out of range"));
        let f = fields("disk", "path=/a,readonly=on", &["path", "readonly"]).unwrap();
        assert_eq!(f, [("path", "/a"), ("readonly", "on")]);
        for (bad, says) in [
            ("path=/a,ro", "'ro' is not key=value"),
            ("path=/a,size=1", "unknown key 'size'"),
            ("path=/a,path=/b", "path= given twice"),
        ] {
            let err = fields("disk", bad, &["path", "readonly"]).unwrap_err();
            assert!(err.contains(says), "{bad}: {err}");
        }
        assert_eq!(on_off("disk", "readonly", "on"), Ok(true));
        assert!(on_off("disk", "readonly", "yes")
            .unwrap_err()
            .contains("readonly=on"));
        assert!(renamed("--ft-arbiter")("x")
            .unwrap_err()
            .contains("--ft-arbiter"));
    }
}
