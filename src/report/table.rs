//! A plain-text table: columns padded to their widest cell, two spaces apart, numbers
//! right-aligned. Output is pure ASCII layout around the cells (no box drawing), so it
//! pastes cleanly into tickets, chat and Markdown code blocks. Cells may hold ANSI
//! colour: it takes no room.

use std::fmt::Write;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Align {
    Left,
    Right,
}

#[derive(Clone, Debug, Default)]
pub struct Table {
    headers: Vec<(String, Align)>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(headers: &[(&str, Align)]) -> Table {
        Table {
            headers: headers.iter().map(|(h, a)| (h.to_string(), *a)).collect(),
            rows: Vec::new(),
        }
    }

    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// The column headers.
    pub fn headers(&self) -> impl Iterator<Item = &str> {
        self.headers.iter().map(|(h, _)| h.as_str())
    }

    /// The rows, as given.
    pub fn rows(&self) -> &[Vec<String>] {
        &self.rows
    }

    /// The room a cell takes on screen: its characters, less any ANSI escapes.
    fn width(cell: &str) -> usize {
        if cell.contains('\x1b') {
            anstream::adapter::strip_str(cell)
                .map(|s| s.chars().count())
                .sum()
        } else {
            cell.chars().count()
        }
    }

    /// Renders with every line prefixed by `indent`; trailing spaces are trimmed.
    pub fn render(&self, indent: &str) -> String {
        let n = self.headers.len();
        let mut width: Vec<usize> = self.headers.iter().map(|(h, _)| Self::width(h)).collect();
        for r in &self.rows {
            for (i, c) in r.iter().enumerate().take(n) {
                width[i] = width[i].max(Self::width(c));
            }
        }
        let mut out = String::new();
        let mut line = |cells: &mut dyn Iterator<Item = &str>| {
            let mut l = String::from(indent);
            for (i, c) in cells.enumerate().take(n) {
                let pad = width[i].saturating_sub(Self::width(c));
                if i > 0 {
                    l.push_str("  ");
                }
                match self.headers[i].1 {
                    Align::Left => {
                        l.push_str(c);
                        l.extend(std::iter::repeat_n(' ', pad));
                    }
                    Align::Right => {
                        l.extend(std::iter::repeat_n(' ', pad));
                        l.push_str(c);
                    }
                }
            }
            let _ = writeln!(out, "{}", l.trim_end());
        };
        line(&mut self.headers.iter().map(|(h, _)| h.as_str()));
        for r in &self.rows {
            line(&mut r.iter().map(String::as_str));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aligns_columns() {
        let mut t = Table::new(&[("name", Align::Left), ("n", Align::Right)]);
        t.row(vec!["docker0".into(), "5".into()]);
        t.row(vec!["eth0".into(), "12".into()]);
        assert_eq!(
            t.render("  "),
            "  name      n\n  docker0   5\n  eth0     12\n"
        );
    }

    #[test]
    fn colour_takes_no_room() {
        let mut t = Table::new(&[("name", Align::Left), ("n", Align::Right)]);
        t.row(vec!["\x1b[1mdocker0\x1b[0m".into(), "5".into()]);
        t.row(vec!["eth0".into(), "12".into()]);
        assert_eq!(
            t.render(""),
            "name      n\n\x1b[1mdocker0\x1b[0m   5\neth0     12\n"
        );
    }
}
