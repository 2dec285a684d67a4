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
//! IP fragments are put back together per capture point ([`decode::defrag`], bounded
//! in datagrams, bytes and capture time) and each whole datagram is one packet, seen
//! when its last fragment was; fragments that make no datagram are counted as skipped,
//! by reason.
//!
//! Trouble is reported, never fatal: undecodable frames are counted per reason, a
//! truncated or corrupt file becomes a located [`Warning`] and everything read before
//! it is kept.

pub mod range;
pub mod reader;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::io::{self, BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use flate2::read::MultiGzDecoder;
use serde::Serialize;

use crate::decode::{
    self,
    defrag::{Datagram, Limits, Reassembler},
};
use crate::diag::{Location, Warning};
use crate::input::progress::Reading;
use crate::model::{CtTimeouts, Packet, Tunnel};
pub use range::TimeRange;
use reader::{FrameReader, Next, ReadProblem};

/// A capture input as given on the command line: `path`, `NAME=path` or `-`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InputSpec {
    /// Explicit point name (`NAME=path`).
    pub label: Option<String>,
    /// The path, or `-` for standard input.
    pub path: PathBuf,
    /// What goes before the names of this input's points when they clash with
    /// another input's (a bundle's host name); by default the parent folder.
    pub prefix: Option<String>,
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
                    prefix: None,
                });
            }
        }
        Ok(InputSpec {
            label: None,
            path: PathBuf::from(s),
            prefix: None,
        })
    }
}

/// Interface names by index, for LINUX_SLL2 captures (which record only the ifindex),
/// and the bridge each bridge port belongs to (`master docker0`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct IfNames {
    pub names: BTreeMap<u32, String>,
    /// Port name -> the bridge (or bond, VRF) it is enslaved to.
    pub masters: BTreeMap<String, String>,
}

impl IfNames {
    /// Parses `ip -o link` / `ip link` output (`3: docker0: <...>`, `5: veth0@if4: ...`),
    /// `ip -j link` JSON, or plain `INDEX=NAME` / `INDEX NAME` lines. Lines that fit
    /// none are errors with their line number.
    pub fn parse(text: &str) -> Result<IfNames, String> {
        if text.trim_start().starts_with('[') {
            return Self::parse_json(text);
        }
        let mut map = BTreeMap::new();
        let mut masters = BTreeMap::new();
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
                    let mut words = line.split_whitespace();
                    if words.any(|w| w == "master") {
                        if let Some(m) = words.next() {
                            masters.insert(name.clone(), m.to_string());
                        }
                    }
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
        Ok(IfNames {
            names: map,
            masters,
        })
    }
}

impl IfNames {
    /// `ip -j link`: an array of objects with `ifindex` and `ifname`.
    fn parse_json(text: &str) -> Result<IfNames, String> {
        #[derive(serde::Deserialize)]
        struct Link {
            ifindex: u32,
            ifname: String,
            master: Option<String>,
        }
        let links: Vec<Link> =
            serde_json::from_str(text).map_err(|e| format!("not `ip -j link` output: {e}"))?;
        let masters = (links.iter())
            .filter_map(|l| Some((l.ifname.clone(), l.master.clone()?)))
            .collect();
        Ok(IfNames {
            names: links.into_iter().map(|l| (l.ifindex, l.ifname)).collect(),
            masters,
        })
    }
}

/// Options that shape how captures are read.
#[derive(Clone, Debug, Default)]
pub struct ReadOptions {
    pub ifnames: IfNames,
    /// Which tunnels decoding opens (the VXLAN ports).
    pub decode: decode::Options,
    /// The frames read: those captured in this range (`--since`, `--until`).
    pub range: TimeRange,
    /// How long a quiet UDP or ICMP tuple stays one flow: conntrack's timeouts, the
    /// host's when its settings are among the inputs.
    pub timeouts: CtTimeouts,
}

/// A capture point as discovered in one input.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PointInfo {
    /// Name used in every report. Unique across a run (see `assign_names`).
    pub name: String,
    /// The input path as given.
    pub source: String,
    /// Link type name (`ETHERNET`, `LINUX_SLL2`, ...).
    pub linktype: String,
    /// The interface as the file names it (pcapng `if_name`); for a `-i any` capture,
    /// the name `--links` gives its index, else `ifindex N`.
    pub interface: Option<String>,
    /// Frames that decoded into packets at this point.
    pub packets: u64,
    pub first_ns: Option<i64>,
    pub last_ns: Option<i64>,
    /// The time range the point was read in: its packets are those of the range, and
    /// it was capturing at most there.
    #[serde(skip)]
    pub range: TimeRange,
    /// The bridge its interface is a port of, as `--links` says (`master docker0`).
    #[serde(skip)]
    pub master: Option<String>,
}

impl PointInfo {
    /// The interface the point is, as `ip link` names it: the file's or `--links`'
    /// name for it, else the point's own name (a pcap file's stem).
    pub fn link_name(&self) -> &str {
        self.interface.as_deref().unwrap_or(&self.name)
    }
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
    /// Frames that were IP fragments of datagrams put back together: each whole
    /// datagram counts once in `packets`. Fragments of datagrams that could not be put
    /// together are in `skipped`, by reason.
    #[serde(skip_serializing_if = "is_zero")]
    pub fragments: u64,
    /// Frames captured outside the time range read ([`ReadOptions::range`]): counted,
    /// not decoded, in no point's packets.
    #[serde(skip_serializing_if = "is_zero")]
    pub outside_range: u64,
    /// Flows of link-local control traffic (neighbour discovery, MLD, IGMP, DHCP,
    /// multicast, ...) left out of the flow lists, by point name. Empty when they are
    /// listed.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub control_flows: BTreeMap<String, u64>,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
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
    /// The first and last time of its frames outside the range read, if any.
    pub outside: Option<(i64, i64)>,
    /// Every packet came through one capture interface of the file (a pcap file, or a
    /// pcapng of one interface, such as `tcpdump -i any`: one socket), so the order of
    /// the frames is the order the kernel handed them over in, across the points the
    /// file is split into. A pcapng of several interfaces (dumpcap, `natcheck
    /// collect`) interleaves each interface's frames as they were read, not so.
    pub one_stream: bool,
}

/// Key of a point inside one input, before names are assigned.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
enum LocalKey {
    Interface(usize),
    IfIndex(usize, u32),
}

/// Opens an input, transparently decompressing gzip; its bytes count towards `reading`.
pub fn open(spec: &InputSpec, reading: &Reading) -> io::Result<Box<dyn Read + Send>> {
    let raw: Box<dyn Read + Send> = if spec.is_stdin() {
        Box::new(io::stdin())
    } else {
        crate::input::open_file(&spec.path)?
    };
    let mut buffered = BufReader::with_capacity(1 << 16, reading.count(raw));
    let head = buffered.fill_buf()?;
    if head.starts_with(&GZIP_MAGIC) {
        Ok(Box::new(MultiGzDecoder::new(buffered)))
    } else {
        Ok(Box::new(buffered))
    }
}

/// Reads one input, decoding every frame and handing each packet to `sink` with the
/// index (into [`InputResult::points`]) of the point it was seen at. Points are ordered
/// by interface, then interface index. `Packet::point` is left for the caller to set.
///
/// A regular file that is not compressed is read where the kernel maps it
/// ([`FrameReader::mapped`]); anything else as a stream.
pub fn read_input(
    spec: &InputSpec,
    opts: &ReadOptions,
    mut sink: impl FnMut(usize, &Packet),
) -> InputResult {
    let mut result = InputResult {
        source: spec.display(),
        ..Default::default()
    };
    let reading = Reading::start(&result.source, (!spec.is_stdin()).then_some(&*spec.path));
    let map = (!spec.is_stdin())
        .then(|| crate::input::map_file(&spec.path))
        .flatten()
        .filter(|map| !map.starts_with(&GZIP_MAGIC));
    if let Some(map) = map {
        let reader = FrameReader::mapped(map);
        read_from(reader, spec, opts, &reading, &mut result, &mut sink);
        return result;
    }
    match open(spec, &reading) {
        Ok(stream) => {
            let reader = FrameReader::new(stream);
            read_from(reader, spec, opts, &reading, &mut result, &mut sink);
        }
        Err(e) => result.warnings.push(Warning::new(
            &result.source,
            Location::File,
            format!("cannot read: {e}"),
        )),
    }
    result
}

/// The first bytes of a gzip stream.
const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// Reads the frames of an opened input (or records why its header could not be
/// read) and finds, names and orders its points.
fn read_from<R: Read>(
    reader: Result<FrameReader<R>, ReadProblem>,
    spec: &InputSpec,
    opts: &ReadOptions,
    reading: &Reading,
    result: &mut InputResult,
    sink: &mut impl FnMut(usize, &Packet),
) {
    let mut reader = match reader {
        Ok(r) => r,
        Err(p) => {
            result.warnings.push(problem_warning(&result.source, &p));
            return;
        }
    };
    let mut points = Points::default();
    read_frames(&mut reader, reading, opts, &mut points, result, sink);
    result.one_stream = points.one_stream();
    points.add_idle_interfaces(reader.interfaces(), &result.source);
    points.name(spec, opts, reader.interfaces(), reader.format());
    (result.points, result.remap) = points.into_sorted();
    for p in &mut result.points {
        p.range = opts.range;
    }
}

/// Reads frames up to the end or a fatal problem: each is counted, decoded, and its
/// packet handed to `sink` with the discovery index of its point. Problems become
/// warnings, undecodable frames a count per reason.
fn read_frames<R: Read>(
    reader: &mut FrameReader<R>,
    reading: &Reading,
    read: &ReadOptions,
    points: &mut Points,
    result: &mut InputResult,
    sink: &mut impl FnMut(usize, &Packet),
) {
    let opts = &read.decode;
    let mut defrag = Reassembler::new(Limits::default());
    let mapped = reader.is_mapped();
    // The frame being decoded, written in place frame after frame.
    let mut last = decode::Decoded::EMPTY;
    // The first and last time of the frames outside the range read.
    let mut outside: Option<(i64, i64)> = None;
    loop {
        let frame = match reader.next_frame() {
            Next::Frame(f) => f,
            Next::Problem(p) => {
                result.warnings.push(problem_warning(&result.source, &p));
                if p.fatal {
                    break;
                }
                continue;
            }
            Next::End => break,
        };
        result.stats.frames += 1;
        reading.packet();
        if mapped {
            // No stream counts the bytes of a mapped file: the reader is this far in.
            reading.read_to(frame.offset);
        }
        if !read.range.contains(frame.ts_ns) {
            result.stats.outside_range += 1;
            let t = frame.ts_ns;
            outside = Some(outside.map_or((t, t), |(a, b)| (a.min(t), b.max(t))));
            continue;
        }
        let decoded =
            decode::decode_into(frame.linktype, frame.data, frame.orig_len, opts, &mut last);
        if let Err(skip) = decoded {
            *result.stats.skipped.entry(skip.reason()).or_insert(0) += 1;
            continue;
        }
        let key = match last.ifindex {
            Some(idx) => LocalKey::IfIndex(frame.interface, idx),
            None => LocalKey::Interface(frame.interface),
        };
        let local = points.get_or_add(key, &result.source, frame.linktype);
        if let Some(fragment) = &last.fragment {
            let Some(datagram) = defrag.push(key, fragment, frame.data, frame.ts_ns) else {
                continue;
            };
            match whole_datagram(&datagram, &last.packet, opts) {
                Ok(p) => {
                    last.packet = p;
                    result.stats.fragments += datagram.frames;
                }
                Err(skip) => {
                    *result.stats.skipped.entry(skip.reason()).or_insert(0) += datagram.frames;
                    continue;
                }
            }
        }
        let packet = &mut last.packet;
        points.saw(local, frame.ts_ns);
        result.stats.packets += 1;
        if packet.truncated {
            result.stats.truncated += 1;
        }
        packet.ts_ns = frame.ts_ns;
        sink(local, packet);
    }
    for (reason, n) in defrag.finish() {
        *result.stats.skipped.entry(reason.to_string()).or_insert(0) += n;
    }
    result.outside = outside;
}

/// Decodes a reassembled datagram as one packet, seen when its last fragment was, with
/// the link direction its fragments were captured with, inside the tunnels that
/// carried them, and, for IPv6, the fragment identification as its IP ID.
fn whole_datagram(
    datagram: &Datagram,
    last: &Packet,
    opts: &decode::Options,
) -> Result<Packet, decode::Skip> {
    let len = u32::try_from(datagram.len).unwrap_or(u32::MAX);
    let mut packet = decode::decode_with(decode::LINKTYPE_RAW, &datagram.bytes, len, opts)?.packet;
    packet.link_dir = last.link_dir;
    packet.tunnel = Tunnel::around(last.tunnel, packet.tunnel);
    packet.ip_id = Some(datagram.key.id);
    Ok(packet)
}

/// The capture points of one input, in order of discovery, before they are named.
#[derive(Default)]
struct Points {
    /// Keyed by what the file says (interface numbers): a keyed hasher, a fast one.
    index: HashMap<LocalKey, usize, foldhash::fast::RandomState>,
    list: Vec<(LocalKey, PointInfo)>,
    /// The point of the previous packet: runs of packets from one point are the rule.
    last: Option<(LocalKey, usize)>,
}

impl Points {
    /// The discovery index of the point `key`, added when first seen.
    fn get_or_add(&mut self, key: LocalKey, source: &str, linktype: u32) -> usize {
        if let Some((last, i)) = self.last {
            if last == key {
                return i;
            }
        }
        let list = &mut self.list;
        let i = *self.index.entry(key).or_insert_with(|| {
            list.push((key, unnamed_point(source, linktype)));
            list.len() - 1
        });
        self.last = Some((key, i));
        i
    }

    /// Counts a packet seen at point `i` at `ts_ns`.
    fn saw(&mut self, i: usize, ts_ns: i64) {
        let Some((_, info)) = self.list.get_mut(i) else {
            return;
        };
        info.packets += 1;
        info.first_ns = Some(info.first_ns.map_or(ts_ns, |t| t.min(ts_ns)));
        info.last_ns = Some(info.last_ns.map_or(ts_ns, |t| t.max(ts_ns)));
    }

    /// Interfaces a pcapng file declared but that carried no packet are points too:
    /// "nothing was seen on eth0" is evidence. An interface whose packets were split
    /// by interface index (LINUX_SLL2) already has its points.
    /// Linear in the number of points and interfaces: a file may declare hundreds of
    /// thousands of interfaces.
    fn add_idle_interfaces(&mut self, interfaces: &[reader::Interface], source: &str) {
        let split: HashSet<usize> = self
            .list
            .iter()
            .filter_map(|(k, _)| match k {
                LocalKey::IfIndex(f, _) => Some(*f),
                LocalKey::Interface(_) => None,
            })
            .collect();
        for (i, iface) in interfaces.iter().enumerate() {
            if !split.contains(&i) {
                self.get_or_add(LocalKey::Interface(i), source, iface.linktype);
            }
        }
    }

    /// Names every point (see the module documentation) and records its interface.
    fn name(
        &mut self,
        spec: &InputSpec,
        opts: &ReadOptions,
        interfaces: &[reader::Interface],
        format: reader::Format,
    ) {
        let stem = spec.stem();
        let label = spec.label.as_deref();
        let multi = self.list.len() > 1;
        for (key, info) in &mut self.list {
            match *key {
                LocalKey::Interface(i) => {
                    let ifname = interfaces.get(i).and_then(|f| f.name.clone());
                    let pcap = format == reader::Format::Pcap;
                    info.name =
                        interface_point_name(label, ifname.as_deref(), &stem, i, multi, pcap);
                    info.interface = ifname;
                }
                LocalKey::IfIndex(_, idx) => {
                    let resolved = opts.ifnames.names.get(&idx).map(String::as_str);
                    info.name = ifindex_point_name(label, resolved, &stem, idx);
                    info.interface =
                        Some(resolved.map_or_else(|| format!("ifindex {idx}"), str::to_string));
                }
            }
        }
    }

    /// Whether the packets of every point came through one interface of the file.
    fn one_stream(&self) -> bool {
        let mut idbs = self.list.iter().map(|(k, _)| match k {
            LocalKey::Interface(i) | LocalKey::IfIndex(i, _) => *i,
        });
        let first = idbs.next();
        idbs.all(|i| Some(i) == first)
    }

    /// The points in key order, and `remap`: for each discovery index, the position
    /// of its point in that order.
    fn into_sorted(self) -> (Vec<PointInfo>, Vec<usize>) {
        let mut order: Vec<usize> = (0..self.list.len()).collect();
        order.sort_by_key(|&i| self.list.get(i).map(|(k, _)| *k));
        let mut remap = vec![0; order.len()];
        for (new, &old) in order.iter().enumerate() {
            if let Some(r) = remap.get_mut(old) {
                *r = new;
            }
        }
        let mut by_discovery: Vec<Option<PointInfo>> =
            self.list.into_iter().map(|(_, info)| Some(info)).collect();
        let sorted = order
            .iter()
            .filter_map(|&old| by_discovery.get_mut(old).and_then(Option::take))
            .collect();
        (sorted, remap)
    }
}

fn unnamed_point(source: &str, linktype: u32) -> PointInfo {
    PointInfo {
        name: String::new(),
        source: source.to_string(),
        linktype: reader::linktype_name(linktype),
        interface: None,
        packets: 0,
        first_ns: None,
        last_ns: None,
        range: TimeRange::default(),
        master: None,
    }
}

/// The name of the point of interface `i` of a file: the `NAME=` label when it is the
/// only point, else the pcapng `if_name` (after the label, if any), else the file's
/// stem or label with the interface's position. A classic pcap file is one point,
/// named by its stem.
fn interface_point_name(
    label: Option<&str>,
    ifname: Option<&str>,
    stem: &str,
    i: usize,
    multi: bool,
    pcap: bool,
) -> String {
    match (label, ifname, multi) {
        (Some(l), _, false) => l.to_string(),
        (None, _, false) if pcap => stem.to_string(),
        (Some(l), Some(n), true) => format!("{l}:{n}"),
        (None, Some(n), _) => n.to_string(),
        (Some(l), None, true) => format!("{l}:{i}"),
        (None, None, false) => stem.to_string(),
        (None, None, true) => format!("{stem}:{i}"),
    }
}

/// The name of the point of interface index `idx` in a LINUX_SLL2 capture: the name
/// the `ip link` listing gives it, else `if<idx>`, after the label or stem.
fn ifindex_point_name(label: Option<&str>, resolved: Option<&str>, stem: &str, idx: u32) -> String {
    match (label, resolved) {
        (Some(l), Some(n)) => format!("{l}:{n}"),
        (None, Some(n)) => n.to_string(),
        (Some(l), None) => format!("{l}:if{idx}"),
        (None, None) => format!("{stem}:if{idx}"),
    }
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

/// What a run does once every input is read: point names made unique across inputs
/// (`assign_names`), and a warning where the time range missed every capture
/// (`range_missed`).
pub fn finish_inputs(specs: &[InputSpec], results: &mut [InputResult], opts: &ReadOptions) {
    for p in results.iter_mut().flat_map(|r| &mut r.points) {
        p.master = opts.ifnames.masters.get(p.link_name()).cloned();
    }
    assign_names(specs, results);
    range_missed(results, &opts.range);
}

/// When the time range read left out every frame of every input, and no input has
/// frames both before and after it, a warning on each that says when its frames were
/// captured: the range missed the captures (a wrong day, another clock). A capture
/// with nothing in the range beside others that have something is a quiet interface,
/// and captures that ran through a range with nothing in it saw a quiet time: neither
/// is a problem.
fn range_missed(results: &mut [InputResult], range: &TimeRange) {
    let ran_through = |(a, b): (i64, i64)| match *range {
        TimeRange {
            since: Some(s),
            until: Some(u),
        } => a < s && b >= u,
        _ => false,
    };
    let read = |r: &InputResult| r.stats.frames > r.stats.outside_range;
    if results
        .iter()
        .any(|r| read(r) || r.outside.is_none_or(ran_through))
    {
        return;
    }
    for r in results {
        let Some((a, b)) = r.outside else { continue };
        let message = format!(
            "no frame was captured {range} (--since/--until): its {} frames span {} to {}",
            r.stats.frames,
            range::rfc3339(a),
            range::rfc3339(b)
        );
        r.warnings
            .push(Warning::new(&r.source, Location::File, message));
    }
}

/// Makes point names unique across a run: when two inputs yield the same name
/// (`host1/eth0.pcap`, `host2/eth0.pcap`), the input's prefix (a bundle's host) or
/// else its parent folder is put before it (`host1/eth0`); if that is still
/// ambiguous, `#2`, `#3`, ... are appended in input order.
fn assign_names(specs: &[InputSpec], results: &mut [InputResult]) {
    let mut count: HashMap<String, usize> = HashMap::new();
    for r in results.iter() {
        for p in &r.points {
            *count.entry(p.name.clone()).or_insert(0) += 1;
        }
    }
    for (spec, r) in specs.iter().zip(results.iter_mut()) {
        let parent = spec.prefix.clone().or_else(|| {
            spec.path
                .parent()
                .and_then(|p| p.file_name())
                .map(|p| p.to_string_lossy().into_owned())
        });
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
    fn point_names() {
        let name =
            |label, ifname, multi, pcap| interface_point_name(label, ifname, "cap", 1, multi, pcap);
        // A classic pcap file: its label or stem.
        assert_eq!(name(None, None, false, true), "cap");
        assert_eq!(name(Some("inside"), None, false, true), "inside");
        // pcapng: the interface name, after the label when there are several points.
        assert_eq!(name(None, Some("eth0"), false, false), "eth0");
        assert_eq!(name(Some("inside"), Some("eth0"), false, false), "inside");
        assert_eq!(
            name(Some("inside"), Some("eth0"), true, false),
            "inside:eth0"
        );
        assert_eq!(name(None, Some("eth0"), true, false), "eth0");
        assert_eq!(name(None, None, true, false), "cap:1");
        assert_eq!(name(Some("inside"), None, true, false), "inside:1");
        assert_eq!(name(None, None, false, false), "cap");
        // LINUX_SLL2 interface indexes.
        assert_eq!(
            ifindex_point_name(None, Some("docker0"), "any", 3),
            "docker0"
        );
        assert_eq!(
            ifindex_point_name(Some("h"), Some("docker0"), "any", 3),
            "h:docker0"
        );
        assert_eq!(ifindex_point_name(None, None, "any", 3), "any:if3");
        assert_eq!(ifindex_point_name(Some("h"), None, "any", 3), "h:if3");
    }

    #[test]
    fn one_stream_is_one_capture_interface_however_many_points() {
        // `tcpdump -i any`: one interface of the file, split by interface index.
        let mut any = Points::default();
        any.get_or_add(LocalKey::IfIndex(0, 3), "any", 276);
        any.get_or_add(LocalKey::IfIndex(0, 2), "any", 276);
        assert!(any.one_stream());
        // A pcapng of two interfaces.
        let mut two = Points::default();
        two.get_or_add(LocalKey::Interface(0), "multi", 1);
        assert!(two.one_stream());
        two.get_or_add(LocalKey::Interface(1), "multi", 1);
        assert!(!two.one_stream());
    }

    #[test]
    fn points_are_found_counted_and_sorted() {
        let mut points = Points::default();
        let iface = |linktype| reader::Interface {
            linktype,
            name: None,
            description: None,
            section: 0,
        };
        // Discovered: ifindex 7 of interface 1, then interface 0, then ifindex 2 of 1.
        let a = points.get_or_add(LocalKey::IfIndex(1, 7), "s", 276);
        let b = points.get_or_add(LocalKey::Interface(0), "s", 1);
        let c = points.get_or_add(LocalKey::IfIndex(1, 2), "s", 276);
        assert_eq!((a, b, c), (0, 1, 2));
        assert_eq!(points.get_or_add(LocalKey::IfIndex(1, 7), "s", 276), 0);
        points.saw(a, 20);
        points.saw(a, 10);
        points.saw(99, 5);
        // Interface 1 has points by index, interface 2 carried nothing: a point.
        points.add_idle_interfaces(&[iface(1), iface(276), iface(1)], "s");
        assert_eq!(points.list.len(), 4);
        let (sorted, remap) = points.into_sorted();
        let keys: Vec<_> = sorted.iter().map(|p| (p.packets, p.first_ns)).collect();
        assert_eq!(keys, [(0, None), (0, None), (0, None), (2, Some(10))]);
        assert_eq!(sorted[3].last_ns, Some(20));
        // Interface(0) < Interface(2) < IfIndex(1, 2) < IfIndex(1, 7).
        assert_eq!(remap, [3, 0, 2, 1]);
    }

    #[test]
    fn ifnames_from_ip_link() {
        let text = "1: lo: <LOOPBACK,UP,LOWER_UP> mtu 65536 qdisc noqueue state UNKNOWN mode DEFAULT group default qlen 1000\\    link/loopback 00:00:00:00:00:00 brd 00:00:00:00:00:00\n\
                    3: docker0: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1500\n\
                    5: veth-c1@if4: <BROADCAST> mtu 1500 qdisc noqueue master docker0 state UP\n    link/ether 02:42:ac:11:00:02 brd ff:ff:ff:ff:ff:ff\n\
                    7=eth0\n";
        let n = IfNames::parse(text).unwrap();
        assert_eq!(n.names.get(&1).map(String::as_str), Some("lo"));
        assert_eq!(n.names.get(&3).map(String::as_str), Some("docker0"));
        assert_eq!(n.names.get(&5).map(String::as_str), Some("veth-c1"));
        assert_eq!(n.names.get(&7).map(String::as_str), Some("eth0"));
        // The bridge port names its bridge; nothing else does.
        let masters: Vec<(&str, &str)> = (n.masters.iter())
            .map(|(p, m)| (p.as_str(), m.as_str()))
            .collect();
        assert_eq!(masters, [("veth-c1", "docker0")]);
        assert!(IfNames::parse("what is this").is_err());
        let json = r#"[{"ifindex":1,"ifname":"lo","flags":["LOOPBACK"]},{"ifindex":4,"link_index":3,"ifname":"veth-c1","mtu":1500,"master":"cni0"}]"#;
        let n = IfNames::parse(json).unwrap();
        assert_eq!(n.names.get(&4).map(String::as_str), Some("veth-c1"));
        assert_eq!(n.names.len(), 2);
        assert_eq!(n.masters.get("veth-c1").map(String::as_str), Some("cni0"));
        assert!(IfNames::parse("[{\"ifindex\": \"x\"}]").is_err());
    }

    /// An Ethernet frame of a UDP datagram from 10.0.0.1 to 10.0.0.2.
    fn udp_frame() -> Vec<u8> {
        let mut frame = vec![0xff; 6];
        frame.extend_from_slice(&[2; 6]);
        frame.extend_from_slice(&[8, 0]);
        frame.extend_from_slice(&[
            0x45, 0, 0, 29, 0, 1, 0, 0, 64, 17, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2,
        ]);
        frame.extend_from_slice(&[3, 232, 0, 53, 0, 9, 0, 0, b'x']);
        frame
    }

    /// What reading the file at `path` gives, and the packets as they were handed on.
    fn read_file(path: &Path) -> (InputResult, Vec<(usize, Packet)>) {
        read_file_with(path, &ReadOptions::default())
    }

    fn read_file_with(path: &Path, opts: &ReadOptions) -> (InputResult, Vec<(usize, Packet)>) {
        let spec = InputSpec {
            label: None,
            path: path.to_path_buf(),
            prefix: None,
        };
        let mut seen = Vec::new();
        let r = read_input(&spec, opts, |i, p| seen.push((i, *p)));
        (r, seen)
    }

    #[test]
    fn frames_outside_the_time_range_are_counted_not_read() {
        use reader::tests::{block, epb, shb};
        let mut v = shb();
        block(&mut v, 1, &[1, 0, 0, 0, 0, 0, 0, 0]);
        let frame = udp_frame();
        // Out of time order on purpose: frame 5 came late.
        for ts in [0, 1, 2, 3, 4, 6, 7, 5, 8, 9] {
            epb(&mut v, 0, ts, &frame);
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.pcapng");
        std::fs::write(&path, &v).unwrap();
        let (_, all) = read_file(&path);
        let ts: Vec<i64> = all.iter().map(|(_, p)| p.ts_ns).collect();
        let mut sorted = ts.clone();
        sorted.sort_unstable();
        let range = |since, until| ReadOptions {
            range: TimeRange::new(since, until).unwrap(),
            ..Default::default()
        };
        // [t3, t7): frames 3, 4, 6 and the late 5.
        let (r, seen) = read_file_with(&path, &range(Some(sorted[3]), Some(sorted[7])));
        let got: Vec<i64> = seen.iter().map(|(_, p)| p.ts_ns).collect();
        assert_eq!(got, [ts[3], ts[4], ts[5], ts[7]]);
        assert_eq!(
            (r.stats.frames, r.stats.packets, r.stats.outside_range),
            (10, 4, 6)
        );
        assert_eq!(r.points[0].packets, 4);
        assert_eq!(r.points[0].first_ns, Some(sorted[3]));
        assert_eq!(r.points[0].last_ns, Some(sorted[6]));
        assert_eq!(
            r.points[0].range,
            TimeRange::new(Some(sorted[3]), Some(sorted[7])).unwrap()
        );
        assert!(r.warnings.is_empty());
        // One end only.
        let (r, _) = read_file_with(&path, &range(None, Some(sorted[1])));
        assert_eq!((r.stats.packets, r.stats.outside_range), (1, 9));
        // Nothing in the range: counted, and the time its frames span kept.
        let (r, seen) = read_file_with(&path, &range(Some(sorted[4] + 1), Some(sorted[5])));
        assert!(seen.is_empty() && r.warnings.is_empty());
        assert_eq!((r.stats.packets, r.stats.outside_range), (0, 10));
        assert_eq!(r.outside, Some((sorted[0], sorted[9])));
        // A range that left out every frame of every input is a warning on each that
        // says where its frames are; one input with frames in it beside is none.
        let after = TimeRange::new(Some(sorted[9] + 1), None).unwrap();
        let (mut missed, seen) = read_file_with(&path, &range(after.since, None));
        assert!(seen.is_empty() && missed.warnings.is_empty());
        let (some, _) = read_file_with(&path, &range(Some(sorted[9]), None));
        let mut both = [missed.clone(), some];
        range_missed(&mut both, &after);
        assert!(both.iter().all(|r| r.warnings.is_empty()));
        range_missed(std::slice::from_mut(&mut missed), &after);
        let w = &missed.warnings[0].message;
        assert!(w.starts_with("no frame was captured from "), "{w}");
        assert!(
            w.ends_with(&format!(
                "its 10 frames span {} to {}",
                range::rfc3339(sorted[0]),
                range::rfc3339(sorted[9])
            )),
            "{w}"
        );
    }

    #[test]
    fn a_mapped_file_reads_as_its_gzip_stream_does() {
        use reader::tests::{block, epb, shb};
        let mut v = shb();
        block(&mut v, 1, &[1, 0, 0, 0, 0, 0, 0, 0]);
        let frame = udp_frame();
        for ts in 0..3 {
            epb(&mut v, 0, ts, &frame);
        }
        // Cut inside the last block: a located warning, the same either way.
        v.truncate(v.len() - 5);
        let dir = tempfile::tempdir().unwrap();
        let plain = dir.path().join("p.pcapng");
        std::fs::write(&plain, &v).unwrap();
        let gz = dir.path().join("p.pcapng.gz");
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        io::Write::write_all(&mut enc, &v).unwrap();
        std::fs::write(&gz, enc.finish().unwrap()).unwrap();
        let read = |path: &Path| {
            let (r, seen) = read_file(path);
            (seen, r.stats, r.warnings.len(), r.points[0].packets)
        };
        let mapped = read(&plain);
        assert_eq!(mapped.0.len(), 2);
        assert_eq!(mapped.2, 1);
        assert_eq!(mapped, read(&gz));
        assert!(crate::input::map_file(&plain).is_some());
        assert!(crate::input::map_file(dir.path()).is_none());
    }

    #[test]
    fn very_many_interface_blocks() {
        use reader::tests::{block, epb, shb};
        // 200 000 interface descriptions (4 MB), one packet on the last: every
        // interface is a point, read in time and memory linear in the file.
        const N: usize = 200_000;
        let mut v = shb();
        let mut idb = Vec::new();
        block(&mut idb, 1, &[1, 0, 0, 0, 0, 0, 0, 0]);
        for _ in 0..N {
            v.extend_from_slice(&idb);
        }
        epb(&mut v, (N - 1) as u32, 0, &udp_frame());
        let dir = std::env::temp_dir().join(format!("natcheck-many-idb-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("many.pcapng");
        std::fs::write(&path, &v).unwrap();
        let (r, seen) = read_file(&path);
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(r.warnings.is_empty(), "{:?}", r.warnings);
        assert_eq!(r.points.len(), N);
        assert_eq!(r.stats.packets, 1);
        assert_eq!(seen.len(), 1);
        let last = &r.points[r.remap[seen[0].0]];
        assert_eq!(last.name, format!("many:{}", N - 1));
        assert_eq!(last.packets, 1);
        assert_eq!(r.points[0].name, "many:0");
        assert_eq!(r.points[0].packets, 0);
    }
}
