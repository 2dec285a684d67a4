//! One module per subcommand: each owns its clap `Args` and a `run` that returns the
//! process exit status. `main.rs` only parses and dispatches. What several commands
//! share (capture arguments, `--filter`, `--format` and `-o`, warning output) lives
//! here.

pub mod collect;
pub mod completions;
pub mod conntrack;
pub mod correlate;
pub mod diff;
pub mod explain;
pub mod flows;
pub mod man;
mod output;
pub mod snapshot;

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;

use crate::bundle::{Bundle, Kind};
use crate::capture::{IfNames, InputSpec, ReadOptions, TimeRange};
pub use crate::diag::ExitStatus;
use crate::diag::Warning;
use crate::filter::Filter;
pub use output::{Formats, Output, OutputArgs};

/// Output formats shared by the commands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Aligned plain text for terminals and tickets.
    Table,
    /// One JSON document (see docs/json-schema.md).
    Json,
}

impl Formats for Format {}

/// `--filter`, shared by every command that reads captures or conntrack.
#[derive(clap::Args, Debug, Clone)]
pub struct FilterArgs {
    /// Keep only what this tcpdump-like expression matches: the connections with a
    /// hop it matches, inside or outside (correlate: with the findings about them),
    /// the flows (flows), the entries whose ORIGINAL or REPLY tuple it matches
    /// (conntrack, snapshot). `host ADDR`, `net ADDR/LEN`, `port N`, `portrange N-M`,
    /// each after `src` or `dst` for one side only; `tcp`, `udp`, `icmp`, `icmp6`,
    /// `sctp`, `ip`, `ip6`; `and`, `or`, `not` (`&&`, `||`, `!`) and parentheses, with
    /// tcpdump's precedence. Example: 'host 172.17.0.3 and tcp port 7000'.
    #[arg(long, value_name = "EXPR")]
    pub filter: Option<String>,
}

impl FilterArgs {
    /// The expression, parsed: a bad one fails the run before any work.
    pub fn parse(&self) -> anyhow::Result<Option<Filter>> {
        self.filter
            .as_deref()
            .map(|t| Filter::parse(t).map_err(|e| anyhow::anyhow!("--filter: {e}")))
            .transpose()
    }
}

/// Whether `filter`, when there is one, keeps a conntrack entry: its ORIGINAL or its
/// REPLY tuple matches.
fn keeps_entry(filter: Option<&Filter>, e: &crate::conntrack::Entry) -> bool {
    filter.is_none_or(|f| f.matches_any([&e.orig, &e.reply]))
}

/// Capture inputs, shared by every command that reads captures.
#[derive(clap::Args, Debug, Clone)]
pub struct CaptureArgs {
    /// Capture files: pcap or pcapng, optionally gzip-compressed; `NAME=PATH` names the
    /// capture point; `-` reads standard input; a bundle directory written by
    /// `natcheck collect`, or a gzip'd tar of one (`.tar.gz`, `.tgz`), stands for its
    /// capture (and, for `correlate`, everything else it holds).
    #[arg(required = true, value_name = "CAPTURE|BUNDLE")]
    pub captures: Vec<InputSpec>,

    /// Interface names for `tcpdump -i any` (LINUX_SLL2) captures: the output of
    /// `ip -o link` or `ip -j link` on the capturing host, or `INDEX=NAME` lines; the
    /// bridge each port belongs to (`master docker0`) also orders a port and its bridge
    /// that saw a packet at one time. A bundle's `ip-link.json` is used when this is
    /// not given.
    #[arg(long, value_name = "FILE")]
    pub links: Option<PathBuf>,

    /// A UDP destination port whose payload is VXLAN, opened to the packet inside;
    /// repeat for several. Replaces the default ports 4789 and 8472.
    #[arg(long = "vxlan-port", value_name = "PORT")]
    pub vxlan_ports: Vec<u16>,

    /// Read only the frames captured at or after TIME (each capture's own clock):
    /// RFC 3339 with a zone, as the reports write times
    /// (`2026-12-02T01:05:29.479711Z`), or seconds since the epoch (`tcpdump -tt`).
    /// The frames before it are counted, not decoded: a slice of a long capture costs
    /// the memory and time of the slice.
    #[arg(long, value_name = "TIME", value_parser = crate::capture::range::parse_time)]
    pub since: Option<i64>,

    /// Read only the frames captured before TIME (each capture's own clock), as
    /// --since takes it.
    #[arg(long, value_name = "TIME", value_parser = crate::capture::range::parse_time)]
    pub until: Option<i64>,
}

/// The capture inputs with every bundle among them opened.
#[derive(Debug)]
pub struct Inputs {
    /// The captures: files named, and each bundle's capture in its place.
    pub captures: Vec<InputSpec>,
    pub read: ReadOptions,
    /// The bundles, in the order named.
    pub bundles: Vec<Bundle>,
}

/// Whether `path` names a bundle rather than a file: a directory, or a gzip'd tar.
fn names_bundle(path: &Path) -> bool {
    path.is_dir() || Bundle::is_archive(path)
}

/// Opens the bundle at `path`: a directory must be one.
fn open_bundle(path: &Path) -> anyhow::Result<Bundle> {
    anyhow::ensure!(
        Bundle::is_bundle(path) || Bundle::is_archive(path),
        "{}: is a directory, not a natcheck bundle (no {})",
        path.display(),
        crate::bundle::MANIFEST
    );
    Bundle::open(path)
}

/// The prefix of each bundle's point names when they clash with another input's:
/// its host name, unless two bundles come from hosts of one name (then the
/// directory's name, the default).
fn host_prefixes(bundles: &[Bundle]) -> Vec<Option<String>> {
    let hosts: Vec<&str> = bundles.iter().map(|b| b.manifest.host.as_str()).collect();
    hosts
        .iter()
        .map(|h| {
            let unique = !h.is_empty() && hosts.iter().filter(|x| *x == h).count() == 1;
            unique.then(|| h.to_string())
        })
        .collect()
}

impl CaptureArgs {
    /// Validates the inputs before any work starts (bad arguments fail early) and
    /// opens the bundles among them.
    pub fn inputs(&self) -> anyhow::Result<Inputs> {
        let range = TimeRange::new(self.since, self.until).map_err(anyhow::Error::msg)?;
        let stdin_uses = self.captures.iter().filter(|c| c.is_stdin()).count();
        anyhow::ensure!(stdin_uses <= 1, "standard input (-) can be read only once");
        let mut captures = Vec::new();
        let mut bundles = Vec::new();
        let mut at = Vec::new();
        for c in &self.captures {
            if c.is_stdin() {
                captures.push(c.clone());
                continue;
            }
            std::fs::metadata(&c.path).with_context(|| format!("{}", c.path.display()))?;
            if !names_bundle(&c.path) {
                captures.push(c.clone());
                continue;
            }
            let b = open_bundle(&c.path)?;
            if let Some(p) = b.capture() {
                at.push((captures.len(), bundles.len()));
                captures.push(InputSpec {
                    label: c.label.clone(),
                    path: p,
                    prefix: None,
                });
            }
            bundles.push(b);
        }
        for ((i, b), prefix) in at.iter().zip(host_prefixes(&bundles)) {
            if bundles.len() > 1 {
                if let Some(spec) = captures.get_mut(*i) {
                    spec.prefix = prefix.or_else(|| {
                        bundles.get(*b).map(|b| {
                            b.dir
                                .file_name()
                                .unwrap_or(b.dir.as_os_str())
                                .to_string_lossy()
                                .into_owned()
                        })
                    });
                }
            }
        }
        let links = self
            .links
            .clone()
            .or_else(|| bundles.iter().find_map(Bundle::links));
        let ifnames = match links {
            None => IfNames::default(),
            Some(p) => {
                let text = crate::input::read_text(&p.display().to_string())?;
                IfNames::parse(&text).map_err(|e| anyhow::anyhow!("{}: {e}", p.display()))?
            }
        };
        let mut decode = crate::decode::Options::default();
        if !self.vxlan_ports.is_empty() {
            decode.vxlan_ports.clone_from(&self.vxlan_ports);
        }
        Ok(Inputs {
            captures,
            read: ReadOptions {
                ifnames,
                decode,
                range,
                ..ReadOptions::default()
            },
            bundles,
        })
    }
}

/// Text inputs (`conntrack` files, `--rules`) with every bundle directory among
/// them replaced by the files of it that `pick` chooses; with the bundles' warnings
/// about those files (a capture's drops are not about them).
pub fn expand_files(
    files: &[String],
    pick: impl Fn(&Bundle) -> Vec<PathBuf>,
) -> anyhow::Result<(Vec<String>, Vec<Warning>)> {
    let mut out = Vec::new();
    let mut warnings = Vec::new();
    for f in files {
        let p = Path::new(f);
        if f != "-" && names_bundle(p) {
            let b = open_bundle(p)?;
            let capture = b.dir.join(Kind::Capture.file()).display().to_string();
            warnings.extend(b.warnings.iter().filter(|w| w.source != capture).cloned());
            out.extend(pick(&b).iter().map(|p| p.display().to_string()));
        } else {
            out.push(f.clone());
        }
    }
    Ok((out, warnings))
}

/// Prints warnings to stderr, one per line, prefixed like compiler diagnostics.
/// Returns true when there were any (the run then exits 2).
pub fn print_warnings<'a>(warnings: impl IntoIterator<Item = &'a Warning>) -> bool {
    let mut any = false;
    let stderr = std::io::stderr();
    let mut err = stderr.lock();
    for w in warnings {
        any = true;
        let _ = writeln!(err, "natcheck: warning: {w}");
    }
    any
}
