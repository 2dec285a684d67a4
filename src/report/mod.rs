//! report: turns analysis results into what people read and scripts parse, and owns
//! every word of it. The correlation report is one [`Model`] built once, rendered by
//! one [`Render`] implementation per format (the table in `text/`, `json.rs` with
//! `pretty.rs`, its serializer of serde_json's pretty layout, `markdown.rs`, `html/`
//! with its ladder diagrams, `frame.rs` for CSV/NDJSON/Parquet, whose tables
//! `tables.rs` also writes into a directory for `--tables`; `sections.rs` holds what
//! Markdown and HTML both show); findings get their words from `explain/`, rules
//! theirs (and the `explain` command's trace) from `rules.rs`, and every tuple, time
//! and duration is written by `fmt.rs`. `conntrack.rs` and
//! `flows.rs` render those commands. Nothing here analyses anything.

pub mod conntrack;
pub mod diff;
pub mod explain;
pub mod flows;
pub mod fmt;
#[cfg(feature = "frames")]
pub mod frame;
pub mod html;
pub mod json;
pub mod markdown;
pub mod model;
mod pretty;
pub mod rules;
pub mod sections;
pub mod table;
#[cfg(feature = "frames")]
pub mod tables;
pub mod text;

pub use model::Model;

/// One output format of the correlation report.
pub trait Render {
    /// Writes the whole report for `m` to `out`.
    fn render(&self, m: &Model, out: &mut dyn std::io::Write) -> anyhow::Result<()>;
}

/// The correlation report's formats.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Table,
    Json,
    Markdown,
    Html,
    #[cfg(feature = "frames")]
    Frame(frame::FrameFormat),
}

impl Format {
    /// Whether the format is binary (refused on a terminal).
    pub fn is_binary(self) -> bool {
        #[cfg(feature = "frames")]
        if self == Format::Frame(frame::FrameFormat::Parquet) {
            return true;
        }
        false
    }

    /// The renderer of this format.
    pub fn renderer(self) -> Box<dyn Render> {
        match self {
            Format::Table => Box::new(Selected(text::Text(text::View::default()))),
            Format::Json => Box::new(json::Json),
            Format::Markdown => Box::new(markdown::Markdown),
            Format::Html => Box::new(html::HtmlReport),
            #[cfg(feature = "frames")]
            Format::Frame(f) => Box::new(frame::Frame(f)),
        }
    }
}

/// A report that opens, when `--filter` cut it, with the line saying so: the table,
/// whose own first line is the findings' count.
pub struct Selected<R>(pub R);

impl<R: Render> Render for Selected<R> {
    fn render(&self, m: &Model, out: &mut dyn std::io::Write) -> anyhow::Result<()> {
        if let Some(s) = &m.selection {
            writeln!(out, "{}\n", s.line())?;
        }
        self.0.render(m, out)
    }
}

/// The text `part` makes for each of `n` connections, in order, written a run of
/// connections at a time, each run made on every core.
pub(crate) fn in_runs(
    n: usize,
    out: &mut dyn std::io::Write,
    part: impl Fn(usize, &mut String) + Sync,
) -> std::io::Result<()> {
    use rayon::prelude::*;
    const RUN: usize = 4096;
    for start in (0..n).step_by(RUN) {
        let texts: Vec<String> = (start..n.min(start + RUN))
            .into_par_iter()
            .map(|i| {
                let mut s = String::new();
                part(i, &mut s);
                s
            })
            .collect();
        for t in texts {
            out.write_all(t.as_bytes())?;
        }
    }
    Ok(())
}
