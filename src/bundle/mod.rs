//! bundle: the evidence bundle `natcheck collect` writes on a NAT host, as the other
//! commands read it. Owns the bundle's layout (which file holds what: [`Kind`]), its
//! manifest ([`manifest`]), and [`Bundle::open`], which checks a bundle directory
//! against its manifest and says which of its files are captures, conntrack
//! witnesses, rules (after the capture, and before it for counter deltas) and
//! interface listings, so that `correlate DIR` uses all of them without flags.
//!
//! A bundle is a directory, or a gzip'd tar of one (`tar czf b.tar.gz DIR`, the
//! bundle at the archive's root or under one directory), read where it lies: its
//! files are then `b.tar.gz/DIR/capture.pcapng` and so on (`input::archive`).
//!
//! A bundle's files are read by the readers that read them when named one by one
//! (`capture`, `conntrack`, `rules`); this module only points at them. Trouble that
//! makes the evidence incomplete is a warning: a file the manifest lists that is
//! missing or of another size, and a capture point where the kernel dropped packets.

pub mod manifest;

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;

use crate::diag::{Location, Warning};
use crate::input::archive::{self, Archive};
pub use manifest::Manifest;

/// The manifest's file name in a bundle.
pub const MANIFEST: &str = "manifest.json";

/// What a file of a bundle holds. Each kind has a fixed file name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    Capture,
    ConntrackBefore,
    ConntrackAfter,
    ConntrackEvents,
    ConntrackStatsBefore,
    ConntrackStatsAfter,
    IptablesBefore,
    IptablesAfter,
    Ip6tablesBefore,
    Ip6tablesAfter,
    NftBefore,
    NftAfter,
    Ipset,
    Addresses,
    Links,
    Routes,
    Routes6,
    RoutingRules,
    RoutingRules6,
    Sysctl,
}

impl Kind {
    /// Every kind, in the order files are listed in the manifest.
    pub const ALL: [Kind; 20] = [
        Kind::Capture,
        Kind::ConntrackBefore,
        Kind::ConntrackAfter,
        Kind::ConntrackEvents,
        Kind::ConntrackStatsBefore,
        Kind::ConntrackStatsAfter,
        Kind::IptablesBefore,
        Kind::IptablesAfter,
        Kind::Ip6tablesBefore,
        Kind::Ip6tablesAfter,
        Kind::NftBefore,
        Kind::NftAfter,
        Kind::Ipset,
        Kind::Addresses,
        Kind::Links,
        Kind::Routes,
        Kind::Routes6,
        Kind::RoutingRules,
        Kind::RoutingRules6,
        Kind::Sysctl,
    ];

    /// The stable name in the manifest's `kind` and the file name, without its
    /// extension.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Capture => "capture",
            Kind::ConntrackBefore => "conntrack-before",
            Kind::ConntrackAfter => "conntrack-after",
            Kind::ConntrackEvents => "conntrack-events",
            Kind::ConntrackStatsBefore => "conntrack-stats-before",
            Kind::ConntrackStatsAfter => "conntrack-stats-after",
            Kind::IptablesBefore => "iptables-before",
            Kind::IptablesAfter => "iptables-after",
            Kind::Ip6tablesBefore => "ip6tables-before",
            Kind::Ip6tablesAfter => "ip6tables-after",
            Kind::NftBefore => "nft-before",
            Kind::NftAfter => "nft-after",
            Kind::Ipset => "ipset",
            Kind::Addresses => "ip-addr",
            Kind::Links => "ip-link",
            Kind::Routes => "ip-route",
            Kind::Routes6 => "ip-6-route",
            Kind::RoutingRules => "ip-rule",
            Kind::RoutingRules6 => "ip-6-rule",
            Kind::Sysctl => "sysctl",
        }
    }

    pub fn from_name(name: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.name() == name)
    }

    /// The file name in the bundle.
    pub fn file(self) -> String {
        let ext = match self {
            Kind::Capture => "pcapng",
            Kind::NftBefore
            | Kind::NftAfter
            | Kind::Addresses
            | Kind::Links
            | Kind::Routes
            | Kind::Routes6
            | Kind::RoutingRules
            | Kind::RoutingRules6 => "json",
            _ => "txt",
        };
        format!("{}.{ext}", self.name())
    }

    /// What the file holds, for the manifest's `what`.
    pub fn what(self) -> &'static str {
        match self {
            Kind::Capture => "packets of every capture point, one interface description block each",
            Kind::ConntrackBefore => "the conntrack table before the capture, as conntrack -L -o extended,id prints it",
            Kind::ConntrackAfter => "the conntrack table after the capture, as conntrack -L -o extended,id prints it",
            Kind::ConntrackEvents => "conntrack events during the capture, as conntrack -E -o timestamp,extended,id prints them",
            Kind::ConntrackStatsBefore => "conntrack statistics per CPU before the capture",
            Kind::ConntrackStatsAfter => "conntrack statistics per CPU after the capture",
            Kind::IptablesBefore => "the IPv4 rules with counters before the capture",
            Kind::IptablesAfter => "the IPv4 rules with counters after the capture",
            Kind::Ip6tablesBefore => "the IPv6 rules with counters before the capture",
            Kind::Ip6tablesAfter => "the IPv6 rules with counters after the capture",
            Kind::NftBefore => "the nftables rule set before the capture",
            Kind::NftAfter => "the nftables rule set after the capture",
            Kind::Ipset => "the ipsets the rules use",
            Kind::Addresses => "the host's addresses",
            Kind::Links => "the host's interfaces",
            Kind::Routes => "the IPv4 routing table",
            Kind::Routes6 => "the IPv6 routing table",
            Kind::RoutingRules => "the IPv4 policy routing rules",
            Kind::RoutingRules6 => "the IPv6 policy routing rules",
            Kind::Sysctl => "netfilter, forwarding, reverse-path and bridge sysctls",
        }
    }
}

/// A bundle directory, checked against its manifest.
#[derive(Clone, Debug)]
pub struct Bundle {
    /// The directory as given; for an archive, the archive and the directory in it
    /// that holds the manifest (`b.tar.gz/incident-42`).
    pub dir: PathBuf,
    /// The archive the bundle is read from, if it is one.
    archive: Option<Arc<Archive>>,
    pub manifest: Manifest,
    /// Files the manifest lists that are missing or of another size, and capture
    /// points where the kernel dropped packets.
    pub warnings: Vec<Warning>,
    /// The files present as the manifest lists them.
    present: Vec<Kind>,
}

/// What a bundle was, for the report's header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Summary {
    pub dir: String,
    pub host: String,
    pub kernel: String,
    pub started_ns: Option<i64>,
    pub stopped_ns: Option<i64>,
    pub stop: manifest::Stop,
    /// Point name, packets written, packets the kernel dropped.
    pub points: Vec<(String, u64, u64)>,
    /// Files that could not be collected, and why.
    pub missing: Vec<(String, String)>,
    /// The flight recorder, when the capture was one.
    pub ring: Option<manifest::Ring>,
}

impl Bundle {
    /// Whether `path` looks like a bundle: a directory holding a manifest.
    pub fn is_bundle(path: &Path) -> bool {
        path.is_dir() && path.join(MANIFEST).is_file()
    }

    /// Whether `path` is a gzip'd tar archive, which is read as a bundle.
    pub fn is_archive(path: &Path) -> bool {
        archive::is_archive_name(path) && path.is_file()
    }

    /// Opens a bundle, a directory or an archive of one: reads its manifest and
    /// checks every file it lists. Without a readable manifest, it is an error.
    pub fn open(path: &Path) -> anyhow::Result<Bundle> {
        let (dir, archive) = if Bundle::is_archive(path) {
            let a = Archive::open(path)?;
            let inside = manifest_dir(&a)?;
            let dir = if inside.is_empty() {
                path.to_path_buf()
            } else {
                path.join(inside)
            };
            (dir, Some(a))
        } else {
            (path.to_path_buf(), None)
        };
        let mpath = dir.join(MANIFEST);
        let text = crate::input::read_text(&mpath.display().to_string()).with_context(|| {
            format!(
                "{}: not a natcheck bundle (no readable {MANIFEST})",
                dir.display()
            )
        })?;
        let manifest =
            Manifest::from_json(&text).map_err(|e| anyhow::anyhow!("{}: {e}", mpath.display()))?;
        let mut b = Bundle {
            dir,
            archive,
            manifest,
            warnings: Vec::new(),
            present: Vec::new(),
        };
        b.check_files();
        b.check_points();
        Ok(b)
    }

    fn source(&self, file: &str) -> String {
        self.dir.join(file).display().to_string()
    }

    /// The size of the bundle's file `name`, when it is there.
    fn file_len(&self, name: &str) -> Option<u64> {
        match &self.archive {
            Some(a) => {
                let inside = self.dir.strip_prefix(a.path()).ok()?.join(name);
                a.size(inside.to_str()?)
            }
            None => fs::metadata(self.dir.join(name))
                .ok()
                .filter(|m| m.is_file())
                .map(|m| m.len()),
        }
    }

    /// Every written file must be there with the size the manifest gives.
    fn check_files(&mut self) {
        for f in &self.manifest.files {
            let (Some(kind), Some(bytes)) = (Kind::from_name(&f.kind), f.bytes) else {
                continue;
            };
            // A name from the manifest is a file name, never a path out of the bundle.
            if f.name != kind.file() {
                self.warnings.push(Warning::new(
                    self.source(MANIFEST),
                    Location::File,
                    format!(
                        "the {} file is named `{}`, expected `{}`: not used",
                        f.kind,
                        f.name.escape_debug(),
                        kind.file()
                    ),
                ));
                continue;
            }
            let source = self.source(&f.name);
            match self.file_len(&f.name) {
                Some(len) if len == bytes => self.present.push(kind),
                Some(len) => {
                    self.warnings.push(Warning::new(
                        source,
                        Location::File,
                        format!(
                            "{len} bytes, the manifest says {bytes}: the file changed after it was collected"
                        ),
                    ));
                    self.present.push(kind);
                }
                None => self.warnings.push(Warning::new(
                    source,
                    Location::File,
                    "listed in the manifest but missing from the bundle",
                )),
            }
        }
    }

    /// A capture point where the kernel dropped packets makes every conclusion drawn
    /// from packets missing there uncertain.
    fn check_points(&mut self) {
        let source = self.source(&Kind::Capture.file());
        for p in &self.manifest.points {
            if p.kernel_drops > 0 {
                self.warnings.push(Warning::new(
                    source.clone(),
                    Location::File,
                    format!(
                        "the kernel dropped {} of {} packets at {} while capturing: packets missing there may have been dropped by the capture, so loss findings at {} are uncertain",
                        p.kernel_drops, p.kernel_packets, p.name, p.name
                    ),
                ));
            }
        }
        if let Some(f) = self.manifest.file(Kind::ConntrackEvents.name()) {
            if let Some(n) = f.overruns.filter(|&n| n > 0) {
                self.warnings.push(Warning::new(
                    self.source(&f.name),
                    Location::File,
                    format!("the kernel dropped conntrack events {n} time(s) (ENOBUFS): the event log is incomplete"),
                ));
            }
        }
    }

    /// The path of the file of `kind`, when the bundle holds it.
    pub fn path(&self, kind: Kind) -> Option<PathBuf> {
        self.present
            .contains(&kind)
            .then(|| self.dir.join(kind.file()))
    }

    /// The time the file of `kind` was taken, in nanoseconds since the epoch.
    pub fn taken_ns(&self, kind: Kind) -> Option<i64> {
        let f = self.manifest.file(kind.name())?;
        manifest::parse_time(&f.taken)
    }

    fn paths(&self, kinds: &[Kind]) -> Vec<PathBuf> {
        kinds.iter().filter_map(|&k| self.path(k)).collect()
    }

    /// The capture file.
    pub fn capture(&self) -> Option<PathBuf> {
        self.path(Kind::Capture)
    }

    /// Whether the files taken before the capture predate its packets: a flight
    /// recorder discarded packets in between.
    pub fn before_predates_packets(&self) -> bool {
        self.manifest
            .ring
            .as_ref()
            .is_some_and(|r| r.before_predates_packets)
    }

    /// Packets at or before this time were discarded at every point (a flight
    /// recorder's window), in nanoseconds since the epoch.
    pub fn discarded_through_ns(&self) -> Option<i64> {
        let r = self.manifest.ring.as_ref()?;
        manifest::parse_time(r.discarded_through.as_deref()?)
    }

    /// The conntrack witnesses: the tables before and after, the event log, the
    /// statistics before and after (the audit counts how much they grew in between),
    /// and the sysctls (the table's limit, `nf_conntrack_max`). The table before is
    /// left out when it predates the packets: entries of connections whose packets
    /// were discarded, tuples reused since, are no evidence about the packets kept.
    pub fn conntrack(&self) -> Vec<(PathBuf, Kind)> {
        let before = (!self.before_predates_packets()).then_some(Kind::ConntrackBefore);
        before
            .into_iter()
            .chain([
                Kind::ConntrackAfter,
                Kind::ConntrackEvents,
                Kind::ConntrackStatsBefore,
                Kind::ConntrackStatsAfter,
                Kind::Sysctl,
            ])
            .filter_map(|k| self.path(k).map(|p| (p, k)))
            .collect()
    }

    /// The rules as they were after the capture, with the ipsets and addresses;
    /// files that hold nothing (no table loaded) are left out.
    pub fn rules(&self) -> Vec<PathBuf> {
        let files = self.paths(&[
            Kind::IptablesAfter,
            Kind::Ip6tablesAfter,
            Kind::NftAfter,
            Kind::Ipset,
            Kind::Addresses,
        ]);
        non_empty(files)
    }

    /// The rules as they were before the capture, for counter deltas.
    pub fn rules_before(&self) -> Vec<PathBuf> {
        non_empty(self.paths(&[Kind::IptablesBefore, Kind::Ip6tablesBefore, Kind::NftBefore]))
    }

    /// The host's interfaces (`ip -j link`), to name interface indexes.
    pub fn links(&self) -> Option<PathBuf> {
        self.path(Kind::Links)
    }

    /// What the bundle is, for the report.
    pub fn summary(&self) -> Summary {
        let m = &self.manifest;
        Summary {
            dir: self.dir.display().to_string(),
            host: m.host.clone(),
            kernel: m.kernel.clone(),
            started_ns: manifest::parse_time(&m.started),
            stopped_ns: manifest::parse_time(&m.stopped),
            stop: m.stop.clone(),
            points: m
                .points
                .iter()
                .map(|p| (p.name.clone(), p.packets, p.kernel_drops))
                .collect(),
            missing: m
                .files
                .iter()
                .filter_map(|f| Some((f.name.clone(), f.error.clone()?)))
                .collect(),
            ring: m.ring.clone(),
        }
    }
}

/// The files that hold more than white space: an `iptables-save` of a host with no
/// table loaded prints nothing, which is not a rule set to read.
fn non_empty(files: Vec<PathBuf>) -> Vec<PathBuf> {
    let blank = |p: &Path| -> Option<bool> {
        let mut bytes = Vec::new();
        crate::input::open_file(p)
            .ok()?
            .read_to_end(&mut bytes)
            .ok()?;
        Some(bytes.iter().all(u8::is_ascii_whitespace))
    };
    files
        .into_iter()
        .filter(|p| blank(p) == Some(false))
        .collect()
}

/// Where the manifest lies in an archive: at its root or in one directory (`tar
/// czf b.tar.gz DIR`); more than one is an error.
fn manifest_dir(a: &Archive) -> anyhow::Result<String> {
    let dirs: Vec<&str> = a
        .names()
        .filter_map(|n| match n.rsplit_once('/') {
            None if n == MANIFEST => Some(""),
            Some((dir, MANIFEST)) if !dir.contains('/') => Some(dir),
            _ => None,
        })
        .collect();
    match dirs.as_slice() {
        [one] => Ok(one.to_string()),
        [] => anyhow::bail!(
            "{}: not a natcheck bundle (no {MANIFEST} at its root or in a directory at its root)",
            a.path().display()
        ),
        many => anyhow::bail!(
            "{}: holds {} bundles ({}): name one archive per bundle",
            a.path().display(),
            many.len(),
            many.iter()
                .map(|d| if d.is_empty() { "." } else { d })
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

#[cfg(test)]
mod tests;
