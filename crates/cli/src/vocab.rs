//! One flag vocabulary: durations always with units (`500ms`, `2s`),
//! sizes always with units (`512M`), FT settings under `--ft-`, and old
//! spellings refused with a message naming the new one.

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

/// The value parser of a flag that was renamed: any use is refused with
/// the new spelling (exit 2, as every usage error).
pub fn renamed(
    new: &'static str,
) -> impl Fn(&str) -> Result<String, String> + Clone + Send + Sync + 'static {
    move |_| Err(format!("renamed: give it as {new}"))
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert!(renamed("--ft-arbiter")("x")
            .unwrap_err()
            .contains("--ft-arbiter"));
    }
}
