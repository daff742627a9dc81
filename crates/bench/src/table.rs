//! The one table printer of the benchmarks: columns of a fixed least width,
//! each left- or right-aligned, separated by a space (or a wider gap); a
//! cell is text already formatted to its precision (`-` where a figure is
//! missing). A row may hold fewer cells than the table has columns: it
//! ends after its last one.

use std::fmt;

/// How a column lines up its cells.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Align {
    Left,
    Right,
}

/// One column: its least width, alignment and the spaces before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Col {
    width: usize,
    align: Align,
    gap: usize,
}

impl Col {
    /// Left-aligned, at least `width` characters wide.
    pub fn left(width: usize) -> Col {
        Col {
            width,
            align: Align::Left,
            gap: 1,
        }
    }

    /// Right-aligned, at least `width` characters wide.
    pub fn right(width: usize) -> Col {
        Col {
            width,
            align: Align::Right,
            gap: 1,
        }
    }

    /// Free text at the end of a row (no padding).
    pub fn text() -> Col {
        Col::left(0)
    }

    /// `spaces` before this column instead of one.
    pub fn gap(self, spaces: usize) -> Col {
        Col {
            gap: spaces,
            ..self
        }
    }
}

/// A table being built; [`fmt::Display`] gives it a line per row.
#[derive(Debug, Clone)]
pub struct Table {
    cols: Vec<Col>,
    out: String,
}

impl Table {
    pub fn new(cols: impl Into<Vec<Col>>) -> Table {
        Table {
            cols: cols.into(),
            out: String::new(),
        }
    }

    /// Add a row of cells, one per column from the first. More cells than
    /// columns are a programming error: the extra ones are laid out as one
    /// space and the text.
    pub fn row<S: AsRef<str>>(&mut self, cells: impl IntoIterator<Item = S>) -> &mut Table {
        for (i, cell) in cells.into_iter().enumerate() {
            let cell = cell.as_ref();
            let col = self.cols.get(i).copied().unwrap_or(Col::text());
            if i > 0 {
                self.out.extend(std::iter::repeat_n(' ', col.gap));
            }
            let pad = col.width.saturating_sub(cell.chars().count());
            let spaces = std::iter::repeat_n(' ', pad);
            match col.align {
                Align::Left => {
                    self.out.push_str(cell);
                    self.out.extend(spaces);
                }
                Align::Right => {
                    self.out.extend(spaces);
                    self.out.push_str(cell);
                }
            }
        }
        self.out.push('\n');
        self
    }
}

impl fmt::Display for Table {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.out)
    }
}

/// `value` with `decimals` digits after the point (as `{:.N}` shows it).
pub fn num(value: f64, decimals: usize) -> String {
    format!("{value:.decimals$}")
}

/// The throughput table of `bench disk` and `bench net`: per measurement
/// (`what` names the first column) lockstep's MiB/s, QEMU's and their
/// ratio (`-` without QEMU), then both wall times in seconds.
pub fn rate_table(
    what: &str,
    ours: impl IntoIterator<Item = (String, f64)>,
    qemu: Option<Vec<f64>>,
    ours_wall: f64,
    qemu_wall: Option<f64>,
) -> Table {
    let mut t = Table::new([Col::left(14), Col::right(17), Col::right(13), Col::right(8)]);
    t.row([what, "lockstep (MiB/s)", "qemu (MiB/s)", "ratio"]);
    for (i, (name, a)) in ours.into_iter().enumerate() {
        match qemu.as_ref().and_then(|q| q.get(i)) {
            Some(&b) => t.row([
                name,
                num(a, 1),
                num(b, 1),
                num(crate::guest::ratio(a, b), 2),
            ]),
            None => t.row([name, num(a, 1), "-".into(), "-".into()]),
        };
    }
    match qemu_wall {
        Some(q) => t.row(["wall (s)".into(), num(ours_wall, 1), num(q, 1)]),
        None => t.row(["wall (s)".into(), num(ours_wall, 1)]),
    };
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cells_line_up_as_format_widths_would() {
        let mut t = Table::new([
            Col::left(6),
            Col::right(8),
            Col::right(5).gap(3),
            Col::text().gap(2),
        ]);
        t.row(["name", "value", "x", "note"]);
        t.row(["a", &num(1.23456, 3), "-", "free text"]);
        t.row(["longer-than-six".to_string(), num(2.0, 1)]);
        let want = format!(
            "{:<6} {:>8}   {:>5}  {}\n{:<6} {:>8.3}   {:>5}  {}\n{:<6} {:>8.1}\n",
            "name", "value", "x", "note", "a", 1.23456, "-", "free text", "longer-than-six", 2.0
        );
        assert_eq!(t.to_string(), want);
    }
}
