//! `natcheck correlate CAPTURE...`: the same connections at every capture point and
//! what NAT did between them, from the captures alone.

use std::io::{self, Write};
use std::time::Duration;

use super::{print_warnings, CaptureArgs, ExitStatus, Format};
use crate::correlate::{self, Config};
use crate::diag::Warning;
use crate::report::{json, text};

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    pub captures: CaptureArgs,

    /// Output format.
    #[arg(long, value_enum, default_value = "table")]
    pub format: Format,

    /// How far apart (after clock correction) two sightings of one packet may be.
    #[arg(long, value_name = "DURATION", default_value = "1s", value_parser = humantime::parse_duration)]
    pub window: Duration,
}

pub fn run(args: &Args) -> anyhow::Result<ExitStatus> {
    let opts = args.captures.read_options()?;
    let window_ns = i64::try_from(args.window.as_nanos()).unwrap_or(i64::MAX);
    anyhow::ensure!(window_ns > 0, "--window must be greater than zero");
    let c = correlate::run(&args.captures.captures, &opts, Config { window_ns });
    let warnings: Vec<&Warning> = c.inputs.iter().flat_map(|i| &i.warnings).collect();
    let mut out = io::BufWriter::new(io::stdout().lock());
    match args.format {
        Format::Json => {
            let doc = json::build::<serde_json::Value>(&c, warnings.clone(), Vec::new(), |_| Vec::new(), Default::default());
            serde_json::to_writer_pretty(&mut out, &doc)?;
            writeln!(out)?;
        }
        Format::Table => {
            write!(out, "{}", text::render(&c, |_| Vec::new()))?;
        }
    }
    out.flush()?;
    drop(out);
    Ok(if print_warnings(warnings) {
        ExitStatus::Error
    } else {
        ExitStatus::Clean
    })
}
