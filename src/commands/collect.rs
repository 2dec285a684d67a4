//! `natcheck collect -i IFACE [-i NETNS:IFACE]... -o DIR`: on the NAT host, capture
//! on every named interface at once and gather the conntrack table and events, the
//! rules before and after, addresses, links, routes and sysctls into one bundle
//! directory that `natcheck correlate DIR` reads whole (docs/collect.md).
//!
//! Exit status: 0 when the bundle was written, even with files a missing tool
//! could not make (stderr and the manifest list them); 2 when nothing could be
//! collected (bad arguments, an interface or namespace that does not exist, no
//! CAP_NET_RAW, tcpdump missing for --filter).

use std::path::PathBuf;
use std::time::Duration;

use super::snapshot::parse_duration;
use super::ExitStatus;
use crate::bundle::manifest::{parse_time, Manifest};
use crate::collect::{self, capture::Limits, target::Target};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// A capture point: an interface (`eth0`), or one in another network namespace
    /// (`NETNS:IFACE`, NETNS a name from `ip netns list`, a process id, or a path
    /// such as /var/run/docker/netns/ID). Repeatable; all are captured at once into
    /// one pcapng, one interface block each, named as given. `any` (`NETNS:any`)
    /// takes every interface of the namespace, each packet written under the
    /// interface it was seen on.
    #[arg(
        short = 'i',
        long = "interface",
        value_name = "IFACE|NETNS:IFACE",
        required = true
    )]
    pub interfaces: Vec<Target>,

    /// The bundle directory to write (created; an existing one must be empty).
    #[arg(short = 'o', long = "output", value_name = "DIR")]
    pub output: PathBuf,

    /// Stop after this long: seconds (`30`) or a duration (`500ms`, `2m`). Without
    /// it (and without --count or --max-size), capture until Ctrl-C or SIGTERM.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub duration: Option<Duration>,

    /// Stop after this many packets, over all interfaces.
    #[arg(short = 'c', long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub count: Option<u64>,

    /// Capture only packets this tcpdump filter accepts (`tcp port 443 or udp port
    /// 53`). It is compiled to classic BPF by running `tcpdump -ddd`, so tcpdump must
    /// be installed when a filter is given, and it is attached to every socket
    /// (SO_ATTACH_FILTER).
    #[arg(short = 'f', long, value_name = "EXPRESSION")]
    pub filter: Option<String>,

    /// Bytes kept of each packet (the default keeps whole packets).
    #[arg(short = 's', long, value_name = "N", default_value_t = collect::DEFAULT_SNAPLEN,
          value_parser = clap::value_parser!(u32).range(1..=262_144))]
    pub snaplen: u32,

    /// Stop before the capture file grows past this size: bytes, or with a unit
    /// (`500MB`, `2GiB`; kB/MB/GB are powers of 1000, K/M/G and KiB/MiB/GiB of 1024).
    #[arg(long, value_name = "SIZE", value_parser = parse_size, conflicts_with = "ring")]
    pub max_size: Option<u64>,

    /// A flight recorder: keep only the most recent SIZE of packets (at least
    /// 64KiB), discarding the oldest, until the stop; disk use stays about SIZE.
    /// The manifest says what was discarded. Not with --max-size, which stops the
    /// capture instead.
    #[arg(long, value_name = "SIZE", value_parser = parse_ring)]
    pub ring: Option<u64>,

    /// The kernel ring of each interface, which holds packets until they are
    /// written: more rides out longer bursts.
    #[arg(long, value_name = "SIZE", value_parser = parse_size, default_value = "32MiB")]
    pub buffer_size: u64,
}

/// A size in bytes: `1000`, `500MB`, `2GiB`, `64k`.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: f64 = num
        .parse()
        .map_err(|_| format!("`{s}`: expected a number of bytes, e.g. 500MB or 2GiB"))?;
    let mult: f64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "kb" => 1e3,
        "mb" => 1e6,
        "gb" => 1e9,
        "tb" => 1e12,
        "k" | "kib" => 1024.0,
        "m" | "mib" => 1024.0 * 1024.0,
        "g" | "gib" => 1024.0 * 1024.0 * 1024.0,
        "t" | "tib" => 1024.0f64.powi(4),
        u => {
            return Err(format!(
                "`{s}`: unknown unit `{u}` (B, kB, MB, GB, KiB, MiB, GiB)"
            ))
        }
    };
    let bytes = n * mult;
    if !bytes.is_finite() || bytes < 1.0 || bytes > u64::MAX as f64 {
        return Err(format!("`{s}`: out of range"));
    }
    Ok(bytes as u64)
}

/// A flight recorder's size: at least [`flight::MIN_SIZE`].
fn parse_ring(s: &str) -> Result<u64, String> {
    let n = parse_size(s)?;
    if n < collect::flight::MIN_SIZE {
        return Err(format!("`{s}`: a ring holds at least 64KiB"));
    }
    Ok(n)
}

impl Args {
    fn config(&self) -> collect::Config {
        collect::Config {
            targets: self.interfaces.clone(),
            duration: self.duration,
            limits: Limits {
                count: self.count,
                max_bytes: self.max_size,
            },
            filter: self.filter.clone(),
            snaplen: self.snaplen,
            ring_bytes: self.buffer_size,
            flight: self.ring,
            out: self.output.clone(),
            command_line: std::env::args().collect(),
        }
    }
}

pub fn run(args: &Args) -> anyhow::Result<ExitStatus> {
    let cfg = args.config();
    let out = args.output.display().to_string();
    let m = collect::run(&cfg, |names| {
        eprintln!(
            "natcheck: capturing on {} into {out} (Ctrl-C or SIGTERM stops; the rules and the conntrack table are then taken again)",
            names.join(", ")
        );
    })?;
    for line in summary(&out, &m) {
        eprintln!("natcheck: {line}");
    }
    Ok(ExitStatus::Clean)
}

/// What the collection wrote, in words: packets and drops per point, why it
/// stopped, and every file that could not be made.
fn summary(out: &str, m: &Manifest) -> Vec<String> {
    let total: u64 = m.points.iter().map(|p| p.packets).sum();
    let per: Vec<String> = m
        .points
        .iter()
        .map(|p| format!("{} {}", p.name, p.packets))
        .collect();
    let drops: Vec<String> = m
        .points
        .iter()
        .filter(|p| p.kernel_drops > 0)
        .map(|p| format!("{} {}", p.name, p.kernel_drops))
        .collect();
    let span = match (parse_time(&m.started), parse_time(&m.stopped)) {
        (Some(a), Some(b)) => format!(" after {:.1}s", (b - a) as f64 / 1e9),
        _ => String::new(),
    };
    let stop = match m.stop.reason.as_str() {
        "signal" => format!("stopped by {}", m.stop.detail),
        "error" => format!("stopped by an error: {}", m.stop.detail),
        r => format!("stopped at the {r} limit ({})", m.stop.detail),
    };
    let mut lines = vec![format!(
        "{out}: {total} packets ({}), {}; {stop}{span}",
        per.join(", "),
        if drops.is_empty() {
            "no kernel drops".to_string()
        } else {
            format!("the kernel dropped packets: {}", drops.join(", "))
        }
    )];
    if let Some(r) = &m.ring {
        let span = match (&r.kept_from, &r.kept_to) {
            (Some(a), Some(b)) => format!(" from {a} to {b}"),
            _ => String::new(),
        };
        lines.push(match &r.discarded_through {
            Some(cut) => format!(
                "flight recorder: kept the packets{span}; discarded {} packets ({} bytes) up to {cut}",
                r.discarded_packets, r.discarded_bytes
            ),
            None => format!("flight recorder: kept every packet{span}, nothing discarded"),
        });
    }
    for f in &m.files {
        if let Some(e) = &f.error {
            let what = if f.bytes.is_some() {
                "incomplete"
            } else {
                "not collected"
            };
            lines.push(format!("{what}: {}: {e}", f.name));
        }
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("1000"), Ok(1000));
        assert_eq!(parse_size("500MB"), Ok(500_000_000));
        assert_eq!(parse_size("2GiB"), Ok(2 << 30));
        assert_eq!(parse_size("2G"), Ok(2 << 30));
        assert_eq!(parse_size("64k"), Ok(65536));
        assert_eq!(parse_size("1.5 kB"), Ok(1500));
        assert_eq!(parse_size("32MiB"), Ok(32 << 20));
        for bad in ["", "MB", "-1", "0", "1 parsec", "1e400", "0.1"] {
            assert!(parse_size(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_summary_names_drops_and_missing_files() {
        use crate::bundle::manifest::{FileRecord, Point, Stop};
        let m = Manifest {
            started: "2026-01-01T00:00:00.000000000Z".into(),
            stopped: "2026-01-01T00:00:02.500000000Z".into(),
            stop: Stop {
                reason: "signal".into(),
                detail: "SIGINT".into(),
            },
            points: vec![
                Point {
                    name: "eth0".into(),
                    packets: 10,
                    ..Point::default()
                },
                Point {
                    name: "ns:eth0".into(),
                    packets: 5,
                    kernel_drops: 2,
                    ..Point::default()
                },
            ],
            files: vec![FileRecord {
                name: "nft-after.json".into(),
                error: Some("`nft` is not installed (not found on PATH)".into()),
                ..FileRecord::default()
            }],
            ..Manifest::default()
        };
        assert_eq!(
            summary("b", &m),
            [
                "b: 15 packets (eth0 10, ns:eth0 5), the kernel dropped packets: ns:eth0 2; stopped by SIGINT after 2.5s",
                "not collected: nft-after.json: `nft` is not installed (not found on PATH)"
            ]
        );
    }
}
