//! `natcheck diff BASELINE.json CURRENT.json`: the findings and translations that are
//! new, gone or changed between two `correlate --format json` reports, for regression
//! evidence in a postmortem.
//!
//! Exit status: 2 when a report cannot be read, else 1 when a new finding (or one whose
//! severity rose) trips `--fail-on` (default: `error`), else 0.

use super::{ExitStatus, Formats, OutputArgs};
use crate::audit::FailOn;
use crate::diff::{self, Report};
use crate::report::diff::{self as words, Inputs};

/// Output formats of `diff`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputFormat {
    /// Plain text for terminals and tickets.
    Table,
    /// One JSON document (`natcheck.diff/1`, see docs/json-schema.md).
    Json,
    /// Markdown for a postmortem's before/after section.
    Markdown,
}

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The earlier report (`natcheck correlate --format json`), `-` for standard input.
    #[arg(value_name = "BASELINE.json")]
    pub baseline: String,

    /// The report to compare with it.
    #[arg(value_name = "CURRENT.json")]
    pub current: String,

    #[command(flatten)]
    pub output: OutputArgs<OutputFormat>,

    /// New findings that make the run exit 1 (or findings whose severity rose to it):
    /// severities (`error`, `warning`, `info`: that severity or worse) and finding
    /// codes, comma-separated; `none` never fails.
    #[arg(long, value_name = "SEVERITY|CODE,...", default_value = "error")]
    pub fail_on: FailOn,
}

fn read(path: &str) -> anyhow::Result<Report> {
    let text = crate::input::read_text(path)?;
    Report::parse(path, &text)
}

impl Formats for OutputFormat {}

pub fn run(args: &Args) -> anyhow::Result<ExitStatus> {
    let format = args.output.format()?;
    anyhow::ensure!(
        !(args.baseline == "-" && args.current == "-"),
        "standard input (-) can be read only once"
    );
    let mut out = args.output.open(&format)?;
    let base = read(&args.baseline)?;
    let cur = read(&args.current)?;
    let d = diff::diff(&base, &cur);
    let names = Inputs {
        baseline: &args.baseline,
        current: &args.current,
    };
    match format {
        OutputFormat::Table => words::table(&d, &names, &mut out)?,
        OutputFormat::Json => words::json(&d, &names, &mut out)?,
        OutputFormat::Markdown => words::markdown(&d, &names, &mut out)?,
    }
    out.finish()?;
    Ok(if d.fails(&args.fail_on) {
        ExitStatus::Findings
    } else {
        ExitStatus::Clean
    })
}
