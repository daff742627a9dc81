//! The deb822 control format of Release and Packages files: stanzas of `Field: value` lines,
//! continuation lines starting with white space, stanzas separated by blank lines.

/// One stanza; field names compare case-insensitively, as in Debian's tools.
#[derive(Debug, Default)]
pub struct Stanza<'a> {
    fields: Vec<(&'a str, String)>,
}

impl<'a> Stanza<'a> {
    /// The value of a field; continuation lines are joined with `\n`, the first line trimmed.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(field, _)| field.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }

    /// The first stanza of a document, if it has any field.
    pub fn parse_first(text: &'a str) -> Option<Self> {
        stanzas(text).next()
    }

    fn push_line(&mut self, line: &'a str) {
        if line.starts_with([' ', '\t']) {
            // A continuation line extends the last field; one before any field is ignored.
            if let Some((_, value)) = self.fields.last_mut() {
                value.push('\n');
                value.push_str(line.trim());
            }
        } else if let Some((name, value)) = line.split_once(':') {
            self.fields.push((name.trim(), value.trim().to_string()));
        }
        // A line with neither shape carries nothing we could use; deb822 readers skip it.
    }
}

/// Iterates over the stanzas of a document.
pub fn stanzas(text: &str) -> impl Iterator<Item = Stanza<'_>> {
    let mut lines = text.lines().peekable();
    std::iter::from_fn(move || {
        while lines.peek().is_some_and(|l| l.trim().is_empty()) {
            lines.next();
        }
        let mut stanza = Stanza::default();
        while let Some(line) = lines.next_if(|l| !l.trim().is_empty()) {
            stanza.push_line(line);
        }
        (!stanza.fields.is_empty()).then_some(stanza)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_stanzas_and_joins_continuations() {
        let text =
            "\n\nPackage: a\nDescription: short\n more\n  indented\nsize: 3\n\n \nPackage: b\n";
        let all: Vec<_> = stanzas(text).collect();
        assert_eq!(all.len(), 2);
        assert_eq!(all[0].get("package"), Some("a"));
        assert_eq!(all[0].get("Description"), Some("short\nmore\nindented"));
        assert_eq!(all[0].get("Size"), Some("3"));
        assert_eq!(all[1].get("Package"), Some("b"));
        assert_eq!(all[1].get("Size"), None);
    }

    #[test]
    fn value_may_contain_colons() {
        let s = Stanza::parse_first("Changelogs: https://x/@CHANGEPATH@\n").unwrap();
        assert_eq!(s.get("Changelogs"), Some("https://x/@CHANGEPATH@"));
    }
}
