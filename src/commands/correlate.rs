//! `natcheck correlate CAPTURE...`: the same connections at every capture point, what
//! NAT did between them, and what went wrong (findings), from the captures alone.
//!
//! Exit status: 2 when an input had problems (warnings; the evidence is incomplete),
//! else 1 when a finding trips `--fail-on` (default: any `error` finding), else 0.

use std::fmt::Write as _;
use std::io::{self, Write};
use std::time::Duration;

use super::{print_warnings, CaptureArgs, ExitStatus};
use crate::audit::{self, Audit, Cidr, FailOn, Finding};
use crate::conntrack;
use crate::correlate::{self, Config, Correlation};
use crate::diag::Warning;
use crate::report::time::{rfc3339_ns, secs};
use crate::report::{json, markdown, text};

/// Output formats of `correlate`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputFormat {
    /// Aligned plain text for terminals.
    Table,
    /// One JSON document (see docs/json-schema.md).
    Json,
    /// Markdown for incident tickets: summary, inputs, findings with evidence, connections.
    Markdown,
    /// One CSV row per connection (columns in docs/json-schema.md).
    #[cfg(feature = "frames")]
    Csv,
    /// One JSON object per line and connection, the CSV's columns.
    #[cfg(feature = "frames")]
    Ndjson,
    /// The CSV's columns as Apache Parquet (binary: redirect standard output).
    #[cfg(feature = "frames")]
    Parquet,
}

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    pub captures: CaptureArgs,

    /// Output format.
    #[arg(long, value_enum, default_value = "table")]
    pub format: OutputFormat,

    /// How far apart (after clock correction) two sightings of one packet may be.
    #[arg(long, value_name = "DURATION", default_value = "1s", value_parser = humantime::parse_duration)]
    pub window: Duration,

    /// Inside prefixes (container, pod and bridge networks), repeatable or
    /// comma-separated. Default: learned from the translations on the wire (each
    /// translated inside address stands for its /24 or /64).
    #[arg(long, value_name = "CIDR", value_delimiter = ',')]
    pub inside: Vec<Cidr>,

    /// Findings that make the run exit 1: severities (`error`, `warning`, `info`: that
    /// severity or worse) and finding codes (`lost`, `leak`, ...), comma-separated;
    /// `none` never fails on findings. Input problems always exit 2.
    #[arg(long, value_name = "SEVERITY|CODE,...", default_value = "error")]
    pub fail_on: FailOn,

    /// conntrack output taken on the NAT host while the captures ran, checked against
    /// the wire: `conntrack -L [-o extended,id]`, /proc/net/nf_conntrack, or a
    /// `conntrack -E` event log. Repeatable (several snapshots over time, event logs).
    #[arg(long = "conntrack", value_name = "FILE")]
    pub conntrack: Vec<String>,
}

pub fn run(args: &Args) -> anyhow::Result<ExitStatus> {
    let opts = args.captures.read_options()?;
    let window_ns = i64::try_from(args.window.as_nanos()).unwrap_or(i64::MAX);
    anyhow::ensure!(window_ns > 0, "--window must be greater than zero");
    let dumps = args
        .conntrack
        .iter()
        .map(|f| conntrack::read_path(f))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let c = correlate::run(&args.captures.captures, &opts, Config { window_ns });
    let found = audit::audit(
        &c,
        &audit::Config {
            inside: args.inside.clone(),
            conntrack: dumps
                .iter()
                .flat_map(audit::ct::Snapshot::from_dump)
                .collect(),
        },
    );
    let warnings: Vec<&Warning> = c
        .inputs
        .iter()
        .flat_map(|i| &i.warnings)
        .chain(dumps.iter().flat_map(|d| &d.warnings))
        .collect();
    let mut out = io::BufWriter::new(io::stdout().lock());
    match args.format {
        OutputFormat::Json => {
            let mut doc = json::build::<&Finding>(
                &c,
                warnings.clone(),
                found.findings.iter().collect(),
                |i| found.of_connection(i).collect(),
                found.severities(),
            );
            doc.conntrack = &found.conntrack;
            serde_json::to_writer_pretty(&mut out, &doc)?;
            writeln!(out)?;
        }
        OutputFormat::Table => {
            write!(out, "{}", findings_text(&c, &found))?;
            write!(
                out,
                "{}",
                text::render(&c, |i| found
                    .of_connection(i)
                    .map(|f| format!("finding: {} {}: {}", f.severity, f.code, f.message))
                    .collect())
            )?;
        }
        #[cfg(feature = "frames")]
        OutputFormat::Csv | OutputFormat::Ndjson | OutputFormat::Parquet => {
            use crate::report::frame::{self, FrameFormat};
            let format = match args.format {
                OutputFormat::Csv => FrameFormat::Csv,
                OutputFormat::Ndjson => FrameFormat::Ndjson,
                _ => FrameFormat::Parquet,
            };
            if format == FrameFormat::Parquet && std::io::IsTerminal::is_terminal(&io::stdout()) {
                anyhow::bail!(
                    "--format parquet writes binary data: redirect standard output to a file"
                );
            }
            let counts: Vec<u32> = (0..c.connections.len())
                .map(|i| found.of_connection(i).count() as u32)
                .collect();
            let mut df = frame::connections(&c, &counts)?;
            frame::write(&mut df, format, &mut out)?;
        }
        OutputFormat::Markdown => {
            let status = status(&found, &args.fail_on, !warnings.is_empty());
            write!(
                out,
                "{}",
                markdown::render(
                    &c,
                    &found,
                    &warnings,
                    &markdown::RunInfo {
                        fail_on: &fail_on_text(&args.fail_on),
                        exit_status: status as u8,
                    }
                )
            )?;
        }
    }
    out.flush()?;
    drop(out);
    let had_warnings = print_warnings(warnings);
    Ok(status(&found, &args.fail_on, had_warnings))
}

fn status(found: &Audit, fail_on: &FailOn, had_warnings: bool) -> ExitStatus {
    if had_warnings {
        ExitStatus::Error
    } else if found.fails(fail_on) {
        ExitStatus::Findings
    } else {
        ExitStatus::Clean
    }
}

/// `--fail-on` as the user would write it.
fn fail_on_text(f: &FailOn) -> String {
    let mut parts: Vec<String> = f.severity.iter().map(|s| s.to_string()).collect();
    parts.extend(f.codes.iter().map(|c| c.to_string()));
    if parts.is_empty() {
        "none".into()
    } else {
        parts.join(",")
    }
}

/// The findings section at the top of the table report.
fn findings_text(c: &Correlation, found: &Audit) -> String {
    let mut out = String::new();
    let sev = found.severities();
    let count = |k: &str| sev.get(k).copied().unwrap_or(0);
    let _ = writeln!(
        out,
        "findings: {} error{}, {} warning{}, {} info",
        count("error"),
        if count("error") == 1 { "" } else { "s" },
        count("warning"),
        if count("warning") == 1 { "" } else { "s" },
        count("info")
    );
    for w in &found.conntrack {
        let _ = writeln!(out, "conntrack: {}", witness_line(w));
    }
    for f in &found.findings {
        let when = match (f.first_ns, f.last_ns) {
            (Some(a), Some(b)) if b > a => format!("{}  +{}", rfc3339_ns(a), secs(b - a)),
            (Some(a), _) => rfc3339_ns(a),
            _ => "-".into(),
        };
        let _ = writeln!(
            out,
            "\n[{}] {}  {}  {}  {}  {} packets",
            f.severity,
            f.code,
            f.connections.join(","),
            f.points.join(" > "),
            when,
            f.packets
        );
        let _ = writeln!(out, "    {}", f.message);
        for e in &f.evidence {
            let _ = writeln!(out, "    - {e}");
        }
        let _ = writeln!(out, "    check: {}", f.check);
    }
    if !c.connections.is_empty() || !found.findings.is_empty() {
        out.push('\n');
    }
    out
}

/// `ct.txt: snapshot of 6 entries, 6 on the wire, 6 agree, taken about <time>`.
pub fn witness_line(w: &audit::ct::Witness) -> String {
    let what = match w.kind {
        "events" => format!("event log of {} connections", w.entries),
        kind => format!("{kind} of {} entries", w.entries),
    };
    let mut s = format!(
        "{}: {what}, {} on the wire, {} agree with it",
        w.source, w.on_wire, w.agree
    );
    if let Some(t) = w.time_ns {
        let _ = write!(s, ", taken about {}", rfc3339_ns(t));
    }
    s
}
