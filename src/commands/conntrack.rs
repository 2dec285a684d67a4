//! `natcheck conntrack FILE...`: what conntrack says happened. Each input (a
//! `conntrack -L` snapshot, `/proc/net/nf_conntrack`, a `conntrack -E` event log, or
//! `conntrack -S` statistics, in any mix) is parsed; snapshot entries are listed with
//! the translation each implies, event logs as one timeline per connection.

use std::collections::BTreeSet;
use std::io::Write;
use std::net::IpAddr;

use super::{print_warnings, ExitStatus, FilterArgs, Format, OutputArgs};
use crate::bundle::Kind;
use crate::conntrack::{self, Entry, View};
use crate::model::NatKind;
use crate::report;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// conntrack output: `conntrack -L [-o extended,id,...]`, /proc/net/nf_conntrack,
    /// `conntrack -E [-o timestamp,...]`, `conntrack -S`, `sysctl net.netfilter` (the
    /// table's settings); `.gz` is decompressed, `-` reads standard input. A bundle
    /// directory of `natcheck collect` (or a `.tar.gz` of one) stands for its
    /// conntrack tables before and after, its event log and its statistics.
    #[arg(required = true, value_name = "FILE|BUNDLE")]
    pub files: Vec<String>,

    /// Show only entries whose implied translation includes SNAT, DNAT, or any NAT.
    #[arg(long, value_enum, value_name = "KIND")]
    pub nat: Option<NatFilter>,

    /// Addresses of the NAT host, so that DNAT to them reads as REDIRECT. Addresses the
    /// entries show the host masquerading with are known without it.
    #[arg(long = "host-addr", value_name = "IP")]
    pub host_addrs: Vec<IpAddr>,

    #[command(flatten)]
    pub output: OutputArgs<Format>,

    #[command(flatten)]
    pub filter: FilterArgs,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum NatFilter {
    Snat,
    Dnat,
    Any,
}

impl NatFilter {
    fn keeps(self, kind: NatKind) -> bool {
        match self {
            NatFilter::Snat => kind.has_snat(),
            NatFilter::Dnat => kind.has_dnat(),
            NatFilter::Any => kind != NatKind::None,
        }
    }
}

pub fn run(args: &Args) -> anyhow::Result<ExitStatus> {
    let format = args.output.format()?;
    let filter = args.filter.parse()?;
    let stdin_uses = args.files.iter().filter(|f| f.as_str() == "-").count();
    anyhow::ensure!(stdin_uses <= 1, "standard input (-) can be read only once");
    let (files, bundle_warnings) = super::expand_files(&args.files, |b| {
        [
            Kind::ConntrackBefore,
            Kind::ConntrackAfter,
            Kind::ConntrackEvents,
            Kind::ConntrackStatsBefore,
            Kind::ConntrackStatsAfter,
        ]
        .into_iter()
        .filter_map(|k| b.path(k))
        .collect()
    })?;
    let mut out = args.output.open(&format)?;
    let dumps = files
        .iter()
        .map(|f| conntrack::read_path(f))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let mut host: BTreeSet<IpAddr> = args.host_addrs.iter().copied().collect();
    for d in &dumps {
        host.extend(conntrack::host_addresses(d.all_entries()));
    }
    let keep = |e: &Entry, k: NatKind| {
        args.nat.is_none_or(|f| f.keeps(k)) && super::keeps_entry(filter.as_ref(), e)
    };
    let views: Vec<View> = dumps.iter().map(|d| View::of(d, &host, keep)).collect();

    let text = match format {
        Format::Json => report::conntrack::document(&views, None)?,
        Format::Table => views
            .iter()
            .map(report::conntrack::table)
            .collect::<Vec<_>>()
            .join("\n"),
    };
    out.write_all(text.as_bytes())?;
    out.finish()?;
    let warned = print_warnings(
        bundle_warnings
            .iter()
            .chain(dumps.iter().flat_map(|d| &d.warnings)),
    );
    Ok(if warned {
        ExitStatus::Error
    } else {
        ExitStatus::Clean
    })
}
