//! Human sizes ("64M", "10G", "1.5T" is not accepted: whole numbers only).

/// Why a text is not a size; each message quotes the text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SizeError {
    #[error("invalid size {text:?}: expected a number like 64M or 10G")]
    NoNumber { text: String },
    #[error("invalid size {text:?}: number too large")]
    NumberTooLarge { text: String },
    #[error("invalid size {text:?}: unknown unit {unit:?} (use K, M, G, T or P)")]
    UnknownUnit { text: String, unit: String },
    #[error("invalid size {text:?}: too large")]
    TooLarge { text: String },
}

/// Parse a byte count with an optional binary suffix: K, M, G, T, P (powers
/// of 1024, as qemu-img reads them), optionally followed by "iB" or "B".
/// A bare number is bytes.
pub fn parse_size(text: &str) -> Result<u64, SizeError> {
    let t = text.trim();
    let digits_end = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (digits, suffix) = t.split_at(digits_end);
    if digits.is_empty() {
        return Err(SizeError::NoNumber { text: text.into() });
    }
    let number: u64 = digits
        .parse()
        .map_err(|_| SizeError::NumberTooLarge { text: text.into() })?;
    let unit = suffix.trim_start();
    let shift = match unit.to_ascii_uppercase().as_str() {
        "" | "B" => 0,
        "K" | "KB" | "KIB" => 10,
        "M" | "MB" | "MIB" => 20,
        "G" | "GB" | "GIB" => 30,
        "T" | "TB" | "TIB" => 40,
        "P" | "PB" | "PIB" => 50,
        _ => {
            return Err(SizeError::UnknownUnit {
                text: text.into(),
                unit: unit.into(),
            })
        }
    };
    number
        .checked_mul(1u64 << shift)
        .ok_or_else(|| SizeError::TooLarge { text: text.into() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_binary_suffixes() {
        assert_eq!(parse_size("1048576"), Ok(1 << 20));
        assert_eq!(parse_size("64M"), Ok(64 << 20));
        assert_eq!(parse_size("10G"), Ok(10 << 30));
        assert_eq!(parse_size("10g"), Ok(10 << 30));
        assert_eq!(parse_size("512KiB"), Ok(512 << 10));
        assert_eq!(parse_size("2 TB"), Ok(2 << 40));
        assert_eq!(parse_size("1P"), Ok(1 << 50));
    }

    #[test]
    fn rejects_nonsense() {
        for bad in [
            "",
            "M",
            "-1",
            "1.5G",
            "10X",
            "99999999999999999999",
            "16385P",
        ] {
            assert!(parse_size(bad).is_err(), "{bad:?} accepted");
        }
    }
}
