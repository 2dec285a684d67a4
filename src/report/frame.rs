//! The per-connection table as a polars `DataFrame`: one row per connection, for the
//! CSV / NDJSON / Parquet writers (`--format csv|ndjson|parquet`) and for the summary by
//! path and translation kind. This is the only module that imports polars.
//!
//! Columns (a contract like the JSON schema, documented in docs/json-schema.md):
//! `id, proto, path, kind, port_reallocated, first_seen, last_seen, first_point,
//! first_src, first_sport, first_dst, first_dport, last_point, last_src, last_sport,
//! last_dst, last_dport, packets_fwd, packets_rev, bytes_fwd, bytes_rev, lost_fwd,
//! lost_rev, latency_first_ns, latency_p50_ns, latency_max_ns, confidence, findings`.
//! Times are UTC datetimes with nanoseconds; counts are those of the first hop;
//! `lost_*` and `latency_*` cover every link of the path (sum, max); `confidence` is the
//! weakest link's; ports are null where the protocol has none.

use std::io::Write;

use polars::prelude::*;

use super::{Model, Render};
use crate::correlate::{Connection, Correlation};
use crate::model::{NatKind, Tuple};

/// The tabular output formats.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FrameFormat {
    Csv,
    Ndjson,
    Parquet,
}

fn port(t: &Tuple, src: bool) -> Option<u32> {
    let p = if src { t.sport } else { t.dport };
    if t.proto.has_ports() || (t.proto.is_icmp() && src) {
        Some(u32::from(p))
    } else {
        None
    }
}

/// Builds the connection frame. `findings[i]` is the number of findings of connection i.
pub fn connections(c: &Correlation, findings: &[u32]) -> PolarsResult<DataFrame> {
    let conns: &[Connection] = &c.connections;
    let name = |i: usize| c.points[i].name.clone();
    let first = |cn: &Connection| cn.hops[0].flow.tuple;
    let last = |cn: &Connection| cn.hops[cn.hops.len() - 1].flow.tuple;
    let kind = |cn: &Connection| cn.end_to_end().map(|k| k.kind);
    let links_max = |cn: &Connection, f: &dyn Fn(&crate::correlate::Link) -> Option<i64>| {
        cn.links.iter().filter_map(f).max()
    };
    let ts = |v: Vec<i64>, n: &str| -> PolarsResult<Column> {
        Column::new(n.into(), v).cast(&DataType::Datetime(TimeUnit::Nanoseconds, None))
    };
    DataFrame::new_infer_height(vec![
        Column::new(
            "id".into(),
            conns.iter().map(|x| x.id.clone()).collect::<Vec<_>>(),
        ),
        Column::new(
            "proto".into(),
            conns.iter().map(|x| x.proto.name()).collect::<Vec<_>>(),
        ),
        Column::new(
            "path".into(),
            conns
                .iter()
                .map(|x| {
                    x.hops
                        .iter()
                        .map(|h| name(h.point))
                        .collect::<Vec<_>>()
                        .join(">")
                })
                .collect::<Vec<_>>(),
        ),
        Column::new(
            "kind".into(),
            conns
                .iter()
                .map(|x| kind(x).map_or("single-point", NatKind::as_str))
                .collect::<Vec<_>>(),
        ),
        Column::new(
            "port_reallocated".into(),
            conns
                .iter()
                .map(|x| x.links.iter().any(|l| l.change.port_reallocated))
                .collect::<Vec<_>>(),
        ),
        ts(
            conns.iter().map(Connection::first_ns).collect(),
            "first_seen",
        )?,
        ts(conns.iter().map(Connection::last_ns).collect(), "last_seen")?,
        Column::new(
            "first_point".into(),
            conns
                .iter()
                .map(|x| name(x.hops[0].point))
                .collect::<Vec<_>>(),
        ),
        Column::new(
            "first_src".into(),
            conns
                .iter()
                .map(|x| first(x).src.to_string())
                .collect::<Vec<_>>(),
        ),
        Column::new(
            "first_sport".into(),
            conns
                .iter()
                .map(|x| port(&first(x), true))
                .collect::<Vec<_>>(),
        ),
        Column::new(
            "first_dst".into(),
            conns
                .iter()
                .map(|x| first(x).dst.to_string())
                .collect::<Vec<_>>(),
        ),
        Column::new(
            "first_dport".into(),
            conns
                .iter()
                .map(|x| port(&first(x), false))
                .collect::<Vec<_>>(),
        ),
        Column::new(
            "last_point".into(),
            conns
                .iter()
                .map(|x| name(x.hops[x.hops.len() - 1].point))
                .collect::<Vec<_>>(),
        ),
        Column::new(
            "last_src".into(),
            conns
                .iter()
                .map(|x| last(x).src.to_string())
                .collect::<Vec<_>>(),
        ),
        Column::new(
            "last_sport".into(),
            conns
                .iter()
                .map(|x| port(&last(x), true))
                .collect::<Vec<_>>(),
        ),
        Column::new(
            "last_dst".into(),
            conns
                .iter()
                .map(|x| last(x).dst.to_string())
                .collect::<Vec<_>>(),
        ),
        Column::new(
            "last_dport".into(),
            conns
                .iter()
                .map(|x| port(&last(x), false))
                .collect::<Vec<_>>(),
        ),
        Column::new(
            "packets_fwd".into(),
            conns
                .iter()
                .map(|x| x.hops[0].flow.packets[0])
                .collect::<Vec<_>>(),
        ),
        Column::new(
            "packets_rev".into(),
            conns
                .iter()
                .map(|x| x.hops[0].flow.packets[1])
                .collect::<Vec<_>>(),
        ),
        Column::new(
            "bytes_fwd".into(),
            conns
                .iter()
                .map(|x| x.hops[0].flow.bytes[0])
                .collect::<Vec<_>>(),
        ),
        Column::new(
            "bytes_rev".into(),
            conns
                .iter()
                .map(|x| x.hops[0].flow.bytes[1])
                .collect::<Vec<_>>(),
        ),
        Column::new(
            "lost_fwd".into(),
            conns
                .iter()
                .map(|x| {
                    x.links
                        .iter()
                        .map(|l| l.unmatched.lost_fwd.packets)
                        .sum::<u64>()
                })
                .collect::<Vec<_>>(),
        ),
        Column::new(
            "lost_rev".into(),
            conns
                .iter()
                .map(|x| {
                    x.links
                        .iter()
                        .map(|l| l.unmatched.lost_rev.packets)
                        .sum::<u64>()
                })
                .collect::<Vec<_>>(),
        ),
        Column::new(
            "latency_first_ns".into(),
            conns
                .iter()
                .map(|x| links_max(x, &|l| l.latency.and_then(|t| t.first_ns)))
                .collect::<Vec<_>>(),
        ),
        Column::new(
            "latency_p50_ns".into(),
            conns
                .iter()
                .map(|x| links_max(x, &|l| l.latency.map(|t| t.p50_ns)))
                .collect::<Vec<_>>(),
        ),
        Column::new(
            "latency_max_ns".into(),
            conns
                .iter()
                .map(|x| links_max(x, &|l| l.latency.map(|t| t.max_ns)))
                .collect::<Vec<_>>(),
        ),
        Column::new(
            "confidence".into(),
            conns
                .iter()
                .map(|x| x.links.iter().map(|l| l.confidence).reduce(f64::min))
                .collect::<Vec<_>>(),
        ),
        Column::new(
            "findings".into(),
            (0..conns.len())
                .map(|i| findings.get(i).copied().unwrap_or(0))
                .collect::<Vec<_>>(),
        ),
    ])
}

/// Columns summed per group in [`summary`].
const SUMMED: [&str; 5] = [
    "packets_fwd",
    "packets_rev",
    "lost_fwd",
    "lost_rev",
    "findings",
];

/// Connections, packets and lost packets by path and translation kind, sorted by path
/// then kind.
pub fn summary(df: &DataFrame) -> PolarsResult<DataFrame> {
    let mut groups = df.partition_by_stable(["path", "kind"], true)?;
    groups.sort_by_cached_key(|g| {
        let key = |c: &str| {
            g.column(c)
                .ok()
                .and_then(|c| c.str().ok()?.get(0).map(str::to_string))
        };
        (key("path"), key("kind"))
    });
    let mut path = Vec::with_capacity(groups.len());
    let mut kind = Vec::with_capacity(groups.len());
    let mut connections = Vec::with_capacity(groups.len());
    let mut sums: Vec<Vec<u64>> = vec![Vec::with_capacity(groups.len()); SUMMED.len()];
    for g in &groups {
        path.push(
            g.column("path")?
                .str()?
                .get(0)
                .unwrap_or_default()
                .to_string(),
        );
        kind.push(
            g.column("kind")?
                .str()?
                .get(0)
                .unwrap_or_default()
                .to_string(),
        );
        connections.push(g.height() as u64);
        for (i, c) in SUMMED.iter().enumerate() {
            let total = g
                .column(c)?
                .cast(&DataType::UInt64)?
                .u64()?
                .sum()
                .unwrap_or(0);
            sums[i].push(total);
        }
    }
    let mut cols = vec![
        Column::new("path".into(), path),
        Column::new("kind".into(), kind),
        Column::new("connections".into(), connections),
    ];
    for (name, v) in SUMMED.iter().zip(sums) {
        cols.push(Column::new((*name).into(), v));
    }
    DataFrame::new_infer_height(cols)
}

/// Writes a frame in one of the tabular formats.
/// `--format csv|ndjson|parquet`: one row per connection.
pub struct Frame(pub FrameFormat);

impl Render for Frame {
    fn render(&self, m: &Model, mut out: &mut dyn Write) -> anyhow::Result<()> {
        let c = &m.correlation;
        let counts: Vec<u32> = (0..c.connections.len())
            .map(|i| m.findings_of(i).count() as u32)
            .collect();
        let mut df = connections(c, &counts)?;
        write(&mut df, self.0, &mut out)?;
        Ok(())
    }
}

pub fn write(df: &mut DataFrame, format: FrameFormat, out: &mut impl Write) -> PolarsResult<()> {
    match format {
        // Times as in every other report: RFC 3339, UTC, nanoseconds.
        FrameFormat::Csv => CsvWriter::new(out)
            .include_header(true)
            .with_datetime_format(Some("%Y-%m-%dT%H:%M:%S%.9fZ".into()))
            .finish(df),
        // The JSON writer has no datetime format and drops nanoseconds, so times are
        // written as the same RFC 3339 strings.
        FrameFormat::Ndjson => JsonWriter::new(out)
            .with_json_format(JsonFormat::JsonLines)
            .finish(&mut times_as_text(df)?),
        FrameFormat::Parquet => ParquetWriter::new(out).finish(df).map(|_| ()),
    }
}

/// `df` with every datetime column replaced by RFC 3339 strings.
fn times_as_text(df: &DataFrame) -> PolarsResult<DataFrame> {
    let mut out = df.clone();
    for col in df.columns() {
        if let DataType::Datetime(TimeUnit::Nanoseconds, _) = col.dtype() {
            let text: StringChunked = col
                .datetime()?
                .physical()
                .iter()
                .map(|ns| ns.map(super::fmt::rfc3339_ns))
                .collect();
            out.with_column(text.with_name(col.name().clone()).into_column())?;
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_groups_by_path_and_kind() {
        let df = df!(
            "path" => ["docker0>eth0", "docker0>eth0", "eth0>docker0"],
            "kind" => ["snat", "snat", "dnat"],
            "packets_fwd" => [3u64, 4, 5],
            "packets_rev" => [1u64, 1, 1],
            "lost_fwd" => [0u64, 2, 0],
            "lost_rev" => [0u64, 0, 0],
            "findings" => [0u32, 1, 0],
        )
        .unwrap();
        let s = summary(&df).unwrap();
        assert_eq!(s.height(), 2);
        let conns = s
            .column("connections")
            .unwrap()
            .u64()
            .unwrap()
            .into_no_null_iter()
            .collect::<Vec<_>>();
        assert_eq!(conns, [2, 1]);
        let lost = s
            .column("lost_fwd")
            .unwrap()
            .u64()
            .unwrap()
            .into_no_null_iter()
            .collect::<Vec<_>>();
        assert_eq!(lost, [2, 0]);
    }
}
