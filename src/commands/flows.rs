//! `natcheck flows CAPTURE...`: the flow table of every capture point, like
//! `tshark -z conv,tcp` / `conv,udp` but for all points of all inputs at once.

use std::io::{self, Write};

use super::{print_warnings, CaptureArgs, ExitStatus, Format};
use crate::flows;
use crate::report;

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    pub captures: CaptureArgs,

    /// Output format.
    #[arg(long, value_enum, default_value = "table")]
    pub format: Format,
}

pub fn run(args: &Args) -> anyhow::Result<ExitStatus> {
    let opts = args.captures.read_options()?;
    let mut inputs = flows::read_all(&args.captures.captures, &opts);
    for input in &mut inputs {
        for p in &mut input.points {
            flows::sort_for_output(&mut p.flows);
        }
    }
    let mut out = io::BufWriter::new(io::stdout().lock());
    match args.format {
        Format::Json => report::flows::document(&inputs, &mut out)?,
        Format::Table => report::flows::table(&inputs, &mut out)?,
    }
    out.flush()?;
    drop(out);
    Ok(
        if print_warnings(inputs.iter().flat_map(|i| &i.input.warnings)) {
            ExitStatus::Error
        } else {
            ExitStatus::Clean
        },
    )
}
