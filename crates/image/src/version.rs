//! Debian version ordering (`[epoch:]upstream[-revision]`), as dpkg defines it in
//! deb-version(7).

use std::cmp::Ordering;

/// Compares two Debian version strings.
pub fn compare_versions(a: &str, b: &str) -> Ordering {
    let (ea, ua, ra) = split(a);
    let (eb, ub, rb) = split(b);
    ea.cmp(&eb)
        .then_with(|| compare_part(ua, ub))
        .then_with(|| compare_part(ra, rb))
}

/// Splits into (epoch, upstream, revision); a missing or non-numeric epoch counts as 0.
fn split(v: &str) -> (u64, &str, &str) {
    let (epoch, rest) = match v.split_once(':') {
        Some((e, rest)) => (e.parse().unwrap_or(0), rest),
        None => (0, v),
    };
    match rest.rsplit_once('-') {
        Some((upstream, revision)) => (epoch, upstream, revision),
        None => (epoch, rest, ""),
    }
}

/// Alternates non-digit runs (compared by `char_weight`) and digit runs (compared as numbers).
fn compare_part(a: &str, b: &str) -> Ordering {
    let (mut a, mut b) = (a.as_bytes(), b.as_bytes());
    while !a.is_empty() || !b.is_empty() {
        let (a_text, a_rest) = split_run(a, |c| !c.is_ascii_digit());
        let (b_text, b_rest) = split_run(b, |c| !c.is_ascii_digit());
        let ord = compare_text(a_text, b_text);
        if ord != Ordering::Equal {
            return ord;
        }
        let (a_num, a_rest) = split_run(a_rest, |c| c.is_ascii_digit());
        let (b_num, b_rest) = split_run(b_rest, |c| c.is_ascii_digit());
        let ord = compare_number(a_num, b_num);
        if ord != Ordering::Equal {
            return ord;
        }
        (a, b) = (a_rest, b_rest);
    }
    Ordering::Equal
}

fn split_run(s: &[u8], pred: impl Fn(u8) -> bool) -> (&[u8], &[u8]) {
    let end = s.iter().position(|&c| !pred(c)).unwrap_or(s.len());
    s.split_at(end)
}

/// `~` sorts before everything (even the end), then the end, letters, other characters.
fn char_weight(c: Option<&u8>) -> i32 {
    match c {
        Some(b'~') => -1,
        None => 0,
        Some(&c) if c.is_ascii_alphabetic() => i32::from(c),
        Some(&c) => i32::from(c) + 256,
    }
}

fn compare_text(a: &[u8], b: &[u8]) -> Ordering {
    (0..a.len().max(b.len()))
        .map(|i| char_weight(a.get(i)).cmp(&char_weight(b.get(i))))
        .find(|o| *o != Ordering::Equal)
        .unwrap_or(Ordering::Equal)
}

fn compare_number(a: &[u8], b: &[u8]) -> Ordering {
    let trim = |s: &[u8]| -> Vec<u8> { s.iter().copied().skip_while(|&c| c == b'0').collect() };
    let (a, b) = (trim(a), trim(b));
    a.len().cmp(&b.len()).then_with(|| a.cmp(&b))
}

#[cfg(test)]
mod tests {
    use super::*;
    use Ordering::*;

    #[test]
    fn orders_like_dpkg() {
        // Each pair checked against `dpkg --compare-versions`.
        let cases = [
            ("1.0", "1.0", Equal),
            ("1.0", "1.00", Equal),
            ("1.0~rc1", "1.0", Less),
            ("1.0~rc1", "1.0~rc1~1", Greater),
            ("1.0", "1.0+b1", Less),
            ("1.0a", "1.0+", Less),
            ("6.12.9-1", "6.12.10-1", Less),
            ("6.12.117-1", "6.12.107-1", Greater),
            ("1:1.0", "2.0", Greater),
            ("1:1.37.0-6", "1:1.37.0-6+b9", Less),
            ("0.120+deb8u2", "0.147", Less),
            ("1.0-1", "1.0", Greater),
            ("2.30-1ubuntu1", "2.30-1", Greater),
        ];
        for (a, b, want) in cases {
            assert_eq!(compare_versions(a, b), want, "{a} vs {b}");
            assert_eq!(compare_versions(b, a), want.reverse(), "{b} vs {a}");
        }
    }
}
