//! collect: `natcheck collect`, run on the NAT host, gathers the whole evidence
//! bundle into one directory: a pcapng of every named interface at once (kernel
//! packet sockets with TPACKET_V3 rings, in other network namespaces too), the
//! conntrack table, events and statistics, the rules before and after, the
//! addresses, links, routes and sysctls, and `manifest.json` saying what each file
//! is, how and when it was made, and its SHA-256 (layout and manifest: `bundle`).
//!
//! The order of a collection: every capture point is opened first (a missing
//! interface, namespace or tcpdump for `--filter` fails before anything is
//! written); then the event recording starts, the context before is taken, the
//! capture runs until the first of its limits or SIGINT/SIGTERM, the context after
//! is taken, the event recording ends, and the manifest is written last. A signal
//! only stops the capture: the bundle is always finished.
//!
//! With `--ring SIZE`, the capture is a flight recorder (`flight`): only the most
//! recent SIZE of packets is kept, and the capture file is made of them at the
//! stop, after the context after is taken.
//!
//! Modules: `target` (what `-i` names), `filter` (tcpdump syntax to BPF), `ring`
//! (the packet socket and its ring, all the unsafe code), `capture` (the threads),
//! `flight` (the flight recorder), `pcapng` (the blocks), `context` (everything but
//! the packets), `stop`.

pub mod capture;
pub mod context;
pub mod filter;
pub mod flight;
pub mod pcapng;
pub mod ring;
pub mod stop;
pub mod target;

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use anyhow::Context as _;

use crate::bundle::manifest::{self, rfc3339, rfc3339_ns, FileRecord, Manifest};
use crate::bundle::{Kind, MANIFEST};
use crate::capture::reader::linktype_name;
use capture::{AnyInterfaces, Describe, Met, PointResult, Sink};
use flight::{Kept, Recorder, Tally};
use ring::{PacketSocket, RingConfig};
use stop::{Reason, Stop};
use target::Target;

/// How long the kernel fills a ring block before handing it over anyway.
pub const RING_RETIRE: Duration = Duration::from_millis(50);

/// The default snap length: whole packets (libpcap's MAXIMUM_SNAPLEN).
pub const DEFAULT_SNAPLEN: u32 = 262_144;

/// What to collect, validated by the command.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    pub targets: Vec<Target>,
    pub duration: Option<Duration>,
    pub limits: capture::Limits,
    /// A tcpdump filter.
    pub filter: Option<String>,
    pub snaplen: u32,
    /// Bytes of each point's ring.
    pub ring_bytes: u64,
    /// Keep only the most recent this many bytes of packets (`--ring`).
    pub flight: Option<u64>,
    pub out: PathBuf,
    /// The command line, for the manifest.
    pub command_line: Vec<String>,
}

/// One opened capture point.
struct Opened {
    target: Target,
    socket: PacketSocket,
}

/// Opens the packet socket of `t`, in its namespace when it names one.
fn open_target(t: &Target, cfg: &Config) -> anyhow::Result<PacketSocket> {
    let ring = RingConfig {
        retire: RING_RETIRE,
        ..RingConfig::of_size(cfg.ring_bytes)
    };
    let (iface, filter, snaplen) = (t.iface.clone(), cfg.filter.clone(), cfg.snaplen);
    let where_ = match &t.netns {
        Some(ns) => format!(" in network namespace `{ns}`"),
        None => String::new(),
    };
    let open = move || -> anyhow::Result<PacketSocket> {
        let program = |linktype| match &filter {
            Some(f) => filter::compile(f, linktype, snaplen).map_err(|e| e.to_string()),
            None => Ok(filter::accept_all(snaplen)),
        };
        Ok(PacketSocket::open(&iface, &where_, ring, program)?)
    };
    match &t.netns {
        Some(ns) => ns.run_in(open),
        None => open(),
    }
}

/// The output directory must be new or empty: a bundle is never mixed with others.
fn check_out(dir: &Path) -> anyhow::Result<()> {
    match fs::read_dir(dir) {
        Ok(mut rd) => anyhow::ensure!(
            rd.next().is_none(),
            "{}: exists and is not empty (collect writes a new bundle)",
            dir.display()
        ),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => anyhow::bail!("{}: {e}", dir.display()),
    }
    Ok(())
}

/// `-i any` takes every interface of its namespace: no other point may name one of
/// them (its packets would be written twice, under the same name).
fn check_any(targets: &[Target]) -> anyhow::Result<()> {
    for t in targets.iter().filter(|t| t.is_any()) {
        if let Some(o) = targets.iter().find(|o| *o != t && o.netns == t.netns) {
            anyhow::bail!(
                "`{t}` captures every interface of its namespace: `{o}` would be captured twice"
            );
        }
    }
    Ok(())
}

/// Runs a whole collection. `started` is called once the capture runs, with the
/// points' names. Returns the manifest written.
pub fn run(cfg: &Config, started: impl FnOnce(&[String])) -> anyhow::Result<Manifest> {
    check_out(&cfg.out)?;
    check_any(&cfg.targets)?;
    let mut names = Vec::new();
    let mut opened = Vec::new();
    for t in &cfg.targets {
        anyhow::ensure!(!names.contains(&t.name()), "`{t}` is named twice");
        names.push(t.name());
        let socket = open_target(t, cfg).with_context(|| format!("capture point `{t}`"))?;
        opened.push(Opened {
            target: t.clone(),
            socket,
        });
    }
    fs::create_dir_all(&cfg.out).with_context(|| format!("creating {}", cfg.out.display()))?;
    stop::catch_signals().context("catching SIGINT and SIGTERM")?;
    let stop = Arc::new(Stop::default());
    let host = context::host();
    let mut ctx = context::Context::new(&cfg.out);
    let events = context::Events::start(&cfg.out);
    ctx.before();

    let started_at = SystemTime::now();
    let (head, fixed) = capture_head(cfg, &opened, &host);
    let sink = match cfg.flight {
        Some(size) => Sink::Ring(
            Recorder::new(&cfg.out, size).context("starting the flight recorder")?,
            Vec::new(),
        ),
        None => {
            let path = cfg.out.join(Kind::Capture.file());
            let mut f =
                File::create(&path).with_context(|| format!("creating {}", path.display()))?;
            f.write_all(&head)?;
            Sink::File(f)
        }
    };
    let mut points = Vec::new();
    let mut sockets = Vec::new();
    for (o, id) in opened.into_iter().zip(&fixed) {
        let describe = match id {
            Some(id) => Describe::Fixed(*id),
            None => Describe::Any(AnyInterfaces::new(
                o.socket.names()?,
                o.target
                    .netns
                    .as_ref()
                    .map(|n| format!("{n}:"))
                    .unwrap_or_default(),
                cfg.snaplen,
                cfg.filter.clone(),
                host.name.clone(),
            )),
        };
        points.push((o.target, o.socket.ifindex, o.socket.linktype, *id));
        sockets.push((o.socket, describe));
    }
    let described = fixed.iter().flatten().count() as u32;
    let running = capture::start(
        sink,
        head.len() as u64,
        sockets,
        described,
        cfg.limits,
        stop.clone(),
    )?;
    started(&names);
    wait(&stop, cfg.duration);
    let (results, sink) = running.finish();
    let stopped_at = SystemTime::now();
    ctx.after();
    let mut capture_rec = capture_record(cfg, started_at, stopped_at);
    let mut kept = None;
    let finished = sink.and_then(|sink| {
        let mut f = match sink {
            Sink::File(f) => f,
            Sink::Ring(rec, met) => {
                // The descriptions first, then the packets kept, one at a time.
                let path = cfg.out.join(Kind::Capture.file());
                let mut f = io::BufWriter::with_capacity(1 << 16, File::create(&path)?);
                f.write_all(&head)?;
                f.write_all(&met)?;
                kept = Some(rec.finish(&mut f)?);
                f.into_inner().map_err(io::IntoInnerError::into_error)?
            }
        };
        write_statistics(&mut f, &points, &results, started_at)?;
        f.sync_all()
    });
    if let Err(e) = finished {
        capture_rec.error = Some(format!("writing: {e}"));
    }
    ctx.add(capture_rec);
    ctx.add(events.finish());
    let m = Manifest {
        schema: manifest::SCHEMA.into(),
        natcheck: env!("CARGO_PKG_VERSION").into(),
        command_line: cfg.command_line.clone(),
        host: host.name,
        kernel: host.kernel,
        netns: host.netns,
        started: rfc3339(started_at),
        stopped: rfc3339(stopped_at),
        stop: stop_record(&stop, cfg),
        points: point_records(&points, &results, cfg, kept.as_ref()),
        files: ctx.finish(),
        ring: kept.as_ref().map(ring_record),
    };
    write_manifest(&cfg.out, &m)?;
    Ok(m)
}

/// Waits for a stop: a signal, a limit, an error, or the duration.
fn wait(stop: &Stop, duration: Option<Duration>) {
    let deadline = duration.map(|d| Instant::now() + d);
    while !stop.is_set() {
        if deadline.is_some_and(|d| Instant::now() >= d) {
            stop.duration();
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A capture point as opened: its target, interface index, link type, and the
/// number of its interface description (none for `any`, whose interfaces are
/// described as they are met).
type PointInfo = (Target, u32, u16, Option<u32>);

/// The capture file's head: the section header and one interface description per
/// point that has one (`any` has none); with each point's description number.
fn capture_head(
    cfg: &Config,
    opened: &[Opened],
    host: &context::Host,
) -> (Vec<u8>, Vec<Option<u32>>) {
    let mut head = Vec::new();
    let mut comment = format!("natcheck collect on {}", host.name);
    if let Some(size) = cfg.flight {
        comment.push_str(&format!(
            "; flight recorder: the most recent {size} bytes of packets at the stop"
        ));
    }
    pcapng::section_header(
        &mut head,
        &pcapng::Section {
            hardware: host.name.clone(),
            os: format!("Linux {}", host.kernel),
            application: format!("natcheck {}", env!("CARGO_PKG_VERSION")),
            comment,
        },
    );
    let mut ids = Vec::new();
    let mut next = 0u32;
    for o in opened {
        if o.socket.is_any() {
            ids.push(None);
            continue;
        }
        ids.push(Some(next));
        next += 1;
        pcapng::interface(
            &mut head,
            &pcapng::Interface {
                linktype: o.socket.linktype,
                snaplen: cfg.snaplen,
                name: o.target.name(),
                description: format!(
                    "{} (ifindex {}) on {}",
                    o.target.name(),
                    o.socket.ifindex,
                    host.name
                ),
                filter: cfg.filter.clone(),
            },
        );
    }
    (head, ids)
}

/// One statistics block per point that has an interface description: the kernel
/// counts per socket, and an `any` socket's interfaces share one.
fn write_statistics(
    f: &mut File,
    points: &[PointInfo],
    results: &[PointResult],
    started_at: SystemTime,
) -> std::io::Result<()> {
    let start_ns = started_at
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    let mut tail = Vec::new();
    for ((_, _, _, id), r) in points.iter().zip(results) {
        let Some(id) = id else { continue };
        pcapng::statistics(
            &mut tail,
            *id,
            &pcapng::Statistics {
                start_ns,
                end_ns: r.end_ns,
                received: r.counters.packets,
                dropped: r.counters.drops,
                delivered: r.packets,
            },
        );
    }
    f.write_all(&tail)
}

fn capture_record(cfg: &Config, started_at: SystemTime, stopped_at: SystemTime) -> FileRecord {
    let mut command = String::from("AF_PACKET, one TPACKET_V3 ring per interface");
    if let Some(f) = &cfg.filter {
        command.push_str(&format!("; filter compiled by tcpdump -ddd: {f}"));
    }
    if let Some(size) = cfg.flight {
        command.push_str(&format!(
            "; flight recorder: the most recent {size} bytes of packets kept"
        ));
    }
    FileRecord {
        name: Kind::Capture.file(),
        kind: Kind::Capture.name().into(),
        what: Kind::Capture.what().into(),
        command,
        taken: rfc3339(started_at),
        finished: Some(rfc3339(stopped_at)),
        ..FileRecord::default()
    }
}

fn stop_record(stop: &Stop, cfg: &Config) -> manifest::Stop {
    let reason = stop.reason().unwrap_or(Reason::Duration);
    let detail = match &reason {
        Reason::Duration => cfg
            .duration
            .map(|d| humantime::format_duration(d).to_string())
            .unwrap_or_default(),
        Reason::Count => format!("{} packets", cfg.limits.count.unwrap_or(0)),
        Reason::Size => format!("{} bytes", cfg.limits.max_bytes.unwrap_or(0)),
        Reason::Signal(s) => stop::signal_name(*s),
        Reason::Error(e) => e.clone(),
    };
    manifest::Stop {
        reason: reason.name().into(),
        detail,
    }
}

/// What the flight recorder kept and discarded of interface `id`: packets kept
/// (of `written`), packets and bytes discarded.
fn ring_counts(kept: Option<&Kept>, id: u32, written: u64) -> (u64, Option<Tally>) {
    match kept {
        None => (written, None),
        Some(k) => (
            k.kept.get(&id).map_or(0, |t| t.packets),
            Some(k.discarded.get(&id).copied().unwrap_or_default()),
        ),
    }
}

fn point_records(
    points: &[PointInfo],
    results: &[PointResult],
    cfg: &Config,
    kept: Option<&Kept>,
) -> Vec<manifest::Point> {
    points
        .iter()
        .zip(results)
        .map(|((t, ifindex, linktype, id), r)| {
            let interfaces: Vec<manifest::Interface> = r
                .interfaces
                .iter()
                .map(|m: &Met| {
                    let (packets, gone) = ring_counts(kept, m.iface, m.packets);
                    manifest::Interface {
                        name: m.name.clone(),
                        ifindex: m.ifindex,
                        linktype: linktype_name(u32::from(m.linktype)),
                        packets,
                        discarded_packets: gone.map(|g| g.packets),
                        discarded_bytes: gone.map(|g| g.bytes),
                    }
                })
                .collect();
            let (packets, gone) = match id {
                Some(id) => ring_counts(kept, *id, r.packets),
                None => {
                    let sum = |f: fn(&manifest::Interface) -> Option<u64>| {
                        kept.map(|_| interfaces.iter().filter_map(f).sum::<u64>())
                    };
                    let gone = sum(|i| i.discarded_packets).zip(sum(|i| i.discarded_bytes));
                    (
                        interfaces.iter().map(|i| i.packets).sum(),
                        gone.map(|(packets, bytes)| Tally { packets, bytes }),
                    )
                }
            };
            manifest::Point {
                name: t.name(),
                netns: t.netns.as_ref().map(|n| n.to_string()),
                interface: t.iface.clone(),
                ifindex: *ifindex,
                linktype: match id {
                    Some(_) => linktype_name(u32::from(*linktype)),
                    None => "per interface".into(),
                },
                snaplen: cfg.snaplen,
                filter: cfg.filter.clone(),
                packets,
                kernel_packets: r.counters.packets,
                kernel_drops: r.counters.drops,
                discarded_packets: gone.map(|g| g.packets),
                discarded_bytes: gone.map(|g| g.bytes),
                interfaces,
            }
        })
        .collect()
}

/// The manifest's account of the flight recorder.
fn ring_record(k: &Kept) -> manifest::Ring {
    let gone = k.discarded_total();
    let time = |t: Option<u64>| t.map(|t| rfc3339_ns(i64::try_from(t).unwrap_or(i64::MAX)));
    manifest::Ring {
        size: k.size,
        segment_size: k.segment_size,
        discarded_packets: gone.packets,
        discarded_bytes: gone.bytes,
        discarded_through: time(k.cut_ns),
        kept_from: time(k.first_ns),
        kept_to: time(k.last_ns),
        before_predates_packets: gone.packets > 0,
    }
}

/// Writes the manifest under a temporary name and renames it: a bundle has a
/// manifest only once it is complete.
fn write_manifest(dir: &Path, m: &Manifest) -> anyhow::Result<()> {
    let tmp = dir.join(".manifest.json.tmp");
    let path = dir.join(MANIFEST);
    let mut f = File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
    f.write_all(m.to_json().as_bytes())?;
    f.sync_all()?;
    fs::rename(&tmp, &path).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}
