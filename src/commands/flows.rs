//! `natcheck flows CAPTURE...`: the flow table of every capture point, like
//! `tshark -z conv,tcp` / `conv,udp` but for all points of all inputs at once.

use std::io::{self, Write};

use super::{print_warnings, CaptureArgs, ExitStatus, FilterArgs, Format, OutputArgs};
use crate::flows;
use crate::report;

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    pub captures: CaptureArgs,

    /// List link-local control traffic (neighbour discovery, MLD, IGMP, DHCP,
    /// multicast, ...) too; by default it is only counted per capture point.
    #[arg(long)]
    pub all: bool,

    #[command(flatten)]
    pub output: OutputArgs<Format>,

    #[command(flatten)]
    pub filter: FilterArgs,
}

pub fn run(args: &Args) -> anyhow::Result<ExitStatus> {
    let format = args.output.format()?;
    let filter = args.filter.parse()?;
    let named = args.captures.inputs()?;
    let mut out = args.output.open(&format)?;
    let mut inputs = flows::read_all(&named.captures, &named.read);
    if !args.all {
        flows::hide_control(&mut inputs);
    }
    for input in &mut inputs {
        for p in &mut input.points {
            if let Some(f) = &filter {
                p.flows.retain(|flow| f.matches(&flow.tuple));
            }
            flows::sort_for_output(&mut p.flows);
        }
    }
    match format {
        Format::Json => report::flows::document(&inputs, &mut out)?,
        Format::Table => {
            report::flows::table(&inputs, &mut out)?;
            hidden_note(&inputs, &mut out)?;
        }
    }
    out.finish()?;
    Ok(
        if print_warnings(
            named
                .bundles
                .iter()
                .flat_map(|b| &b.warnings)
                .chain(inputs.iter().flat_map(|i| &i.input.warnings)),
        ) {
            ExitStatus::Error
        } else {
            ExitStatus::Clean
        },
    )
}

/// After the tables: how many control flows were left out, per point.
fn hidden_note(inputs: &[flows::InputFlows], out: &mut impl Write) -> io::Result<()> {
    let counts: Vec<String> = inputs
        .iter()
        .flat_map(|i| &i.input.stats.control_flows)
        .map(|(point, n)| format!("{point} {n}"))
        .collect();
    if !counts.is_empty() {
        writeln!(
            out,
            "\nlink-local control flows not listed (--all lists them): {}",
            counts.join(", ")
        )?;
    }
    Ok(())
}
