//! capture: turns the inputs named on the command line (pcap, pcapng, gzip-compressed
//! either, or `-` for stdin) into capture points and a stream of decoded packets.
//!
//! A *capture point* is one place packets were seen: a classic pcap file is one point
//! (named by its file stem, or `NAME=path`); every pcapng interface description block
//! is its own point (named by `if_name`); a `tcpdump -i any` capture (LINUX_SLL2) is
//! split into one point per interface index, named from an `ip -o link` listing when
//! one is given. Frames are decoded here, one at a time, and only their owned summaries
//! leave this module: memory does not grow with the number of packets.
//!
//! Trouble is reported, never fatal: undecodable frames are counted per reason, a
//! truncated or corrupt file becomes a located [`Warning`] and everything read before
//! it is kept.

pub mod reader;

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use flate2::read::MultiGzDecoder;
use serde::Serialize;

use crate::decode;
use crate::diag::{Location, Warning};
use crate::model::Packet;
use reader::{FrameReader, Next, ReadProblem};

/// A capture input as given on the command line: `path`, `NAME=path` or `-`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InputSpec {
    /// Explicit point name (`NAME=path`).
    pub label: Option<String>,
    /// The path, or `-` for standard input.
    pub path: PathBuf,
}

impl InputSpec {
    /// How the input is named in messages: the path as given.
    pub fn display(&self) -> String {
        self.path.display().to_string()
    }

    pub fn is_stdin(&self) -> bool {
        self.path.as_os_str() == "-"
    }

    /// File stem without capture and compression extensions: `docker0.pcap.gz` → `docker0`.
    pub fn stem(&self) -> String {
        if self.is_stdin() {
            return "stdin".into();
        }
        let mut name = self
            .path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| self.display());
        for ext in [".gz", ".pcapng", ".pcap", ".cap", ".ntar"] {
            if name.len() > ext.len() && name.to_ascii_lowercase().ends_with(ext) {
                name.truncate(name.len() - ext.len());
            }
        }
        name
    }
}

impl FromStr for InputSpec {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        if s.is_empty() {
            return Err("empty capture path".into());
        }
        // `NAME=path`, unless the whole argument is itself an existing file (a file
        // name may contain '='). A name never contains a path separator.
        if let Some((name, path)) = s.split_once('=') {
            if !name.is_empty() && !name.contains('/') && !Path::new(s).exists() {
                if path.is_empty() {
                    return Err(format!("'{s}': no path after '{name}='"));
                }
                return Ok(InputSpec {
                    label: Some(name.to_string()),
                    path: PathBuf::from(path),
                });
            }
        }
        Ok(InputSpec {
            label: None,
            path: PathBuf::from(s),
        })
    }
}

/// Interface names by index, for LINUX_SLL2 captures (which record only the ifindex).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct IfNames(pub BTreeMap<u32, String>);

impl IfNames {
    /// Parses `ip -o link` / `ip link` output (`3: docker0: <...>`, `5: veth0@if4: ...`)
    /// or plain `INDEX=NAME` / `INDEX NAME` lines. Lines that fit neither are errors
    /// with their line number.
    pub fn parse(text: &str) -> Result<IfNames, String> {
        let mut map = BTreeMap::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            // `ip link` (without -o) puts attributes on indented continuation lines.
            if line.is_empty()
                || line.starts_with('#')
                || line.starts_with("link/")
                || line.starts_with("altname")
            {
                continue;
            }
            let parsed = if let Some((idx, rest)) = line.split_once(": ") {
                let name = rest.split(':').next().unwrap_or("").trim();
                let name = name.split('@').next().unwrap_or(name);
                idx.trim().parse::<u32>().ok().zip(Some(name.to_string()))
            } else {
                line.split_once(['=', ' ']).and_then(|(idx, name)| {
                    idx.trim()
                        .parse::<u32>()
                        .ok()
                        .zip(Some(name.trim().to_string()))
                })
            };
            match parsed {
                Some((idx, name)) if !name.is_empty() => {
                    map.insert(idx, name);
                }
                _ => {
                    // Continuation lines of plain `ip link` output start with spaces;
                    // anything else is not an interface listing.
                    return Err(format!(
                        "line {}: expected `INDEX: NAME: ...` or `INDEX=NAME`",
                        i + 1
                    ));
                }
            }
        }
        Ok(IfNames(map))
    }
}

/// Options that shape how captures are read.
#[derive(Clone, Debug, Default)]
pub struct ReadOptions {
    pub ifnames: IfNames,
}

/// A capture point as discovered in one input.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PointInfo {
    /// Name used in every report. Unique across a run (see [`assign_names`]).
    pub name: String,
    /// The input path as given.
    pub source: String,
    /// Link type name (`ETHERNET`, `LINUX_SLL2`, ...).
    pub linktype: String,
    /// The interface as the file names it: pcapng `if_name` or `ifindex N`.
    pub interface: Option<String>,
    /// Frames that decoded into packets at this point.
    pub packets: u64,
    pub first_ns: Option<i64>,
    pub last_ns: Option<i64>,
}

/// Per-input counters, for summaries.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct InputStats {
    pub frames: u64,
    pub packets: u64,
    /// Frames that yielded no packet, by reason.
    pub skipped: BTreeMap<String, u64>,
    /// Packets the snaplen cut short (decoded from what was captured).
    pub truncated: u64,
}

/// What reading one input produced, besides the packets handed to the sink.
#[derive(Clone, Debug, Default)]
pub struct InputResult {
    pub source: String,
    pub points: Vec<PointInfo>,
    pub stats: InputStats,
    pub warnings: Vec<Warning>,
    /// `remap[i]` is the position in `points` of the point that `sink` was told was
    /// number `i` (points are numbered as discovered, then sorted).
    pub remap: Vec<usize>,
}

/// Key of a point inside one input, before names are assigned.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
enum LocalKey {
    Interface(usize),
    IfIndex(usize, u32),
}

/// Opens an input, transparently decompressing gzip.
pub fn open(spec: &InputSpec) -> io::Result<Box<dyn Read + Send>> {
    let raw: Box<dyn Read + Send> = if spec.is_stdin() {
        Box::new(io::stdin())
    } else {
        Box::new(File::open(&spec.path)?)
    };
    let mut buffered = BufReader::with_capacity(1 << 16, raw);
    let head = buffered.fill_buf()?;
    if head.len() >= 2 && head[0] == 0x1f && head[1] == 0x8b {
        Ok(Box::new(MultiGzDecoder::new(buffered)))
    } else {
        Ok(Box::new(buffered))
    }
}

/// Reads one input, decoding every frame and handing each packet to `sink` with the
/// index (into [`InputResult::points`]) of the point it was seen at. Points are ordered
/// by interface, then interface index. `Packet::point` is left for the caller to set.
pub fn read_input(
    spec: &InputSpec,
    opts: &ReadOptions,
    mut sink: impl FnMut(usize, Packet),
) -> InputResult {
    let source = spec.display();
    let mut result = InputResult {
        source: source.clone(),
        ..Default::default()
    };
    let stream = match open(spec) {
        Ok(s) => s,
        Err(e) => {
            result.warnings.push(Warning::new(
                &source,
                Location::File,
                format!("cannot read: {e}"),
            ));
            return result;
        }
    };
    let mut reader = match FrameReader::new(stream) {
        Ok(r) => r,
        Err(p) => {
            result.warnings.push(problem_warning(&source, &p));
            return result;
        }
    };

    // Points in order of discovery; sorted by key at the end (see `remap`).
    let mut keys: HashMap<LocalKey, usize> = HashMap::new();
    let mut points: Vec<(LocalKey, PointInfo)> = Vec::new();
    let stem = spec.stem();
    loop {
        let frame = match reader.next_frame() {
            Next::Frame(f) => f,
            Next::Problem(p) => {
                result.warnings.push(problem_warning(&source, &p));
                if p.fatal {
                    break;
                }
                continue;
            }
            Next::End => break,
        };
        result.stats.frames += 1;
        let decoded = decode::decode(frame.linktype, frame.data, frame.orig_len);
        let (ifindex, mut packet) = match decoded {
            Ok(d) => (d.ifindex, d.packet),
            Err(skip) => {
                *result.stats.skipped.entry(skip.reason()).or_insert(0) += 1;
                continue;
            }
        };
        let key = match ifindex {
            Some(idx) => LocalKey::IfIndex(frame.interface, idx),
            None => LocalKey::Interface(frame.interface),
        };
        let local = *keys.entry(key).or_insert_with(|| {
            points.push((
                key,
                PointInfo {
                    name: String::new(),
                    source: source.clone(),
                    linktype: reader::linktype_name(frame.linktype),
                    interface: None,
                    packets: 0,
                    first_ns: None,
                    last_ns: None,
                },
            ));
            points.len() - 1
        });
        let info = &mut points[local].1;
        info.packets += 1;
        info.first_ns = Some(info.first_ns.map_or(frame.ts_ns, |t| t.min(frame.ts_ns)));
        info.last_ns = Some(info.last_ns.map_or(frame.ts_ns, |t| t.max(frame.ts_ns)));
        result.stats.packets += 1;
        if packet.truncated {
            result.stats.truncated += 1;
        }
        packet.ts_ns = frame.ts_ns;
        sink(local, packet);
    }

    // Interfaces a pcapng file declared but that carried no packet are points too:
    // "nothing was seen on eth0" is evidence.
    for (i, iface) in reader.interfaces().iter().enumerate() {
        let key = LocalKey::Interface(i);
        let has_sll2_children = points
            .iter()
            .any(|(k, _)| matches!(k, LocalKey::IfIndex(f, _) if *f == i));
        if !keys.contains_key(&key) && !has_sll2_children {
            keys.insert(key, points.len());
            points.push((
                key,
                PointInfo {
                    name: String::new(),
                    source: source.clone(),
                    linktype: reader::linktype_name(iface.linktype),
                    interface: None,
                    packets: 0,
                    first_ns: None,
                    last_ns: None,
                },
            ));
        }
    }

    let ifaces = reader.interfaces();
    let multi = points.len() > 1;
    for (key, info) in &mut points {
        let (name, interface) = match *key {
            LocalKey::Interface(i) => {
                let ifname = ifaces.get(i).and_then(|f| f.name.clone());
                let name = match (&spec.label, &ifname, multi) {
                    (Some(l), _, false) => l.clone(),
                    (None, _, false) if reader.format() == reader::Format::Pcap => stem.clone(),
                    (Some(l), Some(n), true) => format!("{l}:{n}"),
                    (None, Some(n), _) => n.clone(),
                    (Some(l), None, true) => format!("{l}:{i}"),
                    (None, None, false) => stem.clone(),
                    (None, None, true) => format!("{stem}:{i}"),
                };
                (name, ifname)
            }
            LocalKey::IfIndex(_, idx) => {
                let resolved = opts.ifnames.0.get(&idx).cloned();
                let name = match (&spec.label, resolved) {
                    (Some(l), Some(n)) => format!("{l}:{n}"),
                    (None, Some(n)) => n,
                    (Some(l), None) => format!("{l}:if{idx}"),
                    (None, None) => format!("{stem}:if{idx}"),
                };
                (name, Some(format!("ifindex {idx}")))
            }
        };
        info.name = name;
        info.interface = interface;
    }

    // Deterministic point order: by key. Packets were handed out with discovery
    // indices, so callers remap with the permutation returned in `order`.
    let mut order: Vec<usize> = (0..points.len()).collect();
    order.sort_by_key(|&i| points[i].0);
    let mut sorted = vec![None; points.len()];
    for (new, &old) in order.iter().enumerate() {
        sorted[new] = Some(points[old].1.clone());
    }
    result.points = sorted.into_iter().flatten().collect();
    result.remap = vec![0; order.len()];
    for (new, &old) in order.iter().enumerate() {
        result.remap[old] = new;
    }
    result
}

fn problem_warning(source: &str, p: &ReadProblem) -> Warning {
    let message = if p.fatal && p.offset > 0 {
        format!(
            "{}; stopped reading here, packets before this point are kept",
            p.message
        )
    } else {
        p.message.clone()
    };
    Warning::new(
        source,
        Location::Byte {
            offset: p.offset,
            frame: p.frame,
        },
        message,
    )
}

/// Makes point names unique across a run: when two inputs yield the same name
/// (`host1/eth0.pcap`, `host2/eth0.pcap`), the parent folder is prefixed; if that is
/// still ambiguous, `#2`, `#3`, ... are appended in input order.
pub fn assign_names(specs: &[InputSpec], results: &mut [InputResult]) {
    let mut count: HashMap<String, usize> = HashMap::new();
    for r in results.iter() {
        for p in &r.points {
            *count.entry(p.name.clone()).or_insert(0) += 1;
        }
    }
    for (spec, r) in specs.iter().zip(results.iter_mut()) {
        let parent = spec
            .path
            .parent()
            .and_then(|p| p.file_name())
            .map(|p| p.to_string_lossy().into_owned());
        for p in &mut r.points {
            if count.get(&p.name).copied().unwrap_or(0) > 1 && spec.label.is_none() {
                if let Some(parent) = &parent {
                    p.name = format!("{parent}/{}", p.name);
                }
            }
        }
    }
    let mut seen: HashMap<String, usize> = HashMap::new();
    for r in results.iter_mut() {
        for p in &mut r.points {
            let n = seen.entry(p.name.clone()).or_insert(0);
            *n += 1;
            if *n > 1 {
                p.name = format!("{}#{}", p.name, n);
            }
        }
    }
}

impl fmt::Display for InputSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.label {
            Some(l) => write!(f, "{l}={}", self.path.display()),
            None => write!(f, "{}", self.path.display()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn input_spec_forms() {
        let s: InputSpec = "docker0.pcap".parse().unwrap();
        assert_eq!(s.label, None);
        assert_eq!(s.stem(), "docker0");
        let s: InputSpec = "inside=/tmp/x/a.pcapng.gz".parse().unwrap();
        assert_eq!(s.label.as_deref(), Some("inside"));
        assert_eq!(s.stem(), "a");
        let s: InputSpec = "-".parse().unwrap();
        assert!(s.is_stdin());
        assert!("x=".parse::<InputSpec>().is_err());
        let s: InputSpec = "./dir/a=b.pcap".parse().unwrap();
        assert_eq!(s.label, None);
    }

    #[test]
    fn ifnames_from_ip_link() {
        let text = "1: lo: <LOOPBACK,UP,LOWER_UP> mtu 65536 qdisc noqueue state UNKNOWN mode DEFAULT group default qlen 1000\\    link/loopback 00:00:00:00:00:00 brd 00:00:00:00:00:00\n\
                    3: docker0: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1500\n\
                    5: veth-c1@if4: <BROADCAST> mtu 1500\n    link/ether 02:42:ac:11:00:02 brd ff:ff:ff:ff:ff:ff\n\
                    7=eth0\n";
        let n = IfNames::parse(text).unwrap();
        assert_eq!(n.0.get(&1).map(String::as_str), Some("lo"));
        assert_eq!(n.0.get(&3).map(String::as_str), Some("docker0"));
        assert_eq!(n.0.get(&5).map(String::as_str), Some("veth-c1"));
        assert_eq!(n.0.get(&7).map(String::as_str), Some("eth0"));
        assert!(IfNames::parse("what is this").is_err());
    }
}
