//! A plain-text table: columns padded to their widest cell, two spaces apart, numbers
//! right-aligned. Output is pure ASCII layout around the cells (no box drawing), so it
//! pastes cleanly into tickets, chat and Markdown code blocks. Cells may hold ANSI
//! colour: it takes no room.

use std::fmt::Write;
use std::io;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Align {
    Left,
    Right,
}

#[derive(Clone, Debug, Default)]
pub struct Table {
    headers: Vec<(String, Align)>,
    /// The rows, in runs: one as rows are added, more where tables made apart (on
    /// several cores) were put one after the other ([`Table::append`]) without
    /// copying their text.
    runs: Vec<Run>,
}

/// Rows of a [`Table`]: every cell's text one after the other (a large table is a few
/// allocations, not one a cell); `ends[k]` is where cell `k` ends, `widths[k]` the
/// room it takes, `row_ends[r]` where row `r`'s cells end in `ends`.
#[derive(Clone, Debug, Default)]
struct Run {
    text: String,
    ends: Vec<u32>,
    widths: Vec<u32>,
    row_ends: Vec<u32>,
}

impl Run {
    /// Each row's cells, as indices into `ends` and `widths`.
    fn row_ranges(&self) -> impl Iterator<Item = std::ops::Range<usize>> + '_ {
        let mut from = 0;
        self.row_ends.iter().map(move |&to| {
            let r = from..to as usize;
            from = to as usize;
            r
        })
    }

    /// Cell `k`'s text and the room it takes.
    fn cell(&self, k: usize) -> (&str, usize) {
        let a = if k == 0 { 0 } else { self.ends[k - 1] as usize };
        (
            &self.text[a..self.ends[k] as usize],
            self.widths[k] as usize,
        )
    }

    /// Each row's cells, with the room each takes.
    fn rows(&self) -> impl Iterator<Item = impl Iterator<Item = (&str, usize)>> {
        self.row_ranges().map(|r| r.map(|k| self.cell(k)))
    }
}

impl Table {
    pub fn new(headers: &[(&str, Align)]) -> Table {
        Table {
            headers: headers.iter().map(|(h, a)| (h.to_string(), *a)).collect(),
            ..Table::default()
        }
    }

    pub fn row(&mut self, cells: Vec<String>) {
        let len: usize = cells.iter().map(String::len).sum();
        // A run's offsets are 4 bytes: past 4 GiB of text, rows go on in a new run.
        let full = |r: &Run| r.text.len() + len > u32::MAX as usize;
        if self.runs.last().is_none_or(full) {
            self.runs.push(Run::default());
        }
        let run = self.runs.last_mut().expect("a run was pushed");
        for c in &cells {
            run.text.push_str(c);
            run.ends.push(run.text.len() as u32);
            run.widths.push(display_width(c) as u32);
        }
        run.row_ends.push(run.ends.len() as u32);
    }

    pub fn is_empty(&self) -> bool {
        self.runs.iter().all(|r| r.row_ends.is_empty())
    }

    /// Puts the rows of `parts` (tables of the same columns) after this table's, one
    /// part after the other, without copying their text.
    pub fn append(&mut self, parts: impl IntoIterator<Item = Table>) {
        self.runs.extend(parts.into_iter().flat_map(|p| p.runs));
    }

    /// The column headers.
    pub fn headers(&self) -> impl Iterator<Item = &str> {
        self.headers.iter().map(|(h, _)| h.as_str())
    }

    /// The rows, as given.
    pub fn rows(&self) -> impl Iterator<Item = Vec<&str>> + '_ {
        (self.runs.iter()).flat_map(|run| run.rows().map(|r| r.map(|(c, _)| c).collect()))
    }

    /// Renders with every line prefixed by `indent`; trailing spaces are trimmed.
    pub fn render(&self, indent: &str) -> String {
        self.render_within(indent, None)
    }

    /// Renders as [`Table::render`] does when the lines fit in `columns` (or no width is
    /// given); otherwise one block per row, its first cell on a line and each other
    /// non-empty cell below it as `header: cell`, so that a narrow terminal reads it
    /// without wrapped rows.
    pub fn render_within(&self, indent: &str, columns: Option<usize>) -> String {
        let wide = self.render_aligned(indent);
        let fits = |w: usize| wide.lines().all(|l| display_width(l) <= w);
        match columns {
            Some(w) if !fits(w) => self.render_stacked(indent),
            _ => wide,
        }
    }

    fn render_stacked(&self, indent: &str) -> String {
        let mut out = String::new();
        for r in self.rows() {
            let mut cells = r.into_iter().zip(&self.headers);
            if let Some((first, _)) = cells.next() {
                let _ = writeln!(out, "{indent}{first}");
            }
            for (c, (h, _)) in cells.filter(|(c, _)| !c.is_empty()) {
                let _ = writeln!(out, "{indent}    {h}: {c}");
            }
        }
        out
    }

    fn render_aligned(&self, indent: &str) -> String {
        let cells: usize = self
            .runs
            .iter()
            .map(|r| r.text.len() + r.ends.len() * 2)
            .sum();
        let mut out = String::with_capacity(cells);
        let _ = self.aligned_lines(indent, |line| {
            out.push_str(line);
            Ok(())
        });
        out
    }

    /// Writes what [`Table::render`] gives to `out` a line at a time, without the
    /// whole text in memory (a table of a million connections is a hundred MB).
    pub fn write(&self, indent: &str, out: &mut dyn io::Write) -> io::Result<()> {
        self.aligned_lines(indent, |line| out.write_all(line.as_bytes()))
    }

    /// Each line of the aligned rendering, newline included, to `emit`, made in one
    /// buffer.
    fn aligned_lines(
        &self,
        indent: &str,
        mut emit: impl FnMut(&str) -> io::Result<()>,
    ) -> io::Result<()> {
        let n = self.headers.len();
        let heads: Vec<(&str, usize)> = (self.headers.iter())
            .map(|(h, _)| (h.as_str(), display_width(h)))
            .collect();
        let mut width: Vec<usize> = heads.iter().map(|&(_, w)| w).collect();
        for row in self.runs.iter().flat_map(Run::rows) {
            for (i, (_, w)) in row.enumerate().take(n) {
                width[i] = width[i].max(w);
            }
        }
        let mut out = String::new();
        let mut line = |cells: &mut dyn Iterator<Item = (&str, usize)>| {
            out.clear();
            out.push_str(indent);
            for (i, (c, w)) in cells.enumerate().take(n) {
                let pad = width[i].saturating_sub(w);
                if i > 0 {
                    out.push_str("  ");
                }
                match self.headers[i].1 {
                    Align::Left => {
                        out.push_str(c);
                        out.extend(std::iter::repeat_n(' ', pad));
                    }
                    Align::Right => {
                        out.extend(std::iter::repeat_n(' ', pad));
                        out.push_str(c);
                    }
                }
            }
            // Trailing spaces trimmed (the indent's too, on a line with nothing else).
            out.truncate(out.trim_end().len());
            out.push('\n');
            emit(&out)
        };
        line(&mut heads.iter().copied())?;
        for mut row in self.runs.iter().flat_map(Run::rows) {
            line(&mut row)?;
        }
        Ok(())
    }
}

/// The room text takes on screen: its characters, less any ANSI escapes.
pub fn display_width(text: &str) -> usize {
    if text.contains('\x1b') {
        anstream::adapter::strip_str(text)
            .map(|s| s.chars().count())
            .sum()
    } else if text.is_ascii() {
        text.len()
    } else {
        text.chars().count()
    }
}

/// `text` with every line longer than `columns` broken at spaces, the rest of it
/// indented four more than the line was. A word longer than the room left stays whole.
pub fn wrap(text: &str, columns: usize) -> String {
    let mut out = String::new();
    for line in text.split_inclusive('\n') {
        let body = line.trim_end_matches('\n');
        if display_width(body) <= columns {
            out.push_str(line);
            continue;
        }
        let lead = body.len() - body.trim_start_matches(' ').len();
        let next = " ".repeat((lead + 4).min(columns / 2));
        let mut cur = " ".repeat(lead);
        let mut cur_w = lead;
        let mut empty = true;
        for word in body[lead..].split(' ') {
            let w = display_width(word);
            if !empty && cur_w + 1 + w > columns {
                out.push_str(cur.trim_end());
                out.push('\n');
                cur = next.clone();
                cur_w = next.len();
                empty = true;
            }
            if !empty {
                cur.push(' ');
                cur_w += 1;
            }
            cur.push_str(word);
            cur_w += w;
            empty = false;
        }
        out.push_str(cur.trim_end());
        if line.ends_with('\n') {
            out.push('\n');
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_table_too_wide_for_the_terminal_is_stacked() {
        let mut t = Table::new(&[
            ("point", Align::Left),
            ("source", Align::Left),
            ("n", Align::Right),
        ]);
        t.row(vec![
            "docker0".into(),
            "samples/a/docker0.pcap".into(),
            "5".into(),
        ]);
        t.row(vec!["eth0".into(), String::new(), "12".into()]);
        assert_eq!(t.render_within("", Some(80)), t.render(""));
        assert_eq!(
            t.render_within("", Some(20)),
            "docker0\n    source: samples/a/docker0.pcap\n    n: 5\neth0\n    n: 12\n"
        );
    }

    #[test]
    fn cells_keep_their_text_and_align_by_the_room_they_take() {
        let mut t = Table::new(&[("a", Align::Left), ("bb", Align::Right), ("c", Align::Left)]);
        t.row(vec!["é→".into(), "\x1b[31m7\x1b[0m".into(), "x".into()]);
        t.row(vec!["long".into(), "12".into()]);
        t.row(vec![String::new(), String::new(), String::new()]);
        assert!(!t.is_empty());
        assert_eq!(
            t.rows().collect::<Vec<_>>(),
            [
                vec!["é→", "\x1b[31m7\x1b[0m", "x"],
                vec!["long", "12"],
                vec!["", "", ""]
            ]
        );
        // Two characters, an escape that takes no room, a short row, an empty one.
        assert_eq!(
            t.render("  "),
            "  a     bb  c\n  é→     \x1b[31m7\x1b[0m  x\n  long  12\n\n"
        );
    }

    #[test]
    fn long_lines_wrap_at_spaces_under_their_indent() {
        let text = "  one two three four five six\nshort\n";
        assert_eq!(
            wrap(text, 12),
            "  one two\n      three\n      four\n      five\n      six\nshort\n"
        );
        assert_eq!(
            wrap("averyveryverylongword x", 8),
            "averyveryverylongword\n    x"
        );
        assert_eq!(wrap(text, 80), text);
    }

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
    fn tables_put_one_after_the_other_read_as_one_and_write_as_they_render() {
        let cols = [
            ("name", Align::Left),
            ("n", Align::Right),
            ("note", Align::Left),
        ];
        let rows: Vec<Vec<String>> = (0..10)
            .map(|i| {
                vec![
                    format!("if{}", "x".repeat(i)),
                    (i * i).to_string(),
                    String::new(),
                ]
            })
            .collect();
        let mut whole = Table::new(&cols);
        rows.iter().for_each(|r| whole.row(r.clone()));
        // Parts of 0 to 4 rows, the widest cells in different parts.
        let parts: Vec<Table> = [0, 3, 1, 0, 4, 2]
            .iter()
            .scan(0, |at, &n| {
                let mut t = Table::new(&cols);
                rows[*at..*at + n].iter().for_each(|r| t.row(r.clone()));
                *at += n;
                Some(t)
            })
            .collect();
        let mut joined = Table::new(&cols);
        joined.append(parts);
        assert_eq!(
            joined.rows().collect::<Vec<_>>(),
            whole.rows().collect::<Vec<_>>()
        );
        for width in [None, Some(12), Some(80)] {
            assert_eq!(
                joined.render_within("  ", width),
                whole.render_within("  ", width)
            );
        }
        let mut written = Vec::new();
        joined.write("  ", &mut written).unwrap();
        assert_eq!(String::from_utf8(written).unwrap(), whole.render("  "));
        let mut none = Table::new(&cols);
        none.append(Vec::new());
        assert!(none.is_empty());
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
