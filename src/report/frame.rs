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
use crate::correlate::{Connection, Correlation, Hop, Link};
use crate::model::Tuple;

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

/// One column: `f` of every connection.
fn col<T>(conns: &[Connection], name: &str, f: impl Fn(&Connection) -> T) -> Column
where
    Series: NamedFrom<Vec<T>, [T]>,
{
    Column::new(name.into(), conns.iter().map(f).collect::<Vec<T>>())
}

/// A column of times, as UTC datetimes with nanoseconds.
fn times(conns: &[Connection], name: &str, f: impl Fn(&Connection) -> i64) -> PolarsResult<Column> {
    col(conns, name, f).cast(&DataType::Datetime(TimeUnit::Nanoseconds, None))
}

/// `PREFIX_point, PREFIX_src, PREFIX_sport, PREFIX_dst, PREFIX_dport` of the hop `pick`
/// chooses.
fn endpoint_columns(c: &Correlation, prefix: &str, pick: fn(&Connection) -> &Hop) -> Vec<Column> {
    let conns = &c.connections[..];
    let t = |x: &Connection| pick(x).flow.tuple;
    vec![
        col(conns, &format!("{prefix}_point"), |x| {
            c.points[pick(x).point].name.clone()
        }),
        col(conns, &format!("{prefix}_src"), |x| t(x).src.to_string()),
        col(conns, &format!("{prefix}_sport"), |x| port(&t(x), true)),
        col(conns, &format!("{prefix}_dst"), |x| t(x).dst.to_string()),
        col(conns, &format!("{prefix}_dport"), |x| port(&t(x), false)),
    ]
}

/// Counts of the first hop, lost packets and latency over every link, the weakest
/// link's confidence, and the findings.
fn evidence_columns(conns: &[Connection], findings: &[u32]) -> Vec<Column> {
    let links_max =
        |x: &Connection, f: &dyn Fn(&Link) -> Option<i64>| x.links.iter().filter_map(f).max();
    let lost = |x: &Connection, f: &dyn Fn(&Link) -> u64| x.links.iter().map(f).sum::<u64>();
    vec![
        col(conns, "packets_fwd", |x| x.hops[0].flow.packets[0]),
        col(conns, "packets_rev", |x| x.hops[0].flow.packets[1]),
        col(conns, "bytes_fwd", |x| x.hops[0].flow.bytes[0]),
        col(conns, "bytes_rev", |x| x.hops[0].flow.bytes[1]),
        col(conns, "lost_fwd", |x| {
            lost(x, &|l| l.unmatched.lost_fwd.packets)
        }),
        col(conns, "lost_rev", |x| {
            lost(x, &|l| l.unmatched.lost_rev.packets)
        }),
        col(conns, "latency_first_ns", |x| {
            links_max(x, &|l| l.latency.and_then(|t| t.first_ns))
        }),
        col(conns, "latency_p50_ns", |x| {
            links_max(x, &|l| l.latency.map(|t| t.p50_ns))
        }),
        col(conns, "latency_max_ns", |x| {
            links_max(x, &|l| l.latency.map(|t| t.max_ns))
        }),
        col(conns, "confidence", |x| {
            x.links.iter().map(|l| l.confidence).reduce(f64::min)
        }),
        Column::new(
            "findings".into(),
            (0..conns.len())
                .map(|i| findings.get(i).copied().unwrap_or(0))
                .collect::<Vec<_>>(),
        ),
    ]
}

/// Builds the connection frame. `findings[i]` is the number of findings of connection i.
pub fn connections(c: &Correlation, findings: &[u32]) -> PolarsResult<DataFrame> {
    let conns: &[Connection] = &c.connections;
    let mut columns = vec![
        col(conns, "id", |x| x.id.clone()),
        col(conns, "proto", |x| x.proto.name()),
        col(conns, "path", |x| super::fmt::path_label(c, x, ">")),
        col(conns, "kind", |x| {
            x.end_to_end().map_or("single-point", |k| k.kind.as_str())
        }),
        col(conns, "port_reallocated", |x| {
            x.links.iter().any(|l| l.change.port_reallocated)
        }),
        times(conns, "first_seen", Connection::first_ns)?,
        times(conns, "last_seen", Connection::last_ns)?,
    ];
    columns.extend(endpoint_columns(c, "first", |x| &x.hops[0]));
    columns.extend(endpoint_columns(c, "last", |x| &x.hops[x.hops.len() - 1]));
    columns.extend(evidence_columns(conns, findings));
    DataFrame::new_infer_height(columns)
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
