//! `natcheck correlate CAPTURE...`: the same connections at every capture point, what
//! NAT did between them, and what went wrong (findings), from the captures alone.
//!
//! Exit status: 2 when an input had problems (warnings; the evidence is incomplete),
//! else 1 when a finding trips `--fail-on` (default: any `error` finding), else 0.

use std::path::PathBuf;
use std::time::Duration;

use super::{print_warnings, CaptureArgs, ExitStatus, FilterArgs, Formats, OutputArgs};
use crate::audit::{self, Cidr, FailOn};
use crate::correlate;
use crate::pipeline;
use crate::report::text::{Text, View};
use crate::report::{Format, Render, Selected};

/// Output formats of `correlate`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputFormat {
    /// Aligned plain text for terminals.
    Table,
    /// One JSON document (see docs/json-schema.md).
    Json,
    /// Markdown for incident tickets: summary, inputs, findings with evidence, connections.
    Markdown,
    /// One self-contained HTML page: the findings, a sortable and filterable connection
    /// table, and a ladder diagram of every connection's packets across the points.
    Html,
    /// One CSV row per connection and hop (columns in docs/json-schema.md).
    #[cfg(feature = "frames")]
    Csv,
    /// One JSON object per line, connection and hop, the CSV's columns.
    #[cfg(feature = "frames")]
    Ndjson,
    /// The CSV's columns as Apache Parquet (binary: -o FILE, or redirect standard output).
    #[cfg(feature = "frames")]
    Parquet,
}

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    pub captures: CaptureArgs,

    #[command(flatten)]
    pub output: OutputArgs<OutputFormat>,

    #[command(flatten)]
    pub filter: FilterArgs,

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
    /// the wire: `conntrack -L [-o extended,id]`, /proc/net/nf_conntrack, a
    /// `conntrack -E` event log, `conntrack -S` statistics (two readings: their growth)
    /// and `sysctl net.netfilter` settings. Repeatable (several snapshots over time,
    /// event logs, statistics before and after).
    #[arg(long = "conntrack", value_name = "FILE")]
    pub conntrack: Vec<String>,

    /// The NAT host's rules, to name the rule behind every translation and drop:
    /// `iptables-save` / `ip6tables-save` (with or without `-c`), `iptables -S`,
    /// `iptables -L`, `nft list ruleset`, `nft -j list ruleset`, `ipset save`, and `ip
    /// -o addr` / `ip -j addr` for the
    /// host's addresses. Repeatable; each file is recognised by its content, and all
    /// are read as one rule set.
    #[arg(long = "rules", value_name = "FILE")]
    pub rules: Vec<String>,

    /// An earlier dump of the same rules with counters (`iptables-save -c`, nft with
    /// `counter`), taken before the captures: every rule named in the report then says
    /// by how much its counter grew in between, was reset, or is new. Repeatable, read
    /// like `--rules`.
    #[arg(long = "rules-before", value_name = "FILE", requires = "rules")]
    pub rules_before: Vec<String>,

    /// Make connections of link-local control traffic (neighbour discovery, MLD, IGMP,
    /// DHCP, multicast, ...) too; by default it is only counted per capture point,
    /// as NAT never handles it.
    #[arg(long)]
    pub all: bool,

    #[command(flatten)]
    pub tables: TablesArgs,

    #[command(flatten)]
    pub view: ViewArgs,
}

/// `--tables DIR` and how it is partitioned.
#[derive(clap::Args, Debug, Default)]
pub struct TablesArgs {
    /// Also write the report's tables as Parquet into DIR: `connections.parquet` (one
    /// row per connection and hop), `findings.parquet` and `points.parquet` (columns
    /// in docs/json-schema.md).
    #[arg(long, value_name = "DIR")]
    pub tables: Option<PathBuf>,

    /// Hive-partition the tables, so that many runs gather in one DIR:
    /// `DIR/connections/host=H/date=YYYY-MM-DD/part-RUN.parquet` (RUN: a hash of the
    /// tables; the same run rewrites its own files). `host`, `date` (the UTC day of
    /// each connection's first packet) or `host,date`.
    #[arg(
        long,
        value_name = "KEY,...",
        value_delimiter = ',',
        requires = "tables"
    )]
    pub partition: Vec<PartitionKey>,

    /// The host name of `--partition host` (default: the one in the bundle's manifest).
    #[arg(long, value_name = "NAME", requires = "tables")]
    pub host: Option<String>,
}

/// A partition key of `--tables`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, clap::ValueEnum)]
pub enum PartitionKey {
    Host,
    Date,
}

impl Formats for OutputFormat {
    fn is_binary(&self) -> bool {
        self.report().is_binary()
    }
}

/// When to colour the table report.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum ColorChoice {
    /// When standard output is a terminal and `NO_COLOR` is not set.
    #[default]
    Auto,
    Always,
    Never,
}

impl ColorChoice {
    /// Whether to colour: `always`; `auto` on a terminal unless `NO_COLOR` is set
    /// (to any value).
    pub fn colour(self, terminal: bool, no_color: bool) -> bool {
        match self {
            ColorChoice::Always => true,
            ColorChoice::Never => false,
            ColorChoice::Auto => terminal && !no_color,
        }
    }
}

/// What the table report shows beyond the findings and the overview.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct ViewArgs {
    /// Every connection hop by hop and packet by packet, and every finding in full;
    /// twice: every packet of every connection, not only the first 20.
    #[arg(long, action = clap::ArgAction::Count)]
    pub detail: u8,

    /// This connection hop by hop, with every packet: an id of the report (`c3`),
    /// repeatable or comma-separated.
    #[arg(long = "connection", value_name = "ID", value_delimiter = ',')]
    pub connection: Vec<String>,

    /// Colour severities and what NAT changed: `auto` when standard output is a
    /// terminal and `NO_COLOR` is not set.
    #[arg(long, value_enum, value_name = "WHEN", default_value = "auto")]
    pub color: ColorChoice,

    /// Fit the findings and the overview in this many columns (long lines wrap, wide
    /// tables become one block per row). Default: the terminal's width when standard
    /// output is one (`COLUMNS`, else 80), no limit otherwise.
    #[arg(long, value_name = "COLUMNS", value_parser = clap::value_parser!(u16).range(40..))]
    pub width: Option<u16>,
}

impl ViewArgs {
    /// The table report's view, colour decided for where it goes (`terminal`: standard
    /// output, and a terminal).
    pub fn view(&self, terminal: bool) -> View {
        View {
            detail: self.detail,
            connections: self.connection.clone(),
            colour: self
                .color
                .colour(terminal, std::env::var_os("NO_COLOR").is_some()),
            width: self
                .width
                .map(usize::from)
                .or_else(|| terminal.then(terminal_columns)),
        }
    }

    fn is_default(&self) -> bool {
        self.detail == 0 && self.connection.is_empty() && self.width.is_none()
    }
}

/// The width of the terminal on standard output: the kernel's, else `COLUMNS`, else 80.
fn terminal_columns() -> usize {
    // SAFETY: TIOCGWINSZ writes one `winsize` into the struct it is given.
    let mut ws: libc::winsize = unsafe { std::mem::zeroed() };
    let ok = unsafe { libc::ioctl(libc::STDOUT_FILENO, libc::TIOCGWINSZ, &mut ws) } == 0;
    if ok && ws.ws_col >= 40 {
        return usize::from(ws.ws_col);
    }
    std::env::var("COLUMNS")
        .ok()
        .and_then(|c| c.parse().ok())
        .filter(|&c: &usize| c >= 40)
        .unwrap_or(80)
}

impl OutputFormat {
    fn report(self) -> Format {
        #[cfg(feature = "frames")]
        use crate::report::frame::FrameFormat;
        match self {
            OutputFormat::Table => Format::Table,
            OutputFormat::Json => Format::Json,
            OutputFormat::Markdown => Format::Markdown,
            OutputFormat::Html => Format::Html,
            #[cfg(feature = "frames")]
            OutputFormat::Csv => Format::Frame(FrameFormat::Csv),
            #[cfg(feature = "frames")]
            OutputFormat::Ndjson => Format::Frame(FrameFormat::Ndjson),
            #[cfg(feature = "frames")]
            OutputFormat::Parquet => Format::Frame(FrameFormat::Parquet),
        }
    }
}

impl Args {
    /// The pipeline configuration these flags ask for. A bundle among the captures
    /// brings its conntrack files (with the times they were taken when it is the
    /// only bundle: then its clock is the captures'), and its rules unless `--rules`
    /// is given (the first bundle's that has any: the NAT host is named first).
    pub fn config(&self) -> anyhow::Result<pipeline::Config> {
        let window_ns = i64::try_from(self.window.as_nanos()).unwrap_or(i64::MAX);
        anyhow::ensure!(window_ns > 0, "--window must be greater than zero");
        let inputs = self.captures.inputs()?;
        let mut cfg = pipeline::Config {
            captures: inputs.captures,
            read: inputs.read,
            correlate: correlate::Config {
                window_ns,
                trace: match self.output.format()?.report() {
                    Format::Html => crate::report::html::TRACE,
                    _ => self.view.view(false).trace(),
                },
                control: self.all,
            },
            audit: audit::Config {
                inside: self.inside.clone(),
                ..audit::Config::default()
            },
            witnesses: self.conntrack.clone(),
            rules: self.rules.clone(),
            rules_before: self.rules_before.clone(),
            fail_on: self.fail_on.clone(),
            filter: self.filter.parse()?,
            ..pipeline::Config::default()
        };
        let single = inputs.bundles.len() == 1;
        for b in &inputs.bundles {
            for (path, kind) in b.conntrack() {
                let path = path.display().to_string();
                if let Some(t) = b.taken_ns(kind).filter(|_| single) {
                    cfg.conntrack_times.insert(path.clone(), t);
                }
                cfg.witnesses.push(path);
            }
            if let Some(cut) = b.discarded_through_ns().filter(|_| single) {
                cfg.audit.discarded_through_ns = Some(cut);
            }
            cfg.bundles.push(b.summary());
            cfg.bundle_warnings.extend(b.warnings.iter().cloned());
        }
        if self.rules.is_empty() {
            if let Some(b) = inputs.bundles.iter().find(|b| !b.rules().is_empty()) {
                let text = |v: Vec<std::path::PathBuf>| -> Vec<String> {
                    v.iter().map(|p| p.display().to_string()).collect()
                };
                cfg.rules = text(b.rules());
                cfg.rules_before = text(b.rules_before());
            }
        }
        Ok(cfg)
    }
}

impl TablesArgs {
    /// Where and how to write the tables, checked before anything is read: the host
    /// of `--partition host` comes from `--host`, else from the first bundle.
    #[cfg(feature = "frames")]
    fn plan(
        &self,
        bundles: &[crate::bundle::Summary],
    ) -> anyhow::Result<Option<(PathBuf, crate::report::tables::Partition)>> {
        let Some(dir) = &self.tables else {
            return Ok(None);
        };
        let keys = &self.partition;
        anyhow::ensure!(
            keys.windows(2).all(|w| w[0] < w[1]),
            "--partition: give each key once, in the order host,date"
        );
        let by_host = keys.contains(&PartitionKey::Host);
        let host = match (&self.host, by_host) {
            (Some(_), false) => {
                anyhow::bail!("--host names the host partition: add --partition host")
            }
            (h, true) => Some(
                h.clone()
                    .or_else(|| bundles.first().map(|b| b.host.clone()))
                    .ok_or_else(|| {
                        anyhow::anyhow!(
                            "--partition host: no bundle names the host: give it with --host NAME"
                        )
                    })?,
            ),
            (None, false) => None,
        };
        let partition =
            crate::report::tables::Partition::new(host, keys.contains(&PartitionKey::Date))?;
        Ok(Some((dir.clone(), partition)))
    }

    #[cfg(not(feature = "frames"))]
    fn plan(&self, _: &[crate::bundle::Summary]) -> anyhow::Result<Option<()>> {
        anyhow::ensure!(
            self.tables.is_none(),
            "--tables needs natcheck built with the `frames` feature"
        );
        Ok(None)
    }
}

pub fn run(args: &Args) -> anyhow::Result<ExitStatus> {
    let format = args.output.format()?;
    anyhow::ensure!(
        format.report() == Format::Table || args.view.is_default(),
        "--detail, --connection and --width are for the table report (--format table)"
    );
    let cfg = args.config()?;
    let tables = args.tables.plan(&cfg.bundles)?;
    let mut out = args.output.open(&format)?;
    let model = pipeline::run(&cfg)?;
    #[cfg(feature = "frames")]
    if let Some((dir, partition)) = &tables {
        crate::report::tables::write(&model, dir, partition)?;
    }
    #[cfg(not(feature = "frames"))]
    let _ = tables;
    let renderer: Box<dyn Render> = match format.report() {
        Format::Table => Box::new(Selected(Text(args.view.view(out.is_terminal())))),
        f => f.renderer(),
    };
    renderer.render(&model, &mut out)?;
    out.finish()?;
    crate::mem::step("report written");
    print_warnings(&model.warnings);
    let status = model.exit_status();
    // The process ends here: its memory goes back whole, so the model (every
    // connection, the rule set, the walks: hundreds of thousands of allocations on a
    // big run) is not freed piece by piece first.
    std::mem::forget(model);
    Ok(status)
}

#[cfg(test)]
mod tests {
    use super::ColorChoice;

    #[test]
    fn colour_only_on_a_terminal_without_no_color_unless_asked() {
        for (choice, terminal, no_color, want) in [
            (ColorChoice::Auto, true, false, true),
            (ColorChoice::Auto, true, true, false),
            (ColorChoice::Auto, false, false, false),
            (ColorChoice::Always, false, true, true),
            (ColorChoice::Never, true, false, false),
        ] {
            assert_eq!(
                choice.colour(terminal, no_color),
                want,
                "{choice:?} terminal={terminal} NO_COLOR={no_color}"
            );
        }
    }
}
