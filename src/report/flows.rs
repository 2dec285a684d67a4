//! The `natcheck flows` reports: the `natcheck.flows/1` JSON document and the flow
//! table of each capture point.

use std::io::{self, Write};

use rayon::prelude::*;
use serde::Serialize;

use super::fmt::{dst, rfc3339_ns, secs, src};
use super::table::{Align, Table};
use crate::capture::{InputStats, PointInfo};
use crate::diag::Warning;
use crate::flows::{Flow, InitiatorEvidence, InputFlows, TcpSeen};
use crate::model::{Proto, Tuple};

/// A flow as written in JSON: the tuple's fields at top level, in the initiator's direction.
#[derive(Serialize)]
struct FlowJson<'a> {
    #[serde(flatten)]
    tuple: &'a Tuple,
    community_id: Option<String>,
    initiator_evidence: InitiatorEvidence,
    first_seen: String,
    last_seen: String,
    packets_fwd: u64,
    packets_rev: u64,
    bytes_fwd: u64,
    bytes_rev: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    tcp: Option<TcpJson>,
    #[serde(skip_serializing_if = "Option::is_none")]
    icmp_error: Option<&'a crate::flows::IcmpError>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tunnel: Option<&'a crate::model::Tunnel>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reply_tunnel: Option<&'a crate::model::Tunnel>,
}

#[derive(Serialize)]
struct TcpJson {
    state: &'static str,
    #[serde(flatten)]
    seen: TcpSeen,
}

#[derive(Serialize)]
struct PointJson<'a> {
    #[serde(flatten)]
    info: &'a PointInfo,
    first_seen: Option<String>,
    last_seen: Option<String>,
    flows: Vec<FlowJson<'a>>,
}

#[derive(Serialize)]
struct InputJson<'a> {
    source: &'a str,
    #[serde(flatten)]
    stats: &'a InputStats,
}

#[derive(Serialize)]
struct Doc<'a> {
    schema: &'static str,
    inputs: Vec<InputJson<'a>>,
    points: Vec<PointJson<'a>>,
    warnings: Vec<&'a Warning>,
}

/// The `natcheck.flows/1` document, pretty-printed, with a trailing newline.
pub fn document(inputs: &[InputFlows], out: &mut impl Write) -> io::Result<()> {
    let doc = Doc {
        schema: "natcheck.flows/1",
        inputs: inputs
            .iter()
            .map(|i| InputJson {
                source: &i.input.source,
                stats: &i.input.stats,
            })
            .collect(),
        points: inputs
            .iter()
            .flat_map(|i| &i.points)
            .map(|p| PointJson {
                info: &p.info,
                first_seen: p.info.first_ns.map(rfc3339_ns),
                last_seen: p.info.last_ns.map(rfc3339_ns),
                flows: p.flows.iter().map(flow_json).collect(),
            })
            .collect(),
        warnings: inputs.iter().flat_map(|i| &i.input.warnings).collect(),
    };
    serde_json::to_writer_pretty(&mut *out, &doc)?;
    writeln!(out)
}

/// Every point's flow table, input by input, each input followed by what it could
/// not decode.
pub fn table(inputs: &[InputFlows], out: &mut impl Write) -> io::Result<()> {
    // Each point's table is made on a core of its own, then written in order.
    let points: Vec<_> = inputs.iter().flat_map(|i| &i.points).collect();
    let tables: Vec<Vec<u8>> = points
        .par_iter()
        .map(|p| {
            let mut buf = Vec::new();
            write_point(&mut buf, &p.info, &p.flows).map(|()| buf)
        })
        .collect::<io::Result<_>>()?;
    let mut tables = tables.into_iter();
    for input in inputs {
        for t in tables.by_ref().take(input.points.len()) {
            out.write_all(&t)?;
        }
        write_skipped(out, &input.input.source, &input.input.stats)?;
    }
    Ok(())
}

fn flow_json(f: &Flow) -> FlowJson<'_> {
    FlowJson {
        tuple: &f.tuple,
        community_id: f.community_id(),
        initiator_evidence: f.initiator,
        first_seen: rfc3339_ns(f.first_ns),
        last_seen: rfc3339_ns(f.last_ns),
        packets_fwd: f.packets[0],
        packets_rev: f.packets[1],
        bytes_fwd: f.bytes[0],
        bytes_rev: f.bytes[1],
        tcp: (f.tuple.proto == Proto::Tcp).then(|| TcpJson {
            state: f.tcp.state().as_str(),
            seen: f.tcp,
        }),
        icmp_error: f.icmp_error.as_deref(),
        tunnel: f.tunnel(),
        reply_tunnel: f.reply_tunnel(),
    }
}

/// A point's heading and flow table.
pub fn write_point(out: &mut impl Write, info: &PointInfo, flows: &[Flow]) -> io::Result<()> {
    let span = match (info.first_ns, info.last_ns) {
        (Some(a), Some(b)) => format!(", {} +{}", rfc3339_ns(a), secs(b - a)),
        _ => String::new(),
    };
    writeln!(
        out,
        "{}  ({}, {}): {} packets, {} flows{}",
        info.name,
        info.source,
        info.linktype,
        info.packets,
        flows.len(),
        span
    )?;
    if flows.is_empty() {
        return writeln!(out);
    }
    let mut t = Table::new(&[
        ("proto", Align::Left),
        ("initiator", Align::Left),
        ("responder", Align::Left),
        ("pkts>", Align::Right),
        ("pkts<", Align::Right),
        ("bytes>", Align::Right),
        ("bytes<", Align::Right),
        ("start", Align::Left),
        ("duration", Align::Right),
        ("state", Align::Left),
    ]);
    for f in flows {
        let tu = &f.tuple;
        t.row(vec![
            tu.proto.to_string(),
            src(tu),
            dst(tu),
            f.packets[0].to_string(),
            f.packets[1].to_string(),
            f.bytes[0].to_string(),
            f.bytes[1].to_string(),
            rfc3339_ns(f.first_ns),
            secs(f.last_ns - f.first_ns),
            match (&f.icmp_error, tu.proto) {
                (Some(e), _) => format!("icmp error {}/{}", e.icmp_type, e.code),
                (None, Proto::Tcp) => f.tcp.state().as_str().to_string(),
                _ => "-".to_string(),
            },
        ]);
    }
    t.write("  ", out)?;
    writeln!(out)
}

/// What an input could not decode, when anything.
pub fn write_skipped(out: &mut impl Write, source: &str, stats: &InputStats) -> io::Result<()> {
    let skipped: u64 = stats.skipped.values().sum();
    if skipped == 0 && stats.truncated == 0 && stats.outside_range == 0 {
        return Ok(());
    }
    writeln!(
        out,
        "{source}: {} frames read, {} decoded",
        stats.frames, stats.packets
    )?;
    if stats.outside_range > 0 {
        writeln!(
            out,
            "  {} frames captured outside --since/--until, left out",
            stats.outside_range
        )?;
    }
    if stats.truncated > 0 {
        writeln!(
            out,
            "  {} packets cut short by the snaplen (decoded from their headers)",
            stats.truncated
        )?;
    }
    if skipped > 0 {
        writeln!(out, "  {skipped} frames not decoded:")?;
        let mut reasons: Vec<(&String, &u64)> = stats.skipped.iter().collect();
        reasons.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
        for (reason, n) in reasons {
            writeln!(out, "    {n:>8}  {reason}")?;
        }
    }
    writeln!(out)
}
